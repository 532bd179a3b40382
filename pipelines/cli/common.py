"""What every command group shares: the default broker, exit codes, the pipeline names, job options."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pipelines.exceptions import ConfigError, UsageError
from pipelines.registry import pipeline_names
from pipelines.runtimes.flink.options import (
    DEFAULT_BUFFER_MS,
    DEFAULT_BUFFER_SIZE,
    DEFAULT_MANAGED_MEMORY,
    DEFAULT_OPERATOR,
)

DEFAULT_BOOTSTRAP = os.environ.get("STREAMSCORE_BOOTSTRAP", "127.0.0.1:9092")
#: Exit codes of every command: done; failed (the message says why and what to do); the command line is wrong
#: (argparse's own code, also for option values and combinations it cannot check); interrupted (SIGINT).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def check_models(operator: Any, model_ref: str | None) -> None:
    """Open and close `operator` once: every model it would load is found, verified and fits (`ConfigError`)."""
    from models.exceptions import ModelError
    from operators.contract import OperatorContext
    from operators.exceptions import OperatorError

    try:
        operator.open(OperatorContext(model_ref=model_ref))
    except (ModelError, OperatorError, ValueError) as exc:
        raise ConfigError(f"cannot start: {exc}") from None
    finally:
        operator.close()


def job_fields(args: argparse.Namespace, model_ref: str | None) -> dict[str, Any]:
    """The `JobOptions` fields every job command shares (pipeline, topics, config, checkpoint folder, interval,
    parallelism, managed memory), after refusing a bad config and models that cannot serve it (`ConfigError`)."""
    from pipelines.infra.home import subdir
    from pipelines.registry import get

    pipeline = get(args.pipeline)
    # Refuses a bad config, routes on unknown attributes, and models that are missing, tampered with or do not
    # fit the operator (e.g. k above the model's) before Flink starts.
    config = pipeline.load_config(Path(args.config) if args.config else None)
    check_models(pipeline.operator_from_config(config), model_ref)
    topics = config.topics  # the given config's, else the shipped one's
    return {
        "pipeline": args.pipeline,
        "bootstrap": args.bootstrap,
        "input_topic": args.input_topic or topics.input,
        "output_topic": args.output_topic or topics.output,
        "dlq_topic": args.dlq_topic or topics.dlq,
        "config_path": Path(args.config).resolve() if args.config else None,
        "checkpoint_dir": Path(args.checkpoint_dir) if args.checkpoint_dir else subdir("checkpoints", args.pipeline),
        "checkpoint_interval_ms": args.checkpoint_interval,
        "parallelism": args.parallelism,
        "managed_memory": getattr(args, "managed_memory", DEFAULT_MANAGED_MEMORY),
        "allow_non_restored_state": getattr(args, "allow_non_restored_state", False),
        "jobmanager": _jobmanager(args),
        "metrics_port": getattr(args, "metrics_port", None),
        "operator": getattr(args, "operator", DEFAULT_OPERATOR),
        "buffer_size": getattr(args, "buffer_size", DEFAULT_BUFFER_SIZE),
        "buffer_ms": getattr(args, "buffer_ms", DEFAULT_BUFFER_MS),
    }


def _jobmanager(args: argparse.Namespace) -> str | None:
    """The session cluster's REST address for `--target remote` (default: the one `streamscore cluster up`
    started); None for the embedded mini-cluster."""
    target, given = getattr(args, "target", "local"), getattr(args, "jobmanager", None)
    if target == "local":
        if given is not None:
            raise UsageError("--jobmanager needs --target remote (the default target is the embedded mini-cluster)")
        return None
    if given is not None:
        return str(given)
    from pipelines.infra.cluster import saved_spec

    return f"localhost:{saved_spec().rest_port}"


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that runs a job (`run`, `replay`, `backtest`)."""
    parser.add_argument("pipeline", choices=pipeline_names(), help="which pipeline")
    parser.add_argument("--config", help="pipeline YAML (topics, model, rules, thresholds, k ...); validated at start")
    parser.add_argument("--input-topic", help="default: the config's topics.input")
    parser.add_argument("--output-topic", help="default: the config's topics.output")
    parser.add_argument("--dlq-topic", help="dead letters; default: the config's topics.dlq")
    parser.add_argument("--checkpoint-dir", help="default: $STREAMSCORE_HOME/checkpoints/PIPELINE")
    parser.add_argument("--checkpoint-interval", type=int, default=1000, metavar="MS",
                        help="checkpoint interval in ms; with exactly-once, results become visible per checkpoint")
    parser.add_argument("--bounded", action="store_true",
                        help="process what is in the input topic now, then finish with a final checkpoint")
    parser.add_argument("--parallelism", type=int, default=1,
                        help="parallel subtasks of the job (1 to its max parallelism, 128), default %(default)s")
    parser.add_argument("--managed-memory", default=DEFAULT_MANAGED_MEMORY, metavar="SIZE",
                        help="Flink managed memory (RocksDB cache and write buffers), default %(default)s")
    parser.add_argument("--model", help="pin a model version NAME@V (default: the registry's current)")
    parser.add_argument("--delivery", choices=["exactly-once", "at-least-once"], default="exactly-once",
                        help="exactly-once: transactional output, visible per checkpoint (default); at-least-once: "
                        "visible at once, duplicates possible after a failure")
    parser.add_argument("--state-changelog", metavar="TOPIC",
                        help="also publish every state version to TOPIC (read back with `streamscore state`)")
    parser.add_argument("--transactional-id-prefix",
                        help="default: streamscore-PIPELINE-OUTPUT_TOPIC (unique per concurrently running job)")
    parser.add_argument("--target", choices=["local", "remote"], default="local",
                        help="local: the embedded Flink mini-cluster (default); remote: submit to a session cluster")
    parser.add_argument("--jobmanager", metavar="HOST:PORT",
                        help="the session cluster's REST address (default: the one `streamscore cluster up` runs)")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve the job's metrics for Prometheus on localhost:PORT/metrics (Flink: the job's "
                        "and the operator's; faust: the worker's, under the same names)")
    parser.add_argument("--attach", action="store_true",
                        help="--target remote: follow the job until it ends (default: return once it is submitted)")
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--runtime", choices=["flink", "faust"], default="flink",
                         help="flink: the PyFlink job (default); faust: the Python-only faust-streaming worker")
    runtime.add_argument("--operator", choices=["buffered", "per-record"], default=DEFAULT_OPERATOR,
                         help="flink: the keyed operator; buffered: a Java operator calling Python once per buffer "
                         "of records (default); per-record: PyFlink's keyed function, once per record")
    runtime.add_argument("--buffer-size", type=int, default=DEFAULT_BUFFER_SIZE, metavar="N",
                         help="flink, buffered: most records per Python call, default %(default)s")
    runtime.add_argument("--buffer-ms", type=int, default=DEFAULT_BUFFER_MS, metavar="MS",
                         help="flink, buffered: longest wait for a buffer to fill (1-5), default %(default)s ms")
    runtime.add_argument("--state-dir", help="faust: the partitions' RocksDB stores "
                         "(default: $STREAMSCORE_HOME/faust/PIPELINE)")
    runtime.add_argument("--batch-size", type=int, default=500, metavar="N",
                         help="faust: events per micro-batch (one transaction per partition), default %(default)s")
    runtime.add_argument("--batch-window", type=int, default=100, metavar="MS",
                         help="faust: kept for compatibility; a micro-batch is what has been fetched and never waits "
                         "to fill up (batches scored during a commit join the next transaction)")
    runtime.add_argument("--input-keyed", action="store_true",
                         help="faust: the input is partitioned by the pipeline's key (e.g. `streamscore publish`): "
                         "score it as it is; otherwise an input of several partitions is repartitioned through "
                         "the internal topic GROUP-repartition")
    runtime.add_argument("--group-id", help="faust: the consumer group its workers share "
                         "(default: streamscore-faust-PIPELINE-INPUT-OUTPUT)")
    parser.add_argument("--allow-non-restored-state", action="store_true",
                        help="restore a checkpoint of an earlier job graph: state of operators this job no longer "
                        "has is dropped (keyed state is kept; the input continues from committed offsets)")


