"""`python -m ml_assets.serving --config PATH --state-dir DIR`: the inference service of a platform config."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import uvicorn

from ml_assets.serving.app import create_app
from ml_assets.serving.registry import NoChampionError
from ml_assets.serving.settings import ServingSettings
from platform_assets.config import PlatformConfig, load_config
from platform_assets.state import StateDir

logger = logging.getLogger("ml_assets.serving")


def settings_from_config(cfg: PlatformConfig, state: StateDir) -> ServingSettings:
    inference = cfg.services.inference
    # predictions are written as the bucket's owner: the identity limited to the ML buckets, not admin
    access, secret = state.credentials.s3_keys(cfg.bucket(cfg.ml.predictions_bucket).owner)
    return ServingSettings(
        tracking_uri=f"http://127.0.0.1:{cfg.services.mlflow.port}",
        model_name=cfg.ml.model_name,
        s3_endpoint=f"http://127.0.0.1:{cfg.services.seaweedfs.s3_port}",
        s3_access_key=access,
        s3_secret_key=secret,
        predictions_bucket=cfg.ml.predictions_bucket,
        threads=inference.threads,
        max_batch_rows=inference.max_batch_rows,
        max_body_bytes=inference.max_body_bytes,
        log_flush_rows=inference.log_flush_rows,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ml_assets.serving", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="platform.yaml")
    parser.add_argument("--state-dir", required=True, type=Path, help="the stack's state directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # MLflow's client retries a dead server for minutes; a reload should fail in seconds and say why.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # progress bars fill the log

    cfg = load_config(args.config)
    app = create_app(settings_from_config(cfg, StateDir(args.state_dir)))
    try:  # before binding the port: once the service answers, it serves the champion if there is one
        result = app.state.slot.reload()
        app.state.metrics.set_model(result.current)
        logger.info("serving %s version %s", cfg.ml.model_name, result.current.version)
    except NoChampionError as err:
        logger.warning("%s; starting without a model (POST /reload once there is one)", err)
    except Exception:  # the registry may be down: serve anyway, /health says 503 until a reload works
        logger.exception("could not load the champion at startup")
    port = cfg.services.inference.port
    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
