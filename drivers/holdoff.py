"""The card readers' debounce, shared by the PC/SC and nfcpy drivers.

A card lifted a little and put back (a wobble) is not a second tap: the same card back on the same
reader within ``seconds`` of leaving it is the tap already reported. A card that never left (the
reader polled it again, or the reader was reopened under it) is the same tap too.
"""

from __future__ import annotations


class HoldOff:
    """Debounce: the same card back on the same reader within ``seconds`` of leaving is no new tap."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last: dict[str, tuple[str, float | None]] = {}  # reader -> (uid hash, left at; None: still there)

    def left(self, reader: str, at: float) -> None:
        """The card on ``reader`` left it at ``at`` (monotonic seconds)."""
        if reader in self.last and self.last[reader][1] is None:
            self.last[reader] = (self.last[reader][0], at)

    def is_new_tap(self, reader: str, uid_hash: str, at: float) -> bool:
        """Whether the card ``uid_hash`` now on ``reader`` is a new tap; it is then on the reader."""
        previous = self.last.get(reader)
        self.last[reader] = (uid_hash, None)
        if previous is None or previous[0] != uid_hash or self.seconds <= 0:
            return True
        left_at = previous[1] if previous[1] is not None else at  # off and on between two polls
        return at - left_at >= self.seconds
