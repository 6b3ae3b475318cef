"""Reading platform.yaml: YAML with duplicate keys refused, pydantic errors turned into one line."""

from __future__ import annotations

import difflib
import reprlib
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from platform_core.config.base import ConfigError, _FieldError
from platform_core.config.models import PlatformConfig


def _model_in(tp: Any) -> Any:
    """The model class inside an annotation such as ``list[X]`` or ``X | None``."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    return next(filter(None, map(_model_in, get_args(tp))), None)


def _unknown_key(loc: tuple[Any, ...]) -> str:
    model = PlatformConfig
    for part in loc[:-1]:
        if isinstance(part, str):  # list indexes keep the item model
            model = _model_in(model.model_fields[part].annotation)
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


_TYPE_MESSAGES = {"model_type": "must be a mapping", "dict_type": "must be a mapping"}


def _to_config_error(err: ValidationError, source: str) -> ConfigError:
    errors = err.errors()
    first, kind = errors[0], errors[0]["type"]
    cause = first.get("ctx", {}).get("error")
    loc = (*first["loc"], *(cause.loc if isinstance(cause, _FieldError) else ()))
    if kind == "extra_forbidden":
        message = _unknown_key(loc)
    elif kind == "missing":
        message = "required"
    elif isinstance(cause, ValueError):
        message = str(cause)
    else:  # pydantic's wording minus its "Input should be" preamble, plus the value
        text = _TYPE_MESSAGES.get(kind) or first["msg"].replace("Input should be", "must be")
        message = f"{text.removeprefix('Input ')} (got {reprlib.repr(first['input'])})"
    if len(errors) > 1:
        message += f" (+{len(errors) - 1} more)"
    return ConfigError(source, ".".join(map(str, loc)), message)


def parse_config(data: dict[str, Any], source: str = "<config>") -> PlatformConfig:
    """Validate an already-loaded mapping; ``source`` names it in error messages."""
    try:
        return PlatformConfig.model_validate(data)
    except ValidationError as err:
        raise _to_config_error(err, source) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which PyYAML silently overwrites."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        for i, key in enumerate(keys):
            if isinstance(key, (str, int)) and key in keys[:i]:
                mark = node.value[i][0].start_mark
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path) -> PlatformConfig:
    """Read and validate a platform.yaml; any failure is a one-line ``ConfigError``."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "", f"cannot read file: {exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no object tags
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(source, where, f"invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, "", f"invalid YAML: {exc}") from None
    if data is None:
        data = {}  # an empty file means "all defaults"
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ConfigError(source, "", f"top level must be a mapping of sections, not {kind}")
    return parse_config(data, source)
