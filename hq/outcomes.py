"""What a campaign earned (docs/campaigns.md): per arm, how many members were targeted, issued a coupon,
reached by a till, redeemed it; and per variant against the control group, the difference in visits,
spend and margin per member over each member's window, with a 95 % confidence interval. The same for
the chain-wide holdout against everyone else: what the whole programme earns.

The unit is a member: a treated member and a control member are decided the same way on the same day, so
the difference of their means estimates what being assigned the offer caused. Outcomes are read from the
statistics kept at ingest (``member_days``, ``member_category_days``) over the window of the member's first
decision and up to the reference day, so a report reflects a sale as soon as head office has ingested it.

Margin: each category's spend times its margin (``Settings.margins``), less the discounts the basket
level took off (the spend of the categories less the sale's spend): an offer's cost is in it.

The interval is Welch's, with the normal quantile (1.96): right for groups of a few dozen members and
more; below 2 members in a group there is no interval.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date
from statistics import NormalDist
from typing import Any
from xml.sax.saxutils import escape

from hq import campaigns
from hq.db.engine import Db, Tx

METRICS = ("visits", "spend", "margin")
Z95 = NormalDist().inv_cdf(0.975)


# -- pure: summaries and the difference of two groups -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    n: int
    mean: float
    variance: float


def summarise(values: Iterable[float]) -> Summary:
    items = list(values)
    n = len(items)
    if n == 0:
        return Summary(0, 0.0, 0.0)
    mean = math.fsum(items) / n
    variance = math.fsum((v - mean) ** 2 for v in items) / (n - 1) if n > 1 else 0.0
    return Summary(n, mean, variance)


@dataclass(frozen=True, slots=True)
class Difference:
    treated: float
    control: float
    difference: float
    low: float | None
    high: float | None

    @property
    def significant(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def difference(treated: Summary, control: Summary) -> Difference:
    """Treated mean − control mean and its 95 % interval (Welch's standard error, normal quantile)."""
    diff = treated.mean - control.mean
    if treated.n < 2 or control.n < 2:
        return Difference(treated.mean, control.mean, diff, None, None)
    se = math.sqrt(treated.variance / treated.n + control.variance / control.n)
    return Difference(treated.mean, control.mean, diff, diff - Z95 * se, diff + Z95 * se)


# -- reading outcomes --------------------------------------------------------------------------------


Outcome = tuple[float, float, float]
"""(visits, spend, margin) of one decision."""


def _outcomes(tx: Tx, campaign_id: str, as_of: date, settings: campaigns.Settings) -> dict[str, list[Outcome]]:
    """Each arm's outcomes, one per member, over the window of its **first** decision ([day, until_day), up
    to ``as_of``). A member decided on several occasions (a daily campaign) stays in one arm (the arm is keyed
    by campaign and member) and is one unit, so the interval does not take repeated decisions of one member
    for independent ones; and every member's window has the same length whatever it did after (a window
    stretched to its last decision would be longer for members whose visits brought them new occasions:
    ``after_visit`` re-decides members who came back, which the offer causes)."""
    day = as_of.isoformat()
    spans = (
        "SELECT arm, member_id, MIN(day) AS first_day, MIN(until_day) AS last_day FROM campaign_members "
        "WHERE campaign_id = ? AND day <= ? GROUP BY arm, member_id"
    )
    base = tx.all(
        f"SELECT s.arm, s.member_id, COALESCE(SUM(md.visits), 0), COALESCE(SUM(md.spend), 0) FROM ({spans}) s "
        "LEFT JOIN member_days md ON md.member_id = s.member_id AND md.day >= s.first_day AND md.day < s.last_day "
        "AND md.day <= ? GROUP BY s.arm, s.member_id",
        [campaign_id, day, day],
    )
    cats = tx.all(
        f"SELECT s.arm, s.member_id, mc.category, SUM(mc.spend) FROM ({spans}) s JOIN member_category_days mc "
        "ON mc.member_id = s.member_id AND mc.day >= s.first_day AND mc.day < s.last_day AND mc.day <= ? "
        "GROUP BY s.arm, s.member_id, mc.category",
        [campaign_id, day, day],
    )
    by_member: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for arm, member_id, category, spend in cats:
        by_member[(str(arm), str(member_id))].append((str(category), int(spend)))
    arms: dict[str, list[Outcome]] = defaultdict(list)
    for arm, member_id, visits, spend in base:
        found = by_member.get((str(arm), str(member_id)), [])
        arms[str(arm)].append((float(visits), float(spend), margin(int(spend), found, settings)))
    return arms


def margin(spend: int, categories: list[tuple[str, int]], settings: campaigns.Settings) -> float:
    """Each category's spend times its margin, less the basket-level discounts (pure)."""
    by_category = math.fsum(s * settings.margin(c) / 100 for c, s in categories)
    basket_discounts = sum(s for _, s in categories) - spend
    return by_category - max(basket_discounts, 0)


def _counts(tx: Tx, campaign_id: str) -> dict[str, dict[str, int]]:
    pulled = tx.one("SELECT COALESCE(MAX(pulled_version), 0) FROM terminals WHERE revoked = 0")
    reached = int(pulled[0]) if pulled else 0
    rows = tx.all(
        "SELECT cm.arm, COUNT(*), COUNT(cm.coupon_id), SUM(CASE WHEN cm.coupon_id IS NOT NULL AND cm.version <= ? "
        "THEN 1 ELSE 0 END) FROM campaign_members cm WHERE cm.campaign_id = ? GROUP BY cm.arm",
        [reached, campaign_id],
    )
    used: dict[Any, Any] = dict(
        tx.all(
            "SELECT cm.arm, COUNT(DISTINCT cu.coupon_id) FROM campaign_members cm JOIN coupon_uses cu "
            "ON cu.coupon_id = cm.coupon_id AND cu.released = 0 WHERE cm.campaign_id = ? GROUP BY cm.arm",
            [campaign_id],
        )
    )
    # A points variant's grant is its adjustment (its id in ``coupon_id``): issued, and redeemed, when credited;
    # delivered once a till pulled past the member's version the credit gave.
    credited: dict[Any, Any] = dict(
        tx.all(
            "SELECT cm.arm, COUNT(*) FROM campaign_members cm JOIN adjustments a ON a.adjustment_id = cm.coupon_id "
            "WHERE cm.campaign_id = ? GROUP BY cm.arm",
            [campaign_id],
        )
    )
    found = {}
    for arm, targeted, issued, delivered in rows:
        found[str(arm)] = {
            "targeted": int(targeted),
            "issued": int(issued),
            "delivered": int(delivered or 0),
            "redeemed": int(used.get(arm, 0)) + int(credited.get(arm, 0)),
        }
    return found


@dataclass(frozen=True, slots=True)
class ArmReport:
    arm: str
    targeted: int
    issued: int
    delivered: int
    redeemed: int
    redemption_rate: float | None
    visits: float
    spend: float
    margin: float


@dataclass(frozen=True, slots=True)
class Effect:
    variant: str
    metric: str
    treated: float
    control: float
    difference: float
    low: float | None
    high: float | None
    significant: bool


def report(tx: Tx, campaign_id: str, as_of: date) -> dict[str, Any]:
    """A campaign's report on ``as_of``: its arms and each variant's effect against control."""
    held = campaigns.get(tx, campaign_id)
    settings = campaigns.read_settings(tx)
    counts = _counts(tx, campaign_id)
    outcomes = _outcomes(tx, campaign_id, as_of, settings)
    arms: list[ArmReport] = []
    summaries: dict[str, list[Summary]] = {}
    for arm in sorted(counts, key=lambda a: (a == campaigns.CONTROL, a)):
        c = counts[arm]
        rows = outcomes.get(arm, [])
        summaries[arm] = [summarise(r[i] for r in rows) for i in range(len(METRICS))]
        arms.append(
            ArmReport(
                arm,
                c["targeted"],
                c["issued"],
                c["delivered"],
                c["redeemed"],
                round(c["redeemed"] / c["issued"], 4) if c["issued"] else None,
                *(round(s.mean, 4) for s in summaries[arm]),
            )
        )
    effects: list[Effect] = []
    control = summaries.get(campaigns.CONTROL)
    for arm, sums in summaries.items():
        if arm == campaigns.CONTROL or control is None:
            continue
        for i, metric in enumerate(METRICS):
            d = difference(sums[i], control[i])
            effects.append(
                Effect(
                    arm,
                    metric,
                    round(d.treated, 4),
                    round(d.control, 4),
                    round(d.difference, 4),
                    None if d.low is None else round(d.low, 4),
                    None if d.high is None else round(d.high, 4),
                    d.significant,
                )
            )
    return {
        "campaign_id": campaign_id,
        "name": held["name"],
        "state": held["state"],
        "as_of": as_of.isoformat(),
        "arms": [asdict(a) for a in arms],
        "effects": [asdict(e) for e in effects],
    }


def programme(tx: Tx, as_of: date) -> list[dict[str, Any]]:
    """Each holdout period up to ``as_of``: the holdout's visits, spend and margin per member against
    everyone else's (members who existed, not erased), over [starts, min(ends, as_of + 1))."""
    settings = campaigns.read_settings(tx)
    found = []
    members = [
        str(r[0])
        for r in tx.all(
            "SELECT m.member_id FROM members m WHERE m.deleted = 0 AND NOT EXISTS "
            "(SELECT 1 FROM erasures e WHERE e.member_id = m.member_id)"
        )
    ]
    for period in campaigns.periods(tx):
        if period.starts > as_of:
            continue
        end = min(period.ends.isoformat(), _next_day(as_of))
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        for member_id, visits, spend in tx.all(
            "SELECT member_id, SUM(visits), SUM(spend) FROM member_days WHERE day >= ? AND day < ? GROUP BY member_id",
            [period.starts.isoformat(), end],
        ):
            sums[str(member_id)][0], sums[str(member_id)][1] = float(visits), float(spend)
        cats: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for member_id, category, spend in tx.all(
            "SELECT member_id, category, SUM(spend) FROM member_category_days WHERE day >= ? AND day < ? "
            "GROUP BY member_id, category",
            [period.starts.isoformat(), end],
        ):
            cats[str(member_id)].append((str(category), int(spend)))
        groups: dict[bool, list[Outcome]] = {True: [], False: []}
        for member_id in members:
            v, s, _ = sums.get(member_id, (0.0, 0.0, 0.0))
            groups[period.holds(member_id)].append((v, s, margin(int(s), cats.get(member_id, []), settings)))
        effects = []
        for i, metric in enumerate(METRICS):
            d = difference(summarise(o[i] for o in groups[False]), summarise(o[i] for o in groups[True]))
            effects.append(
                {
                    "metric": metric,
                    "programme": round(d.treated, 4),
                    "holdout": round(d.control, 4),
                    "difference": round(d.difference, 4),
                    "low": None if d.low is None else round(d.low, 4),
                    "high": None if d.high is None else round(d.high, 4),
                    "significant": d.significant,
                }
            )
        found.append(
            {
                "period_id": period.period_id,
                "starts": period.starts.isoformat(),
                "ends": period.ends.isoformat(),
                "share": period.share_bp / campaigns.BP,
                "holdout_members": len(groups[True]),
                "programme_members": len(groups[False]),
                "effects": effects,
            }
        )
    return found


def _next_day(day: date) -> str:
    return date.fromordinal(day.toordinal() + 1).isoformat()


# -- renderings: CSV and an SVG chart ---------------------------------------------------------------


def as_csv(found: dict[str, Any]) -> str:
    """One row per arm, then one per variant and metric."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "campaign_id",
            "as_of",
            "arm",
            "targeted",
            "issued",
            "delivered",
            "redeemed",
            "redemption_rate",
            "visits",
            "spend",
            "margin",
        ]
    )
    for a in found["arms"]:
        writer.writerow(
            [
                found["campaign_id"],
                found["as_of"],
                a["arm"],
                a["targeted"],
                a["issued"],
                a["delivered"],
                a["redeemed"],
                a["redemption_rate"],
                a["visits"],
                a["spend"],
                a["margin"],
            ]
        )
    writer.writerow([])
    writer.writerow(
        [
            "campaign_id",
            "as_of",
            "variant",
            "metric",
            "treated",
            "control",
            "difference",
            "low_95",
            "high_95",
            "significant",
        ]
    )
    for e in found["effects"]:
        writer.writerow(
            [
                found["campaign_id"],
                found["as_of"],
                e["variant"],
                e["metric"],
                e["treated"],
                e["control"],
                e["difference"],
                e["low"],
                e["high"],
                e["significant"],
            ]
        )
    return out.getvalue()


def as_svg(found: dict[str, Any]) -> str:
    """Each variant's difference from control per metric, with its 95 % interval: one panel per metric,
    zero marked, a self-contained SVG (no script, no external reference) a report can include."""
    width, panel_h, left, right = 640, 120, 150, 30
    effects = found["effects"]
    variants = sorted({e["variant"] for e in effects})
    height = 60 + panel_h * len(METRICS)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="12">',
        f"<title>{escape(found['name'])}: difference from control per member, 95 % interval</title>",
        f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(found["name"])} '
        f"({escape(found['campaign_id'])}), as of {escape(found['as_of'])}</text>",
        '<text x="10" y="38">difference from control per member; bars: 95 % confidence interval</text>',
    ]
    for p, metric in enumerate(METRICS):
        top = 50 + p * panel_h
        rows = [e for e in effects if e["metric"] == metric]
        values = [v for e in rows for v in (e["difference"], e["low"], e["high"]) if v is not None] + [0.0]
        low, high = min(values), max(values)
        span = (high - low) or 1.0
        low, high = low - span * 0.1, high + span * 0.1

        def x(v: float, lo: float = low, hi: float = high) -> float:
            return left + (v - lo) / (hi - lo) * (width - left - right)

        parts.append(f'<text x="10" y="{top + 14}" font-weight="bold">{metric}</text>')
        parts.append(
            f'<line x1="{x(0):.1f}" y1="{top + 20}" x2="{x(0):.1f}" y2="{top + panel_h - 10}" stroke="#888" '
            'stroke-dasharray="3,3"/>'
        )
        parts.append(f'<text x="{x(0):.1f}" y="{top + panel_h - 0}" text-anchor="middle" fill="#666">0</text>')
        step = (panel_h - 40) / max(len(variants), 1)
        for i, variant in enumerate(variants):
            e = next((r for r in rows if r["variant"] == variant), None)
            if e is None:
                continue
            y = top + 30 + i * step
            parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(variant)}</text>')
            if e["low"] is not None and e["high"] is not None:
                parts.append(
                    f'<line x1="{x(e["low"]):.1f}" y1="{y:.1f}" x2="{x(e["high"]):.1f}" y2="{y:.1f}" '
                    'stroke="#1f4e8c" stroke-width="2"/>'
                )
            colour = "#0a7d32" if e["significant"] and e["difference"] > 0 else "#1f4e8c"
            parts.append(f'<circle cx="{x(e["difference"]):.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
            parts.append(
                f'<text x="{x(e["difference"]):.1f}" y="{y - 7:.1f}" text-anchor="middle" font-size="10">'
                f"{e['difference']:+.2f}</text>"
            )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# -- the services the commands and the routes call ----------------------------------------------------


def campaign_report(db: Db, campaign_id: str, as_of: date) -> dict[str, Any]:
    with db.read() as tx:
        return report(tx, campaign_id, as_of)


def programme_report(db: Db, as_of: date) -> list[dict[str, Any]]:
    with db.read() as tx:
        return programme(tx, as_of)
