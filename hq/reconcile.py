"""Reconciliation at head office: end-of-day checks, items and their settlement, the report.

End of day: a terminal reports, for a business day, the seq range it covers and counts and sums
per kind (``sync.protocol.day_totals``). Head office computes the same over the entries it holds
in that range: the day is ``complete`` when nothing is missing and every figure matches, else
``incomplete`` with the missing seq ranges and the differing figures named. An incomplete day is
checked again whenever that terminal's entries arrive.

Items (docs/reconciliation.md): ``open`` -> ``settled_auto`` (by head office: the transaction was
voided, or a small overspend was written off, or a late member registration applied the entry) or
``settled_manual`` (by a named person, with a note). An item that quarantined its entry is settled
only by releasing or rejecting that entry (``hq.quarantine``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hq import audit
from hq.db.engine import Tx
from hq.ingest import NOT_APPLIED, Effect, Item, bump_versions, save_items, surviving_member
from hq.web import safe_cell
from sync.protocol import (
    EntryKind,
    EodReport,
    EodResult,
    GroupPage,
    ItemGroup,
    ItemState,
    KindTotals,
    Reason,
    ReconItem,
    day_totals,
)
from terminal import b64url

REPORT_COLUMNS = (
    "store_id",
    "terminal_id",
    "day",
    "entries",
    "total",
    "points",
    "stored_value",
    "topups",
    "vouchers",
    "open_items",
    "settled_items",
    "open_reasons",
    "eod",
)
_ITEM_COLUMNS = (
    "item_id, store_id, terminal_id, day, seq, txn_id, reason, detail, state, created_at, settled_at, "
    "settled_by, note, quarantine"
)


class UnknownItem(LookupError):
    pass


class AlreadySettled(ValueError):
    """The item was settled by hand already (it stays so)."""


class HeldInQuarantine(ValueError):
    """The item holds its entry in quarantine: only releasing or rejecting that entry settles it."""


def missing_ranges(first: int, last: int, held: Iterable[int]) -> list[tuple[int, int]]:
    missing, expect = [], first
    for seq in held:
        if seq > expect:
            missing.append((expect, seq - 1))
        expect = max(expect, seq + 1)
    if expect <= last:
        missing.append((expect, last))
    return missing


def mismatches(reported: dict[str, KindTotals], held: dict[str, KindTotals]) -> list[str]:
    found = []
    for kind in sorted(set(reported) | set(held)):
        mine, theirs = held.get(kind, KindTotals()), reported.get(kind, KindTotals())
        for name in ("count", "total", "points", "stored_value"):
            if getattr(mine, name) != getattr(theirs, name):
                found.append(f"{kind} {name}: terminal {getattr(theirs, name)}, head office {getattr(mine, name)}")
    return found


def record_eod(tx: Tx, report: EodReport, now: str) -> EodResult:
    totals = json.dumps({k: v.model_dump() for k, v in report.totals.items()}, sort_keys=True)
    tx.run(
        "INSERT INTO eod_reports (terminal_id, day, first_seq, last_seq, totals, status, missing, mismatches, "
        "reported_at, checked_at) VALUES (?, ?, ?, ?, ?, 'incomplete', '[]', '[]', ?, ?) "
        "ON CONFLICT (terminal_id, day) DO UPDATE SET first_seq = excluded.first_seq, last_seq = excluded.last_seq, "
        "totals = excluded.totals, reported_at = excluded.reported_at",
        [report.terminal_id, report.day, report.first_seq, report.last_seq, totals, now, now],
    )
    return check_day(tx, report.terminal_id, report.day, now)


def check_day(tx: Tx, terminal_id: str, day: str, now: str) -> EodResult:
    row = tx.one(
        "SELECT first_seq, last_seq, totals FROM eod_reports WHERE terminal_id = ? AND day = ?", [terminal_id, day]
    )
    if row is None:
        raise UnknownItem(f"no end-of-day report of {terminal_id} for {day}")
    first, last = int(row[0]), int(row[1])
    reported = {k: KindTotals.model_validate(v) for k, v in json.loads(row[2]).items()}
    entries = tx.all(
        "SELECT seq, kind, payload FROM journal WHERE terminal_id = ? AND seq >= ? AND seq <= ? ORDER BY seq",
        [terminal_id, first, last],
    )
    missing = missing_ranges(first, last, (int(r[0]) for r in entries))
    held = day_totals((str(r[1]), json.loads(r[2])) for r in entries)
    differ = mismatches(reported, held)
    if not missing:
        differ += check_topups(tx, terminal_id, day, (first, last), reported, now)
        differ += check_gift_sales(tx, terminal_id, day, (first, last), reported, now)
    status: Literal["complete", "incomplete"] = "complete" if not missing and not differ else "incomplete"
    tx.run(
        "UPDATE eod_reports SET status = ?, missing = ?, mismatches = ?, checked_at = ? WHERE terminal_id = ? "
        "AND day = ?",
        [status, json.dumps(missing), json.dumps(differ), now, terminal_id, day],
    )
    return EodResult(terminal_id=terminal_id, day=day, status=status, missing=missing, mismatches=differ)


TOPUP_KINDS = (EntryKind.TILL_TOPUP.value, EntryKind.TOPUP_VOID.value)
VOUCHER_TAKINGS = (EntryKind.VOUCHER_SALE.value, EntryKind.VOUCHER_REFUND.value)


def check_topups(
    tx: Tx, terminal_id: str, day: str, seqs: tuple[int, int], reported: dict[str, KindTotals], now: str
) -> list[str]:
    """What the till says it took in top-ups that day (its top-ups less their voids) against what head
    office credited of them: a difference (a top-up quarantined, or held for a member head office does not
    know) is named and raises a ``topup_takings_mismatch`` item, one per till and day."""
    declared = sum(reported.get(kind, KindTotals()).stored_value for kind in TOPUP_KINDS)
    rows = tx.all(
        "SELECT txn_id, stored_value, effect FROM journal WHERE terminal_id = ? AND seq >= ? AND seq <= ? "
        "AND kind IN (?, ?) ORDER BY seq",
        [terminal_id, *seqs, *TOPUP_KINDS],
    )
    credited = sum(int(r[1]) for r in rows if r[2] == Effect.APPLIED.value)
    if declared == credited:
        return []
    store = tx.one("SELECT store_id FROM terminals WHERE terminal_id = ?", [terminal_id])
    not_credited = [str(r[0]) for r in rows if r[2] != Effect.APPLIED.value]
    detail = {"declared": declared, "credited": credited, "not_credited": not_credited[:100]}
    item = Item(f"topups:{terminal_id}:{day}", None, None, day, Reason.TOPUP_TAKINGS_MISMATCH, detail)
    save_items(tx, str(store[0]) if store else "", terminal_id, [item], now)
    return [f"top-ups credited: terminal {declared}, head office {credited}"]


GIFT_SALES = (EntryKind.GIFT_ACTIVATE.value, EntryKind.GIFT_LOAD.value)


def check_gift_sales(
    tx: Tx, terminal_id: str, day: str, seqs: tuple[int, int], reported: dict[str, KindTotals], now: str
) -> list[str]:
    """What the till says it took for gift cards that day (cards sold and loaded) against what head office
    put on the cards: a difference (an entry quarantined) is named and raises a ``gift_takings_mismatch`` item,
    one per till and day (docs/giftcards.md)."""
    declared = sum(reported.get(kind, KindTotals()).total for kind in GIFT_SALES)
    rows = tx.all(
        "SELECT txn_id, total, effect FROM journal WHERE terminal_id = ? AND seq >= ? AND seq <= ? "
        "AND kind IN (?, ?) ORDER BY seq",
        [terminal_id, *seqs, *GIFT_SALES],
    )
    standing = {Effect.APPLIED.value, Effect.NONE.value}
    loaded = sum(int(r[1]) for r in rows if r[2] in standing)
    if declared == loaded:
        return []
    store = tx.one("SELECT store_id FROM terminals WHERE terminal_id = ?", [terminal_id])
    detail = {
        "declared": declared,
        "loaded": loaded,
        "not_loaded": [str(r[0]) for r in rows if r[2] not in standing][:100],
    }
    item = Item(f"gifts:{terminal_id}:{day}", None, None, day, Reason.GIFT_TAKINGS_MISMATCH, detail)
    save_items(tx, str(store[0]) if store else "", terminal_id, [item], now)
    return [f"gift cards sold and loaded: terminal {declared}, head office {loaded}"]


def recheck_days(tx: Tx, terminal_id: str, acked_seq: int, now: str) -> None:
    """Entries arrived: check again the incomplete days they may complete."""
    rows = tx.all(
        "SELECT day FROM eod_reports WHERE terminal_id = ? AND status = 'incomplete' AND first_seq <= ?",
        [terminal_id, acked_seq],
    )
    for (day,) in rows:
        check_day(tx, terminal_id, str(day), now)


def _item(row: tuple[Any, ...]) -> ReconItem:
    names = [n.strip() for n in _ITEM_COLUMNS.split(",")]
    data = dict(zip(names, row, strict=True))
    data["detail"] = json.loads(data["detail"])
    data["quarantined"] = bool(data.pop("quarantine"))
    return ReconItem.model_validate(data)


def _filters(tx: Tx, **values: str | None) -> tuple[str, list[Any]]:
    conds, params = ["1 = 1"], []
    for name, value in values.items():
        if value is None:
            continue
        if name == "day_from":
            conds.append("day >= ?")
        elif name == "day_to":
            conds.append("day <= ?")
        else:
            conds.append(f"{name} = ?")
        params.append(value)
    return " AND ".join(conds), params


class BadCursor(ValueError):
    pass


MAX_PAGE = 1000


def encode_cursor(*parts: str) -> str:
    """An opaque cursor: the sort key of the last row shown."""
    return b64url.encode(json.dumps(list(parts)).encode())


def decode_cursor(cursor: str, size: int) -> list[str]:
    try:
        parts = json.loads(b64url.decode(cursor))
    except (ValueError, TypeError) as exc:
        raise BadCursor("the cursor is not one this head office gave") from exc
    if not isinstance(parts, list) or len(parts) != size or not all(isinstance(p, str) for p in parts):
        raise BadCursor("the cursor is not one this head office gave")
    return parts


def items(
    tx: Tx,
    *,
    store_id: str | None = None,
    terminal_id: str | None = None,
    day: str | None = None,
    state: str | None = None,
    reason: str | None = None,
    limit: int | None = None,
    newest: bool = False,
) -> list[ReconItem]:
    """Every item that matches, oldest first (``newest``: the newest first; ``item_page`` reads them a page
    at a time)."""
    where, params = _filters(tx, store_id=store_id, terminal_id=terminal_id, day=day, state=state, reason=reason)
    order = "created_at DESC, item_id DESC" if newest else "created_at, item_id"
    sql = f"SELECT {_ITEM_COLUMNS} FROM recon_items WHERE {where} ORDER BY {order}"
    if limit is not None:
        sql, params = sql + " LIMIT ?", [*params, limit]
    return [_item(r) for r in tx.all(sql, params)]


def item_page(
    tx: Tx, *, after: str | None = None, limit: int = 100, **filters: str | None
) -> tuple[list[ReconItem], str | None]:
    """One page of items, oldest first, and the cursor of the next page (None: no more)."""
    limit = max(1, min(limit, MAX_PAGE))
    where, params = _filters(tx, **filters)
    if after is not None:
        created, item_id = decode_cursor(after, 2)
        where += " AND (created_at > ? OR (created_at = ? AND item_id > ?))"
        params += [created, created, item_id]
    rows = tx.all(
        f"SELECT {_ITEM_COLUMNS} FROM recon_items WHERE {where} ORDER BY created_at, item_id LIMIT ?",
        [*params, limit + 1],
    )
    found = [_item(r) for r in rows[:limit]]
    more = len(rows) > limit
    return found, encode_cursor(found[-1].created_at, found[-1].item_id) if more and found else None


_GROUP_KEY = ("day", "terminal_id", "reason", "state")


def group_page(tx: Tx, *, after: str | None = None, limit: int = 100, **filters: str | None) -> GroupPage:
    """Items grouped by business day, terminal, cause and state (newest day first), one page of groups."""
    limit = max(1, min(limit, MAX_PAGE))
    where, params = _filters(tx, **filters)
    if after is not None:
        day, terminal, reason, state = decode_cursor(after, 4)
        # newest day first, then terminal, reason, state ascending
        where += (
            " AND (day < ? OR (day = ? AND (terminal_id > ? OR (terminal_id = ? AND (reason > ? OR "
            "(reason = ? AND state > ?))))))"
        )
        params += [day, day, terminal, terminal, reason, reason, state]
    rows = tx.all(
        f"SELECT day, terminal_id, reason, state, MIN(store_id), COUNT(*), SUM(quarantine), MIN(created_at), "
        f"MAX(created_at) FROM recon_items WHERE {where} GROUP BY day, terminal_id, reason, state "
        f"ORDER BY day DESC, terminal_id, reason, state LIMIT ?",
        [*params, limit + 1],
    )
    groups = [
        ItemGroup(
            day=r[0],
            terminal_id=r[1],
            reason=r[2],
            state=r[3],
            store_id=r[4],
            count=int(r[5]),
            quarantined=int(r[6] or 0),
            first_at=r[7],
            last_at=r[8],
        )
        for r in rows[:limit]
    ]
    last = groups[-1] if groups else None
    cursor = (
        encode_cursor(last.day, last.terminal_id, last.reason.value, last.state.value)
        if last is not None and len(rows) > limit
        else None
    )
    return GroupPage(groups=groups, next_cursor=cursor)


def summary(tx: Tx, **filters: str | None) -> dict[str, dict[str, int]]:
    """Per cause: how many items are open (and of those, holding their entry in quarantine), settled by
    head office, settled by a person."""
    where, params = _filters(tx, **filters)
    found: dict[str, dict[str, int]] = {}
    for reason, state, n, held in tx.all(
        f"SELECT reason, state, COUNT(*), SUM(quarantine) FROM recon_items WHERE {where} "
        f"GROUP BY reason, state ORDER BY reason, state",
        params,
    ):
        row = found.setdefault(str(reason), {"open": 0, "quarantined": 0, "settled_auto": 0, "settled_manual": 0})
        row[str(state)] = int(n)
        if state == ItemState.OPEN:
            row["quarantined"] = int(held or 0)
    return found


def lift_spend_hold(tx: Tx, detail: Any) -> str | None:
    """Staff settled an ``enrolment_contested`` item (or its terminal was revoked): the member it names may spend
    again once no other open item contests it (docs/enrolment.md); the tills learn it with the member's next
    version. Returns the member whose hold ended, if one did."""
    found = json.loads(detail) if isinstance(detail, str) else detail or {}
    named = found.get("member_id") if isinstance(found, dict) else None
    if not isinstance(named, str):
        return None
    member_id = surviving_member(tx, named)  # the hold is on the id a merged-away one was merged into
    still = tx.all(
        "SELECT detail FROM recon_items WHERE reason = ? AND state = ?",
        [Reason.ENROLMENT_CONTESTED.value, ItemState.OPEN.value],
    )
    holding = [json.loads(d) for (d,) in still if isinstance(d, str)]
    others = {d.get("member_id") for d in holding if d.get("spend_held", True)}  # an item over the bound holds none
    if any(isinstance(o, str) and surviving_member(tx, o) == member_id for o in others):
        return None
    if not tx.run("UPDATE members SET spend_held = 0 WHERE member_id = ? AND spend_held = 1", [member_id]):
        return None
    bump_versions(tx, "members", "member_id", [member_id])
    return member_id


REVOKED_REASON = "terminal revoked"
"""Why a revocation ended the spending holds of the terminal's contests (the audit record's reason)."""


def end_terminal_holds(tx: Tx, terminal_id: str, by: str) -> list[str]:
    """The terminal's credential was revoked: its open ``enrolment_contested`` items hold nothing from now on
    (``spend_held: false`` in their detail, as a contest over the bound) and stay open for staff; each member they
    held spends again unless another terminal's open contest still holds it (``lift_spend_hold``). Audited (who,
    ``REVOKED_REASON``, the items, the members released and those still held) when any of its items held.
    Returns the members whose hold ended (docs/security.md)."""
    rows = tx.all(
        f"SELECT item_id, detail FROM recon_items WHERE terminal_id = ? AND reason = ? AND state = ? "
        f"ORDER BY item_id{tx.for_update}",
        [terminal_id, Reason.ENROLMENT_CONTESTED.value, ItemState.OPEN.value],
    )
    holding = [(item_id, found) for item_id, found in _details(rows) if found.get("spend_held", True)]
    for item_id, found in holding:
        tx.run(
            "UPDATE recon_items SET detail = ? WHERE item_id = ?",
            [json.dumps({**found, "spend_held": False}, sort_keys=True), item_id],
        )
    released = [m for m in (lift_spend_hold(tx, found) for _, found in holding) if m is not None]
    named = {surviving_member(tx, m) for _, found in holding if isinstance(m := found.get("member_id"), str)}
    if holding:
        details = {"items": [i for i, _ in holding], "released": released, "still_held": sorted(named - set(released))}
        audit.append(tx, by, "end_spend_holds", terminal_id, REVOKED_REASON, details)
    return released


def _details(rows: Iterable[Sequence[Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Each (item id, detail) row with its detail read as the object it was written as."""
    found = [(str(item_id), json.loads(d) if isinstance(d, str) else d) for item_id, d in rows]
    return [(item_id, d) for item_id, d in found if isinstance(d, dict)]


