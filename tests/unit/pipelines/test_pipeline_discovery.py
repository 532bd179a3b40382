"""Pipelines are discovered through the entry points of group `streamscore.pipelines` (the package's own
`pyproject.toml` declares risk and reco), so the registry names no pipeline module and imports none by name."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import pytest

from pipelines import builtin, registry
from pipelines.exceptions import ConfigError


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_LOADED", False)


def test_the_built_in_pipelines_are_the_installed_packages_entry_points() -> None:
    declared = {p.name: p.value for p in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert declared["risk"] == "pipelines.builtin:RISK" and declared["reco"] == "pipelines.builtin:RECO"
    assert registry.get("risk") is builtin.RISK and registry.get("reco") is builtin.RECO


@pytest.mark.usefixtures("fresh_registry")
def test_an_entry_point_that_does_not_name_its_pipelines_definition_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = EntryPoint("risk", "pipelines.builtin:RECO", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [wrong])
    with pytest.raises(ConfigError, match="must name the PipelineDefinition of pipeline 'risk'"):
        registry.get("risk")
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    with pytest.raises(ConfigError, match=r"no pipeline is installed.*pip install -e"):
        registry.pipeline_names()
    monkeypatch.setattr(registry, "entry_points", entry_points)  # installed again: found on the next lookup
    assert registry.pipeline_names() == ["reco", "risk"]
