"""How a wallet sign-in code reaches the member: one ``Sender`` interface, several adapters.

    ConsoleSender   prints the message on head office's standard error (development, the demo)
    FileSender      writes each message as a JSON file in a directory (development, the tests)
    SmtpSender      email through an SMTP server (the standard library's ``smtplib`` and ``email``)
    SmsSender       a text message through an ``SmsGateway``; ``WebhookSmsGateway`` posts JSON to the
                    gateway's URL (most SMS providers take one: docs/wallet.md)
    RoutingSender   email addresses to one sender, phone numbers to another

``sender_from_spec`` reads the ``--wallet-sender`` option of ``tillpoint hq serve``.
A sender raises ``SendFailed`` when the message could not be handed over; the code stays unusable to
anyone else (only its digest is stored) and the member asks again.
"""

from __future__ import annotations

import json
import os
import secrets
import smtplib
import sys
import time
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import httpx

from hq.errors import HqError


class SendFailed(HqError):
    """The message could not be handed to the email server or the SMS gateway."""


@dataclass(frozen=True, slots=True)
class Message:
    """One sign-in message: ``to`` is a normalised contact (``kind`` "email" or "phone")."""

    kind: str
    to: str
    subject: str
    text: str
    code: str


class Sender(Protocol):
    def send(self, message: Message) -> None: ...


class SmsGateway(Protocol):
    def send_sms(self, to: str, text: str) -> None: ...


class ConsoleSender:
    """Development: the message on standard error, where the operator of a demo sees it."""

    def send(self, message: Message) -> None:
        print(f"[wallet] to {message.to}: {message.text}", file=sys.stderr, flush=True)


class FileSender:
    """Development and tests: each message as ``<time>-<random>.json`` in ``directory`` (mode 0600),
    written whole under another name first, so a reader never sees half a message."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, message: Message) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{secrets.token_hex(4)}"
        part = self.directory / f".{name}.part"
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(asdict(message), out, ensure_ascii=False)
        os.replace(part, self.directory / f"{name}.json")


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int = 587
    sender: str = "wallet@localhost"
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0


class SmtpSender:
    """Email through an SMTP server: STARTTLS unless told otherwise, a login when a user is given."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def send(self, message: Message) -> None:
        s = self.settings
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = s.sender, message.to, message.subject
        mail.set_content(message.text)
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout) as smtp:
                if s.starttls:
                    smtp.starttls()
                if s.username:
                    smtp.login(s.username, s.password or "")
                smtp.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            raise SendFailed(f"the email server refused or did not answer: {type(exc).__name__}") from exc


class WebhookSmsGateway:
    """An SMS provider's HTTP webhook: ``POST url`` with ``{"to", "text"}`` and a bearer token."""

    def __init__(self, url: str, token: str = "", timeout: float = 10.0) -> None:
        self.url, self.token, self.timeout = url, token, timeout

    def send_sms(self, to: str, text: str) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            httpx.post(
                self.url, json={"to": to, "text": text}, headers=headers, timeout=self.timeout
            ).raise_for_status()
        except httpx.HTTPError as exc:
            raise SendFailed(f"the SMS gateway refused or did not answer: {type(exc).__name__}") from exc


class SmsSender:
    """Phone numbers: the message's text through an ``SmsGateway``."""

    def __init__(self, gateway: SmsGateway) -> None:
        self.gateway = gateway

    def send(self, message: Message) -> None:
        self.gateway.send_sms(message.to, message.text)


class RoutingSender:
    """Email addresses to ``email``, phone numbers to ``phone`` (the console when none is set)."""

    def __init__(self, email: Sender, phone: Sender | None = None) -> None:
        self.email, self.phone = email, phone

    def send(self, message: Message) -> None:
        target = self.phone if message.kind == "phone" and self.phone is not None else self.email
        target.send(message)


def sender_from_spec(spec: str) -> Sender:
    """``console``, ``file:DIR``, ``smtp://[user:pass@]host[:port]?from=ADDR&starttls=0`` (587 and
    STARTTLS by default); ``+sms=URL`` after any of them routes phone numbers to that webhook
    (its token from the environment variable ``TILLPOINT_SMS_TOKEN``). ValueError for anything else."""
    main, _, sms = spec.partition("+sms=")
    phone: Sender | None = SmsSender(WebhookSmsGateway(sms, os.environ.get("TILLPOINT_SMS_TOKEN", ""))) if sms else None
    email = _one_sender(main)
    return RoutingSender(email, phone) if phone is not None else email


def _one_sender(spec: str) -> Sender:
    if spec == "console":
        return ConsoleSender()
    if spec.startswith("file:"):
        return FileSender(Path(spec.removeprefix("file:")))
    if spec.startswith("smtp://"):
        url = urlsplit(spec)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if not url.hostname:
            raise ValueError("an smtp:// sender needs a host")
        return SmtpSender(
            SmtpSettings(
                host=url.hostname,
                port=url.port or 587,
                sender=query.get("from", "wallet@localhost"),
                starttls=query.get("starttls", "1") != "0",
                username=url.username,
                password=url.password,
            )
        )
    raise ValueError(f"unknown wallet sender {spec!r}: console, file:DIR or smtp://host:port?from=ADDR")


__all__ = [
    "ConsoleSender",
    "FileSender",
    "Message",
    "RoutingSender",
    "SendFailed",
    "Sender",
    "SmsGateway",
    "SmsSender",
    "SmtpSender",
    "SmtpSettings",
    "WebhookSmsGateway",
    "sender_from_spec",
]
