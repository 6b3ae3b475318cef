"""A served model is the approved model.

Whoever can write to the registry's artifact store could swap a champion's files (a cloudpickled pyfunc: code run
by the inference service). So the promotion gate records the sha256 of the version's files in its registry tags
when it approves it, and the inference service loads only files with that digest: it hashes the very files it
then loads, and refuses anything else while it keeps serving what it had.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from platform_core.services.mlflow_rest import MlflowRest

DIGEST_TAG = "artifact_sha256"  # on the registry version: the digest the promotion gate approved


class ModelRejected(RuntimeError):
    """A version's files are not the ones the promotion gate approved (or it approved none)."""


def tree_digest(root: Path) -> str:
    """sha256 over every file below `root`: its relative path and its content's sha256, in path order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\n")
    return digest.hexdigest()


def download_version(tracking_uri: str, name: str, version: str, destination: Path) -> Path:
    """The registry version's files, downloaded into `destination` (by number: an alias may move meanwhile) as
    `mlflow.artifacts.download_artifacts("models:/<name>/<version>")` lays them out, through MLflow's REST API
    (no client import on a check's path), as whoever the environment names."""
    import yaml

    rest = MlflowRest(tracking_uri)
    root = rest.download_tree(rest.version_root(name, version), destination)
    # MLflow's download of a models:/ URI adds this file beside MLmodel (ModelsArtifactRepository.
    # _add_registered_model_meta_file, mlflow/store/artifact/models_artifact_repo.py): the approved digests of
    # versions approved before include it, so the same bytes are written here
    meta = {"model_name": name, "model_version": version}
    (root / "registered_model_meta").write_text(
        yaml.safe_dump(meta, default_flow_style=False, allow_unicode=True, sort_keys=True), encoding="utf-8"
    )
    return root


def verified(root: Path, name: str, version: str, tags: dict[str, str]) -> str:
    """The digest of the files at `root`, if it is the approved one; else one line naming both digests."""
    return approved(tree_digest(root), name, version, tags)


def approved(actual: str, name: str, version: str, tags: dict[str, str]) -> str:
    """`actual`, the digest of the version's files, if it is the approved one; else one line naming both."""
    expected = tags.get(DIGEST_TAG)
    if expected is None:
        raise ModelRejected(f"model {name} v{version} has no approved digest ({DIGEST_TAG}): not loaded")
    if actual != expected:
        raise ModelRejected(
            f"model {name} v{version}: its files' sha256 {actual} is not the approved {expected}: not loaded"
        )
    return actual
