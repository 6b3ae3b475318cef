"""An offline stand-in for the seed's batch API, serving the real Ames listings in the same JSON shape.

`GET /data?group_number=N&day=D` answers `{"group_number", "day", "batch_number", "data": [records]}`: the rows
shuffled once per group (numpy `default_rng(group_number)`), batch D being rows D*R .. (D+1)*R-1. Drift can be
injected through `POST /admin/drift` so that demos and tests see the pipeline react to a real change in the data;
it applies to every batch served afterwards and is deterministic given (group, day, setting). With an admin token
(`--admin-token-env NAME`, as in the k3s pod), every `/admin/*` request needs `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import argparse
import hmac
import math
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal, Self

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ml_assets.data.dataset import ames_listings
from ml_assets.schema import COLUMNS

DriftKind = Literal["none", "shift", "new_category", "nulls"]
NUMERIC = tuple(c for c, dtype in COLUMNS.items() if dtype == "float64")
# the values no batch of the real data ever holds, per categorical column
NEW_CATEGORIES = {"status": "foreclosure", "city": "Springfield", "state": "Illinois"}
# kind -> (columns a setting may name, columns touched when it names none)
DRIFT_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "none": ((), ()),
    "shift": (NUMERIC, ("house_size", "acre_lot", "bed", "bath", "price")),
    "new_category": (tuple(NEW_CATEGORIES), ("status", "city")),
    "nulls": (tuple(COLUMNS), ("house_size", "bath")),
}
_KIND_SEED = {"shift": 1, "new_category": 2, "nulls": 3}


class DriftSetting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: DriftKind = "none"
    strength: float = Field(1.0, ge=0, le=5, allow_inf_nan=False)
    columns: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _known_columns(self) -> Self:
        allowed = DRIFT_COLUMNS[self.kind][0]
        for column in self.columns or ():
            if column not in allowed:
                raise ValueError(f"drift {self.kind!r} cannot apply to column {column!r} (allowed: {list(allowed)})")
        return self

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self.columns) if self.columns else DRIFT_COLUMNS[self.kind][1]


def apply_drift(batch: pd.DataFrame, setting: DriftSetting, group_number: int, day: int) -> pd.DataFrame:
    """The batch as it looks under `setting`; the randomly chosen rows depend only on (group, day, kind)."""
    if setting.kind == "none":
        return batch
    out = batch.copy()
    rng = np.random.default_rng([group_number, day, _KIND_SEED[setting.kind]])
    n = len(out)
    if setting.kind == "shift":
        factor = 1 + 0.5 * setting.strength
        for column in setting.targets:
            out[column] = out[column] * factor
    elif setting.kind == "new_category":
        # the same rows get every new category, like listings from a market the model never saw
        rows = rng.choice(n, size=round(min(1.0, 0.5 * setting.strength) * n), replace=False)
        for column in setting.targets:
            out.iloc[rows, out.columns.get_loc(column)] = NEW_CATEGORIES[column]
    else:  # nulls: each column loses its own random rows, as a flaky upstream field would
        for column in setting.targets:
            rows = rng.choice(n, size=round(min(0.9, 0.3 * setting.strength) * n), replace=False)
            out.iloc[rows, out.columns.get_loc(column)] = None
    return out


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """JSON-ready rows: NaN and pd.NA become None (null), numpy scalars become Python ones."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _bearer_matches(header: str | None, token: str) -> bool:
    scheme, _, value = (header or "").partition(" ")
    # compare_digest on bytes: constant time, and no TypeError for a non-ASCII header
    same = hmac.compare_digest(value.strip().encode(), token.encode())
    return scheme.lower() == "bearer" and same


def create_app(batch_rows: int, batches: int, *, admin_token: str | None = None) -> FastAPI:
    """`admin_token`: when given, `/admin/*` answers 401 unless the request carries it as a Bearer token."""
    if batch_rows < 1 or batches < 1:
        raise ValueError(f"batch_rows and batches must be >= 1 (got {batch_rows}, {batches})")
    if admin_token is not None and not admin_token.strip():
        raise ValueError("admin_token must not be empty")  # else "Bearer " alone would pass
    listings = ames_listings()  # loaded once: every request slices this frame
    served_days = min(batches, math.ceil(len(listings) / batch_rows))
    app = FastAPI(title="Offline listings API", version="1")
    lock = threading.Lock()  # sync endpoints run in a thread pool
    state: dict[str, DriftSetting] = {"drift": DriftSetting()}

    if admin_token is not None:
        # a middleware rather than a per-route dependency: it also covers /admin paths added later
        @app.middleware("http")
        async def require_admin_token(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            path = request.url.path
            is_admin = path == "/admin" or path.startswith("/admin/")
            if is_admin and not _bearer_matches(request.headers.get("authorization"), admin_token):
                return JSONResponse(
                    {"detail": "admin endpoints need Authorization: Bearer <token>"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            return await call_next(request)

    @app.get("/health")
    def health() -> dict[str, object]:
        return {"status": "ok", "rows": len(listings), "batches": batches}

    @app.get("/data")
    def data(
        group_number: Annotated[int, Query(ge=0)],  # numpy seeds must be non-negative
        day: Annotated[int, Query()],
    ) -> JSONResponse:
        if not 0 <= day < served_days:
            raise HTTPException(
                404,
                f"day {day} is out of range: valid days are 0..{served_days - 1} "
                f"({batches} batches of {batch_rows} rows over {len(listings)} rows)",
            )
        with lock:
            setting = state["drift"]
        order = np.random.default_rng(group_number).permutation(len(listings))
        batch = listings.iloc[order[day * batch_rows : (day + 1) * batch_rows]].reset_index(drop=True)
        batch = apply_drift(batch, setting, group_number, day)
        payload = {"group_number": group_number, "day": day, "batch_number": day, "data": _records(batch)}
        return JSONResponse(payload)

    @app.get("/admin/drift")
    def get_drift() -> DriftSetting:
        with lock:
            return state["drift"]

    @app.post("/admin/drift")
    def set_drift(setting: DriftSetting) -> DriftSetting:
        with lock:
            state["drift"] = setting
        return setting

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the Ames listings batch by batch, like the seed's data API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--batch-rows", type=int, default=300)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument(
        "--admin-token-env",
        metavar="NAME",
        help="environment variable holding the token that /admin/* requires as 'Authorization: Bearer <token>'",
    )
    args = parser.parse_args(argv)
    token = None
    if args.admin_token_env:
        # read from the environment, never argv: a command line is visible to every process on the host
        token = os.environ.get(args.admin_token_env, "").strip()
        if not token:
            parser.error(f"--admin-token-env: environment variable {args.admin_token_env} is not set or empty")
    elif args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: /admin/* is unauthenticated on {args.host}; pass --admin-token-env", file=sys.stderr)
    app = create_app(args.batch_rows, args.batches, admin_token=token)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="warning")


if __name__ == "__main__":
    main()
