"""`streamscore state sync|get`: job state read from outside the job, via its state changelog."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipelines.exceptions import UsageError
from pipelines.registry import pipeline_names


def _state_dir(args: argparse.Namespace) -> Path:
    from pipelines.infra.home import subdir

    return Path(args.state_dir) if args.state_dir else subdir("state") / args.pipeline


def _cmd_state_sync(args: argparse.Namespace) -> int:
    from pipelines.kafka.changelog import sync
    from pipelines.registry import get

    topic = args.changelog_topic or f"{args.pipeline}.state-changelog"
    state_type = get(args.pipeline).state_codec().value_type  # type: ignore[attr-defined]
    applied, skipped = sync(args.bootstrap, topic, _state_dir(args), state_type, timeout_s=args.timeout)
    print(f"synced {topic} into {_state_dir(args)}: {applied} versions applied, {skipped} already present")
    return 0


def _cmd_state_get(args: argparse.Namespace) -> int:
    import msgspec

    from pipelines.kafka.changelog import read

    as_of_ms = _iso_ms(args.as_of, "--as-of") if args.as_of else None
    versions = read(_state_dir(args), args.key, version=args.version, as_of_ms=as_of_ms, history=args.history)
    if not versions:
        print(f"no state for key {args.key!r} matching the request (a key swept after it expired has none)",
              file=sys.stderr)
        return 1
    for version in versions:
        print(msgspec.json.encode({"key": args.key, **msgspec.structs.asdict(version)}).decode())
    _say_if_expired(args, max(v.event_time for v in versions))
    return 0


def _say_if_expired(args: argparse.Namespace, newest_ms: int) -> None:
    """A note on stderr when the config's `state.ttl_hours` has passed since the key's newest version (as of
    `--now`, default the wall clock): its next event starts it cold, as a new key."""
    import time
    from datetime import UTC, datetime

    from pipelines.registry import get

    ttl_ms = get(args.pipeline).load_config(Path(args.config) if args.config else None).state.ttl_ms
    if ttl_ms is None:
        return
    now_ms = _iso_ms(args.now, "--now") if args.now else int(time.time() * 1000)
    if now_ms - newest_ms > ttl_ms:
        newest = datetime.fromtimestamp(newest_ms / 1000, UTC).isoformat(timespec="seconds")
        print(f"key {args.key!r} expired: its newest version is from {newest}, more than state.ttl_hours "
              f"({ttl_ms // 3_600_000} h) of event time ago; its next event starts it cold, as a new key",
              file=sys.stderr)


def _iso_ms(text: str, option: str) -> int:
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        raise UsageError(f"{option} must be an ISO time like 2026-01-01T10:02:00+00:00, got {text!r}") from None


def add_state_commands(commands: Any) -> None:
    """Add `state sync` and `state get`."""
    state = commands.add_parser("state", help="read job state from outside the job (via its state changelog)")
    state_commands = state.add_subparsers(dest="state_command", required=True)
    sync_cmd = state_commands.add_parser("sync", help="materialise a state changelog topic into a local store")
    sync_cmd.add_argument("pipeline", choices=pipeline_names(), help="whose state")
    sync_cmd.add_argument("--changelog-topic", help="default: PIPELINE.state-changelog")
    sync_cmd.add_argument("--state-dir", help="default: $STREAMSCORE_HOME/state/PIPELINE")
    sync_cmd.add_argument("--timeout", type=float, default=5.0, help="stop after S seconds without a record")
    sync_cmd.set_defaults(func=_cmd_state_sync)
    get_cmd = state_commands.add_parser("get", help="print a key's state as JSON")
    get_cmd.add_argument("pipeline", choices=pipeline_names(), help="whose state")
    get_cmd.add_argument("key", help="the state key (risk: account_id, reco: session_id)")
    which = get_cmd.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, help="exactly this version")
    which.add_argument("--as-of", help="the state as of an event time (ISO 8601)")
    which.add_argument("--history", type=int, metavar="N", help="the newest N versions")
    get_cmd.add_argument("--state-dir", help="default: $STREAMSCORE_HOME/state/PIPELINE")
    get_cmd.add_argument("--config", help="the job's pipeline YAML, for its state.ttl_hours (default: the shipped one)")
    get_cmd.add_argument("--now", metavar="ISO-TIME",
                         help="say whether the key has expired as of this event time (default: now)")
    get_cmd.set_defaults(func=_cmd_state_get)