#: Options only one runtime reads, with the value they have when not given.
_FLINK_ONLY: dict[str, object] = {
    "checkpoint_dir": None, "checkpoint_interval": 1000, "parallelism": 1, "managed_memory": DEFAULT_MANAGED_MEMORY,
    "allow_non_restored_state": False, "fresh": False, "target": "local", "jobmanager": None, "attach": False,
    "operator": DEFAULT_OPERATOR, "buffer_size": DEFAULT_BUFFER_SIZE, "buffer_ms": DEFAULT_BUFFER_MS,
}
_FAUST_ONLY: dict[str, object] = {"state_dir": None, "batch_size": 500, "batch_window": 100, "group_id": None,
                                  "input_keyed": False}


def check_runtime_options(args: argparse.Namespace) -> None:
    """`ConfigError` naming every option given that `--runtime` does not read (instead of ignoring it)."""
    faust = getattr(args, "runtime", "flink") == "faust"
    other = _FLINK_ONLY if faust else _FAUST_ONLY
    given = [name for name, default in other.items() if getattr(args, name, default) != default]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        hint = (
            "the faust runtime keeps its state in --state-dir and its position in the consumer group (scale out "
            "with more workers of one --group-id; start over with a new --state-dir and --group-id, or `replay`)"
            if faust else "they configure the faust runtime: add --runtime faust"
        )
        raise UsageError(f"{flags} {'is' if len(given) == 1 else 'are'} not used by --runtime "
                          f"{'faust' if faust else 'flink'}: {hint}")
    if getattr(args, "attach", False) and getattr(args, "target", "local") != "remote":
        raise UsageError("--attach is for --target remote (a local run always follows its job)")
    if faust and getattr(args, "batch_size", 1) < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if faust and getattr(args, "batch_window", 1) < 0:
        raise UsageError(f"--batch-window must be >= 0 ms, got {args.batch_window}")
