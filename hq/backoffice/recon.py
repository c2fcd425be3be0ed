"""The reconciliation pages' reading and their one change, each checked against the role table first.

filter_of    the GET query (kind, store, till, from, to, state) as an ``hq.reconcile.ItemFilter``, limited to
             a store manager's stores; ``bad_filter`` for a value that is not one
listing      open items grouped by cause, store, till, day and state, with counts and the entries' sums
rows         the items themselves (a group's)
item_view    one item, the journal entries it is about, the other items of its transaction
settle       one item by hand with a note (``hq.reconcile.settle``, audited there)
settle_group every open item of one cause, till and day (``hq.reconcile.settle_group``, audited there)
export       the filtered items as CSV (formula-safe)
eod          end of day per store and business day
tills        the fleet, what is wrong first (``hq.fleet.worst_first``), a store manager's stores only

A store manager reads and settles the items of its own stores only; the auditor reads and never settles.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from hq import fleet, reconcile
from hq.backoffice.errors import BackofficeRefused, Code
from hq.backoffice.roles import Action, Reach, Scope, allowed, reach
from hq.backoffice.staff import Staff, require
from hq.db.engine import Tx
from hq.reconcile import Group, ItemFilter, ItemRow, StoreDay
from hq.store import HqStore
from sync.protocol import ItemState, Reason, ReconItem

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_ID = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
ANY_STATE = "any"
FILTER_FIELDS = ("kind", "store", "till", "from", "to", "state")
"""The query parameters of the reconciliation pages (and the hidden fields that carry them through a form)."""
NOTE_MAX = 200


def _own(who: Staff, action: Action) -> frozenset[str] | None:
    """The stores ``who`` is limited to for ``action`` (None: the chain)."""
    return who.stores if reach(who.role, action) is Reach.STORES else None


def _text(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name, "").strip()
    if not value:
        return None
    if not _ID.fullmatch(value):
        raise BackofficeRefused(Code.BAD_FILTER, f"{name} is not a valid value")
    return value


def _day(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name, "").strip()
    if not value:
        return None
    if not _DAY.fullmatch(value):
        raise BackofficeRefused(Code.BAD_FILTER, f"{name} must be a day as YYYY-MM-DD")
    return value


def filter_of(who: Staff, query: Mapping[str, str]) -> ItemFilter:
    """The items ``query`` asks for that ``who`` may read: ``state`` defaults to open (``any``: every state);
    a store manager who names another store is refused."""
    require(who, Action.RECON_READ, None)
    kind = _text(query, "kind")
    if kind is not None and kind not in {r.value for r in Reason}:
        raise BackofficeRefused(Code.BAD_FILTER, "no such kind of item")
    state = query.get("state", "").strip() or ItemState.OPEN.value
    if state not in {s.value for s in ItemState} | {ANY_STATE}:
        raise BackofficeRefused(Code.BAD_FILTER, "no such state")
    store_id = _text(query, "store")
    if store_id is not None:
        require(who, Action.RECON_READ, frozenset({store_id}))
    day_from, day_to = _day(query, "from"), _day(query, "to")
    if day_from and day_to and day_from > day_to:
        raise BackofficeRefused(Code.BAD_FILTER, "the first day is after the last")
    return ItemFilter(
        reason=kind,
        store_id=store_id,
        terminal_id=_text(query, "till"),
        day_from=day_from,
        day_to=day_to,
        state=None if state == ANY_STATE else state,
        stores=_own(who, Action.RECON_READ),
    )


def query_of(f: ItemFilter) -> dict[str, str]:
    """The query parameters that give ``f`` again (pure; the store limit is the reader's, never in it)."""
    values = {
        "kind": f.reason,
        "store": f.store_id,
        "till": f.terminal_id,
        "from": f.day_from,
        "to": f.day_to,
        "state": f.state or ANY_STATE,
    }
    return {name: value for name, value in values.items() if value}


@dataclass(frozen=True, slots=True)
class Choices:
    """What the filter form offers: the stores and tills the reader may see, every kind and state."""

    stores: list[str]
    tills: list[str]
    kinds: list[str]
    states: list[str]


def choices(tx: Tx, who: Staff) -> Choices:
    own = _own(who, Action.RECON_READ)
    rows = [(str(t), str(s)) for t, s in tx.all("SELECT terminal_id, store_id FROM terminals ORDER BY terminal_id")]
    seen = [(t, s) for t, s in rows if own is None or s in own]
    return Choices(
        stores=sorted({s for _, s in seen} | (own or set())),
        tills=[t for t, _ in seen],
        kinds=sorted(r.value for r in Reason),
        states=[*(s.value for s in ItemState), ANY_STATE],
    )


def _check_till(tx: Tx, who: Staff, f: ItemFilter) -> None:
    """A till named in the filter must be one ``who`` may read (a store manager: one of its stores')."""
    require(who, Action.RECON_READ, None)
    if f.terminal_id is None or f.stores is None:
        return
    held = tx.one("SELECT store_id FROM terminals WHERE terminal_id = ?", [f.terminal_id])
    require(who, Action.RECON_READ, frozenset({str(held[0])} if held else set()))


def listing(tx: Tx, who: Staff, f: ItemFilter) -> list[Group]:
    _check_till(tx, who, f)
    return reconcile.groups(tx, f)


ITEMS_SHOWN = 500


def rows(tx: Tx, who: Staff, f: ItemFilter) -> list[ItemRow]:
    """The first ``ITEMS_SHOWN`` items of ``f``, with their entries' figures."""
    _check_till(tx, who, f)
    return reconcile.item_rows(tx, f, ITEMS_SHOWN)


def export(tx: Tx, who: Staff, f: ItemFilter) -> str:
    """The items of ``f`` as CSV (at most ``reconcile.EXPORT_LIMIT``)."""
    _check_till(tx, who, f)
    return reconcile.export_csv(reconcile.export_rows(tx, f))


EOD_DAYS = 14
"""The business days the end-of-day page shows when the filter names none (the journal is not read whole)."""


def eod_window(f: ItemFilter, today: date) -> ItemFilter:
    """``f``, or when it names no day, the last ``EOD_DAYS`` days to ``today`` (pure)."""
    if f.day_from is not None or f.day_to is not None:
        return f
    return replace(f, day_from=(today - timedelta(days=EOD_DAYS - 1)).isoformat())


def eod(tx: Tx, who: Staff, f: ItemFilter) -> list[StoreDay]:
    _check_till(tx, who, f)
    return reconcile.eod_days(tx, f)


@dataclass(frozen=True, slots=True)
class ItemView:
    item: ReconItem
    entries: list[dict[str, Any]]
    siblings: list[ReconItem]
    settleable: bool
    """Open, not held in quarantine, and ``who`` may settle it: the page offers the form."""


def _item(tx: Tx, item_id: str) -> ReconItem:
    try:
        return reconcile.one_item(tx, item_id)
    except reconcile.UnknownItem as exc:
        raise BackofficeRefused(Code.NOT_FOUND, "no such item") from exc


def item_view(tx: Tx, who: Staff, item_id: str) -> ItemView:
    item = _item(tx, item_id)
    require(who, Action.RECON_READ, frozenset({item.store_id}))
    siblings = [i for i in reconcile.items_of_txn(tx, item.txn_id) if i.item_id != item_id] if item.txn_id else []
    settleable = (
        item.state is ItemState.OPEN
        and not item.quarantined
        and allowed(who.role, Action.RECON_SETTLE, Scope(who.stores, frozenset({item.store_id})))
    )
    # An item of one's own store may name another store's entries (a refund of another store's sale, a coupon
    # used at two stores): a store manager is shown those of their own stores only, as everywhere else.
    entries = [e for e in reconcile.entries_of(tx, item) if _readable(who, str(e.get("store_id") or ""))]
    siblings = [i for i in siblings if _readable(who, i.store_id)]
    return ItemView(item, entries, siblings, settleable)


def _readable(who: Staff, store_id: str) -> bool:
    return allowed(who.role, Action.RECON_READ, Scope(who.stores, frozenset({store_id})))


def note_of(text: str) -> str:
    note = " ".join(text.split())
    if not note or len(note) > NOTE_MAX:
        raise BackofficeRefused(Code.NOTE_REQUIRED, f"a note of 1 to {NOTE_MAX} characters is required")
    return note


def settle(store: HqStore, who: Staff, item_id: str, note: str) -> ReconItem:
    """Settle one item by hand in its store's scope; the note says why and how."""
    why = note_of(note)

    def change(tx: Tx) -> ReconItem:
        require(who, Action.RECON_SETTLE, frozenset({_item(tx, item_id).store_id}))
        try:
            return reconcile.settle(tx, item_id, who.staff_id, why, store.now())  # audited there
        except reconcile.AlreadySettled as exc:
            raise BackofficeRefused(Code.ALREADY_SETTLED, str(exc)) from exc
        except reconcile.HeldInQuarantine as exc:
            raise BackofficeRefused(Code.HELD_IN_QUARANTINE, str(exc)) from exc

    return store.db.transact(change)


def settle_group(store: HqStore, who: Staff, terminal_id: str, day: str, kind: str, note: str) -> int:
    """Settle every open item of one cause, till and business day (not those holding their entry in
    quarantine); how many."""
    why = note_of(note)
    if not _DAY.fullmatch(day) or kind not in {r.value for r in Reason} or not _ID.fullmatch(terminal_id):
        raise BackofficeRefused(Code.BAD_FILTER, "a group is a till, a day and a kind of item")

    def change(tx: Tx) -> int:
        held = tx.one("SELECT store_id FROM terminals WHERE terminal_id = ?", [terminal_id])
        if held is None:
            raise BackofficeRefused(Code.NOT_FOUND, "no such till")
        require(who, Action.RECON_SETTLE, frozenset({str(held[0])}))
        return reconcile.settle_group(tx, terminal_id, day, kind, who.staff_id, why, store.now())  # audited there

    return store.db.transact(change)


PICK_MAX = ITEMS_SHOWN
"""At most this many items settled at once by hand (the items page shows as many)."""


def settle_picked(store: HqStore, who: Staff, item_ids: Sequence[str], note: str) -> int:
    """Settle the items ``who`` ticked, with one note, all or none: an item of a store out of reach, no longer
    open (settled by hand, or by head office once what was missing arrived) or held in quarantine refuses the
    whole pick (naming it), and nothing is settled; how many."""
    why = note_of(note)
    picked = sorted({i for i in item_ids if i})
    if not 1 <= len(picked) <= PICK_MAX:
        raise BackofficeRefused(Code.BAD_FILTER, f"tick 1 to {PICK_MAX} items to settle")

    def change(tx: Tx) -> int:
        for item_id in picked:
            item = _item(tx, item_id)
            require(who, Action.RECON_SETTLE, frozenset({item.store_id}))
            if item.state is not ItemState.OPEN:  # settled by hand or by head office since the page was read
                raise BackofficeRefused(Code.ALREADY_SETTLED, f"{item_id} is {item.state.value}")
            try:
                reconcile.settle(tx, item_id, who.staff_id, why, store.now())  # audited there
            except reconcile.AlreadySettled as exc:
                raise BackofficeRefused(Code.ALREADY_SETTLED, f"{item_id}: {exc}") from exc
            except reconcile.HeldInQuarantine as exc:
                raise BackofficeRefused(Code.HELD_IN_QUARANTINE, f"{item_id}: {exc}") from exc
        return len(picked)

    return store.db.transact(change)


# -- the fleet -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Till:
    row: dict[str, Any]
    problems: list[str]


def tills(store: HqStore, who: Staff) -> list[Till]:
    """Every till ``who`` may see with its health as its pushes reported it, what is wrong first."""
    require(who, Action.FLEET_READ, None)
    seen = [
        row
        for row in store.fleet()
        if allowed(who.role, Action.FLEET_READ, Scope(who.stores, frozenset({str(row["store_id"])})))
    ]
    return [Till(row, [p.code for p in found]) for row, found in fleet.worst_first(seen)]


__all__ = [
    "ANY_STATE",
    "FILTER_FIELDS",
    "Choices",
    "ItemRow",
    "ItemView",
    "Till",
    "choices",
    "eod",
    "eod_window",
    "export",
    "filter_of",
    "item_view",
    "listing",
    "query_of",
    "rows",
    "settle",
    "settle_group",
    "tills",
]
