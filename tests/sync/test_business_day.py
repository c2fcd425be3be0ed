"""Head office owns time: each store's business day (time zone and cut-off), a till's clock corrected by
the offset head office measures on each request, entries flagged when their till time is off either way,
and the blocked-member check run against head office's time. The calendar is pure; the rest runs on
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hq import businessday
from hq.businessday import BadCalendar, BusinessDay
from hq.ingest import Settings
from hq.store import Effect, HqStore
from sync.protocol import Reason, WireEntry
from tests.fixtures import entries


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the calendar (pure) ---------------------------------------------------------------------------


def test_a_sale_after_midnight_belongs_to_the_day_before_until_the_cut_off() -> None:
    tokyo = businessday.calendar("Asia/Tokyo", "04:00")
    # 01:30 on Saturday 2026-11-21 in Tokyo is 16:30 UTC on Friday
    assert tokyo.of(datetime(2026, 11, 20, 16, 30, tzinfo=UTC)) == "2026-11-20"
    assert tokyo.of(datetime(2026, 11, 20, 19, 0, tzinfo=UTC)) == "2026-11-21"  # 04:00 Saturday: a new day
    assert tokyo.start(datetime(2026, 11, 20, 16, 30, tzinfo=UTC)) == datetime(2026, 11, 19, 19, 0, tzinfo=UTC)
    assert businessday.calendar("UTC").of(datetime(2026, 11, 20, 23, 59, tzinfo=UTC)) == "2026-11-20"


def test_a_day_across_a_daylight_saving_change_starts_at_its_local_cut_off() -> None:
    berlin = businessday.calendar("Europe/Berlin", "03:00")
    # Clocks go back on 2026-10-25 at 03:00 CEST: the business day of the 25th starts at 03:00 CET (02:00 UTC)
    assert berlin.start(datetime(2026, 10, 25, 12, 0, tzinfo=UTC)) == datetime(2026, 10, 25, 2, 0, tzinfo=UTC)
    assert berlin.of(datetime(2026, 10, 25, 1, 30, tzinfo=UTC)) == "2026-10-24"


@pytest.mark.parametrize(
    ("zone", "starts"),
    [
        ("Mars/Olympus", "00:00"),
        ("UTC", "24:00"),
        ("UTC", "4:00"),
        ("UTC", "04:60"),
        ("../etc/passwd", "00:00"),
        ("", "00:00"),
    ],
)
def test_a_calendar_head_office_cannot_use_is_refused_by_name(zone: str, starts: str) -> None:
    with pytest.raises(BadCalendar):
        businessday.calendar(zone, starts)


@given(
    created=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    offset=st.floats(-1e7, 1e7),
    pull_before=st.floats(0, 1e7),
    received_after=st.floats(0, 1e7),
)
def test_the_time_head_office_holds_is_always_between_the_last_pull_and_arrival(
    created: datetime, offset: float, pull_before: float, received_after: float
) -> None:
    received = datetime(2050, 1, 1, tzinfo=UTC) + timedelta(seconds=received_after)
    last_pull = received - timedelta(seconds=pull_before)
    moment = businessday.effective(created, offset, 300, last_pull, received)
    assert last_pull <= moment <= received
    if abs(offset) <= 300 and last_pull <= created <= received:
        assert moment == created  # a right clock is taken as it is
    assert businessday.effective(None, offset, 300, last_pull, received) == received


def test_a_clock_off_beyond_the_skew_is_corrected_by_the_offset_measured() -> None:
    made = datetime(2026, 11, 17, 10, 0, tzinfo=UTC)  # the till says: 3 days ago
    three_days = 3 * 86400.0
    assert businessday.corrected(made, -three_days, 300) == made + timedelta(days=3)
    assert businessday.corrected(made, -200.0, 300) == made  # within the skew: as it is
    assert BusinessDay().day_starts == "00:00" and businessday.calendar("UTC", "04:30").day_starts == "04:30"


# -- head office filing entries by its own time ------------------------------------------------------


@pytest.fixture
def hq(hq_url: str) -> Iterator[HqStore]:
    store = HqStore(hq_url, Settings(clock_skew=300, spend_needs_proof=False, recompute=False))
    store.add_terminal("T1", "S1", "t1")
    store.upsert_member("M-1", "Aiko", "basic", 0)
    yield store
    store.close()


def push(hq: HqStore, seq: int, made: datetime, clock: datetime, member: str = "M-1") -> None:
    hq.ingest(
        "T1",
        [
            WireEntry(
                terminal_id="T1",
                seq=seq,
                txn_id=f"T1-{seq}",
                kind="sale",
                created_at=iso(made),
                payload=entries.sale(member, 1000, earned=10, store_id="S1"),
            )
        ],
        clock=iso(clock),
    )


def day_and_made(hq: HqStore, seq: int) -> tuple[str, str]:
    with hq.db.read() as tx:
        row = tx.one("SELECT day, made_at FROM journal WHERE terminal_id = 'T1' AND seq = ?", [seq])
    assert row is not None
    return str(row[0]), str(row[1])


def test_a_till_three_days_slow_files_its_sales_under_head_offices_day(hq: HqStore) -> None:
    now = datetime.now(UTC)
    slow = timedelta(days=3)
    push(hq, 1, now - slow, now - slow)  # made just now, by a clock three days slow
    day, made = day_and_made(hq, 1)
    assert day == now.date().isoformat() or day == (now - timedelta(seconds=5)).date().isoformat()
    assert abs(datetime.fromisoformat(made.replace("Z", "+00:00")) - now) < timedelta(seconds=30)
    reasons = {i.reason for i in hq.items()}
    assert {Reason.CLOCK_SKEW, Reason.CLOCK_BEHIND} <= reasons  # the till's clock, and the entry's time
    [terminal] = hq.terminals()
    assert abs(terminal["clock_offset"] + slow.total_seconds()) < 30


def test_a_store_with_a_cut_off_files_a_late_night_sale_under_the_day_before(hq: HqStore) -> None:
    hq.set_store("S1", "Asia/Tokyo", "04:00")
    with hq.db.write() as tx:  # the till pulled a day ago: its late-night sale can be that old
        tx.run(
            "UPDATE terminals SET last_pull = ? WHERE terminal_id = 'T1'", [iso(datetime.now(UTC) - timedelta(days=1))]
        )
    late = datetime.now(UTC) - timedelta(hours=1)
    late_tokyo = late.astimezone(ZoneInfo("Asia/Tokyo"))
    push(hq, 1, late, datetime.now(UTC))
    expected = (late_tokyo - timedelta(hours=4)).date().isoformat()
    assert day_and_made(hq, 1)[0] == expected
    assert [s for s in hq.stores() if s["store_id"] == "S1"][0]["day_starts"] == "04:00"


def test_a_slow_till_cannot_backdate_a_sale_before_a_members_block(hq: HqStore) -> None:
    hq.set_blocked("member", "M-1", True, "Mio", "card reported stolen")
    now = datetime.now(UTC)
    # the till's clock is a day slow and says the sale came before the block: head office's time says after
    push(hq, 1, now - timedelta(days=1), now - timedelta(days=1))
    blocked = [i for i in hq.items() if i.seq == 1 and i.reason == Reason.MEMBER_BLOCKED]
    assert len(blocked) == 1 and blocked[0].state == "open"
    # what happened at the till is booked (goods left the store), for a person to follow up
    assert hq.effects("T1") == {1: Effect.APPLIED}
    # unblocking is kept with who and why, like the block
    assert hq.set_blocked("member", "M-1", False, "Mio", "found the card")["status"] == "active"
    with hq.db.read() as tx:
        kept = tx.all("SELECT status, by_whom, reason FROM status_changes WHERE subject = 'M-1'")
    assert sorted(tuple(r) for r in kept) == [
        ("active", "Mio", "found the card"),
        ("blocked", "Mio", "card reported stolen"),
    ]


def test_an_entry_ahead_of_head_office_is_flagged_and_held_at_arrival(hq: HqStore) -> None:
    now = datetime.now(UTC)
    push(hq, 1, now + timedelta(hours=6), now)  # the request's clock is right: only this entry's time is not
    flagged = [i for i in hq.items() if i.reason == Reason.CLOCK_AHEAD]
    assert len(flagged) == 1 and flagged[0].detail["ahead_seconds"] > 6 * 3600 - 60
    made = datetime.fromisoformat(day_and_made(hq, 1)[1].replace("Z", "+00:00"))
    assert made <= datetime.now(UTC)


def test_the_store_command_changes_only_what_it_is_given(tmp_path: Path) -> None:
    """`hq store S --timezone Z` keeps the store's cut-off, `--day-starts` alone keeps its time zone (it was
    ignored), and a cut-off for a store head office has no calendar for asks for the time zone."""
    import json

    from typer.testing import CliRunner

    from hq.cli import app

    db = ["--db", str(tmp_path / "hq.db")]
    HqStore(str(tmp_path / "hq.db")).close()
    run = CliRunner().invoke

    def store(*args: str) -> dict[str, str]:
        done = run(app, ["store", "S1", *args, *db])
        assert done.exit_code == 0, done.output
        return dict(json.loads(done.stdout))

    assert store("--timezone", "Europe/Paris", "--day-starts", "04:00")["day_starts"] == "04:00"
    moved = store("--timezone", "Asia/Tokyo")
    assert (moved["timezone"], moved["day_starts"]) == ("Asia/Tokyo", "04:00")
    later = store("--day-starts", "05:00")
    assert (later["timezone"], later["day_starts"]) == ("Asia/Tokyo", "05:00")
    assert (store()["timezone"], store()["day_starts"]) == ("Asia/Tokyo", "05:00")
    unknown = run(app, ["store", "S9", "--day-starts", "05:00", *db])
    assert unknown.exit_code == 1 and "give --timezone" in unknown.output


def test_a_store_given_to_a_merchant_keeps_the_chains_time_zone(tmp_path: Path) -> None:
    """A store head office has no calendar for follows the chain's time zone (`hq serve --timezone`). Giving it
    to a merchant (`hq store S --merchant M`, a command of its own process) once pinned it to UTC, moving every
    sale of the store's evenings to another business day: head office keeps the zone it serves with, and the
    commands read it; `--timezone` still sets another."""
    import json

    from tests.fixtures.hq import HqProcess

    hq = HqProcess(tmp_path, extra=("--timezone", "Asia/Tokyo"))
    hq.add_terminal("T-1", "S-TILL")  # a store head office knows by its terminal alone
    hq.start()
    try:
        hq.cli("merchant", "add", "M-A", "--name", "Bakery")
        hq.cli("store", "S-NEW", "--merchant", "M-A")
        assert json.loads(hq.cli("store", "S-NEW"))["timezone"] == "Asia/Tokyo"
        hq.cli("store", "S-OWN", "--merchant", "M-A", "--timezone", "Europe/Paris")
        assert json.loads(hq.cli("store", "S-OWN"))["timezone"] == "Europe/Paris"
        listed = {s["store_id"]: s["timezone"] for s in json.loads(hq.cli("stores", "--json"))}
        assert (listed["S-NEW"], listed["S-OWN"], listed["S-TILL"]) == ("Asia/Tokyo", "Europe/Paris", "Asia/Tokyo")
    finally:
        hq.kill()
