"""What happens to a captured receipt: kept, read by a template, made a sale, given its loyalty block.

``Desk`` is the ``ReceiptDesk`` the printer in the middle (``drivers.printer``) hands receipts to. It
does no I/O of its own: keeping a receipt's bytes and recording the sale are the callables and the
session it is given (``terminal/daemon.py`` wires them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from terminal.errors import Rejected
from terminal.model import Basket, ReceiptRef, ReceiptSold
from terminal.ports import Emit
from terminal.receipts.age import printed_time
from terminal.receipts.block import LABELS, BlockInfo, render
from terminal.receipts.escpos import Captured, ReceiptParser
from terminal.receipts.templates import Template, first_reading

SLIP_FEED = b"\x1bd\x05"
"""ESC d 5: after a loyalty block printed as a slip of its own (a printer without a cutter), five lines fed, so it
passes the tear bar and is torn off whole."""

Keep = Callable[[Captured, str | None], object]
"""Keep a receipt's bytes; the second argument is the refusal code of one no template read (flagged)."""


class ReceiptSales(Protocol):
    def receipt_sale(self, basket: Basket, ref: ReceiptRef) -> ReceiptSold: ...


def block_info(sold: ReceiptSold, title: str, language: str = "en") -> BlockInfo:
    r = sold.receipt
    member = sold.member
    return BlockInfo(
        title=title,
        member=(member.display_name or member.member_id) if member else None,
        points_earned=r.points_delta if member else 0,
        balance=r.points_balance if member else None,
        tier=sold.tier or (f"Tier: {member.tier}" if member and member.tier else None),
        offer=sold.offer,
        claim_url=sold.claim,
        language=language,
    )


def _printable(language: str, encoding: str) -> bool:
    words = LABELS.get(language)
    if words is None:
        return False
    try:
        "".join(words.values()).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


class Desk:
    def __init__(
        self,
        templates: Sequence[Template],
        sales: ReceiptSales | None,
        keep: Keep,
        *,
        pos_id: str = "POS-1",
        enrich: bool = False,
        native_qr: bool = True,
        title: str = "Loyalty",
        emit: Emit | None = None,
    ) -> None:
        self.templates = list(templates)
        self.by_name = {t.name: t for t in self.templates}
        self.sales, self.keep, self.pos_id = sales, keep, pos_id
        self.enrich, self.native_qr, self.title = enrich and sales is not None, native_qr, title
        self.emit = emit

    def parser(self) -> ReceiptParser:
        first = self.templates[0] if self.templates else None
        if first is None:
            return ReceiptParser()
        return ReceiptParser(first.encoding, first.multibyte, first.kanji_default)

    def captured(self, receipt: Captured) -> bytes | None:
        try:
            got = first_reading(self.templates, receipt)
        except Rejected as exc:
            self.keep(receipt, exc.code.value)
            self._event(receipt, "unread", exc.code.value)
            return None
        self.keep(receipt, None)
        if self.sales is None:
            self._event(receipt, "read", None, got.number)
            return None
        template = self.by_name[got.template]
        printed = printed_time(got.time, template.time_format)
        ref = ReceiptRef(receipt.digest, got.number, self.pos_id, template.number_scope, printed)
        try:
            sold = self.sales.receipt_sale(got.basket, ref)
        except Rejected as exc:
            self._event(receipt, "refused", exc.code.value, got.number)
            return None
        self._event(receipt, "sold", None, got.number, sold.receipt.txn_id)
        if not self.enrich:
            return None
        # words the receipt's code page cannot print (Japanese on a cp437 line) fall back to English
        language = template.language if _printable(template.language, receipt.encoding) else "en"
        info = block_info(sold, self.title, language)
        block = render(info, template.width, receipt.encoding, self.native_qr)
        # a printer without a cutter: the block follows the receipt's end as a slip of its own, fed out to be torn off
        return block if receipt.cut else block + SLIP_FEED

    def _event(
        self, receipt: Captured, state: str, code: str | None, number: str | None = None, txn_id: str | None = None
    ) -> None:
        if self.emit is not None:
            self.emit(
                {
                    "type": "receipt",
                    "state": state,
                    "code": code,
                    "digest": receipt.digest,
                    "number": number,
                    "txn_id": txn_id,
                    "pos_id": self.pos_id,
                    "cut": receipt.cut,
                }
            )


__all__ = ["Desk", "Keep", "ReceiptSales", "block_info"]
