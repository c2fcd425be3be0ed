"""Logs: levels, journald priorities, JSON lines, and no card UID, PAN or member PII in any of them."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal import logs
from tests.fixtures.hq import HqProcess
from tests.ops.helpers import Api, NotifyListener, TillProcess, till_config, wait_until

UID = "04A1B2C3D4E501"  # demo card of M-0001, Aiko Tanaka
PAN = "4111 1111 1111 1111"  # a Luhn-valid test card number


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    stream = io.StringIO()
    handler = logs.setup("debug", "json", stream)
    yield stream, logging.getLogger("tillpoint.test")
    logging.getLogger().removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    "text, hidden",
    [
        (f"card {UID} read", UID),
        ("uid=04:a1:b2:c3", "04:a1:b2:c3"),
        ("IDm 0123456789abcdef seen", "0123456789abcdef"),
        (f"scan {PAN} discarded", PAN),
        ("scan 4111111111111111 discarded", "4111111111111111"),
        ("mail aiko.tanaka@example.com", "aiko.tanaka@example.com"),
    ],
)
def test_redact_hides_card_data(text: str, hidden: str) -> None:
    assert hidden not in logs.redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "txn 01a20896-d662-7f30-8e4d-fad3f17fb28b seq 12",  # ids stay traceable
        "uid_hash " + "ab" * 32,  # the keyed hash is what the till stores
        "total 12345678 points 1234567890123",  # amounts, and numbers that are not valid PANs
        "member M-0001 tier gold",
    ],
)
def test_redact_keeps_what_is_not_personal(text: str) -> None:
    assert logs.redact(text) == text


def test_records_are_redacted_in_message_args_fields_and_tracebacks(
    captured: tuple[io.StringIO, logging.Logger],
) -> None:
    stream, log = captured
    log.info("tap on %s", UID, extra={"display_name": "Aiko Tanaka", "member_id": "M-0001", "note": f"pan {PAN}"})
    try:
        raise ValueError(f"bad card {UID}")
    except ValueError:
        log.exception("read failed")
    first, second = lines(stream)
    assert first["msg"] == "tap on [card-uid]" and first["display_name"] == "[redacted]"
    assert first["member_id"] == "M-0001" and first["note"] == "pan [pan]"
    assert "bad card [card-uid]" in str(second["exc"]) and UID not in stream.getvalue()


def test_journal_format_has_a_priority_on_every_line() -> None:
    stream = io.StringIO()
    handler = logs.setup("info", "journal", stream)
    try:
        log = logging.getLogger("tillpoint.test")
        log.debug("not shown")
        log.warning("reader gone", extra={"reader": "ACR122U 00"})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.error("failed", exc_info=True)
    finally:
        logging.getLogger().removeHandler(handler)
    out = stream.getvalue().splitlines()
    assert out[0] == '<4>tillpoint.test: reader gone reader="ACR122U 00"'
    assert out[1] == "<3>tillpoint.test: failed" and len(out) > 3 and all(x.startswith("<3>") for x in out[1:])


def test_auto_format_follows_journal_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with (tmp_path / "err").open("w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert isinstance(logs.formatter("auto", stream), logs.JournalFormatter)
        monkeypatch.setenv("JOURNAL_STREAM", "1:2")
        assert isinstance(logs.formatter("auto", stream), logs.TextFormatter)


def test_a_running_daemon_logs_no_uid_and_no_name(tmp_path: Path, hq: HqProcess) -> None:
    notify = NotifyListener(tmp_path / "notify.sock")
    till = TillProcess(till_config(tmp_path, hq, hq.add_terminal("T-LOG"), "T-LOG", sale="auto_amount = 700"), notify)
    api = Api(till)
    try:
        till.start()
        wait_until(lambda: api.status()["cache"]["members"] >= 4, 20, "the cache to load")
        for uid in (UID, "04A1B2C3D4E503", "04FFFFFFFFFF01"):
            assert api.tap(uid).status_code == 202
        wait_until(
            lambda: till.log.read_text().count("refused") >= 2 and "sale approved" in till.log.read_text(),
            10,
            "the taps in the log",
        )
        assert till.stop() == 0
    finally:
        api.close()
        till.kill()
        notify.close()
    text = till.log.read_text()
    records = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
    assert {"info"} <= {r["level"] for r in records}
    assert any(r["msg"] == "refused: blocked_card" for r in records)
    assert any(r["msg"] == "sale approved" and r["member_id"] == "M-0001" for r in records)
    for secret in (UID, "04A1B2C3D4E503", "04FFFFFFFFFF01", "Aiko", "Tanaka", "Chen Wei"):
        assert secret.lower() not in text.lower(), f"{secret} reached the log"
