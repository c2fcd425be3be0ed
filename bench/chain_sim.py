"""Chain simulator: campaigns measured against a known effect.

A chain of stores with tills, and members whose habits and response to an offer the simulator plants;
campaigns run through the real head office and the real tills, and head office's report is put beside the
truth. Nothing is written into head office by hand:

* one simulated clock (``SimClock``) is head office's ``HqStore(clock=...)`` and every till's ``Clock``,
  so business days, validity and windows follow the simulation;
* head office is ``HqStore`` + ``hq.api.app.create_app`` served on 127.0.0.1 (``start_in_thread``);
  members are ``upsert_member``, their birthday and marketing consent ``update_profile``;
* each till is the till's own store (SQLite), ``Service`` and ``Checkout``: every visit is
  ``Checkout.sell(SaleOrder.of_quote(quote))``; the real ``SyncClient`` pushes the journal and pulls
  changes (coupons included) twice a simulated day; statistics come from head office's ingest;
* the chain trusts its POS to vouch for the member (``spend_needs_proof`` off): the members' card taps and
  phone codes, which a personal coupon worth money off otherwise needs, are not simulated;
* a segment (``hq.segments.save``), a campaign (``hq.campaigns.save``) with two variants and a control
  group, a chain-wide holdout (``save_settings``); ``hq.campaigns.run_due`` at 06:00 each day (the timer).

Members: a base daily visit probability drawn from a gamma distribution (mean ``1 / --gap`` days),
a home store (85 % of visits), a basket of 1-4 lines over a few categories with lognormal prices. While a
member holds a valid, unused campaign coupon, its visit probability is multiplied by ``1 + uplift`` (the
variant's; the second variant gets half of ``--uplift``); on such a visit it uses the coupon (buys the
featured item the coupon is for and names the coupon) with probability ``--redeem``. Control and held-out
members shop at their base rate; a control member who would have used an offer names a coupon instead:
the one it would have been given (never issued) or another member's: the till refuses both.

The truth printed beside the report, per variant:
  planted    expected extra visits per decided member over the report's window, from the model:
             ``p u (1 - (1 - q r)^V) / (q r)`` with ``q = p (1 + u)`` and V the valid days inside the window,
             averaged over every decided member (the quantity a randomised treated-minus-control estimates)
  oracle     extra visits the offer caused among the variant's treated members, counted from the
             simulation's own draws: each member-day has one uniform draw; without the offer it is a visit
             below ``p``, with it below ``q``

    .venv/bin/python bench/chain_sim.py                          # 2,000 members, 42 days, SQLite
    .venv/bin/python bench/chain_sim.py --setting second         # the untuned second setting
    .venv/bin/python bench/chain_sim.py --quick --uplift 0       # a small smoke run; no effect planted
    .venv/bin/python bench/chain_sim.py --engine postgres        # head office on its own PostgreSQL

Prints JSON lines: ``setup``, ``phase``, ``report`` (``hq.outcomes.campaign_report``), ``programme``,
``truth`` (one per variant: planted, oracle, measured and its interval, ``inside``), ``programme_truth``
(the same for everyone outside the holdout against the holdout) and ``checks``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hq import campaigns, outcomes, profiles, segments  # noqa: E402
from hq.api.server import ServerHandle, start_in_thread  # noqa: E402
from hq.ingest import Settings  # noqa: E402
from hq.store import HqStore  # noqa: E402
from sync.client import SyncClient  # noqa: E402
from terminal.checkout import Checkout  # noqa: E402
from terminal.model import Basket, Line, SaleOrder  # noqa: E402
from terminal.service import Service  # noqa: E402
from terminal.store import Store  # noqa: E402

START = date(2026, 3, 2)
CATEGORIES = ("bakery", "dairy", "fruit", "coffee", "snacks", "household")
FEATURED = "featured"
"""The category an offer is for: ordinary baskets never hold it."""
CAMPAIGN = "comeback"
SEGMENT = "recent"
HOME_SHARE = 0.85


# -- the simulated clock ------------------------------------------------------------------------------


class SimClock:
    """One time for head office and every till: ``iso()`` is head office's clock, ``epoch()`` a till's."""

    def __init__(self, start: datetime) -> None:
        self.moment = start

    def set(self, moment: datetime) -> None:
        self.moment = moment

    def epoch(self) -> float:
        return self.moment.timestamp()

    def iso(self) -> str:
        return self.moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def at(day: date, hour: float) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hour)


# -- parameters ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    members: int
    days: int
    warmup: int
    valid_days: int
    stores: int
    tills_per_store: int
    uplift: float
    redeem: float
    control_share: float
    holdout: float
    consent: float
    gap: float
    schedule: str
    seed: int
    engine: str
    keep: Path | None = None

    def variants(self) -> dict[str, tuple[int, float]]:
        """Variant -> (yen off the featured item, the planted uplift)."""
        return {"big": (300, self.uplift), "small": (100, self.uplift / 2)}


def parse(argv: list[str] | None = None) -> Params:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int)
    p.add_argument("--days", type=int)
    p.add_argument("--warmup", type=int, help="days of ordinary shopping before the campaign")
    p.add_argument("--valid-days", type=int, default=14)
    p.add_argument("--stores", type=int)
    p.add_argument("--tills-per-store", type=int)
    p.add_argument("--uplift", type=float, help="extra visit rate while holding the first variant's offer")
    p.add_argument("--redeem", type=float, help="probability a treated member visiting uses the coupon")
    p.add_argument("--control", type=float, default=0.3, help="the campaign's control share")
    p.add_argument("--holdout", type=float, default=0.1, help="the chain-wide holdout share")
    p.add_argument("--consent", type=float, default=0.8, help="share of members giving marketing consent")
    p.add_argument("--gap", type=float, help="mean days between visits")
    p.add_argument("--schedule", choices=("once", "after_visit"))
    p.add_argument("--seed", type=int)
    p.add_argument("--engine", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--setting", choices=("first", "second"), default="first", help="defaults of a setting")
    p.add_argument("--quick", action="store_true", help="a small smoke run (600 members, 28 days)")
    p.add_argument("--keep", type=Path, help="keep the databases in this directory")
    a = p.parse_args(argv)
    base = SETTINGS[a.setting] | (QUICK if a.quick else {})
    given = {k: v for k, v in vars(a).items() if v is not None and k in base}
    values = base | given
    return Params(
        values["members"],
        values["days"],
        values["warmup"],
        a.valid_days,
        values["stores"],
        values["tills_per_store"],
        values["uplift"],
        values["redeem"],
        a.control,
        a.holdout,
        a.consent,
        values["gap"],
        values["schedule"],
        values["seed"],
        a.engine,
        a.keep,
    )


SETTINGS: dict[str, dict[str, Any]] = {
    "first": {
        "members": 2000,
        "days": 42,
        "warmup": 28,
        "stores": 3,
        "tills_per_store": 2,
        "uplift": 0.6,
        "redeem": 0.5,
        "gap": 12.0,
        "schedule": "once",
        "seed": 7,
    },
    "second": {
        "members": 3000,
        "days": 56,
        "warmup": 21,
        "stores": 4,
        "tills_per_store": 1,
        "uplift": 0.4,
        "redeem": 0.3,
        "gap": 10.0,
        "schedule": "after_visit",
        "seed": 2027,
    },
}
QUICK = {"members": 600, "days": 28, "warmup": 14, "stores": 2, "tills_per_store": 1}


# -- members -------------------------------------------------------------------------------------------


@dataclass
class Holding:
    coupon_id: str
    variant: str
    until: date


@dataclass
class SimMember:
    member_id: str
    rate: float
    home: int
    categories: tuple[str, ...]
    consent: bool
    birthday: date
    holding: Holding | None = None


def make_members(params: Params, rnd: random.Random) -> list[SimMember]:
    found = []
    for n in range(params.members):
        rate = min(0.9, rnd.gammavariate(2.0, 1.0 / (2.0 * params.gap)))
        found.append(
            SimMember(
                f"M-{n:05d}",
                rate,
                rnd.randrange(params.stores),
                tuple(rnd.sample(CATEGORIES, 3)),
                rnd.random() < params.consent,
                date(1950 + rnd.randrange(55), 1, 1) + timedelta(days=rnd.randrange(365)),
            )
        )
    return found


def basket(member: SimMember, rnd: random.Random, featured: bool) -> Basket:
    lines = []
    for i in range(rnd.randint(1, 4)):
        category = rnd.choice(member.categories)
        price = max(50, round(math.exp(rnd.gauss(math.log(400), 0.6)) / 10) * 10)
        lines.append(Line(f"{category}-{i}-{price}", rnd.randint(1, 2), price, category))
    if featured:
        lines.append(Line("featured-1", 1, 500, FEATURED))
    return Basket(tuple(lines))


# -- the chain: head office and its tills --------------------------------------------------------------


@dataclass
class Till:
    terminal_id: str
    store_id: str
    store: Store
    service: Service
    checkout: Checkout
    client: SyncClient

    def close(self) -> None:
        self.client.close()
        self.store.close()


@dataclass
class Chain:
    hq: HqStore
    server: ServerHandle
    tills: list[list[Till]]

    def sync(self) -> None:
        """Each till's round: push its journal, then pull what changed."""
        for store_tills in self.tills:
            for till in store_tills:
                till.client.sync_once()

    def close(self) -> None:
        for store_tills in self.tills:
            for till in store_tills:
                till.close()
        self.server.stop()
        self.hq.close()


