"""`streamscore savepoint PIPELINE [--stop]`: a savepoint of a running job, taken through Flink's REST API.

A job started by `streamscore run PIPELINE` is found through its run-info file (`pipelines.runtimes.flink.runinfo`);
a job on a Flink cluster through `--rest-url` or `--jobmanager HOST:PORT` (and `--job-id`, or the one running job
named `streamscore-PIPELINE`). The savepoint's path is printed on stdout (alone on its line); it restores with
`streamscore replay PIPELINE --from-savepoint PATH`, and `streamscore run PIPELINE` resumes from it when it is
the newest under the job's checkpoint folder (the default target).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipelines.exceptions import ConfigError, UsageError
from pipelines.registry import pipeline_names
from pipelines.runtimes.flink.rest import FlinkRestClient, FlinkRestError
from pipelines.runtimes.flink.runinfo import find_running_job, pid_alive
from pipelines.runtimes.flink.savepoints import SavepointResult, default_target, take_savepoint


def _note(message: str) -> None:
    print(f"streamscore: {message}", file=sys.stderr, flush=True)


def _cluster_job(client: FlinkRestClient, pipeline: str, job_id: str | None) -> str:
    if job_id:
        return job_id
    name = f"streamscore-{pipeline}"
    running = [job for job in client.jobs() if job.state == "RUNNING" and job.name == name]
    if len(running) != 1:
        found = ", ".join(job.job_id for job in running) or "none"
        raise ConfigError(
            f"{len(running)} running jobs named {name} at {client.base_url} ({found}): pass --job-id ID"
        )
    return running[0].job_id


def _absolute(target: str) -> str:
    return target if "://" in target else str(Path(target).expanduser().resolve())


def _cmd_savepoint(args: argparse.Namespace) -> int:
    pid: int | None = None
    if args.rest_url and args.jobmanager:
        raise UsageError("give the cluster once: --rest-url URL or --jobmanager HOST:PORT")
    rest_url = args.rest_url or (f"http://{args.jobmanager}" if args.jobmanager else None)
    if rest_url:
        client = FlinkRestClient(rest_url)
        job_id = _cluster_job(client, args.pipeline, args.job_id)
        target = _absolute(args.target) if args.target else None
    else:
        checkpoint_dir = Path(args.checkpoint_dir) if args.checkpoint_dir else None
        info = find_running_job(args.pipeline, checkpoint_dir=checkpoint_dir, report=_note)
        client = FlinkRestClient(info.rest_url)
        job_id = args.job_id or info.job_id
        pid = info.pid
        target = _absolute(args.target) if args.target else str(default_target(Path(info.checkpoint_dir)))
    what = "stopping job" if args.stop else "savepoint of job"
    _note(f"{what} {job_id} ({args.pipeline}) via {client.base_url}, into {target or 'the cluster default'} ...")
    run_pid = pid
    try:
        result = take_savepoint(
            client, job_id, target, stop=args.stop, timeout_s=args.timeout,
            process_alive=(lambda: pid_alive(run_pid)) if run_pid is not None else None,
        )
    except FlinkRestError as exc:
        if target is None and "target-directory" in str(exc):
            raise ConfigError(f"{exc}; pass --target DIR") from None
        raise
    _report(args.pipeline, result, pid, args.timeout)
    return 0


def _report(pipeline: str, result: SavepointResult, pid: int | None, timeout_s: float) -> None:
    if result.stopped and pid is not None:
        deadline = time.monotonic() + timeout_s
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        state = "has exited" if not pid_alive(pid) else "is still shutting down"
        _note(f"job stopped; its run process {pid} {state}")
    elif result.stopped:
        _note("job stopped")
    _note(f"savepoint completed; restore with: streamscore replay {pipeline} --from-savepoint {result.path}")
    print(result.path, flush=True)


def add_savepoint_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `savepoint` command to the CLI's sub-parsers."""
    parser = commands.add_parser(
        "savepoint", help="take a savepoint of a running job (started by `streamscore run`), optionally stopping it"
    )
    parser.add_argument("pipeline", choices=pipeline_names(), help="which pipeline's job")
    parser.add_argument("--stop", action="store_true",
                        help="stop the job with the savepoint (no drain); the `run` process then exits 0")
    parser.add_argument("--target", metavar="DIR",
                        help="savepoint folder (default: CHECKPOINT_DIR/savepoints of the running job)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="S",
                        help="give up waiting after S seconds (default %(default)s)")
    parser.add_argument("--checkpoint-dir", metavar="DIR",
                        help="choose the running job by its checkpoint folder when several of PIPELINE run")
    parser.add_argument("--rest-url", metavar="URL",
                        help="a Flink cluster's REST API (e.g. http://jobmanager:8081) instead of a local run")
    parser.add_argument("--jobmanager", metavar="HOST:PORT",
                        help="a session cluster's REST address, as `run --target remote --jobmanager` takes it "
                        "(same as --rest-url http://HOST:PORT)")
    parser.add_argument("--job-id", help="the job to savepoint (default: from the run file, or the one running "
                                         "job named streamscore-PIPELINE at --rest-url)")
    parser.set_defaults(func=_cmd_savepoint)
