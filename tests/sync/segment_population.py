"""A generated population for segment tests (seeded): members, profiles, attributes, consents and the
statistics tables, written with plain SQL, and a pure-Python oracle of every condition over the same rows."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from hq.db.engine import Db, Tx
from hq.segments import SHARE_SCALE, window
from hq.stats import CATEGORY_ROW, DAY_ROW_COLUMNS, STORE_ROW

AS_OF = date(2026, 3, 1)
STORES = ["S1", "S2", "S3", "S'; DROP TABLE members; --"]
CATEGORIES = ["coffee", "bakery", "wine", "toys"]
TIERS = ["basic", "silver", "gold", "gold'; DROP TABLE members; --"]
AGE_BANDS = ["18-24", "25-34", "35-44", "45+"]
BIRTHDAYS = ["1990-02-29", "1985-12-31", "2000-01-01", "1970-03-01", "1999-02-28", "1988-03-05", None]


@dataclass
class Population:
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    birth_md: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    consents: list[tuple[str, str, str | None]] = field(default_factory=list)
    days: list[tuple[str, str, str, int, int]] = field(default_factory=list)  # member, day, store, visits, spend
    category_days: list[tuple[str, str, str, int, int]] = field(
        default_factory=list
    )  # member, day, category, spend, qty
    erased: set[str] = field(default_factory=set)


def put_daily_rows(tx: Tx, days: Sequence[tuple[Any, ...]], categories: Sequence[tuple[Any, ...]]) -> None:
    """Daily statistics rows written directly, in the shapes they read as: ``member_days`` (member, day,
    store, visits, spend) and ``member_category_days`` (member, day, category, spend, quantity)."""
    stores = [(m, d, STORE_ROW, s, v, n, 0) for m, d, s, v, n in days]
    bought = [(m, d, CATEGORY_ROW, c, 0, n, q) for m, d, c, n, q in categories]
    tx.insert_rows("member_day_rows", DAY_ROW_COLUMNS, stores + bought)


def generate(seed: int = 7, size: int = 240) -> Population:
    rnd = random.Random(seed)
    pop = Population()
    for n in range(size):
        mid = f"M-{n:04d}"
        deleted = 1 if rnd.random() < 0.04 else 0
        status = "blocked" if rnd.random() < 0.05 else "active"
        pop.members[mid] = {"tier": rnd.choice(TIERS), "status": status, "deleted": deleted}
        if rnd.random() < 0.04:
            pop.erased.add(mid)
        birthday = rnd.choice(BIRTHDAYS)
        if birthday is not None:
            pop.birth_md[mid] = birthday[5:]
        if rnd.random() < 0.7:
            pop.attributes[(mid, "preferred_store")] = rnd.choice(STORES)
        if rnd.random() < 0.7:
            pop.attributes[(mid, "age_band")] = rnd.choice(AGE_BANDS)
        if rnd.random() < 0.6:
            pop.consents.append((mid, "marketing", None if rnd.random() < 0.8 else "2026-01-01T00:00:00Z"))
        if rnd.random() < 0.3:
            pop.consents.append((mid, "terms", None))
        activity = rnd.random()
        if activity < 0.15:
            continue  # never visited
        last = rnd.randint(0, 500) if activity < 0.4 else rnd.randint(0, 60)
        for _ in range(rnd.randint(1, 12)):
            ago = last + rnd.randint(0, 300)
            day = (AS_OF - timedelta(days=ago)).isoformat()
            store = rnd.choice(STORES)
            if any(d[0] == mid and d[1] == day and d[2] == store for d in pop.days):
                continue
            visits = rnd.choice([1, 1, 1, 2, 0])
            spend = rnd.randint(-500, 20_000) if visits else rnd.randint(-3000, 0)
            pop.days.append((mid, day, store, visits, spend))
            for category in rnd.sample(CATEGORIES, rnd.randint(1, 3)):
                if not any(c[0] == mid and c[1] == day and c[2] == category for c in pop.category_days):
                    pop.category_days.append((mid, day, category, rnd.randint(0, 8000), rnd.randint(1, 5)))
        if rnd.random() < 0.2:  # a day after the reference day: never counted
            pop.days.append((mid, (AS_OF + timedelta(days=3)).isoformat(), "S1", 5, 90_000))
            pop.category_days.append((mid, (AS_OF + timedelta(days=3)).isoformat(), "wine", 90_000, 1))
    return pop


def load(db: Db, pop: Population) -> None:
    now = "2026-01-01T00:00:00.000Z"
    with db.write() as tx:
        tx.many(
            "INSERT INTO members (member_id, display_name, tier, points, status, version, deleted) "
            "VALUES (?, ?, ?, 0, ?, 1, ?)",
            [(mid, "x", m["tier"], m["status"], m["deleted"]) for mid, m in pop.members.items()],
        )
        tx.many(
            "INSERT INTO member_profiles (member_id, birthday, birth_md, updated_at) VALUES (?, ?, ?, ?)",
            [(mid, f"1990-{md}", md, now) for mid, md in pop.birth_md.items()],
        )
        tx.many(
            "INSERT INTO member_attributes (member_id, name, value) VALUES (?, ?, ?)",
            [(mid, name, value) for (mid, name), value in pop.attributes.items()],
        )
        tx.many(
            "INSERT INTO consents (member_id, wording_version, channel, given_at, withdrawn_at) VALUES (?, ?, ?, ?, ?)",
            [(mid, "v1", channel, now, withdrawn) for mid, channel, withdrawn in pop.consents],
        )
        put_daily_rows(tx, pop.days, pop.category_days)
        totals: dict[str, list[Any]] = {}
        for mid, day, _store, visits, spend in pop.days:
            t = totals.setdefault(mid, [day, day, 0, 0])
            t[0], t[1], t[2], t[3] = min(t[0], day), max(t[1], day), t[2] + visits, t[3] + spend
        tx.many(
            "INSERT INTO member_totals (member_id, first_visit, last_visit, visits, spend, coupons_redeemed, "
            "updated_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
            [(mid, *t, now) for mid, t in totals.items()],
        )
        tx.many(
            "INSERT INTO erasures (member_id, erased_at, erased_by) VALUES (?, ?, ?)",
            [(mid, now, "test") for mid in pop.erased],
        )


# -- the oracle: each condition over the same rows, simply -----------------------------------------


def eligible(pop: Population) -> set[str]:
    return {
        mid
        for mid, m in pop.members.items()
        if m["deleted"] == 0 and m["status"] != "blocked" and mid not in pop.erased
    }


def _in_window(day: str, as_of: date, days: int) -> bool:
    first, last = window(as_of, days)
    return first <= day <= last


def _sums(pop: Population, as_of: date, days: int, column: int) -> dict[str, int]:
    found: dict[str, int] = defaultdict(int)
    for row in pop.days:
        if _in_window(row[1], as_of, days):
            found[row[0]] += row[column]
    return found


def _ntile(ordered: list[str]) -> dict[str, int]:
    n = len(ordered)
    small, extra = divmod(n, 5)
    scores, at = {}, 0
    for bucket in range(5):
        size = small + (1 if bucket < extra else 0)
        for mid in ordered[at : at + size]:
            scores[mid] = bucket + 1
        at += size
    return scores


def rfm_scores(pop: Population, as_of: date, days: int) -> dict[str, tuple[int, int, int]]:
    ok = eligible(pop)
    visits, spend = _sums(pop, as_of, days, 3), _sums(pop, as_of, days, 4)
    last: dict[str, str] = {}
    for mid, day, _, v, _ in pop.days:
        if v > 0 and _in_window(day, as_of, days):
            last[mid] = max(last.get(mid, ""), day)
    scored = [mid for mid in ok if visits.get(mid, 0) > 0]
    r = _ntile(sorted(scored, key=lambda m: (last[m], m)))
    f = _ntile(sorted(scored, key=lambda m: (visits[m], m)))
    mo = _ntile(sorted(scored, key=lambda m: (spend[m], m)))
    return {m: (r[m], f[m], mo[m]) for m in scored}


def next_birthday(md: str, as_of: date) -> date:
    """The first birthday on or after ``as_of``: 29 February is kept on 28 February in other years."""
    month, day = int(md[:2]), int(md[3:])
    for year in (as_of.year, as_of.year + 1):
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        found = date(year, 2, 28) if (month, day) == (2, 29) and not leap else date(year, month, day)
        if found >= as_of:
            return found
    raise AssertionError(md)


def oracle(pop: Population, cond: dict[str, Any], as_of: date) -> set[str]:
    """The members of a condition (as JSON), among the eligible ones."""
    return _holds(pop, cond, as_of) & eligible(pop)


def _holds(pop: Population, cond: dict[str, Any], as_of: date) -> set[str]:
    everyone = set(pop.members)
    kind = cond["kind"]
    if kind == "all_of":
        found = set(everyone)
        for child in cond["conditions"]:
            found &= _holds(pop, child, as_of)
        return found
    if kind == "any_of":
        return set().union(*(_holds(pop, child, as_of) for child in cond["conditions"]))
    if kind == "not":
        return everyone - _holds(pop, cond["condition"], as_of)
    if kind == "rfm":
        scores = rfm_scores(pop, as_of, cond.get("days", 365))
        wanted = [cond.get("recency"), cond.get("frequency"), cond.get("monetary")]
        return {m for m, s in scores.items() if all(w is None or w[0] <= s[i] <= w[1] for i, w in enumerate(wanted))}
    if kind == "lapsed":
        first, last = window(as_of, cond["days"])
        before = {r[0] for r in pop.days if r[3] > 0 and r[1] < first}
        recent = {r[0] for r in pop.days if r[3] > 0 and first <= r[1] <= last}
        return before - recent
    if kind in ("visits", "spend"):
        sums = _sums(pop, as_of, cond["days"], 3 if kind == "visits" else 4)
        low, high = cond.get("min"), cond.get("max")
        return {
            m for m in everyone if (low is None or sums.get(m, 0) >= low) and (high is None or sums.get(m, 0) <= high)
        }
    if kind == "category_affinity":
        total: dict[str, int] = defaultdict(int)
        mine: dict[str, int] = defaultdict(int)
        for mid, day, category, spend, _ in pop.category_days:
            if _in_window(day, as_of, cond.get("days", 365)):
                total[mid] += spend
                if category == cond["category"]:
                    mine[mid] += spend
        found = set()
        for mid in total:
            share, least = cond.get("min_share"), cond.get("min_spend")
            if share is not None and not (
                total[mid] > 0 and mine[mid] * SHARE_SCALE >= round(share * SHARE_SCALE) * total[mid]
            ):
                continue
            if least is not None and mine[mid] < least:
                continue
            found.add(mid)
        return found
    if kind == "tier":
        return {m for m, row in pop.members.items() if row["tier"] in cond["tiers"]}
    if kind == "store":
        if cond.get("via") == "preferred":
            return {m for (m, name), v in pop.attributes.items() if name == "preferred_store" and v in cond["stores"]}
        return {r[0] for r in pop.days if r[3] > 0 and r[2] in cond["stores"] and _in_window(r[1], as_of, cond["days"])}
    if kind == "birthday_within":
        return {m for m, md in pop.birth_md.items() if (next_birthday(md, as_of) - as_of).days < cond["days"]}
    if kind == "consent":
        return {m for m, channel, withdrawn in pop.consents if channel == "marketing" and withdrawn is None}
    if kind == "attribute":
        return {m for (m, name), v in pop.attributes.items() if name == cond["name"] and v in cond["values"]}
    raise AssertionError(kind)
