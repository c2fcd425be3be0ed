"""drivers.open_reader on an install without the pcsc extra (pyscard): ``pip install tillpoint`` alone, or the
demo's virtualenv on a machine without the PC/SC packages."""

from __future__ import annotations

import sys

import pytest

from drivers import open_reader
from drivers.errors import DriverUnavailable
from drivers.sim import SimReader


@pytest.fixture
def no_pyscard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "smartcard", None)  # not installed: importing it raises ImportError
    monkeypatch.delitem(sys.modules, "drivers.pcsc", raising=False)


@pytest.mark.usefixtures("no_pyscard")
def test_auto_falls_back_to_the_simulated_reader_without_pyscard() -> None:
    reader = open_reader("auto:", lambda uid: uid.hex())
    assert isinstance(reader, SimReader) and reader.name == "sim:"


@pytest.mark.usefixtures("no_pyscard")
def test_a_pcsc_reader_without_pyscard_names_the_extra() -> None:
    with pytest.raises(DriverUnavailable, match=r"pyscard is not installed .*tillpoint\[pcsc\]"):
        open_reader("pcsc:", lambda uid: uid.hex())
