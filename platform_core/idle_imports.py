"""Imports a command will need later, made while it waits for a service to start.

A cold `make up` waits on start-ups with its own process idle (SeaweedFS ~2 s, MLflow ~6 s, the inference service,
Dagster's processes), then pays its imports one after another (MLflow's auth store ~2.5 s, pandas, scikit-learn,
the ML location's libraries). A command names what its steps will import (`expect`): libraries only, never the
project's own code or Dagster's, whose import-time registries the command's runs use meanwhile. The supervisor's
wait for a start lets a thread import them (`waiting`), one module at a time and none begun once the wait is over:
beside busy steps a thread only takes the interpreter's lock from them. With nothing to start (a no-op `up`)
nothing is imported ahead. A module that fails to import here is imported again by the step that needs it, which
reports the error.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_expected: list[str] = []
_waits = 0  # waits in progress (a wave starts several services)
_worker: threading.Thread | None = None


def expect(*modules: str) -> None:
    """Modules this command's steps import later, in the order they need them."""
    with _lock:
        _expected.extend(name for name in modules if name not in _expected)


@contextlib.contextmanager
def waiting() -> Iterator[None]:
    """This process waits for a service to start: import what is expected meanwhile."""
    global _waits, _worker
    with _lock:
        _waits += 1
        if _expected and (_worker is None or not _worker.is_alive()):
            _worker = threading.Thread(target=_import_while_waiting, name="idle-imports", daemon=True)
            _worker.start()
    try:
        yield
    finally:
        with _lock:
            _waits -= 1


def settle(timeout: float = 10.0) -> None:
    """Let an import in progress finish before the interpreter exits (one cut off at exit may crash it)."""
    with _lock:
        _expected.clear()
        worker = _worker
    if worker is not None:
        worker.join(timeout)


def _import_while_waiting() -> None:
    global _worker
    while True:
        with _lock:
            if not (_waits and _expected):
                _worker = None  # under the lock: the next wait starts another
                return
            name = _expected.pop(0)
        with contextlib.suppress(Exception):
            importlib.import_module(name)
