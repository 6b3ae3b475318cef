"""The platform image on a scripted K3s host: the deterministic build context, each image source's commands in
order, idempotence, rebuild on a source change, plan mode, and the one-line refusals before any command."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from platform_core.cluster.image import (
    CONTEXT_PATHS,
    ImageError,
    Wanted,
    build_context,
    build_egress,
    desired_image,
    image_step,
    live_image,
    normalized_ref,
    read_archive,
    resolve_source,
)
from platform_core.cluster.render import REPO_ROOT
from platform_core.config import ConfigError, parse_config
from platform_core.host.executor import PlanExecutor
from platform_core.host.facts import K3S_BIN
from platform_core.host.prepare import HostPrepError, prepare_host, run_steps
from tests import containerd
from tests.hosts import PLATFORM_IMAGE, ScriptedHost, debian_host, k3s_cfg, k3s_vm, rocky_host

WORK = "/var/tmp/mlops-platform-image"
REF = "ghcr.io/example/mlops-platform:0.1.0"
IMPORT = f"{K3S_BIN} ctr -n k8s.io images import"
LABEL = f"{K3S_BIN} ctr -n k8s.io images label"


def _installed_vm() -> ScriptedHost:
    host = k3s_vm("10.43.100.94", b"")
    host.answers[f"{K3S_BIN} --version"] = (0, "k3s version v1.31.4+k3s1 (abcdef12)\ngo version go1.22.9")
    return host


def _sources(tmp: Path) -> Path:
    """A copy of the image's sources under ``tmp``, to change without touching the checkout."""
    for rel in CONTEXT_PATHS:
        src, dst = REPO_ROOT / rel, tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dst)
    return tmp


def _reconcile(host: ScriptedHost, want: Wanted) -> str:
    (outcome,) = run_steps(host, [image_step(k3s_cfg(), want)])
    return outcome.status


def test_normalized_ref_as_docker_names_it() -> None:
    assert normalized_ref("mlops:1.0") == "docker.io/library/mlops:1.0"
    assert normalized_ref("example/mlops:1.0") == "docker.io/example/mlops:1.0"
    assert normalized_ref("registry.local:5000/mlops:1.0") == "registry.local:5000/mlops:1.0"
    assert normalized_ref("localhost/mlops:1.0") == "localhost/mlops:1.0"
    assert normalized_ref(REF) == REF


def test_the_build_context_is_deterministic_and_follows_the_sources(tmp_path: Path) -> None:
    copy = _sources(tmp_path / "copy")
    for path in copy.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))  # other mtimes, same content
    (copy / "platform_assets" / "__pycache__").mkdir(exist_ok=True)
    (copy / "platform_assets" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"bytecode")
    original = build_context(REPO_ROOT)
    assert build_context(copy) == original  # same sources, same bytes, whatever the mtimes or caches
    with tarfile.open(fileobj=io.BytesIO(original)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and "infra/image/Dockerfile" in names and "pyproject.toml" in names
    assert all((m.mtime, m.uid, m.gid, m.uname) == (0, 0, 0, "") for m in members)
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)

    edited = copy / "ml_assets" / "definitions.py"
    edited.write_text(edited.read_text() + "\n# edit\n")
    assert hashlib.sha256(build_context(copy)).digest() != hashlib.sha256(original).digest()


def test_host_build_runs_its_commands_in_order_then_no_change_then_rebuilds_on_a_source_change(
    tmp_path: Path,
) -> None:
    host, root = _installed_vm(), _sources(tmp_path / "src")
    want = desired_image("host_build", None, REF, root)
    assert _reconcile(host, want) == "changed"
    build = f"podman build --label mlops-platform/source-digest={want.value} -t {REF}"
    assert host.mutations == [
        f"rm -rf -- {WORK}",
        f"write {WORK}/context.tar",
        f"mkdir -p {WORK}/context",
        f"tar -xf {WORK}/context.tar -C {WORK}/context",
        f"{build} -f {WORK}/context/infra/image/Dockerfile {WORK}/context",
        f"podman save --format docker-archive -o {WORK}/image.tar {REF}",
        f"{IMPORT} {WORK}/image.tar",
        f"{LABEL} {REF} io.cri-containerd.pinned=pinned",  # safe from the kubelet's image garbage collection
        f"rm -rf -- {WORK}",
        "podman image prune -f",  # the previous build's layers; this one stays as the next build's cache
    ]
    assert not [p for p in host.files if p.startswith(WORK)]  # nothing left in the work dir
    assert live_image(host, REF).labels == {"mlops-platform/source-digest": want.value}  # type: ignore[union-attr]

    host.mutations.clear()
    assert _reconcile(host, want) == "already" and host.mutations == []

    (root / "platform_core" / "config" / "k3s.py").write_text("# changed\n", encoding="utf-8")
    changed = desired_image("host_build", None, REF, root)
    assert changed.value != want.value
    assert "stale: has " + want.value[:12] in changed.describe(live_image(host, REF))
    assert _reconcile(host, changed) == "changed"
    assert f"podman build --label mlops-platform/source-digest={changed.value} -t {REF}" in " ".join(host.mutations)


