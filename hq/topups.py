"""Top-ups sold at tills: each till's policy, and the ingest stage that checks every top-up and its void
against it (docs/stored-value.md).

A till sells stored value only when head office enabled it (``put_policy``; no row: not enabled), within
the limits of its policy, checked with the till's own functions (``terminal.topups``) against head office's
record: the till's top-ups and voids of the same business day (as head office files it) that were credited,
whatever the till says. So a stolen till credential credits at most ``per_day`` a business day at that till,
and at most ``per_member_day`` to one member, each credited top-up naming its till and day in the journal.

    till_topup   quarantined ``topup_not_enabled`` (till not enabled) or ``topup_over_limit`` (beyond a limit)
    topup_void   quarantined ``topup_void_invalid`` unless it voids, whole, a credited top-up of this till,
                 of the same member and business day, not voided before

Quarantined entries change no balance (an administrator releases or rejects them, ``hq.quarantine``). A
replayed push stores nothing twice (``hq.ingest.new_entries``), so a top-up is credited once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hq.db.engine import Tx
from hq.errors import Refused
from hq.ingest import NOT_APPLIED, Batch, day_start
from hq.policy import Breach
from sync.protocol import EntryKind, ErrorCode, Reason, TillTopupPayload, TopupVoidPayload
from terminal import topups as tp
from terminal.errors import Code

KINDS = (EntryKind.TILL_TOPUP.value, EntryKind.TOPUP_VOID.value)
GIFT_SALES = (EntryKind.GIFT_ACTIVATE.value, EntryKind.GIFT_LOAD.value)
SOLD = (*KINDS, *GIFT_SALES)
"""Every kind of stored value a till sells: top-ups (less their voids) and gift cards sold or loaded (hq/giftcards.py)
share the till's ``per_day`` and the bound of what head office received in a day."""
_SOLD_VALUE = f"CASE WHEN kind IN ('{GIFT_SALES[0]}', '{GIFT_SALES[1]}') THEN total ELSE stored_value END"
_NOT_APPLIED = sorted(e.value for e in NOT_APPLIED)


def sold_value(batch: Batch, j: int) -> int:
    """What entry ``j`` of the batch sold in stored value (a void: less than zero)."""
    return batch.facts[j].total if batch.entries[j].kind in GIFT_SALES else batch.facts[j].stored_value


def policy(tx: Tx, terminal_id: str) -> tp.TopupPolicy:
    """The till's top-up policy (not enabled when head office holds none)."""
    row = tx.one(
        "SELECT enabled, per_transaction, per_day, per_member_day, offline_total FROM till_topup_policies "
        "WHERE terminal_id = ?",
        [terminal_id],
    )
    if row is None:
        return tp.TopupPolicy()
    return tp.TopupPolicy(bool(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]))


def put_policy(tx: Tx, terminal_id: str, wanted: tp.TopupPolicy, by: str, now: str) -> tp.TopupPolicy:
    """Set a till's policy (it reaches the till with its next pull). Raises Refused: ``topup_policy_invalid``,
    ``not_found`` (no such terminal)."""
    problem = wanted.problem()
    if problem is not None:
        raise Refused(ErrorCode.TOPUP_POLICY_INVALID, problem)
    if tx.one("SELECT 1 FROM terminals WHERE terminal_id = ?", [terminal_id]) is None:
        raise Refused(ErrorCode.NOT_FOUND, f"no terminal {terminal_id}")
    tx.run(
        "INSERT INTO till_topup_policies (terminal_id, enabled, per_transaction, per_day, per_member_day, "
        "offline_total, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (terminal_id) DO UPDATE "
        "SET enabled = excluded.enabled, per_transaction = excluded.per_transaction, per_day = excluded.per_day, "
        "per_member_day = excluded.per_member_day, offline_total = excluded.offline_total, "
        "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        [
            terminal_id,
            int(wanted.enabled),
            wanted.per_transaction,
            wanted.per_day,
            wanted.per_member_day,
            wanted.offline_total,
            now,
            by,
        ],
    )
    return policy(tx, terminal_id)


# -- the ingest stage ----------------------------------------------------------------------------------


def check(tx: Tx, batch: Batch) -> None:
    """Quarantine every top-up beyond the till's policy and every void that does not undo one of its own
    top-ups of that day (in seq order: earlier entries of the batch count)."""
    wanted = [i for i, e in enumerate(batch.entries) if e.kind in KINDS and batch.effects[i] not in NOT_APPLIED]
    if not wanted:
        return
    held = policy(tx, batch.terminal_id)
    for i in wanted:
        payload = batch.payloads[i]
        if isinstance(payload, TillTopupPayload):
            breach = _over_limit(tx, batch, i, payload, held)
        elif isinstance(payload, TopupVoidPayload):
            breach = _bad_void(tx, batch, i, payload)
        else:
            continue
        if breach is not None:
            batch.quarantine(i, breach)


