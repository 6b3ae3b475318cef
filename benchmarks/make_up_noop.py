"""`make up` on a stack that is already up: `platformctl up` (each location's selections materialized in its
process) versus the same selections through `dagster asset materialize` (what `up` ran before: one Dagster
process, and one load of the definitions, per selection), on the same stack in the same run, interleaved.

A fresh stack is brought up first (its cold `up` is printed too), then each round times one no-op `up` and the
same selections (`UP_STEPS`) through the CLI. Target: no-op `up` <= 5 s. Everything is stopped at the end.

    .venv/bin/python benchmarks/make_up_noop.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from platformctl.cli import UP_STEPS
from tests.stacks import write_stack_config

TARGET_SECONDS = 5.0


def platformctl(config: Path, *args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "platformctl.cli", "--config", str(config), *args], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"platformctl {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def through_cli(config: Path) -> float:
    """The same selections, each a `dagster asset materialize` process on the stack's instance."""
    started = time.perf_counter()
    for step in UP_STEPS:
        args = ["dagster", "asset", "materialize", "-m", step.location, "--select", step.selection]
        platformctl(config, *args, *(["--partition", step.partition] if step.partition else []))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory(prefix="bench-up-") as tmp:
        config = write_stack_config(Path(tmp))
        try:
            cold = platformctl(config, "up")
            ours, cli = [], []
            for _ in range(rounds):
                ours.append(platformctl(config, "up"))
                cli.append(through_cli(config))
        finally:
            subprocess.run([sys.executable, "-m", "platformctl.cli", "--config", str(config), "down"], check=False)
    mine, theirs = statistics.median(ours), statistics.median(cli)
    print(f"cold `platformctl up` (whole graph, fresh state): {cold:.1f} s")
    print(f"no-op `platformctl up`: median {mine:.1f} s of {[round(t, 1) for t in ours]}")
    print(f"same selections, `dagster asset materialize`: median {theirs:.1f} s of {[round(t, 1) for t in cli]}")
    verdict = "met" if mine <= TARGET_SECONDS else "NOT met"
    print(f"ratio: {theirs / mine:.1f}x faster; target no-op up <= {TARGET_SECONDS:.0f} s: {verdict}")


if __name__ == "__main__":
    main()
