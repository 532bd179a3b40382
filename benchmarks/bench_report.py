"""Figures and outputs of `bench.py`: slopes, latency percentiles, the JSON, the PNG, the table (which `tables.py`
renders into the documents).

Throughput of a system is the slope between two input sizes inside one bounded run over `N_large` events:
`(N_large - N_small) / (t(N_large) - t(N_small))`, where t(n) is when the broker appended the n-th result, so
start-up cancels exactly; min/median/max over the repetitions. A system with any run whose outputs do not check
(lost, doubled or unexpected results, or a failed process) is `failed` and not ranked.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from bench_runs import LatencyRecord, RunRecord

PERCENTILES = (50.0, 99.0, 99.9)


#: Below this many seconds between the lower point and the last result, the in-run slope is imprecise (the
#: broker stamps in ms, results leave in batches): raise the system's sizes in `peers/systems.py`.
PRECISE_WINDOW_S = 3.0


def steady_rates(runs: list[RunRecord], large: int) -> list[float]:
    """Results per second between the first and the last result of each large run (broker append times),
    the job's warm-up included."""
    rates = []
    for run in runs:
        if run.events == large and run.ok and run.first_result_s is not None and run.last_result_s is not None:
            span = run.last_result_s - run.first_result_s
            if span > 0:
                rates.append((large - 1) / span)
    return rates


def spread(values: list[float]) -> dict[str, float] | None:
    """min / median / max of `values` (None when empty)."""
    if not values:
        return None
    return {"min": float(np.min(values)), "median": float(np.median(values)), "max": float(np.max(values))}


def percentiles(values: list[int]) -> dict[str, float] | None:
    """p50 / p99 / p99.9 in ms (None when there are no values)."""
    if not values:
        return None
    arr = np.asarray(values, dtype=np.float64)
    return {f"p{p:g}": float(np.percentile(arr, p)) for p in PERCENTILES} | {"count": len(values)}


def trend(values: list[int], parts: int = 10) -> list[float]:
    """Median latency of each tenth of the paced events in send order: flat when the system kept up, rising
    when the rate was above what it sustained during the run."""
    if len(values) < parts:
        return []
    size = len(values) / parts
    return [float(np.median(values[int(i * size):int((i + 1) * size)])) for i in range(parts)]


def cdf_points(values: list[int], points: int = 200) -> list[float]:
    """`points` evenly spaced quantiles of `values` (for plotting a CDF without storing every event)."""
    if not values:
        return []
    return [float(q) for q in np.quantile(np.asarray(values, dtype=np.float64), np.linspace(0, 1, points))]


def latency_summary(latency: LatencyRecord) -> dict[str, Any]:
    """One latency run: its rate, checks, percentiles, trends and CDF points."""
    latency_ok = latency.check is not None and latency.check.ok and not latency.error
    return {
        "rate": latency.rate,
        "events": latency.events,
        "ok": latency_ok,
        "check": asdict(latency.check) if latency.check else None,
        "error": latency.error[-2000:],
        "send_to_scored_ms": percentiles(latency.send_to_scored_ms),
        "send_to_visible_ms": percentiles(latency.send_to_visible_ms),
        "send_to_visible_trend_ms": trend(latency.send_to_visible_ms),
        "settling_send_to_visible_ms": percentiles(latency.settling_send_to_visible_ms),
        "settling_send_to_visible_trend_ms": trend(latency.settling_send_to_visible_ms),
        "cdf_send_to_scored_ms": cdf_points(latency.send_to_scored_ms),
        "cdf_send_to_visible_ms": cdf_points(latency.send_to_visible_ms),
    }