def _over_limit(tx: Tx, batch: Batch, i: int, topup: TillTopupPayload, held: tp.TopupPolicy) -> Breach | None:
    member_id = batch.facts[i].member_id or topup.member_id  # credited to: an id merged into one counts as it
    held_tally = tally(tx, batch, i, member_id)
    code = tp.over_limit(topup.amount, held, held_tally)
    received = received_today(tx, batch, i)
    if code is None and received + topup.amount > held.per_day + held.offline_total:
        code = Code.TOPUP_LIMIT_DAY  # dated on other days by the till's clock, received today by head office's
    if code is None:
        return None
    detail: dict[str, Any] = {
        "code": code.value,
        "amount": topup.amount,
        "member_id": member_id,
        "day": batch.days[i],
        "credited_that_day": held_tally.till_day,
        "credited_to_member_that_day": held_tally.member_day,
        "received_today": received,
        **held.to_doc(),
    }
    reason = Reason.TOPUP_NOT_ENABLED if code is Code.TOPUP_NOT_ENABLED else Reason.TOPUP_OVER_LIMIT
    return Breach(reason, "", detail)


def tally(tx: Tx, batch: Batch, i: int, member_id: str) -> tp.Tally:
    """What head office credited this till on entry ``i``'s business day, in all and to the member: the
    journal's applied top-ups less their voids, and the batch's entries before ``i``."""
    day = batch.days[i]
    row = tx.one(
        f"SELECT COALESCE(SUM({_SOLD_VALUE}), 0), COALESCE(SUM(CASE WHEN member_id = ? THEN stored_value ELSE 0 END), "
        "0) FROM journal WHERE terminal_id = ? AND day = ? AND kind IN (?, ?, ?, ?) AND effect NOT IN (?, ?, ?)",
        [member_id, batch.terminal_id, day, *SOLD, *_NOT_APPLIED],
    )
    till_day, member_day = (int(row[0]), int(row[1])) if row else (0, 0)
    for j in earlier(batch, i):
        if batch.days[j] == day:
            till_day += sold_value(batch, j)
            member_day += batch.facts[j].stored_value if batch.facts[j].member_id == member_id else 0
    return tp.Tally(till_day, member_day)


def received_today(tx: Tx, batch: Batch, i: int) -> int:
    """What head office credited this till in top-ups (less voids) among the entries it received on its own
    business day of this push, and the batch's entries before ``i``: a till's clock cannot spread them over
    other days. An honest till takes at most ``per_day`` a day online plus ``offline_total`` it took offline
    and had not sent yet, so that is the bound."""
    row = tx.one(
        f"SELECT COALESCE(SUM({_SOLD_VALUE}), 0) FROM journal WHERE terminal_id = ? AND received_at >= ? "
        "AND kind IN (?, ?, ?, ?) AND effect NOT IN (?, ?, ?)",
        [batch.terminal_id, day_start(batch), *SOLD, *_NOT_APPLIED],
    )
    received = int(row[0]) if row else 0
    return received + sum(sold_value(batch, j) for j in earlier(batch, i))


def earlier(batch: Batch, i: int) -> Sequence[int]:
    """The entries before ``i`` that sold stored value and stand (in seq order: they count against the limits)."""
    return [j for j in range(i) if batch.entries[j].kind in SOLD and batch.effects[j] not in NOT_APPLIED]


def _bad_void(tx: Tx, batch: Batch, i: int, void: TopupVoidPayload) -> Breach | None:
    """A void undoes, whole, a credited top-up of this till, to the same member, of the same business day,
    voided only once."""
    problem = _void_problem(tx, batch, i, void)
    if problem is None:
        return None
    return Breach(
        Reason.TOPUP_VOID_INVALID,
        void.original_txn,
        {"original_txn": void.original_txn, "amount": void.amount, "problem": problem},
    )


def _void_problem(tx: Tx, batch: Batch, i: int, void: TopupVoidPayload) -> str | None:
    original = _original(tx, batch, i, void.original_txn)
    if original is None:
        return "no credited top-up of this till by that number"
    member_id, amount, day = original
    if (member_id, amount) != (void.member_id, void.amount):
        return "the void names another member or amount than its top-up"
    if day != batch.days[i]:
        return f"the top-up was credited on {day}, the void is of {batch.days[i]}"
    if _voided(tx, batch, i, void.original_txn):
        return "the top-up was voided already"
    return None


def _original(tx: Tx, batch: Batch, i: int, txn_id: str) -> tuple[str, int, str] | None:
    """(member, amount, day) of a credited top-up of this till: held, or earlier in the batch."""
    for j in earlier(batch, i):
        payload = batch.payloads[j]
        if batch.entries[j].txn_id == txn_id and isinstance(payload, TillTopupPayload):
            return payload.member_id, payload.amount, batch.days[j]
    row = tx.one(
        "SELECT member_id, stored_value, day FROM journal WHERE txn_id = ? AND terminal_id = ? AND kind = ? "
        "AND effect NOT IN (?, ?, ?)",
        [txn_id, batch.terminal_id, EntryKind.TILL_TOPUP.value, *_NOT_APPLIED],
    )
    return (str(row[0]), int(row[1]), str(row[2])) if row else None


def _voided(tx: Tx, batch: Batch, i: int, txn_id: str) -> bool:
    if any(batch.facts[j].original_txn == txn_id for j in earlier(batch, i)):
        return True
    row = tx.one(
        "SELECT 1 FROM journal WHERE original_txn = ? AND kind = ? AND effect NOT IN (?, ?, ?)",
        [txn_id, EntryKind.TOPUP_VOID.value, *_NOT_APPLIED],
    )
    return row is not None
