"""Device drivers, chosen by name from a registry; each SDK is imported lazily in its own module.

    open_reader("sim:")                  simulated reader (demo, tests)
    open_reader("pcsc:")                 every PC/SC reader pcscd offers
    open_reader("pcsc:ACS ACR122U*")     PC/SC readers whose name matches the glob
    open_reader("auto:")                 PC/SC when pcscd has a reader, else the simulator
"""

from __future__ import annotations

from collections.abc import Callable

from drivers.errors import DriverError, DriverUnavailable
from terminal.ports import CardReader, UidHasher

ReaderFactory = Callable[[str, UidHasher], CardReader]


def _sim(arg: str, hash_uid: UidHasher) -> CardReader:
    from drivers.sim import SimReader

    return SimReader(hash_uid, name=f"sim:{arg}" if arg else "sim:")


def _pcsc(arg: str, hash_uid: UidHasher) -> CardReader:
    from drivers.pcsc import PcscReader

    return PcscReader(arg or "*", hash_uid)


def _auto(arg: str, hash_uid: UidHasher) -> CardReader:
    try:
        reader = _pcsc(arg, hash_uid)
        if reader.readers():
            return reader
    except DriverError:
        pass
    return _sim(arg, hash_uid)


READERS: dict[str, ReaderFactory] = {"sim": _sim, "pcsc": _pcsc, "auto": _auto}


def open_reader(spec: str, hash_uid: UidHasher) -> CardReader:
    """Open a reader by its ``kind:argument`` name; an unknown kind raises DriverUnavailable."""
    kind, _, arg = spec.partition(":")
    factory = READERS.get(kind)
    if factory is None:
        raise DriverUnavailable(f"unknown reader kind {kind!r} (known: {', '.join(sorted(READERS))})")
    return factory(arg, hash_uid)


__all__ = ["DriverError", "READERS", "open_reader"]
