"""A seeded, deterministic synthetic click stream of shopping sessions whose order carries signal.

The world
---------
* **Items** `0 … catalog_size-1` belong to latent clusters (categories). Popularity is Zipf over a random
  permutation of the catalogue (ids say nothing about popularity).
* **Cluster transitions**: from a cluster a session stays (60 %), moves to one of three related clusters
  (30 %) or jumps anywhere (10 %).
* **Item successors**: every item has three "goes-with" items (mostly in related clusters); 35 % of the time
  the next item is one of the current item's successors. This is the sequential signal a popularity or
  co-occurrence-free model cannot see.
* **Users** have two or three favourite clusters where their sessions start.
* **Funnel**: a new item is a `view` (75 %) or `click`; a click is followed by `cart` on the same item (15 %),
  a cart by `purchase` (40 %). These repeat an item already seen in the session.
* **Time**: sessions start uniformly over the stream's span (about `n / 400` minutes); gaps within a session
  are lognormal (median ~25 s, at least 1 s). A user's sessions never overlap in time (a session goes to a
  user who is not in another one then). Events of all sessions are interleaved and sorted by `ts`; the
  sessions that start near the end run a few minutes past the span (nothing is clamped to it).

Each event is `{event_id, user_id, session_id, item_id (int), action, ts}`; numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
#: The generator's version, recorded in the manifests of models trained on its streams: bump it whenever a seed
#: gives other events. 1: the original stream (a user could be in two sessions at once). 2: a user's sessions
#: never overlap.
GENERATOR_VERSION = 2
#: How many random users a session tries before it goes to one who is busy then (only when nearly all are).
_USER_TRIES = 64
ACTIONS: tuple[str, ...] = ("view", "click", "cart", "purchase")


@dataclass
class _Catalog:
    cluster_of: np.ndarray  # [catalog] cluster id of each item
    members: list[np.ndarray]  # items of each cluster
    member_p: list[np.ndarray]  # popularity within each cluster
    member_cdf: list[np.ndarray]  # cumulative member_p, for fast sampling
    related: np.ndarray  # [clusters, 3] related clusters
    successors: np.ndarray  # [catalog, 3] goes-with items


def _build_catalog(rng: np.random.Generator, catalog_size: int, n_clusters: int) -> _Catalog:
    popularity = 1.0 / np.arange(1, catalog_size + 1) ** 0.9
    popularity = popularity[rng.permutation(catalog_size)]
    cluster_of = rng.integers(0, n_clusters, size=catalog_size)
    members = [np.flatnonzero(cluster_of == c) for c in range(n_clusters)]
    for c in range(n_clusters):  # no empty cluster
        if len(members[c]) == 0:
            members[c] = np.array([int(rng.integers(catalog_size))])
    member_p = [popularity[m] / popularity[m].sum() for m in members]
    related = np.stack(
        [rng.choice(np.delete(np.arange(n_clusters), c), 3, replace=False) for c in range(n_clusters)]
    )
    successors = np.empty((catalog_size, 3), dtype=np.int64)
    for item in range(catalog_size):
        c = cluster_of[item]
        for j in range(3):
            target = c if rng.random() < 0.4 else related[c, int(rng.integers(3))]
            successors[item, j] = rng.choice(members[target], p=member_p[target])
    cdf = [np.cumsum(p) for p in member_p]
    return _Catalog(cluster_of, members, member_p, cdf, related, successors)


def _new_season(rng: np.random.Generator, cat: _Catalog) -> _Catalog:
    """`cat` with new "goes-with" items (same clusters, relations and popularity): what sells together changed."""
    successors = np.empty_like(cat.successors)
    for item in range(len(cat.cluster_of)):
        c = cat.cluster_of[item]
        for j in range(3):
            target = c if rng.random() < 0.4 else cat.related[c, int(rng.integers(3))]
            successors[item, j] = rng.choice(cat.members[target], p=cat.member_p[target])
    return _Catalog(cat.cluster_of, cat.members, cat.member_p, cat.member_cdf, cat.related, successors)


def _pick(rng: np.random.Generator, cat: _Catalog, cluster: int) -> int:
    """A popularity-weighted item of `cluster`."""
    cdf = cat.member_cdf[cluster]
    return int(cat.members[cluster][min(len(cdf) - 1, int(np.searchsorted(cdf, rng.random() * cdf[-1])))])


def _session(
    rng: np.random.Generator, cat: _Catalog, favourites: np.ndarray, length: int, n_clusters: int
) -> list[tuple[int, str]]:
    """(item, action) pairs of one session of `length` events."""
    events: list[tuple[int, str]] = []
    cluster = int(rng.choice(favourites))
    item = _pick(rng, cat, cluster)
    action = "view"
    while len(events) < length:
        events.append((item, action))
        if action == "click" and rng.random() < 0.15:
            action = "cart"
            continue
        if action == "cart" and rng.random() < 0.4:
            action = "purchase"
            continue
        u = rng.random()
        if u < 0.35:
            item = int(cat.successors[item, int(rng.integers(3))])
            cluster = int(cat.cluster_of[item])
        else:
            v = rng.random()
            if v < 0.6:
                pass
            elif v < 0.9:
                cluster = int(cat.related[cluster, int(rng.integers(3))])
            else:
                cluster = int(rng.integers(n_clusters))
            item = _pick(rng, cat, cluster)
        action = "view" if rng.random() < 0.75 else "click"
    return events


def _free_user(rng: np.random.Generator, busy: list[list[tuple[int, int]]], start: int, end: int) -> int:
    """A random user with no session overlapping [start, end] (the last one tried if none is found)."""
    user = 0
    for _ in range(_USER_TRIES):
        user = int(rng.integers(len(busy)))
        if all(end < b_start or start > b_end for b_start, b_end in busy[user]):
            break
    return user


def generate_clicks(
    n: int,
    seed: int,
    *,
    catalog_size: int = 5000,
    n_clusters: int = 50,
    users: int | None = None,
    mean_session_length: float = 8.0,
    start_ms: int = DEFAULT_START_MS,
    catalog_seed: int = 0,
    new_season_from: float | None = None,
) -> list[dict[str, object]]:
    """`n` click events sorted by `ts`, deterministic for (`seed`, `catalog_seed`); see the module doc.

    The drift scenario: with `new_season_from` (a fraction of the span), sessions that start from then on follow
    new "goes-with" items (drawn once from `catalog_seed`; clusters and popularity stay): the sequential signal
    a model learnt before that time no longer holds. The stream before it is the default one's.

    The catalogue (clusters, popularity, successors) comes from `catalog_seed` alone, so streams of different
    `seed`s (training vs holdout) share one catalogue, as a real shop's traffic would; users and sessions
    come from `seed`. `users` defaults to `max(20, n // 40)`; session lengths are >= 2 with mean
    `mean_session_length`.
    """
    if n < 1:
        raise ValueError(f"generate_clicks: n must be >= 1, got {n}")
    if catalog_size < 10 or n_clusters < 4:
        raise ValueError(
            f"generate_clicks: need catalog_size >= 10 and n_clusters >= 4, got {catalog_size}, {n_clusters}"
        )
    cat = _build_catalog(np.random.default_rng(catalog_seed), catalog_size, n_clusters)
    season, season_from = cat, None
    if new_season_from is not None:
        if not 0.0 <= new_season_from < 1.0:
            raise ValueError(f"generate_clicks: new_season_from must be in [0, 1), got {new_season_from}")
        season = _new_season(np.random.default_rng([catalog_seed, 1]), cat)
    rng = np.random.default_rng(seed)
    n_users = users if users is not None else max(20, n // 40)
    favourites = [rng.choice(n_clusters, size=int(rng.integers(2, 4)), replace=False) for _ in range(n_users)]
    span_ms = max(3_600_000, int(n / 400 * 60_000))
    if new_season_from is not None:
        season_from = int(span_ms * new_season_from)
    rows: list[tuple[int, int, int, int, int, str]] = []  # (ts, seq, user, session, item, action)
    busy: list[list[tuple[int, int]]] = [[] for _ in range(n_users)]  # each user's sessions (first, last ts)
    produced = 0
    session = 0
    while produced < n:
        length = min(n - produced, 2 + int(rng.geometric(1.0 / max(1.0, mean_session_length - 1.0))) - 1)
        t = int(rng.integers(0, span_ms))
        gaps = np.maximum(1000, rng.lognormal(np.log(25_000), 0.8, size=length - 1).astype(np.int64))
        times = (t + np.concatenate([[0], np.cumsum(gaps)])).tolist()
        user = _free_user(rng, busy, times[0], times[-1])
        busy[user].append((times[0], times[-1]))
        now = season if season_from is not None and t >= season_from else cat
        for (item, action), ts in zip(_session(rng, now, favourites[user], length, n_clusters), times, strict=True):
            rows.append((ts, len(rows), user, session, item, action))
        produced += length
        session += 1
    rows.sort(key=lambda r: (r[0], r[1]))
    return [
        {
            "event_id": f"c-{seed}-{i:08d}",
            "user_id": f"u-{user:06d}",
            "session_id": f"s-{seed}-{sess:07d}",
            "item_id": item,
            "action": action,
            "ts": start_ms + ts,
        }
        for i, (ts, _, user, sess, item, action) in enumerate(rows)
    ]


def sessions_of(events: list[dict[str, object]]) -> dict[str, list[int]]:
    """The item sequence of every session, in event order (sessions in order of their first event)."""
    out: dict[str, list[int]] = {}
    for e in events:
        out.setdefault(str(e["session_id"]), []).append(int(e["item_id"]))  # type: ignore[call-overload]
    return out
