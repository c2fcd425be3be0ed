"""The one path that commits a sale.

Every way a sale is rung builds a ``SaleOrder`` and hands it to ``Checkout.sell``: the cashier's
session (confirm, and a member's payment code), the POS (``POST /v1/sales``) and the demo's sale on
each tap. Here, and only here, the order becomes a price (unless the cashier was already shown
one), a payment (stored value, a device's code, the card of the last tap) and the durable commit,
so the journal row of a sale has the same shape whoever asked for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from terminal.errors import Code, Rejected
from terminal.identity import Identified, Payment
from terminal.model import Quote, Receipt, SaleOrder
from terminal.ports import SaleDesk

TAP_STANDS_S = 300.0  # how long a member's card tap, unused, stays the member at this till (and their proof)


def no_tap() -> Identified | None:
    return None


class LastTap:
    """The member's last card tap at this till, while it may still stand for them: at most ``max_age`` seconds
    old. An unused secure tap would otherwise be the member's proof for any later sale rung on their number,
    hours later. (Its secure read proves a spend once: ``Service`` downgrades it after the sale it paid.)"""

    def __init__(self, max_age: float = TAP_STANDS_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age, self.clock = max_age, clock
        self._lock = threading.Lock()
        self._tap: Identified | None = None
        self._at = 0.0

    def set(self, tap: Identified | None) -> None:
        with self._lock:
            self._tap, self._at = tap, self.clock()

    def get(self) -> Identified | None:
        with self._lock:
            if self._tap is not None and self.clock() - self._at > self.max_age:
                self._tap = None
            return self._tap


class Checkout:
    """Commits sales on ``desk`` (the service); ``last_tap`` is the card tap that identified the member
    (the daemon's last one), journalled with the sale and, when it can prove itself, their proof."""

    def __init__(self, desk: SaleDesk, last_tap: Callable[[], Identified | None] = no_tap) -> None:
        self.desk = desk
        self.last_tap = last_tap

    def sell(self, order: SaleOrder, refused: Callable[[Rejected], object] | None = None) -> Receipt:
        """Price ``order`` (unless it carries the quote shown) and record it; the receipt exists only
        once the sale is durable. A refusal raises ``Rejected`` and records nothing; ``refused`` is told
        of one by the price or the commit first (the POS's sales make it an event)."""
        tapped = self.last_tap()
        if order.pay_by_card and tapped is None:
            raise Rejected(Code.NO_MEMBER, "No card was tapped to pay with.")
        payment = Payment(order.stored_value, order.code, tapped if order.pay_by_card else None)
        try:
            quote = order.quote if order.quote is not None else self._price(order, tapped)
            return self.desk.commit(quote, payment, tapped=tapped, receipt=order.receipt, request_id=order.request_id)
        except Rejected as exc:
            if refused is not None:
                refused(exc)
            raise

    def quote(self, order: SaleOrder) -> Quote:
        """The price ``sell`` would give ``order`` now, recording nothing (the POS's quote)."""
        return self._price(order, self.last_tap())

    def _price(self, order: SaleOrder, tapped: Identified | None) -> Quote:
        """The member's personal coupons apply unasked only when the sale holds their proof (``Service.offers``)."""
        proven = order.member_id is not None and self.desk.may_spend(order.member_id, tapped, order.code)
        return self.desk.quote(order.member_id, order.basket, order.coupons, order.redeem, order.rewards, proven=proven)

    def code_stands(self, member_id: str, code: str) -> bool:
        return self.desk.code_stands(member_id, code)

    def may_spend(self, member_id: str, code: str | None = None) -> bool:
        """Whether the sale in progress holds the member's proof for spending points, or needs none."""
        return self.desk.may_spend(member_id, self.last_tap(), code)


__all__ = ["TAP_STANDS_S", "Checkout", "LastTap", "no_tap"]
