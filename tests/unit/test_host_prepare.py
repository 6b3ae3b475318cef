"""Host preparation against a scripted host: exact command sets per OS family and setting, idempotence, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from platform_core.host.executor import HostCommandError, PlanExecutor
from platform_core.host.prepare import RANCHER_REPO, HostPrepError, prepare_host
from tests.hosts import Answer, debian_host, k3s_cfg, rocky_host

COMMON_TAIL = [
    "write /etc/modules-load.d/k3s.conf",
    "modprobe br_netfilter",
    "modprobe overlay",
    "write /etc/sysctl.d/90-k3s.conf",
    "sysctl --system",
]


def test_rhel_disable_permissive_applies_exact_commands_then_second_run_is_no_change() -> None:
    host = rocky_host()
    report = prepare_host(host, k3s_cfg())
    assert report.os is not None and (report.os.id, report.os.family, report.os.version) == ("rocky", "rhel", "9.4")
    assert [(s.name, s.status) for s in report.steps] == [
        ("packages", "changed"),
        ("iscsid", "changed"),
        ("firewalld", "changed"),
        ("selinux", "changed"),
        ("kernel modules", "changed"),
        ("sysctl", "changed"),
    ]
    assert host.mutations == [
        "dnf install -y iscsi-initiator-utils nfs-utils bind-utils",
        "systemctl enable --now iscsid",
        "systemctl disable --now firewalld",
        "setenforce 0",
        "write /etc/selinux/config",
        *COMMON_TAIL,
    ]
    assert host.files["/etc/selinux/config"] == b"# SELinux\nSELINUX=permissive\nSELINUXTYPE=targeted\n"
    assert host.files["/etc/modules-load.d/k3s.conf"] == b"br_netfilter\noverlay\n"
    assert host.files["/proc/sys/net/bridge/bridge-nf-call-iptables"] == b"1\n"
    assert report.summary() == "changed: packages, iscsid, firewalld, selinux, kernel modules, sysctl"

    host.mutations.clear()
    again = prepare_host(host, k3s_cfg())
    assert {s.status for s in again.steps} == {"already"}
    assert again.summary() == "no change" and not again.changed
    assert host.mutations == []


def test_debian_uses_apt_and_has_no_firewalld_or_selinux_steps() -> None:
    host = debian_host()  # a firewalld/SELinux probe would fail: the scripted host does not answer them
    report = prepare_host(host, k3s_cfg(firewalld="keep", selinux="enforcing"))
    assert [s.name for s in report.steps] == ["packages", "iscsid", "kernel modules", "sysctl"]
    assert host.mutations == [
        "env DEBIAN_FRONTEND=noninteractive apt-get update -q",
        "env DEBIAN_FRONTEND=noninteractive apt-get install -y -q open-iscsi nfs-common bind9-dnsutils",
        "systemctl enable --now iscsid",
        *COMMON_TAIL,
    ]
    assert any("ufw is left alone" in note for note in report.notes)
    assert not prepare_host(host, k3s_cfg()).changed


def test_firewalld_keep_opens_ports_and_trusts_cluster_cidrs() -> None:
    host = rocky_host()
    ports: dict[str, set[str]] = {"runtime": {"22/tcp"}, "permanent": {"22/tcp"}}
    sources: dict[str, set[str]] = {"runtime": set(), "permanent": set()}

    def lister(kind: str, table: dict[str, set[str]]) -> Answer:
        return lambda h: (0, " ".join(sorted(table[kind])))

    for kind, prefix in (("runtime", "firewall-cmd"), ("permanent", "firewall-cmd --permanent")):
        host.answers[f"{prefix} --list-ports"] = lister(kind, ports)
        host.answers[f"{prefix} --zone=trusted --list-sources"] = lister(kind, sources)
    wanted = ["6443/tcp", "10250/tcp", "8472/udp", "7946/tcp", "7946/udp", "80/tcp", "443/tcp"]
    add_ports = "firewall-cmd --permanent " + " ".join(f"--add-port={p}" for p in wanted)
    add_sources = "firewall-cmd --permanent --zone=trusted --add-source=10.44.0.0/16 --add-source=10.45.0.0/16"
    host.effects[add_ports] = lambda h: ports["permanent"].update(wanted)
    host.effects[add_sources] = lambda h: sources["permanent"].update({"10.44.0.0/16", "10.45.0.0/16"})
    host.effects["firewall-cmd --reload"] = lambda h: (
        ports.update(runtime=set(ports["permanent"])),
        sources.update(runtime=set(sources["permanent"])),
    )

    report = prepare_host(host, k3s_cfg(firewalld="keep", selinux="keep"))
    assert [s.name for s in report.steps] == ["packages", "iscsid", "firewalld", "kernel modules", "sysctl"]
    assert host.mutations[2:5] == [add_ports, add_sources, "firewall-cmd --reload"]
    assert "systemctl disable --now firewalld" not in host.mutations
    assert "SELinux left as it is (k3s.selinux keep)" in report.notes
    assert not prepare_host(host, k3s_cfg(firewalld="keep", selinux="keep")).changed


def test_selinux_enforcing_installs_the_k3s_selinux_policy_and_keeps_enforcing() -> None:
    host = rocky_host()
    report = prepare_host(host, k3s_cfg(selinux="enforcing"))
    # the repository first (as K3s's install.sh writes it), then the package: a stock Rocky 9 has no repo with it
    assert host.mutations.index("write /etc/yum.repos.d/rancher-k3s-common.repo") < host.mutations.index(
        "dnf install -y container-selinux k3s-selinux"
    )
    assert b"baseurl=https://rpm.rancher.io/k3s/stable/common/centos/9/noarch" in host.files[RANCHER_REPO]
    assert "setenforce 0" not in host.mutations and "write /etc/selinux/config" not in host.mutations
    assert "k3s-selinux" in next(s.why for s in report.steps if s.name == "selinux")
    assert host.files["/etc/selinux/config"].count(b"SELINUX=enforcing") == 1


def test_selinux_enforcing_in_airgap_installs_the_bundled_rpm(tmp_path: Path) -> None:
    (tmp_path / "selinux").mkdir()
    (tmp_path / "selinux" / "k3s-selinux-1.6-1.el9.noarch.rpm").write_bytes(b"rpm")
    host = rocky_host()
    host.effects["dnf install -y /var/tmp/k3s-selinux/k3s-selinux-1.6-1.el9.noarch.rpm"] = lambda h: h.answers.update(
        {"rpm -q k3s-selinux": (0, "k3s-selinux-1.6-1.el9.noarch")}
    )
    prepare_host(host, k3s_cfg(selinux="enforcing", install="airgap", offline_bundle_dir=str(tmp_path)))
    assert host.files["/var/tmp/k3s-selinux/k3s-selinux-1.6-1.el9.noarch.rpm"] == b"rpm"
    assert RANCHER_REPO not in host.files  # nothing fetched from outside


def test_selinux_enforcing_in_airgap_without_the_rpm_is_refused_before_any_change(tmp_path: Path) -> None:
    host = rocky_host()
    with pytest.raises(HostPrepError, match=r"k3s\.selinux enforcing in air-gap needs the k3s-selinux RPM"):
        prepare_host(host, k3s_cfg(selinux="enforcing", install="airgap", offline_bundle_dir=str(tmp_path)))
    assert host.mutations == []


def test_a_stock_rocky_has_no_repository_with_k3s_selinux() -> None:
    """The scripted VM tells the truth the old order hid: without Rancher's repository dnf finds nothing."""
    host = rocky_host()
    with pytest.raises(HostCommandError, match="k3s-selinux"):
        host.run(["dnf", "install", "-y", "container-selinux", "k3s-selinux"], sudo=True)


