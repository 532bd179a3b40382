"""The session recommender: GRU4Rec-style next-item model trained in torch, exported as a *step* model.

Training runs `nn.GRU` over whole sessions (teacher forcing, full-softmax next-item loss). Serving runs one
event at a time: the exported ONNX graph computes the same GRU cell explicitly:

    item int64 [N], hidden float32 [N, H], seen float32 [N, catalog]
      -> new_hidden float32 [N, H], top_items int64 [N, K], top_scores float32 [N, K]

* an item id outside `[0, catalog)` reads the OOV embedding row `catalog` (clip/where inside the graph);
* items with `seen >= 0.5`, and the current `item` itself, get score -inf before top-K, so they are never
  recommended; a new session starts from `hidden = 0`;
* `K` (default 10) is baked into the graph.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from models.evaluation import popularity_top_k
from models.training.risk import set_determinism

RECO_INPUTS = ("item", "hidden", "seen")
RECO_OUTPUTS = ("new_hidden", "top_items", "top_scores")
OPSET = 17
POPULAR_ITEMS = 100  # length of the manifest's `popular_items` (the serving operator's cold-start list)


@dataclass(frozen=True)
class RecoTrainingConfig:
    """Hyper-parameters of the session GRU (defaults train in about a minute on one CPU thread)."""

    embedding_size: int = 64
    hidden_size: int = 64
    epochs: int = 5
    batch_size: int = 128
    lr: float = 4e-3
    weight_decay: float = 1e-6
    max_length: int = 40  # longer sessions are cut into chunks of this length for training


class SessionGRU(nn.Module):
    """Item embedding (+ OOV row) -> GRU -> linear scores over the catalogue (the full-sequence reference)."""

    def __init__(self, catalog_size: int, embedding_size: int, hidden_size: int) -> None:
        super().__init__()
        self.catalog_size = catalog_size
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(catalog_size + 1, embedding_size)  # row `catalog_size` is OOV
        self.gru = nn.GRU(embedding_size, hidden_size, batch_first=True)
        self.output = nn.Linear(hidden_size, catalog_size)

    def item_index(self, items: torch.Tensor) -> torch.Tensor:
        """Map ids outside [0, catalog) to the OOV row."""
        valid = (items >= 0) & (items < self.catalog_size)
        return torch.where(valid, items, torch.full_like(items, self.catalog_size))

    def forward(
        self, items: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """items int64 [B, T] -> (hidden states [B, T, H], scores [B, T, catalog])."""
        h0 = None if hidden is None else hidden.unsqueeze(0)
        states, _ = self.gru(self.embedding(self.item_index(items)), h0)
        return states, self.output(states)


class SessionGRUStep(nn.Module):
    """One GRU step with masking and top-K, written with explicit gates so it exports to plain ONNX ops."""

    def __init__(self, model: SessionGRU, k: int = 10) -> None:
        super().__init__()
        self.catalog_size = model.catalog_size
        self.k = k
        self.embedding = model.embedding
        self.output = model.output
        self.w_ih = cast(nn.Parameter, model.gru.weight_ih_l0)
        self.w_hh = cast(nn.Parameter, model.gru.weight_hh_l0)
        self.b_ih = cast(nn.Parameter, model.gru.bias_ih_l0)
        self.b_hh = cast(nn.Parameter, model.gru.bias_hh_l0)
        self.register_buffer("catalog_ids", torch.arange(model.catalog_size, dtype=torch.int64))
        self.register_buffer("minus_inf", torch.tensor(float("-inf")))

    catalog_ids: torch.Tensor
    minus_inf: torch.Tensor

    def forward(
        self, item: torch.Tensor, hidden: torch.Tensor, seen: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(item [N], hidden [N, H], seen [N, catalog]) -> (new_hidden, top_items, top_scores)."""
        valid = (item >= 0) & (item < self.catalog_size)
        index = torch.where(valid, item, torch.full_like(item, self.catalog_size))
        x = self.embedding(index)
        gi = x @ self.w_ih.t() + self.b_ih
        gh = hidden @ self.w_hh.t() + self.b_hh
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        new_hidden = (1.0 - z) * n + z * hidden
        scores = self.output(new_hidden)
        masked = (seen >= 0.5) | (self.catalog_ids.unsqueeze(0) == index.unsqueeze(1))
        scores = torch.where(masked, self.minus_inf, scores)
        top_scores, top_items = torch.topk(scores, self.k, dim=1)
        return new_hidden, top_items, top_scores


