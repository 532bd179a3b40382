"""Write tests/fixtures/legacy_state/: risk job state in the layout of commit 5043d14 (before issue 28's layout),
with the inputs that produced it and the answers `streamscore state get` gave on it.

Run it with the code of 5043d14 (a worktree of that commit; the script refuses when pipelines/, operators/,
state/ or models/ differ from it), a broker of its own and $STREAMSCORE_HOME holding the jars:

    git worktree add /tmp/wtfix legacy-fixtures && cd /tmp/wtfix   # 5043d14 plus this script and the fixtures
    export STREAMSCORE_HOME=/path/to/.streamscore
    python -m pipelines kafka up --port 19492
    python scripts/make_legacy_state_fixtures.py --bootstrap 127.0.0.1:19492 [--fresh-bootstrap HOST:PORT]
    python -m pipelines kafka down --port 19492

What it does (each step with the CLI, as a user would):
1. events: 400 synthetic risk events (seed 11, 20 accounts), the first 300 plus two producer retries ->
   risk_events.jsonl, the last 100 plus one retry of an event of the first file -> risk_events_more.jsonl;
2. publishes risk_events.jsonl to `PREFIX.risk.in` (one partition, keyed by account_id);
3. Flink: an unbounded exactly-once `run risk --state-changelog PREFIX.flink.changelog`, and once all results are
   committed `savepoint risk --stop` -> flink_savepoint/, flink_results.jsonl, flink_changelog.jsonl;
4. faust: `run risk --runtime faust --bounded --state-changelog PREFIX.faust.changelog` over the same input topic
   -> faust_store/ (the closed `PREFIX.risk.in-0` store), faust_results.jsonl, faust_changelog.jsonl;
5. `state sync` of the Flink changelog, then `state get` for three accounts -> expected.json (checked equal on
   the faust changelog and, for versions still retained, on faust_store/ itself);
6. checks the old layout resumes with the old code: publishes risk_events_more.jsonl, `replay risk
   --from-savepoint flink_savepoint` and a second faust run on the original state folder; both must give exactly
   the offline scorer's results for the new events -> expected_more_results.jsonl;
7. with --fresh-bootstrap (a second, empty broker), the same resumption from the copied fixtures, as a test of a
   new checkout would do it.
Topics are deleted first when they exist (the source coordinates in the state name them, so the names are fixed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from operators.contract import OperatorContext  # noqa: E402
from operators.risk.operator import RISK_STATE_CODEC, RiskOperator  # noqa: E402
from operators.risk.schemas import Transaction  # noqa: E402
from pipelines.kafka.clients import client_config, consume, ensure_topics, publish_records  # noqa: E402
from pipelines.kafka.publishing import synthetic_events  # noqa: E402
from state import MemoryVersionedStore  # noqa: E402

COMMIT = "5043d14d4d7fef93ad95ed19e06c65b7658b59c4"
SEED = 11
EVENTS = 400
FIRST = 300


def cli(bootstrap: str, *args: str, timeout: float = 600) -> str:
    """`python -m pipelines --bootstrap B ARGS`, failing loudly; its stdout."""
    cmd = [sys.executable, "-m", "pipelines", "--bootstrap", bootstrap, *args]
    print("$ streamscore", " ".join(cmd[5:]), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def check_code() -> None:
    changed = subprocess.run(["git", "-C", str(ROOT), "diff", "--stat", COMMIT, "--", "pipelines", "operators",
                              "state", "models", "pyproject.toml"], capture_output=True, text=True, check=True).stdout
    if changed.strip():
        raise SystemExit(f"the job code differs from {COMMIT[:7]}; run this in a worktree of that commit:\n{changed}")


# ------------------------------------------------------------------------------------------------ events
def make_events() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(first file, more file, the re-sent events): producer retries are exact copies of an earlier event."""
    events = synthetic_events("risk", EVENTS, SEED)
    first, more = list(events[:FIRST]), list(events[FIRST:])
    resent: list[dict[str, Any]] = []
    # Two retries inside the first file, each three records after its original (~1 h of event time later, well
    # inside the 24 h dedup window): distinct accounts, both with several events.
    for at in (60, 180):
        original = first[at]
        first.insert(at + 4, dict(original))
        resent.append(original)
    # One retry across the boundary: the last event in the first file of the first retried account, re-sent as
    # the third record of the more file (its account has no event in the more file before it, so the re-send is
    # within the dedup window of the account's newest event time, and the id comes from the converted state).
    account = str(resent[0]["account_id"])
    if any(str(e["account_id"]) == account for e in more[:2]):
        raise SystemExit(f"{account} has an event among the first two of the more file: pick another retry")
    boundary = [e for e in events[:FIRST] if str(e["account_id"]) == account][-1]
    more.insert(2, dict(boundary))
    resent.append(boundary)
    return first, more, resent


