"""The shadow job of a backtest, run in its own process: `python -m pipelines.backtest.job PLAN.json`.

A child process because the embedded Flink JVM cannot be shut down cleanly inside a Python process that
still has work to do (the report); see `pipelines.cli._run_job`, which ends its process for the same reason.
The plan file holds the shadow job's `JobOptions` and, for a start from a checkpoint, the path to restore.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from pipelines.infra.jvm_temp import release as release_jvm_temp
from pipelines.runtimes.flink.options import JobOptions

PATH_FIELDS = ("checkpoint_dir", "config_path")


def options_to_json(options: JobOptions, restore: Path | None, stop_offsets: dict[int, int] | None) -> str:
    """Serialise what the child needs: job options, the checkpoint to restore, where a restored run stops."""
    data = {k: (str(v) if k in PATH_FIELDS and v is not None else v) for k, v in asdict(options).items()}
    return json.dumps({
        "options": data,
        "restore": str(restore) if restore else None,
        "stop_offsets": {str(p): o for p, o in stop_offsets.items()} if stop_offsets is not None else None,
    })


def options_from_json(text: str) -> tuple[JobOptions, Path | None, dict[int, int] | None]:
    """The inverse of `options_to_json`."""
    data: dict[str, Any] = json.loads(text)
    known = {f.name for f in fields(JobOptions)}
    raw = {k: v for k, v in data["options"].items() if k in known}
    for key in PATH_FIELDS:
        if raw.get(key) is not None:
            raw[key] = Path(raw[key])
    stops = data.get("stop_offsets")
    return (JobOptions(**raw), Path(data["restore"]) if data.get("restore") else None,
            {int(p): int(o) for p, o in stops.items()} if stops is not None else None)


def run(options: JobOptions, restore: Path | None, stop_offsets: dict[int, int] | None) -> None:
    """Run the bounded shadow job to its end.

    A fresh start finishes by itself at the input's end. A start from a checkpoint cannot
    finish by itself (FLINK-31006, see `pipelines.runtimes.flink.bounded`): it is ended once its own consumer group
    committed `stop_offsets`.
    """
    from pipelines.runtimes.flink import job
    from pipelines.runtimes.flink.bounded import reached

    done = None
    if restore is not None:
        if stop_offsets is None:
            raise ValueError("a backtest restored from a checkpoint needs the input offsets to stop at")
        done = reached(options, stop_offsets)
    job.run(options, restore_path=str(restore) if restore else None, done=done)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the plan in the file named by the first argument, then end the process."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m pipelines.backtest.job PLAN.json")
    options, restore, stops = options_from_json(Path(args[0]).read_text())
    run(options, restore, stops)
    print("shadow job finished", flush=True)
    sys.stderr.flush()
    release_jvm_temp()
    os._exit(0)  # the embedded JVM is gone; skip finalisation, where py4j would log errors (as `cli._run_job`)


if __name__ == "__main__":
    main()