def settle_group(tx: Tx, terminal_id: str, day: str, reason: str, by: str, note: str, now: str) -> int:
    """Settle by hand every open item of one group that does not hold its entry in quarantine (those are
    released or rejected one by one); returns how many. Recorded in the audit log when it settled any."""
    if not by.strip() or not note.strip():
        raise ValueError("settling by hand needs who and why")
    contested = tx.all(
        "SELECT detail FROM recon_items WHERE terminal_id = ? AND day = ? AND reason = ? AND state = ? "
        "AND quarantine = 0",
        [terminal_id, day, Reason.ENROLMENT_CONTESTED.value, ItemState.OPEN.value],
    )
    done = tx.run(
        "UPDATE recon_items SET state = ?, settled_at = ?, settled_by = ?, note = ? WHERE terminal_id = ? "
        "AND day = ? AND reason = ? AND state = ? AND quarantine = 0",
        [ItemState.SETTLED_MANUAL.value, now, by, note, terminal_id, day, reason, ItemState.OPEN.value],
    )
    if reason == Reason.ENROLMENT_CONTESTED.value:
        for (detail,) in contested:
            lift_spend_hold(tx, detail)
    if done:
        details = {"terminal_id": terminal_id, "day": day, "reason": reason, "settled": done}
        audit.append(tx, by, "settle_item_group", f"{terminal_id}/{day}/{reason}", note, details)
    return done


