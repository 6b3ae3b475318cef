"""Field ownership for the fake API server: server-side apply, managedFields (FieldsV1) and the patch formats.

Lists merge as the real server merges them, by the OpenAPI schema's list type and map keys (fake_lists.py).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from tests.k8s.fake_lists import item_key, list_keys

Path = tuple[str, ...]
_MISSING = object()
_META_TRACKED = ("labels", "annotations", "finalizers", "ownerReferences")


class SsaConflict(Exception):
    def __init__(self, conflicts: list[tuple[str, str, Path]]) -> None:
        self.conflicts = conflicts  # (manager, its apiVersion, path)
        super().__init__(conflicts)


class PatchError(Exception):
    pass


KeysFor = Callable[[tuple[str, ...]], tuple[str, ...] | None]


def _atomic(_fields: tuple[str, ...]) -> tuple[str, ...] | None:
    return None


def _item_keys(value: list[Any], keys: tuple[str, ...] | None) -> list[dict[str, Any]] | None:
    """Each item's key when ``value`` is a map list whose items all carry distinct keys, else None (atomic)."""
    if not keys or not value:
        return None
    found = [item_key(i, keys) for i in value]
    if any(k is None for k in found):
        return None
    encoded = [json.dumps(k, sort_keys=True) for k in found]
    return found if len(set(encoded)) == len(encoded) else None  # type: ignore[return-value]


def _key(key: dict[str, Any]) -> str:
    return "k:" + json.dumps(key, sort_keys=True, separators=(",", ":"))


def _fields(prefix: Path) -> tuple[str, ...]:
    return tuple(e[2:] for e in prefix if e.startswith("f:"))


def leaves(value: Any, prefix: Path = (), keys_for: KeysFor = _atomic) -> dict[Path, Any]:
    """Every owned leaf of ``value``: scalars, atomic lists and empty maps, by FieldsV1 path; map lists (by the
    schema, ``keys_for``) by item key."""
    out: dict[Path, Any] = {}
    if isinstance(value, dict) and value:
        for k, v in value.items():
            if v is not None:
                out.update(leaves(v, (*prefix, f"f:{k}"), keys_for))
    elif isinstance(value, list) and (keys := _item_keys(value, keys_for(_fields(prefix)))) is not None:
        for item, key in zip(value, keys, strict=True):
            out.update(leaves(item, (*prefix, _key(key)), keys_for))
    elif prefix:
        out[prefix] = value
    return out


def tracked(obj: dict[str, Any], has_status: bool) -> dict[str, Any]:
    """The part of an object field managers own (not apiVersion/kind/name, server metadata, or status)."""
    skip = {"apiVersion", "kind", "metadata"} | ({"status"} if has_status else set())
    out = {k: v for k, v in obj.items() if k not in skip}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k in _META_TRACKED}
    if meta:
        out["metadata"] = meta
    return out


def _step(node: Any, elem: str, create: bool) -> Any:
    if elem.startswith("f:"):
        if not isinstance(node, dict):
            return _MISSING
        if elem[2:] not in node and create:
            node[elem[2:]] = {}
        return node.get(elem[2:], _MISSING)
    key = _item(elem)
    if not isinstance(node, list):
        return _MISSING
    for item in node:
        if isinstance(item, dict) and item_key(item, tuple(key)) == key:
            return item
    if create:
        node.append(dict(key))
        return node[-1]
    return _MISSING


def get_at(obj: Any, path: Path) -> Any:
    node = obj
    for elem in path:
        node = _step(node, elem, create=False)
        if node is _MISSING:
            break
    return node


def set_at(obj: dict[str, Any], path: Path, value: Any) -> None:
    node: Any = obj
    for i, elem in enumerate(path[:-1]):
        nxt = path[i + 1]
        if elem.startswith("f:") and isinstance(node, dict):
            want = list if nxt.startswith("k:") else dict
            if not isinstance(node.get(elem[2:]), want):
                node[elem[2:]] = want()
        node = _step(node, elem, create=True)
    last = path[-1]
    if last.startswith("f:"):
        if value == {} and isinstance(node.get(last[2:]), dict):
            return  # an empty map only claims the map; keep what others put in it
        node[last[2:]] = copy.deepcopy(value)


def del_at(obj: dict[str, Any], path: Path) -> None:
    """Remove a leaf, then the maps and keyed items that only existed to hold it."""
    chain = [obj]
    for elem in path[:-1]:
        nxt = _step(chain[-1], elem, create=False)
        if nxt is _MISSING:
            return
        chain.append(nxt)
    in_key = len(path) > 1 and path[-2].startswith("k:") and path[-1][2:] in _item(path[-2])
    if not in_key and isinstance(chain[-1], dict):
        chain[-1].pop(path[-1][2:], None)  # a keyed item's key fields go with the item, below
    for depth in range(len(path) - 2, -1, -1):
        child, elem, parent = chain[depth + 1], path[depth], chain[depth]
        if elem.startswith("k:"):
            key = _item(elem)
            if not isinstance(child, dict) or set(child) - set(key):
                return
            parent[:] = [i for i in parent if not (isinstance(i, dict) and item_key(i, tuple(key)) == key)]
        else:
            if child not in ({}, []):
                return
            parent.pop(elem[2:], None)


def _item(elem: str) -> dict[str, Any]:
    """The key fields of a ``k:{...}`` path element."""
    return dict(json.loads(elem[2:])) if elem.startswith("k:") else {}


