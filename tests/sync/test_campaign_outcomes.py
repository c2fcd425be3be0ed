"""What a campaign earned (hq/outcomes.py): the pure arithmetic of the interval; a report that recovers
a difference planted in the statistics, on SQLite and PostgreSQL; a sale ingested is in the report at
once; the CSV and the SVG renderings; the programme against the holdout."""

from __future__ import annotations

import csv
import io
import random
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from hq import campaigns, ingest, outcomes, segments, stats
from hq.store import HqStore
from sync.protocol import WireEntry
from tests.fixtures import entries
from tests.sync.segment_population import put_daily_rows

START = date(2026, 3, 1)
MORNING = "2026-03-01T01:00:00+00:00"


def test_the_interval_is_welchs_and_absent_for_tiny_groups() -> None:
    t = outcomes.summarise([1.0, 2.0, 3.0, 4.0])
    c = outcomes.summarise([1.0, 1.0, 2.0, 2.0])
    assert (t.n, t.mean, round(t.variance, 6)) == (4, 2.5, round(5 / 3, 6))
    d = outcomes.difference(t, c)
    se = (t.variance / 4 + c.variance / 4) ** 0.5
    assert d.difference == 1.0 and d.low == pytest.approx(1.0 - 1.959964 * se, abs=1e-5)
    assert outcomes.difference(outcomes.summarise([5.0]), c).low is None


def test_margin_takes_each_categorys_rate_and_the_basket_discounts() -> None:
    settings = campaigns.Settings(margins={"wine": 40, "*": 20})
    assert outcomes.margin(900, [("wine", 500), ("bread", 500)], settings) == pytest.approx(200 + 100 - 100)


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:
    store = HqStore(hq_url, ingest.Settings(spend_needs_proof=False))  # the POS's word stands for the member here
    with store.db.write() as tx:
        tx.many(
            "INSERT INTO members (member_id, display_name, tier, points, status, version, deleted) "
            "VALUES (?, 'x', 'basic', 0, 'active', 1, 0)",
            [(f"M-{n:04d}",) for n in range(600)],
        )
        tx.many(
            "INSERT INTO consents (member_id, wording_version, channel, given_at) VALUES (?, 'v1', 'marketing', ?)",
            [(f"M-{n:04d}", "2026-01-01T00:00:00Z") for n in range(600)],
        )
        # The chain's campaign secret draws the arms; a fixed one makes the draw, and so each interval, the
        # same every run (a fresh random secret would miss the planted value one run in twenty, by design).
        tx.run("INSERT INTO settings (name, value) VALUES (?, 'outcomes-test')", [campaigns.SECRET_KEY])
    segments.save(store.db, "everyone", "everyone", {"where": {"kind": "tier", "tiers": ["basic"]}}, "test")
    yield store
    store.close()


def plant(hq: HqStore, uplift: float, seed: int = 5) -> None:
    """Visits over each decision's window: control members come 1.0 times on average, treated ones
    1.0 + ``uplift``; each visit spends 1,000 in category "food"."""
    rnd = random.Random(seed)
    with hq.db.read() as tx:
        rows = tx.all("SELECT member_id, arm FROM campaign_members")
    days, cats = [], []
    for member_id, arm in rows:
        rate = 1.0 + (uplift if arm != "control" else 0.0)
        visits = sum(1 for _ in range(7) if rnd.random() < rate / 7)
        for v in range(visits):
            day = (START + timedelta(days=v)).isoformat()
            days.append((member_id, day, "S1", 1, 1000))
            cats.append((member_id, day, "food", 1000, 1))
    with hq.db.write() as tx:
        put_daily_rows(tx, days, cats)


def campaign(hq: HqStore, **kw: Any) -> None:
    body = {
        "name": "Come back",
        "segment": "everyone",
        "variants": [{"variant": "v100", "coupon": {"kind": "amount_off", "value": 100}}],
        "schedule": {"kind": "daily", "at": "09:00"},
        "timezone": "Asia/Tokyo",
        "control_share": 0.5,
    }
    body.update(kw)
    campaigns.save(hq.db, "back", body, "test")
    campaigns.run_one(hq.db, "back", campaigns.parse_now(MORNING))


