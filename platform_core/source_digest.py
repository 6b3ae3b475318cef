"""A digest of the platform's own code: what the code servers load, what a model's predictions run through."""

from __future__ import annotations

import hashlib
import sys
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

CODE_PACKAGES = ("platform_core", "platform_assets", "ml_assets")
ROOT = Path(__file__).resolve().parents[1]


def code_digest() -> str:
    """sha256 of every .py file of the platform's packages, by path (a few ms)."""
    return _digest(tuple(_stamps()))


def runtime_digest(distributions: tuple[str, ...]) -> str:
    """The code's digest with the versions of the libraries it runs on and the interpreter's: what decides a
    result besides its inputs (an upgrade may change one)."""
    libraries = ",".join(f"{name}={version(name)}" for name in distributions)
    return hashlib.sha256(f"{code_digest()}|{libraries}|{sys.version}".encode()).hexdigest()[:16]


def _stamps() -> list[tuple[str, int, int]]:
    return [
        (p.relative_to(ROOT).as_posix(), p.stat().st_mtime_ns, p.stat().st_size)
        for package in CODE_PACKAGES
        for p in sorted((ROOT / package).rglob("*.py"))
    ]


@lru_cache(maxsize=4)
def _digest(stamps: tuple[tuple[str, int, int], ...]) -> str:
    """Recomputed only when a file's time or size moved: the watchdog asks every round."""
    digest = hashlib.sha256()
    for relative, _, _ in stamps:
        digest.update(relative.encode() + b"\0" + (ROOT / relative).read_bytes() + b"\0")
    return digest.hexdigest()[:16]
