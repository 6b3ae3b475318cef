"""The README's first command on a fresh machine: a clone of this checkout, then `make up` in it (the venv, the
packages with no cache, the whole local platform, the first batch, a champion, the inference API), until the
champion answers a prediction. Target: <= 60 s. There is no peer for the whole command: it prints its two parts
(the install, timed apart by `install_vs_pip.py` against pip) and the target.

The clone's platform.yaml gets free ports and a state directory beside the clone, so a stack already running on
this machine is left alone; everything is stopped and removed at the end. Needs the package index.

    .venv/bin/python benchmarks/first_command.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.stacks import write_stack_config  # noqa: E402  (after the path insert: a script, not a package)

TARGET_SECONDS = 60.0


def predict(port: int) -> dict[str, object]:
    listing = {"bed": 3, "bath": 2, "acre_lot": 0.2, "city": "Ames", "state": "Iowa", "zip_code": 50010}
    body = json.dumps({**listing, "house_size": 1500}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict", body, {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, object] = json.loads(response.read())
    return answer


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-first-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        # the shipped platform.yaml with free ports; its state beside the clone (platformctl refuses a state
        # directory inside a git working tree: its credentials would be one `git add -A` from a commit)
        write_stack_config(clone, state_dir=str(Path(tmp) / "state"))
        port = yaml.safe_load((clone / "platform.yaml").read_text())["services"]["inference"]["port"]
        env = {**os.environ, "UV_NO_CACHE": "1", "PIP_NO_CACHE_DIR": "1"}  # a fresh machine has no cache
        env.pop("VIRTUAL_ENV", None)
        started = time.perf_counter()
        try:
            done = subprocess.run(["make", "up"], cwd=clone, env=env, capture_output=True, text=True)
            ready = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(f"make up failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            answer = predict(port)
            served = time.perf_counter() - started
        finally:
            subprocess.run(["make", "down"], cwd=clone, env=env, capture_output=True)
    steps = [float(s) for s in re.findall(r"ok in ([0-9.]+)s", done.stdout)]
    print("the first README command in a fresh clone: `make up` (venv, packages without cache, the platform)")
    print(f"  make up                    {ready:6.1f} s  (its Dagster steps {sum(steps):.1f} s of it)")
    print(f"  first prediction answered  {served:6.1f} s  (champion v{answer['model_version']})")
    verdict = "met" if served <= TARGET_SECONDS else "NOT met"
    print(f"  target <= {TARGET_SECONDS:.0f} s: {verdict}")


if __name__ == "__main__":
    main()
