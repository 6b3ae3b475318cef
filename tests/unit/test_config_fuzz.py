"""Property: any mutation of a valid platform.yaml (a field given a wrong type, an out-of-range or huge value,
removed, duplicated, or joined by an unknown key) is either accepted or refused in exactly one line naming the
field, never a traceback, and the state directory is untouched either way."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from platform_core.config import ConfigError, PlatformConfig
from platform_core.state import load_platform
from tests.unit.test_config import valid as valid_k3s

pytestmark = pytest.mark.usefixtures("no_env_overrides")

REPO_CONFIG = Path(__file__).parents[2] / "platform.yaml"


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next(filter(None, map(_model_in, get_args(annotation))), None)


def _paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every field path of the config, nested models included (list items as their first element)."""
    out = []
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        out.append(path)
        inner = _model_in(info.annotation)
        if inner is not None:
            is_list = "list" in str(info.annotation)
            out += _paths(inner, (*path, "0") if is_list else path)
    return out


PATHS = _paths(PlatformConfig)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(alphabet="ab/.:-", min_size=10_000, max_size=10_000),  # huge
    st.sampled_from(["", "127.0.0.1", "10.43.100.94/24", "v0.13.0", "latest", "0", "-1", "1e309", "\x00", "../.."]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _parent(doc: dict[str, Any], path: tuple[str, ...]) -> tuple[Any, str] | None:
    """The container holding ``path``'s last key, created as needed; None when the document has no such place."""
    node: Any = doc
    for key in path[:-1]:
        if isinstance(node, list):
            if not node:
                return None
            node = node[int(key)]
            continue
        if not isinstance(node, dict):
            return None
        node = node.setdefault(key, {})
    return (node, path[-1]) if isinstance(node, dict) else None


def _mutate(doc: dict[str, Any], path: tuple[str, ...], kind: str, value: Any) -> str:
    """The mutated document as YAML text."""
    place = _parent(doc, path)
    if place is not None:
        node, key = place
        if kind == "replace":
            node[key] = value
        elif kind == "remove":
            node.pop(key, None)
        elif kind == "unknown":
            node[key + "_x"] = value
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    if kind == "duplicate" and doc:
        section = next(iter(doc))
        text += yaml.safe_dump({section: doc[section]}, sort_keys=False)  # the same top-level key twice
    return text


@pytest.mark.parametrize("base", ["local", "k3s"])
@given(data=st.data())
@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_any_mutation_is_accepted_or_one_line_naming_the_field(
    tmp_path_factory, base: str, data: st.DataObject
) -> None:
    directory = tmp_path_factory.mktemp("fuzz")
    doc = yaml.safe_load(REPO_CONFIG.read_text()) if base == "local" else valid_k3s()
    doc["state_dir"] = str(directory / "state")
    path = data.draw(st.sampled_from(PATHS), label="path")
    kind = data.draw(st.sampled_from(["replace", "replace", "remove", "unknown", "duplicate"]), label="kind")
    value = data.draw(VALUES, label="value")
    if path == ("state_dir",) and kind == "replace":
        value = str(directory / "state") if not isinstance(value, str) or "\x00" in value else value
    config = directory / "platform.yaml"
    config.write_text(_mutate(doc, path, kind, value), encoding="utf-8")
    try:
        load_platform(config)
    except ConfigError as err:
        message = str(err)
        assert "\n" not in message and message.startswith(f"{config}: ")
        assert err.path and err.message, message  # a field (or a YAML line) and what is wrong with it
        assert len(message) < 2_000, "a refusal quotes a shortened value, not a 10 kB one"
    assert not (directory / "state").exists()  # loading never writes


def test_the_paths_cover_every_section() -> None:
    tops = {path[0] for path in PATHS}
    assert tops == set(PlatformConfig.model_fields)
    assert ("network", "metallb_pool") in PATHS and ("buckets", "0", "owner") in PATHS


@pytest.mark.parametrize(("path", "value"), [(("ml", "datasets_bucket"), ":" * 10_000), (("state_dir",), ":" * 10_000)])
def test_cases_the_property_found(tmp_path: Path, path: tuple[str, ...], value: str) -> None:
    """A 10 kB bucket name was quoted whole; a 10 kB state_dir raised OSError (name too long) as a traceback."""
    doc = yaml.safe_load(REPO_CONFIG.read_text())
    doc["state_dir"] = str(tmp_path / "state")
    config = tmp_path / "platform.yaml"
    config.write_text(_mutate(doc, path, "replace", value), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_platform(config)
    assert len(str(caught.value)) < 2_000 and "\n" not in str(caught.value)
