"""`streamscore models …`: train, list, show, promote, quantize, evaluate and serve registered models.

`add_models_commands(subparsers)` adds the `models` command to an argparse sub-parser set; every leaf
parser sets `func` to a callable taking the parsed args and returning the process exit code. Failures are raised
(`UsageError` for a wrong reference or option, `ModelError`, `SetupError`) and reported by the CLI's one error
boundary, `pipelines.cli.main`, with its exit codes and `streamscore: error:` prefix.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from models.registry import ModelRegistry, parse_ref
from pipelines.cli.common import EXIT_FAILURE, EXIT_OK
from pipelines.exceptions import UsageError
from pipelines.registry import definitions


def _registry(args: argparse.Namespace) -> ModelRegistry:
    return ModelRegistry(args.registry) if args.registry else ModelRegistry()


def _ref(text: str) -> tuple[str, int | None]:
    """NAME or NAME@VERSION; a malformed reference is a usage error."""
    try:
        return parse_ref(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _loop_spec(name: str) -> Any:
    from pipelines.loop.turn import loop_spec

    return loop_spec(name)


def _cmd_train_on_dataset(args: argparse.Namespace) -> int:
    if args.events is not None or args.k is not None:
        raise UsageError("--events and --k are for synthetic training, not --dataset")
    registry = _registry(args)
    spec = _loop_spec(args.name)
    candidate = spec.train(Path(args.dataset), registry, seed=args.seed, holdout_share=args.holdout_share,
                           from_scratch=args.from_scratch)
    name, manifest = args.name, candidate.manifest
    scope = spec.holdout(Path(args.dataset), args.holdout_share).size_text
    print(f"registered {name}@{candidate.version} from {args.dataset} (not promoted; current: "
          f"{name}@{registry.current(name)})")
    print(f"on the dataset's time-ordered holdout ({scope}): {manifest['metrics']}; "
          f"production served {manifest['metrics_holdout']['production']}")
    return EXIT_OK


def _cmd_train(args: argparse.Namespace) -> int:
    from pipelines.registry import get

    if args.dataset is not None:
        return _cmd_train_on_dataset(args)

    train = get(args.name).train
    assert train is not None  # the choices are the pipelines with a train hook
    registry = _registry(args)
    extra = {"large": True} if args.large else {}
    try:
        version = train(args.seed, registry, events=args.events, progress=not args.quiet, k=args.k, **extra)
    except ValueError as exc:  # options the pipeline's trainer does not take (e.g. --large for reco)
        raise UsageError(str(exc)) from None
    name = f"{args.name}-large" if args.large else args.name
    manifest = registry.manifest(name, version)
    print(f"registered {name}@{version} (current: {registry.current(name)}) in {registry.root}")
    holdout = manifest.get("metrics_holdout", {})
    print(f"metrics on holdout seed {holdout.get('seed')}: {manifest.get('metrics')}")
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from pipelines.infra.model_server import ModelServer, ModelServerError

    server = ModelServer(args.names, _registry(args), http_port=args.port, grpc_port=args.grpc_port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        seconds = server.start().wait_ready(args.start_timeout)
    except BaseException:
        server.stop()
        raise
    print(f"serving {', '.join(server.served)} over the Open Inference Protocol v2 (ready in {seconds:.1f} s)")
    print(f"  HTTP {server.http_url}   gRPC {server.grpc_target}   log {server.log_path}", flush=True)
    try:
        while not stop.wait(0.5):
            if server.process is not None and server.process.poll() is not None:
                raise ModelServerError(
                    f"the model server exited ({server.process.returncode}); its log:\n{server.log_tail()}")
        print("stopping the model server (SIGTERM; SIGKILL after 10 s)", file=sys.stderr, flush=True)
    finally:
        server.stop()
    print("model server stopped", file=sys.stderr, flush=True)
    return EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    models = registry.list()
    if not models:
        print(f"no models in {registry.root}")
        return EXIT_OK
    for model in models:
        for version in model.versions:
            manifest = registry.manifest(model.name, version)
            marker = "*" if version == model.current else " "
            quant = " int8" if manifest.get("quantized") else ""
            metrics = manifest.get("metrics", {})
            problem = registry.problem(model.name, version)
            unusable = f"  UNUSABLE: {problem}" if problem else ""
            print(f"{marker} {model.name}@{version}{quant}  created {manifest['created']}  {metrics}{unusable}")
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    registry = _registry(args)
    name, version = _ref(args.ref)
    manifest = registry.manifest(name, version)
    manifest["current"] = registry.current(name) == manifest["version"]
    problem = registry.problem(name, manifest["version"])
    manifest["status"] = "ok" if problem is None else f"unusable: {problem}"
    print(json.dumps(manifest, indent=2, sort_keys=True))
    return EXIT_OK if problem is None else EXIT_FAILURE


def _cmd_promote(args: argparse.Namespace) -> int:
    registry = _registry(args)
    name, version = _ref(args.ref)
    if version is None:
        raise UsageError(f"promote needs NAME@VERSION, got {args.ref!r}")
    registry.promote(name, version)
    print(f"{name}@{version} is now current")
    return EXIT_OK


def _cmd_quantize(args: argparse.Namespace) -> int:
    from models.quantization import quantize_registered

    registry = _registry(args)
    name, version = _ref(args.ref)
    new_version = quantize_registered(registry, name, version)
    print(
        f"registered INT8 {name}@{new_version} (from {name}@{version or registry.current(name)}); not current"
    )
    return EXIT_OK


def _cmd_evaluate_on_dataset(args: argparse.Namespace) -> int:
    if args.seed is not None or args.events is not None:
        raise UsageError("--dataset evaluates on the dataset's holdout (no --seed/--events)")
    registry = _registry(args)
    handle = registry.load(args.name, args.version)
    holdout = _loop_spec(args.name).holdout(Path(args.dataset), args.holdout_share)
    model, production = holdout.evaluate(handle), holdout.served()
    if args.json:
        print(json.dumps({"model": model, "production": production, "holdout": holdout.size_text}, sort_keys=True))
    else:
        print(f"{handle.ref} on the time-ordered holdout ({holdout.size_text}) of {args.dataset}: {model}; "
              f"production served {production}")
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pipelines.registry import get
    from pipelines.training import DEFAULT_EVAL_SEED, write_report

    if args.dataset is not None:
        return _cmd_evaluate_on_dataset(args)
    evaluation = get(args.name).evaluate
    assert evaluation is not None  # the choices are the pipelines with an evaluate hook
    try:
        result = evaluation(
            args.version,
            args.seed if args.seed is not None else DEFAULT_EVAL_SEED,
            args.events,
            registry=_registry(args),
            progress=not args.json,
        )
    except ValueError as exc:  # options the pipeline's evaluation does not take
        raise UsageError(str(exc)) from None
    if args.report_dir is not None:
        json_path, png_path = write_report(result, Path(args.report_dir))
        if not args.json:
            print(f"report: {json_path} {png_path}")
    if args.json:
        print(json.dumps(result.metrics, sort_keys=True))
    else:
        print(f"{result.ref} on seed {result.seed} ({result.events:,} events):")
        for key, value in result.metrics.items():
            print(f"  {key:22s} {value:.4f}")
    return EXIT_OK


def add_models_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add `models` (train, list, show, promote, evaluate) to `subparsers` (from `add_subparsers()`)."""
    models = subparsers.add_parser("models", help="train, list, show, promote and evaluate models")
    models.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="registry folder (default: $STREAMSCORE_MODEL_REGISTRY, else $STREAMSCORE_HOME/models, seeded "
        "with the committed models)",
    )
    commands = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train NAME on a synthetic stream and register a new version")
    train.add_argument("name", choices=[d.name for d in definitions() if d.train is not None],
                       help="which pipeline's model")
    train.add_argument("--seed", type=int, default=1, help="training seed (default 1, the committed models)")
    train.add_argument("--events", type=int, default=None, help="training events (default: per model)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--large", action="store_true",
                       help="risk: the wider MLP, registered as risk-large (for a route to a model server)")
    train.add_argument("--k", type=int, default=None, help="reco: items the exported step ranks (default 10)")
    train.add_argument("--dataset", metavar="FILE", help="train on a `dataset build` file instead (registered without "
                       "promotion; the manifest names the dataset, its time range and the holdout metrics)")
    train.add_argument("--from-scratch", action="store_true",
                       help="--dataset: a new model instead of production fine-tuned on the dataset")
    train.add_argument("--holdout-share", type=float, default=0.2,
                       help="--dataset: the share of its newest rows held out for the metrics, default %(default)s")
    train.set_defaults(func=_cmd_train)

    serve = commands.add_parser("serve", help="serve registry models over the Open Inference Protocol v2 "
                                "(HTTP and gRPC; MLServer from its own venv, `make serve-venv`) until interrupted")
    serve.add_argument("names", nargs="*", metavar="NAME[@VERSION]",
                       help="models to serve (default: the current version of every model)")
    serve.add_argument("--port", type=int, default=8080, help="HTTP port (default %(default)s)")
    serve.add_argument("--grpc-port", type=int, default=8081, help="gRPC port (default %(default)s)")
    serve.add_argument("--start-timeout", type=float, default=60.0, help="seconds to wait for readiness")
    serve.set_defaults(func=_cmd_serve)

    listing = commands.add_parser("list", help="list models and versions (* marks current)")
    listing.set_defaults(func=_cmd_list)

    show = commands.add_parser("show", help="print the manifest of NAME[@VERSION]")
    show.add_argument("ref", metavar="NAME[@VERSION]", help="a model (default version: the current one)")
    show.set_defaults(func=_cmd_show)

    promote = commands.add_parser("promote", help="make NAME@VERSION the current version")
    promote.add_argument("ref", metavar="NAME@VERSION", help="the version to make current")
    promote.set_defaults(func=_cmd_promote)

    quantize = commands.add_parser("quantize", help="register an INT8 (dynamic) copy of NAME[@VERSION]")
    quantize.add_argument("ref", metavar="NAME[@VERSION]", help="the version to quantize to int8")
    quantize.set_defaults(func=_cmd_quantize)

    evaluate = commands.add_parser("evaluate", help="evaluate a registered model on a fresh synthetic stream")
    evaluate.add_argument("name", choices=[d.name for d in definitions() if d.evaluate is not None],
                          help="which pipeline's models")
    evaluate.add_argument("--version", type=int, default=None, help="version (default: current)")
    evaluate.add_argument("--seed", type=int, default=None, help="holdout stream seed (default 1001)")
    evaluate.add_argument("--events", type=int, default=None, help="holdout events (default: per model)")
    evaluate.add_argument("--json", action="store_true", help="print only the metrics as one JSON object")
    evaluate.add_argument("--report-dir", default=None, help="write <model>@<v>-seed<S>.json and .png here")
    evaluate.add_argument("--dataset", metavar="FILE",
                          help="evaluate on the time-ordered holdout of a `dataset build` file instead")
    evaluate.add_argument("--holdout-share", type=float, default=0.2,
                          help="--dataset: the share of its newest rows to evaluate on, default %(default)s")
    evaluate.set_defaults(func=_cmd_evaluate)
    return models