def test_selinux_already_disabled_counts_as_satisfied() -> None:
    host = rocky_host()
    host.answers["getenforce"] = (0, "Disabled")
    host.files["/etc/selinux/config"] = b"SELINUX=disabled\n"
    report = prepare_host(host, k3s_cfg())
    assert next(s.status for s in report.steps if s.name == "selinux") == "already"
    assert "setenforce 0" not in host.mutations


def test_plan_mode_runs_probes_and_records_instead_of_changing() -> None:
    host = rocky_host()
    plan = PlanExecutor(host)
    report = prepare_host(plan, k3s_cfg())
    assert host.mutations == [] and "/etc/modules-load.d/k3s.conf" not in host.files
    assert {s.status for s in report.steps} == {"would change"}
    packages = report.steps[0]
    assert packages.planned == ("run (sudo): dnf install -y iscsi-initiator-utils nfs-utils bind-utils",)
    sysctl_file = (
        b"net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\n"
    )
    assert report.steps[-1].planned == (
        f"write (sudo): /etc/sysctl.d/90-k3s.conf ({len(sysctl_file)} bytes, mode 644)",
        "run (sudo): sysctl --system",
    )
    assert report.summary().startswith("would change: packages")


def test_unknown_os_is_refused_before_any_change() -> None:
    host = rocky_host()
    host.files["/etc/os-release"] = b'NAME="Arch Linux"\nID=arch\n'
    with pytest.raises(HostPrepError, match=r"unsupported OS ID 'arch'") as err:
        prepare_host(host, k3s_cfg())
    assert "\n" not in str(err.value)
    assert host.mutations == []


def test_os_family_setting_overrides_detection() -> None:
    host = rocky_host()
    host.files["/etc/os-release"] = b'NAME="Some RHEL rebuild"\nID=myrhel\n'
    report = prepare_host(
        host, k3s_cfg().model_copy(update={"host": k3s_cfg().host.model_copy(update={"os_family": "rhel"})})
    )
    assert report.os is not None and report.os.family == "rhel"


def test_a_step_whose_probe_still_fails_after_apply_is_an_error() -> None:
    host = rocky_host()
    del host.effects["modprobe overlay"]  # the module does not load (e.g. missing from this kernel)
    with pytest.raises(HostPrepError, match="'kernel modules' was applied on scripted but its probe still fails"):
        prepare_host(host, k3s_cfg())
    assert "write /etc/sysctl.d/90-k3s.conf" not in host.mutations  # later steps did not run
