"""Loading each code location's definitions, as the daemon's sensors and the UI do on every reload.

Each round starts a fresh interpreter that imports the location's ``definitions`` module (which builds its
``defs`` from platform.yaml) and nothing else; rounds alternate between the locations. There is no peer to run
beside it: the figure is held against the target, ``<= 1 s`` per location on this 2-core machine, and against
the interpreter's own start (``python -c pass``), the floor any location pays.

    .venv/bin/python benchmarks/definitions_load.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCATIONS = {"floor (python -c pass)": "pass", "platform": "import platform_assets.definitions"}
LOCATIONS["ml"] = "import ml_assets.definitions"
TARGET_SECONDS = 1.0


def once(code: str) -> float:
    """A fresh interpreter's start and load, not its exit: a code server loads once and goes on serving, and the
    collection and teardown of a loaded interpreter's heap (~0.4 s here) is paid only when it stops."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"{code}; import os; os._exit(0)"], cwd=ROOT, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    times: dict[str, list[float]] = {name: [] for name in LOCATIONS}
    for _ in range(rounds):
        for name, code in LOCATIONS.items():
            times[name].append(once(code))
    floor = statistics.median(times["floor (python -c pass)"])
    print(f"definitions load, median of {rounds} fresh interpreters (target <= {TARGET_SECONDS:g} s each)")
    for name, values in times.items():
        median = statistics.median(values)
        verdict = "" if name.startswith("floor") else f"  {'meets' if median <= TARGET_SECONDS else 'misses'} target"
        print(f"  {name:24} {median:6.2f} s  ({median / floor:4.1f}x the interpreter's start){verdict}")


if __name__ == "__main__":
    main()
