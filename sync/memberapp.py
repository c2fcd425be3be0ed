"""A member-app simulator: the phone side of member payments, for the demo and the tests.

The app keeps, in a state directory (default ``./var/member/<member>``):

    device.key    the device's Ed25519 private key (raw 32 bytes, mode 0600); never leaves the device
    state.json    member id, head office URL and member app token, the device certificate, the counter

``register`` sends the public key to head office (``POST /v1/devices``, member app token from
``tillpoint hq member-token``) and keeps the certificate it gets; ``next_code`` makes a fresh
one-time payment code (the counter is saved before the code is shown, so a code is never made
twice); ``account`` reads the balance (``GET /v1/members/me``).

Errors: ``MemberAppError`` (httpx errors and head office's refusals are translated here).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync.client import public_tls
from terminal import membercodes
from terminal import payments as pay


class MemberAppError(Exception):
    pass


def default_dir(member_id: str) -> Path:
    return Path("var") / "member" / member_id


class MemberApp:
    def __init__(
        self,
        member_id: str,
        state_dir: Path | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.member_id = member_id
        self.dir = state_dir or default_dir(member_id)
        self.transport, self.timeout = transport, timeout
        self.state: dict[str, Any] = self._load()

    # -- local state ----------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        path = self.dir / "state.json"
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        if state.get("member_id", self.member_id) != self.member_id:
            raise MemberAppError(f"{self.dir} belongs to member {state['member_id']}")
        return state

    def _save(self) -> None:
        """Write the state atomically, readable by its owner only (it holds the member app token)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.dir / "state.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a leftover temporary file keeps its old mode otherwise
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({**self.state, "member_id": self.member_id}, indent=2))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.dir / "state.json")

    def key(self) -> Ed25519PrivateKey:
        """The device key, made on first use."""
        path = self.dir / "device.key"
        if not path.exists():
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(Ed25519PrivateKey.generate().private_bytes_raw())
        return Ed25519PrivateKey.from_private_bytes(path.read_bytes())

    @property
    def cert(self) -> pay.DeviceCert | None:
        doc = self.state.get("cert")
        return pay.cert_from_doc(doc) if doc else None

    # -- head office ----------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        hq, token = self.state.get("hq"), self.state.get("token")
        if not hq or not token:
            raise MemberAppError("not registered: run `tillpoint member register MEMBER --hq URL --token TOKEN`")
        try:
            with httpx.Client(
                base_url=hq,
                verify=public_tls(),
                timeout=self.timeout,
                transport=self.transport,
                headers={"Authorization": f"Bearer {token}"},
            ) as http:
                response = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise MemberAppError(f"head office unreachable: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code != 200:
            raise MemberAppError(f"head office refused ({response.status_code}): {response.text[:300]}")
        return response.json()

    def register(self, hq_url: str, token: str) -> pay.DeviceCert:
        """Register this device's key with head office and keep the certificate it issues."""
        self.state.update(hq=hq_url.rstrip("/"), token=token)
        public = pay.public_bytes(self.key()).hex()
        doc = self._call("POST", "/v1/devices", json={"device_key": public})
        cert = pay.cert_from_doc(doc)
        if cert.device_key.hex() != public or cert.member_id != self.member_id:
            raise MemberAppError("head office issued a certificate for another key or member")
        self.state.update(cert=doc, counter=int(self.state.get("counter", 0)))
        self._save()
        self.state["member_code"] = self.account().get("member_code")
        self._save()
        return cert

    def account(self) -> dict[str, Any]:
        """Balance, points and devices as head office holds them."""
        found: dict[str, Any] = self._call("GET", "/v1/members/me")
        return found

    # -- codes ----------------------------------------------------------------------------------

    def _next_counter(self) -> tuple[pay.DeviceCert, int]:
        cert = self.cert
        if cert is None:
            raise MemberAppError("this device has no certificate yet: register it first")
        counter = int(self.state.get("counter", 0)) + 1
        self.state["counter"] = counter
        self._save()  # before the code exists: a crash never makes two codes with one counter
        return cert, counter

    def next_code(self, now: float | None = None) -> str:
        """A fresh one-time payment code (valid 60 s plus drift at a till)."""
        cert, counter = self._next_counter()
        return pay.make_code(self.key(), cert.cert_id, int(time.time() if now is None else now), counter)

    def fresh_member_code(self, now: float | None = None) -> str:
        """A member code made by this device now: it identifies the member and, once, proves they are
        at the till (what redeeming points needs). Single-use and short-lived like a payment code."""
        cert, counter = self._next_counter()
        return membercodes.device_code(self.key(), cert.cert_id, int(time.time() if now is None else now), counter)

    def member_code(self) -> str:
        """The member's code signed by head office (it identifies, never spends)."""
        code = self.state.get("member_code")
        if not isinstance(code, str):
            code = str(self.account()["member_code"])
            self.state["member_code"] = code
            self._save()
        return code