def open_chain(url: str, root: Path, params: Params, clock: SimClock) -> Chain:
    # The chain trusts its POS to vouch for the member (``spend_needs_proof`` off, at head office and at the
    # tills): a campaign's personal coupon is the member's value and otherwise needs their card tap or phone
    # code at the till, which the simulation does not model; the proofs are tested in tests/security.
    hq = HqStore(url, Settings(spend_needs_proof=False), clock=clock.iso, backup=False)
    tokens = {}
    for s in range(params.stores):
        for t in range(params.tills_per_store):
            tokens[(s, t)] = hq.add_terminal(f"T-{s:02d}-{t}", f"S-{s:02d}")
    server = start_in_thread(hq, "127.0.0.1", 0)
    tills = []
    for s in range(params.stores):
        row = []
        for t in range(params.tills_per_store):
            terminal_id, store_id = f"T-{s:02d}-{t}", f"S-{s:02d}"
            (root / terminal_id).mkdir(parents=True, exist_ok=True)
            store = Store.open(root / terminal_id / "terminal.db")
            client = SyncClient(store, terminal_id, server.url, tokens[(s, t)], end_of_day=False, clock=clock.epoch)
            service = Service(store, terminal_id, clock=clock.epoch, store_id=store_id, spend_needs_proof=False)
            row.append(Till(terminal_id, store_id, store, service, Checkout(service), client))
        tills.append(row)
    return Chain(hq, server, tills)