def settle(tx: Tx, item_id: str, by: str, note: str, now: str) -> ReconItem:
    """Settle an item by hand: who and why are kept, and recorded in the audit log in this transaction (the
    admin API, the command and the back office all settle here). An item settled by hand stays so."""
    if not by.strip() or not note.strip():
        raise ValueError("settling by hand needs who and why")
    row = tx.one(f"SELECT {_ITEM_COLUMNS} FROM recon_items WHERE item_id = ?{tx.for_update}", [item_id])
    if row is None:
        raise UnknownItem(f"no reconciliation item {item_id}")
    if row[8] == ItemState.SETTLED_MANUAL:
        raise AlreadySettled(f"item {item_id} was already settled by {row[11]}")
    if row[13] and row[8] == ItemState.OPEN:
        raise HeldInQuarantine(f"item {item_id} holds its entry in quarantine: release or reject transaction {row[5]}")
    tx.run(
        "UPDATE recon_items SET state = ?, settled_at = ?, settled_by = ?, note = ? WHERE item_id = ?",
        [ItemState.SETTLED_MANUAL.value, now, by, note, item_id],
    )
    if row[6] == Reason.ENROLMENT_CONTESTED.value:
        lift_spend_hold(tx, row[7])
    details = {"terminal_id": str(row[2]), "store_id": str(row[1]), "day": str(row[3]), "reason": str(row[6])}
    audit.append(tx, by, "settle_item", item_id, note, details | {"txn_id": row[5], "was": str(row[8])})
    found = tx.one(f"SELECT {_ITEM_COLUMNS} FROM recon_items WHERE item_id = ?", [item_id])
    assert found is not None
    return _item(found)


