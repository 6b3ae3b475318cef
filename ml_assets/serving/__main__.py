"""`python -m ml_assets.serving`: the inference service.

Two ways to its settings: `--config PATH --state-dir DIR` (the local target: addresses and keys of that stack) or
`--settings-from-env --port N` (a pod: every `ServingSettings` field from `SERVING_<FIELD>`, e.g.
`SERVING_TRACKING_URI`, `SERVING_S3_SECRET_KEY`).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from ml_assets.serving.app import create_app
from ml_assets.serving.model_slot import NoChampionError
from ml_assets.serving.settings import ServingSettings
from platform_core.config import PlatformConfig, load_config
from platform_core.services import mlflow_auth
from platform_core.state import StateDir

logger = logging.getLogger("ml_assets.serving")
ENV_PREFIX = "SERVING_"


class SettingsError(ValueError):
    """One line naming the variable at fault; it never holds a variable's value."""


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


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


def settings_from_env(environ: Mapping[str, str] | None = None) -> ServingSettings:
    """`ServingSettings` from `SERVING_<FIELD>` variables; an empty variable counts as unset."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for field, info in ServingSettings.model_fields.items():
        value = environ.get(env_name(field), "")
        if value:
            values[field] = value
        elif info.is_required():
            raise SettingsError(f"environment variable {env_name(field)} is not set or empty")
    try:
        return ServingSettings(**values)
    except ValidationError as err:
        # pydantic's own message quotes the input; name the variable and the rule only, so no secret leaks
        first = err.errors(include_url=False, include_input=False, include_context=False)[0]
        raise SettingsError(f"environment variable {env_name(str(first['loc'][0]))}: {first['msg']}") from None


def _parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m ml_assets.serving", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="platform.yaml (with --state-dir)")
    source.add_argument("--settings-from-env", action="store_true", help="settings from SERVING_<FIELD> variables")
    parser.add_argument("--state-dir", type=Path, help="the stack's state directory (with --config)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, help="port to bind (default with --config: the config's)")
    args = parser.parse_args(argv)
    if args.config is not None and args.state_dir is None:
        parser.error("--config needs --state-dir")
    if args.settings_from_env and args.state_dir is not None:
        parser.error("--state-dir goes with --config, not --settings-from-env")
    if args.settings_from_env and args.port is None:
        parser.error("--settings-from-env needs --port")  # there is no config to take it from
    return parser, args


def main(argv: list[str] | None = None) -> None:
    parser, args = _parse_args(argv)
    if args.settings_from_env:
        try:
            settings = settings_from_env()
        except SettingsError as err:
            parser.error(str(err))
        port = args.port
    else:
        cfg = load_config(args.config)
        state = StateDir(args.state_dir)
        settings = settings_from_config(cfg, state)
        # the registry's reader: it loads the champion and can move nothing (in the cluster: from inference-env)
        mlflow_auth.reader(state.credentials).export()
        port = cfg.services.inference.port if args.port is None else args.port
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # MLflow's client retries a dead server for minutes; a reload should fail in seconds and say why.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # progress bars fill the log

    app = create_app(settings)
    try:  # before binding the port: once the service answers, it serves the champion if there is one
        result = app.state.slot.reload()
        app.state.metrics.set_model(result.current)
        logger.info("serving %s version %s", settings.model_name, result.current.version)
    except NoChampionError as err:
        logger.warning("%s; starting without a model (POST /reload once there is one)", err)
    except Exception:  # the registry may be down: serve anyway, /health says 503 until a reload works
        logger.exception("could not load the champion at startup")
    uvicorn.run(app, host=args.host, port=port, workers=1, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
