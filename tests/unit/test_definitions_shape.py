"""Both code locations, loaded whole: every asset says who owns it, what it is built with, where its code is and
what it is, so the UI's lineage can be read (and the catalog filtered) without opening the code."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from tests.stacks import write_stack_config


@pytest.fixture(scope="module")
def locations(tmp_path_factory: pytest.TempPathFactory) -> list[dg.Definitions]:
    from ml_assets.definitions import build_definitions as ml_definitions
    from platform_assets.definitions import build_definitions as platform_definitions

    config = write_stack_config(tmp_path_factory.mktemp("shape"))
    return [platform_definitions(config), ml_definitions(config)]


def _own_specs(defs: dg.Definitions) -> list[dg.AssetSpec]:
    graph = defs.resolve_asset_graph()
    return [spec for spec in defs.resolve_all_asset_specs() if graph.get(spec.key).is_executable]


def test_every_asset_has_owners_kinds_a_group_and_a_description(locations: list[dg.Definitions]) -> None:
    specs = [spec for defs in locations for spec in _own_specs(defs)]
    assert len(specs) >= 20
    lacking = {
        spec.key.to_user_string(): [
            what
            for what, present in (
                ("owners", spec.owners),
                ("kinds", spec.kinds),
                ("group", spec.group_name and spec.group_name != "default"),
                ("description", spec.description),
            )
            if not present
        ]
        for spec in specs
    }
    assert {key: missing for key, missing in lacking.items() if missing} == {}


def test_every_materializable_asset_links_to_its_code(locations: list[dg.Definitions]) -> None:
    for defs in locations:
        graph = defs.resolve_asset_graph()
        for spec in _own_specs(defs):
            if not graph.get(spec.key).is_materializable:
                continue
            references = spec.metadata.get("dagster/code_references")
            assert references is not None, spec.key.to_user_string()
            (reference,) = references.code_references
            path = Path(getattr(reference, "file_path", "") or getattr(reference, "url", ""))
            assert path.name.endswith(".py"), (spec.key.to_user_string(), reference)


def test_no_module_of_one_location_imports_the_other_or_is_imported_by_the_core() -> None:
    root = Path(__file__).resolve().parents[2]
    rules = {
        "ml_assets": ("platform_assets",),
        "platform_assets": ("ml_assets",),
        "platform_core": ("ml_assets", "platform_assets", "platformctl"),
    }
    crossing = [
        f"{path.relative_to(root)}: {line.strip()}"
        for package, forbidden in rules.items()
        for path in (root / package).rglob("*.py")
        for line in path.read_text().splitlines()
        if line.lstrip().startswith(("from ", "import ")) and line.split()[1].split(".")[0] in forbidden
    ]
    assert crossing == []