def report(
    tx: Tx,
    *,
    store_id: str | None = None,
    terminal_id: str | None = None,
    day_from: str | None = None,
    day_to: str | None = None,
) -> list[dict[str, Any]]:
    """One row per (store, terminal, day): what head office holds, its items and the end-of-day status."""
    where, params = _filters(tx, store_id=store_id, terminal_id=terminal_id, day_from=day_from, day_to=day_to)
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}

    def row(store: str, terminal: str, day: str) -> dict[str, Any]:
        return rows.setdefault(
            (store, terminal, day),
            {
                "store_id": store,
                "terminal_id": terminal,
                "day": day,
                "entries": 0,
                "total": 0,
                "points": 0,
                "stored_value": 0,
                "topups": 0,
                "vouchers": 0,
                "open_items": 0,
                "settled_items": 0,
                "open_reasons": {},
                "eod": "not reported",
            },
        )

    for s, t, d, n, total, points, value in tx.all(
        f"SELECT store_id, terminal_id, day, COUNT(*), SUM(total), SUM(points), SUM(stored_value) FROM journal "
        f"WHERE {where} GROUP BY store_id, terminal_id, day",
        params,
    ):
        row(s, t, d).update(
            entries=int(n), total=int(total or 0), points=int(points or 0), stored_value=int(value or 0)
        )
    for s, t, d, credited in tx.all(  # top-ups sold at the till that head office credited, less their voids
        f"SELECT store_id, terminal_id, day, SUM(stored_value) FROM journal WHERE {where} AND kind IN (?, ?) "
        "AND effect = ? GROUP BY store_id, terminal_id, day",
        [*params, *TOPUP_KINDS, Effect.APPLIED.value],
    ):
        row(s, t, d)["topups"] = int(credited or 0)
    for s, t, d, taken in tx.all(  # vouchers the till sold that head office activated, less their refunds
        f"SELECT store_id, terminal_id, day, SUM(total) FROM journal WHERE {where} AND kind IN (?, ?) "
        "AND effect NOT IN (?, ?, ?) GROUP BY store_id, terminal_id, day",
        [*params, *VOUCHER_TAKINGS, *sorted(e.value for e in NOT_APPLIED)],
    ):
        row(s, t, d)["vouchers"] = int(taken or 0)
    for s, t, d, state, reason, n in tx.all(
        f"SELECT store_id, terminal_id, day, state, reason, COUNT(*) FROM recon_items WHERE {where} "
        "GROUP BY store_id, terminal_id, day, state, reason",
        params,
    ):
        r = row(s, t, d)
        if state == ItemState.OPEN:
            r["open_items"] += int(n)
            r["open_reasons"][reason] = int(n)
        else:
            r["settled_items"] += int(n)
    _add_eod(tx, rows, row, store_id, terminal_id, day_from, day_to)
    return [rows[key] for key in sorted(rows, key=lambda k: (k[0], k[1], k[2]))]


