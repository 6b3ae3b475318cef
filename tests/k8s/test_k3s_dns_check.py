"""`cluster_dns_serves` asks CoreDNS a real question on the node (dig @cluster_dns for the API Service's name):
it passes on the answer K3s's CoreDNS gives and fails, naming what it got, when CoreDNS does not answer or answers
wrong — a kube-dns Service on the right IP is not enough."""

from __future__ import annotations

import pytest

from tests.hosts import coredns_query
from tests.k8s.scenario_k3s import Platform, checks

QUESTION = "kubernetes.default.svc.cluster.local @10.45.0.10"


@pytest.fixture
def installed(platform: Platform) -> Platform:
    """Only as far as K3s: the check under test belongs to k3s_cluster."""
    platform.run(["host", "k3s_cluster"])
    return platform


def test_coredns_answering_with_the_api_service_ip_passes(installed: Platform) -> None:
    passed, description = checks(installed.run(["k3s_cluster"]))["cluster_dns_serves"]
    assert passed, description
    assert description == f"kube-dns ClusterIP 10.45.0.10 (want 10.45.0.10); {QUESTION}: 10.45.0.1 (want 10.45.0.1)"


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ((9, "", ";; connection timed out; no servers could be reached"), "no answer (rc 9: ;; connection timed out"),
        ((0, "10.43.0.1\n"), "10.43.0.1 (want 10.45.0.1)"),  # a CoreDNS of the default CIDRs
        ((127, "", "sh: 1: dig: not found"), "no answer (rc 127: sh: 1: dig: not found)"),
    ],
)
def test_coredns_silent_or_wrong_fails_and_says_what_it_got(
    installed: Platform, answer: tuple[int, str, str] | tuple[int, str], said: str
) -> None:
    installed.host.answers[coredns_query(installed.host)] = answer
    result = installed.run(["k3s_cluster"], raise_on_error=False)
    passed, description = checks(result)["cluster_dns_serves"]
    assert not passed and f"{QUESTION}: {said}" in description


def test_a_retry_note_on_stdout_is_not_taken_for_an_answer(installed: Platform) -> None:
    """BIND 9.18's dig prints a note on stdout when a first try timed out, and still answers on the second."""
    note = ";; communications error to 10.45.0.10#53: timed out"
    installed.host.answers[coredns_query(installed.host)] = (0, f"{note}\n10.45.0.1\n")
    passed, description = checks(installed.run(["k3s_cluster"]))["cluster_dns_serves"]
    assert passed and f"{QUESTION}: 10.45.0.1 (want 10.45.0.1)" in description
