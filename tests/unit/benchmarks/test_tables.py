"""The benchmark tables in README.md and docs/runtimes.md are exactly what `benchmarks/tables.py` renders from the
committed `benchmarks/results/bench.json` (so a table cannot be edited by hand or drift from its run)."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_tables", ROOT / "benchmarks" / "tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_tables"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report(tables: ModuleType) -> dict:
    return json.loads(tables.BENCH_JSON.read_text())


def test_committed_tables_equal_what_the_script_renders(tables: ModuleType, report: dict) -> None:
    for path, content in tables.rendered(report).items():
        assert path.read_text() == content, (
            f"{path.relative_to(ROOT)}: its bench table differs from benchmarks/results/bench.json: "
            "run `python benchmarks/tables.py` (never edit the table by hand)")


def test_the_tables_show_the_runs_figures(tables: ModuleType, report: dict) -> None:
    readme = tables.readme_table(report)
    assert report["machine"]["git_commit"] in readme
    quix = report["systems"]["quix"]["throughput"]["median"]
    assert f"| quix | {quix:,.0f} (" in readme
    runtimes = tables.runtimes_table(report)
    flink_eos = report["systems"]["streamscore-risk-eos"]["throughput"]["median"]
    faust_reco = report["systems"]["faust-reco"]["throughput"]["median"]
    assert f"{flink_eos:,.0f}" in runtimes and f"{faust_reco:,.0f}" in runtimes


def test_a_failed_or_missing_system_is_not_given_a_figure(tables: ModuleType, report: dict) -> None:
    changed = copy.deepcopy(report)
    changed["systems"]["faust-reco"]["status"] = "failed"
    del changed["systems"]["streamscore-risk-eos"]
    rows = {line.split(" | ")[0]: line for line in tables.runtimes_table(changed).splitlines()}
    assert rows["| reco events/s"].endswith("| n/a |")
    assert "/ n/a |" in rows["| risk events/s, at-least-once / exactly-once"]


def test_a_changed_result_makes_the_committed_readme_stale(tables: ModuleType, report: dict) -> None:
    changed = copy.deepcopy(report)
    changed["systems"]["quix"]["throughput"]["median"] += 1000
    stale = tables.rendered(changed)
    assert stale[tables.README_TABLE.path] != tables.README_TABLE.path.read_text()


def test_the_low_load_latency_is_shown_where_measured_and_never_invented(tables: ModuleType, report: dict) -> None:
    changed = copy.deepcopy(report)
    for system in changed["systems"].values():
        system.pop("latency_low_load", None)
    changed["systems"]["faust-risk-alo"]["latency_low_load"] = {
        "rate": 6_400.0, "ok": True, "send_to_scored_ms": {"p50": 7.0, "p99": 31.0, "p99.9": 40.0}}
    changed["systems"]["quix"]["latency_low_load"] = {
        "rate": 1_300.0, "ok": False, "send_to_scored_ms": {"p50": 3.0, "p99": 9.0, "p99.9": 12.0}}
    rows = {line.split(" | ")[0]: line for line in tables.runtimes_table(changed).splitlines()}
    assert rows["| risk send → scored p50 / p99 ms at 10 % load, at-least-once"].endswith("| n/a | 7 / 31 |")
    readme = {line.split(" | ")[0]: line for line in tables.readme_table(changed).splitlines()}
    assert "| 7 / 31 (6,400) |" in readme["| faust-risk-alo"]
    assert "| failed |" in readme["| quix"]  # a run whose outputs failed their check gives no figure
    assert "| - |" in readme["| faust-reco"]  # not measured