def test_bundle_imports_the_archive_once_and_again_when_it_changes(tmp_path: Path) -> None:
    host = _installed_vm()
    archive = tmp_path / "images" / "platform-image.tar"
    archive.parent.mkdir()
    archive.write_bytes(containerd.docker_archive([REF], {}))
    want = desired_image("bundle", archive, REF, REPO_ROOT)
    assert want.value == containerd.archive_image_id(archive.read_bytes())
    assert _reconcile(host, want) == "changed"
    remote = f"{WORK}/platform-image.tar"
    pin = f"{LABEL} {REF} io.cri-containerd.pinned=pinned"
    assert host.mutations == [f"rm -rf -- {WORK}", f"write {remote}", f"{IMPORT} {remote}", pin, f"rm -rf -- {WORK}"]
    assert live_image(host, REF).pinned  # type: ignore[union-attr]
    assert live_image(host, REF).image_id == want.value  # type: ignore[union-attr]

    host.mutations.clear()
    assert _reconcile(host, want) == "already" and host.mutations == []

    archive.write_bytes(containerd.docker_archive([REF], {}, layer=b"a newer build"))
    newer = desired_image("bundle", archive, REF, REPO_ROOT)
    assert newer.value != want.value and _reconcile(host, newer) == "changed"
    assert host.mutations[-3] == f"{IMPORT} {remote}"


def test_an_import_that_does_not_yield_the_image_fails_its_verification(tmp_path: Path) -> None:
    """run_steps re-probes: an archive whose image containerd does not show under the ref is an error."""
    host = _installed_vm()
    archive = tmp_path / "platform-image.tar"
    archive.write_bytes(containerd.docker_archive([REF], {}))
    want = desired_image("bundle", archive, REF, REPO_ROOT)
    host.prefix_effects.pop(IMPORT)  # ctr "succeeds" but imports nothing
    with pytest.raises(HostPrepError, match="step 'platform image' was applied on scripted but its probe still fails"):
        _reconcile(host, want)


def test_an_archive_of_another_image_or_format_is_refused_with_one_line(tmp_path: Path) -> None:
    archive = tmp_path / "platform-image.tar"
    archive.write_bytes(containerd.docker_archive(["ghcr.io/example/other:9.9"], {}))
    with pytest.raises(ImageError) as err:
        read_archive(archive, REF)
    assert str(err.value) == f"{archive} holds ghcr.io/example/other:9.9, not {REF}"
    archive.write_bytes(b"not a tar")
    with pytest.raises(ImageError, match=r"not a docker-archive with manifest\.json") as err:
        read_archive(archive, REF)
    assert "\n" not in str(err.value)


def test_auto_picks_the_bundle_then_a_host_build_with_egress_and_else_says_what_to_provide(tmp_path: Path) -> None:
    host = k3s_vm("10.43.100.94", b"")
    cfg = k3s_cfg(install="auto", offline_bundle_dir=str(tmp_path))
    archive = tmp_path / "images" / "platform-image.tar"
    archive.parent.mkdir()
    archive.write_bytes(containerd.docker_archive([REF], {}))
    source, why = resolve_source(cfg, tmp_path, lambda: build_egress(host))
    assert (source, why) == ("bundle", f"auto: found {archive}") and host.probed == []  # no egress probe needed

    archive.unlink()
    with pytest.raises(ImageError) as err:
        resolve_source(cfg, tmp_path, lambda: build_egress(host))
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"k3s.image_source auto: no {archive} and the host has no")
    assert "https://pypi.org/simple/pip/: unreachable" in message and "k3s.image_source: registry" in message
    assert host.mutations == []

    for key in [k for k in host.answers if k.startswith("curl ")]:
        host.answers[key] = (0, "200")
    source, why = resolve_source(cfg, tmp_path, lambda: build_egress(host))
    assert source == "host_build" and "the host has egress to build" in why


