"""Two add-ons whose real behaviour the platform must survive: the aggregated `metrics.k8s.io` API that K3s
serves by default through its bundled metrics-server, and MetalLB's validating webhook.

Modelled on what a real cluster does, so the platform's client meets it as it would there:
- kube-apiserver lists an APIService's group in `/apis` as soon as the APIService exists, and answers 503 for
  the group's paths while the backing service is not ready ("the server is currently unable to handle the
  request"; kube-aggregator, pkg/apiserver/handler_proxy.go), as during a K3s start or a metrics-server restart.
- metrics-server builds PodMetrics from the pod's name, namespace and labels and the time: no uid, no owner
  (metrics-server, pkg/api/pod.go: `metrics.PodMetrics{ObjectMeta: metav1.ObjectMeta{Name, Namespace, Labels,
  CreationTimestamp}}`), so a label selector finds the PodMetrics of every labelled pod.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tests.k8s.fake_common import label_match
from tests.k8s.fake_store import ApiError, Obj

if TYPE_CHECKING:
    from tests.k8s.fake_apiserver import FakeApiServer

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
UNAVAILABLE = "the server is currently unable to handle the request"


def route(fake: FakeApiServer, method: str, rest: list[str], query: dict[str, str]) -> tuple[int, Any]:
    """``rest``: the path after /apis/metrics.k8s.io/v1beta1."""
    if fake.metrics_unavailable_requests > 0:
        fake.metrics_unavailable_requests -= 1
        raise ApiError(503, "ServiceUnavailable", UNAVAILABLE)
    if not rest:
        return 200, fake.registry.resource_list(GROUP, VERSION)
    ns = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        ns, rest = rest[1], rest[2:]
    if method != "GET" or rest[0] not in ("pods", "nodes") or len(rest) > 2:
        raise ApiError(
            405, "MethodNotAllowed", f"the server does not allow this method on the requested resource ({method})"
        )
    kind = "PodMetrics" if rest[0] == "pods" else "NodeMetrics"
    source = fake.rtype("v1", "Pod" if kind == "PodMetrics" else "Node")
    items = [
        _metrics(obj)
        for obj in fake.store.items(source, ns)
        if label_match(query.get("labelSelector", ""), obj["metadata"].get("labels") or {})
    ]
    if len(rest) == 2:
        found = [i for i in items if i["metadata"]["name"] == rest[1]]
        if not found:
            raise ApiError(404, "NotFound", f'{rest[0]}.{GROUP} "{rest[1]}" not found')
        return 200, {"kind": kind, "apiVersion": f"{GROUP}/{VERSION}", **found[0]}
    return 200, {"kind": f"{kind}List", "apiVersion": f"{GROUP}/{VERSION}", "metadata": {}, "items": items}


def _metrics(obj: Obj) -> Obj:
    meta = obj["metadata"]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out: Obj = {
        "metadata": {"name": meta["name"], "labels": dict(meta.get("labels") or {}), "creationTimestamp": now},
        "timestamp": now,
        "window": "15s",
    }
    if meta.get("namespace"):
        out["metadata"]["namespace"] = meta["namespace"]
        containers = (obj.get("spec") or {}).get("containers") or []
        out["containers"] = [{"name": c["name"], "usage": {"cpu": "1m", "memory": "8Mi"}} for c in containers]
    else:
        out["usage"] = {"cpu": "100m", "memory": "512Mi"}
    return out


WEBHOOK_REFUSAL = (
    'Internal error occurred: failed calling webhook "ipaddresspoolvalidationwebhook.metallb.io": failed to call '
    'webhook: Post "https://metallb-webhook-service.metallb-system.svc:443/validate-metallb-io-v1beta1-ipaddresspool'
    '?timeout=10s": x509: certificate signed by unknown authority'
)


def admit_metallb(fake: FakeApiServer, rt: Any) -> None:
    """MetalLB >= v0.13 registers `metallb-webhook-configuration` (failurePolicy: Fail, sideEffects: None, so dry
    runs are sent too); its server loads the certificate its cert-rotator writes only after the controller is
    Available, and kube-apiserver refuses metallb.io writes meanwhile with this message (metallb#1540, #1597)."""
    if rt.group != "metallb.io" or fake.metallb_webhook_refusals <= 0:
        return
    hooks = fake.registry.by_kind("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration")
    if hooks is None or fake.store.find(hooks, None, "metallb-webhook-configuration") is None:
        return
    fake.metallb_webhook_refusals -= 1
    raise ApiError(500, "InternalError", WEBHOOK_REFUSAL)
