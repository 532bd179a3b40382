"""Pipelines are discovered through the entry points of group `streamscore.pipelines` (the package's own
`pyproject.toml` declares risk and reco), so the registry names no pipeline module and imports none by name."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import pytest

from pipelines import registry
from pipelines.exceptions import ConfigError
from pipelines.reco.definition import RECO
from pipelines.risk.definition import RISK


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_LOADED", False)


def test_the_built_in_pipelines_are_the_installed_packages_entry_points() -> None:
    declared = {p.name: p.value for p in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert declared["risk"] == "pipelines.risk.definition:RISK"
    assert declared["reco"] == "pipelines.reco.definition:RECO"
    assert registry.get("risk") is RISK and registry.get("reco") is RECO


@pytest.mark.usefixtures("fresh_registry")
def test_an_entry_point_that_does_not_name_its_pipelines_definition_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = EntryPoint("risk", "pipelines.reco.definition:RECO", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [wrong])
    with pytest.raises(ConfigError, match="must name the PipelineDefinition of pipeline 'risk'"):
        registry.get("risk")
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    with pytest.raises(ConfigError, match=r"no pipeline is installed.*pip install -e"):
        registry.pipeline_names()
    monkeypatch.setattr(registry, "entry_points", entry_points)  # installed again: found on the next lookup
    assert registry.pipeline_names() == ["reco", "risk"]
