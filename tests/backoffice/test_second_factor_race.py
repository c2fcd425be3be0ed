"""The same second-factor code sent by two sign-ins at the same moment, against a real head-office store on SQLite
and on PostgreSQL, each sign-in through a database connection of its own (as two head-office workers have):
exactly one opens a session, the other is ``code_used``, for a TOTP code and for a recovery code.

The race is made, not hoped for: the first sign-in is held just after it read what it decides on (the step last
accepted, or the recovery code's hash) until the second has either read the same (a check-then-write race: both
would then accept) or is waiting behind the first's transaction (SQLite: its ``BEGIN IMMEDIATE`` begun while the
first holds the write lock; PostgreSQL: a backend waiting for a lock)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pyotp
import pytest

from hq.api.server import ServerHandle
from hq.backoffice import factors, otp, sessions, staff
from hq.backoffice.errors import Code
from hq.backoffice.staff import Staff
from hq.db.engine import Db
from hq.db.schema import open_db
from hq.store import HqStore
from tests.backoffice.chain import PASSWORD

Office = tuple[HqStore, dict[str, Staff], ServerHandle]
SOURCE = "192.0.2.10"
WAIT_S = 30.0


def enrolled(hq: HqStore, who: Staff, now: int) -> tuple[pyotp.TOTP, list[str]]:
    """``who`` with a second factor set up at ``now``: its authenticator and recovery codes."""
    enrol_code, _ = hq.db.transact(lambda tx: factors.issue_enrol_code(tx, "admin", who.staff_id, "phone", now))
    sent = hq.db.transact(lambda tx: factors.offer(tx, who.staff_id, now))
    totp = pyotp.TOTP(sent.secret)
    codes = factors.confirm(hq.db, who, sent, totp.at(now), enrol_code, now)
    return totp, codes


def awaiting_code(db: Db, staff_id: str, now: int) -> str:
    """The token of a session past the password, awaiting the code."""
    token = sessions.sign_in(db, staff_id, PASSWORD, SOURCE, now, None)
    assert isinstance(token, str), token
    return token


class Race:
    """Two sign-ins, ``first`` on the store's own connection and ``second`` on another, sending one code; the
    first is held at ``point`` (a function of ``module``, wrapped) until the second reached it too or waits
    behind the first's transaction."""

    def __init__(self, hq: HqStore, url: str, module: Any, point: str) -> None:
        self.hq, self.url = hq, url
        self.other = open_db(url)
        self.at_point = {"first": threading.Event(), "second": threading.Event()}
        self.release = threading.Event()
        self.first_in_tx = False
        self.second_began = threading.Event()
        real: Callable[..., Any] = getattr(module, point)

        def held(*args: Any, **kwargs: Any) -> Any:
            done = real(*args, **kwargs)
            name = threading.current_thread().name
            if name in self.at_point and not self.at_point[name].is_set():
                if name == "first" and hq.db.dialect == "sqlite":
                    self.first_in_tx = hq.db._conn.in_transaction  # type: ignore[attr-defined]
                self.at_point[name].set()
                if name == "first":
                    assert self.release.wait(WAIT_S), "the first sign-in was never let go"
            return done

        self.module, self.point, self.real, self.held = module, point, real, held

    def _second_waits(self) -> bool:
        """Whether the second sign-in waits behind the first's open transaction."""
        if self.hq.db.dialect == "sqlite":
            return self.first_in_tx and self.second_began.is_set()
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
        return row is not None and int(row[0]) > 0

    def run(self, monkeypatch: pytest.MonkeyPatch, staff_id: str, code: str, now: int) -> list[str | Code]:
        """What each sign-in got: a full session's token, or why not."""
        tokens = {"first": awaiting_code(self.hq.db, staff_id, now), "second": awaiting_code(self.other, staff_id, now)}
        dbs = {"first": self.hq.db, "second": self.other}
        got: dict[str, str | Code | BaseException] = {}

        def sign(name: str) -> None:
            try:
                got[name] = sessions.pass_code(dbs[name], tokens[name], code, SOURCE, now)
            except BaseException as exc:  # noqa: BLE001 - reported below, not lost in the thread
                got[name] = exc

        if self.other.dialect == "sqlite":

            def traced(statement: str) -> None:
                if statement.startswith("BEGIN IMMEDIATE") and self.at_point["first"].is_set():
                    self.second_began.set()

            self.other._conn.set_trace_callback(traced)  # type: ignore[attr-defined]
        monkeypatch.setattr(self.module, self.point, self.held)
        first = threading.Thread(target=sign, args=("first",), name="first")
        second = threading.Thread(target=sign, args=("second",), name="second")
        first.start()
        try:
            assert self.at_point["first"].wait(WAIT_S), got
            second.start()
            deadline = time.monotonic() + WAIT_S
            while not (self.at_point["second"].is_set() or not second.is_alive() or self._second_waits()):
                assert time.monotonic() < deadline, "the second sign-in neither read nor waited"
                self.at_point["second"].wait(0.01)
        finally:
            self.release.set()
            first.join(WAIT_S)
            if second.ident is not None:
                second.join(WAIT_S)
            monkeypatch.setattr(self.module, self.point, self.real)
            self.other.close()
        assert not first.is_alive() and not second.is_alive()
        for outcome in got.values():
            if isinstance(outcome, BaseException):
                raise outcome
        return [got["first"], got["second"]]  # type: ignore[list-item]


def full_sessions(hq: HqStore, staff_id: str) -> int:
    with hq.db.read() as tx:
        row = tx.one("SELECT COUNT(*) FROM staff_sessions WHERE staff_id = ? AND stage IS NULL", [staff_id])
    return int(row[0]) if row else 0


def test_one_totp_code_sent_twice_at_once_opens_one_session(
    office: Office, hq_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hq, made, _ = office
    now = int(time.time())
    totp, _ = enrolled(hq, made["finance"], now)
    code = totp.at(now + otp.STEP_S)  # a step after the one enrolment used
    outcomes = Race(hq, hq_url, otp, "matching_step").run(monkeypatch, "finance", code, now)
    assert sorted(isinstance(o, Code) for o in outcomes) == [False, True], outcomes
    assert Code.CODE_USED in outcomes, outcomes
    assert full_sessions(hq, "finance") == 1


def test_one_recovery_code_sent_twice_at_once_opens_one_session(
    office: Office, hq_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hq, made, _ = office
    now = int(time.time())
    _, codes = enrolled(hq, made["finance"], now)
    outcomes = Race(hq, hq_url, staff, "check_password").run(monkeypatch, "finance", codes[0], now)
    assert sorted(isinstance(o, Code) for o in outcomes) == [False, True], outcomes
    assert Code.CODE_USED in outcomes, outcomes
    assert full_sessions(hq, "finance") == 1
    with hq.db.read() as tx:
        assert factors.state(tx, "finance").recovery_left == otp.RECOVERY_CODES - 1
