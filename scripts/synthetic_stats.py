"""Artifact and drift figures of the synthetic generators (what issue 34 measured, reproducible on any commit).

    python scripts/synthetic_stats.py [--events 40000] [--seeds 5,9,21] [--window-hours 24] [--json OUT]

Per seed, for the risk stream (default and `emerging-fraud`) and the click stream (default and `new-season`):
* `top_ts_share`: the largest share of events on one timestamp, and `last_ms_share`: the share on the stream's
  last millisecond (a pile-up there is a generator artifact: a real stream has none);
* `zero_gap_share`: the share of an account's (session's) consecutive events 0 ms apart, legitimate ones only
  for risk (the fraud patterns may burst);
* risk only, the offline equivalent of `streamscore drift risk` (a job's features are the operator's, so its
  changelog vectors equal `risk_dataset`'s): PSI of every feature and of the current model's score, the first
  `--window-hours` of event time against the last, flagged at the default threshold; and, as `drift risk
  --feedback` does, the label-1 events' KS flags between the first and last third of the span.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from models.registry import ModelRegistry
from operators.risk.features import FEATURE_NAMES
from pipelines.reco.definition import NEW_SEASON_FROM
from pipelines.risk.definition import EMERGING_FROM, EMERGING_RATE
from pipelines.risk.drift import DEFAULT_THRESHOLD, positive_drift, psi
from pipelines.risk.training import risk_dataset


def timestamp_stats(ts: np.ndarray, keys: list[str], legit: np.ndarray | None = None) -> dict[str, float]:
    """Top and last-millisecond timestamp shares and the share of zero gaps between a key's events."""
    counts = Counter(ts.tolist())
    last: dict[str, int] = {}
    zero = gaps = 0
    for i, (t, key) in enumerate(zip(ts.tolist(), keys, strict=True)):
        if key in last and (legit is None or legit[i]):
            gaps += 1
            zero += int(t == last[key])
        last[key] = t
    return {"top_ts_share": round(max(counts.values()) / len(ts), 5),
            "last_ms_share": round(counts[int(ts.max())] / len(ts), 5),
            "zero_gap_share": round(zero / max(gaps, 1), 5)}


def risk_stats(events: list[dict[str, Any]], window_ms: int) -> dict[str, Any]:
    """Timestamp artifacts and the population / positives drift of one risk stream."""
    ts = np.array([int(e["ts"]) for e in events])
    data = risk_dataset(events)
    out: dict[str, Any] = timestamp_stats(ts, [str(e["account_id"]) for e in events], data.labels == 0)
    first, last = int(ts.min()), int(ts.max())
    ref, cur = ts < first + window_ms, ts >= last - window_ms
    feature_psi = {name: round(psi(data.features[ref, i], data.features[cur, i]), 4)
                   for i, name in enumerate(FEATURE_NAMES)}
    score = ModelRegistry().load("risk").run({"features": data.features})["probability"]
    feature_psi["score"] = round(psi(score[ref], score[cur]), 4)
    out["psi"] = feature_psi
    out["psi_flagged"] = [name for name, value in feature_psi.items() if value >= DEFAULT_THRESHOLD]
    positive = data.labels == 1
    third = (last - first) / 3
    out["positives_flagged"] = positive_drift(data.features[positive & (ts < first + third)],
                                              data.features[positive & (ts >= last - third)]).flagged
    accounts = [str(e["account_id"]) for e in events]
    first_seen = {a: t for t, a in reversed(list(zip(ts.tolist(), accounts, strict=True)))}
    last_seen = dict(zip(accounts, ts.tolist(), strict=True))
    span = last - first
    out["accounts_opening_after_10pct"] = round(
        float(np.mean([t > first + 0.1 * span for t in first_seen.values()])), 4)
    out["accounts_quiet_last_10pct"] = round(float(np.mean([t < last - 0.1 * span for t in last_seen.values()])), 4)
    return out


def click_stats(events: list[dict[str, Any]]) -> dict[str, float]:
    """Timestamp artifacts of one click stream."""
    ts = np.array([int(e["ts"]) for e in events])
    return timestamp_stats(ts, [str(e["session_id"]) for e in events])


def main() -> None:
    """Print (and with --json write) the figures for every seed."""
    from models.synthetic import generate_clicks, generate_transactions

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--seeds", default="5,9,21")
    parser.add_argument("--window-hours", type=float, default=24.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {"events": args.events, "window_hours": args.window_hours, "seeds": {}}
    for seed in (int(s) for s in args.seeds.split(",")):
        window_ms = int(args.window_hours * 3_600_000)
        row = {
            "risk": risk_stats(generate_transactions(args.events, seed), window_ms),
            "risk_emerging_fraud": risk_stats(generate_transactions(
                args.events, seed, emerging_from=EMERGING_FROM, emerging_rate=EMERGING_RATE), window_ms),
            "clicks": click_stats(generate_clicks(args.events, seed)),
            "clicks_new_season": click_stats(generate_clicks(args.events, seed, new_season_from=NEW_SEASON_FROM)),
        }
        report["seeds"][seed] = row
        print(f"seed {seed}: {json.dumps(row)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