def test_explicit_sources_and_their_config_errors(tmp_path: Path) -> None:
    never = lambda: pytest.fail("no egress probe for an explicit source")  # noqa: E731
    assert resolve_source(k3s_cfg(image_source="registry"), None, never)[0] == "registry"
    assert resolve_source(k3s_cfg(image_source="host_build"), None, never)[0] == "host_build"
    bundle = k3s_cfg(image_source="bundle", offline_bundle_dir=str(tmp_path))
    with pytest.raises(ImageError, match=r"^k3s.image_source bundle: .*platform-image.tar is missing; make it with"):
        resolve_source(bundle, tmp_path, never)
    with pytest.raises(ConfigError) as err:
        parse_config({"k3s": {"image_source": "bundle"}}, "platform.yaml")
    assert str(err.value) == (
        "platform.yaml: k3s.offline_bundle_dir: required when image_source is bundle (images/platform-image.tar)"
    )


def test_training_image_defaults_to_the_platform_image() -> None:
    cfg = parse_config({"versions": {"platform_image": "registry.local:5000/mlops:1.2.3"}}, "p.yaml")
    assert cfg.k3s.training.image == "registry.local:5000/mlops:1.2.3"
    own = parse_config({"k3s": {"training": {"image": "registry.local:5000/trainer:2.0"}}}, "p.yaml")
    assert own.k3s.training.image == "registry.local:5000/trainer:2.0"
    assert parse_config({}, "p.yaml").k3s.training.image == PLATFORM_IMAGE


def test_plan_mode_lists_the_build_and_runs_nothing(tmp_path: Path) -> None:
    host = _installed_vm()
    want = desired_image("host_build", None, REF, _sources(tmp_path))
    plan = PlanExecutor(host)
    (outcome,) = run_steps(plan, [image_step(k3s_cfg(), want)])
    assert outcome.status == "would change" and host.mutations == []
    assert outcome.planned[1] == f"write (sudo): {WORK}/context.tar ({len(want.context)} bytes, mode 600)"
    assert f"run (sudo): {IMPORT} {WORK}/image.tar" in outcome.planned
    assert any(p.startswith("run (sudo): podman build --label mlops-platform/source-digest=") for p in outcome.planned)


APT_PODMAN = "env DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman tar"


@pytest.mark.parametrize(("make", "install"), [(rocky_host, "dnf install -y podman tar"), (debian_host, APT_PODMAN)])
def test_host_preparation_installs_podman_only_for_a_host_build(make: Callable[[], ScriptedHost], install: str) -> None:
    without = make()
    prepare_host(without, k3s_cfg())
    assert "podman" not in " ".join(without.mutations + without.probed)
    host = make()
    report = prepare_host(host, k3s_cfg(), podman=True)
    assert ("podman", "changed") in [(s.name, s.status) for s in report.steps]
    assert install in host.mutations
    host.mutations.clear()
    assert prepare_host(host, k3s_cfg(), podman=True).summary() == "no change" and host.mutations == []


def test_auto_keeps_an_image_already_built_from_these_sources_without_probing_egress(tmp_path: Path) -> None:
    """A host that built the image once and has lost its egress since stays "no change" instead of failing."""
    cfg = k3s_cfg(install="auto", offline_bundle_dir=str(tmp_path))
    never = lambda: pytest.fail("no egress probe when containerd already holds the image")  # noqa: E731
    source, why = resolve_source(cfg, tmp_path, never, built=lambda: True)
    assert (
        source == "host_build"
        and why == f"auto: containerd holds {cfg.versions.platform_image} built from these sources"
    )
    with pytest.raises(ImageError, match="the host has no egress to build"):
        resolve_source(cfg, tmp_path, lambda: ("airgap", ["https://pypi.org/simple/pip/: unreachable"]), lambda: False)


def test_an_unpinned_image_is_imported_and_pinned_again(tmp_path: Path) -> None:
    """Unpinned, the kubelet's image garbage collection may remove it, and air-gap has no registry to pull from."""
    host = _installed_vm()
    archive = tmp_path / "platform-image.tar"
    archive.write_bytes(containerd.docker_archive([REF], {}))
    want = desired_image("bundle", archive, REF, REPO_ROOT)
    assert _reconcile(host, want) == "changed"
    rc, out = host.answers[containerd.crictl_key(REF)][:2]
    host.answers[containerd.crictl_key(REF)] = (rc, out.replace('"pinned": true', '"pinned": false'))
    assert want.describe(live_image(host, REF)).endswith(
        "not pinned (the kubelet's image garbage collection may remove it)"
    )
    assert _reconcile(host, want) == "changed" and live_image(host, REF).pinned  # type: ignore[union-attr]
