"""Campaigns (docs/campaigns.md): a segment, offer variants, a validity, a schedule, a control group, an
optional chain-wide quantity; issued as personal coupons that reach tills with their next pull, or as points
credited at once through ``hq.adjustments`` (a points variant: tills learn the balance with their next pull).

The pure part: the spec (pydantic models; every refusal a ``CampaignInvalid`` with a stable
``sync.protocol.ErrorCode``), when a schedule is due (``due``: the run of a local day, in the campaign's
time zone), which birthdays a day serves (a 29 February birthday is served on 28 February in other
years), and the arm a member falls in (``arm_of``: an HMAC keyed by the chain's campaign secret, the
campaign and the member, so a member stays in the same arm across runs and processes, and a till that
sees the coupons cannot tell who is in control).

The I/O part, through a ``Tx``: ``run_one`` reads the segment once, then decides its members in member id
order, in chunks of ``CHUNK`` (one transaction each, the member rows locked): left out by the chain-wide
holdout; gone since the segment was read (erased, blocked, no longer consenting); already decided for
this occasion (nothing happens twice: the row ``campaign_members (campaign, member, occasion)`` is the
key); over the chain-wide offer cap (at most ``max`` offers in ``days`` × 24 hours across all campaigns,
before the arm is drawn, so both arms stay alike); in the control group (recorded, nothing issued);
otherwise a variant's coupon, issued, or its points, credited (``_grant``). ``run_due`` runs every
campaign whose key is due and not done.

Occasions: ``once``; ``daily`` (the local day); ``birthday`` (``birthday:YEAR``); ``after_visit``
(``visit:DAY``: once per last visit, so a member who comes back and lapses again gets it again);
``checkin`` (``checkin:STORE:DAY``, the store's business day: no timer runs it, a member's check-in does,
through ``reward_checkin``, the same decision for one member: docs/checkin.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from hq import adjustments, audit, checkins, clockcheck, pools, segments, stats
from hq.db.engine import Db, Tx, utc_now
from hq.errors import HqError, Refused
from hq.ingest import next_versions
from sync.protocol import ErrorCode
from terminal.canonical import canonical_text, text_digest
from terminal.coupons import parse_coupon
from terminal.loyalty import DocumentError

CAMPAIGN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
VARIANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
CHUNK = 2000
"""Members decided per transaction: a run interrupted half-way resumes where it stopped."""
CATCH_UP_DAYS = 3
"""A birthday or an anniversary of a visit is still served this many days late (a run missed)."""
BP = 10_000
CONTROL = "control"
STATES = ("active", "paused", "ended")
POOL_PREFIX = "campaign:"
MAX_POINTS = 100_000
"""The most points a points variant credits a member for one occasion."""
POINTS_PREFIX = "pts-"
"""A points grant's adjustment id starts with it (a campaign's coupon id with ``cmp-``)."""
TEMPLATE_KEYS_REFUSED = frozenset({"coupon_id", "member_id", "starts", "ends", "pool", "campaign"})
"""Set by the campaign on each coupon it issues; a template cannot name them."""


class CampaignInvalid(Refused):
    """A campaign spec, a setting or a request refused; ``code`` says why, stably."""


class UnknownCampaign(HqError):
    pass


class RewardsFailed(HqError):
    """Some pending check-ins could not be decided (the others were): they stay pending for the next try."""


# -- the spec -----------------------------------------------------------------------------------------


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (an IANA name such as Asia/Tokyo)") from exc
    return value


def _hhmm(value: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError("a time of day is HH:MM, 00:00..23:59")
    return value


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("a name is printable text (no control characters)")
    return value


def _coupon_template(value: dict[str, Any]) -> dict[str, Any]:
    named = TEMPLATE_KEYS_REFUSED & value.keys()
    if named:
        raise ValueError(f"a coupon template cannot set {', '.join(sorted(named))}: the campaign sets them")
    try:
        parse_coupon("template", value)
    except DocumentError as exc:
        raise ValueError(f"the coupon template is not a coupon: {exc}") from exc
    return value


Zone = Annotated[StrictStr, AfterValidator(_zone)]
HHMM = Annotated[StrictStr, AfterValidator(_hhmm)]
Template = Annotated[dict[str, Any], AfterValidator(_coupon_template)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Once(_Model):
    """One run, at a local date and time."""

    kind: Literal["once"]
    at: datetime


class Daily(_Model):
    """A run each local day at ``at``: that day's members; a day missed is not issued late."""

    kind: Literal["daily"]
    at: HHMM = "06:00"


class Birthday(_Model):
    """A run each local day at ``at``: members whose birthday is ``days_before`` days ahead (or was, up to
    ``CATCH_UP_DAYS`` days ago: a missed run); one offer per member per year."""

    kind: Literal["birthday"]
    at: HHMM = "06:00"
    days_before: Annotated[StrictInt, Field(ge=0, le=60)] = 0


class AfterVisit(_Model):
    """A run each local day at ``at``: members whose last visit was ``days`` days ago (or up to
    ``CATCH_UP_DAYS`` more); once per last visit."""

    kind: Literal["after_visit"]
    at: HHMM = "06:00"
    days: Annotated[StrictInt, Field(ge=1, le=730)]


class Checkin(_Model):
    """No timer: each member who checks in at a store (the wallet's scan of a till's code, a tap on a door
    reader) is decided once per store and business day of that store; ``stores`` empty: every store."""

    kind: Literal["checkin"]
    stores: Annotated[list[Annotated[StrictStr, Field(min_length=1, max_length=128)]], Field(max_length=1000)] = []
    max_per_store_day: Annotated[StrictInt, Field(ge=1, le=1_000_000)] | None = None
    """At most this many rewards (control decisions not counted) per store and day: what a till's stolen
    credential can mint at its store in a day."""


AnySchedule = Once | Daily | Birthday | AfterVisit | Checkin
Schedule = Annotated[AnySchedule, Field(discriminator="kind")]


class Variant(_Model):
    """One offer: a coupon template (any coupon kind of the loyalty engine, points bonuses included), or
    ``points`` credited at once when a member is decided into the variant (an adjustment, ``hq.adjustments``)."""

    variant: Annotated[StrictStr, Field(pattern=VARIANT_ID.pattern)]
    weight: Annotated[StrictInt, Field(ge=1, le=100)] = 1
    coupon: Template | None = None
    points: Annotated[StrictInt, Field(ge=1, le=MAX_POINTS)] | None = None

    @model_validator(mode="after")
    def _one_offer(self) -> Variant:
        if (self.coupon is None) == (self.points is None):
            raise ValueError("a variant has exactly one of coupon and points")
        return self