def system_summary(name: str, description: str, sizes: tuple[int, int], runs: list[RunRecord],
                   latency: LatencyRecord | None, exactly_once: bool,
                   low_load: LatencyRecord | None = None) -> dict[str, Any]:
    """Everything the report says about one system (`latency`: its run at 50 % load; `low_load`: at 10 %)."""
    failed = [r for r in runs if not r.ok]
    large = [r for r in runs if r.ok and r.events == sizes[1]]
    rates = [r.rate for r in large if r.rate is not None]
    status = "failed" if failed or not runs else "ok" if rates else "no-slope"
    windows = [r.last_result_s - r.mark_s for r in large if r.last_result_s is not None and r.mark_s is not None]
    summary: dict[str, Any] = {
        "description": description,
        "sizes": list(sizes),
        "status": status,
        "throughput": spread(rates),
        "throughput_per_rep": rates,
        "slope_window_s": windows,
        "first_to_last_result_rate": spread(steady_rates(runs, sizes[1])),
        "end_to_end_seconds": {str(n): [r.seconds for r in runs if r.ok and r.events == n] for n in sizes},
        "runs": [asdict(r) for r in runs],
        "exactly_once": exactly_once,
    }
    if windows and float(np.median(windows)) < PRECISE_WINDOW_S:
        summary["warning"] = (f"only {float(np.median(windows)):.1f} s between the {sizes[0]}-th and the last result "
                              f"(< {PRECISE_WINDOW_S:g} s): the slope is imprecise; raise its sizes")
    if failed:
        summary["failures"] = [{"events": r.events, "rep": r.rep, "check": asdict(r.check) if r.check else None,
                                "error": r.error[-2000:]} for r in failed]
    if latency is not None:
        summary["latency"] = latency_summary(latency)
    if low_load is not None:
        summary["latency_low_load"] = latency_summary(low_load)
    return summary


def add_ratios(systems: dict[str, dict[str, Any]], reference: str) -> None:
    """Each ranked system's median throughput as a multiple of `reference`'s (when that one is ranked)."""
    ref = systems.get(reference)
    base = ref["throughput"]["median"] if ref and ref["status"] == "ok" and ref["throughput"] else None
    for summary in systems.values():
        ranked = summary["status"] == "ok" and summary["throughput"] and base
        summary[f"ratio_to_{reference}"] = summary["throughput"]["median"] / base if ranked else None


def _fmt_rate(summary: dict[str, Any]) -> str:
    t = summary["throughput"]
    if summary["status"] == "no-slope":
        return "n/a: no broker timestamps"
    if summary["status"] != "ok" or not t:
        return "failed"
    return f"{t['median']:,.0f} ({t['min']:,.0f}-{t['max']:,.0f})"


def _fmt_lat(lat: dict[str, Any] | None, key: str) -> str:
    if not lat or not lat.get(key):
        return "-"
    p = lat[key]
    return f"{p['p50']:,.0f} / {p['p99']:,.0f} / {p['p99.9']:,.0f}"


def _fmt_settling(lat: dict[str, Any] | None) -> str:
    settling = (lat or {}).get("settling_send_to_visible_ms")
    return f"{settling['p99']:,.0f}" if settling else "-"


def _fmt_low_load(lat: dict[str, Any] | None) -> str:
    if not lat:
        return "-"
    scored = lat.get("send_to_scored_ms")
    if not lat["ok"] or not scored:
        return "failed"
    return f"{scored['p50']:,.0f} / {scored['p99']:,.0f} ({lat['rate']:,.0f})"


def _fmt_check(summary: dict[str, Any]) -> str:
    if summary["status"] in ("ok", "no-slope"):
        disagree = sum((r["check"] or {}).get("disagree", 0) for r in summary["runs"])
        return "ok" + (f" ({disagree} differ from offline)" if disagree else "")
    worst = summary.get("failures", [{}])[0]
    c = worst.get("check")
    if c:
        return f"FAILED: {c['missing']} missing, {c['duplicates']} doubled, {c['unexpected']} unexpected"
    return "FAILED: " + (worst.get("error", "").splitlines() or ["?"])[0][:60]


