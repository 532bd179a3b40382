"""A seeded, deterministic synthetic card-transaction stream with labelled fraud patterns.

The world
---------
* **Merchants** belong to a country; within a country their popularity is Zipf-like.
* **Accounts** have a home country (the billing `currency` is the home currency on every transaction and
  `amount` is in that currency), one to three devices (one primary), a set of favourite home merchants,
  a lognormal amount scale (median `exp(mu)` between ~$3 and ~$250, spread `sigma`) and an activity rate.
* **Arrivals and departures**: `ARRIVING_SHARE` of the accounts open during the stream (uniformly between 5 %
  and 85 % of the span) and `LEAVING_SHARE` go quiet during it (between 15 % and 95 %); an account is active for
  at least `MIN_ACTIVE_SHARE` of the span, and every event of it (regular, trips, sprees, fraud) falls inside
  its active interval. The world is thus in a steady state: accounts keep opening and closing, so the mix of
  account ages a job sees does not only grow older.
* **Time**: the stream covers `span = n / (active account-days * tx_per_day)` days from `start_ms` (every
  account makes about `tx_per_day` purchases a day while active, scaled by its activity rate); regular
  activity follows a day/night profile and is drawn inside the span (a partial last day gets its share of the
  profile, nothing is clamped to the span's end); the output is sorted by `ts` (ties keep generation order).

Legitimate look-alikes (label 0, pattern "legit") that make simple rules misfire
---------------------------------------------------------------------------------
* **Travel**: trips of 2-10 days abroad; merchants are local (new), the country is new, amounts are a bit
  higher; on ~15 % of trips the traveller also uses a new device (new country + new device, normal amounts).
* **New phone**: the primary device is replaced at a random time (new device, home country).
* **Big purchases**: ~1.5 % of regular purchases are 3-12x the usual amount at a new home merchant.
* **Shopping sprees**: 4-9 purchases within 1-3 hours, normal amounts, favourite and new merchants.
* Low-amount accounts (coffee, transit) and very active accounts (high velocity every day).

Fraud patterns (label 1)
------------------------
* `card_testing`: 4-12 tiny amounts (0.5-5) at distinct, mostly foreign/online merchants 5-90 s apart,
  usually from a new device; sometimes followed by one cash-out purchase (4-15x the usual amount).
* `account_takeover`: 1-4 purchases 2-30 min apart from a new device (90 %), usually in a new country (70 %),
  at 3-15x the usual amount, at new merchants.
* `velocity_spike`: 6-15 purchases at 0.5-2.5x the usual amount within 30-90 min, mostly at new merchants.
* `merchant_anomaly`: 1-2 purchases at 5-25x the usual amount at a new home merchant, from a known device.

Fraud starts after the first 10 % of the span and at least 10 % of the span after the account opened (it has
some history), on an account still active for the episode; fraud events make up
`fraud_rate` of the stream (within one episode's size). Each dict is a valid `Transaction` JSON object
plus `label` (0/1) and `pattern`; numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
DEFAULT_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
#: The generator's version, recorded in the manifests of models trained on its streams: bump it whenever a seed
#: gives other events. 1: the original world (whole days drawn past the span clamped to its last millisecond,
#: accounts active throughout). 2: times drawn inside the span, account arrivals and departures.
GENERATOR_VERSION = 2
#: Shares of accounts that open during the stream and that go quiet during it (module doc).
ARRIVING_SHARE = 0.25
LEAVING_SHARE = 0.25
MIN_ACTIVE_SHARE = 0.15
#: An episode needs this share of the span of history on its account, and starts after it in the stream.
HISTORY_SHARE = 0.1

PATTERNS: tuple[str, ...] = (
    "legit",
    "card_testing",
    "account_takeover",
    "velocity_spike",
    "merchant_anomaly",
    "micro_drain",
)
FRAUD_PATTERNS: tuple[str, ...] = PATTERNS[1:5]
#: The pattern of the drift scenario (`emerging_from`): absent from the default stream the models learn from.
EMERGING_PATTERN = "micro_drain"
# Episode mix, chosen so that each pattern contributes a similar share of fraud *events*.
_EPISODE_MIX = np.array([0.15, 0.35, 0.12, 0.38])

COUNTRIES: tuple[tuple[str, str, float], ...] = (
    ("US", "USD", 0.30),
    ("GB", "GBP", 0.10),
    ("DE", "EUR", 0.09),
    ("FR", "EUR", 0.07),
    ("ES", "EUR", 0.05),
    ("IT", "EUR", 0.05),
    ("NL", "EUR", 0.03),
    ("CA", "CAD", 0.05),
    ("MX", "MXN", 0.04),
    ("BR", "BRL", 0.04),
    ("JP", "JPY", 0.04),
    ("IN", "INR", 0.04),
    ("AU", "AUD", 0.03),
    ("SG", "SGD", 0.02),
    ("PL", "PLN", 0.03),
    ("SE", "SEK", 0.02),
)
# Relative activity per hour of day (UTC, for simplicity): quiet nights, busy afternoons/evenings.
_HOURLY = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 4, 4.5, 5, 5, 4.5, 4.5, 5, 5.5, 6, 6, 5, 4, 3, 2]
)
_HOURLY = _HOURLY / _HOURLY.sum()


@dataclass
class _Account:
    home: int
    mu: float
    sigma: float
    rate: float
    devices: list[str]
    favourites: np.ndarray
    open_ms: int = 0  # active over [open_ms, close_ms) of the span
    close_ms: int = 0


@dataclass
class _World:
    rng: np.random.Generator
    country_weights: np.ndarray
    merchants_by_country: list[np.ndarray]
    merchant_popularity: list[np.ndarray]
    accounts: list[_Account]
    span_ms: int


# A generated event before sorting: (ts, seq, account, amount, merchant, country, device, label, pattern).
_Row = tuple[int, int, int, float, int, int, str, int, int]


def _device_id(rng: np.random.Generator) -> str:
    return f"dev-{int(rng.integers(0, 2**48)):012x}"


def _active_shares(rng: np.random.Generator, n_accounts: int) -> np.ndarray:
    """[n_accounts, 2]: each account's (open, close) as shares of the span (module doc)."""
    shares = np.zeros((n_accounts, 2))
    shares[:, 1] = 1.0
    arriving = rng.random(n_accounts) < ARRIVING_SHARE
    leaving = rng.random(n_accounts) < LEAVING_SHARE
    shares[arriving, 0] = rng.uniform(0.05, 0.85, size=int(arriving.sum()))
    shares[leaving, 1] = rng.uniform(0.15, 0.95, size=int(leaving.sum()))
    short = shares[:, 1] - shares[:, 0] < MIN_ACTIVE_SHARE  # both: keep the later close, open earlier
    shares[short, 0] = np.maximum(0.0, shares[short, 1] - MIN_ACTIVE_SHARE)
    return shares


