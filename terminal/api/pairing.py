"""Pairing: a POS or a cashier panel trades a short code shown on the till for its own API token.

    code = pairing.new_code()            6 digits, valid ``ttl`` seconds, one use, ``attempts`` tries
    token = pairing.redeem(code, name)   the device's bearer token (shown once, kept only as a hash)
    pairing.check(token) -> device id | None
    pairing.devices(), pairing.revoke(device_id)

Only someone who can see the till's console or an already paired panel gets a code (``tillpoint
pair``, or ``POST /v1/pair/code`` with a token), so a program on the till, or a web page, cannot
pair itself. A code is dropped after ``attempts`` wrong tries (all codes count: guessing 6 digits
with 5 tries succeeds once in 200,000 codes issued), after ``ttl`` seconds, and once used.

Tokens are 256-bit random strings; the file (``paired.json`` beside the database, mode 0600) keeps
their SHA-256 only, so a copy of the file lets nobody in.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from terminal.credentials import token_digest
from terminal.errors import Code, Rejected
from terminal.model import utc_iso
from terminal.ports import Clock

CODE_DIGITS = 6


@dataclass(frozen=True, slots=True)
class PairingCode:
    code: str
    expires_in: float


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    name: str
    paired_at: str
    token_sha256: str

    def public(self) -> dict[str, str]:
        return {"device_id": self.device_id, "name": self.name, "paired_at": self.paired_at}


class Pairing:
    """Pairing codes and paired devices; thread-safe; ``path`` None keeps devices in memory only."""

    def __init__(
        self,
        path: Path | None,
        *,
        ttl: float = 120.0,
        attempts: int = 5,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self.path = path
        self.ttl = ttl
        self.attempts = attempts
        self.clock = clock
        self.wall = wall
        self._lock = threading.Lock()
        self._code: tuple[str, float] | None = None  # (code, expiry on ``clock``)
        self._failures = 0
        self._devices: dict[str, Device] = self._load()

    # -- codes -------------------------------------------------------------------------------------

    def new_code(self) -> PairingCode:
        """A fresh code; the previous one stops working."""
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        with self._lock:
            self._code = (code, self.clock() + self.ttl)
            self._failures = 0
        return PairingCode(code, self.ttl)

    def redeem(self, code: str, name: str) -> tuple[Device, str]:
        """The new device and its token, once; ``Rejected(pairing_refused)`` otherwise."""
        with self._lock:
            current = self._code
            if current is None or self.clock() > current[1]:
                self._code = None
                raise Rejected(Code.PAIRING_REFUSED)
            if not hmac.compare_digest(code.strip().encode(), current[0].encode()):
                self._failures += 1
                if self._failures >= self.attempts:
                    self._code = None  # too many tries: a new code must be asked for
                raise Rejected(Code.PAIRING_REFUSED)
            self._code = None
            token = secrets.token_urlsafe(32)
            device = Device(
                secrets.token_hex(6), name.strip()[:64] or "device", utc_iso(self.wall()), token_digest(token)
            )
            self._devices[device.device_id] = device
            self._save()
        return device, token

    # -- tokens ------------------------------------------------------------------------------------

    def check(self, token: str) -> str | None:
        """The device id of a paired token, or None."""
        digest = token_digest(token)
        with self._lock:
            for device in self._devices.values():
                if hmac.compare_digest(digest, device.token_sha256):
                    return device.device_id
        return None

    def devices(self) -> list[dict[str, str]]:
        with self._lock:
            return [d.public() for d in sorted(self._devices.values(), key=lambda d: d.paired_at)]

    def revoke(self, device_id: str) -> bool:
        with self._lock:
            if self._devices.pop(device_id, None) is None:
                return False
            self._save()
            return True

    # -- the file ----------------------------------------------------------------------------------

    def _load(self) -> dict[str, Device]:
        if self.path is None or not self.path.exists():
            return {}
        raw: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        devices = [Device(**d) for d in raw.get("devices", [])]
        return {d.device_id: d for d in devices}

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"devices": [asdict(d) for d in self._devices.values()]}, indent=1).encode()
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