def write_jsonl(path: Path, rows: list[Any]) -> None:
    path.write_bytes(b"".join(msgspec.json.encode(row) + b"\n" for row in rows))


def publish(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    publish_records(bootstrap, topic, [(str(e["account_id"]).encode(), msgspec.json.encode(e)) for e in events])


def delete_topics(bootstrap: str, topics: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(bootstrap))
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [t for t in topics if t in existing]
    if not doomed:
        return
    for future in admin.delete_topics(doomed, operation_timeout=30).values():
        future.result()
    deadline = time.monotonic() + 60
    while set(doomed) & set(admin.list_topics(timeout=10).topics):
        if time.monotonic() > deadline:
            raise SystemExit(f"topics {doomed} still exist 60 s after their deletion")
        time.sleep(0.5)
    time.sleep(2)


# ------------------------------------------------------------------------------------------------ reading back
def records(bootstrap: str, topic: str) -> list[Any]:
    return list(consume(bootstrap, topic, timeout_s=4))


def results_without_scored_at(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    out = []
    for record in records(bootstrap, topic):
        value = msgspec.json.decode(record.value)
        value.pop("scored_at")
        out.append(value)
    return out


def changelog_rows(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return [{"key": r.key.decode() if r.key is not None else None,
             "value": r.value.decode() if r.value else None} for r in records(bootstrap, topic)]


def offline(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The offline scorer's results (RiskOperator on the memory store, the shipped config), scored_at removed."""
    operator = RiskOperator()
    operator.open(OperatorContext())
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    out: dict[str, dict[str, Any]] = {}
    for event in events:
        tx = msgspec.json.decode(msgspec.json.encode(event), type=Transaction)
        for result in operator.process(tx, store.key(tx.account_id), None):
            value = msgspec.json.decode(msgspec.json.encode(result))
            value.pop("scored_at")
            out[result.event_id] = value
    return out


def same_as_offline(got: list[dict[str, Any]], want: dict[str, dict[str, Any]], what: str) -> None:
    ids = [r["event_id"] for r in got]
    if len(ids) != len(set(ids)) or set(ids) != set(want):
        raise SystemExit(f"{what}: {len(ids)} results ({len(set(ids))} distinct), expected {len(want)}")
    for result in got:
        if msgspec.json.encode(result) != msgspec.json.encode(want[result["event_id"]]):
            raise SystemExit(f"{what}: {result} differs from the offline scorer's {want[result['event_id']]}")


# ------------------------------------------------------------------------------------------------ Flink
def flink_savepoint(bootstrap: str, topics: dict[str, str], work: Path, expected: int) -> Path:
    """Run the job unbounded until `expected` results are committed, then stop it with a savepoint."""
    checkpoints = work / "flink-checkpoints"
    log = work / "flink-run.log"
    cmd = [sys.executable, "-m", "pipelines", "--bootstrap", bootstrap, "run", "risk",
           "--input-topic", topics["in"], "--output-topic", topics["flink_out"], "--dlq-topic", topics["flink_dlq"],
           "--checkpoint-dir", str(checkpoints), "--state-changelog", topics["flink_changelog"],
           "--parallelism", "1"]
    print("$ streamscore", " ".join(cmd[5:]), "&", flush=True)
    with open(log, "wb") as out:
        job = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            if job.poll() is not None:
                raise SystemExit(f"the Flink job exited early:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"fewer than {expected} results after 300 s:\n{log.read_text()[-3000:]}")
            done = sum(1 for _ in consume(bootstrap, topics["flink_out"], timeout_s=1))
            logged = sum(1 for _ in consume(bootstrap, topics["flink_changelog"], timeout_s=1))
            if done >= expected and logged >= expected:
                break
            time.sleep(2)
        time.sleep(3)  # one more checkpoint: nothing is left in flight
        printed = cli(bootstrap, "savepoint", "risk", "--stop", "--checkpoint-dir", str(checkpoints))
        savepoint = Path(printed.strip().splitlines()[-1])
        if job.wait(180) != 0:
            raise SystemExit(f"the run did not exit 0 after --stop:\n{log.read_text()[-3000:]}")
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(30)
    if not (savepoint / "_metadata").is_file():
        raise SystemExit(f"no savepoint in {savepoint}")
    return savepoint


# ------------------------------------------------------------------------------------------------ state get
def state_get(bootstrap: str, state_dir: Path, key: str, *option: str) -> list[dict[str, Any]]:
    out = cli(bootstrap, "state", "get", "risk", key, *option, "--state-dir", str(state_dir))
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def queries(changelog: list[dict[str, Any]], retried: str) -> list[dict[str, Any]]:
    """Three accounts (the busiest, the one retried across the boundary, the quietest) and what to ask of each:
    latest, two versions, two event times, history 5; versions and times among the newest 16 (retained by the
    job's `state.retention_versions`, so the answers hold on the job's own stores as well)."""
    versions: dict[str, list[tuple[int, int]]] = {}
    for row in changelog:
        record = json.loads(row["value"])
        versions.setdefault(record["key"], []).append((record["version"], record["event_time"]))
    busy = max(sorted(versions), key=lambda k: len(versions[k]))
    quiet = min(sorted(versions), key=lambda k: len(versions[k]))
    out = []
    for role, key in (("busy", busy), ("retried", retried), ("quiet", quiet)):
        have = versions[key]
        latest = have[-1][0]
        retained = have[-16:]
        picks = sorted({retained[0][0], retained[len(retained) // 2][0]})
        asks: list[tuple[str, list[str]]] = [("latest", [])]
        asks += [(f"version {v}", ["--version", str(v)]) for v in picks]
        # an exact event time of a retained version, and a time between two retained versions' event times
        first_t = retained[len(retained) // 3][1]
        if len(retained) >= 2:
            lo, hi = retained[-2][1], retained[-1][1]
            between = lo + (hi - lo) // 2 if hi > lo else lo
        else:
            between = retained[-1][1] + 60_000
        asks += [(f"as-of {iso(t)}", ["--as-of", iso(t)]) for t in (first_t, between)]
        asks.append(("history 5", ["--history", "5"]))
        out.append({"role": role, "key": key, "versions": len(have), "latest": latest, "asks": asks})
    return out


# ------------------------------------------------------------------------------------------------ fresh broker
def publish_changelog(bootstrap: str, topic: str, rows: list[dict[str, Any]]) -> None:
    """The changelog rows, in one transaction: the topic then ends at len(rows) + 1 (the commit marker), as the
    faust job's own changelog did (one batch), so a copied faust store's `changelog-next` matches its end."""
    from confluent_kafka import Producer

    producer = Producer({**client_config(bootstrap), "transactional.id": f"legacy-fixtures-{topic}"})
    producer.init_transactions(10)
    producer.begin_transaction()
    for row in rows:
        producer.produce(topic, row["value"].encode(), row["key"].encode())
    producer.flush(10)
    producer.commit_transaction(10)


def check_on_fresh_broker(bootstrap: str, out: Path, work: Path, topic: str) -> None:
    """What a test of a new checkout does: on a broker that never saw the run, publish both event files to the
    same input topic name, restore the savepoint copy and the faust store copy, expect the more results."""
    def load(name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (out / name).read_text(encoding="utf-8").splitlines()]

    names = [topic] + [f"legacy-check.{n}" for n in ("flink.out", "flink.dlq", "flink.changelog", "faust.out",
                                                      "faust.dlq", "faust.changelog")]
    delete_topics(bootstrap, names)
    ensure_topics(bootstrap, names)
    publish(bootstrap, topic, [r["value"] for r in load("risk_events.jsonl")])
    publish(bootstrap, topic, [r["value"] for r in load("risk_events_more.jsonl")])
    want = {r["event_id"]: r for r in load("expected_more_results.jsonl")}
    shutil.copytree(out / "flink_savepoint", work / "fresh-savepoint")
    cli(bootstrap, "replay", "risk", "--from-savepoint", str(work / "fresh-savepoint"), "--bounded",
        "--input-topic", topic, "--output-topic", names[1], "--dlq-topic", names[2], "--state-changelog", names[3],
        "--checkpoint-dir", str(work / "fresh-checkpoints"))
    same_as_offline(results_without_scored_at(bootstrap, names[1]), want, "Flink restored on a fresh broker")
    publish_changelog(bootstrap, names[6], load("faust_changelog.jsonl"))
    shutil.copytree(out / "faust_store", work / "fresh-faust" / f"{topic}-0")
    cli(bootstrap, "run", "risk", "--runtime", "faust", "--bounded", "--input-topic", topic,
        "--output-topic", names[4], "--dlq-topic", names[5], "--state-dir", str(work / "fresh-faust"),
        "--state-changelog", names[6], timeout=300)
    same_as_offline(results_without_scored_at(bootstrap, names[4]), want, "faust resumed on a fresh broker")


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19492")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "legacy_state")
    parser.add_argument("--prefix", default="legacy-state", help="topic name prefix (the state names the topics)")
    parser.add_argument("--fresh-bootstrap", help="optional: a second, empty broker on which to check that the "
                        "fixtures resume as a new test would use them")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed at the end)")
    args = parser.parse_args()
    check_code()
    bootstrap, out = args.bootstrap, args.out
    out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="legacy-state-"))
    work.mkdir(parents=True, exist_ok=True)
    p = args.prefix
    topics = {
        "in": f"{p}.risk.in",
        "flink_out": f"{p}.flink.out", "flink_dlq": f"{p}.flink.dlq", "flink_changelog": f"{p}.flink.changelog",
        "faust_out": f"{p}.faust.out", "faust_dlq": f"{p}.faust.dlq", "faust_changelog": f"{p}.faust.changelog",
        "more_out": f"{p}.flink-more.out", "more_dlq": f"{p}.flink-more.dlq",
        "more_changelog": f"{p}.flink-more.changelog",
    }
    delete_topics(bootstrap, list(topics.values()))
    ensure_topics(bootstrap, list(topics.values()))

    # 1-2. events
    first, more, resent = make_events()
    write_jsonl(out / "risk_events.jsonl", [{"key": e["account_id"], "value": e} for e in first])
    write_jsonl(out / "risk_events_more.jsonl", [{"key": e["account_id"], "value": e} for e in more])
    publish(bootstrap, topics["in"], first)
    want_first = offline(first)
    want_all = offline(first + more)
    want_more = {k: v for k, v in want_all.items() if k not in want_first}

    # 3. Flink
    savepoint = flink_savepoint(bootstrap, topics, work, len(want_first))
    shutil.rmtree(out / "flink_savepoint", ignore_errors=True)
    shutil.copytree(savepoint, out / "flink_savepoint")
    shutil.rmtree(savepoint)  # the restore below must work from the copy alone (a relocatable savepoint)
    flink_results = results_without_scored_at(bootstrap, topics["flink_out"])
    same_as_offline(flink_results, want_first, "Flink results")
    write_jsonl(out / "flink_results.jsonl", flink_results)
    flink_changelog = changelog_rows(bootstrap, topics["flink_changelog"])
    write_jsonl(out / "flink_changelog.jsonl", flink_changelog)

    # 4. faust
    faust_state = work / "faust-state"
    faust_args = ["run", "risk", "--runtime", "faust", "--input-topic", topics["in"],
                  "--output-topic", topics["faust_out"], "--dlq-topic", topics["faust_dlq"],
                  "--state-dir", str(faust_state), "--state-changelog", topics["faust_changelog"], "--bounded"]
    cli(bootstrap, *faust_args)
    shutil.rmtree(out / "faust_store", ignore_errors=True)
    shutil.copytree(faust_state / f"{topics['in']}-0", out / "faust_store",
                    ignore=shutil.ignore_patterns("LOG", "LOG.old.*"))  # RocksDB's info log: not state
    faust_results = results_without_scored_at(bootstrap, topics["faust_out"])
    same_as_offline(faust_results, want_first, "faust results")
    write_jsonl(out / "faust_results.jsonl", faust_results)
    faust_changelog = changelog_rows(bootstrap, topics["faust_changelog"])
    write_jsonl(out / "faust_changelog.jsonl", faust_changelog)
    if [r["value"] for r in faust_changelog] != [r["value"] for r in flink_changelog]:
        print("note: the faust and Flink changelogs differ", flush=True)

    # 5. expected answers of `state get` on stores synced from the old changelogs
    synced = work / "synced-flink"
    print(cli(bootstrap, "state", "sync", "risk", "--changelog-topic", topics["flink_changelog"],
              "--state-dir", str(synced), "--timeout", "3").strip())
    synced_faust = work / "synced-faust"
    cli(bootstrap, "state", "sync", "risk", "--changelog-topic", topics["faust_changelog"],
        "--state-dir", str(synced_faust), "--timeout", "3")
    store_copy = work / "faust-store-copy"  # state get opens read-only, but never touch the fixture
    shutil.copytree(out / "faust_store", store_copy)
    retried_key = str(resent[0]["account_id"])
    expected: dict[str, Any] = {
        "commit": COMMIT,
        "pipeline": "risk",
        "input_topic": topics["in"],
        "resent_event_ids": [str(e["event_id"]) for e in resent],
        "note": "Each answer is the JSON lines `streamscore state get risk KEY OPTIONS --state-dir D` printed at "
                "5043d14, decoded, for D synced (`state sync`) from flink_changelog.jsonl; the same on the faust "
                "changelog and on faust_store/ read directly. [] would be 'no state' (exit 1).",
        "accounts": [],
    }
    for query in queries(flink_changelog, retried_key):
        entry = {k: query[k] for k in ("role", "key", "versions", "latest")}
        entry["answers"] = []
        for label, option in query["asks"]:
            answer = state_get(bootstrap, synced, query["key"], *option)
            for other in (synced_faust, store_copy):
                if state_get(bootstrap, other, query["key"], *option) != answer:
                    raise SystemExit(f"state get {query['key']} {option}: {other} answers differently")
            entry["answers"].append({"ask": label, "args": option, "answer": answer})
        expected["accounts"].append(entry)
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n", encoding="utf-8")

    # 6. the old layout resumes with the old code
    publish(bootstrap, topics["in"], more)
    cli(bootstrap, "replay", "risk", "--from-savepoint", str(out / "flink_savepoint"), "--bounded",
        "--input-topic", topics["in"], "--output-topic", topics["more_out"], "--dlq-topic", topics["more_dlq"],
        "--state-changelog", topics["more_changelog"], "--checkpoint-dir", str(work / "replay-checkpoints"))
    same_as_offline(results_without_scored_at(bootstrap, topics["more_out"]), want_more,
                    "Flink restored from the savepoint")
    cli(bootstrap, *faust_args)
    same_as_offline(results_without_scored_at(bootstrap, topics["faust_out"]), want_all,
                    "faust resumed on its store (both runs)")
    write_jsonl(out / "expected_more_results.jsonl", list(want_more.values()))
    if args.fresh_bootstrap:
        check_on_fresh_broker(args.fresh_bootstrap, out, work, topics["in"])
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    print(f"fixtures written to {out}", flush=True)


if __name__ == "__main__":
    main()