def _build_world(rng: np.random.Generator, n_accounts: int, n: int, tx_per_day: float) -> _World:
    weights = np.array([c[2] for c in COUNTRIES])
    weights = weights / weights.sum()
    n_merchants = max(400, n_accounts * 4)
    per_country = np.maximum(20, np.round(weights * n_merchants)).astype(int)
    offsets = np.concatenate([[0], np.cumsum(per_country)])
    by_country = [np.arange(offsets[i], offsets[i + 1]) for i in range(len(COUNTRIES))]
    popularity = []
    for ids in by_country:
        p = 1.0 / np.arange(1, len(ids) + 1) ** 1.1
        popularity.append(p / p.sum())
    active = _active_shares(rng, n_accounts)
    span_ms = max(DAY_MS, int(n / (float(np.sum(active[:, 1] - active[:, 0])) * tx_per_day) * DAY_MS))
    accounts = []
    for a in range(n_accounts):
        home = int(rng.choice(len(COUNTRIES), p=weights))
        n_dev = 1 + int(rng.binomial(2, 0.3))
        n_fav = int(rng.integers(4, 16))
        fav = rng.choice(
            by_country[home], size=min(n_fav, len(by_country[home])), replace=False, p=popularity[home]
        )
        accounts.append(
            _Account(
                home=home,
                mu=float(np.clip(rng.normal(3.3, 0.8), 1.2, 5.5)),
                sigma=float(rng.uniform(0.35, 0.9)),
                rate=float(rng.lognormal(0.0, 0.7)),
                devices=[_device_id(rng) for _ in range(n_dev)],
                favourites=fav,
                open_ms=int(active[a, 0] * span_ms),
                close_ms=int(active[a, 1] * span_ms),
            )
        )
    return _World(rng, weights, by_country, popularity, accounts, span_ms)


def _merchant(world: _World, country: int) -> int:
    ids = world.merchants_by_country[country]
    return int(world.rng.choice(ids, p=world.merchant_popularity[country]))