def _add_eod(
    tx: Tx,
    rows: dict[tuple[str, str, str], dict[str, Any]],
    row: Any,
    store_id: str | None,
    terminal_id: str | None,
    day_from: str | None,
    day_to: str | None,
) -> None:
    where, params = _filters(tx, terminal_id=terminal_id, day_from=day_from, day_to=day_to)
    stores: dict[str, str] = {str(t): str(st) for t, st in tx.all("SELECT terminal_id, store_id FROM terminals")}
    for t, d, status, missing in tx.all(
        f"SELECT terminal_id, day, status, missing FROM eod_reports WHERE {where}", params
    ):
        store = str(stores.get(t, "?"))
        if store_id is not None and store != store_id:
            continue
        gaps = json.loads(missing)
        row(store, t, d)["eod"] = status if not gaps else f"{status}: missing {', '.join(f'{a}-{b}' for a, b in gaps)}"


def report_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    for r in rows:
        writer.writerow([_cell(r[c]) for c in REPORT_COLUMNS])
    return out.getvalue()


def _cell(value: Any) -> str | int:
    if isinstance(value, dict):
        return safe_cell(" ".join(f"{k}={v}" for k, v in sorted(value.items())))
    return safe_cell(value)


# -- the back office's reading: items by cause, store, till and day, with their amounts ------------------------