class CampaignSpec(_Model):
    name: Annotated[StrictStr, Field(min_length=1, max_length=200), AfterValidator(_printable)]
    segment: Annotated[StrictStr, Field(pattern=segments.SEGMENT_ID.pattern)]
    """A stored segment's id; each run reads its definition as it is then."""
    variants: Annotated[list[Variant], Field(min_length=1, max_length=10)]
    schedule: Schedule
    timezone: Zone = "UTC"
    valid_days: Annotated[StrictInt, Field(ge=1, le=366)] = 7
    """Each coupon is valid from its local day of issue for this many days."""
    starts: date | None = None
    ends: date | None = None
    """Runs happen on local days in [starts, ends] (both optional)."""
    control_share: Annotated[float, Field(ge=0, le=0.5)] = 0.1
    quantity: Annotated[StrictInt, Field(ge=1, le=10_000_000)] | None = None
    """A flash drop: at most this many redemptions chain-wide (tills redeem within their allocation)."""
    measure_days: Annotated[StrictInt, Field(ge=1, le=366)] | None = None
    """Each member's outcome window from the day it was decided (default: ``valid_days``)."""
    require_consent: bool = True
    """Only members whose marketing consent is given and not withdrawn."""

    def window(self) -> int:
        return self.measure_days or self.valid_days


def parse_spec(data: Any) -> CampaignSpec:
    """A campaign from its JSON document, every rule checked (the one reading of a stored spec too: a spec stored
    before a rule existed is refused by it when it is read, ``stored_spec``)."""
    if not isinstance(data, dict):
        raise CampaignInvalid(ErrorCode.CAMPAIGN_MALFORMED, "a campaign is a JSON object")
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "campaign"
        raise CampaignInvalid(ErrorCode.CAMPAIGN_MALFORMED, f"{where}: {first.get('msg', 'invalid')}") from exc
    return checked(spec)


def checked(spec: CampaignSpec) -> CampaignSpec:
    """The rules between fields; ``CampaignInvalid`` (``campaign_malformed``) for the first one broken."""
    names = [v.variant for v in spec.variants]
    if len(set(names)) != len(names) or CONTROL in names:
        raise CampaignInvalid(ErrorCode.CAMPAIGN_MALFORMED, f"variant names must be distinct and not {CONTROL!r}")
    if spec.starts and spec.ends and spec.ends < spec.starts:
        raise CampaignInvalid(ErrorCode.CAMPAIGN_MALFORMED, "ends is before starts")
    if spec.quantity is not None and any(v.points is not None for v in spec.variants):
        raise CampaignInvalid(
            ErrorCode.CAMPAIGN_MALFORMED, "a flash drop's quantity bounds coupons: its variants cannot credit points"
        )
    schedule = spec.schedule
    if isinstance(schedule, Checkin) and schedule.max_per_store_day is None and any(v.points for v in spec.variants):
        # a till's stolen credential names any member at the door: without the cap, points for every one a day
        raise CampaignInvalid(
            ErrorCode.CAMPAIGN_MALFORMED, "a check-in campaign that credits points needs max_per_store_day"
        )
    return spec


def stored_spec(text: Any) -> CampaignSpec:
    """A stored spec (its JSON text or document) read by today's rules: one stored before a rule (a check-in
    campaign crediting points without ``max_per_store_day``) is ``campaign_malformed`` and is not served."""
    return parse_spec(json.loads(text) if isinstance(text, str) else text)


def canonical(spec: CampaignSpec) -> str:
    return canonical_text(spec.model_dump(mode="json", exclude_none=True))


def check_id(campaign_id: str) -> str:
    if not CAMPAIGN_ID.fullmatch(campaign_id):
        raise CampaignInvalid(
            ErrorCode.CAMPAIGN_MALFORMED, "a campaign id is 1..64 of A-Z a-z 0-9 . _ - (first: A-Z a-z 0-9)"
        )
    return campaign_id


# -- pure: when a schedule is due, and for whom -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Due:
    """A run of a campaign: its key (at most one run per key ever finishes) and its local day."""

    run_key: str
    day: date


def local_now(spec: CampaignSpec, now: datetime) -> datetime:
    return now.astimezone(ZoneInfo(spec.timezone))


def due(spec: CampaignSpec, now: datetime) -> Due | None:
    """The run the schedule asks for at ``now`` (an aware time), or None; within [starts, ends]. A ``once``
    missed (head office down) runs when it is back, on that day, while it is not past ``ends``."""
    local = local_now(spec, now)
    today = local.date()
    schedule = spec.schedule
    if isinstance(schedule, Checkin):
        return None  # a member's check-in decides it, not the timer
    if isinstance(schedule, Once):
        if schedule.at.tzinfo is None:  # the local wall clock has passed it (a time a gap skips: from the gap's end)
            if local.replace(tzinfo=None) < schedule.at:
                return None
            planned = schedule.at.date()
        else:
            if now < schedule.at:
                return None
            planned = schedule.at.astimezone(ZoneInfo(spec.timezone)).date()
        if spec.starts and planned < spec.starts or spec.ends and today > spec.ends:
            return None  # planned before the campaign's days, or run late (head office was down) after them
        return Due("once", max(planned, today))  # its coupons valid from the day it runs, late or not
    else:
        hour, minute = (int(p) for p in schedule.at.split(":"))
        if (local.hour, local.minute) < (hour, minute):
            return None
        found = Due(today.isoformat(), today)
    if spec.starts and found.day < spec.starts or spec.ends and found.day > spec.ends:
        return None
    return found


def scheduled(spec: CampaignSpec, found: Due) -> datetime:
    """The instant the schedule named for the run ``found``: ``once`` its ``at``, any other its local day at
    ``at`` in the campaign's zone (a time a daylight-saving gap skips is read with the offset before it: up to
    the gap's length after the moment the run is due, which is why a run's moment is the earlier of this and the
    time it runs); never before the start of the run's local day (a ``once`` run days late, when head office was
    back)."""
    zone = ZoneInfo(spec.timezone)
    schedule = spec.schedule
    midnight = datetime(found.day.year, found.day.month, found.day.day, tzinfo=zone)
    if isinstance(schedule, Once):
        return max(schedule.at.replace(tzinfo=zone) if schedule.at.tzinfo is None else schedule.at, midnight)
    hour, minute = (int(p) for p in schedule.at.split(":")) if not isinstance(schedule, Checkin) else (0, 0)
    return midnight.replace(hour=hour, minute=minute)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def birthday_occasions(day: date, days_before: int) -> list[tuple[str, str]]:
    """(birth month-day ``MM-DD``, occasion) pairs a run on ``day`` serves: the birthdays ``days_before``
    days ahead, and up to ``CATCH_UP_DAYS`` earlier ones; a 29 February birthday is kept on 28 February
    in a year without one."""
    found: list[tuple[str, str]] = []
    for late in range(CATCH_UP_DAYS + 1):
        target = day + timedelta(days=days_before - late)
        occasion = f"birthday:{target.year}"
        found.append((target.strftime("%m-%d"), occasion))
        if target.month == 2 and target.day == 28 and not _leap(target.year):
            found.append(("02-29", occasion))
    return found