@dataclass
class TrainedReco:
    """A trained session model with what was learnt about its training."""

    model: SessionGRU
    seed: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def _chunks(
    sessions: Sequence[Sequence[int]], max_length: int, weights: Sequence[Sequence[float]] | None = None
) -> list[tuple[list[int], list[float]]]:
    """Sessions cut into chunks of at most `max_length` items, each with its items' weights as targets."""
    out: list[tuple[list[int], list[float]]] = []
    for i, s in enumerate(sessions):
        w = [1.0] * len(s) if weights is None else list(weights[i])
        # Overlap by one so every transition inside a long session is trained on.
        for start in range(0, max(1, len(s) - 1), max_length - 1):
            chunk = list(s[start : start + max_length])
            if len(chunk) >= 2:
                out.append((chunk, w[start : start + max_length]))
    return out


def _batch(chunks: list[tuple[list[int], list[float]]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded inputs [B, T], next-item targets [B, T] and loss weights [B, T] (the target's weight; 0 for
    padding and for targets already seen earlier in the session, which the served model never recommends)."""
    width = max(len(c) for c, _ in chunks) - 1
    inputs = np.zeros((len(chunks), width), dtype=np.int64)
    targets = np.zeros((len(chunks), width), dtype=np.int64)
    weights = np.zeros((len(chunks), width), dtype=np.float32)
    for b, (chunk, target_weights) in enumerate(chunks):
        seen: set[int] = set()
        for t in range(len(chunk) - 1):
            inputs[b, t] = chunk[t]
            targets[b, t] = chunk[t + 1]
            seen.add(chunk[t])
            weights[b, t] = 0.0 if chunk[t + 1] in seen else target_weights[t + 1]
    return torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(weights)


def train_reco(
    sessions: Sequence[Sequence[int]],
    catalog_size: int,
    *,
    seed: int,
    config: RecoTrainingConfig | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    target_weights: Sequence[Sequence[float]] | None = None,
    initial: SessionGRU | None = None,
) -> TrainedReco:
    """Train the session GRU on item sequences (ids in [0, catalog)); deterministic for `seed`.

    `target_weights` (one per item of each session, > 0): how much predicting that item as the next one
    counts in the loss (e.g. more for items the session bought; 0 leaves it out); None weighs every target the
    same. `initial`: fine-tune a copy of this model (same sizes as `config`) instead of starting from random
    weights.
    """
    config = config or RecoTrainingConfig()
    started = time.perf_counter()
    set_determinism(seed)
    model = SessionGRU(catalog_size, config.embedding_size, config.hidden_size)
    if initial is not None:
        model.load_state_dict(initial.state_dict())
    chunks = _chunks(sessions, config.max_length, target_weights)
    chunks.sort(key=lambda chunk: len(chunk[0]))  # similar lengths per batch: little padding
    batches = [_batch(chunks[i : i + config.batch_size]) for i in range(0, len(chunks), config.batch_size)]
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * len(batches)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr, total_steps=steps, pct_start=0.1
    )
    generator = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    loss_fn = nn.CrossEntropyLoss()
    weighted_loss_fn = nn.CrossEntropyLoss(reduction="none")
    for epoch in range(config.epochs):
        model.train()
        total, count = 0.0, 0.0
        for b in torch.randperm(len(batches), generator=generator).tolist():
            inputs, targets, weights = batches[b]
            optimiser.zero_grad()
            states, _ = model.gru(model.embedding(model.item_index(inputs)))
            keep = weights.reshape(-1) > 0  # score only the positions that count (no padding, no repeats)
            if not bool(keep.any()):
                continue
            scores = model.output(states.reshape(-1, model.hidden_size)[keep])
            w = weights.reshape(-1)[keep]
            if target_weights is None:
                loss = loss_fn(scores, targets.reshape(-1)[keep])
            else:
                loss = (weighted_loss_fn(scores, targets.reshape(-1)[keep]) * w).sum() / w.sum()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimiser.step()
            scheduler.step()
            total += float(loss.detach()) * float(w.sum())
            count += float(w.sum())
        stats = {"epoch": float(epoch + 1), "train_loss": total / max(count, 1.0)}
        history.append(stats)
        if progress is not None:
            progress(epoch + 1, stats)
    model.eval()
    return TrainedReco(model, seed, time.perf_counter() - started, history)


def reference_scores(model: SessionGRU, items: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Full-sequence reference for one session: (hidden states [T, H], raw scores [T, catalog])."""
    model.eval()
    with torch.no_grad():
        states, scores = model(torch.as_tensor([list(items)], dtype=torch.int64))
    return states[0].numpy(), scores[0].numpy()


def export_reco_step_onnx(model: SessionGRU, path: Path, k: int = 10) -> Path:
    """Export the step model (opset 17, TorchScript exporter) with dynamic batch N."""
    step = SessionGRUStep(model, k).eval()
    n = 2
    dummy = (
        torch.zeros(n, dtype=torch.int64),
        torch.zeros(n, model.hidden_size, dtype=torch.float32),
        torch.zeros(n, model.catalog_size, dtype=torch.float32),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            step,
            dummy,
            str(path),
            input_names=list(RECO_INPUTS),
            output_names=list(RECO_OUTPUTS),
            dynamic_axes={name: {0: "N"} for name in (*RECO_INPUTS, *RECO_OUTPUTS)},
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def popular_items(items: Sequence[int] | np.ndarray, catalog_size: int, n: int = POPULAR_ITEMS) -> list[int]:
    """The `n` most frequent in-catalogue items of a (training) click stream, best first, ties by the lower id.

    Written to the manifest as `popular_items`: the serving operator's cold-start list.
    """
    ids = np.asarray(items, dtype=np.int64).reshape(-1)
    ids = ids[(ids >= 0) & (ids < catalog_size)]
    return [int(i) for i in popularity_top_k(ids, catalog_size, k=min(n, catalog_size))]


def reco_manifest_fields(
    trained: TrainedReco, k: int = 10, *, popular: Sequence[int] | None = None, **extra: Any
) -> dict[str, Any]:
    """The manifest fields describing a trained session model (the registry adds sha256, schema, opset …).

    `popular`: the training stream's most popular items (`popular_items`), written as `popular_items`.
    """
    model = trained.model
    fields: dict[str, Any] = {
        "kind": "session_gru_step",
        "catalog_size": model.catalog_size,
        "hidden_size": model.hidden_size,
        "embedding_size": model.embedding.embedding_dim,
        "k": k,
        "oov_row": model.catalog_size,
        "initial_hidden": "zeros",
        "training_seed": trained.seed,
        "training_seconds": round(trained.seconds, 2),
        "final_train_loss": round(trained.history[-1]["train_loss"], 5) if trained.history else None,
        **extra,
    }
    if popular is not None:
        fields["popular_items"] = [int(i) for i in popular]
    return fields


def session_gru_from_onnx(path: Path, catalog_size: int, embedding_size: int, hidden_size: int) -> SessionGRU:
    """The `SessionGRU` whose step model `export_reco_step_onnx` wrote to `path` (its weights read back from
    the graph's initializers), to fine-tune a registered model; `ValueError` if the graph is not such a model."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    gather = {node.output[0] for node in graph.node if node.op_type == "Gather" and "embedding.weight" in node.input}
    w_ih = w_hh = None
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights:
            if node.input[0] == "hidden":
                w_hh = weights[node.input[1]].T
            elif node.input[0] in gather:
                w_ih = weights[node.input[1]].T
    if w_ih is None or w_hh is None or not {"embedding.weight", "output.weight", "output.bias", "b_ih",
                                             "b_hh"} <= set(weights):
        raise ValueError(f"{path} is not a session GRU step model exported by this version (weights not found)")
    model = SessionGRU(catalog_size, embedding_size, hidden_size)
    state = {"embedding.weight": weights["embedding.weight"], "gru.weight_ih_l0": w_ih, "gru.weight_hh_l0": w_hh,
             "gru.bias_ih_l0": weights["b_ih"], "gru.bias_hh_l0": weights["b_hh"],
             "output.weight": weights["output.weight"], "output.bias": weights["output.bias"]}
    model.load_state_dict({name: torch.from_numpy(np.array(value, dtype=np.float32)) for name, value in state.items()})
    return model.eval()
