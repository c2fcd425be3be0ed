"""The till's rotating check-in code (docs/checkin.md): a link to head office's wallet carrying a code this
till signs offline for the current 30-second step, shown on the panel's check-in page (a door display) and
printed by ``tillpoint checkin-code``.

The code is signed with the till's claim key (``terminal.enrolment.ClaimSigner``), whose public half head
office learns from the journal: the first code journals it (once), so a till that never printed a claim code
can still be checked against. The code (``sync.checkins``) names no member and gives nothing by itself: a
signed-in member's wallet sends it to head office, which records the visit once per store and day.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sync import checkins
from terminal import qrcodes
from terminal.enrolment import ClaimSigner
from terminal.ports import Clock


@dataclass(frozen=True, slots=True)
class CheckinView:
    code: str
    link: str
    step: int
    renew_in: int
    """Seconds until the next step's code."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def never_measured() -> float | None:
    return None


class CheckinCodes:
    """This till's check-in code for the current step, signed once a step. Head office takes a code of its own
    step (by its clock) or the one before: ``offset`` is this till's clock minus head office's as last measured
    (None: never), and the step is head office's, so a till whose clock went wrong still shows codes that work."""

    def __init__(
        self,
        signer: ClaimSigner,
        store_id: str,
        wallet_url: str,
        clock: Clock = time.time,
        offset: Callable[[], float | None] = never_measured,
    ) -> None:
        self.signer, self.store_id, self.wallet_url, self.clock = signer, store_id, wallet_url, clock
        self.offset = offset
        self._lock = threading.Lock()
        self._held: tuple[int, str] = (-1, "")

    def current(self) -> CheckinView:
        now = self.clock() - (self.offset() or 0.0)
        step = checkins.step_of(now)
        with self._lock:
            if self._held[0] != step:
                self.signer.register()  # head office checks codes against the key this journals (once)
                self._held = (step, checkins.sign(self.signer.key, self.signer.terminal_id, self.store_id, step))
            code = self._held[1]
        renew_in = max(1, (step + 1) * checkins.STEP_SECONDS - int(now))
        return CheckinView(code, checkins.link(self.wallet_url, code), step, renew_in)

    def shown(self) -> dict[str, Any]:
        """The current code with its QR as SVG (the panel's check-in page draws it)."""
        view = self.current()
        return {**view.as_dict(), "svg": qrcodes.svg(view.link, compact=False)}


__all__ = ["CheckinCodes", "CheckinView"]
