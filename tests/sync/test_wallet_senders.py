"""The wallet's senders behind one interface: files (mode 0600, one JSON document each), email to a small
SMTP server on 127.0.0.1 (the standard library's client speaking to it), text messages to an HTTP webhook
on 127.0.0.1, routing by contact kind, the ``--wallet-sender`` specs, and failures as ``SendFailed``."""

from __future__ import annotations

import json
import socketserver
import stat
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from hq.wallet.senders import (
    ConsoleSender,
    FileSender,
    Message,
    RoutingSender,
    SendFailed,
    SmsSender,
    SmtpSender,
    SmtpSettings,
    WebhookSmsGateway,
    sender_from_spec,
)
from tests.ports import closed_port

MAIL = Message("email", "aiko@example.com", "Your wallet sign-in code", "Your code is 12345678.", "12345678")
TEXT = Message("phone", "+819012345678", "Your wallet sign-in code", "Your code is 87654321.", "87654321")


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP for one message: EHLO, MAIL, RCPT, DATA, QUIT."""

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        got: list[bytes] = self.server.got  # type: ignore[attr-defined]
        self.reply("220 test ESMTP")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.reply("250 test")
            elif verb == b"DATA":
                self.reply("354 go on")
                body = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    body += chunk
                got.append(body)
                self.reply("250 queued")
            elif verb == b"QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


@pytest.fixture
def smtp() -> Iterator[tuple[int, list[bytes]]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    server.got = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], server.got  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def test_the_file_sender_writes_one_private_json_document_a_message(tmp_path: Path) -> None:
    sender = FileSender(tmp_path / "outbox")
    sender.send(MAIL)
    sender.send(TEXT)
    files = sorted((tmp_path / "outbox").glob("*.json"))
    assert len(files) == 2 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert [json.loads(f.read_text())["to"] for f in files] == [MAIL.to, TEXT.to]


def test_the_console_sender_prints_to_standard_error(capsys: pytest.CaptureFixture[str]) -> None:
    ConsoleSender().send(MAIL)
    assert "aiko@example.com" in capsys.readouterr().err


def test_email_goes_through_smtp(smtp: tuple[int, list[bytes]]) -> None:
    port, got = smtp
    SmtpSender(SmtpSettings("127.0.0.1", port, sender="wallet@shop.example", starttls=False)).send(MAIL)
    (raw,) = got
    mail = message_from_bytes(raw)
    assert (mail["From"], mail["To"], mail["Subject"]) == ("wallet@shop.example", MAIL.to, MAIL.subject)
    assert "12345678" in mail.get_payload()


def test_an_smtp_server_that_does_not_answer_is_send_failed() -> None:
    with pytest.raises(SendFailed):
        SmtpSender(SmtpSettings("127.0.0.1", closed_port(), starttls=False, timeout=2)).send(MAIL)


def test_text_messages_go_to_the_webhook_and_routing_picks_by_kind(tmp_path: Path) -> None:
    posted: list[tuple[str, dict[str, str]]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers["Content-Length"])
            posted.append((self.headers.get("Authorization", ""), json.loads(self.rfile.read(size))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/sms"
        routed = RoutingSender(FileSender(tmp_path / "mail"), SmsSender(WebhookSmsGateway(url, "hook-token")))
        routed.send(MAIL)
        routed.send(TEXT)
    finally:
        server.shutdown()
        server.server_close()
    assert posted == [("Bearer hook-token", {"to": TEXT.to, "text": TEXT.text})]
    assert len(list((tmp_path / "mail").glob("*.json"))) == 1
    with pytest.raises(SendFailed):
        WebhookSmsGateway(f"http://127.0.0.1:{closed_port()}/sms", timeout=2).send_sms(TEXT.to, TEXT.text)


def test_sender_specs(tmp_path: Path) -> None:
    assert isinstance(sender_from_spec("console"), ConsoleSender)
    files = sender_from_spec(f"file:{tmp_path}")
    assert isinstance(files, FileSender) and files.directory == tmp_path
    mail = sender_from_spec("smtp://user:pw@mail.example:2525?from=wallet@shop.example&starttls=0")
    assert isinstance(mail, SmtpSender)
    assert mail.settings == SmtpSettings("mail.example", 2525, "wallet@shop.example", False, "user", "pw")
    both = sender_from_spec("console+sms=http://127.0.0.1:9/sms")
    assert isinstance(both, RoutingSender) and isinstance(both.phone, SmsSender)
    for bad in ("", "smtp://", "ftp://x", "mail"):
        with pytest.raises(ValueError):
            sender_from_spec(bad)
