"""Shared pieces of the fake API server: Status errors, body decoding, selectors, name validation."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import yaml

from tests.k8s import fake_ssa as ssa
from tests.k8s.fake_types import ResourceType

Obj = dict[str, Any]
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_SUBDOMAIN = rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*"
_DNS_LABEL_KINDS = {"Namespace", "Service"}


class ApiError(Exception):
    """An error the fake answers with, as a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> Obj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{rt.qualified} "{name}" not found', {"name": name, "group": rt.group, "kind": rt.plural}
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def decode(raw: bytes) -> Any:
    """A request body: JSON (what clients send) or YAML (allowed for apply patches)."""
    try:
        return json.loads(raw)
    except ValueError:
        pass
    try:
        return yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        raise bad_request(f"the body of the request could not be decoded: {err}") from err


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _terms(selector: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in selector:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    return [t.strip() for t in [*terms, cur] if t.strip()]


def label_match(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes label selector syntax: =, ==, !=, in, notin, exists, !key."""
    for term in _terms(selector):
        if m := re.fullmatch(r"(!?)\s*([\w./-]+)", term):
            if (m[2] in labels) == bool(m[1]):
                return False
        elif m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", term):
            values = {v.strip() for v in m[3].split(",")}
            if (labels.get(m[1]) in values) != (m[2] == "in") or (m[2] == "in" and m[1] not in labels):
                return False
        elif m := re.fullmatch(r"([\w./-]+)\s*(==|!=|=)\s*([\w./-]*)", term):
            if (labels.get(m[1]) == m[3]) == (m[2] == "!="):
                return False
        else:
            raise bad_request(f"unable to parse requirement: invalid label selector term {term!r}")
    return True


def field_match(selector: str, obj: Obj) -> bool:
    """Field selectors on dotted paths (the real server allows a per-type subset, e.g. metadata.name)."""
    for term in _terms(selector):
        m = re.fullmatch(r"([\w.]+)\s*(==|!=|=)\s*(.*)", term)
        if not m:
            raise bad_request(f"invalid field selector term {term!r}")
        node: Any = obj
        for part in m[1].split("."):
            node = node.get(part, "") if isinstance(node, dict) else ""
        if (str(node) == m[3]) == (m[2] == "!="):
            return False
    return True


def spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def clone(obj: Any) -> Any:
    """A deep copy of JSON data (much faster than copy.deepcopy on large CRDs)."""
    return json.loads(json.dumps(obj))


def same_object(a: Obj, b: Obj) -> bool:
    """Equal but for resourceVersion and managedFields timestamps: such a write changes nothing."""
    if {k: v for k, v in a.items() if k != "metadata"} != {k: v for k, v in b.items() if k != "metadata"}:
        return False
    ma, mb = a.get("metadata") or {}, b.get("metadata") or {}
    skip = ("resourceVersion", "managedFields")
    if {k: v for k, v in ma.items() if k not in skip} != {k: v for k, v in mb.items() if k not in skip}:
        return False
    times = [[{k: v for k, v in mf.items() if k != "time"} for mf in m.get("managedFields") or []] for m in (ma, mb)]
    return times[0] == times[1]


def name_problem(rt: ResourceType, name: str) -> str | None:
    """Why a name is invalid for its kind, worded as the real server's validation."""
    if not name:
        return "Required value: name or generateName is required"
    if rt.group == "rbac.authorization.k8s.io":  # RBAC names are path segments: "system:controller" is fine
        bad = name in (".", "..") or "/" in name or "%" in name
        return f"Invalid value: {json.dumps(name)}: may not contain '/' or '%'" if bad else None
    if rt.kind in _DNS_LABEL_KINDS:
        if re.fullmatch(_LABEL, name):
            return None
        what = "RFC 1123 label"
    elif re.fullmatch(_SUBDOMAIN, name):
        return None
    else:
        what = "RFC 1123 subdomain"
    return (
        f"Invalid value: {json.dumps(name)}: a lowercase {what} must consist of lower case alphanumeric "
        "characters, '-' or '.', and must start and end with an alphanumeric character"
    )


def apply_conflict(err: ssa.SsaConflict) -> ApiError:
    lines = [f'conflict with "{m}" using {av}: {ssa.dotted(p)}' for m, av, p in err.conflicts]
    n = len(lines)
    msg = f"Apply failed with {n} conflict{'s' if n > 1 else ''}: " + "; ".join(lines)
    causes = [
        {"type": "FieldManagerConflict", "message": f'conflict with "{m}" using {av}', "field": ssa.dotted(p)}
        for m, av, p in err.conflicts
    ]
    return ApiError(409, "Conflict", msg, {"causes": causes})
