"""A bad model version made current while a job runs (issue 33, item 5), both runtimes: its file missing, its
sha256 not the manifest's, a file onnxruntime cannot load. The job keeps scoring with the version it has, logs
each refusal, counts it in `model_swap_failures`, `models show` says the version is unusable (exit 1), and the
next good version is swapped in. Every result equals the offline score of the model it names."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from models.registry import CURRENT_FILE, MANIFEST_FILE, ModelRegistry, _write_atomic
from operators.risk.schemas import RiskResult
from pipelines.kafka.clients import consume, publish_records
from pipelines.kafka.publishing import synthetic_events
from pipelines.risk.config import RISK_CONFIG_PATH

from .conftest import Topics, config_following_promotions, start_job, streamscore
from .test_hot_swap import _offline
from .test_job_metrics import _free_port, _scrape_text

pytestmark = pytest.mark.integration

CHUNK = 300  # events published after each promotion (one chunk before the first)
#: model_swap_failures as each runtime exports it (Flink's Prometheus reporter, the faust worker's endpoint).
_FAILURES = re.compile(r"^(?:flink_taskmanager_job_task_operator_|streamscore_)model_swap_failures(?:\{[^}]*\})? "
                       r"([0-9.eE+-]+)$", re.MULTILINE)


def _bad_versions(registry: ModelRegistry) -> dict[str, int]:
    """Register three copies of the current risk model and damage each the way a deployment can."""
    current = registry.current("risk")
    assert current is not None
    good = registry.model_path("risk", current)
    fields = registry.manifest("risk", current)
    made = {case: registry.register("risk", good, fields, promote=False) for case in ("missing", "sha256", "onnx")}
    registry.model_path("risk", made["missing"]).unlink()
    with registry.model_path("risk", made["sha256"]).open("ab") as handle:
        handle.write(b"\0")  # one byte appended: the manifest's sha256 no longer matches
    broken = registry.model_path("risk", made["onnx"])
    broken.write_bytes(b"not an onnx graph" * 64)
    manifest_path = broken.parent / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["sha256"] = hashlib.sha256(broken.read_bytes()).hexdigest()  # integrity passes
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return made


def _make_current(registry: ModelRegistry, version: int) -> None:
    """Point risk's CURRENT at `version` as another writer of a shared registry would (`models promote` refuses
    a version that does not load, so the file is damaged after its promotion, say)."""
    _write_atomic(registry.root / "risk" / CURRENT_FILE, f"{version}\n")


def _count(bootstrap: str, topic: str) -> int:
    return sum(1 for _ in consume(bootstrap, topic, timeout_s=0.5))


def _failures(port: int) -> float:
    try:
        return sum(float(v) for v in _FAILURES.findall(_scrape_text(port)))
    except OSError:
        return -1.0


@pytest.mark.parametrize("runtime", ["flink", "faust"])
def test_a_bad_promoted_model_is_refused_counted_and_a_good_one_swapped_in(
    bootstrap: str, topics: Topics, tmp_path: Path, private_registry: Path, monkeypatch: pytest.MonkeyPatch,
    runtime: str,
) -> None:
    flink_logs = tmp_path / "flink-logs"  # the Flink job's Python logs go to FLINK_LOG_DIR's python-vm log
    monkeypatch.setenv("FLINK_LOG_DIR", str(flink_logs))
    registry = ModelRegistry(private_registry)
    running = registry.current("risk")
    bad = _bad_versions(registry)
    good = registry.register("risk", registry.model_path("risk", 2), registry.manifest("risk", 2), promote=False)
    config = config_following_promotions(RISK_CONFIG_PATH, tmp_path / "risk.yaml")
    events = synthetic_events("risk", CHUNK * 5, seed=83)
    port = _free_port()
    log = tmp_path / "job.log"
    extra = ("--runtime", "faust", "--state-dir", str(tmp_path / "state")) if runtime == "faust" else ()
    checkpoints = None if runtime == "faust" else tmp_path / "checkpoints"
    job = start_job(bootstrap, topics, checkpoints, log, "--config", str(config), "--metrics-port", str(port), *extra)
    published = 0

    def logged() -> str:
        return "".join(p.read_text(errors="replace") for p in [log, *sorted(flink_logs.glob("*python*.log"))])

    def publish_chunk_and_wait() -> None:
        nonlocal published
        chunk = events[published : published + CHUNK]
        publish_records(bootstrap, topics.input, [(str(e["account_id"]).encode(), msgspec.json.encode(e))
                                                  for e in chunk])
        published += len(chunk)
        deadline = time.monotonic() + 180
        while _count(bootstrap, topics.output) < published:
            assert job.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"fewer than {published} results:\n{log.read_text()[-3000:]}"
            time.sleep(0.3)

    def log_has(text: str) -> Callable[[], bool]:
        return lambda: text in logged()

    def failures_are(n: int) -> Callable[[], bool]:
        return lambda: _failures(port) == n

    def wait_for(what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 60
        while not done():
            assert job.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{what}:\n{logged()[-3000:]}"
            time.sleep(0.3)

    try:
        publish_chunk_and_wait()  # the job runs with the current version
        for number, (case, version) in enumerate(bad.items(), start=1):
            _make_current(registry, version)
            time.sleep(0.6)  # past model_refresh_seconds: the chunk's first batch looks at CURRENT again
            publish_chunk_and_wait()  # scoring goes on with the running version
            refused = f"model risk stays risk@{running}; risk@{version} refused"
            wait_for(f"no log line for the refused {case} version", log_has(refused))
            wait_for(f"model_swap_failures did not reach {number}", failures_are(number))
            shown = subprocess.run([sys.executable, "-m", "pipelines", "models", "show", f"risk@{version}"],
                                   capture_output=True, text=True, timeout=60, check=False)
            assert shown.returncode == 1, (case, shown.stdout, shown.stderr)
            assert json.loads(shown.stdout)["status"].startswith("unusable: "), (case, shown.stdout)
        streamscore("models", "promote", f"risk@{good}")
        time.sleep(0.6)
        publish_chunk_and_wait()
        wait_for("the good version was not swapped in",
                 log_has(f"model risk swapped risk@{running} -> risk@{good}"))
        assert _failures(port) == len(bad)
    finally:
        job.send_signal(signal.SIGTERM)
        try:
            job.wait(60)
        except subprocess.TimeoutExpired:
            job.kill()

    results = [msgspec.json.decode(r.value, type=RiskResult) for r in consume(bootstrap, topics.output, timeout_s=3)]
    assert len(results) == len(events) and len({r.event_id for r in results}) == len(events)
    models = [r.model for r in results]  # one partition: output order is processing order
    switch = models.index(f"risk@{good}")
    assert set(models[:switch]) == {f"risk@{running}"} and set(models[switch:]) == {f"risk@{good}"}
    assert switch == CHUNK * 4  # no event scored by a refused version, every event after the good promotion by it
    pinned = {ref: _offline(events, config, ref) for ref in (f"risk@{running}", f"risk@{good}")}
    for result in results:
        unstamped = msgspec.json.encode(msgspec.structs.replace(result, scored_at=0))
        assert unstamped == pinned[result.model][result.event_id]
