"""The closed loop on the real broker and real Flink jobs, with the generator's drift scenario: a new fraud
pattern (`micro_drain`) appears from 40 % of the stream's time span on.

The production job (following promotions) scores the stream; its ROC-AUC on events after the pattern appeared
is lower than before. `streamscore loop risk` builds the point-in-time dataset from results, late labels and
the state changelog, trains a candidate on the older rows (past the drift), backtests it with a shadow job
over the whole input, and promotes it because its ROC-AUC on the newest rows beats production's by >= 0.03 -
as the backtest's streaming scores show (and its PR-AUC by >= 0.2); the running job then hot-swaps to it (new
results name it). A second turn with a margin no candidate can reach keeps production and says why. The drift
report, given the labels, flags the features the new pattern changes in the frauds."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest

from models.evaluation import roc_auc
from models.registry import ModelRegistry
from pipelines.kafka.clients import consume, end_offsets, ensure_topics, publish_records
from pipelines.kafka.publishing import synthetic_events
from pipelines.loop.feedback import synthetic_labels
from pipelines.registry import get
from pipelines.risk.config import RISK_CONFIG_PATH
from pipelines.risk.definition import EMERGING_FROM
from pipelines.risk.feedback import MATURITY_MS

from .conftest import Topics, config_following_promotions, start_job, streamscore
from .test_recovery import _kill

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS, SEED, SCENARIO = 40_000, 21, "emerging-fraud"


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _wait_for(bootstrap: str, topic: str, count: int, job: object, log: Path, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(end_offsets(bootstrap, topic).values()) < count:
        assert job.poll() is None, log.read_text()[-3000:]  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, f"fewer than {count} results on {topic} after {timeout_s:.0f} s"
        time.sleep(1)


def assert_next_results_name(model: str, bootstrap: str, topics: Topics, pipeline: str, published: int, seed: int,
                             job: object, log: Path) -> None:
    """Publish 30 more synthetic events of `pipeline` (after `published`) and check their results name `model`."""
    time.sleep(2)  # a few model-refresh periods
    late = synthetic_events(pipeline, 30, seed=seed)
    key = get(pipeline).key_field
    publish_records(bootstrap, topics.input, [(str(e[key]).encode(), msgspec.json.encode(e)) for e in late])
    _wait_for(bootstrap, topics.output, published + len(late), job, log)
    fresh = [msgspec.json.decode(x.value) for x in consume(bootstrap, topics.output, timeout_s=3)][-len(late):]
    assert {r["model"] for r in fresh} == {model}


def test_the_loop_retrains_past_a_drift_and_the_running_job_swaps_to_the_better_model(
    bootstrap: str, topics: Topics, tmp_path: Path, private_registry: Path
) -> None:
    config_path = config_following_promotions(RISK_CONFIG_PATH, tmp_path / "risk.yaml")
    changelog, feedback = topics.output + ".changelog", topics.input + ".feedback"
    ensure_topics(bootstrap, [changelog, feedback])
    streamscore("--bootstrap", bootstrap, "publish", "risk", "--events", str(EVENTS), "--seed", str(SEED),
                "--scenario", SCENARIO, "--topic", topics.input)
    log = tmp_path / "job.log"
    job = start_job(bootstrap, topics, tmp_path / "checkpoints", log, "--config", str(config_path),
                    "--state-changelog", changelog, "--delivery", "at-least-once")
    try:
        _wait_for(bootstrap, topics.output, EVENTS, job, log)
        streamscore("--bootstrap", bootstrap, "publish", "feedback", "risk", "--events", str(EVENTS), "--seed",
                    str(SEED), "--scenario", SCENARIO, "--topic", feedback)

        # the drift: production's ROC-AUC after the new pattern appeared is lower than before
        results = {r["event_id"]: r for r in (msgspec.json.decode(x.value) for x in
                                              consume(bootstrap, topics.output, timeout_s=3))}
        labels = {str(x["event_id"]): int(x["label"]) for x in synthetic_labels("risk", EVENTS, SEED, SCENARIO)}
        ts = np.array([r["ts"] for r in results.values()])
        drift_at = ts.min() + EMERGING_FROM * (ts.max() - ts.min())
        y = np.array([labels[e] for e in results])
        score = np.array([r["score"] for r in results.values()])
        early = ts < drift_at
        before, after = roc_auc(y[early], score[early]), roc_auc(y[~early], score[~early])
        assert after < before - 0.03, (before, after)

        # the drift report: the frauds of the last third look different from the first third's (the reference,
        # before the new pattern) in the features the new pattern changes
        third_ms = int((ts.max() - ts.min()) / 3)
        reference = f"{_iso(int(ts.min()))}/{_iso(int(ts.min()) + third_ms)}"
        streamscore("--bootstrap", bootstrap, "drift", "risk", "--results", topics.output, "--changelog", changelog,
                    "--feedback", feedback, "--window", str(third_ms / 3_600_000), "--reference", reference,
                    "--report-dir", str(tmp_path / "drift"))
        drift = json.loads((tmp_path / "drift" / "drift.json").read_text())
        assert {"log_amount", "amount_z", "log_amount_vs_mean"} <= set(drift["positives"]["flagged"]), drift

        until = _iso(int(ts.max()) + MATURITY_MS + 1)  # every label has arrived
        report_dir = tmp_path / "loop"
        loop = ("--bootstrap", bootstrap, "loop", "risk", "--until", until, "--feedback", feedback, "--changelog",
                changelog, "--config", str(config_path), "--input-topic", topics.input, "--output-topic",
                topics.output, "--dlq-topic", topics.dlq)
        # production (risk@3) scores ROC-AUC ~0.95 on the newest rows: a margin of 0.03 leaves the candidate 0.02
        # below 1.0; the gain shows most in PR-AUC (asserted below)
        streamscore(*loop, "--report-dir", str(report_dir), "--margin", "0.03", "--fail-if-kept")
        report = json.loads((report_dir / "loop.json").read_text())
        assert report["promoted"] and report["production"] == "risk@3"
        assert report["holdout"]["trained_to_ts"] > drift_at  # trained on labelled events past the drift
        backtest = report["backtest"]
        assert backtest["candidate"]["roc_auc"] >= backtest["production"]["roc_auc"] + 0.03, backtest
        # fine-tuned from production, it keeps what production knew: its top scores are far more precise too
        assert backtest["candidate"]["pr_auc"] >= backtest["production"]["pr_auc"] + 0.2, backtest
        # the streaming path and the offline evaluation agree on both models
        for who in ("candidate", "production"):
            assert abs(backtest[who]["roc_auc"] - report["offline"][who]["roc_auc"]) < 1e-3, report
        assert Path(backtest["report_json"]).exists() and (report_dir / "loop.png").exists()
        candidate = report["candidate"]
        assert ModelRegistry().current("risk") == int(candidate.split("@")[1])
        manifest = ModelRegistry().manifest("risk", int(candidate.split("@")[1]))
        assert manifest["dataset"]["path"] == str(report_dir / "dataset.parquet")
        assert manifest["dataset"]["to_ts"] == int(ts.max()) and manifest["fine_tuned_from"] == "risk@3"

        # the running job hot-swapped: new events are scored by the candidate
        assert_next_results_name(candidate, bootstrap, topics, "risk", EVENTS, SEED + 1, job, log)

        # a margin no candidate reaches: production stays, and the report says why
        kept_dir = tmp_path / "kept"
        streamscore(*loop, "--report-dir", str(kept_dir), "--margin", "0.9", "--no-backtest")
        kept = json.loads((kept_dir / "loop.json").read_text())
        assert not kept["promoted"] and "below the margin 0.9" in kept["why"]
        assert ModelRegistry().current("risk") == int(candidate.split("@")[1])
    finally:
        _kill(job, signal.SIGTERM)
