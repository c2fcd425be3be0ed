"""Errors raised by drivers; each SDK's own exceptions are translated here, at the boundary.

DriverError
 +-- DriverUnavailable   the SDK or the service behind it (pcscd, a device) is missing
 +-- ReaderGone          the reader was unplugged or the service restarted
 +-- CardGone            the card left the field before the read finished
 +-- ProtocolError       the card or reader answered something we cannot use
"""

from __future__ import annotations


class DriverError(Exception):
    """Base of every driver error."""


class DriverUnavailable(DriverError):
    pass


class ReaderGone(DriverError):
    pass


class CardGone(DriverError):
    pass


class ProtocolError(DriverError):
    pass
