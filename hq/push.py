"""One push: a terminal's journal batch through every ingest stage, in one transaction.

The stages live in ``hq.ingest`` (and the member stages in ``hq.members``); this module only orders them,
so that ``members`` may use ingest's stages while ingest knows nothing of members:

    terminal row (FOR UPDATE) -> dedupe -> typed payloads -> enrolments -> policy, members, cards
    -> merged and erased members -> prices -> proofs -> refunds against their sales
    -> top-ups against the till's policy (hq.topups) -> vouchers against the till's stock and their one use
    (hq.vouchers) -> gift cards against the policy, their proofs and balances (hq.giftcards) -> rewards against the catalogue (hq.rewards) -> journal rows
    -> sales -> receipts (hq.receipts) -> member balances -> ledger (hq.ledger) -> coupon counters -> reversals
    -> rewards taken and given back (hq.rewards)
    -> member statistics (hq.stats)
    -> door check-ins (hq.checkins) -> items
    -> versions -> watermark
"""

from __future__ import annotations

from hq import giftcards, ledger, members, receipts, rewards, rollup, topups, vouchers
from hq.db.engine import Tx
from hq.ingest import (
    Batch,
    CredentialRevoked,
    Effect,
    Settings,
    UnknownTerminal,
    advance,
    apply_balances,
    book_kept,
    bound_overspends,
    bump_versions,
    check_merchants,
    check_prices,
    check_proofs,
    check_reversals,
    classify,
    clock_item,
    count_coupons,
    count_figures,
    count_stats,
    measure_clock,
    new_entries,
    payload_json,
    read_payloads,
    record_checkins,
    record_sales,
    release_waiting,
    reverse,
    save_items,
    spend_push_budget,
    store_calendar,
    store_journal,
)
from sync.protocol import PushResponse, WireEntry, parse_time


def ingest(
    tx: Tx, settings: Settings, terminal_id: str, entries: list[WireEntry], received_at: str, clock: str | None = None
) -> PushResponse:
    """Store a batch of one terminal's journal and apply each new entry once (one transaction). The report
    roll-up's rows are written last, in one statement (``rollup.one_write``)."""
    with rollup.one_write(tx):
        return _ingest(tx, settings, terminal_id, entries, received_at, clock)


def _ingest(
    tx: Tx, settings: Settings, terminal_id: str, entries: list[WireEntry], received_at: str, clock: str | None
) -> PushResponse:
    held = tx.one(
        f"SELECT store_id, acked_seq, last_pull, revoked FROM terminals WHERE terminal_id = ?{tx.for_update}",
        [terminal_id],
    )
    if held is None:
        raise UnknownTerminal(f"terminal {terminal_id} is not registered")
    if held[3]:
        raise CredentialRevoked(f"terminal {terminal_id}'s credential was revoked")
    store_id, watermark = str(held[0]), int(held[1])
    fresh, duplicates = new_entries(tx, terminal_id, entries)
    size = sum(len(payload_json(e.payload)) for e in fresh)  # what the journal keeps of them
    spend_push_budget(tx, settings, terminal_id, received_at, len(fresh), size)  # a stolen credential's disk bound
    offset = measure_clock(clock, received_at)
    calendar = store_calendar(tx, store_id, settings)
    batch = Batch(
        terminal_id,
        store_id,
        received_at,
        settings,
        fresh,
        last_pull=parse_time(str(held[2] or "")),
        offset=offset,
        calendar=calendar,
    )
    read_payloads(batch)
    members.accept(tx, batch)
    classify(tx, batch)
    members.redirect(tx, batch)
    check_prices(tx, batch)
    check_proofs(tx, batch)
    check_reversals(tx, batch)
    members.claimed_returns(tx, batch)  # a refund of a sale claimed from its receipt is the claimer's
    topups.check(tx, batch)  # after every other rule: only top-ups that would be credited count
    sold_or_used = vouchers.check(tx, batch)  # the vouchers whose state every till must learn
    gift_cards = giftcards.check(tx, batch)  # gift cards: sold and loaded within the policy, paid on a proof
    rewards.check(tx, batch)  # rewards of the catalogue at its price, within the till's allocation
    bound_overspends(tx, batch)  # last: what the payments applied take beyond the balances, within the day's bound
    store_journal(tx, batch)
    record_sales(tx, batch)
    receipts.record(tx, batch)  # before the items are saved: a receipt sold twice is one
    apply_balances(tx, batch)
    ledger.post_journal(tx, [e.txn_id for e, x in zip(fresh, batch.effects, strict=True) if x is Effect.APPLIED])
    book_kept(tx, batch)  # after the vouchers' redemptions were booked: the part of them returns kept
    count_coupons(tx, batch)
    count_figures(tx, batch)  # the report roll-up: after the coupon uses, before a refund gives one back
    check_merchants(tx, batch)
    reverse(tx, batch)
    rewards.count(tx, batch)  # after the coupon counters: pool rows are locked in one order
    count_stats(tx, batch)  # after balances and coupons: rows are locked in the order a release takes
    record_checkins(tx, batch)  # door taps: a visit once a member, store and day
    skew = clock_item(terminal_id, offset, received_at, settings, calendar)
    flagged = save_items(tx, store_id, terminal_id, batch.items + ([skew] if skew else []), received_at)
    release_waiting(tx, batch)  # after the items are saved: a refund held earlier in this very batch counts too
    bump_versions(tx, "members", "member_id", batch.touched_members)
    bump_versions(tx, "coupons", "coupon_id", batch.touched_coupons)
    bump_versions(tx, "cards", "uid_hash", batch.touched_cards)
    vouchers.bump(tx, sold_or_used)
    giftcards.bump(tx, gift_cards)
    acked, gaps = advance(tx, terminal_id, watermark)
    tx.run(
        "UPDATE terminals SET last_seen = ?, clock_offset = COALESCE(?, clock_offset) WHERE terminal_id = ?",
        [received_at, offset, terminal_id],
    )
    return PushResponse(acked_seq=acked, stored=len(fresh), duplicates=duplicates, gaps=gaps, flagged=flagged)