EXPORT_LIMIT = 100_000
"""The most items one CSV export holds (narrow the filters for more)."""
EXPORT_COLUMNS = (
    "item_id",
    "reason",
    "state",
    "store_id",
    "terminal_id",
    "day",
    "seq",
    "txn_id",
    "kind",
    "total",
    "points",
    "stored_value",
    "quarantined",
    "created_at",
    "settled_at",
    "settled_by",
    "note",
    "detail",
)


@dataclass(frozen=True, slots=True)
class ItemFilter:
    """What a reader of items asked for; None: any. ``stores`` limits everything to those stores (a store
    manager's); None: the whole chain."""

    reason: str | None = None
    store_id: str | None = None
    terminal_id: str | None = None
    day_from: str | None = None
    day_to: str | None = None
    state: str | None = None
    stores: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class ItemRow:
    """An item with the figures of the entry it names (zero when it names none or head office lacks it)."""

    item: ReconItem
    kind: str | None
    total: int
    points: int
    stored_value: int


@dataclass(frozen=True, slots=True)
class Group:
    """Items of one cause, store, till, business day and state, counted, with their entries' sums."""

    reason: str
    store_id: str
    terminal_id: str
    day: str
    state: str
    count: int
    quarantined: int
    total: int
    points: int
    stored_value: int