def enrol(hq: HqStore, members: list[SimMember]) -> None:
    """Members and their profiles through head office's own paths."""
    for m in members:
        hq.upsert_member(m.member_id, f"Member {m.member_id[2:]}", "basic", 0)
        consents = ((profiles.MARKETING, profiles.MARKETING_VERSION),) if m.consent else ()
        hq.update_profile(m.member_id, profiles.ProfileChange(birthday=m.birthday.isoformat(), consents=consents))


def set_up_campaign(hq: HqStore, params: Params, first_day: date) -> None:
    segments.save(
        hq.db, SEGMENT, "Shopped in the last 60 days", {"where": {"kind": "visits", "days": 60, "min": 1}}, "chain-sim"
    )
    schedule: dict[str, Any] = (
        {"kind": "once", "at": f"{first_day.isoformat()}T06:00"}
        if params.schedule == "once"
        else {"kind": "after_visit", "days": 14, "at": "06:00"}
    )
    variants = [
        {
            "variant": name,
            "coupon": {"kind": "amount_off", "value": off, "target": "items", "categories": [FEATURED]},
        }
        for name, (off, _) in params.variants().items()
    ]
    spec = {
        "name": "Come back for the featured item",
        "segment": SEGMENT,
        "variants": variants,
        "schedule": schedule,
        "timezone": "UTC",
        "valid_days": params.valid_days,
        "starts": first_day.isoformat(),
        "control_share": params.control_share,
    }
    campaigns.save(hq.db, CAMPAIGN, spec, "chain-sim")
    campaigns.save_settings(hq.db, {"holdout": {"share": params.holdout, "days": 365}, "offer_cap": {"max": 1}})
    # The chain's campaign secret keys the arms; the simulation derives it from its seed, so a run repeats.
    hq.db.transact(
        lambda tx: tx.run(
            "INSERT INTO settings (name, value) VALUES (?, ?)", [campaigns.SECRET_KEY, f"chain-sim-{params.seed}"]
        )
    )


