"""Which of this till's entries head office's figures, as the last pull brought them, already hold.

Head office counts an entry once it acknowledged it; a pull brings its counts (a coupon's uses, a gift card's
balance) as they stood when the pull began. A push round comes more often than a pull, so an entry acknowledged
after the last pull began is in neither: the till counts it itself until a pull brings it. ``COUNTED_SEQ`` is the
seq this till's journal was acknowledged up to when its last whole pull began (``Store.apply_changes``).
"""

from __future__ import annotations

COUNTED_SEQ = "hq_counted_seq"
"""The state key of the seq up to which this till's entries were acknowledged when its last whole pull began."""

UNCOUNTED = (
    "(j.pushed_at IS NULL OR j.seq > COALESCE((SELECT CAST(value AS INTEGER) FROM sync_state "
    f"WHERE key = '{COUNTED_SEQ}'), 0))"
)
"""SQL: a journal row ``j`` head office's counts, as the last pull brought them, do not hold: not acknowledged
yet, or acknowledged after that pull began."""
