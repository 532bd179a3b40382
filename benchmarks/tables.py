"""The benchmark tables of the documents, rendered from the committed results (never written by hand).

`make bench` runs this after `bench.py`; run it alone after editing the renderers. Each table stands between its
markers in its document:
- README.md, `<!-- bench:start -->` ... `<!-- bench:end -->`: every system of `benchmarks/results/bench.json`
  (the table `bench.py` prints, `bench_report.table`), under a line saying when, where and how it was measured;
- docs/runtimes.md, `<!-- bench-runtimes:start -->` ... `<!-- bench-runtimes:end -->`: the Flink and faust
  runtimes side by side, from the same run.
`tests/unit/benchmarks/test_tables.py` fails when a committed table differs from what this renders, so the
documents and the JSON cannot drift apart.

Usage: python benchmarks/tables.py [--check]   (--check: exit 1 if a document is not up to date, write nothing)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (HERE, ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_report import table  # noqa: E402  (benchmarks/ is not a package: its scripts import each other)
from peers.systems import REFERENCE  # noqa: E402

BENCH_JSON = HERE / "results" / "bench.json"


@dataclass(frozen=True)
class Target:
    """A document and the markers its generated table stands between."""

    path: Path
    start: str
    end: str


README_TABLE = Target(ROOT / "README.md", "<!-- bench:start -->", "<!-- bench:end -->")
RUNTIMES_TABLE = Target(ROOT / "docs" / "runtimes.md", "<!-- bench-runtimes:start -->",
                        "<!-- bench-runtimes:end -->")


def provenance(report: dict[str, Any]) -> str:
    """When, at which commit, on what machine and how the run was made (one line)."""
    machine, settings = report["machine"], report["settings"]
    return (f"`make bench`, {report['generated_at']}, commit {machine['git_commit']}, {machine['cpus']} cores, "
            f"load {machine['load_avg_before'][0]:.1f} at start; {settings['reps']} reps; latency paced at 50 % of "
            f"each system's median (capped at {settings['latency_cap']:,.0f}/s), and at 10 % for the systems with a "
            "10 % column. "
            "Full figures: `benchmarks/results/bench.json`, `bench.png`.")


def readme_table(report: dict[str, Any]) -> str:
    """The README's table: provenance, then one row per system and the offline operator cost."""
    return f"{provenance(report)}\n\n{table(report, REFERENCE)}"


#: The systems of `bench.py` that are the risk/reco pipelines on each runtime (buffered Flink operator).
RUNTIME_SYSTEMS = {
    "flink": {"risk-alo": "streamscore-risk-alo", "risk-eos": "streamscore-risk-eos", "reco": "streamscore-reco"},
    "faust": {"risk-alo": "faust-risk-alo", "risk-eos": "faust-risk-eos", "reco": "faust-reco"},
}


def _rate(report: dict[str, Any], name: str) -> str:
    system = report["systems"].get(name) or {}
    throughput = system.get("throughput")
    if system.get("status") != "ok" or not throughput:
        return "n/a"
    return f"{throughput['median']:,.0f}"


def _latency(report: dict[str, Any], name: str, field: str, run: str = "latency") -> str:
    latency = (report["systems"].get(name) or {}).get(run) or {}
    values = latency.get(field)
    if not latency.get("ok") or not values:
        return "n/a"
    return f"{values['p50']:,.0f} / {values['p99']:,.0f}"


def runtimes_table(report: dict[str, Any]) -> str:
    """Flink and faust side by side: throughput (median events/s) and latency at 50 % of each one's own median."""
    flink, faust = RUNTIME_SYSTEMS["flink"], RUNTIME_SYSTEMS["faust"]
    rows = [
        ("risk events/s, at-least-once / exactly-once",
         *(f"{_rate(report, s['risk-alo'])} / {_rate(report, s['risk-eos'])}" for s in (flink, faust))),
        ("reco events/s", *(_rate(report, s["reco"]) for s in (flink, faust))),
        ("risk send → scored p50 / p99 ms, at-least-once",
         *(_latency(report, s["risk-alo"], "send_to_scored_ms") for s in (flink, faust))),
        ("risk send → scored p50 / p99 ms at 10 % load, at-least-once",
         *(_latency(report, s["risk-alo"], "send_to_scored_ms", "latency_low_load") for s in (flink, faust))),
        ("risk send → visible p50 / p99 ms, exactly-once",
         f"{_latency(report, flink['risk-eos'], 'send_to_visible_ms')} (per checkpoint)",
         f"{_latency(report, faust['risk-eos'], 'send_to_visible_ms')} (per batch transaction)"),
    ]
    lines = [f"From the run of the README's table: {report['generated_at']}, commit "
             f"{report['machine']['git_commit']}, {report['machine']['cpus']} cores (medians of "
             f"{report['settings']['reps']} reps; latency at 50 % of each system's median throughput, capped at "
             f"{report['settings']['latency_cap']:,.0f}/s, unless marked 10 %).",
             "",
             "| `make bench` | `--runtime flink` (buffered operator) | `--runtime faust` (batches of <= 500) |",
             "|---|---|---|"]
    lines += [f"| {label} | {flink_cell} | {faust_cell} |" for label, flink_cell, faust_cell in rows]
    return "\n".join(lines)


RENDERERS = ((README_TABLE, readme_table), (RUNTIMES_TABLE, runtimes_table))


def replace_between(content: str, target: Target, text: str) -> str:
    """`content` with what stands between `target`'s markers replaced by `text`."""
    pattern = re.compile(re.escape(target.start) + r".*?" + re.escape(target.end), re.DOTALL)
    if not pattern.search(content):
        raise SystemExit(f"tables: {target.path}: markers {target.start} ... {target.end} not found")
    return pattern.sub(lambda _: f"{target.start}\n{text}\n{target.end}", content)


def rendered(report: dict[str, Any]) -> dict[Path, str]:
    """Every document that holds a table, as it should read with the tables rendered from `report`."""
    documents: dict[Path, str] = {}
    for target, render in RENDERERS:
        content = documents.get(target.path, target.path.read_text())
        documents[target.path] = replace_between(content, target, render(report))
    return documents


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) the documents' tables."""
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--check", action="store_true", help="exit 1 if a document is out of date; write nothing")
    options.add_argument("--results", type=Path, default=BENCH_JSON, help="default: %(default)s")
    args = options.parse_args(argv)
    report = json.loads(args.results.read_text())
    stale = []
    for path, content in rendered(report).items():
        if path.read_text() != content:
            stale.append(path)
            if not args.check:
                path.write_text(content)
    verb = "out of date" if args.check else "updated"
    for path in stale:
        print(f"{verb}: {path.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
