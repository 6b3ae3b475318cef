"""The install step of the README's first command: the platform's packages into a fresh venv, as `make up` has
`scripts/install-python-packages` do it (uv, bootstrapped into the venv, no bytecode compiled: the stack's
processes write the cache of what they import) against plain pip, the peer, installing the same packages its
own way (compiling all of them, its default), in the same run.

Both start cold: a new venv each, no package cache (pip --no-cache-dir, UV_NO_CACHE), the same
constraints.txt. uv's own bootstrap (`pip install uv` into the venv) is counted in its time, as a machine
without uv pays it. Needs the package index; takes a few minutes.

    .venv/bin/python benchmarks/install_vs_pip.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ["-c", "constraints.txt", "-e", "."]  # what `make up` installs (`make test` adds the dev extras)
SCRIPT = str(ROOT / "scripts" / "install-python-packages")
TARGET_SECONDS = 60.0  # the whole first command, clone to served champion; the install is most of it


def _without_uv(path: str) -> str:
    """PATH without a directory holding `uv`: a fresh machine has none, and the script would use it."""
    return os.pathsep.join(d for d in path.split(os.pathsep) if d and not (Path(d) / "uv").exists())


def fresh_venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    return where / "bin" / "python"


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    env = {**os.environ, "UV_NO_CACHE": "1", "PIP_NO_CACHE_DIR": "1", "PATH": _without_uv(os.environ.get("PATH", ""))}
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pip_python = fresh_venv(Path(tmp) / "pip")
        pip = timed([str(pip_python), "-m", "pip", "install", "--quiet", "--no-cache-dir", *SPEC])
        shutil.rmtree(Path(tmp) / "pip")
        uv_python = fresh_venv(Path(tmp) / "uv")
        total = timed([SCRIPT, str(uv_python)])  # bootstraps uv into the venv (no uv on PATH here)
    print("install of the platform's packages into a fresh venv, no cache (same constraints.txt)")
    print(f"  pip (peer)                 {pip:6.1f} s")
    print(f"  uv, as `make up` runs it   {total:6.1f} s  (uv bootstrapped from the index)  {pip / total:4.1f}x faster")
    print(f"  the first command's target is <= {TARGET_SECONDS:g} s in all; the install is now {total:.0f} s of it")


if __name__ == "__main__":
    main()
