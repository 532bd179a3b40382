"""Running one system once for `bench.py`: a bounded throughput run or a paced latency run, outputs checked.

Every run gets fresh output topics (created with `message.timestamp.type=LogAppendTime`, so the broker
stamps each result when it lands) and its own folder; the system runs as its own process group and is
stopped with SIGTERM (then SIGKILL). Outputs are read back `read_committed` and checked by event id:
exactly one result per valid input event, none missing, none doubled, none unexpected.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from peers.systems import BENCH_DIR, ROOT, RunTarget, System

from pipelines.infra.processes import stop_process_group
from pipelines.kafka.clients import producer as new_producer


class _Output(msgspec.Struct):
    """The fields of a result (or a copied input) the checks read."""

    event_id: str
    scored_at: int | None = None


@dataclass
class Output:
    """One record read from an output topic."""

    event_id: str
    scored_at: int | None
    received_ms: int
    appended_ms: int | None
    value: bytes


@dataclass
class Check:
    """How the outputs of a run compare with its input: a run is `ok` with exactly one result per event."""

    expected: int
    results: int
    missing: int
    duplicates: int
    unexpected: int
    disagree: int = 0  # results whose score/decision (or items) differ from the offline scorer's
    dead_letters: int = 0

    @property
    def ok(self) -> bool:
        """Exactly one result per expected event id."""
        return self.missing == 0 and self.duplicates == 0 and self.unexpected == 0


@dataclass
class RunRecord:
    """One bounded throughput run: events, seconds from process start to its end, and the output check."""

    system: str
    events: int
    rep: int
    seconds: float
    exit_code: int | None
    check: Check | None
    first_result_s: float | None = None  # process start -> first result appended
    last_result_s: float | None = None  # process start -> last result appended
    mark: int = 0  # the lower point of the in-run slope: the `mark`-th result
    mark_s: float | None = None  # process start -> the `mark`-th result appended
    error: str = ""

    @property
    def rate(self) -> float | None:
        """Events per second between the `mark`-th and the last result, from the broker's append times: the
        slope between two input sizes inside one run, so the start-up and its variance cancel exactly."""
        if self.mark_s is None or self.last_result_s is None or self.last_result_s <= self.mark_s:
            return None
        return (self.events - self.mark) / (self.last_result_s - self.mark_s)

    @property
    def ok(self) -> bool:
        """The process ended cleanly and its outputs check."""
        return self.exit_code == 0 and self.check is not None and self.check.ok and not self.error


@dataclass
class LatencyRecord:
    """One paced latency run: the rate, per-event latencies (ms) and the output check."""

    system: str
    rate: float
    events: int
    send_to_scored_ms: list[int] = field(default_factory=list)
    send_to_visible_ms: list[int] = field(default_factory=list)
    #: send -> visible of the paced events sent while the system settled (reported, not in the percentiles)
    settling_send_to_visible_ms: list[int] = field(default_factory=list)
    check: Check | None = None
    error: str = ""


def publish(producer: Producer, topic: str, records: list[tuple[bytes, bytes]], ids: list[str],
            rate: float | None = None) -> dict[str, int]:
    """Send `records` with `producer` (at most `rate` per second if given), wait until all are acked;
    returns the send time (epoch ms, taken when the record is handed to the client) of each id in `ids`."""
    sent: dict[str, int] = {}
    start = time.monotonic()
    for i, ((key, value), event_id) in enumerate(zip(records, ids, strict=True)):
        if rate:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        sent[event_id] = int(time.time() * 1000)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError(f"publishing to {topic!r}: records left unsent after 60 s")
    return sent


def create_topics(bootstrap: str, topics: Iterable[str], *, log_append_time: bool = False) -> None:
    """Create `topics` (one partition each), stamped by the broker on arrival when `log_append_time`."""
    config = {"message.timestamp.type": "LogAppendTime"} if log_append_time else {}
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})
    futures = admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1, config=config)
                                   for t in topics], operation_timeout=30)
    for topic, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"creating topic {topic!r} on {bootstrap}: {exc}") from exc


def delete_topics(bootstrap: str, marker: str) -> int:
    """Delete every topic whose name contains `marker` (this benchmark run's topics); returns how many."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})
    doomed = [t for t in admin.list_topics(timeout=10).topics if marker in t]
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=60).values():
            future.result()
    return len(doomed)


