"""The inference API versus `mlflow models serve` on the same champion model, same load generator, same run.

Brings up a private stack (`platformctl up` into a temporary directory: platform, first batch, champion,
inference service), starts `mlflow models serve` on the same registered model, then measures both with Debian's
`wrk` in interleaved rounds (this machine's speed drifts over minutes): single-row requests and batches of 100 at
concurrency 8. Prints throughput and p50/p99 for both and the ratio, then a sustained run against the inference
API with its error count and memory growth.

    .venv/bin/python benchmarks/inference_vs_mlflow_serve.py [--rounds 3] [--seconds 10] [--sustained 60]
Targets: single rows >= 30x the throughput of mlflow models serve with p99 <= 10 ms in every round; batches of 100
>= 5x with p99 <= 30 ms; a sustained run with zero errors and no memory growth.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml_assets.data.dataset import ames_listings  # noqa: E402
from tests.stacks import free_port_block, write_stack_config  # noqa: E402

CONCURRENCY = 8
TARGETS = {"single": (30, 10.0), "batch100": (5, 30.0)}  # mode -> (throughput ratio, p99 ms in every round)
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True)
class Measure:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _listings(count: int) -> list[dict]:
    rows = ames_listings().drop(columns="price").head(count)
    return [{k: (None if v != v else v) for k, v in row.items()} for row in rows.to_dict("records")]


def _lua(directory: Path, name: str, body: object) -> Path:
    path = directory / f"{name}.lua"
    payload = json.dumps(body).replace("\\", "\\\\").replace("'", "\\'")
    path.write_text(f"wrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\nwrk.body = '{payload}'\n")
    return path


def _wrk(url: str, script: Path, seconds: int) -> Measure:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONCURRENCY}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def latency(pct: str) -> float:
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", out, re.M).groups()
        return float(value) * UNITS[unit]

    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return Measure(rps, latency("50"), latency("99"), errors)


def _wait(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up")


def _rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--sustained", type=int, default=60)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    root = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    config = write_stack_config(root)
    platformctl = [sys.executable, "-m", "platformctl.cli", "--config", str(config)]
    serve: subprocess.Popen | None = None
    try:
        print("bringing up a private stack (platform, first batch, champion, inference service)...", flush=True)
        subprocess.run([*platformctl, "up"], check=True, capture_output=True)
        from platform_core.services import mlflow_auth
        from platform_core.state import load_platform

        cfg, state = load_platform(config)
        ours = f"http://127.0.0.1:{cfg.services.inference.port}"
        port = free_port_block(1)
        venv_bin = str(Path(sys.executable).parent)  # mlflow execs `uvicorn` from PATH
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{cfg.services.mlflow.port}",
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
            **mlflow_auth.reader(state.credentials).environ(),  # MLflow is behind its basic auth
        }
        serve = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "models",
                "serve",
                "-m",
                f"models:/{cfg.ml.model_name}@champion",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "--env-manager",
                "local",
                "--workers",
                "1",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        theirs = f"http://127.0.0.1:{port}"
        _wait(f"{theirs}/ping")
        one, hundred = _listings(1), _listings(100)
        scripts = {
            ("ours", "single"): (f"{ours}/predict", _lua(root, "ours-1", one[0])),
            ("ours", "batch100"): (f"{ours}/predict/batch", _lua(root, "ours-100", {"listings": hundred})),
            ("mlflow", "single"): (f"{theirs}/invocations", _lua(root, "mlflow-1", {"dataframe_records": one})),
            ("mlflow", "batch100"): (f"{theirs}/invocations", _lua(root, "mlflow-100", {"dataframe_records": hundred})),
        }
        results: dict[tuple[str, str], list[Measure]] = {key: [] for key in scripts}
        for round_number in range(1, args.rounds + 1):
            for mode in ("single", "batch100"):
                for server in ("ours", "mlflow"):
                    url, script = scripts[(server, mode)]
                    results[(server, mode)].append(measure := _wrk(url, script, args.seconds))
                    print(
                        f"round {round_number} {mode:8} {server:6} {measure.rps:8.1f} req/s  p50 "
                        f"{measure.p50_ms:6.1f} ms  p99 {measure.p99_ms:6.1f} ms  errors {measure.errors}",
                        flush=True,
                    )
        print(f"\nmedian of {args.rounds} rounds, concurrency {CONCURRENCY}:")
        for mode in ("single", "batch100"):
            med = {
                s: {
                    f: statistics.median(getattr(m, f) for m in results[(s, mode)]) for f in ("rps", "p50_ms", "p99_ms")
                }
                for s in ("ours", "mlflow")
            }
            ratio, worst_p99 = med["ours"]["rps"] / med["mlflow"]["rps"], max(m.p99_ms for m in results[("ours", mode)])
            want_ratio, want_p99 = TARGETS[mode]
            met = "met" if ratio >= want_ratio and worst_p99 <= want_p99 else "NOT met"
            print(
                f"  {mode:8} inference API {med['ours']['rps']:8.1f} req/s p50 {med['ours']['p50_ms']:.1f} ms "
                f"p99 {med['ours']['p99_ms']:.1f} ms | mlflow models serve {med['mlflow']['rps']:8.1f} req/s "
                f"p50 {med['mlflow']['p50_ms']:.1f} ms p99 {med['mlflow']['p99_ms']:.1f} ms | "
                f"throughput ratio {ratio:.1f}x, worst round's p99 {worst_p99:.1f} ms "
                f"(target >= {want_ratio}x, p99 <= {want_p99} ms in every round: {met})"
            )
        pid = json.loads((root / "state" / "run" / "inference.json").read_text())["pid"]
        before = _rss_mb(pid)
        url, script = scripts[("ours", "single")]
        sustained = _wrk(url, script, args.sustained)
        after = _rss_mb(pid)
        print(
            f"\nsustained {args.sustained}s on /predict: {sustained.rps:.1f} req/s, p99 {sustained.p99_ms:.1f} ms, "
            f"errors {sustained.errors}, RSS {before:.0f} MB -> {after:.0f} MB ({after - before:+.0f} MB)"
        )
    finally:
        if serve is not None:
            os.killpg(serve.pid, signal.SIGTERM)
            serve.wait(30)
        subprocess.run([*platformctl, "down"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
