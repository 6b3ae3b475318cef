"""The install step of the README's first command: the project's packages into a fresh venv, with uv (what
`scripts/install-python-packages` uses when it can) against plain pip, the peer, in the same run.

Both start cold: a new venv each, no package cache (pip --no-cache-dir, uv --no-cache), the same
constraints.txt and extras, both compiling bytecode (pip's default; uv's --compile-bytecode, as the script
asks). uv's own bootstrap (`pip install uv` into the venv) is counted in its time, as a
machine without uv pays it. Needs the package index; takes a few minutes.

    .venv/bin/python benchmarks/install_vs_pip.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ["-c", "constraints.txt", "-e", ".[dev]"]
UV = ["-m", "uv", "pip", "install", "--quiet", "--no-cache", "--compile-bytecode"]  # as the script runs it
TARGET_SECONDS = 60.0  # the whole first command, clone to served champion; the install is most of it


def fresh_venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    return where / "bin" / "python"


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pip_python = fresh_venv(Path(tmp) / "pip")
        pip = timed([str(pip_python), "-m", "pip", "install", "--quiet", "--no-cache-dir", *SPEC])
        shutil.rmtree(Path(tmp) / "pip")
        uv_python = fresh_venv(Path(tmp) / "uv")
        bootstrap = timed([str(uv_python), "-m", "pip", "install", "--quiet", "--no-cache-dir", "uv>=0.5,<1"])
        uv = timed([str(uv_python), *UV, "--python", str(uv_python), *SPEC])
    total = bootstrap + uv
    print("install of the project's packages into a fresh venv, no cache (same constraints.txt)")
    print(f"  pip (peer)                 {pip:6.1f} s")
    ratio = pip / total
    print(f"  uv, bootstrap included     {total:6.1f} s  ({bootstrap:.1f} s of it installing uv)  {ratio:4.1f}x faster")
    print(f"  the first command's target is <= {TARGET_SECONDS:g} s in all; the install is now {total:.0f} s of it")


if __name__ == "__main__":
    main()