def test_the_report_recovers_a_planted_difference(hq: HqStore) -> None:
    campaign(hq)
    plant(hq, uplift=1.0)
    found = outcomes.campaign_report(hq.db, "back", START + timedelta(days=10))
    arms = {a["arm"]: a for a in found["arms"]}
    assert arms["control"]["issued"] == 0 and arms["v100"]["issued"] == arms["v100"]["targeted"] > 200
    (visits,) = [e for e in found["effects"] if e["metric"] == "visits"]
    assert visits["low"] < 1.0 < visits["high"] and visits["significant"]
    (spend,) = [e for e in found["effects"] if e["metric"] == "spend"]
    assert spend["low"] < 1000.0 < spend["high"]
    (margin,) = [e for e in found["effects"] if e["metric"] == "margin"]
    assert margin["difference"] == pytest.approx(spend["difference"] * 0.30, rel=1e-6)  # the default 30 %


def test_no_planted_difference_gives_an_interval_around_zero(hq: HqStore) -> None:
    campaign(hq)
    plant(hq, uplift=0.0, seed=9)
    found = outcomes.campaign_report(hq.db, "back", START + timedelta(days=10))
    (visits,) = [e for e in found["effects"] if e["metric"] == "visits"]
    assert visits["low"] < 0.0 < visits["high"]


def test_a_sale_with_the_offer_is_in_the_report_as_soon_as_it_is_ingested(hq: HqStore) -> None:
    campaign(hq, control_share=0.0)
    hq.add_terminal("T1", "S1", "token-T1")
    with hq.db.read() as tx:
        member_id, coupon_id = tx.one("SELECT member_id, coupon_id FROM campaign_members ORDER BY member_id")  # type: ignore[misc]
    before = outcomes.campaign_report(hq.db, "back", START + timedelta(days=2))
    sale = entries.sale(member_id, 1000, coupons=[coupon_id], proof="pos")  # the member's own coupon: a proof
    hq.ingest(
        "T1",
        [
            WireEntry(
                terminal_id="T1", seq=1, txn_id="T1-1", kind="sale", payload=sale, created_at="2026-03-02T03:00:00.000Z"
            )
        ],
    )
    after = outcomes.campaign_report(hq.db, "back", START + timedelta(days=2))
    (b,), (a,) = before["arms"], after["arms"]
    assert (b["redeemed"], a["redeemed"]) == (0, 1)
    assert a["visits"] * a["targeted"] == pytest.approx(b["visits"] * b["targeted"] + 1, abs=0.1)  # means are rounded
    with hq.db.read() as tx:  # and the segment side: the member's statistics already hold the visit
        assert (stats.lifetime(tx, member_id) or stats.Lifetime()).visits == 1


def test_csv_and_svg_say_the_same_as_json(hq: HqStore) -> None:
    campaign(hq)
    plant(hq, uplift=0.5)
    found = outcomes.campaign_report(hq.db, "back", START + timedelta(days=10))
    text = outcomes.as_csv(found)
    arms_part, effects_part = text.split("\n\n")
    arms = list(csv.DictReader(io.StringIO(arms_part)))
    assert {r["arm"]: int(r["issued"]) for r in arms} == {a["arm"]: a["issued"] for a in found["arms"]}
    effects = list(csv.DictReader(io.StringIO(effects_part)))
    assert [float(r["difference"]) for r in effects] == [e["difference"] for e in found["effects"]]
    svg = outcomes.as_svg(found)
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "script" not in svg and "href" not in svg and "http://" not in svg.replace("http://www.w3.org/2000/svg", "")
    labels = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert any(f"{e['difference']:+.2f}" in labels for e in found["effects"])


def test_a_hostile_name_is_text_in_the_chart(hq: HqStore) -> None:
    campaign(hq, name='<script>alert("x")</script> & co')
    svg = outcomes.as_svg(outcomes.campaign_report(hq.db, "back", START))
    assert "<script>" not in svg
    ET.fromstring(svg)


def test_the_programme_compares_everyone_with_the_holdout(hq: HqStore) -> None:
    campaigns.save_settings(hq.db, {"holdout": {"share": 0.25, "days": 30}})
    campaign(hq)
    plant(hq, uplift=1.0)
    (period,) = outcomes.programme_report(hq.db, START + timedelta(days=10))
    assert period["holdout_members"] + period["programme_members"] == 600
    assert 100 < period["holdout_members"] < 200
    (visits,) = [e for e in period["effects"] if e["metric"] == "visits"]
    assert visits["difference"] > 0 and visits["significant"]
