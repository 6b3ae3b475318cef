"""Who reaches what in the k3s target, on the API fake: k3s.exposure decides per service (a MetalLB address on the
LAN, or ClusterIP reached through the platform's port-forward), and anything else on the LAN is flagged."""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import json
import re
import threading
import urllib.request
from collections.abc import Iterator

import dagster as dg

from tests.k8s.scenario_k3s import Platform, changes, checks, metadata


def test_exposure_is_a_decision_per_service_and_anything_else_on_the_lan_is_flagged(installed: Platform) -> None:
    p = installed
    endpoints = p.state_dir / "endpoints.json"
    assert json.loads(endpoints.read_text())["postgres"] == {"service": "postgres", "namespace": "mlops", "port": 5432}
    postgres_svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "postgres", "namespace": "mlops"}}

    p.write_config(exposure={"postgres": "lan"})  # a deliberate choice: Postgres on the LAN
    lan = p.run(["gitops", "postgres"])
    live = p.cluster().kube().get(postgres_svc)
    assert live is not None and live["spec"]["type"] == "LoadBalancer"
    ip = live["status"]["loadBalancer"]["ingress"][0]["ip"]
    assert json.loads(endpoints.read_text())["postgres"] == {"host": ip, "port": 5432}
    assert changes(lan)["postgres"] == f"address recorded: {ip}:5432 (LAN)"
    assert (
        checks(lan)["only_declared_on_lan"][0]
        and f"Service mlops/postgres at {ip}:5432" in checks(lan)["only_declared_on_lan"][1]
    )

    p.write_config(exposure={})  # back to the default: off the LAN, its pool address given back
    back = p.run(["gitops", "postgres"])
    live = p.cluster().kube().get(postgres_svc)
    assert live is not None and live["spec"]["type"] == "ClusterIP" and not live["status"]["loadBalancer"]
    assert "ports" in live["spec"] and all("nodePort" not in port for port in live["spec"]["ports"])
    assert json.loads(endpoints.read_text())["postgres"]["service"] == "postgres"
    assert "mlops/postgres" not in checks(back)["only_declared_on_lan"][1]

    # someone exposes a debug port by hand: the check names it, the drift sensor alerts once
    debug = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "pg-debug", "namespace": "default"},
        "spec": {"type": "NodePort", "selector": {"app.kubernetes.io/name": "postgres"}, "ports": [{"port": 5432}]},
    }
    p.cluster().kube().apply([debug], field_manager="kubectl-client-side-apply")
    passed, text = checks(p.run(["gitops"]))["only_declared_on_lan"]
    assert not passed and re.match(r"not declared on the LAN: Service default/pg-debug at node ports 3\d{4} \(", text)
    message, _ = p.sense()
    assert "Service default/pg-debug reachable from the LAN" in message
    assert [a["title"] for a in p.alerts()] == ["Service default/pg-debug reachable from the LAN"]


def test_the_ml_location_reaches_the_data_api_and_inference_argo_cd_deployed(platform: Platform) -> None:
    """In k3s the ML location's data API and inference service are the Argo CD Applications, not local processes;
    its resources find them at their LoadBalancer addresses."""
    from ml_assets.definitions import build_definitions as build_ml_definitions

    platform.run()
    ml = build_ml_definitions(platform.config)
    # without the function checks: no real service answers behind the fake's LoadBalancer IPs
    job = dg.define_asset_job("serving", dg.AssetSelection.assets("data_api", "inference_service").without_checks())
    result = (
        dg.Definitions.merge(ml, dg.Definitions(jobs=[job]))
        .resolve_job_def("serving")
        .execute_in_process(instance=platform.instance)
    )
    assert sorted(changes(result)) == ["data_api", "inference_service"]
    data_api = metadata(result, "data_api")
    assert (data_api["application"], data_api["sync"], data_api["health"]) == ("data-api", "Synced", "Healthy")
    # the data API stays in the cluster (k3s.exposure's default): the workstation reaches it through a port-forward
    assert "`kubectl -n mlops port-forward svc/data-api 8001:8001`" in data_api["address"]
    with _http_answering(b"the data-api pod") as behind_pod:
        platform.fake.port_forwards[("mlops", "data-api", 8001)] = behind_pod
        root = ml.resources["batch_source"].root()
        assert root.startswith("http://127.0.0.1:") and not root.endswith(":8001")
        assert urllib.request.urlopen(f"{root}/health", timeout=10).read() == b"the data-api pod"
    # the inference API is on the LAN: a MetalLB pool address
    address, _ = metadata(result, "inference_service")["address"].split(" ")
    host, _ = address.split(":")
    assert ipaddress.IPv4Address(host) in ipaddress.IPv4Network("127.0.0.0/24")
    assert ml.resources["inference_resource"].url == f"http://{address}"
    assert ml.resources["data_api_resource"]._admin_headers()["Authorization"].startswith("Bearer ")


@contextlib.contextmanager
def _http_answering(body: bytes) -> Iterator[tuple[str, int]]:
    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield "127.0.0.1", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_node_ports_a_lan_service_had_before_are_flagged_until_it_is_recreated(installed: Platform) -> None:
    """A LoadBalancer keeps the node ports it was given (the API server puts them back on an update that omits
    them), so a Service made before allocateLoadBalancerNodePorts: false still opens them on the host."""
    p = installed
    kube = p.cluster().kube()
    ref = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "seaweedfs", "namespace": "mlops"}}
    live = kube.get(ref)
    assert live is not None and all("nodePort" not in port for port in live["spec"]["ports"])
    kube.delete(ref)  # as an older release made it: with node ports
    older = {**ref, "spec": {**live["spec"], "allocateLoadBalancerNodePorts": True}}
    older["spec"].pop("clusterIP"), older["spec"].pop("clusterIPs")
    kube.apply([older], field_manager="argocd-controller")
    p.fake.sync_applications()  # Argo CD applies today's render over it
    live = kube.get(ref)
    assert live is not None and live["spec"]["allocateLoadBalancerNodePorts"] is False
    assert [port.get("nodePort") for port in live["spec"]["ports"]] != [None]  # kept
    passed, text = checks(p.run(["gitops"]))["only_declared_on_lan"]
    assert not passed and re.search(r"Service mlops/seaweedfs at 127\.0\.0\.2\d\d:8333; node ports 3\d{4} \(not", text)

    kube.delete(ref)  # the README's remedy: Argo CD recreates it as rendered
    p.fake.sync_applications()
    live = kube.get(ref)
    assert live is not None and all("nodePort" not in port for port in live["spec"]["ports"])
    assert checks(p.run(["gitops"]))["only_declared_on_lan"][0]