def where_of(f: ItemFilter, alias: str = "i", day_alias: str | None = None) -> tuple[str, list[Any]]:
    """The SQL condition and parameters of a filter over ``recon_items`` as ``alias`` (the day read from
    ``day_alias`` when given; pure)."""
    conds, params = ["1 = 1"], []
    for column, value in (
        ("reason", f.reason),
        ("store_id", f.store_id),
        ("terminal_id", f.terminal_id),
        ("state", f.state),
    ):
        if value is not None:
            conds.append(f"{alias}.{column} = ?")
            params.append(value)
    if f.day_from is not None:
        conds.append(f"{day_alias or alias}.day >= ?")
        params.append(f.day_from)
    if f.day_to is not None:
        conds.append(f"{day_alias or alias}.day <= ?")
        params.append(f.day_to)
    if f.stores is not None:
        own = sorted(f.stores)
        conds.append(f"{alias}.store_id IN ({', '.join('?' * len(own))})" if own else "1 = 0")
        params += own
    return " AND ".join(conds), params


_JOINED = f"{', '.join('i.' + c.strip() for c in _ITEM_COLUMNS.split(','))}, j.kind, j.total, j.points, j.stored_value"


def groups(tx: Tx, f: ItemFilter, limit: int = 500) -> list[Group]:
    """Items grouped by cause, store, till, day and state, newest day first, with the sums of their entries."""
    where, params = where_of(f)
    rows = tx.all(
        "SELECT i.reason, i.store_id, i.terminal_id, i.day, i.state, COUNT(*), SUM(i.quarantine), "
        "SUM(COALESCE(j.total, 0)), SUM(COALESCE(j.points, 0)), SUM(COALESCE(j.stored_value, 0)) "
        f"FROM recon_items i LEFT JOIN journal j ON j.txn_id = i.txn_id WHERE {where} "
        "GROUP BY i.reason, i.store_id, i.terminal_id, i.day, i.state "
        "ORDER BY i.day DESC, i.store_id, i.terminal_id, i.reason, i.state LIMIT ?",
        [*params, max(1, min(limit, MAX_PAGE))],
    )
    return [Group(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), *(int(v or 0) for v in r[5:10])) for r in rows]


def item_rows(tx: Tx, f: ItemFilter, limit: int = EXPORT_LIMIT) -> list[ItemRow]:
    """The items a filter finds, newest day first, then as they were opened, with their entries' figures."""
    where, params = where_of(f)
    rows = tx.all(
        f"SELECT {_JOINED} FROM recon_items i LEFT JOIN journal j ON j.txn_id = i.txn_id WHERE {where} "
        "ORDER BY i.day DESC, i.created_at, i.item_id LIMIT ?",
        [*params, max(1, min(limit, EXPORT_LIMIT))],
    )
    width = len(_ITEM_COLUMNS.split(","))
    return [
        ItemRow(_item(r[:width]), None if r[width] is None else str(r[width]), *(int(v or 0) for v in r[width + 1 :]))
        for r in rows
    ]


def one_item(tx: Tx, item_id: str) -> ReconItem:
    row = tx.one(f"SELECT {_ITEM_COLUMNS} FROM recon_items WHERE item_id = ?", [item_id])
    if row is None:
        raise UnknownItem(f"no reconciliation item {item_id}")
    return _item(row)


RELATED_KEYS = ("first_txn", "original_txn")
RELATED_USES = 20
"""Detail fields that name another transaction of the same story (the first use of a code, a refunded sale)."""


