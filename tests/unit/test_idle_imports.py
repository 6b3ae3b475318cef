"""platform_core/idle_imports.py: what a command expects to import is imported while it waits for a start, and
only then."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_core import idle_imports


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Three importable modules of the test's own: the second takes 0.3 s to import, a fourth fails."""
    bodies = {
        "idle_first": "",
        "idle_slow": "import time\ntime.sleep(0.3)\n",
        "idle_broken": "raise RuntimeError('broken at import')\n",
        "idle_last": "",
    }
    for name, body in bodies.items():
        (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(idle_imports, "_expected", [])
    monkeypatch.setattr(idle_imports, "_worker", None)
    yield list(bodies)
    for name in bodies:
        sys.modules.pop(name, None)


def _join() -> None:
    worker = idle_imports._worker
    if worker is not None:
        worker.join(5)


def test_nothing_is_imported_without_a_wait(modules: list[str]) -> None:
    idle_imports.expect(*modules)
    time.sleep(0.2)
    assert not set(modules) & set(sys.modules)


def test_a_wait_imports_in_order_and_a_failure_is_left_to_the_step(modules: list[str]) -> None:
    idle_imports.expect(*modules)
    with idle_imports.waiting():
        deadline = time.monotonic() + 5
        while "idle_last" not in sys.modules and time.monotonic() < deadline:
            time.sleep(0.02)
    _join()
    assert {"idle_first", "idle_slow", "idle_last"} <= set(sys.modules)
    assert "idle_broken" not in sys.modules  # not half-imported: the step's own import raises it again
    with pytest.raises(RuntimeError, match="broken at import"):
        __import__("idle_broken")


def test_no_new_import_starts_once_the_wait_is_over(modules: list[str]) -> None:
    idle_imports.expect(*modules)
    with idle_imports.waiting():
        deadline = time.monotonic() + 5
        while "idle_slow" not in sys.modules and time.monotonic() < deadline:  # in sys.modules once begun
            time.sleep(0.01)
    _join()
    assert {"idle_first", "idle_slow"} <= set(sys.modules)  # begun before the wait ended: finished
    assert "idle_last" not in sys.modules
