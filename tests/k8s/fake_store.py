"""The fake API server's object store: CRUD with the real server's metadata, errors and selectors."""

from __future__ import annotations

import base64
import ipaddress
import threading
import uuid
from collections.abc import Callable
from typing import Any

from tests.k8s import fake_ssa as ssa
from tests.k8s.fake_common import (
    ApiError,
    Obj,
    apply_conflict,
    bad_request,
    clone,
    decode,
    field_match,
    label_match,
    name_problem,
    not_found,
    now,
    same_object,
    spec_part,
)
from tests.k8s.fake_services import node_ports
from tests.k8s.fake_types import Registry, ResourceType

__all__ = ["ApiError", "Obj", "Store", "clone", "decode", "now"]

_SERVER_META = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


class Store:
    """Objects by (group, plural, namespace, name); one global resourceVersion counter."""

    def __init__(self, registry: Registry, service_cidr: str, cluster_dns: str) -> None:
        self.registry = registry
        self.lock = threading.RLock()
        self.objects: dict[tuple[str, str, str, str], Obj] = {}
        self.rv = 0
        self.network = ipaddress.ip_network(service_cidr)
        self.cluster_dns = cluster_dns
        # The API server validates every write against the type's schema and refuses an invalid one with 422
        # Invalid: set by the fake to the real 1.31 and CRD schemas (tests/k8s/schemas.py).
        self.check: Callable[[Obj], None] | None = None

    # --- reads -------------------------------------------------------------------------------------------
    def find(self, rt: ResourceType, ns: str | None, name: str) -> Obj | None:
        return self.objects.get((rt.group, rt.plural, ns or "", name))

    def _view(self, rt: ResourceType, obj: Obj) -> Obj:
        out = clone(obj)
        out["apiVersion"] = rt.api_version
        return out

    def items(self, rt: ResourceType, ns: str | None = None) -> list[Obj]:
        """Stored objects of a type, uncopied: for controllers that only read them."""
        want = (rt.group, rt.plural)
        return [o for (g, p, ons, _), o in self.objects.items() if (g, p) == want and ns in (None, ons)]

    def get(self, rt: ResourceType, ns: str | None, name: str) -> Obj:
        obj = self.find(rt, ns, name)
        if obj is None:
            raise not_found(rt, name)
        return self._view(rt, obj)

    def list(self, rt: ResourceType, ns: str | None, labels: str = "", fields: str = "") -> list[Obj]:
        out = []
        for (group, plural, ons, _), obj in sorted(self.objects.items()):
            if (group, plural) != (rt.group, rt.plural) or (ns and ons != ns):
                continue
            if label_match(labels, obj["metadata"].get("labels") or {}) and field_match(fields, obj):
                out.append(self._view(rt, obj))
        return out

    # --- writes ------------------------------------------------------------------------------------------
    def create(self, rt: ResourceType, ns: str | None, body: Obj, manager: str, dry_run: bool = False) -> Obj:
        obj = self._prepare(rt, ns, body)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        self._validate_new(rt, ns, obj)
        if self.find(rt, ns, meta["name"]) is not None:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{rt.qualified} "{meta["name"]}" already exists',
                {"name": meta["name"], "group": rt.group, "kind": rt.plural},
            )
        if rt.status:
            obj.pop("status", None)
        return self._commit(rt, None, obj, ssa.record_update(None, obj, manager, rt.status), dry_run)

    def update(
        self,
        rt: ResourceType,
        ns: str | None,
        name: str,
        body: Obj,
        manager: str,
        dry_run: bool = False,
        subresource: str | None = None,
    ) -> Obj:
        old = self.find(rt, ns, name)
        if old is None:
            raise not_found(rt, name)
        new = self._prepare(rt, ns, body, name)
        rv = new["metadata"].get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object '
                "has been modified; please apply your changes to the latest version and try again",
                {"name": name, "group": rt.group, "kind": rt.plural},
            )
        return self._write(rt, old, new, manager, dry_run, subresource)

    def patch(
        self,
        rt: ResourceType,
        ns: str | None,
        name: str,
        ptype: str,
        raw: bytes,
        manager: str | None,
        dry_run: bool = False,
        force: bool = False,
        subresource: str | None = None,
    ) -> Obj:
        if ptype == "application/apply-patch+yaml":
            if not manager:
                raise bad_request(
                    'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
                )
            return self.apply(rt, ns, name, decode(raw) or {}, manager, force, dry_run)
        old = self.find(rt, ns, name)
        if old is None:
            raise not_found(rt, name)
        try:
            body = decode(raw)
            if ptype == "application/json-patch+json":
                new = ssa.json_patch(old, body)
            elif ptype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                new = ssa.merge_patch(old, body)  # strategic merge is treated as a JSON merge patch
            else:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format "
                    f"- accepted media types include: application/merge-patch+json ({ptype})",
                )
        except (ssa.PatchError, AttributeError, TypeError) as err:
            msg = f"the server rejected our request due to an error in our request: {err}"
            raise ApiError(422, "Invalid", msg) from err
        return self._write(rt, old, self._prepare(rt, ns, new, name), manager or "unknown", dry_run, subresource)

    def apply(
        self, rt: ResourceType, ns: str | None, name: str, body: Obj, manager: str, force: bool, dry_run: bool = False
    ) -> Obj:
        applied = self._prepare(rt, ns, body, name)
        old = self.find(rt, ns, name)
        if old is None:
            self._validate_new(rt, ns, applied)
        base = (
            clone(old)
            if old
            else {
                "apiVersion": rt.api_version,
                "kind": rt.kind,
                "metadata": {"name": name, **({"namespace": ns} if ns else {})},
            }
        )
        try:
            new, own = ssa.apply(base, applied, manager, force, rt.status)
        except ssa.SsaConflict as err:
            raise apply_conflict(err) from err
        if rt.status and old is None:
            new.pop("status", None)
        return self._commit(rt, old, new, own, dry_run)

    def delete(
        self, rt: ResourceType, ns: str | None, name: str, dry_run: bool = False, propagation: str | None = None
    ) -> Obj:
        """An object with finalizers is only marked (deletionTimestamp: Terminating) and answered with 200 and
        the object; it goes once its finalizers are removed (kubernetes.io/docs/concepts/overview/
        working-with-objects/finalizers/). Its dependents go with it, or are orphaned (their ownerReference
        dropped) with propagationPolicy Orphan, which is the API's default for batch/v1 Jobs (kubernetes
        pkg/registry/batch/job/strategy.go, DefaultGarbageCollectionPolicy): why dagster-k8s deletes a run's pods
        itself after its Job."""
        obj = self.find(rt, ns, name)
        if obj is None:
            raise not_found(rt, name)
        if obj["metadata"].get("finalizers"):
            if dry_run or obj["metadata"].get("deletionTimestamp"):
                return self._view(rt, obj)
            marked = clone(obj)
            marked["metadata"].update(deletionTimestamp=now(), deletionGracePeriodSeconds=0)
            self.rv += 1
            marked["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[(rt.group, rt.plural, ns or "", name)] = marked
            return self._view(rt, marked)
        if not dry_run:
            if propagation == "Orphan" or (propagation is None and (rt.group, rt.kind) == ("batch", "Job")):
                self._orphan(obj["metadata"]["uid"])
            self._remove(rt, obj)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": obj["metadata"]["uid"]},
        }

    def put_internal(self, rt: ResourceType, obj: Obj) -> Obj:
        """A controller's write (status and spec alike, no field manager); a no-op keeps resourceVersion."""
        meta = obj["metadata"]
        old = self.find(rt, meta.get("namespace"), meta["name"])
        if old is None:
            return self._commit(rt, None, clone(obj), ssa.record_update(None, obj, "k3s", rt.status), False)
        return self._commit(rt, old, clone(obj), None, False, keep_status=False)

    # --- internals ---------------------------------------------------------------------------------------
    def _prepare(self, rt: ResourceType, ns: str | None, body: Obj, name: str | None = None) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request is not a JSON object")
        obj = clone(body)
        if obj.get("kind") not in (None, rt.kind):
            raise bad_request(f"the kind of the provided object ({obj['kind']}) does not match the request ({rt.kind})")
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj.setdefault("metadata", {}) or {}
        obj["metadata"] = meta
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if name is not None:
            if meta.get("name") not in (None, name):
                raise bad_request(
                    f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
                )
            meta["name"] = name
        return obj

    def _validate_new(self, rt: ResourceType, ns: str | None, obj: Obj) -> None:
        name = obj["metadata"].get("name") or ""
        problem = name_problem(rt, name)
        if problem:
            msg = f"metadata.name: {problem}"
            raise ApiError(
                422,
                "Invalid",
                f'{rt.kind} "{name}" is invalid: {msg}',
                {
                    "name": name,
                    "group": rt.group,
                    "kind": rt.kind,
                    "causes": [{"reason": "FieldValueInvalid", "message": msg, "field": "metadata.name"}],
                },
            )
        if rt.namespaced and self.objects.get(("", "namespaces", "", ns or "")) is None:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})

    def _write(self, rt: ResourceType, old: Obj, new: Obj, manager: str, dry_run: bool, sub: str | None) -> Obj:
        if sub == "status":  # only .status changes through the status subresource
            merged = clone(old)
            merged["status"] = new.get("status")
            return self._commit(rt, old, merged, None, dry_run, keep_status=False)
        return self._commit(rt, old, new, ssa.record_update(old, new, manager, rt.status), dry_run)

    def _commit(
        self, rt: ResourceType, old: Obj | None, new: Obj, own: Any, dry_run: bool, keep_status: bool = True
    ) -> Obj:
        meta = new["metadata"]
        if old is not None:
            for key in _SERVER_META:
                if key in old["metadata"]:
                    meta[key] = clone(old["metadata"][key])
            if rt.status and keep_status:  # the main endpoint ignores .status when there is a subresource
                new.pop("status", None)
                if "status" in old:
                    new["status"] = clone(old["status"])
            if spec_part(old) != spec_part(new):
                meta["generation"] = old["metadata"].get("generation", 1) + 1
        else:
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        if own is not None:
            meta["managedFields"] = ssa.managed_fields(own, now())
        self._server_defaults(rt, old, new)
        if own is not None and self.check is not None:
            self.check(new)
        if old is not None and same_object(old, new):
            return self._view(rt, old)
        if old is not None and meta.get("deletionTimestamp") and not meta.get("finalizers") and not dry_run:
            self._remove(rt, old)  # the last finalizer went: the object is deleted now
            return self._view(rt, new)
        if not dry_run:
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            self.objects[(rt.group, rt.plural, meta.get("namespace") or "", meta["name"])] = new
            if rt.kind == "CustomResourceDefinition":
                self.registry.add_crd(new)
        else:
            meta.setdefault("resourceVersion", old["metadata"]["resourceVersion"] if old else "0")
        return self._view(rt, new)

    def _server_defaults(self, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        if rt.kind == "Secret" and "stringData" in new:
            # stringData is write-only: merged into data, over its keys, and dropped (kubernetes
            # pkg/apis/core/v1/conversion.go, Convert_v1_Secret_To_core_Secret). The keys so written are owned
            # by no field manager, so a later apply without them leaves them in data (kubernetes#89765).
            data = new.setdefault("data", {}) or {}
            new["data"] = data
            for key, value in (new.pop("stringData") or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
        if rt.kind == "Service":
            spec = new.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            new.setdefault("status", {"loadBalancer": {}})
            prev = (old or {}).get("spec", {})
            if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
                spec["clusterIP"] = prev.get("clusterIP") or self._allocate_ip()
                spec["clusterIPs"] = [spec["clusterIP"]]
            node_ports([o for (_, plural, _, _), o in self.objects.items() if plural == "services"], new, prev)
        elif rt.kind == "CustomResourceDefinition":
            spec = new.get("spec", {})
            conds = [
                {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": now()}
                for t, r, m in (
                    ("NamesAccepted", "NoConflicts", "no conflicts found"),
                    ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                )
            ]
            if old and old.get("status", {}).get("conditions"):
                conds = old["status"]["conditions"]
            new["status"] = {
                "conditions": conds,
                "acceptedNames": spec.get("names", {}),
                "storedVersions": [v["name"] for v in spec.get("versions", []) if v.get("storage")],
            }

    def _allocate_ip(self) -> str:
        used = {o.get("spec", {}).get("clusterIP") for (g, p, _, _), o in self.objects.items() if p == "services"}
        for ip in list(self.network.hosts())[1:]:
            if str(ip) not in used and str(ip) != self.cluster_dns:
                return str(ip)
        raise ApiError(500, "InternalError", "Internal error occurred: failed to allocate a serviceIP: range is full")

    def _orphan(self, uid: str) -> None:
        for key, other in list(self.objects.items()):
            refs = other["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs):
                kept = clone(other)
                kept["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                self.objects[key] = kept

    def _remove(self, rt: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        self.objects.pop((rt.group, rt.plural, meta.get("namespace") or "", meta["name"]), None)
        doomed = []
        for key, other in self.objects.items():
            owners = {r.get("uid") for r in other["metadata"].get("ownerReferences") or []}
            in_ns = rt.kind == "Namespace" and key[2] == meta["name"]
            if meta["uid"] in owners or in_ns:
                doomed.append(key)
        if rt.kind == "CustomResourceDefinition":
            gone = self.registry.remove_crd(meta["name"])
            doomed += [k for k in self.objects if any((k[0], k[1]) == (t.group, t.plural) for t in gone)]
        for key in doomed:
            other = self.objects.get(key)
            other_rt = next((t for t in self.registry.all() if (t.group, t.plural) == key[:2]), None)
            if other is not None:
                if other_rt is None:
                    self.objects.pop(key, None)
                else:
                    self._remove(other_rt, other)