# -- a day -------------------------------------------------------------------------------------------


@dataclass
class Decision:
    member_id: str
    occasion: str
    arm: str
    coupon_id: str | None
    day: date
    until: date


@dataclass
class Log:
    """What the simulation did, to compare with what head office measured."""

    sales: int = 0
    decisions: list[Decision] = field(default_factory=list)
    extra: dict[tuple[str, str], int] = field(default_factory=dict)
    """(member, decision day) -> visits the offer caused (actual minus the draw's base-rate visits)."""
    redeemed: dict[str, int] = field(default_factory=dict)
    """variant -> coupons the tills applied."""
    control_tries: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    """refusal code -> control members' coupon attempts the till refused."""
    control_accepted: int = 0
    treated_refused: int = 0
    """Treated members' own coupons the till did not apply (expected: none)."""


@dataclass(frozen=True)
class Visit:
    moment: datetime
    member: SimMember
    till: Till
    coupon: str | None
    featured: bool


def decisions_of(hq: HqStore, day: date) -> list[Decision]:
    """The decisions head office made on ``day``: who was told of a coupon (read, never written)."""
    with hq.db.read() as tx:
        rows = tx.all(
            "SELECT member_id, occasion, arm, coupon_id, day, until_day FROM campaign_members "
            "WHERE campaign_id = ? AND day = ? ORDER BY member_id",
            [CAMPAIGN, day.isoformat()],
        )
    return [
        Decision(
            str(r[0]),
            str(r[1]),
            str(r[2]),
            None if r[3] is None else str(r[3]),
            date.fromisoformat(str(r[4])),
            date.fromisoformat(str(r[5])),
        )
        for r in rows
    ]


def plan_day(
    day: date,
    members: list[SimMember],
    chain: Chain,
    params: Params,
    rnd: random.Random,
    log: Log,
    control_window: dict[str, Decision],
    treated_ids: list[str],
) -> list[Visit]:
    uplifts = {name: u for name, (_, u) in params.variants().items()}
    visits = []
    for m in members:
        draw = rnd.random()
        holding = m.holding if m.holding is not None and day < m.holding.until else None
        if m.holding is not None and holding is None:
            m.holding = None
        rate = min(1.0, m.rate * (1 + uplifts[holding.variant])) if holding else m.rate
        base_visit = draw < m.rate
        if holding is not None:
            key = (m.member_id, holding.coupon_id)
            log.extra[key] = log.extra.get(key, 0) + int(draw < rate) - int(base_visit)
        if draw >= rate:
            continue
        store = m.home if rnd.random() < HOME_SHARE else rnd.randrange(params.stores)
        till = rnd.choice(chain.tills[store])
        moment = at(day, 8 + rnd.random() * 12)
        uses = rnd.random() < params.redeem
        coupon: str | None = None
        if holding is not None and uses:
            coupon = holding.coupon_id
        elif m.member_id in control_window and uses and day < control_window[m.member_id].until:
            coupon = control_try(control_window[m.member_id], treated_ids, rnd)
        visits.append(Visit(moment, m, till, coupon, coupon is not None))
    return sorted(visits, key=lambda v: (v.moment, v.member.member_id))


def control_try(decision: Decision, treated_ids: list[str], rnd: random.Random) -> str:
    """A control member wanting an offer: the coupon it would have had, or another member's."""
    if treated_ids and rnd.random() < 0.5:
        return rnd.choice(treated_ids)
    return campaigns.coupon_id_of(CAMPAIGN, decision.member_id, decision.occasion)


def ring(visit: Visit, clock: SimClock, rnd: random.Random, log: Log, variant_of: dict[str, str]) -> None:
    """One visit through the till's one sale path; what the till applied and refused is logged."""
    clock.set(visit.moment)
    service = visit.till.service
    coupons = (visit.coupon,) if visit.coupon else ()
    quote = service.quote(visit.member.member_id, basket(visit.member, rnd, visit.featured), coupons)
    visit.till.checkout.sell(SaleOrder.of_quote(quote))
    log.sales += 1
    holding = visit.member.holding
    if holding is not None and holding.coupon_id in quote.coupons:
        log.redeemed[holding.variant] = log.redeemed.get(holding.variant, 0) + 1
        visit.member.holding = None
    elif holding is not None and visit.coupon is not None:
        log.treated_refused += 1
    elif visit.coupon is not None and variant_of.get(visit.member.member_id) is None:
        log.control_tries += 1
        if visit.coupon in quote.coupons:
            log.control_accepted += 1
        for coupon_id, code in quote.refused:
            if coupon_id == visit.coupon:
                log.refused[code] = log.refused.get(code, 0) + 1