def visit_days(day: date, days: int) -> tuple[str, str]:
    """The last visits a run on ``day`` serves: ``days`` ago, or up to ``CATCH_UP_DAYS`` more, as the first day
    (inclusive) and the day after the last (exclusive): ``last_visit`` is a time (``2026-03-01T03:00:00.000Z``),
    which sorts after its own day's ``2026-03-01``."""
    return (day - timedelta(days=days + CATCH_UP_DAYS)).isoformat(), (day - timedelta(days=days - 1)).isoformat()


def bucket(key: str, member_id: str) -> int:
    """A uniform number in [0, BP) for (key, member): the same everywhere; unpredictable to whoever does not
    hold the secret in ``key`` (the holdout's seed, the chain's campaign secret)."""
    digest = hmac.new(key.encode(), member_id.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % BP


def arm_of(campaign_id: str, spec: CampaignSpec, member_id: str, secret: str = "") -> str:
    """``control`` for ``control_share`` of the members, else a variant in proportion to the weights; keyed
    with the chain's campaign ``secret``, so a till that sees coupons cannot tell who is in control."""
    if bucket(f"{secret}:{campaign_id}:control", member_id) < round(spec.control_share * BP):
        return CONTROL
    total = sum(v.weight for v in spec.variants)
    pick = bucket(f"{secret}:{campaign_id}:variant", member_id) % total
    for variant in spec.variants:
        if pick < variant.weight:
            return variant.variant
        pick -= variant.weight
    raise AssertionError("weights cover every pick")


def _digest(campaign_id: str, member_id: str, occasion: str) -> str:
    return hashlib.sha256(f"{campaign_id}\x00{member_id}\x00{occasion}".encode()).hexdigest()[:20]


def coupon_id_of(campaign_id: str, member_id: str, occasion: str) -> str:
    return f"cmp-{campaign_id}-{_digest(campaign_id, member_id, occasion)}"


def points_id_of(campaign_id: str, member_id: str, occasion: str) -> str:
    """The adjustment id of a points variant's credit: one per (campaign, member, occasion), so a rerun or a
    second decision at the same moment credits once (``hq.adjustments.apply`` is idempotent by id)."""
    return f"{POINTS_PREFIX}{campaign_id}-{_digest(campaign_id, member_id, occasion)}"


def points_reason(campaign_id: str, occasion: str) -> str:
    return f"campaign {campaign_id}, {occasion}"[:200]


def coupon_body(
    campaign_id: str, spec: CampaignSpec, variant: Variant, member_id: str, coupon_id: str, day: date
) -> dict[str, Any]:
    assert variant.coupon is not None, "a points variant issues no coupon"
    body = dict(variant.coupon)
    body.update(
        coupon_id=coupon_id,
        member_id=member_id,
        campaign=campaign_id,
        starts=day.isoformat(),
        ends=(day + timedelta(days=spec.valid_days)).isoformat(),
    )
    limits = dict(body.get("limits") or {})
    limits.setdefault("per_member", 1)  # a personal offer is used once unless the template says otherwise
    body["limits"] = limits
    if spec.quantity is not None:
        body["pool"] = POOL_PREFIX + campaign_id
    return body


# -- settings: the offer cap, the holdout, category margins -------------------------------------------


class OfferCap(_Model):
    """At most ``max`` offers per member in any ``days`` consecutive days, across every campaign
    (control decisions are not offers). ``max = 0``: no cap."""

    max: Annotated[StrictInt, Field(ge=0, le=1000)] = 1
    days: Annotated[StrictInt, Field(ge=1, le=366)] = 1


class Holdout(_Model):
    """A chain-wide share of members that receives no campaign at all, drawn again every ``days`` days."""

    share: Annotated[float, Field(ge=0, le=0.5)] = 0.0
    days: Annotated[StrictInt, Field(ge=1, le=3660)] = 90


class Settings(_Model):
    offer_cap: OfferCap = OfferCap()
    holdout: Holdout = Holdout()
    margins: dict[Annotated[StrictStr, Field(min_length=1, max_length=64)], Annotated[float, Field(ge=0, le=100)]] = (
        Field(default_factory=dict)
    )
    """Gross margin per category in percent; ``*`` for any other category (default 30)."""
    default_margin: Annotated[float, Field(ge=0, le=100)] = 30.0

    def margin(self, category: str) -> float:
        return self.margins.get(category, self.margins.get("*", self.default_margin))


SETTINGS_KEY = "campaign_settings"
SECRET_KEY = "campaign_secret"


def secret(tx: Tx) -> str:
    """The chain's campaign secret (made on first use, never leaves head office): it keys the arms."""
    tx.run(
        "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        [SECRET_KEY, secrets.token_hex(32)],
    )
    row = tx.one("SELECT value FROM settings WHERE name = ?", [SECRET_KEY])
    assert row is not None
    return str(row[0])


def read_settings(tx: Tx) -> Settings:
    row = tx.one("SELECT value FROM settings WHERE name = ?", [SETTINGS_KEY])
    return Settings.model_validate_json(str(row[0])) if row else Settings()


def parse_settings(data: Any) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        raise CampaignInvalid(ErrorCode.CAMPAIGN_MALFORMED, f"{where}: {first.get('msg', 'invalid')}") from exc


def write_settings(tx: Tx, settings: Settings) -> None:
    tx.run(
        "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        [SETTINGS_KEY, settings.model_dump_json()],
    )


@dataclass(frozen=True, slots=True)
class Period:
    period_id: str
    starts: date
    ends: date
    share_bp: int
    seed: str

    def holds(self, member_id: str) -> bool:
        return bucket(f"holdout:{self.seed}", member_id) < self.share_bp


def holdout_period(tx: Tx, settings: Settings, day: date) -> Period | None:
    """The holdout period holding ``day`` (a UTC day: one chain-wide calendar, whatever the campaigns' time
    zones). Periods follow each other without overlap: a new one starts where the last ended (or on
    ``day`` when there was none, or when the last ended before a holdout was wanted again), with a new random
    seed, so the members held out change, and ends no later than a period drawn for a later day (under a clock
    that was ahead: a check-in at ingest, a run at a named time). ``share: 0``: no period."""
    row = tx.one(
        "SELECT period_id, starts, ends, share_bp, seed FROM holdout_periods WHERE starts <= ? AND ends > ? "
        "ORDER BY starts DESC LIMIT 1",
        [day.isoformat(), day.isoformat()],
    )
    if row is not None:
        return _period(row)
    share = round(settings.holdout.share * BP)
    if share == 0:
        return None
    last = tx.one("SELECT MAX(ends) FROM holdout_periods WHERE starts <= ?", [day.isoformat()])
    starts = day
    if last is not None and last[0] is not None:
        ended = date.fromisoformat(str(last[0]))
        whole = (day - ended).days // settings.holdout.days
        starts = ended + timedelta(days=whole * settings.holdout.days) if whole < 2 else day
    ends = starts + timedelta(days=settings.holdout.days)
    later = tx.one("SELECT MIN(starts) FROM holdout_periods WHERE starts > ?", [day.isoformat()])
    if later is not None and later[0] is not None:  # drawn under a clock that was ahead: this one ends where it starts
        ends = min(ends, date.fromisoformat(str(later[0])))
    period = Period(f"h{starts.isoformat()}", starts, ends, share, secrets.token_hex(16))
    tx.run(
        "INSERT INTO holdout_periods (period_id, starts, ends, share_bp, seed) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (period_id) DO NOTHING",
        [period.period_id, period.starts.isoformat(), period.ends.isoformat(), period.share_bp, period.seed],
    )  # two runs drawing at once compute the same period id: the first seed stays, both read it back
    held = tx.one(
        "SELECT period_id, starts, ends, share_bp, seed FROM holdout_periods WHERE period_id = ?", [period.period_id]
    )
    assert held is not None
    return _period(held)


def _period(row: Sequence[Any]) -> Period:
    return Period(
        str(row[0]), date.fromisoformat(str(row[1])), date.fromisoformat(str(row[2])), int(row[3]), str(row[4])
    )


def end_holdout(tx: Tx, day: date) -> None:
    """The holdout's settings changed: the current period ends on ``day`` (the next run draws a new one)."""
    tx.run(
        "UPDATE holdout_periods SET ends = ? WHERE starts < ? AND ends > ?",
        [day.isoformat(), day.isoformat(), day.isoformat()],
    )
    tx.run("DELETE FROM holdout_periods WHERE starts >= ?", [day.isoformat()])


def periods(tx: Tx) -> list[Period]:
    rows = tx.all("SELECT period_id, starts, ends, share_bp, seed FROM holdout_periods ORDER BY starts")
    return [_period(r) for r in rows]


# -- the campaigns table ------------------------------------------------------------------------------


_COLUMNS = "campaign_id, name, spec, state, created_by, created_at, updated_at, version"


def _row(row: Sequence[Any]) -> dict[str, Any]:
    keys = ("campaign_id", "name", "spec", "state", "created_by", "created_at", "updated_at", "version")
    found = dict(zip(keys, row, strict=True))
    found["spec"] = json.loads(str(found["spec"]))
    found["version"] = int(found["version"])
    return found


def put(tx: Tx, campaign_id: str, spec: CampaignSpec, by: str, now: str) -> dict[str, Any]:
    """Store (or replace) a campaign; a replaced spec applies to the runs after it. An ended campaign
    cannot be changed (``campaign_ended``), nor a flash drop's quantity once it issued but lowered
    (``_keeps_its_quantity``)."""
    check_id(campaign_id)
    checked(spec)
    segments.get(tx, spec.segment)  # UnknownSegment when it does not exist
    text = canonical(spec)
    held = tx.one(f"SELECT spec, state FROM campaigns WHERE campaign_id = ?{tx.for_update}", [campaign_id])
    if held is None:
        tx.run(
            f"INSERT INTO campaigns ({_COLUMNS}) VALUES (?, ?, ?, 'active', ?, ?, ?, 1)",
            [campaign_id, spec.name, text, by, now, now],
        )
    elif held[1] == "ended":
        raise CampaignInvalid(ErrorCode.CAMPAIGN_ENDED, f"campaign {campaign_id} has ended")
    elif held[0] != text:
        _keeps_its_quantity(tx, campaign_id, held[0], spec)
        tx.run(
            "UPDATE campaigns SET name = ?, spec = ?, updated_at = ?, version = version + 1 WHERE campaign_id = ?",
            [spec.name, text, now, campaign_id],
        )
    if spec.quantity is not None:  # a flash drop: its pool, which the tills' allocations come from (hq.pools)
        try:
            pools.create(tx, POOL_PREFIX + campaign_id, spec.quantity, now)
        except pools.PoolRefused as exc:
            raise CampaignInvalid(exc.code, str(exc)) from exc
    if held is None or held[0] != text:
        audit.append(tx, by, "put_campaign", campaign_id, "", {"spec": json.loads(text)})
    return get(tx, campaign_id)


def _keeps_its_quantity(tx: Tx, campaign_id: str, held_text: Any, spec: CampaignSpec) -> None:
    """A stored flash drop that has issued coupons keeps its bound: its quantity may not be removed (the
    coupons issued after would carry no pool, an unbounded drop) nor raised (more than the drop announced)
    (``campaign_quantity_locked``); it may be lowered down to what tills hold or used (``pools.create``:
    ``pool_below_allocated``). Before its first coupon it may change freely."""
    held = json.loads(held_text) if isinstance(held_text, str) else held_text
    was = held.get("quantity") if isinstance(held, dict) else None
    if not isinstance(was, int) or (spec.quantity is not None and spec.quantity <= was):
        return
    issued = tx.one(
        "SELECT 1 FROM campaign_members WHERE campaign_id = ? AND coupon_id IS NOT NULL LIMIT 1", [campaign_id]
    )
    if issued is not None:
        wanted = "removed" if spec.quantity is None else f"raised to {spec.quantity}"
        raise CampaignInvalid(
            ErrorCode.CAMPAIGN_QUANTITY_LOCKED,
            f"campaign {campaign_id} has issued coupons of its quantity {was}: it may not be {wanted}, only lowered",
        )


def get(tx: Tx, campaign_id: str) -> dict[str, Any]:
    row = tx.one(f"SELECT {_COLUMNS} FROM campaigns WHERE campaign_id = ?", [campaign_id])
    if row is None:
        raise UnknownCampaign(f"no campaign {campaign_id[:64]!r}")
    return _row(row)


def spec_of(tx: Tx, campaign_id: str) -> CampaignSpec:
    return stored_spec(get(tx, campaign_id)["spec"])


def listed(tx: Tx) -> list[dict[str, Any]]:
    return [_row(r) for r in tx.all(f"SELECT {_COLUMNS} FROM campaigns ORDER BY campaign_id")]


def service(held: dict[str, Any]) -> dict[str, Any]:
    """Whether a stored campaign is served under today's rules (``served``), and if not why
    (``not_served``: the code and the reason of ``stored_spec``'s refusal, e.g. a points check-in campaign an
    earlier release stored without ``max_per_store_day``): its runs and check-ins skip it until it is saved
    again within the rules. What ``campaign list``/``show`` and the back office's campaign page say."""
    try:
        stored_spec(held["spec"])
    except CampaignInvalid as exc:
        return {"served": False, "not_served": {"code": exc.code.value, "reason": str(exc)}}
    return {"served": True, "not_served": None}


def set_state(tx: Tx, campaign_id: str, state: str, now: str) -> dict[str, Any]:
    if state not in STATES:
        raise CampaignInvalid(ErrorCode.CAMPAIGN_MALFORMED, f"a state is one of {', '.join(STATES)}")
    held = get(tx, campaign_id)
    if held["state"] == "ended" and state != "ended":
        raise CampaignInvalid(ErrorCode.CAMPAIGN_ENDED, f"campaign {campaign_id} has ended")
    tx.run(
        "UPDATE campaigns SET state = ?, updated_at = ?, version = version + 1 WHERE campaign_id = ? AND state <> ?",
        [state, now, campaign_id, state],
    )
    return get(tx, campaign_id)


# -- a run: deciding and issuing ----------------------------------------------------------------------


@dataclass
class RunCounts:
    """What one run did (a rerun of a finished run adds what it newly decided)."""

    targeted: int = 0
    held_out: int = 0
    gone: int = 0
    """Erased, blocked or no longer consenting between reading the segment and deciding."""
    already: int = 0
    capped: int = 0
    control: int = 0
    issued: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, held: dict[str, Any]) -> RunCounts:
        names = ("targeted", "held_out", "gone", "already", "capped", "control")
        return cls(
            **{k: int(held.get(k, 0)) for k in names},
            issued={str(k): int(v) for k, v in held.get("issued", {}).items()},
        )

    def add(self, other: RunCounts) -> None:
        self.targeted += other.targeted
        self.held_out += other.held_out
        self.gone += other.gone
        self.already += other.already
        self.capped += other.capped
        self.control += other.control
        for arm, n in other.issued.items():
            self.issued[arm] = self.issued.get(arm, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {
            "targeted": self.targeted,
            "held_out": self.held_out,
            "gone": self.gone,
            "already": self.already,
            "capped": self.capped,
            "control": self.control,
            "issued": dict(sorted(self.issued.items())),
        }


def _schedule_part(schedule: AnySchedule, day: date) -> tuple[str, str, str, list[Any]]:
    """What the schedule adds to the segment's query: the column naming each member's occasion, a join, a
    condition and its parameters."""
    if isinstance(schedule, Birthday):
        pairs = birthday_occasions(day, schedule.days_before)
        marks = ", ".join("?" for _ in pairs)
        return (
            "p.birth_md",
            "JOIN member_profiles p ON p.member_id = q.member_id",
            f"p.birth_md IN ({marks})",
            [md for md, _ in pairs],
        )
    if isinstance(schedule, AfterVisit):
        low, after = visit_days(day, schedule.days)
        last = stats.LIVE_LAST_VISIT  # the lifetime figures of both rows (``stats.lifetime``)
        where = f"{last} >= ? AND {last} < ? AND {stats.LIVE_VISITS} > 0"
        return last, stats.live_joins("q.member_id"), where, [low, after]
    return "''", "", "1 = 1", []


def _candidates(tx: Tx, spec: CampaignSpec, day: date) -> list[tuple[str, str]]:
    """Every (member id, occasion) the schedule and the segment hold on ``day``, in member id order: the
    segment is evaluated once (a page at a time would evaluate it once a page)."""
    compiled = segments.compiled_in(tx, segments.definition_of(tx, spec.segment), day)
    key, join, where, params = _schedule_part(spec.schedule, day)
    consent = (
        " AND q.member_id IN (SELECT k.member_id FROM consents k WHERE k.channel = 'marketing' "
        "AND k.withdrawn_at IS NULL)"
        if spec.require_consent
        else ""
    )
    sql = f"SELECT q.member_id, {key} FROM ({compiled.sql}) q {join} WHERE {where}{consent} ORDER BY q.member_id"
    segments.prepare(tx)
    occasion = _occasions(spec.schedule, day)
    return [
        (str(member_id), occasion(str(found or ""))) for member_id, found in tx.all(sql, [*compiled.params, *params])
    ]


def _occasions(schedule: AnySchedule, day: date) -> Callable[[str], str]:
    """How a run on ``day`` names a member's occasion from the key its query found."""
    if isinstance(schedule, Once):
        return lambda _: "once"
    if isinstance(schedule, Daily):
        return lambda _: day.isoformat()
    if isinstance(schedule, Birthday):
        by_md = dict(birthday_occasions(day, schedule.days_before))  # each month-day is served once a run
        return lambda md: by_md[md]
    return lambda last_visit: f"visit:{last_visit}"


def _lock(tx: Tx, members: list[str]) -> None:
    """Lock the members' rows, in id order like every run: a concurrent run of this or another campaign
    waits here, then sees what this one decided (PostgreSQL; SQLite's writer holds the whole database)."""
    where, params = tx.in_list("member_id", members)
    tx.all(f"SELECT member_id FROM members WHERE {where} ORDER BY member_id{tx.for_update}", params)


CAP_SLACK = timedelta(hours=1)
"""How much shorter than ``days`` × 24 hours the cap's span is: a daylight-saving day is 23 hours long, and a
daily run at 09:00 local time is then 23 hours after the one the day before."""


def _offers(tx: Tx, cap: OfferCap, members: list[str], moment: datetime, now: datetime) -> dict[str, int]:
    """Offers each member received in the ``cap.days`` × 24 hours (less ``CAP_SLACK``) before the run's
    ``moment``, across every campaign (an instant, not a local day: campaigns in two time zones share one cap).
    Offers are stamped with their run's moment, so a run that came late (head office down, a tick later in its
    minute) does not hold the cap over the next day's run. An offer stamped after ``now`` (a run under a clock
    that was ahead, since corrected) is not counted: it would otherwise hold the member's cap until the real
    clock reached it."""
    if not members or cap.max == 0:
        return {}
    where, params = tx.in_list("member_id", members)
    since = _stamp(moment - timedelta(days=cap.days) + CAP_SLACK)
    rows = tx.all(
        f"SELECT member_id, COUNT(*) FROM campaign_members WHERE {where} AND arm <> ? AND issued_at > ? "
        "AND issued_at <= ? GROUP BY member_id",
        [*params, CONTROL, since, _stamp(now)],
    )
    return {str(r[0]): int(r[1]) for r in rows}


def _still_eligible(tx: Tx, spec: CampaignSpec, members: list[str]) -> set[str]:
    """Of ``members`` (locked), those still eligible now: not erased, deleted or blocked since the segment
    was read, and still consenting when the campaign needs it."""
    where, params = tx.in_list("m.member_id", members)
    sql = (
        f"SELECT m.member_id FROM members m WHERE {where} AND m.deleted = 0 AND m.status <> 'blocked' "
        "AND NOT EXISTS (SELECT 1 FROM erasures e WHERE e.member_id = m.member_id)"
    )
    if spec.require_consent:
        sql += (
            " AND EXISTS (SELECT 1 FROM consents k WHERE k.member_id = m.member_id AND k.channel = 'marketing' "
            "AND k.withdrawn_at IS NULL)"
        )
    return {str(r[0]) for r in tx.all(sql, params)}


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every chunk of one run shares."""

    campaign_id: str
    spec: CampaignSpec
    settings: Settings
    period: Period | None
    day: date
    now: datetime
    secret: str
    moment: datetime
    """When the schedule asked for the run (``scheduled``), or ``now`` when that is earlier (a check-in, an
    operator's rerun): what the offer cap measures from, and what each decision is stamped with."""


def _decide_chunk(tx: Tx, *, run: RunContext, chunk: list[tuple[str, str]]) -> RunCounts:
    """Decide one chunk of (member, occasion) in one transaction; what it did (nothing is counted twice
    when the transaction is retried: the caller adds what the committed attempt returned)."""
    counts = RunCounts(targeted=len(chunk))
    kept = [(m, o) for m, o in chunk if run.period is None or not run.period.holds(m)]
    counts.held_out = len(chunk) - len(kept)
    if not kept:
        return counts
    members = sorted({m for m, _ in kept})
    _lock(tx, members)
    eligible = _still_eligible(tx, run.spec, members)
    counts.gone = sum(1 for m, _ in kept if m not in eligible)
    kept = [(m, o) for m, o in kept if m in eligible]
    where, params = tx.in_list("member_id", sorted({m for m, _ in kept}))
    done = (
        {
            (str(r[0]), str(r[1]))
            for r in tx.all(
                f"SELECT member_id, occasion FROM campaign_members WHERE campaign_id = ? AND {where}",
                [run.campaign_id, *params],
            )
        }
        if kept
        else set()
    )
    fresh = [(m, o) for m, o in kept if (m, o) not in done]
    counts.already = len(kept) - len(fresh)
    cap = run.settings.offer_cap
    offers = _offers(tx, cap, sorted({m for m, _ in fresh}), run.moment, run.now)
    variants = {v.variant: v for v in run.spec.variants}
    until = (run.day + timedelta(days=run.spec.window())).isoformat()
    stamp = _stamp(run.moment)
    decided: list[tuple[Any, ...]] = []
    coupons: list[tuple[str, str, str]] = []
    grants: list[Grant] = []
    for member_id, occasion in fresh:
        # The cap comes before the arm, for control and treated alike: both arms stay alike (a member
        # another campaign just reached is in neither).
        if cap.max and offers.get(member_id, 0) >= cap.max:
            counts.capped += 1
            continue
        arm = arm_of(run.campaign_id, run.spec, member_id, run.secret)
        coupon_id = None
        if arm == CONTROL:
            counts.control += 1
        else:
            offers[member_id] = offers.get(member_id, 0) + 1
            variant = variants[arm]
            if variant.points is not None:  # credited now; the decision records the adjustment's id
                coupon_id = points_id_of(run.campaign_id, member_id, occasion)
                grants.append(Grant(coupon_id, member_id, occasion, variant.points))
            else:
                coupon_id = coupon_id_of(run.campaign_id, member_id, occasion)
                body = coupon_body(run.campaign_id, run.spec, variant, member_id, coupon_id, run.day)
                coupons.append((coupon_id, member_id, canonical_text(body)))
            counts.issued[arm] = counts.issued.get(arm, 0) + 1
        decided.append((run.campaign_id, member_id, occasion, arm, coupon_id, run.day.isoformat(), until, stamp))
    given = _issue(tx, coupons, _stamp(run.now)) | _grant(tx, run, grants)
    # New rows only: the members are locked and were not decided for this occasion (a unique violation
    # would mean another writer broke that rule: the chunk rolls back and the next run retries it).
    tx.insert_rows(
        "campaign_members",
        ["campaign_id", "member_id", "occasion", "arm", "coupon_id", "day", "until_day", "issued_at", "version"],
        [(*row, given.get(str(row[4]), 0)) for row in decided],
    )
    return counts


@dataclass(frozen=True, slots=True)
class Grant:
    """A points variant's credit to one member for one occasion."""

    adjustment_id: str
    member_id: str
    occasion: str
    points: int


def launch_approver(tx: Tx, campaign_id: str, spec: CampaignSpec) -> str | None:
    """Who approved the launch of the campaign as it now stands (the back office's four eyes: the last
    approved ``approvals`` request of kind ``campaign`` for it, when its spec is the one stored), else None
    (stored by an administrator's command, or changed since the approval)."""
    row = tx.one(
        "SELECT decided_by, payload FROM approvals WHERE kind = 'campaign' AND subject = ? AND state = 'approved' "
        "ORDER BY decided_at DESC LIMIT 1",
        [campaign_id],
    )
    if row is None or row[0] is None:
        return None
    try:
        approved = parse_spec(json.loads(str(row[1])).get("spec"))
    except (CampaignInvalid, ValueError, AttributeError):
        return None
    return str(row[0]) if canonical(approved) == canonical(spec) else None


def _grant(tx: Tx, run: RunContext, grants: list[Grant]) -> dict[str, int]:
    """Credit the points of the grants on the one path points move outside a sale (``hq.adjustments``: once
    per id, the member's version bumped so the tills learn the balance with their next pull), each in the
    audit log; the member's version after each credit (what "delivered" measures)."""
    if not grants:
        return {}
    requested_by = f"{POOL_PREFIX}{run.campaign_id}"
    approved_by = launch_approver(tx, run.campaign_id, run.spec) or requested_by
    given: dict[str, int] = {}
    for grant in grants:
        reason = points_reason(run.campaign_id, grant.occasion)
        made = adjustments.fact(grant.member_id, grant.points, 0, reason)
        done = adjustments.apply(tx, grant.adjustment_id, made, requested_by, approved_by)
        details = {"adjustment_id": grant.adjustment_id, "points": grant.points, "points_after": done.points_after}
        audit.append(
            tx, requested_by, "campaign_points", grant.member_id, reason, {**details, "approved_by": approved_by}
        )
        row = tx.one("SELECT version FROM members WHERE member_id = ?", [grant.member_id])
        given[grant.adjustment_id] = int(row[0]) if row else 0
    return given


def _issue(tx: Tx, coupons: list[tuple[str, str, str]], now: str) -> dict[str, int]:
    """Store personal coupons on the one path a coupon takes to the tills: a row at a new version of the
    changes feed (in coupon id order, as ``bump_versions`` gives them), and the version remembered (head
    office prices a sale again with the version the till used); the versions given."""
    if not coupons:
        return {}
    ordered = sorted(coupons)
    first = next_versions(tx, len(ordered))
    given = {c: first + n for n, (c, _, _) in enumerate(ordered)}
    tx.insert_rows(
        "coupons",
        ["coupon_id", "member_id", "body", "uses", "version", "deleted"],
        [(c, m, body, 0, given[c], 0) for c, m, body in ordered],
    )
    digests = [(c, text_digest(body), body) for c, _, body in ordered]
    tx.insert_rows(
        "doc_versions",
        ["kind", "doc_id", "digest", "body", "first_seen"],
        [("coupon", c, d, b, now) for c, d, b in digests],
    )
    tx.insert_rows("doc_events", ["kind", "doc_id", "digest", "at"], [("coupon", c, d, now) for c, d, _ in digests])
    return given


def run_one(db: Db, campaign_id: str, now: datetime, *, occasion_day: date | None = None) -> dict[str, Any] | None:
    """Run the campaign if its schedule is due at ``now`` (or for ``occasion_day``, a local day, when given:
    an operator's rerun, still within ``starts``..``ends``); None when nothing is due. Idempotent: a rerun
    issues only what was not decided, and adds what it did to the run's record."""
    stamp = _stamp(now)
    with db.read() as tx:
        held = get(tx, campaign_id)
    if held["state"] != "active":
        return None
    spec = stored_spec(held["spec"])
    found = due(spec, now) if occasion_day is None else _rerun(spec, occasion_day)
    if found is None:
        return None

    def begin(tx: Tx) -> RunContext:
        settings = read_settings(tx)
        tx.run(
            "INSERT INTO campaign_runs (campaign_id, run_key, day, started_at, counts) VALUES (?, ?, ?, ?, '{}') "
            "ON CONFLICT (campaign_id, run_key) DO NOTHING",
            [campaign_id, found.run_key, found.day.isoformat(), stamp],
        )
        period = holdout_period(tx, settings, now.astimezone(UTC).date())
        moment = now if occasion_day is not None else min(now, scheduled(spec, found))
        return RunContext(campaign_id, spec, settings, period, found.day, now, secret(tx), moment)

    run = db.transact(begin)
    if occasion_day is None:  # the segment reads the windows rolled to its day (a rerun of a past day: the daily rows)
        stats.roll_windows(db, found.day)
    counts = RunCounts()
    for chunk in _pages(db, spec, found.day):
        counts.add(db.transact(partial(_decided_and_counted, run=run, run_key=found.run_key, chunk=chunk)))

    def finish(tx: Tx) -> None:
        tx.run(
            "UPDATE campaign_runs SET finished_at = ? WHERE campaign_id = ? AND run_key = ?",
            [stamp, campaign_id, found.run_key],
        )

    db.transact(finish)
    return {"campaign_id": campaign_id, "run_key": found.run_key, "day": found.day.isoformat(), **counts.as_dict()}


def _decided_and_counted(tx: Tx, *, run: RunContext, run_key: str, chunk: list[tuple[str, str]]) -> RunCounts:
    """One chunk decided, and what it did added to the run's record in the same transaction: a run stopped
    half-way (a killed process) leaves a record of every decision it committed."""
    counts = _decide_chunk(tx, run=run, chunk=chunk)
    row = tx.one(
        f"SELECT counts FROM campaign_runs WHERE campaign_id = ? AND run_key = ?{tx.for_update}",
        [run.campaign_id, run_key],
    )
    total = RunCounts.of(json.loads(str(row[0]))) if row else RunCounts()
    total.add(counts)
    tx.run(
        "UPDATE campaign_runs SET counts = ? WHERE campaign_id = ? AND run_key = ?",
        [json.dumps(total.as_dict()), run.campaign_id, run_key],
    )
    return counts


def _rerun(spec: CampaignSpec, day: date) -> Due | None:
    if isinstance(spec.schedule, Checkin):
        return None
    if spec.starts and day < spec.starts or spec.ends and day > spec.ends:
        return None
    return Due("once" if isinstance(spec.schedule, Once) else day.isoformat(), day)


def _pages(db: Db, spec: CampaignSpec, day: date) -> Iterator[list[tuple[str, str]]]:
    with db.read() as tx:
        found = _candidates(tx, spec, day)
    for at in range(0, len(found), CHUNK):
        yield found[at : at + CHUNK]


def run_due(db: Db, now: datetime) -> list[dict[str, Any]]:
    """Every active campaign whose schedule is due at ``now`` and whose run for that key has not finished,
    in id order; what each run did (or ``error`` for one that failed, its spec unreadable included: the next
    call tries it again, and it stops no other). An operator reruns a finished key with ``run_one(...,
    occasion_day=...)``."""
    with db.read() as tx:
        ids = [
            str(r[0]) for r in tx.all("SELECT campaign_id FROM campaigns WHERE state = 'active' ORDER BY campaign_id")
        ]
        finished = {
            (str(r[0]), str(r[1]))
            for r in tx.all("SELECT campaign_id, run_key FROM campaign_runs WHERE finished_at IS NOT NULL")
        }
    done = []
    for campaign_id in ids:
        try:
            with db.read() as tx:
                spec = spec_of(tx, campaign_id)
            found = due(spec, now)
            if found is None or (campaign_id, found.run_key) in finished:
                continue
            result = run_one(db, campaign_id, now)
        except (HqError, ValueError, KeyError) as exc:  # a spec another release wrote, a zone this host lacks ...
            done.append({"campaign_id": campaign_id, "error": f"{type(exc).__name__}: {exc}"[:500]})
            continue
        if result is not None:
            done.append(result)
    return done


def runs(tx: Tx, campaign_id: str) -> list[dict[str, Any]]:
    rows = tx.all(
        "SELECT run_key, day, started_at, finished_at, counts FROM campaign_runs WHERE campaign_id = ? ORDER BY day, run_key",
        [campaign_id],
    )
    return [
        {"run_key": r[0], "day": r[1], "started_at": r[2], "finished_at": r[3], "counts": json.loads(str(r[4]))}
        for r in rows
    ]


# -- check-in campaigns: one member decided when it checks in -------------------------------------------


def checkin_occasion(store_id: str, day: str) -> str:
    return f"checkin:{store_id}:{day}"


def _checkin_campaigns(tx: Tx, store_id: str, day: date, now: datetime) -> list[tuple[str, CampaignSpec]]:
    """The active check-in campaigns that hold ``store_id`` on ``day`` and run at ``now`` by head office's clock
    too (from ``starts`` to ``CATCH_UP_DAYS`` after ``ends``, in the campaign's zone: a door tap a till dates
    inside the campaign's days is not rewarded before it starts, nor long after it ended; an offline till's tap
    of its last day pushed late still is); a spec that cannot be read, or that today's rules refuse (stored
    before them: a points campaign without its store-day cap), is skipped."""
    found = []
    for campaign_id, text in tx.all(
        "SELECT campaign_id, spec FROM campaigns WHERE state = 'active' ORDER BY campaign_id"
    ):
        try:
            spec = stored_spec(str(text))
        except (CampaignInvalid, ValueError):
            continue
        schedule = spec.schedule
        if not isinstance(schedule, Checkin) or (schedule.stores and store_id not in schedule.stores):
            continue
        if spec.starts and day < spec.starts or spec.ends and day > spec.ends:
            continue
        today = local_now(spec, now).date()
        if spec.starts and today < spec.starts or spec.ends and today > spec.ends + timedelta(days=CATCH_UP_DAYS):
            continue
        found.append((str(campaign_id), spec))
    return found


def _in_segment(tx: Tx, spec: CampaignSpec, member_id: str, day: date) -> bool:
    """Whether the campaign's segment holds the member on ``day``; a segment deleted or unreadable since the
    campaign was saved holds nobody (the check-in itself still counts)."""
    try:
        definition = segments.definition_of(tx, spec.segment)
    except HqError:
        return False
    compiled = segments.compile_segment(definition, day, tx.dialect)
    segments.prepare(tx, whole=False)
    sql = f"SELECT 1 FROM ({compiled.sql}) q WHERE q.member_id = ?"
    return tx.one(sql, [*compiled.params, member_id]) is not None


def _store_day_full(tx: Tx, campaign_id: str, cap: int | None, store_id: str, occasion: str, now: datetime) -> bool:
    """Whether the campaign gave ``cap`` rewards at this store and day already, or at this store in the 24
    hours before ``now`` by head office's clock (a till's clock dating check-ins on other days cannot spread
    them over more caps). The campaign's row is locked first: concurrent check-ins at one store count one
    after the other, so the cap holds exactly."""
    if cap is None:
        return False
    tx.one(f"SELECT campaign_id FROM campaigns WHERE campaign_id = ?{tx.for_update}", [campaign_id])
    row = tx.one(
        "SELECT COUNT(*) FROM campaign_members WHERE campaign_id = ? AND occasion = ? AND arm <> ?",
        [campaign_id, occasion, CONTROL],
    )
    if row is not None and int(row[0]) >= cap:
        return True
    prefix = checkin_occasion(store_id, "")
    recent = tx.one(
        "SELECT COUNT(*) FROM campaign_members WHERE campaign_id = ? AND substr(occasion, 1, ?) = ? AND arm <> ? "
        "AND issued_at > ?",
        [campaign_id, len(prefix), prefix, CONTROL, _stamp(now - timedelta(days=1))],
    )
    return recent is not None and int(recent[0]) >= cap


def reward_checkin(tx: Tx, member_id: str, store_id: str, day: str, now: datetime) -> list[str]:
    """Decide the member's check-in at ``store_id`` on its business day ``day`` for every active check-in
    campaign of that store, as a run decides a member (holdout, still eligible, once per occasion, offer cap,
    arm, coupon or points): the rewards it holds for that check-in, coupon ids and the adjustment ids
    (``points_id_of``) of points credited. The caller records the visit and claims its
    reward in this transaction (``hq.checkins``), so each check-in is decided once."""
    local_day = date.fromisoformat(day)
    held = _checkin_campaigns(tx, store_id, local_day, now)
    if not held:
        return []
    settings = read_settings(tx)
    period = holdout_period(tx, settings, now.astimezone(UTC).date())
    key = secret(tx)
    occasion = checkin_occasion(store_id, day)
    for campaign_id, spec in held:
        assert isinstance(spec.schedule, Checkin)
        if not _in_segment(tx, spec, member_id, local_day):
            continue
        if _store_day_full(tx, campaign_id, spec.schedule.max_per_store_day, store_id, occasion, now):
            continue
        run = RunContext(campaign_id, spec, settings, period, local_day, now, key, now)
        _decide_chunk(tx, run=run, chunk=[(member_id, occasion)])
    rows = tx.all(
        "SELECT coupon_id FROM campaign_members WHERE member_id = ? AND occasion = ? AND coupon_id IS NOT NULL "
        "ORDER BY coupon_id",
        [member_id, occasion],
    )
    return [str(r[0]) for r in rows]


def reward_pending(db: Db, now: datetime) -> int:
    """Decide the rewards of the check-ins still pending (door taps ingest recorded), one transaction each;
    how many were decided here (another process deciding one first is not counted)."""
    with db.read() as tx:
        waiting = checkins.pending(tx)
    decided = 0
    failed: list[str] = []
    for visit in waiting:

        def decide(tx: Tx, visit: checkins.Visit = visit) -> bool:
            if not checkins.claim_reward(tx, visit, _stamp(now)):
                return False
            reward_checkin(tx, visit.member_id, visit.store_id, visit.day, now)
            return True

        try:
            decided += db.transact(decide)
        except (HqError, ValueError) as exc:  # one that fails stops no other; it stays pending, tried again
            failed.append(f"{visit.member_id} at {visit.store_id} on {visit.day}: {exc}"[:300])
    if failed:
        raise RewardsFailed(f"{len(failed)} check-in rewards not decided (first: {failed[0]})")
    return decided


# -- the services the commands and the routes call ----------------------------------------------------


def save(db: Db, campaign_id: str, data: Any, by: str) -> dict[str, Any]:
    spec = parse_spec(data)
    check_id(campaign_id)
    return db.transact(lambda tx: put(tx, campaign_id, spec, by, utc_now()))


def show(db: Db, campaign_id: str) -> dict[str, Any]:
    """A campaign, whether it is served (``service``) and its runs."""
    with db.read() as tx:
        held = get(tx, campaign_id)
        return {**held, **service(held), "runs": runs(tx, campaign_id)}


def all_campaigns(db: Db) -> list[dict[str, Any]]:
    """Every campaign, each with whether it is served (``service``)."""
    with db.read() as tx:
        return [{**held, **service(held)} for held in listed(tx)]


def change_state(db: Db, campaign_id: str, state: str) -> dict[str, Any]:
    return db.transact(lambda tx: set_state(tx, campaign_id, state, utc_now()))


def settings_of(db: Db) -> Settings:
    with db.read() as tx:
        return read_settings(tx)


def save_settings(db: Db, data: Any, today: date | None = None) -> Settings:
    """Store the settings; a changed holdout ends the current period today (UTC), so the next run draws
    one with the new share and length."""
    settings = parse_settings(data)
    day = today or datetime.now(UTC).date()

    def save(tx: Tx) -> None:
        if read_settings(tx).holdout != settings.holdout:
            end_holdout(tx, day)
        write_settings(tx, settings)

    db.transact(save)
    return settings


def parse_now(text: str | None) -> datetime:
    """``--now`` of the commands: an ISO time with an offset (default: the clock)."""
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CampaignInvalid(ErrorCode.CAMPAIGN_MALFORMED, f"{text!r} is not an ISO time") from exc
    if moment.tzinfo is None:
        raise CampaignInvalid(ErrorCode.CAMPAIGN_MALFORMED, f"{text!r} needs an offset (Z or +09:00)")
    return moment


def run_now(db: Db, text: str | None, skew: float = clockcheck.DEFAULT_SKEW) -> datetime:
    """The moment an operator's run (``campaign run``, ``POST /v1/admin/campaigns/run``) acts at: ``text`` when
    given (``parse_now``: the operator names the time), else head office's clock, refused (``clock_suspect``)
    while it disagrees with its tills (``hq.clockcheck``), as the server's timer waits then: a run issues
    offers, draws a holdout and rolls the windows, and none of it is taken back."""
    if text is not None:
        return parse_now(text)
    now = datetime.now(UTC)
    with db.read() as tx:
        found = clockcheck.doubt(tx, now, skew)
    if found is not None:
        raise CampaignInvalid(ErrorCode.CLOCK_SUSPECT, f"{found}; or name the time to run as at (--now)")
    return now