def entries_of(tx: Tx, item: ReconItem) -> list[dict[str, Any]]:
    """The journal entries an item is about: its own, those its detail names and, for a coupon, the first
    ``RELATED_USES`` that used it (the other till's sale of a coupon used twice); in order of arrival."""
    txns = [item.txn_id] if item.txn_id else []
    txns += [str(item.detail[k]) for k in RELATED_KEYS if isinstance(item.detail.get(k), str)]
    coupon = item.detail.get("coupon_id")
    if isinstance(coupon, str):
        used = tx.all("SELECT txn_id FROM coupon_uses WHERE coupon_id = ? LIMIT ?", [coupon, RELATED_USES])
        txns += [str(r[0]) for r in used]
    txns = list(dict.fromkeys(txns))
    if not txns:
        return []
    rows = tx.all(
        "SELECT terminal_id, seq, txn_id, kind, store_id, day, total, points, stored_value, effect, created_at, "
        f"member_id FROM journal WHERE txn_id IN ({', '.join('?' * len(txns))}) ORDER BY received_at, terminal_id, seq",
        txns,
    )
    names = (
        "terminal_id",
        "seq",
        "txn_id",
        "kind",
        "store_id",
        "day",
        "total",
        "points",
        "stored_value",
        "effect",
        "created_at",
        "member_id",
    )
    return [dict(zip(names, r, strict=True)) for r in rows]


def items_of_txn(tx: Tx, txn_id: str) -> list[ReconItem]:
    return [
        _item(r)
        for r in tx.all(f"SELECT {_ITEM_COLUMNS} FROM recon_items WHERE txn_id = ? ORDER BY created_at", [txn_id])
    ]


def export_rows(tx: Tx, f: ItemFilter, limit: int = EXPORT_LIMIT) -> list[tuple[Any, ...]]:
    """The items of ``f`` as rows of ``EXPORT_COLUMNS`` (the detail as head office stored it, JSON), in the
    pages' order; read straight from SQL, without a model per row, for exports of many thousands."""
    where, params = where_of(f)
    return tx.all(
        "SELECT i.item_id, i.reason, i.state, i.store_id, i.terminal_id, i.day, i.seq, i.txn_id, j.kind, "
        "COALESCE(j.total, 0), COALESCE(j.points, 0), COALESCE(j.stored_value, 0), i.quarantine, i.created_at, "
        "i.settled_at, i.settled_by, i.note, i.detail FROM recon_items i LEFT JOIN journal j ON j.txn_id = i.txn_id "
        f"WHERE {where} ORDER BY i.day DESC, i.created_at, i.item_id LIMIT ?",
        [*params, max(1, min(limit, EXPORT_LIMIT))],
    )


def export_csv(rows: Iterable[Sequence[Any]]) -> str:
    """Rows of ``EXPORT_COLUMNS`` as CSV with its header, every text cell formula-safe (pure)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    writer.writerows([safe_cell(v) for v in row] for row in rows)
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class TillDay:
    """One till's end of day as head office checked it (``not reported``: it sold that day, sent no report)."""

    terminal_id: str
    status: str
    missing: list[tuple[int, int]]
    mismatches: list[str]


@dataclass(frozen=True, slots=True)
class StoreDay:
    store_id: str
    day: str
    tills: list[TillDay]

    @property
    def status(self) -> str:
        """``complete`` when every till of the store that sold or reported that day checked complete."""
        return "complete" if all(t.status == "complete" for t in self.tills) else "incomplete"


def eod_days(tx: Tx, f: ItemFilter, limit: int = 1000) -> list[StoreDay]:
    """End of day per store and business day (newest first): each till that reported or sold that day."""
    only = ItemFilter(store_id=f.store_id, day_from=f.day_from, day_to=f.day_to, stores=f.stores)
    where, params = where_of(only)
    found: dict[tuple[str, str], dict[str, TillDay]] = {}
    for store, terminal, day in tx.all(
        f"SELECT DISTINCT i.store_id, i.terminal_id, i.day FROM journal i WHERE {where} AND i.day IS NOT NULL",
        params,
    ):
        found.setdefault((str(store), str(day)), {})[str(terminal)] = TillDay(str(terminal), "not reported", [], [])
    eod_where, eod_params = where_of(only, day_alias="e")
    for store, terminal, day, status, missing, differ in tx.all(
        "SELECT i.store_id, e.terminal_id, e.day, e.status, e.missing, e.mismatches FROM eod_reports e "
        f"JOIN terminals i ON i.terminal_id = e.terminal_id WHERE {eod_where}",
        eod_params,
    ):
        gaps = [(int(a), int(b)) for a, b in json.loads(missing)]
        till = TillDay(str(terminal), str(status), gaps, [str(m) for m in json.loads(differ)])
        found.setdefault((str(store), str(day)), {})[str(terminal)] = till
    keys = sorted(sorted(found), key=lambda k: k[1], reverse=True)[:limit]  # newest day first, then by store
    return [StoreDay(s, d, [found[(s, d)][t] for t in sorted(found[(s, d)])]) for s, d in keys]