def table(report: dict[str, Any], reference: str) -> str:
    """The results as a Markdown table (one row per system, then the offline operator cost)."""
    lines = [
        f"| system | events/s, median (min-max) | x {reference} | send→scored p50 / p99 / p99.9 ms "
        "| send→visible p50 / p99 / p99.9 ms | settling p99 ms | at events/s "
        "| at 10 % load: send→scored p50 / p99 ms (at events/s) | outputs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in report["systems"].items():
        ratio = s.get(f"ratio_to_{reference}")
        lat = s.get("latency")
        rate = f"{lat['rate']:,.0f}" if lat else "-"
        if lat and not lat["ok"]:
            rate += " (latency run failed)"
        lines.append(f"| {name} | {_fmt_rate(s)} | {f'{ratio:.2f}' if ratio else '-'} | "
                     f"{_fmt_lat(lat, 'send_to_scored_ms')} | {_fmt_lat(lat, 'send_to_visible_ms')} | "
                     f"{_fmt_settling(lat)} | {rate} | {_fmt_low_load(s.get('latency_low_load'))} | "
                     f"{_fmt_check(s)} |")
    for pipeline, o in report.get("offline", {}).items():
        us = o.get("us_per_event")
        if us:
            lines.append(f"| offline operator chain ({pipeline}) | {1e6 / us['median']:,.0f} "
                         f"({us['median']:.1f} µs/event) | - | - | - | - | - | - | - |")
    return "\n".join(lines)


def plot(report: dict[str, Any], reference: str, path: Path) -> None:
    """Throughput bars (median, min-max whiskers, ratio labels) and latency CDFs, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = report["systems"]
    fig, (bars, cdf) = plt.subplots(1, 2, figsize=(14, 5.2))
    names = list(systems)
    medians = [s["throughput"]["median"] if s["status"] == "ok" and s["throughput"] else 0.0
               for s in systems.values()]
    lows = [m - (s["throughput"]["min"] if s["throughput"] and m else 0) for m, s in zip(medians, systems.values(),
                                                                                         strict=True)]
    highs = [(s["throughput"]["max"] if s["throughput"] and m else 0) - m for m, s in zip(medians, systems.values(),
                                                                                          strict=True)]
    colors = ["#bbb" if "passthrough" in n else "#c44" if n.startswith("streamscore") else "#69c" for n in names]
    positions = np.arange(len(names))
    bars.bar(positions, [m or 1 for m in medians], yerr=[lows, highs], color=colors, capsize=3)
    bars.set_yscale("log")
    bars.set_xticks(positions, names, rotation=30, ha="right", fontsize=8)
    bars.set_ylabel("events/s (log scale; slope of two input sizes)")
    bars.set_title(f"throughput, median of {report['settings']['reps']} reps (label: x {reference})")
    for x, s in zip(positions, systems.values(), strict=True):
        ratio = s.get(f"ratio_to_{reference}")
        label = "failed" if s["status"] != "ok" else f"{ratio:.2f}x" if ratio else ""
        bars.text(x, max(medians[x], 1) * 1.15, label, ha="center", fontsize=8)
    palette = plt.get_cmap("tab10")
    for i, (name, s) in enumerate(systems.items()):
        lat = s.get("latency") or {}
        for key, style in (("cdf_send_to_scored_ms", "-"), ("cdf_send_to_visible_ms", "--")):
            points = lat.get(key) or []
            if points:
                what = "scored" if "scored" in key else "visible"
                cdf.plot(np.maximum(points, 0.1), np.linspace(0, 1, len(points)), style, color=palette(i % 10),
                         label=f"{name} send→{what}")
    cdf.set_xscale("log")
    cdf.set_xlabel("latency, ms (log scale)")
    cdf.set_ylabel("fraction of events")
    cdf.set_title("latency at 50 % of each system's throughput (paced)")
    cdf.grid(True, which="both", alpha=0.3)
    if cdf.get_legend_handles_labels()[0]:
        cdf.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