# -- the run ---------------------------------------------------------------------------------------------


def emit(kind: str, **body: Any) -> None:
    print(json.dumps({"event": kind, **body}, default=str), flush=True)


@contextmanager
def database(params: Params, root: Path) -> Iterator[str]:
    if params.engine == "sqlite":
        yield str(root / "hq" / "hq.db")
        return
    from tests.fixtures.postgres import PgServer

    pg = PgServer(durable=True).start()
    try:
        yield pg.fresh_schema()
    finally:
        pg.stop()


def simulate(params: Params, root: Path) -> dict[str, Any]:
    rnd = random.Random(params.seed)
    members = make_members(params, rnd)
    by_id = {m.member_id: m for m in members}
    clock = SimClock(at(START, 5))
    first_campaign_day = START + timedelta(days=params.warmup)
    last_day = START + timedelta(days=params.days - 1)
    log = Log()
    started = time.monotonic()
    with database(params, root) as url:
        (root / "hq").mkdir(parents=True, exist_ok=True)
        chain = open_chain(url, root, params, clock)
        try:
            enrol(chain.hq, members)
            set_up_campaign(chain.hq, params, first_campaign_day)
            emit("setup", params=vars(params), engine=chain.hq.dialect, members=len(members), seconds=_since(started))
            variant_of: dict[str, str] = {}
            control_window: dict[str, Decision] = {}
            for offset in range(params.days):
                day = START + timedelta(days=offset)
                clock.set(at(day, 6))
                if day >= first_campaign_day:
                    campaigns.run_due(chain.hq.db, clock.moment)
                    for d in decisions_of(chain.hq, day):
                        log.decisions.append(d)
                        if d.coupon_id is None:
                            control_window[d.member_id] = d
                            variant_of.pop(d.member_id, None)
                        else:
                            variant_of[d.member_id] = d.arm
                            by_id[d.member_id].holding = Holding(d.coupon_id, d.arm, d.until)
                clock.set(at(day, 7))
                chain.sync()
                treated_ids = [d.coupon_id for d in log.decisions if d.coupon_id]
                for visit in plan_day(day, members, chain, params, rnd, log, control_window, treated_ids):
                    ring(visit, clock, rnd, log, variant_of)
                clock.set(at(day, 21))
                chain.sync()
                if day == first_campaign_day - timedelta(days=1) or day == last_day:
                    emit("phase", day=day.isoformat(), sales=log.sales, seconds=_since(started))
            return finish(chain, params, members, log, last_day, started)
        finally:
            chain.close()


def _since(started: float) -> float:
    return round(time.monotonic() - started, 1)


def planted(member: SimMember, uplift: float, redeem: float, valid: int) -> float:
    """Expected extra visits over ``valid`` days of holding an offer, from the model."""
    q = min(1.0, member.rate * (1 + uplift))
    stop = q * redeem
    if stop == 0:
        return (q - member.rate) * valid
    return (q - member.rate) * (1 - (1 - stop) ** valid) / stop


def finish(
    chain: Chain, params: Params, members: list[SimMember], log: Log, last_day: date, started: float
) -> dict[str, Any]:
    hq = chain.hq
    report = outcomes.campaign_report(hq.db, CAMPAIGN, last_day)
    programme = outcomes.programme_report(hq.db, last_day)
    emit("report", report=report)
    emit("programme", periods=programme)
    by_id = {m.member_id: m for m in members}
    truths = [variant_truth(report, params, by_id, log, last_day, variant) for variant in params.variants()]
    for truth in truths:
        emit("truth", **truth)
    if programme:
        emit("programme_truth", **programme_truth(programme[-1], params, by_id, log, last_day))
    checks = checks_of(chain, report, log, started)
    emit("checks", **checks)
    return {"report": report, "programme": programme, "truth": truths, "checks": checks}