def to_fields(paths: set[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for elem in path:
            node = node.setdefault(elem, {})
            if elem.startswith("k:"):
                node.setdefault(".", {})
    return root


def from_fields(fields: dict[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for k, v in fields.items():
        if k == ".":
            continue
        children = {c for c in v if c != "."}
        out |= from_fields(v, (*prefix, k)) if children else {(*prefix, k)}
    return out


def owners(obj: dict[str, Any] | None) -> dict[tuple[str, str], tuple[str, set[Path]]]:
    """(manager, operation) -> (apiVersion, owned paths), from metadata.managedFields."""
    out = {}
    for mf in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        if mf.get("subresource"):
            continue
        out[(mf["manager"], mf["operation"])] = (mf.get("apiVersion", ""), from_fields(mf.get("fieldsV1") or {}))
    return out


def managed_fields(own: dict[tuple[str, str], tuple[str, set[Path]]], now: str) -> list[dict[str, Any]]:
    return [
        {
            "manager": m,
            "operation": op,
            "apiVersion": av,
            "time": now,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields(paths),
        }
        for (m, op), (av, paths) in own.items()
        if paths
    ]


def dotted(path: Path) -> str:
    out = ""
    for elem in path:
        key = ",".join(f"{k}={json.dumps(v)}" for k, v in _item(elem).items())
        out += f".{elem[2:]}" if elem.startswith("f:") else f"[{key}]"
    return out


def apply(
    live: dict[str, Any], applied: dict[str, Any], manager: str, force: bool, has_status: bool
) -> tuple[dict[str, Any], dict[tuple[str, str], tuple[str, set[Path]]]]:
    """Merge an applied configuration into ``live`` (``{}`` when creating); returns (object, new owners)."""
    own = owners(live)
    me = (manager, "Apply")
    prev = own.get(me, ("", set()))[1]
    keys_for = list_keys(applied)
    want = leaves(tracked(applied, has_status), keys_for=keys_for)
    have = leaves(tracked(live, has_status), keys_for=keys_for)
    conflicts = []
    for path, val in want.items():
        if have.get(path, _MISSING) in (_MISSING, val):
            continue
        for key, (av, paths) in own.items():
            if key != me and path in paths:
                conflicts.append((key[0], av, path))
    if conflicts and not force:
        raise SsaConflict(conflicts)
    for _mgr, _av, path in conflicts:
        for key, (av, paths) in own.items():
            if key != me:
                own[key] = (av, paths - {path})
    out = json.loads(json.dumps(live))
    for path, val in want.items():
        set_at(out, path, val)
    others: set[Path] = set().union(*(p for k, (_, p) in own.items() if k != me))
    for path in sorted(prev - set(want) - others, key=len, reverse=True):
        del_at(out, path)
    own[me] = (applied.get("apiVersion", ""), set(want))
    return out, own


def record_update(
    old: dict[str, Any] | None, new: dict[str, Any], manager: str, has_status: bool
) -> dict[tuple[str, str], tuple[str, set[Path]]]:
    """A non-apply write: its manager owns what it changed; everyone loses changed and removed fields."""
    own = owners(old)
    keys_for = list_keys(new)
    before = leaves(tracked(old or {}, has_status), keys_for=keys_for)
    after = leaves(tracked(new, has_status), keys_for=keys_for)
    changed = {p for p, v in after.items() if before.get(p, _MISSING) != v}
    lost = changed | (set(before) - set(after))
    own = {k: (av, paths - lost) for k, (av, paths) in own.items()}
    av, mine = own.get((manager, "Update"), (new.get("apiVersion", ""), set()))
    own[(manager, "Update")] = (new.get("apiVersion", av), mine | changed)
    return own


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (also used for strategic merge patch: the fake has no patch strategies)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(doc: Any, pointer: str) -> tuple[Any, str | int]:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    if not parts:
        raise PatchError("the root cannot be patched")
    node = doc
    for p in parts[:-1]:
        try:
            node = node[int(p)] if isinstance(node, list) else node[p]
        except (KeyError, IndexError, ValueError) as err:
            raise PatchError(f"path {pointer} not found") from err
    last: str | int = parts[-1]
    if isinstance(node, list):
        last = len(node) if last == "-" else int(last)
    return node, last


def json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 JSON patch."""
    doc = copy.deepcopy(doc)
    for op in ops:
        kind = op.get("op")
        if kind in ("move", "copy"):
            src, key = _pointer(doc, op["from"])
            value = copy.deepcopy(src[key])
            if kind == "move":
                del src[key]
            op = {"op": "add", "path": op["path"], "value": value}
            kind = "add"
        node, key = _pointer(doc, op["path"])
        try:
            if kind == "add":
                node.insert(key, op["value"]) if isinstance(node, list) else node.__setitem__(key, op["value"])
            elif kind == "replace":
                if isinstance(node, dict) and key not in node:
                    raise KeyError(key)
                node[key] = op["value"]
            elif kind == "remove":
                del node[key]
            elif kind == "test":
                if node[key] != op["value"]:
                    raise PatchError(f"test failed at {op['path']}")
            else:
                raise PatchError(f"unknown op {kind!r}")
        except (KeyError, IndexError, TypeError) as err:
            raise PatchError(f"path {op['path']} not found") from err
    return doc
