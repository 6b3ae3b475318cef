"""Shared pieces of the config models: the one-line error, the strict base model, value checks."""

from __future__ import annotations

import re
import reprlib
import sys
from types import TracebackType
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
)


class ConfigError(ValueError):
    """A config problem as one line: ``<file>: <dotted.field.path>: <message>``."""

    def __init__(self, source: str, path: str, message: str) -> None:
        message = _LONG_WORD.sub(lambda m: f"{m.group(0)[:60]}... ({len(m.group(0))} characters)", message)
        self.source, self.path, self.message = source, path, message
        text = ": ".join(part for part in (source, path, message) if part)
        super().__init__(" ".join(text.splitlines()))  # logged as a single line


# A refusal quotes the bad value, shortened: whatever check words it, a 10 kB name is not sent back whole.
_LONG_WORD = re.compile(r"\S{121,}")


class _FieldError(ValueError):
    """Raised by cross-field checks to blame one sub-field, not the whole model."""

    def __init__(self, field: str | tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = tuple(field.split(".")) if isinstance(field, str) else field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check(predicate: Any, message: str) -> AfterValidator:
    """A field check; ``message`` may show the (shortened) bad value as ``{v}``."""

    def run(v: Any) -> Any:
        if not predicate(v):
            raise ValueError(message.replace("{v}", reprlib.repr(v)))
        return v

    return AfterValidator(run)


# Strict: YAML already yields ints, so a quoted "5000" is a mistake worth flagging.
Port = Annotated[int, Field(strict=True, ge=1024, le=65535)]


def config_errors_in_one_line() -> None:
    """An uncaught ``ConfigError`` ends the process with its one line alone: `dagster asset materialize` on a bad
    platform.yaml printed ~90 lines of traceback above the line that names the field. Other errors keep Python's
    traceback; the UI's code servers catch load errors themselves and show the same first line."""
    previous = sys.excepthook
    if getattr(previous, "config_errors_in_one_line", False):
        return

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if isinstance(value, ConfigError):
            print(f"error: {value}", file=sys.stderr)
        else:
            previous(kind, value, tb)

    setattr(hook, "config_errors_in_one_line", True)  # noqa: B010  # marks the hook: installed once per process
    sys.excepthook = hook
