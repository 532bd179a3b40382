"""The recommender's closed loop on the real broker and real Flink jobs, with the click generator's drift
scenario: from 40 % of the stream's time span on, sessions follow new "goes-with" items (`new-season`).

The production job (following promotions) recommends over the stream; its HR@10 on the sessions after the
change is lower than before. `streamscore loop reco` builds the dataset from the clicks, the results and the
confirmed orders, fine-tunes production on the clicks before the cutoff (past the change, purchases weighted),
backtests it with a shadow job over the whole input, and promotes it because its HR@10 on the newest sessions
beats production's by >= 0.05 in the streaming results; the running job then hot-swaps to it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from models.registry import ModelRegistry
from models.synthetic import generate_clicks
from pipelines.kafka.clients import consume, ensure_topics
from pipelines.reco.config import RECO_CONFIG_PATH
from pipelines.reco.definition import NEW_SEASON, NEW_SEASON_FROM
from pipelines.reco.feedback import ATTRIBUTION_MS
from pipelines.reco.retraining import Session, metrics_at_k

from .conftest import Topics, config_following_promotions, streamscore
from .test_closed_loop import _iso, _wait_for, assert_next_results_name
from .test_recovery import _kill

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS, SEED = 80_000, 21


def _hit_rate(sessions: list[Session]) -> float:
    top = {(i, t): s.recommended[t] for i, s in enumerate(sessions) for t in range(len(s.items))}
    return float(metrics_at_k(sessions, top)["hr_at_10"])


def test_the_reco_loop_fine_tunes_past_a_new_season_and_the_running_job_swaps_to_it(
    bootstrap: str, topics: Topics, tmp_path: Path, private_registry: Path
) -> None:
    config_path = config_following_promotions(RECO_CONFIG_PATH, tmp_path / "reco.yaml")
    feedback = topics.input + ".feedback"
    ensure_topics(bootstrap, [feedback])
    streamscore("--bootstrap", bootstrap, "publish", "reco", "--events", str(EVENTS), "--seed", str(SEED),
                "--scenario", NEW_SEASON, "--topic", topics.input)
    log = tmp_path / "job.log"
    with open(log, "wb") as out:
        job = subprocess.Popen(
            [sys.executable, "-m", "pipelines", "--bootstrap", bootstrap, "run", "reco", "--config", str(config_path),
             "--input-topic", topics.input, "--output-topic", topics.output, "--dlq-topic", topics.dlq,
             "--checkpoint-dir", str(tmp_path / "checkpoints"), "--delivery", "at-least-once"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(bootstrap, topics.output, EVENTS, job, log)
        streamscore("--bootstrap", bootstrap, "publish", "feedback", "reco", "--events", str(EVENTS), "--seed",
                    str(SEED), "--scenario", NEW_SEASON, "--topic", feedback)

        # the drift: production's HR@10 on the sessions after the change is lower than before it
        served = {r["event_id"]: r["items"] for r in (msgspec.json.decode(x.value) for x in
                                                      consume(bootstrap, topics.output, timeout_s=3))}
        events = generate_clicks(EVENTS, SEED, new_season_from=NEW_SEASON_FROM)
        sessions: dict[str, Session] = {}
        for e in events:
            s = sessions.setdefault(str(e["session_id"]), Session(str(e["session_id"]), [], [], [], []))
            s.items.append(int(e["item_id"]))  # type: ignore[call-overload]
            s.ts.append(int(e["ts"]))  # type: ignore[call-overload]
            s.recommended.append(served[str(e["event_id"])])
            s.bought.append(False)  # purchases are not what this hit rate counts
        first, last = events[0]["ts"], events[-1]["ts"]
        drift_at = int(first) + NEW_SEASON_FROM * (int(last) - int(first))  # type: ignore[call-overload]
        before = _hit_rate([s for s in sessions.values() if s.ts[-1] < drift_at])
        after = _hit_rate([s for s in sessions.values() if s.ts[0] >= drift_at])
        assert after < before - 0.1, (before, after)

        until = _iso(int(last) + ATTRIBUTION_MS + 1)  # type: ignore[call-overload]  # every order confirmed
        report_dir = tmp_path / "loop"
        streamscore("--bootstrap", bootstrap, "loop", "reco", "--until", until, "--feedback", feedback, "--config",
                    str(config_path), "--input-topic", topics.input, "--output-topic", topics.output, "--dlq-topic",
                    topics.dlq, "--report-dir", str(report_dir), "--margin", "0.05", "--fail-if-kept")
        report = json.loads((report_dir / "loop.json").read_text())
        assert report["promoted"] and report["production"] == "reco@2" and report["metric"] == "hr_at_10"
        assert report["holdout"]["trained_to_ts"] > drift_at  # fine-tuned on clicks past the change
        backtest = report["backtest"]
        assert backtest["candidate"]["hr_at_10"] >= backtest["production"]["hr_at_10"] + 0.05, backtest
        assert backtest["candidate"] == report["offline"]["candidate"]  # the shadow job == the replay
        assert backtest["production"] == report["offline"]["served"] == report["offline"]["production"]
        candidate = report["candidate"]
        assert ModelRegistry().current("reco") == int(candidate.split("@")[1])
        manifest = ModelRegistry().manifest("reco", int(candidate.split("@")[1]))
        assert manifest["fine_tuned_from"] == "reco@2" and manifest["dataset"]["to_ts"] == int(last)  # type: ignore[call-overload]

        # the running job hot-swapped: new clicks get the candidate's recommendations
        assert_next_results_name(candidate, bootstrap, topics, "reco", EVENTS, SEED + 1, job, log)
    finally:
        _kill(job, signal.SIGTERM)
