"""State written by the layout of before 2026-12-06 (fixtures in tests/fixtures/legacy_state, written by the code at
5043d14 - see their README) is read by this code: a faust partition store is converted key by key on first touch,
and the JSON state changelog is synced; both give the `state get` answers the old code gave (`expected.json`).
The Flink savepoint of the same run is checked by tests/integration (a real job restores it)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from rocksdict import Options, Rdict

from operators.risk.operator import RISK_STATE_CODEC, RiskState
from pipelines.kafka.changelog import apply_record, read
from state import RetentionPolicy, RocksVersionedStore

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "legacy_state"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def _asks() -> list[tuple[str, str, list[str], list[dict[str, Any]]]]:
    return [(account["key"], answer["ask"], answer["args"], answer["answer"])
            for account in EXPECTED["accounts"] for answer in account["answers"]]


def _get(state_dir: Path, key: str, args: list[str]) -> list[dict[str, Any]]:
    """What `state get risk KEY ARGS --state-dir D` prints, decoded."""
    options: dict[str, Any] = {}
    if args:
        flag, value = args
        if flag == "--version":
            options["version"] = int(value)
        elif flag == "--as-of":
            options["as_of_ms"] = int(datetime.fromisoformat(value).timestamp() * 1000)
        else:
            options["history"] = int(value)
    return [json.loads(msgspec.json.encode({"key": key, **msgspec.structs.asdict(v)}))
            for v in read(state_dir, key, **options)]


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store synced from the old (JSON) changelog the Flink job wrote."""
    state_dir = tmp_path_factory.mktemp("synced") / "state"
    with RocksVersionedStore(state_dir, retention=RetentionPolicy()) as store:
        for line in (FIXTURES / "flink_changelog.jsonl").read_text().splitlines():
            record = json.loads(line)
            with store.write_batch():
                changed, _ = apply_record(store, record["key"].encode(), record["value"].encode(), RiskState)
            assert changed
    return state_dir


@pytest.mark.parametrize(("key", "ask", "args", "answer"), _asks(), ids=[f"{k}-{a}" for k, a, _, _ in _asks()])
def test_the_old_json_changelog_syncs_to_the_same_answers(
    synced: Path, key: str, ask: str, args: list[str], answer: list[dict[str, Any]]
) -> None:
    assert _get(synced, key, args) == answer


@pytest.fixture()
def faust_store(tmp_path: Path) -> Path:
    """A copy of the faust partition store the old code wrote (layout 1)."""
    target = tmp_path / "store"
    shutil.copytree(FIXTURES / "faust_store", target)
    return target


def test_the_old_faust_store_converts_on_first_touch_to_the_same_answers(faust_store: Path) -> None:
    retention = RetentionPolicy(max_versions=16)
    with RocksVersionedStore(faust_store, RISK_STATE_CODEC, retention=retention) as store:
        assert len(list(store.keys())) == 20
        assert store.get_meta("input-next") == b"302"
    checked = 0
    for key, _ask, args, answer in _asks():
        if args and args[0] == "--history":
            args = ["--history", str(min(int(args[1]), 16))]
        expected = answer
        found = _get_from(faust_store, key, args)
        assert found == expected, (key, args)
        checked += 1
    assert checked == len(_asks())
    with Rdict(str(faust_store), Options(raw_mode=True)) as db:  # converted keys have no layout-1 entries left
        touched = {a["key"].encode() for a in EXPECTED["accounts"]}
        raw_keys = list(db.keys())
        legacy = [k for k in raw_keys if k[:1] in (b"\x01", b"\x02") and any(k[1:].startswith(t + b"\x00")
                                                                                for t in touched)]
    assert legacy == []


def _get_from(store_dir: Path, key: str, args: list[str]) -> list[dict[str, Any]]:
    """`state get` answers read from a runtime's store directly (it retains 16 versions)."""
    with RocksVersionedStore(store_dir, retention=RetentionPolicy(max_versions=16)) as store:
        state = store.key(key)
        if not args:
            found = [state.get()]
        elif args[0] == "--version":
            found = [state.as_of(int(args[1]))]
        elif args[0] == "--as-of":
            found = [state.as_of_time(int(datetime.fromisoformat(args[1]).timestamp() * 1000))]
        else:
            found = state.history(int(args[1]))
    return [json.loads(msgspec.json.encode({"key": key, **msgspec.structs.asdict(v)})) for v in found if v is not None]


def test_a_converted_faust_store_takes_new_versions_after_the_old_ones(faust_store: Path) -> None:
    with RocksVersionedStore(faust_store, RISK_STATE_CODEC, retention=RetentionPolicy(max_versions=16)) as store:
        state = store.key("acct-000001")
        latest = state.get()
        assert latest is not None and latest.version == 28
        assert state.put(latest.value, event_time=latest.event_time + 1) == 29
        assert [v.version for v in state.history(20)] == list(range(29, 13, -1))
