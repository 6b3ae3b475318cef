"""K3s install: rendered config, air-gap bundle verification, step plans, CIDR-change refusal, kubeconfig fetch."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from platform_core.cluster.k3s_install import (
    CONFIG_PATH,
    KUBECONFIG_PATH,
    K3sInstallError,
    NeedsRebuildError,
    cidr_change,
    fetch_kubeconfig,
    install_steps,
    installed_cidrs,
    render_k3s_config,
    resolve_install_mode,
    verify_bundle,
)
from platform_core.host.executor import LocalExecutor, PlanExecutor
from platform_core.host.prepare import run_steps
from tests.hosts import SYSTEMCTL, ScriptedHost, k3s_cfg

VERSION = "v1.31.4+k3s1"
OLD_DEFAULTS_CONFIG = "cluster-cidr: 10.42.0.0/16\nservice-cidr: 10.43.0.0/16\n"
KUBECONFIG = """apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EgZGF0YQ==
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Y2VydA==
    client-key-data: a2V5
"""


def test_rendered_config_for_the_seed_network() -> None:
    text = render_k3s_config(k3s_cfg())
    assert yaml.safe_load(text) == {
        "node-ip": "10.43.100.94",
        "cluster-cidr": "10.44.0.0/16",
        "service-cidr": "10.45.0.0/16",
        "cluster-dns": "10.45.0.10",
        "disable": ["servicelb", "traefik"],
        "write-kubeconfig-mode": "0600",
        "tls-san": ["10.43.100.94"],
    }
    assert render_k3s_config(k3s_cfg()) == text  # deterministic: the probe compares bytes


def make_bundle(root: Path, *, images: str = "k3s-airgap-images-amd64.tar.zst") -> Path:
    directory = root / "k3s" / VERSION
    directory.mkdir(parents=True)
    files = {"k3s": b"\x7fELF fake k3s binary", images: b"(zstd images)", "k3s-arm64": b"other arch"}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    (directory / "install.sh").write_text("#!/bin/sh\necho install\n")
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in files.items())
    (directory / "sha256sum-amd64.txt").write_text(sums)
    return directory


def test_bundle_with_matching_sums_is_accepted(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    files = verify_bundle(tmp_path, VERSION, "amd64")
    assert [(f.local.name, f.remote, f.mode) for f in files] == [
        ("k3s", "/usr/local/bin/k3s", 0o755),
        ("k3s-airgap-images-amd64.tar.zst", "/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst", 0o644),
        ("install.sh", "/usr/local/share/k3s/install.sh", 0o755),
    ]
    assert files[0].sha256 == hashlib.sha256(b"\x7fELF fake k3s binary").hexdigest()


def test_bundle_accepts_a_plain_tar_of_images(tmp_path: Path) -> None:
    make_bundle(tmp_path, images="k3s-airgap-images-amd64.tar")
    assert verify_bundle(tmp_path, VERSION, "amd64")[1].local.name == "k3s-airgap-images-amd64.tar"


def test_bundle_with_a_tampered_binary_is_refused(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path)
    (directory / "k3s").write_bytes(b"\x7fELF tampered")
    with pytest.raises(K3sInstallError, match=r"k3s has sha256 [0-9a-f]{64}, but sha256sum-amd64.txt says"):
        verify_bundle(tmp_path, VERSION, "amd64")


@pytest.mark.parametrize("missing", ["k3s-airgap-images-amd64.tar.zst", "install.sh", "sha256sum-amd64.txt"])
def test_bundle_missing_a_file_names_it_and_its_expected_path(tmp_path: Path, missing: str) -> None:
    directory = make_bundle(tmp_path)
    (directory / missing).unlink()
    with pytest.raises(K3sInstallError) as err:
        verify_bundle(tmp_path, VERSION, "amd64")
    assert f"missing {missing} (expected at {directory / missing})" in str(err.value)


def test_install_steps_refuse_a_bad_bundle_before_any_step(tmp_path: Path) -> None:
    with pytest.raises(K3sInstallError, match=r"missing sha256sum-amd64\.txt"):
        install_steps(k3s_cfg(), "airgap", tmp_path)


def test_online_and_airgap_plans_on_this_machine_change_nothing(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    cfg = k3s_cfg()
    config_write = f"write (sudo): {CONFIG_PATH} ({len(render_k3s_config(cfg))} bytes, mode 600)"

    online = run_steps(PlanExecutor(LocalExecutor()), install_steps(cfg, "online", None))
    assert [(s.name, s.status) for s in online] == [("k3s config", "would change"), ("k3s service", "would change")]
    assert online[0].planned == (config_write,)
    (run,) = online[1].planned
    assert run.startswith("run (sudo): sh -c ") and run.endswith(" sh https://get.k3s.io v1.31.4+k3s1")

    airgap = run_steps(PlanExecutor(LocalExecutor()), install_steps(cfg, "airgap", tmp_path))
    assert [s.name for s in airgap] == ["k3s config", "k3s binary", "k3s images", "k3s install script", "k3s service"]
    assert airgap[1].planned == ("write (sudo): /usr/local/bin/k3s (20 bytes, mode 755)",)
    assert airgap[4].planned == (
        "run (sudo): env INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_VERSION=v1.31.4+k3s1"
        " sh /usr/local/share/k3s/install.sh",
    )
    assert not Path(CONFIG_PATH).exists() and not Path("/usr/local/share/k3s/install.sh").exists()


def installed_host(config: str) -> ScriptedHost:
    answers = {
        "/usr/local/bin/k3s --version": (0, f"k3s version {VERSION} (a1b2c3d4)\ngo version go1.22.9"),
        f"{SYSTEMCTL} k3s": (0, "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\n"),
        "test -d /var/lib/rancher/k3s/server": (0, ""),
    }
    return ScriptedHost(answers, {CONFIG_PATH: config, KUBECONFIG_PATH: KUBECONFIG}, {})


def test_installed_cluster_with_our_config_is_no_change() -> None:
    cfg = k3s_cfg()
    host = installed_host(render_k3s_config(cfg))
    host.modes[CONFIG_PATH] = 0o600
    outcomes = run_steps(host, install_steps(cfg, "online", None))
    assert {o.status for o in outcomes} == {"already"} and host.mutations == []


def test_cidr_change_after_install_is_refused_as_needs_rebuild() -> None:
    host = installed_host(OLD_DEFAULTS_CONFIG)
    assert installed_cidrs(host) == {
        "cluster-cidr": "10.42.0.0/16",
        "service-cidr": "10.43.0.0/16",
        "cluster-dns": "10.43.0.10",  # K3s's .10 of the service CIDR when the key is absent
    }
    with pytest.raises(NeedsRebuildError) as err:
        run_steps(host, install_steps(k3s_cfg(), "online", None))
    message = str(err.value)
    assert message.startswith("needs rebuild: cluster-cidr 10.42.0.0/16 -> 10.44.0.0/16; ")
    assert "service-cidr 10.43.0.0/16 -> 10.45.0.0/16; cluster-dns 10.43.0.10 -> 10.45.0.10" in message
    assert "\n" not in message
    assert host.mutations == [] and host.files[CONFIG_PATH] == OLD_DEFAULTS_CONFIG.encode()


def test_existing_cluster_without_config_counts_as_k3s_defaults() -> None:
    host = installed_host("")
    del host.files[CONFIG_PATH]
    assert cidr_change(k3s_cfg(), installed_cidrs(host))[1] == "service-cidr 10.43.0.0/16 -> 10.45.0.0/16"
    host.answers["test -d /var/lib/rancher/k3s/server"] = (1, "")
    assert installed_cidrs(host) is None and cidr_change(k3s_cfg(), None) == []


def test_other_config_changes_heal_when_cidrs_are_unchanged() -> None:
    cfg = k3s_cfg()
    host = installed_host(render_k3s_config(cfg).replace("servicelb", "nothing"))
    outcomes = run_steps(PlanExecutor(host), install_steps(cfg, "online", None))
    assert [o.status for o in outcomes] == ["would change", "would change"]  # config differs, so k3s reinstalls


def test_kubeconfig_server_rewritten_written_0600_and_idempotent(tmp_path: Path) -> None:
    host = installed_host(OLD_DEFAULTS_CONFIG)
    dest = tmp_path / "state" / "kubeconfig"
    assert fetch_kubeconfig(host, k3s_cfg(), dest) is True
    doc = yaml.safe_load(dest.read_text())
    assert doc["clusters"][0]["cluster"]["server"] == "https://10.43.100.94:6443"
    assert doc["users"][0]["user"]["client-key-data"] == "a2V5"
    assert dest.stat().st_mode & 0o777 == 0o600
    assert fetch_kubeconfig(host, k3s_cfg(), dest) is False
    dest.chmod(0o644)
    assert fetch_kubeconfig(host, k3s_cfg(), dest) is True and dest.stat().st_mode & 0o777 == 0o600


def test_kubeconfig_in_plan_mode_writes_nothing_and_missing_one_is_an_error(tmp_path: Path) -> None:
    host = installed_host(OLD_DEFAULTS_CONFIG)
    plan = PlanExecutor(host)
    assert fetch_kubeconfig(plan, k3s_cfg(), tmp_path / "kubeconfig") is True
    assert not (tmp_path / "kubeconfig").exists() and plan.planned[0].startswith("write (local): ")
    del host.files[KUBECONFIG_PATH]
    with pytest.raises(K3sInstallError, match=r"/etc/rancher/k3s/k3s\.yaml not found on scripted"):
        fetch_kubeconfig(host, k3s_cfg(), tmp_path / "kubeconfig")


def test_install_mode_auto_follows_host_egress_and_airgap_needs_a_bundle() -> None:
    url = "https://github.com/k3s-io/k3s/releases/download/v1.31.4%2Bk3s1/sha256sum-amd64.txt"
    curl = "curl -sSI --max-time 5 -o /dev/null -w '%{http_code}'"
    host = ScriptedHost({f"{curl} https://get.k3s.io": (0, "200"), f"{curl} {url}": (0, "302")}, {}, {})
    assert resolve_install_mode(k3s_cfg(), host) == (
        "online",
        ["https://get.k3s.io: reachable (HTTP 200)", f"{url}: reachable (HTTP 302)"],
    )
    host.answers[f"{curl} https://get.k3s.io"] = (6, "000")
    with pytest.raises(K3sInstallError, match=r"^k3s.offline_bundle_dir: required for an air-gap install"):
        resolve_install_mode(k3s_cfg(), host)
    mode, reasons = resolve_install_mode(k3s_cfg(install="airgap", offline_bundle_dir="/srv/bundle"), host)
    assert (mode, reasons) == ("airgap", ["k3s.install is airgap"])