def _consumer(bootstrap: str, topic: str, *, eof: bool) -> Consumer:
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"bench-check-{os.getpid()}-{time.monotonic_ns()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": eof,
        "fetch.wait.max.ms": 10,
    })
    consumer.subscribe([topic])
    return consumer


def _parse(msg: object, decoder: msgspec.json.Decoder[_Output]) -> Output:
    value = msg.value() or b""  # type: ignore[attr-defined]
    kind, stamp = msg.timestamp()  # type: ignore[attr-defined]
    parsed = decoder.decode(value)
    return Output(parsed.event_id, parsed.scored_at, int(time.time() * 1000),
                  stamp if kind == TIMESTAMP_LOG_APPEND_TIME else None, value)


def read_all(bootstrap: str, topic: str, *, timeout_s: float = 60.0) -> list[Output]:
    """Every committed record of `topic` (its writer has finished): read until the partition's end."""
    consumer = _consumer(bootstrap, topic, eof=True)
    decoder = msgspec.json.Decoder(_Output)
    outputs: list[Output] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return outputs
                if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    continue
                raise RuntimeError(f"reading {topic!r}: {error}")
            outputs.append(_parse(msg, decoder))
        raise RuntimeError(f"reading {topic!r}: no end of partition after {timeout_s:.0f} s")
    finally:
        consumer.close()


