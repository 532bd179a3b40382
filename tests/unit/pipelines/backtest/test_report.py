"""Backtest diff logic (pure Python): flip matrix, unchanged, missing on either side, deltas, reco overlap,
and the shadow job plan's isolation from production (ids, folders, topics)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipelines.backtest.job import options_from_json, options_to_json
from pipelines.backtest.report import delta_stats, diff_results, index_results, join, write_json
from pipelines.backtest.runner import BacktestRequest, default_shadow_topic, plan, topic_safe
from pipelines.exceptions import ConfigError
from pipelines.reco.backtest import diff_reco, overlap_at_k
from pipelines.risk.backtest import DECISIONS, diff_risk, write_delta_histogram
from pipelines.runtimes.flink.options import JobOptions


def _risk(event_id: str, decision: str, score: float, model: str = "risk@1") -> dict[str, Any]:
    return {"event_id": event_id, "account_id": "a", "score": score, "decision": decision, "reasons": [],
            "model": model, "state_version": 1, "ts": 0, "scored_at": 0}


def test_every_flip_direction_is_counted_and_the_matrix_adds_up() -> None:
    production, shadow = [], []
    expected: dict[str, int] = {}
    n = 0
    for i, before in enumerate(DECISIONS):
        for j, after in enumerate(DECISIONS):
            for _ in range(1 + i * 3 + j):  # a distinct count per cell
                production.append(_risk(f"e{n}", before, 0.5))
                shadow.append(_risk(f"e{n}", after, 0.5, "risk@2"))
                n += 1
            if before != after:
                expected[f"{before}->{after}"] = 1 + i * 3 + j
    diff = diff_risk(index_results(production), index_results(shadow), {r["event_id"] for r in production})
    assert diff.flips == expected
    assert diff.unchanged == 1 + 5 + 9
    assert diff.compared == n == diff.unchanged + sum(diff.flips.values())
    assert sum(sum(row.values()) for row in diff.matrix.values()) == n
    assert diff.matrix["block"]["approve"] == 7
    assert diff.production_models == {"risk@1": n} and diff.shadow_models == {"risk@2": n}
    assert diff.missing_in_shadow == diff.missing_in_production == 0


def test_missing_events_on_either_side_and_outside_the_window() -> None:
    production = [_risk("both", "approve", 0.1), _risk("prod-only", "review", 0.6), _risk("before-window", "block", 1)]
    shadow = [_risk("both", "approve", 0.2), _risk("shadow-only", "approve", 0.1)]
    window = {"both", "prod-only", "shadow-only"}
    diff = diff_risk(index_results(production), index_results(shadow), window)
    assert diff.compared == 1 and diff.unchanged == 1
    assert diff.missing_in_shadow == 1 and diff.examples_missing_in_shadow == ["prod-only"]
    assert diff.missing_in_production == 1 and diff.examples_missing_in_production == ["shadow-only"]
    assert diff.score_delta.count == 1 and diff.score_delta.mean == pytest.approx(0.1)


def test_without_a_window_only_the_shadows_events_are_expected() -> None:
    production = [_risk("a", "approve", 0.1), _risk("b", "approve", 0.1)]
    shadow = [_risk("b", "block", 0.9)]
    joined = join(index_results(production).by_event, index_results(shadow).by_event, None)
    assert joined.both == ["b"] and joined.missing_in_shadow == [] and joined.missing_in_production == []
    diff = diff_risk(index_results(production), index_results(shadow), None)
    assert diff.flips["approve->block"] == 1 and diff.compared == 1


def test_duplicates_keep_the_first_result_and_are_counted() -> None:
    indexed = index_results([_risk("a", "approve", 0.1), _risk("a", "block", 0.9), _risk("b", "review", 0.5)])
    assert indexed.duplicates == 1
    assert indexed.by_event["a"]["decision"] == "approve"


def test_empty_sides_give_empty_statistics_not_errors(tmp_path: Path) -> None:
    diff = diff_risk(index_results([]), index_results([]), set())
    assert diff.compared == 0 and diff.unchanged == 0 and set(diff.flips.values()) == {0}
    assert diff.score_delta.count == 0 and diff.score_delta.mean is None and diff.score_delta.max_abs is None
    summary = json.loads(write_json(tmp_path / "r.json", {"diff": diff.as_json()}).read_text())
    assert "deltas" not in summary["diff"]
    assert write_delta_histogram(tmp_path / "h.png", [], "empty").stat().st_size > 0


def test_unknown_decisions_get_their_own_row_and_column() -> None:
    diff = diff_risk(index_results([_risk("a", "hold", 0.5)]), index_results([_risk("a", "approve", 0.5)]), {"a"})
    assert diff.flips["hold->approve"] == 1
    assert list(diff.matrix)[:3] == list(DECISIONS)


def test_delta_statistics() -> None:
    stats = delta_stats([-0.4, 0.0, 0.1, 0.2, 0.1])
    assert stats.count == 5 and stats.changed == 4
    assert stats.mean == pytest.approx(0.0)
    assert stats.mean_abs == pytest.approx(0.16)
    assert stats.p50_abs == pytest.approx(0.1)
    assert stats.max_abs == pytest.approx(0.4)
    assert stats.p95_abs == pytest.approx(0.36)  # linear interpolation between 0.2 and 0.4


def test_histogram_png_is_written(tmp_path: Path) -> None:
    path = write_delta_histogram(tmp_path / "deltas.png", [0.01 * i for i in range(-20, 30)], "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _reco(event_id: str, items: list[int]) -> dict[str, Any]:
    return {"event_id": event_id, "items": items, "model": "reco@1"}


def test_reco_overlap_and_top1() -> None:
    assert overlap_at_k([1, 2, 3], [3, 2, 9], 2) == pytest.approx(0.5)
    production = [_reco("a", [1, 2, 3, 4]), _reco("b", [5, 6, 7, 8]), _reco("c", [1, 2, 3, 4])]
    shadow = [_reco("a", [1, 2, 3, 4]), _reco("b", [6, 5, 0, 0])]
    diff = diff_reco(index_results(production), index_results(shadow), {"a", "b", "c"}, k=4)
    assert diff.compared == 2 and diff.top1_changed == 1 and diff.top1_changed_rate == pytest.approx(0.5)
    assert diff.mean_overlap_at_k == pytest.approx((1.0 + 0.5) / 2)
    assert diff.missing_in_shadow == 1 and diff.missing_in_production == 0
    with pytest.raises(ValueError, match="k >= 1"):
        diff_reco(index_results(production), index_results(shadow), None, k=0)


def _production(tmp_path: Path) -> JobOptions:
    return JobOptions(pipeline="risk", bootstrap="127.0.0.1:1", input_topic="in", output_topic="risk.scores",
                      dlq_topic="dlq", checkpoint_dir=tmp_path / "prod-checkpoints")


def test_the_shadow_job_shares_nothing_writable_with_production(tmp_path: Path) -> None:
    production = _production(tmp_path)
    the_plan = plan(BacktestRequest(production, "risk@2", from_timestamp_ms=1, report_dir=tmp_path / "bt"))
    shadow = the_plan.shadow
    assert shadow.input_topic == production.input_topic
    assert shadow.output_topic.startswith("risk.scores.backtest.risk-2.")
    assert shadow.dlq_topic == shadow.output_topic + ".dlq"
    assert shadow.id_prefix != production.id_prefix  # consumer group and transactional ids
    assert shadow.checkpoint_dir == (tmp_path / "bt" / "checkpoints").resolve()
    assert production.checkpoint_dir.resolve() not in shadow.checkpoint_dir.parents
    assert shadow.bounded and shadow.model_ref == "risk@2" and shadow.delivery == "exactly-once"
    assert shadow.start_from == "timestamp" and shadow.start_timestamp_ms == 1
    other = plan(BacktestRequest(production, "risk@2", from_timestamp_ms=1, report_dir=tmp_path / "bt2"))
    assert other.shadow.id_prefix != shadow.id_prefix and other.shadow.output_topic != shadow.output_topic
    again, restore, stops = options_from_json(options_to_json(shadow, None, {0: 5}))
    assert again == shadow and restore is None and stops == {0: 5}


def test_unsafe_or_ambiguous_plans_are_refused(tmp_path: Path) -> None:
    production = _production(tmp_path)
    with pytest.raises(ConfigError, match="exactly one"):
        plan(BacktestRequest(production, "risk@2"))
    with pytest.raises(ConfigError, match="production topic"):
        plan(BacktestRequest(production, "risk@2", from_timestamp_ms=1, shadow_topic="risk.scores"))
    with pytest.raises(ConfigError, match="inside the production checkpoint folder"):
        plan(BacktestRequest(production, "risk@2", from_timestamp_ms=1,
                             report_dir=production.checkpoint_dir / "x"))
    with pytest.raises(ConfigError, match="later than"):
        plan(BacktestRequest(production, "risk@2", from_timestamp_ms=10, to_timestamp_ms=5))


def test_shadow_topic_names_are_valid_kafka_names() -> None:
    assert topic_safe("risk@2") == "risk-2"
    assert default_shadow_topic("risk.scores", "risk@2", "abcd1234") == "risk.scores.backtest.risk-2.abcd1234"


def test_the_models_count_says_which_backend_scored_production_and_which_fell_back() -> None:
    production = [_risk("e0", "approve", 0.1, "risk-large@1"), _risk("e1", "approve", 0.1, "risk-large@1"),
                  _risk("e2", "approve", 0.1, "risk@1")]
    production[0]["backend"] = "server"
    production[1]["fallback"] = True
    shadow = [_risk(e, "approve", 0.1, "risk@2") for e in ("e0", "e1", "e2")]
    diff = diff_risk(index_results(production), index_results(shadow), {"e0", "e1", "e2"})
    assert diff.production_models == {"risk-large@1 on server": 1, "risk-large@1 fallback": 1, "risk@1": 1}
    assert diff.shadow_models == {"risk@2": 3}


def test_a_pipeline_without_its_own_diff_gets_whole_results_compared_time_and_model_aside(tmp_path: Path) -> None:
    production = [{"event_id": f"e{i}", "count": i, "scored_at": 1, "model": "m@1"} for i in range(5)]
    shadow = [{"event_id": f"e{i}", "count": i + (i == 3), "scored_at": 2, "model": "m@2"} for i in range(1, 5)]
    outcome = diff_results(index_results(production), index_results(shadow), {f"e{i}" for i in range(5)}, k=10,
                           title="toy", report_dir=tmp_path)
    assert (outcome.summary["compared"], outcome.summary["unchanged"], outcome.summary["changed"]) == (4, 3, 1)
    assert outcome.summary["missing_in_shadow"] == 1 and outcome.summary["examples_changed"] == ["e3"]
    assert outcome.png.is_file() and "3 results unchanged, 1 changed" in outcome.text
