"""Suite-wide rule: a test skipped for want of a system package (its reason says `apt-get install ...`) is a
failure where the suite must prove it ran everything (CI sets PLATFORM_TESTS_REQUIRE_SYSTEM_PACKAGES=1)."""

from __future__ import annotations

import os

import pytest

REQUIRE = os.environ.get("PLATFORM_TESTS_REQUIRE_SYSTEM_PACKAGES") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if REQUIRE and report.skipped and "apt-get install" in str(report.longrepr):
        report.outcome = "failed"
        report.longrepr = f"skipped for a missing system package, which this run requires: {report.longrepr}"