class Collector(threading.Thread):
    """Reads an output topic while a system runs (latency runs): first receive per event id, duplicates."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name=f"collect-{topic}", daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.first: dict[str, Output] = {}
        self.counts: Counter[str] = Counter()
        self.stop_event = threading.Event()
        self.error: str = ""

    def run(self) -> None:
        """Poll until stopped."""
        consumer = _consumer(self.bootstrap, self.topic, eof=False)
        decoder = msgspec.json.Decoder(_Output)
        try:
            while not self.stop_event.is_set():
                msg = consumer.poll(0.1)
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                        self.error = str(error)
                    continue
                out = _parse(msg, decoder)
                self.counts[out.event_id] += 1
                self.first.setdefault(out.event_id, out)
        finally:
            consumer.close()

    def has_all(self, ids: Iterable[str]) -> bool:
        """Whether a result arrived for every id in `ids`."""
        return all(i in self.first for i in ids)


def check(outputs: Iterable[Output], expected: set[str], reference: dict[str, bytes] | None = None,
          compare: Callable[[bytes, bytes], bool] | None = None) -> Check:
    """Compare outputs with the expected event ids (and, given a reference, with the offline results)."""
    outputs = list(outputs)
    counts = Counter(o.event_id for o in outputs)
    disagree = 0
    if reference is not None and compare is not None:
        seen: set[str] = set()
        for out in outputs:
            if out.event_id in reference and out.event_id not in seen:
                seen.add(out.event_id)
                disagree += not compare(out.value, reference[out.event_id])
    return Check(
        expected=len(expected),
        results=len(outputs),
        missing=sum(1 for i in expected if i not in counts),
        duplicates=sum(c - 1 for i, c in counts.items() if c > 1 and i in expected),
        unexpected=sum(c for i, c in counts.items() if i not in expected),
        disagree=disagree,
    )


@dataclass(frozen=True)
class Bench:
    """What every run shares: the broker, this benchmark run's id and folders, the quix interpreter."""

    bootstrap: str
    run_id: str
    workdir: Path
    quix_python: Path | None = None

    def target(self, system: System, input_topic: str, tag: str, count: int) -> RunTarget:
        """A fresh output topic and folder for one run of `system` on `input_topic`."""
        name = f"bench-{self.run_id}-{system.name}-{tag}"
        workdir = self.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        return RunTarget(self.bootstrap, input_topic, f"{name}.out", workdir, count, self.quix_python)

    def start(self, system: System, target: RunTarget) -> tuple[subprocess.Popen[bytes], Path]:
        """Start `system` on `target` as its own process group; its output goes to a log file."""
        create_topics(self.bootstrap, [target.output_topic, f"{target.output_topic}.dlq"], log_append_time=True)
        log = target.workdir / "run.log"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(BENCH_DIR), str(ROOT)]))
        with log.open("wb") as out:
            proc = subprocess.Popen(system.command(target), cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return proc, log


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def throughput_run(bench: Bench, system: System, input_topic: str, events: int, rep: int, expected: set[str],
                   reference: dict[str, bytes] | None, compare: Callable[[bytes, bytes], bool] | None,
                   timeout_s: float, mark: int = 0) -> RunRecord:
    """Run `system` bounded over `input_topic` (`events` records): seconds from process start to its end, and
    the broker append times of the first, the `mark`-th and the last result."""
    target = bench.target(system, input_topic, f"{events}-r{rep}", events)
    start_wall = time.time()
    start = time.perf_counter()
    proc, log = bench.start(system, target)
    try:
        code: int | None = proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        stop_process_group(proc, grace_s=20)
        code = None
    seconds = time.perf_counter() - start
    record = RunRecord(system.name, events, rep, seconds, code, None, mark=mark)
    if code != 0:
        record.error = f"exit code {code} after {seconds:.0f} s; log {log}:\n{_tail(log)}"
    try:
        outputs = read_all(bench.bootstrap, target.output_topic)
        record.check = check(outputs, expected, reference, compare)
        record.check.dead_letters = len(read_all(bench.bootstrap, f"{target.output_topic}.dlq"))
        stamps = sorted(o.appended_ms for o in outputs if o.appended_ms is not None)
        if stamps:
            record.first_result_s = stamps[0] / 1000 - start_wall
            record.last_result_s = stamps[-1] / 1000 - start_wall
            if 0 < mark <= len(stamps):
                record.mark_s = stamps[mark - 1] / 1000 - start_wall
    except RuntimeError as exc:
        record.error = (record.error + "\n" if record.error else "") + str(exc)
    return record


def latency_run(bench: Bench, system: System, records: list[tuple[bytes, bytes]], ids: list[str], warmup: int,
                rate: float, settling: int = 0, ready_timeout_s: float = 240.0, drain_s: float = 30.0,
                tag: str = "latency", on_ready: Callable[[], None] | None = None) -> LatencyRecord:
    """Start `system` unbounded, wait until the first `warmup` records are scored (it is up), then send the
    rest at `rate` per second and measure send -> scored (`scored_at`) and send -> visible (received,
    read_committed) per event. The first `settling` paced events (the seconds in which a just-started JVM
    still compiles its hot paths and drains what it queued) are checked like the others but kept out of
    the percentiles: their send -> visible goes to `settling_send_to_visible_ms`. `tag` names the run's topics and
    folder (one system has several latency runs, at different loads). `on_ready` runs once the system is up,
    before the paced records (e.g. to freeze the model server the system calls)."""
    result = LatencyRecord(system.name, rate, len(records) - warmup - settling)
    input_topic = f"bench-{bench.run_id}-{system.name}-{tag}.in"
    create_topics(bench.bootstrap, [input_topic])
    target = bench.target(system, input_topic, tag, 0)
    proc, log = bench.start(system, target)
    collector = Collector(bench.bootstrap, target.output_topic)
    collector.start()
    producer = new_producer(bench.bootstrap)  # one producer: warmed up (id, metadata) before the paced phase
    try:
        publish(producer, input_topic, records[:warmup], ids[:warmup])
        deadline = time.monotonic() + ready_timeout_s
        while not collector.has_all(ids[:warmup]):
            if proc.poll() is not None or time.monotonic() > deadline:
                result.error = f"not ready (exit code {proc.poll()}); log {log}:\n{_tail(log)}"
                return result
            time.sleep(0.2)
        if on_ready is not None:
            on_ready()
        sent = publish(producer, input_topic, records[warmup:], ids[warmup:], rate)
        paced = ids[warmup:]
        deadline = time.monotonic() + drain_s
        while not collector.has_all(paced) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        time.sleep(0.5)  # late duplicates
    finally:
        collector.stop_event.set()
        stop_process_group(proc, grace_s=30)
        collector.join(10)
    outputs = [o for i, o in collector.first.items()]
    result.check = check([o for o in outputs for _ in range(collector.counts[o.event_id])], set(ids))
    for event_id in paced[:settling]:
        out = collector.first.get(event_id)
        if out is not None and event_id in sent:
            result.settling_send_to_visible_ms.append(out.received_ms - sent[event_id])
    for event_id in paced[settling:]:
        out = collector.first.get(event_id)
        if out is None or event_id not in sent:
            continue
        result.send_to_visible_ms.append(out.received_ms - sent[event_id])
        if out.scored_at is not None:
            result.send_to_scored_ms.append(out.scored_at - sent[event_id])
    if collector.error:
        result.error = collector.error
    return result