def _tail_merchant(world: _World, country: int) -> int:
    """An unpopular merchant (card testers favour small online shops)."""
    ids = world.merchants_by_country[country]
    return int(ids[world.rng.integers(len(ids) // 3, len(ids))])


def _foreign(world: _World, home: int) -> int:
    p = world.country_weights.copy()
    p[home] = 0.0
    return int(world.rng.choice(len(p), p=p / p.sum()))


def _amount(world: _World, acct: _Account, scale: float = 1.0) -> float:
    return max(0.01, round(float(world.rng.lognormal(acct.mu, acct.sigma)) * scale, 2))


def _regular_times(world: _World, acct: _Account, count: int) -> np.ndarray:
    """`count` sorted times in the account's active interval, following the daily profile: a day among those
    the interval touches, an hour by `_HOURLY`, a millisecond within it; a time outside the interval is drawn
    again (never clamped), so a partial day gets its share of the profile and no instant gathers events."""
    rng = world.rng
    days = -(-acct.close_ms // DAY_MS) - acct.open_ms // DAY_MS
    kept: list[np.ndarray] = []
    missing = count
    while missing > 0:
        size = missing + missing // 2 + 8
        ts = ((acct.open_ms // DAY_MS + rng.integers(0, days, size=size)) * DAY_MS
              + rng.choice(24, size=size, p=_HOURLY) * HOUR_MS + rng.integers(0, HOUR_MS, size=size))
        ts = ts[(ts >= acct.open_ms) & (ts < acct.close_ms)][:missing]
        kept.append(ts)
        missing -= len(ts)
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)


def _within(world: _World, acct: _Account, lo: int, hi: int) -> int:
    """A uniform time in [lo, hi) clipped to the account's active interval (lo if it is empty)."""
    lo, hi = max(lo, acct.open_ms), min(hi, acct.close_ms)
    return int(world.rng.integers(lo, hi)) if hi > lo else lo


def _episode_account(world: _World, t: int, duration: int) -> int:
    """A random account active over [t, t + duration) with at least `HISTORY_SHARE` of the span behind it (an
    account active throughout qualifies unless the episode runs past the span: then one active at `t`)."""
    history = int(world.span_ms * HISTORY_SHARE)
    opens = np.array([acct.open_ms for acct in world.accounts])
    closes = np.array([acct.close_ms for acct in world.accounts])
    fits = np.flatnonzero((opens + history <= t) & (t + duration <= closes))
    if len(fits) == 0:
        fits = np.flatnonzero((opens <= t) & (t < closes))
    if len(fits) == 0:
        fits = np.arange(len(world.accounts))
    return int(fits[world.rng.integers(len(fits))])


def _legit_account_rows(world: _World, a: int, count: int, seq: list[int]) -> list[_Row]:
    """Regular purchases of account `a`, with trips, a possible new phone and big purchases folded in."""
    rng = world.rng
    acct = world.accounts[a]
    times = _regular_times(world, acct, count)
    trips: list[tuple[int, int, int, str | None]] = []  # (start, end, country, trip device)
    for _ in range(int(rng.binomial(2, 0.2))):
        start = _within(world, acct, 0, world.span_ms)
        end = start + int(rng.integers(2, 11)) * DAY_MS
        trip_device = _device_id(rng) if rng.random() < 0.15 else None
        trips.append((start, end, _foreign(world, acct.home), trip_device))
    phone_change = _within(world, acct, 0, world.span_ms) if rng.random() < 0.25 else None
    new_phone = _device_id(rng)
    rows: list[_Row] = []
    for t in times.tolist():
        primary = new_phone if phone_change is not None and t >= phone_change else acct.devices[0]
        device = (
            primary
            if rng.random() < 0.85 or len(acct.devices) == 1
            else acct.devices[int(rng.integers(1, len(acct.devices)))]
        )
        trip = next((tr for tr in trips if tr[0] <= t < tr[1]), None)
        if trip is not None:
            country = trip[2]
            merchant = _merchant(world, country)
            amount = _amount(world, acct, float(rng.uniform(1.0, 2.0)))
            if trip[3] is not None and rng.random() < 0.6:
                device = trip[3]
        else:
            country = acct.home
            if rng.random() < 0.015:  # a big purchase at a new merchant
                merchant = _merchant(world, country)
                amount = _amount(world, acct, float(rng.uniform(3.0, 12.0)))
            else:
                merchant = (
                    int(rng.choice(acct.favourites)) if rng.random() < 0.85 else _merchant(world, country)
                )
                amount = _amount(world, acct)
        seq[0] += 1
        rows.append((t, seq[0], a, amount, merchant, country, device, 0, 0))
    return rows


def _spree_rows(world: _World, a: int, seq: list[int]) -> list[_Row]:
    rng = world.rng
    acct = world.accounts[a]
    k = int(rng.integers(4, 10))
    t0 = _within(world, acct, 0, acct.close_ms - 3 * HOUR_MS)
    times = np.sort(t0 + rng.integers(0, int(rng.integers(1, 4)) * HOUR_MS, size=k))
    rows: list[_Row] = []
    for t in times.tolist():
        merchant = int(rng.choice(acct.favourites)) if rng.random() < 0.5 else _merchant(world, acct.home)
        seq[0] += 1
        rows.append((t, seq[0], a, _amount(world, acct), merchant, acct.home, acct.devices[0], 0, 0))
    return rows


def _fraud_rows(world: _World, pattern: int, seq: list[int]) -> list[_Row]:
    """One fraud episode of `pattern` (index into PATTERNS), from a time after the first `HISTORY_SHARE` of the
    span, on an account active through it (`_episode_account`); an episode lasts under 3 hours."""
    rng = world.rng
    t = int(rng.integers(int(world.span_ms * HISTORY_SHARE), world.span_ms - 3 * HOUR_MS))
    a = _episode_account(world, t, 3 * HOUR_MS)
    acct = world.accounts[a]
    typical = float(np.exp(acct.mu))
    out: list[tuple[int, float, int, int, str]] = []  # (ts, amount, merchant, country, device)
    name = PATTERNS[pattern]
    if name == "card_testing":
        device = _device_id(rng) if rng.random() < 0.8 else acct.devices[0]
        for _ in range(int(rng.integers(4, 13))):
            country = _foreign(world, acct.home) if rng.random() < 0.5 else acct.home
            amount = round(
                float(rng.choice([1.0, 0.5, 2.0])) if rng.random() < 0.4 else float(rng.uniform(0.5, 5.0)), 2
            )
            out.append((t, amount, _tail_merchant(world, country), country, device))
            t += int(rng.integers(5_000, 90_000))
        if rng.random() < 0.4:
            t += int(rng.integers(1, 30)) * MINUTE_MS
            country = out[-1][3]
            out.append(
                (t, round(typical * float(rng.uniform(4, 15)), 2), _merchant(world, country), country, device)
            )
    elif name == "account_takeover":
        device = _device_id(rng) if rng.random() < 0.9 else acct.devices[0]
        country = _foreign(world, acct.home) if rng.random() < 0.7 else acct.home
        for _ in range(int(rng.integers(1, 5))):
            out.append(
                (t, round(typical * float(rng.uniform(3, 15)), 2), _merchant(world, country), country, device)
            )
            t += int(rng.integers(2, 31)) * MINUTE_MS
    elif name == "velocity_spike":
        device = acct.devices[0] if rng.random() < 0.5 else _device_id(rng)
        k = int(rng.integers(6, 16))
        window = int(rng.integers(30, 91)) * MINUTE_MS
        for dt in np.sort(rng.integers(0, window, size=k)).tolist():
            merchant = _merchant(world, acct.home) if rng.random() < 0.7 else int(rng.choice(acct.favourites))
            out.append(
                (t + dt, _amount(world, acct, float(rng.uniform(0.5, 2.5))), merchant, acct.home, device)
            )
    else:  # merchant_anomaly
        for _ in range(int(rng.integers(1, 3))):
            out.append(
                (
                    t,
                    round(typical * float(rng.uniform(5, 25)), 2),
                    _tail_merchant(world, acct.home),
                    acct.home,
                    str(rng.choice(acct.devices)),
                )
            )
            t += int(rng.integers(1, 120)) * MINUTE_MS
    rows: list[_Row] = []
    for ts, amount, merchant, country, device in out:
        seq[0] += 1
        rows.append((ts, seq[0], a, max(0.01, amount), merchant, country, device, 1, pattern))
    return rows


def _emerging_rows(world: _World, seq: list[int], t_from: int) -> list[_Row]:
    """One `micro_drain` episode starting after `t_from`, on an account active through it: 3-8 purchases of
    2-8 % of the usual amount at the account's favourite merchants, from its primary device, at home, 20-90 min
    apart - nothing new about the place, the device or the pace, only amounts far below the account's own."""
    rng = world.rng
    t = int(rng.integers(t_from, max(t_from + 1, world.span_ms - 12 * HOUR_MS)))
    a = _episode_account(world, t, 12 * HOUR_MS)
    acct = world.accounts[a]
    typical = float(np.exp(acct.mu))
    rows: list[_Row] = []
    for _ in range(int(rng.integers(3, 9))):
        seq[0] += 1
        amount = max(0.01, round(typical * float(rng.uniform(0.02, 0.08)), 2))
        merchant = int(rng.choice(acct.favourites))
        rows.append((t, seq[0], a, amount, merchant, acct.home, acct.devices[0], 1, PATTERNS.index("micro_drain")))
        t += int(rng.integers(20, 91)) * MINUTE_MS
    return rows


def generate_transactions(
    n: int,
    seed: int,
    *,
    start_ms: int = DEFAULT_START_MS,
    accounts: int | None = None,
    fraud_rate: float = 0.01,
    tx_per_day: float = 3.0,
    emerging_from: float | None = None,
    emerging_rate: float = 0.01,
) -> list[dict[str, object]]:
    """`n` transactions sorted by `ts`, deterministic for `seed` (the module doc describes the world).

    `accounts` defaults to `max(20, n // 60)` (about 60 purchases each); `fraud_rate` is the share of fraud
    events (0 disables fraud). Each dict has the `Transaction` fields plus `label` (0/1) and `pattern`.
    The drift scenario: with `emerging_from` (a fraction of the span), a new fraud pattern (`micro_drain`,
    `_emerging_rows`) appears after that point in time, `emerging_rate` of the stream's events, on top of the
    usual patterns; the stream before it is the same world with the usual patterns only.
    """
    if n < 1:
        raise ValueError(f"generate_transactions: n must be >= 1, got {n}")
    if not 0.0 <= fraud_rate < 0.5:
        raise ValueError(f"generate_transactions: fraud_rate must be in [0, 0.5), got {fraud_rate}")
    rng = np.random.default_rng(seed)
    n_accounts = accounts if accounts is not None else max(20, n // 60)
    world = _build_world(rng, n_accounts, n, tx_per_day)
    seq = [0]
    rates = np.array([acct.rate * (acct.close_ms - acct.open_ms) for acct in world.accounts], dtype=float)
    rates = rates / rates.sum()
    rows: list[_Row] = []
    target_fraud = round(n * fraud_rate)
    n_fraud = 0
    while n_fraud < target_fraud:
        episode = _fraud_rows(world, 1 + int(rng.choice(4, p=_EPISODE_MIX)), seq)
        episode = episode[: target_fraud - n_fraud]
        rows.extend(episode)
        n_fraud += len(episode)
    if emerging_from is not None:
        if not 0.0 <= emerging_from < 1.0:
            raise ValueError(f"generate_transactions: emerging_from must be in [0, 1), got {emerging_from}")
        target_emerging = n_fraud + round(n * emerging_rate)
        while n_fraud < target_emerging:
            episode = _emerging_rows(world, seq, int(world.span_ms * emerging_from))
            episode = episode[: target_emerging - n_fraud]
            rows.extend(episode)
            n_fraud += len(episode)
    budget = n - n_fraud
    for a in np.flatnonzero(rng.random(n_accounts) < 0.3).tolist():
        if budget < n // 2:
            break
        spree = _spree_rows(world, a, seq)[:budget]  # a no-op unless n is tiny
        rows.extend(spree)
        budget -= len(spree)
    counts = rng.multinomial(budget, rates)
    for a in range(n_accounts):
        rows.extend(_legit_account_rows(world, a, int(counts[a]), seq))
    rows.sort(key=lambda r: (r[0], r[1]))
    out: list[dict[str, object]] = []
    for i, (ts, _, a, amount, merchant, country, device, label, pattern) in enumerate(rows):
        out.append(
            {
                "event_id": f"tx-{seed}-{i:08d}",
                "account_id": f"acct-{a:06d}",
                "amount": amount,
                "currency": COUNTRIES[world.accounts[a].home][1],
                "merchant_id": f"mch-{merchant:05d}",
                "country": COUNTRIES[country][0],
                "device_id": device,
                "ts": start_ms + ts,
                "label": label,
                "pattern": PATTERNS[pattern],
            }
        )
    return out