def valid_days(decision: Decision, params: Params, last_day: date) -> int:
    """The days of a decision's window the report counts (the window is cut at the report's day)."""
    return min(params.valid_days, (last_day - decision.day).days + 1)


def _first_decisions(decisions: list[Decision]) -> dict[str, Decision]:
    first: dict[str, Decision] = {}
    for d in sorted(decisions, key=lambda d: d.day):
        first.setdefault(d.member_id, d)
    return first


def variant_truth(
    report: dict[str, Any], params: Params, by_id: dict[str, SimMember], log: Log, last_day: date, variant: str
) -> dict[str, Any]:
    """The planted effect of ``variant`` per decided member (over its first decision's window, as the report
    counts), the oracle per treated member, and what head office measured."""
    uplift = params.variants()[variant][1]
    # The report's unit is the member over its first decision's window, so the truth is too.
    first = _first_decisions(log.decisions)
    expected = [
        planted(by_id[d.member_id], uplift, params.redeem, valid_days(d, params, last_day)) for d in first.values()
    ]
    mine = [d for d in first.values() if d.arm == variant]
    oracle = [log.extra.get((d.member_id, d.coupon_id or ""), 0) for d in mine]
    effect = next(e for e in report["effects"] if e["variant"] == variant and e["metric"] == "visits")
    truth: dict[str, Any] = {
        "variant": variant,
        "uplift": uplift,
        "decisions": len(mine),
        "planted": round(sum(expected) / len(expected), 4) if expected else None,
        "oracle": round(sum(oracle) / len(oracle), 4) if oracle else None,
        "measured": effect["difference"],
        "low": effect["low"],
        "high": effect["high"],
    }
    truth["inside"] = _inside(truth["planted"], effect["low"], effect["high"])
    truth["excludes_zero"] = effect["significant"]
    return truth


def programme_truth(
    period: dict[str, Any], params: Params, by_id: dict[str, SimMember], log: Log, last_day: date
) -> dict[str, Any]:
    """The programme's planted effect per member outside the holdout: every treated decision's expected
    extra visits, spread over all of them (members never treated add none)."""
    uplifts = {name: u for name, (_, u) in params.variants().items()}
    treated = [d for d in log.decisions if d.coupon_id is not None]
    expected = math.fsum(
        planted(by_id[d.member_id], uplifts[d.arm], params.redeem, valid_days(d, params, last_day)) for d in treated
    )
    oracle = sum(log.extra.get((d.member_id, d.coupon_id or ""), 0) for d in treated)
    n = period["programme_members"]
    effect = next(e for e in period["effects"] if e["metric"] == "visits")
    found = {
        "period_id": period["period_id"],
        "programme_members": n,
        "holdout_members": period["holdout_members"],
        "planted": round(expected / n, 4) if n else None,
        "oracle": round(oracle / n, 4) if n else None,
        "measured": effect["difference"],
        "low": effect["low"],
        "high": effect["high"],
    }
    found["inside"] = _inside(found["planted"], effect["low"], effect["high"])
    return found


def _inside(value: float | None, low: float | None, high: float | None) -> bool:
    return value is not None and low is not None and high is not None and low <= value <= high


def checks_of(chain: Chain, report: dict[str, Any], log: Log, started: float) -> dict[str, Any]:
    """What the simulation did beside what head office holds."""
    arms = {a["arm"]: a for a in report["arms"]}
    terminals = [t.terminal_id for row in chain.tills for t in row]
    return {
        "sales_simulated": log.sales,
        "journal_at_head_office": sum(chain.hq.journal_count(t) for t in terminals),
        "redeemed_simulated": log.redeemed,
        "redeemed_at_head_office": {a: arms[a]["redeemed"] for a in arms},
        "control_tries": log.control_tries,
        "control_refused": log.refused,
        "control_accepted": log.control_accepted,
        "treated_refused": log.treated_refused,
        "seconds": _since(started),
    }


def main(argv: list[str] | None = None) -> None:
    params = parse(argv)
    os.environ["TZ"] = "UTC"  # the tills' PCs keep the chain's time zone, as the campaign and head office do
    time.tzset()
    root = params.keep or Path(tempfile.mkdtemp(prefix="chain-sim-"))
    try:
        simulate(params, root)
    finally:
        if params.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
