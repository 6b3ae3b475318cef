"""Kubernetes objects checked against real schemas: built-in kinds with kubernetes-validate's strict OpenAPI
schemas for the pinned K3s (v1.31.4+k3s1 -> "1.31.0"), custom resources with the ``openAPIV3Schema`` of their
CRD in the pristine upstream manifests. Unknown kinds fail: a typo in a kind must not pass as "no schema".
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import jsonschema
import referencing
from jsonschema.protocols import Validator
from kubernetes_validate import utils as kv

from platform_core.cluster.upstream import parse_manifest
from tests.vendor import vendor_file

K8S_VERSION = "1.31.0"
# Every pinned manifest that defines CRDs: a custom resource must be valid under each pinned version of its CRD.
CRD_MANIFESTS = ("argocd/v3.5.1/install.yaml", "argocd/v3.2.0/install.yaml", "metallb/v0.15.3/metallb-native.yaml")
_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class SchemaError(ValueError):
    """One line: ``<kind>/<name>: <path>: <message>``."""


def _where(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"


def _fail(obj: dict[str, Any], path: Any, message: str) -> SchemaError:
    dotted = ".".join(str(p) for p in path) or "<root>"
    return SchemaError(" ".join(f"{_where(obj)}: {dotted}: {message}".splitlines()))


@cache
def _builtin_validator(kind: str, api_version: str, version: str) -> Validator | None:
    """kubernetes-validate's own schema files, loaded once per kind (its ``validate`` re-reads ~1 MB per call)."""
    schema_version = [v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(version)][-1]
    folder = f"kubernetes-json-schema/v{schema_version}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv.schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", version)
    except FileNotFoundError:
        return None
    definitions = kv.schema_contents(f"{folder}/_definitions.json", version)
    registry = referencing.Resource.from_contents(definitions) @ (
        referencing.Resource.from_contents(schema) @ referencing.Registry()
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _structural(schema: Any) -> Any:
    """A CRD schema as JSON Schema: ``nullable`` allows null, and unknown fields are refused as the API server
    prunes them (silently losing a typo'd field) unless the schema preserves them."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in ("properties", "patternProperties"):
        if key in out:
            out[key] = {name: _structural(sub) for name, sub in out[key].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = _structural(out[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = [_structural(sub) for sub in out[key]]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def _crds() -> dict[tuple[str, str], list[tuple[str, str, Validator]]]:
    """(apiVersion, kind) -> [(source, scope, validator)] for every served version of every vendored CRD."""
    out: dict[tuple[str, str], list[tuple[str, str, Validator]]] = {}
    for rel in CRD_MANIFESTS:
        for crd in parse_manifest(vendor_file(rel).read_text(encoding="utf-8")):
            if crd["kind"] != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                schema = _structural(version["schema"]["openAPIV3Schema"])
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                out.setdefault(key, []).append((rel, spec["scope"], jsonschema.Draft202012Validator(schema)))
    return out


def is_served(api_version: str, kind: str, k8s_version: str = K8S_VERSION) -> bool:
    """Whether a 1.31 cluster with the pinned CRDs serves this kind (PodSecurityPolicy: no)."""
    return (api_version, kind) in _crds() or _builtin_validator(kind, api_version, k8s_version) is not None


def served_kinds(objs: list[dict[str, Any]], k8s_version: str = K8S_VERSION) -> set[tuple[str, str]]:
    """The (apiVersion, kind) pairs among ``objs`` that such a cluster serves: the ``served`` of ``drop_kinds``."""
    pairs = {(o.get("apiVersion", ""), o.get("kind", "")) for o in objs}
    return {pair for pair in pairs if is_served(*pair, k8s_version=k8s_version)}


def _check_metadata(obj: dict[str, Any], scope: str) -> None:
    """CRD schemas leave metadata open; the API server still requires a DNS-style name and a namespace."""
    metadata = obj.get("metadata") or {}
    name = metadata.get("name", "")
    if not isinstance(name, str) or not _DNS_NAME.fullmatch(name):
        raise _fail(obj, ["metadata", "name"], f"{name!r} is not a valid object name")
    if scope == "Namespaced" and not metadata.get("namespace"):
        raise _fail(obj, ["metadata", "namespace"], "required for a namespaced custom resource")


def validate(obj: dict[str, Any], k8s_version: str = K8S_VERSION) -> None:
    """Raise a one-line ``SchemaError`` naming kind/name/path unless ``obj`` is valid for the cluster."""
    if not isinstance(obj, dict) or not obj.get("kind") or not obj.get("apiVersion"):
        raise SchemaError(f"{_where(obj) if isinstance(obj, dict) else obj!r}: apiVersion and kind are required")
    api_version, kind = obj["apiVersion"], obj["kind"]
    if (api_version, kind) in _crds():
        for source, scope, validator in _crds()[(api_version, kind)]:
            _check_metadata(obj, scope)
            error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
            if error is not None:
                raise _fail(obj, error.absolute_path, f"{error.message} (CRD of {source})")
        return
    validator = _builtin_validator(kind, api_version, k8s_version)
    if validator is None:
        raise SchemaError(f"{_where(obj)}: unknown kind {kind} ({api_version}) for Kubernetes {k8s_version}")
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is not None:
        raise _fail(obj, error.absolute_path, error.message)


def validate_served(obj: dict[str, Any]) -> None:
    """``validate`` for kinds a pinned cluster serves; a test's own CRD kinds have no schema here and pass."""
    if is_served(str(obj.get("apiVersion", "")), str(obj.get("kind", ""))):
        validate(obj)
