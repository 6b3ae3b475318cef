"""How server-side apply merges each list, read where the real server reads it: the OpenAPI schema's
``x-kubernetes-list-type`` and ``x-kubernetes-list-map-keys`` (structured-merge-diff; the Kubernetes 1.31
schemas of kubernetes-validate, as tests/k8s/schemas.py validates against). A ``map`` list merges item by item,
keyed by its key fields (Service ports by port+protocol, container ports by containerPort+protocol, volumeMounts
by mountPath, env and containers by name); every other list is atomic: the applier owns it whole. A key field
with a default (``protocol``: TCP) is defaulted before the merge, as the server does. Custom resources follow
their CRD's schema, which here names no list type: atomic.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from kubernetes_validate import utils as kv

from tests.k8s.schemas import K8S_VERSION

Keys = tuple[str, ...]
KeyDefaults = {"protocol": "TCP"}
_FOLDER = f"kubernetes-json-schema/v{K8S_VERSION}-local-strict"


@cache
def _defs() -> dict[str, Any]:
    return dict(kv.schema_contents(f"{_FOLDER}/_definitions.json", K8S_VERSION)["$defs"])


@cache
def _root(kind: str, api_version: str) -> dict[str, Any] | None:
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        return dict(kv.schema_contents(f"{_FOLDER}/{kind.lower()}-{group_version}.json", K8S_VERSION))
    except FileNotFoundError:
        return None


def _resolve(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = _defs()[node["$ref"].rsplit("/", 1)[-1]]
    return node


@cache
def _keys_at(kind: str, api_version: str, fields: tuple[str, ...]) -> Keys | None:
    node = _resolve(_root(kind, api_version))
    for name in fields:
        if not isinstance(node, dict):
            return None
        if node.get("type") == "array" or "items" in node:
            node = _resolve(node.get("items"))
        node = _resolve((node.get("properties") or {}).get(name)) if isinstance(node, dict) else None
    if not isinstance(node, dict) or node.get("x-kubernetes-list-type") != "map":
        return None
    return tuple(node.get("x-kubernetes-list-map-keys") or ())


def list_keys(obj: dict[str, Any]) -> Callable[[tuple[str, ...]], Keys | None]:
    """For one object: field names from the root to a list -> its map keys, or None when it is atomic."""
    kind, api_version = str(obj.get("kind", "")), str(obj.get("apiVersion", ""))
    return lambda fields: _keys_at(kind, api_version, fields)


def item_key(item: Any, keys: Keys) -> dict[str, Any] | None:
    """The key of a map-list item (defaults filled in), or None when the item lacks a key field."""
    if not isinstance(item, dict):
        return None
    out = {}
    for k in keys:
        value = item.get(k, KeyDefaults.get(k))
        if value is None:
            return None
        out[k] = value
    return out
