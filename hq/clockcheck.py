"""Whether head office may trust its own clock for what cannot be undone.

Head office owns time for the tills (docs/reconciliation.md), but its own clock can be wrong too: a clock
reset before NTP answers, a year typed wrong, a virtual machine restored. Points expiry, gift card value
cleared and a settlement period closed act on "now" and cannot be taken back, so before each the clock is
checked against what head office last heard from its tills:

* ``now`` more than ``MAX_GAP`` after the last contact of any till: a clock that jumped ahead (no till has
  spoken since to confirm it; a head office none of whose tills spoke for a day, a chain closed that long,
  waits for its first till: what waits is due again then, nothing is lost);
* ``now`` before the last contact of a till by more than the allowed skew: a clock that went back (head office
  wrote that contact with its own clock; a daily run would be run again for a day already done);
* most tills heard in the last ``RECENT`` report head office's clock off by more than the allowed skew
  (each push and pull measures the till's clock against head office's).

``doubt`` gives the reason, or None; the timer skips what cannot be undone while there is one, and says so.
A jump ahead under the running timer (its clock moved further than its monotonic clock between two ticks)
is held too, until a till heard after it confirms the new time (``unconfirmed``): until then no till's
contact is recent enough to show it wrong, and a jump of less than ``MAX_GAP`` passes every check above.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hq.db.engine import Tx
from sync.protocol import parse_time

MAX_GAP = timedelta(days=1)
RECENT = timedelta(hours=1)
DEFAULT_SKEW = 300.0  # seconds, as head office's ``--clock-skew`` by default


def doubt(tx: Tx, now: datetime, skew: float) -> str | None:
    """Why head office's clock (``now``) is not to be trusted for what cannot be undone, or None."""
    rows = tx.all("SELECT last_seen, clock_offset FROM terminals WHERE revoked = 0 AND last_seen IS NOT NULL")
    heard = [(at, row[1]) for row in rows if (at := parse_time(str(row[0]))) is not None]
    return judge(now, heard, skew)


def judge(now: datetime, heard: list[tuple[datetime, float | None]], skew: float) -> str | None:
    """``doubt`` on what was read: (last contact, the till's clock minus head office's) of each till."""
    if not heard:
        return None  # no till to compare with: nothing a till holds can be lost by it either
    latest = max(at for at, _ in heard)
    if latest - now > timedelta(seconds=skew):
        return (
            f"head office's clock says {now.isoformat(timespec='seconds')}, before its last contact with a till"
            f" ({latest.isoformat(timespec='seconds')}): a clock that went back? Set it right (NTP); it is trusted"
            " again once that time has passed or each such till has spoken again"
        )
    if now - latest > MAX_GAP:
        return (
            f"head office's clock says {now.isoformat(timespec='seconds')}, {(now - latest) / timedelta(hours=1):.0f}"
            " hours after the last contact of any till: a clock that jumped ahead? It is trusted again once a till"
            " agrees with it"
        )
    recent = [float(offset) for at, offset in heard if offset is not None and abs(now - at) <= RECENT]
    off = sorted(o for o in recent if abs(o) > skew)
    if recent and 2 * len(off) > len(recent):
        middle = off[len(off) // 2]
        return (
            f"{len(off)} of the {len(recent)} tills heard in the last hour find head office's clock off by about"
            f" {-middle:+.0f} s (allowed: {skew:.0f} s): set head office's clock right (NTP)"
        )
    return None


def unconfirmed(tx: Tx, since: datetime) -> str | None:
    """After head office's clock jumped ahead under a running process (``since``: the earliest time by the new
    clock a till could have been heard after the jump): why it is not trusted yet (no till heard since; ``doubt``
    judges what a till heard since measured), or None. A head office with no till is not held by it (``judge``)."""
    rows = tx.all("SELECT last_seen FROM terminals WHERE revoked = 0 AND last_seen IS NOT NULL")
    heard = [at for row in rows if (at := parse_time(str(row[0]))) is not None]
    if not heard or max(heard) >= since:
        return None
    return (
        f"head office's clock jumped ahead to {since.isoformat(timespec='seconds')} or later while it ran, and no"
        " till has spoken since to confirm it: it is trusted again once a till agrees with it"
    )


__all__ = ["DEFAULT_SKEW", "MAX_GAP", "RECENT", "doubt", "judge", "unconfirmed"]
