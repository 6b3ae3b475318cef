"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest

from platform_core.settings import CONFIG_ENV, STATE_DIR_ENV


@pytest.fixture
def no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """The config file and state directory as platform.yaml says, not as the caller's environment overrides."""
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
