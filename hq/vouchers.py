"""Prepaid vouchers: head office issues them to tills' stock, confirms each use once chain-wide, and checks
every voucher entry a till sends (docs/stored-value.md, "Vouchers").

Head office signs every code with its key of purpose ``voucher`` (``terminal.vouchers``) and hands it to one
till's stock; the till activates it by selling it. So a till cannot mint a voucher, and a stolen till
credential activates at most the stock that till holds. A voucher is used once: a redemption, or a refund
at the store that sold it, recorded under the primary key of ``voucher_uses``; online, the till asks first
(``confirm``), so a second till is refused at once. States of sold vouchers go down to every till in the
changes feed (``voucher_states``): a till redeems offline only a voucher it holds as active.

At ingest (``check``, after the top-ups):

    voucher_sale     quarantined ``voucher_forged`` (not head office's code, or fields not the code's) or
                     ``voucher_not_allocated`` (not this till's unsold stock); else the voucher is active
    voucher_redeem   quarantined ``voucher_forged``, ``voucher_not_sold`` or ``voucher_redeemed_expired`` (made, by
                     head office's corrected time, after the voucher's expiry); a voucher used before (redeemed
                     or refunded, at this till or another, offline) is stored and flagged
                     ``voucher_redeemed_twice``: the loss is the chain's, as a replayed card
    voucher_refund   quarantined ``voucher_forged`` or ``voucher_refund_invalid`` (never sold, sold at another
                     store, or already used); else the voucher is refunded, and every till refuses it
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hq import audit, ledger
from hq.db.engine import Tx
from hq.errors import Refused
from hq.ingest import NOT_APPLIED, Batch, beyond_the_days_bound, bump_versions, payload_json
from hq.policy import Breach
from sync.protocol import (
    EntryKind,
    ErrorCode,
    Reason,
    VoucherConfirmRequest,
    VoucherPayload,
    VoucherRedeemPayload,
    VoucherRefundPayload,
    VoucherSalePayload,
    WireVoucherStock,
    parse_time,
)
from terminal import b64url
from terminal import vouchers as vc
from terminal.errors import Rejected
from terminal.money import MAX_AMOUNT

KINDS = frozenset({EntryKind.VOUCHER_SALE.value, EntryKind.VOUCHER_REDEEM.value, EntryKind.VOUCHER_REFUND.value})
MAX_ISSUE = 1000
"""Vouchers one issue makes (a till's stock is what it may activate with a stolen credential: keep it small)."""
_COLUMNS = (
    "voucher_id, kind, value, sku, expires_at, terminal_id, state, sold_txn, sold_terminal, sold_store, member_id"
)


@dataclass(frozen=True, slots=True)
class Held:
    """A voucher as head office holds it."""

    voucher_id: str
    kind: str
    value: int
    sku: str
    expires_at: int
    terminal_id: str
    state: vc.State
    sold_txn: str | None
    sold_terminal: str | None
    sold_store: str | None
    member_id: str | None

    def feed_doc(self) -> dict[str, Any]:
        """What every till pulls of it once it was sold (never its code)."""
        return {
            "voucher_id": self.voucher_id,
            "state": self.state.value,
            "kind": self.kind,
            "value": self.value,
            "sku": self.sku,
            "store_id": self.sold_store,
            "expires_at": self.expires_at,
        }


def _held(row: tuple[Any, ...]) -> Held:
    return Held(
        str(row[0]),
        str(row[1]),
        int(row[2]),
        str(row[3]),
        int(row[4]),
        str(row[5]),
        vc.State(str(row[6])),
        *(None if v is None else str(v) for v in row[7:11]),
    )


def held(tx: Tx, voucher_id: str, *, lock: bool = False) -> Held | None:
    row = tx.one(f"SELECT {_COLUMNS} FROM vouchers WHERE voucher_id = ?{tx.for_update if lock else ''}", [voucher_id])
    return _held(row) if row else None


def listing(tx: Tx, terminal_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    sql = f"SELECT {_COLUMNS} FROM vouchers" + (" WHERE terminal_id = ?" if terminal_id else "")
    rows = tx.all(sql + " ORDER BY voucher_id LIMIT ?", [*([terminal_id] if terminal_id else []), limit])
    return [_report(_held(r)) for r in rows]


def _report(v: Held) -> dict[str, Any]:
    return {
        "voucher_id": v.voucher_id,
        "kind": v.kind,
        "value": v.value,
        "sku": v.sku,
        "expires_at": v.expires_at,
        "terminal_id": v.terminal_id,
        "state": v.state.value,
        "sold_txn": v.sold_txn,
        "sold_store": v.sold_store,
        "member_id": v.member_id,
    }


def report(tx: Tx, voucher_id: str) -> dict[str, Any]:
    """A voucher and its use. Raises Refused ``not_found``."""
    found = held(tx, voucher_id)
    if found is None:
        raise Refused(ErrorCode.NOT_FOUND, f"no voucher {voucher_id}")
    use = tx.one("SELECT action, txn_id, terminal_id, used_at FROM voucher_uses WHERE voucher_id = ?", [voucher_id])
    used = dict(zip(("action", "txn_id", "terminal_id", "used_at"), use, strict=True)) if use else None
    return {**_report(found), "use": used}


def of_member(tx: Tx, member_id: str, now: int) -> list[dict[str, Any]]:
    """The active vouchers sold to the member (their wallet shows them, with the code that pays), by expiry."""
    rows = tx.all(
        "SELECT voucher_id, kind, value, sku, expires_at, code FROM vouchers WHERE member_id = ? AND state = ? "
        "AND expires_at > ? ORDER BY expires_at, voucher_id",
        [member_id, vc.State.ACTIVE.value, now],
    )
    names = ("voucher_id", "kind", "value", "sku", "expires_at", "code")
    return [dict(zip(names, row, strict=True)) for row in rows]


def forget_member(tx: Tx, member_id: str) -> int:
    """An erased member: the vouchers sold to them, and their sales' entries, no longer name them (the
    vouchers stay valid: a code pays whoever holds it). How many vouchers named them."""
    rows = tx.all("SELECT voucher_id, sold_txn FROM vouchers WHERE member_id = ?", [member_id])
    for _, txn in rows:
        entry = tx.one("SELECT payload FROM journal WHERE txn_id = ?", [txn])
        if entry is not None:
            payload = {**json.loads(str(entry[0])), "member_id": None}
            tx.run("UPDATE journal SET payload = ? WHERE txn_id = ?", [payload_json(payload), txn])
    tx.run("UPDATE vouchers SET member_id = NULL WHERE member_id = ?", [member_id])
    return len(rows)


def public_keys(tx: Tx) -> dict[str, bytes]:
    """Head office's voucher keys (public halves, raw) by key id: any it made, so that a code issued under
    a key retired since still reads as head office's."""
    keys: dict[str, bytes] = {}
    for key_id, body in tx.all("SELECT key_id, body FROM signing_keys WHERE deleted = 0"):
        doc = json.loads(body)
        if doc.get("purpose") == vc.PURPOSE:
            keys[str(key_id)] = b64url.decode(str(doc["public_key"]))
    return keys


# -- issuing stock --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssueSpec:
    count: int
    value: int
    expires_at: int
    sku: str = ""

    @property
    def kind(self) -> vc.Kind:
        return vc.Kind.PRODUCT if self.sku else vc.Kind.AMOUNT

    def problem(self, now: int) -> str | None:
        if not 1 <= self.count <= MAX_ISSUE:
            return f"count is 1..{MAX_ISSUE}"
        if not 0 < self.value <= MAX_AMOUNT:
            return f"value is 1..{MAX_AMOUNT} minor units"
        if not now < self.expires_at < 2**32:
            return "the expiry is in the future"
        if len(self.sku.encode()) > 64:
            return "a sku is at most 64 bytes"
        return None


def issue(
    tx: Tx, signer: tuple[str, Ed25519PrivateKey], terminal_id: str, spec: IssueSpec, by: str, now: str
) -> list[str]:
    """Sign ``spec.count`` vouchers and put them in the till's stock (it pulls them); their ids. Raises
    Refused: ``voucher_issue_invalid``, ``not_found`` (no such terminal)."""
    moment = parse_time(now)
    problem = spec.problem(int(moment.timestamp()) if moment else 0)
    if problem is not None:
        raise Refused(ErrorCode.VOUCHER_ISSUE_INVALID, problem)
    if tx.one("SELECT 1 FROM terminals WHERE terminal_id = ?", [terminal_id]) is None:
        raise Refused(ErrorCode.NOT_FOUND, f"no terminal {terminal_id}")
    key_id, key = signer
    made = []
    for _ in range(spec.count):
        raw = secrets.token_bytes(vc.ID_BYTES)
        code = vc.issue(key, key_id, raw, spec.kind, spec.value, spec.expires_at, spec.sku)
        tx.run(
            "INSERT INTO vouchers (voucher_id, code, kind, value, sku, expires_at, terminal_id, issued_at, issued_by, "
            "state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [raw.hex(), code, spec.kind.value, spec.value, spec.sku, spec.expires_at, terminal_id, now, by, "stock"],
        )
        made.append(raw.hex())
    details = {"count": spec.count, "kind": spec.kind.value, "value": spec.value, "sku": spec.sku}
    audit.append(tx, by, "voucher_issue", terminal_id, f"{spec.count} vouchers into its stock", details)
    return made


def put_offline_total(tx: Tx, terminal_id: str, total: int, by: str, now: str) -> int:
    """Set a till's offline total of voucher redemptions (0: none offline); it reaches the till with its pull."""
    if not 0 <= total <= MAX_AMOUNT:
        raise Refused(ErrorCode.VOUCHER_ISSUE_INVALID, f"the offline total is 0..{MAX_AMOUNT} minor units")
    if tx.one("SELECT 1 FROM terminals WHERE terminal_id = ?", [terminal_id]) is None:
        raise Refused(ErrorCode.NOT_FOUND, f"no terminal {terminal_id}")
    tx.run(
        "INSERT INTO voucher_tills (terminal_id, offline_total, updated_at, updated_by) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (terminal_id) DO UPDATE SET offline_total = excluded.offline_total, "
        "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        [terminal_id, total, now, by],
    )
    audit.append(tx, by, "voucher_offline_total", terminal_id, "offline total of voucher redemptions", {"total": total})
    return total


def stock(tx: Tx, terminal_id: str) -> WireVoucherStock:
    """What goes down to the till with every pull: its unsold stock, whole, and its offline total."""
    rows = tx.all(
        "SELECT code FROM vouchers WHERE terminal_id = ? AND state = ? ORDER BY voucher_id LIMIT 10000",
        [terminal_id, vc.State.STOCK.value],
    )
    total = tx.one("SELECT offline_total FROM voucher_tills WHERE terminal_id = ?", [terminal_id])
    return WireVoucherStock(offline_total=int(total[0]) if total else 0, codes=[str(r[0]) for r in rows])


def _set_state(tx: Tx, v: Held, state: vc.State, **sold: str | None) -> set[str]:
    """Move a voucher to ``state`` (and its sale's facts), and its feed row; the ids whose version to bump."""
    tx.run(
        "UPDATE vouchers SET state = ?, sold_txn = COALESCE(?, sold_txn), sold_terminal = COALESCE(?, sold_terminal), "
        "sold_store = COALESCE(?, sold_store), sold_at = COALESCE(?, sold_at), member_id = COALESCE(?, member_id) "
        "WHERE voucher_id = ?",
        [state.value, *(sold.get(k) for k in ("txn", "terminal", "store", "at", "member")), v.voucher_id],
    )
    after = held(tx, v.voucher_id)
    assert after is not None
    tx.run(
        "INSERT INTO voucher_states (voucher_id, body, version, deleted) VALUES (?, ?, 0, 0) "
        "ON CONFLICT (voucher_id) DO UPDATE SET body = excluded.body",
        [v.voucher_id, json.dumps(after.feed_doc(), sort_keys=True)],
    )
    return {v.voucher_id}


# -- online confirmation ---------------------------------------------------------------------------------


def confirm(tx: Tx, terminal_id: str, request: VoucherConfirmRequest, now: str) -> dict[str, Any]:
    """Record a voucher's one use before the till approves it, or raise Refused with the till's code.

    The same terminal and transaction asking again is a retry and gets the same answer."""
    voucher = _verified(tx, request.code, now if request.action == "redeem" else None)
    v = held(tx, voucher.voucher_id, lock=True)
    if v is None:
        raise Refused(ErrorCode.VOUCHER_NOT_SOLD, "head office holds no sale of this voucher")
    if v.state is vc.State.STOCK:  # sold offline, maybe: its till has not pushed the sale yet
        raise Refused(
            ErrorCode.VOUCHER_NOT_SOLD,
            "head office holds no sale of this voucher yet: try again once the till that sold it is online",
        )
    use = tx.one("SELECT action, txn_id, terminal_id FROM voucher_uses WHERE voucher_id = ?", [v.voucher_id])
    if use is not None:
        if (str(use[1]), str(use[2])) == (request.txn_id, terminal_id) and use[0] == request.action:
            return {"confirmed": True, "voucher_id": v.voucher_id, "repeat": True}
        if _asked_again(tx, use, terminal_id, request):
            tx.run(
                "UPDATE voucher_uses SET txn_id = ?, used_at = ? WHERE voucher_id = ?",
                [request.txn_id, now, v.voucher_id],
            )
            return {"confirmed": True, "voucher_id": v.voucher_id, "asked_again": True}
        refunded = use[0] == "refund" or v.state is vc.State.REFUNDED
        raise Refused(ErrorCode.VOUCHER_REFUNDED if refunded else ErrorCode.VOUCHER_USED, "the voucher was used")
    if request.action == "refund":
        store = tx.one("SELECT store_id FROM terminals WHERE terminal_id = ?", [terminal_id])
        if store is None or str(store[0]) != v.sold_store:
            raise Refused(ErrorCode.VOUCHER_OTHER_STORE, f"the voucher was sold at {v.sold_store}")
    tx.run(
        "INSERT INTO voucher_uses (voucher_id, action, txn_id, terminal_id, used_at) VALUES (?, ?, ?, ?, ?)",
        [v.voucher_id, request.action, request.txn_id, terminal_id, now],
    )
    # every till learns of the use now, before the entry arrives
    bump(tx, _set_state(tx, v, vc.State.REDEEMED if request.action == "redeem" else vc.State.REFUNDED))
    return {"confirmed": True, **voucher.to_doc()}


def _asked_again(tx: Tx, use: tuple[Any, ...], terminal_id: str, request: VoucherConfirmRequest) -> bool:
    """The same till asking again for the same use under a new transaction, when head office holds no entry
    of the one it confirmed: the till stopped before its commit (a crash, a full disk) and served nobody, so
    the voucher is not lost to the customer. Another till is refused as ever; a till that did journal both
    has its second entry flagged ``voucher_redeemed_twice``."""
    if (str(use[0]), str(use[2])) != (request.action, terminal_id):
        return False
    return tx.one("SELECT 1 FROM journal WHERE txn_id = ?", [str(use[1])]) is None


def _verified(tx: Tx, code: str, now: str | None) -> vc.Voucher:
    moment = parse_time(now) if now else None
    try:
        return vc.read(code, public_keys(tx), int(moment.timestamp()) if moment else None)
    except Rejected as exc:
        raise Refused(ErrorCode(exc.code.value), exc.message) from exc


# -- the ingest stage -----------------------------------------------------------------------------------


def check(tx: Tx, batch: Batch) -> set[str]:
    """Check and apply every voucher entry of the batch in seq order; the vouchers whose feed row changed
    (their versions are bumped last, with the rest of the push)."""
    wanted = [i for i, e in enumerate(batch.entries) if e.kind in KINDS and batch.effects[i] not in NOT_APPLIED]
    touched: set[str] = set()
    if not wanted:
        return touched
    keys = public_keys(tx)
    for i in wanted:
        payload = batch.payloads[i]
        if not isinstance(payload, VoucherPayload):
            continue
        v, breach = _read(tx, keys, payload)
        if breach is None and v is not None:
            breach, changed = _apply(tx, batch, i, payload, v)
            touched |= changed
        if breach is not None:
            batch.quarantine(i, breach)
    return touched


def _read(tx: Tx, keys: Mapping[str, bytes], payload: VoucherPayload) -> tuple[Held | None, Breach | None]:
    """The voucher an entry names, when its code is head office's and the entry states the code's fields."""
    try:
        code = vc.read(payload.code, keys)
    except Rejected as exc:
        return None, Breach(Reason.VOUCHER_FORGED, payload.voucher_id, {"code": exc.code.value})
    stated = (payload.voucher_id, payload.kind, payload.value, payload.sku)
    if stated != (code.voucher_id, code.kind.value, code.value, code.sku):
        return None, Breach(Reason.VOUCHER_FORGED, payload.voucher_id, {"problem": "the entry is not its code's"})
    v = held(tx, code.voucher_id, lock=True)
    if v is None:
        return None, Breach(Reason.VOUCHER_FORGED, payload.voucher_id, {"problem": "no voucher of that id"})
    return v, None


def _apply(tx: Tx, batch: Batch, i: int, payload: VoucherPayload, v: Held) -> tuple[Breach | None, set[str]]:
    if isinstance(payload, VoucherSalePayload):
        return _sell(tx, batch, i, payload, v)
    if isinstance(payload, VoucherRefundPayload):
        return _refund(tx, batch, i, v)
    if isinstance(payload, VoucherRedeemPayload):
        return _redeem(tx, batch, i, v)
    return None, set()


def _sell(tx: Tx, batch: Batch, i: int, sale: VoucherSalePayload, v: Held) -> tuple[Breach | None, set[str]]:
    if v.terminal_id != batch.terminal_id or v.state is not vc.State.STOCK:
        detail = {"stock_of": v.terminal_id, "state": v.state.value, "sold_txn": v.sold_txn}
        return Breach(Reason.VOUCHER_NOT_ALLOCATED, v.voucher_id, detail), set()
    txn = batch.entries[i].txn_id
    sold = {"txn": txn, "terminal": batch.terminal_id, "store": batch.store_id, "at": batch.received_at}
    changed = _set_state(tx, v, vc.State.ACTIVE, member=sale.member_id, **sold)
    _post(tx, batch, i, v, v.value)
    return None, changed


def _post(tx: Tx, batch: Batch, i: int, v: Held, amount: int) -> None:
    """The voucher's value in the ledger (``hq.ledger.post_voucher``): its sale is cash the selling merchant's
    till took, a redemption value the redeeming merchant accepted, a refund cash paid back; so each merchant's
    settlement statement carries it. A voucher whose sale the ledger never booked (sold before it booked
    vouchers) settles its use outside it, as it was sold."""
    entry = batch.entries[i]
    if amount < 0 and (
        v.sold_txn is None or tx.one("SELECT 1 FROM ledger_txns WHERE ledger_txn_id = ?", [v.sold_txn]) is None
    ):
        return
    where = {"store": batch.store_id, "day": batch.days[i], "at": batch.received_at}
    ledger.post_voucher(tx, entry.txn_id, entry.kind, v.voucher_id, amount, where)


def _use(tx: Tx, batch: Batch, i: int, v: Held, action: str) -> tuple[str, str, str] | None:
    """Record this entry as the voucher's one use; the use held before when another one was (action, txn,
    terminal). A use head office confirmed for this very entry is this one."""
    txn = batch.entries[i].txn_id
    row = tx.one("SELECT action, txn_id, terminal_id FROM voucher_uses WHERE voucher_id = ?", [v.voucher_id])
    if row is None:
        tx.run(
            "INSERT INTO voucher_uses (voucher_id, action, txn_id, terminal_id, used_at) VALUES (?, ?, ?, ?, ?)",
            [v.voucher_id, action, txn, batch.terminal_id, batch.received_at],
        )
        return None
    first = (str(row[0]), str(row[1]), str(row[2]))
    # The use confirmed for this very entry is this one only if it is the same use: a redemption head office
    # confirmed (goods handed over) journaled as a refund (money out of the drawer) is another.
    return None if first[1] == txn and first[0] == action else first


def _redeem(tx: Tx, batch: Batch, i: int, v: Held) -> tuple[Breach | None, set[str]]:
    if v.state is vc.State.STOCK:
        return Breach(Reason.VOUCHER_NOT_SOLD, v.voucher_id, {"stock_of": v.terminal_id}), set()
    made = batch.effective[i].timestamp()
    if made > v.expires_at + batch.settings.clock_skew:  # a till refuses it: a dishonest one, or a stolen credential
        detail = {"expires_at": v.expires_at, "redeemed_at": batch.effective[i].isoformat()}
        return Breach(Reason.VOUCHER_REDEEMED_EXPIRED, v.voucher_id, detail), set()
    first = _use(tx, batch, i, v, "redeem")
    if first is not None:
        action, txn, terminal = first
        twice: dict[str, Any] = {
            "voucher_id": v.voucher_id,
            "value": v.value,
            "kind": v.kind,
            "first_use": action,
            "first_txn": txn,
            "first_terminal": terminal,
        }
        over = beyond_the_days_bound(tx, batch, v.value, 0)  # all of it beyond what the voucher held
        if over is not None:  # a stolen credential's, again and again: a person decides
            return Breach(Reason.VOUCHER_REDEEMED_TWICE, v.voucher_id, {**twice, **over[1]}), set()
        batch.flag(i, Reason.VOUCHER_REDEEMED_TWICE, v.voucher_id, **twice)
        _post(tx, batch, i, v, -v.value)  # the customer was served: the redeeming merchant is owed it all the same
        return None, set()
    _post(tx, batch, i, v, -v.value)
    return None, _set_state(tx, v, vc.State.REDEEMED)


def _refund(tx: Tx, batch: Batch, i: int, v: Held) -> tuple[Breach | None, set[str]]:
    problem = None
    if v.state is vc.State.STOCK:
        problem = "the voucher was never sold"
    elif v.sold_store != batch.store_id:
        problem = f"the voucher was sold at store {v.sold_store}"
    else:
        first = _use(tx, batch, i, v, "refund")
        if first is not None:
            problem = f"the voucher was used already ({first[0]} {first[1]} at {first[2]})"
    if problem is not None:
        return Breach(Reason.VOUCHER_REFUND_INVALID, v.voucher_id, {"problem": problem}), set()
    _post(tx, batch, i, v, -v.value)
    return None, _set_state(tx, v, vc.State.REFUNDED)


def bump(tx: Tx, touched: set[str]) -> None:
    """New feed versions for the vouchers whose state changed (last in the transaction, as every bump)."""
    bump_versions(tx, "voucher_states", "voucher_id", touched)
