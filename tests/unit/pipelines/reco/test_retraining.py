"""The reco dataset's time-ordered split, its holdout metrics (next item and bought items, production from what
it served) and purchase-weighted training, on small hand-made datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from models.training.reco import RecoTrainingConfig, train_reco
from pipelines.exceptions import ConfigError
from pipelines.reco.retraining import (
    PURCHASE_WEIGHT,
    Session,
    load_reco_splits,
    metrics_at_k,
    production_reco_metrics,
    training_weights,
)


def _write(path: Path, rows: list[tuple[str, int, int, bool, list[int]]], pipeline: str = "reco") -> Path:
    """(session, item, ts, bought, recommended) rows as a dataset file with builder-like metadata."""
    table = pa.table({
        "event_id": [f"e{i}" for i in range(len(rows))], "session_id": [r[0] for r in rows],
        "item_id": pa.array([r[1] for r in rows], pa.int64()), "ts": pa.array([r[2] for r in rows], pa.int64()),
        "label": pa.array([int(r[3]) if r[3] is not None else None for r in rows], pa.int8()),
        "recommended": pa.array([r[4] for r in rows], pa.list_(pa.int64())),
    })
    meta = {"pipeline": pipeline, "report": {"rows": len(rows), "positives": sum(bool(r[3]) for r in rows)}}
    pq.write_table(table.replace_schema_metadata({"streamscore": json.dumps(meta)}), path)
    return path


ROWS = [  # sessions A, B, C, D; D starts after the cutoff (ts 11 with a 0.4 holdout share of 14 rows)
    ("A", 1, 1, False, [2]), ("A", 2, 2, False, [3]), ("A", 3, 3, False, [4]), ("A", 4, 4, False, [5]),
    ("B", 5, 5, False, [6]), ("B", 6, 6, True, [7]), ("B", 7, 11, False, [8]),
    ("C", 8, 8, False, [9]), ("C", 9, 9, False, [10]), ("C", 10, 10, False, [11]), ("C", 11, 12, None, [12]),
    ("D", 1, 13, False, [2, 5]), ("D", 2, 14, False, [9, 8]), ("D", 3, 15, True, [4]),
]


def test_the_split_trains_on_clicks_before_the_cutoff_and_holds_out_the_sessions_after_it(tmp_path: Path) -> None:
    splits = load_reco_splits(_write(tmp_path / "d.parquet", ROWS), holdout_share=0.4)
    assert splits.cutoff_ts == 11
    training = {s.session_id: s.items for s in splits.training()}
    assert training == {"A": [1, 2, 3, 4], "B": [5, 6], "C": [8, 9, 10]}  # B and C cut at the cutoff
    assert [s.session_id for s in splits.holdout()] == ["D"]  # B and C started before it: not evaluated
    assert splits.sessions[1].bought == [False, True, False] and splits.sessions[2].bought[-1] is False


def test_metrics_count_next_item_hits_and_the_hits_on_items_the_session_bought(tmp_path: Path) -> None:
    splits = load_reco_splits(_write(tmp_path / "d.parquet", ROWS), holdout_share=0.4)
    # D: after item 1 production served [2, 5] (next 2: rank 1); after 2 it served [9, 8] (next 3, bought: miss)
    assert production_reco_metrics(splits) == {"hr_at_10": 0.5, "mrr_at_10": 0.5, "purchase_hr_at_10": 0.0,
                                               "positions": 2, "purchase_positions": 1}
    session = Session("S", [1, 2, 1, 3], [1, 2, 3, 4], [False, True, False, True], [[], [], [], []])
    top = {(0, 0): [7, 2], (0, 1): [9], (0, 2): [3]}  # (0, 1) is followed by an item already seen: not scored
    assert metrics_at_k([session], top) == {"hr_at_10": 1.0, "mrr_at_10": 0.75, "purchase_hr_at_10": 1.0,
                                            "positions": 2, "purchase_positions": 2}
    assert metrics_at_k([session], {(0, 0): [2], (0, 2): [3]}, k=1)["hr_at_1"] == 1.0


def test_a_dataset_of_another_pipeline_or_without_a_holdout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset build reco"):
        load_reco_splits(_write(tmp_path / "r.parquet", ROWS, pipeline="risk"))
    with pytest.raises(ConfigError, match="no click followed by a new item"):
        load_reco_splits(_write(tmp_path / "d.parquet", ROWS), holdout_share=0.01)


def test_bought_items_weigh_more_and_items_outside_the_catalogue_are_never_targets() -> None:
    sessions = [Session("S", [1, 30, 2], [1, 2, 3], [False, False, True], [[], [], []])]
    assert training_weights(sessions, catalog_size=20) == [[1.0, 0.0, PURCHASE_WEIGHT]]


def test_purchase_weights_change_what_the_model_learns_and_an_oov_target_is_skipped() -> None:
    sessions = [[1, 2, 3, 4], [1, 3, 5], [2, 30, 4, 6], [5, 6, 7]] * 8  # 30 is outside the catalogue of 20
    config = RecoTrainingConfig(embedding_size=8, hidden_size=8, epochs=2, batch_size=8)
    plain = [[0.0 if i >= 20 else 1.0 for i in s] for s in sessions]
    bought = [[0.0 if i >= 20 else PURCHASE_WEIGHT if i == 4 else 1.0 for i in s] for s in sessions]
    a = train_reco(sessions, 20, seed=1, config=config, target_weights=plain).model
    b = train_reco(sessions, 20, seed=1, config=config, target_weights=plain).model
    c = train_reco(sessions, 20, seed=1, config=config, target_weights=bought).model
    assert torch.equal(a.output.weight, b.output.weight)  # deterministic
    assert not torch.equal(a.output.weight, c.output.weight)
    with torch.no_grad():  # item 4 scores higher after 3 when it is the bought one
        score = [m(torch.tensor([[1, 2, 3]]))[1][0, -1, 4].item() for m in (a, c)]
    assert score[1] > score[0]


def test_the_cli_offers_the_metrics_the_loop_decides_on() -> None:
    from pipelines.cli.loop import loop_metrics
    from pipelines.registry import definitions, get

    offered = loop_metrics()
    assert len(offered) == len(set(offered))
    assert set(offered) == {m for d in definitions() if d.loop is not None for m in d.loop.metrics}
    assert {"roc_auc", "pr_auc", "hr_at_10", "mrr_at_10", "purchase_hr_at_10"} <= set(offered)
    assert offered.index("roc_auc") < offered.index("pr_auc")  # each pipeline's in its order (its first: default)
    assert get("risk").loop is not None and get("risk").loop.metrics[0] == "roc_auc"
