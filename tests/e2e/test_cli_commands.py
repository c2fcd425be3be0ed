"""Every `tillpoint` command does what its help says, run as an operator runs it: a real head office
(`tillpoint hq serve`) and a real till daemon (`tillpoint run`) as processes on 127.0.0.1; each command
runs through the command line's own entry point (in this process, with Typer's runner: the processes it
talks to are real, and the installed command itself is started by tests/ops/test_wheel.py and
test_deb.py), its text output checked and its `--json` output parsed. The demo, a busy port and a table
written to a pipe run as processes of their own.

The traps this keeps closed: `void` sends the JSON body the API wants; a sale without `--member` is
anonymous even right after a tap; a receipt says what was taken off and who paid what; `scan` says what
the code was and what happened, never echoing a secret; the demo prints each event once and names a
busy port instead of dying with a traceback; a table piped to a file shows whole ids."""

from __future__ import annotations

import base64
import http.server
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from hq.ingest import Settings
from hq.store import HqStore
from sync.protocol import WireEntry
from terminal.config import load as load_config
from terminal.credentials import card_uid_hash, parse_uid
from terminal.doctor import Verdict, check_daemon
from terminal.model import utc_iso
from terminal.vouchers import parse as parse_voucher
from tests.fixtures import entries
from tests.fixtures.hq import HqProcess
from tests.ops.helpers import NotifyListener, TillProcess, till_config
from tests.ports import START_ATTEMPTS, free_port
from tests.waiting import wait_until
from tillpoint.cli import app as cli_app

TERMINAL = "T-CLI-COMMANDS"
AIKO_UID = "04A1B2C3D4E501"
CARD_NUMBER = "4111 1111 1111 1111"  # a test Visa number: passes the Luhn check
# Ids longer than a narrow table column: a table must print them whole.
LONG_TERMINAL = "T-RECONCILIATION-TILL-0001"
LONG_STORE = "S-FLAGSHIP-STORE-DOWNTOWN-0001"
EXIT_PORT_BUSY = 3


_RUNNER = CliRunner()


def tillpoint(*args: str) -> subprocess.CompletedProcess[str]:
    """``tillpoint ARGS`` through the CLI's entry point; an exception that escaped it is shown as a traceback
    (``ok`` refuses those), as the process would print it."""
    result = _RUNNER.invoke(cli_app, list(args), catch_exceptions=True)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["tillpoint", *args], result.exit_code, result.stdout, stderr)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a command that must have succeeded, with no traceback anywhere."""
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done.stdout


@dataclass
class Chain:
    root: Path
    hq: HqProcess
    till: TillProcess
    config: Path
    phone: Path  # the member app of M-0002 (registered, with 50.00 of stored value)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A till command against the running daemon's config."""
        return tillpoint(*args, "--config", str(self.config))

    def hq_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return tillpoint("hq", *args, "--db", self.hq.db)

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.till.url, headers={"Authorization": f"Bearer {self.till.token()}"}, timeout=10
        )

    def till_db(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.till.data / 'terminal.db'}?mode=ro", uri=True, timeout=10)
        try:
            return list(conn.execute(sql, args).fetchall())
        finally:
            conn.close()

    def hq_entries(self, terminal_id: str = TERMINAL) -> list[WireEntry]:
        store = HqStore(self.hq.db)
        try:
            return store.entries(terminal_id)
        finally:
            store.close()


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    root = tmp_path_factory.mktemp("cli")
    hq = HqProcess(root)
    hq.start()
    notify = NotifyListener(root / "notify.sock")
    till: TillProcess | None = None
    try:

        def hq_cli(*args: str) -> str:
            return ok(tillpoint("hq", *args, "--db", hq.db))

        added = json.loads(hq_cli("add-terminal", TERMINAL, "--store-id", "S-001", "--json"))
        assert added["terminal_id"] == TERMINAL and added["token"]
        # Head office's side before the till's first pull: the member-code key, and M-0002's phone and money.
        assert hq_cli("member-code", "M-0001").startswith("TPM2:")
        topped = json.loads(hq_cli("topup", "M-0002", "5000", "--by", "Mio", "--json"))
        assert (topped["member_id"], topped["balance"]) == ("M-0002", 5000)
        member_token = hq_cli("member-token", "M-0002").strip()
        phone = root / "phone"
        cert = json.loads(
            ok(
                tillpoint(
                    "member", "register", "M-0002", "--hq", hq.url, "--token", member_token, "--state-dir", str(phone)
                )
            )
        )
        assert cert["member_id"] == "M-0002" and cert["cert_id"]
        config = till_config(root, hq, added["token"], TERMINAL, scanner='devices = ["sim:"]')
        till = TillProcess(config, notify)
        till.start()  # `tillpoint run`: returns at READY=1
        made = Chain(root, hq, till, config, phone)
        wait_until(
            lambda: (
                made.till_db("SELECT stored_value FROM members WHERE member_id = 'M-0002'") == [(5000,)]
                and made.till_db("SELECT COUNT(*) FROM device_certs") == [(1,)]
            ),
            30,
            "the till's first pull (members, the phone's certificate)",
        )
        yield made
    finally:
        if till is not None:
            till.stop()
        notify.close()
        hq.kill()


def test_the_daemon_and_head_office_run_and_status_reads_them(chain: Chain) -> None:
    assert httpx.get(f"{chain.hq.url}/v1/health", timeout=5).status_code == 200  # `hq serve`
    text = ok(chain.cli("status"))
    assert "pending" in text and "sim:" in text
    info = json.loads(ok(chain.cli("status", "--json")))
    assert {"name": "sim:", "state": "added"} in info["readers"] and info["cache"]["members"] >= 4


def test_a_tap_never_picks_the_member_of_a_sale(chain: Chain) -> None:
    with chain.api() as api:
        seen = max([e["id"] for e in api.get("/v1/events").json()] or [0])
        assert json.loads(ok(chain.cli("tap", AIKO_UID, "--json"))) == {"status": "tapped", "uid": AIKO_UID}
        wait_until(
            lambda: [
                e
                for e in api.get("/v1/events", params={"after": seen}).json()
                if e["type"] == "member" and e["member_id"] == "M-0001"
            ],
            10,
            "the tap identified Aiko",
        )
    anonymous = json.loads(ok(chain.cli("sale", "700", "--json")))
    assert anonymous["member_id"] is None and anonymous["points_delta"] == 0
    assert anonymous["breakdown"]["pos_due"] == 700
    text = ok(chain.cli("sale", "750"))
    assert "member none (anonymous)" in text and "points" not in text.split("due at the POS")[1]
    tapped = json.loads(ok(chain.cli("sale", "800", "--tapped", "--json")))
    assert tapped["member_id"] == "M-0001" and tapped["points_delta"] > 0
    mismatch = chain.cli("sale", "900", "--member", "M-0002", "--tapped")
    assert mismatch.returncode == 1 and "member_mismatch" in mismatch.stdout, mismatch.stdout + mismatch.stderr
    at_hq = wait_until(
        lambda: {e.txn_id: e.payload for e in chain.hq_entries()}.get(anonymous["txn_id"]),
        20,
        "the anonymous sale at head office",
    )
    assert at_hq["member_id"] is None and at_hq["total"] == 700


def test_receipts_show_the_discounts_points_and_stored_value(chain: Chain) -> None:
    code = ok(tillpoint("member", "code", "M-0002", "--state-dir", str(chain.phone), "-q")).strip().splitlines()[-1]
    assert code.startswith("TPP1:")
    text = ok(
        chain.cli(
            "sale",
            "3000",
            "--member",
            "M-0002",
            "--coupon",
            "WELCOME",
            "--redeem",
            "100",
            "--stored-value",
            "1000",
            "--payment-code",
            code,
        )
    )
    lines = [" ".join(line.split()) for line in text.splitlines()]
    for line in (
        "subtotal 30.00 EUR",
        "discount WELCOME: 2.00 off, welcome -2.00 EUR",
        "points paid (100 pt) -1.00 EUR",
        "stored value paid -10.00 EUR",
        "stored value left 40.00 EUR",
        "due at the POS 17.00 EUR",
        "points redeemed -100 pt",
    ):
        assert line in lines, text
    earned = next(line for line in lines if line.startswith("points earned +"))
    balance = next(line for line in lines if line.startswith("points balance "))
    assert int(balance.split()[2]) == 300 - 100 + int(earned.split("+")[1].split()[0]), text
    assert code not in text
    receipt = json.loads(ok(chain.cli("sale", "500", "--member", "M-0002", "--json")))
    assert receipt["breakdown"] == {
        "subtotal": 500,
        "discounts": [],
        "points_earned": receipt["points_delta"],
        "points_redeemed": 0,
        "points_value": 0,
        "stored_value": 0,
        "stored_value_balance": 4000,
        "pos_due": 500,
    }
    quoted = ok(chain.cli("sale", "1200", "--member", "M-0001", "--coupon", "BIG-SPEND", "--quote"))
    assert "quote, member M-0001" in quoted and "coupon BIG-SPEND refused: coupon_min_spend" in quoted, quoted
    quote = json.loads(
        ok(chain.cli("sale", "6000", "--member", "M-0001", "--coupon", "BIG-SPEND", "--quote", "--json"))
    )
    assert (quote["total"], quote["discount"], quote["payable"]) == (6000, 1000, 5000)


def test_void_and_refund(chain: Chain) -> None:
    first = json.loads(ok(chain.cli("sale", "1500", "--json")))
    voided = [" ".join(line.split()) for line in ok(chain.cli("void", first["txn_id"])).splitlines()]
    assert voided[0].startswith("void ") and "total -15.00 EUR" in voided, voided
    again = chain.cli("void", first["txn_id"])
    assert again.returncode == 1 and "already_voided" in again.stdout, again.stdout
    second = json.loads(ok(chain.cli("sale", "1600", "--json")))
    refunded = json.loads(ok(chain.cli("refund", second["txn_id"], "--line", "0=1", "--json")))
    assert refunded["kind"] == "refund" and refunded["total"] == -1600
    # A refund run again after a lost answer, with its --request-id: the same receipt, the sale refunded once.
    two = [json.loads(ok(chain.cli("sale", "900", "--json"))) for _ in range(2)]
    once = json.loads(ok(chain.cli("refund", two[0]["txn_id"], "--line", "0=1", "--request-id", "cli-ref-1", "--json")))
    again = json.loads(
        ok(chain.cli("refund", two[0]["txn_id"], "--line", "0=1", "--request-id", "cli-ref-1", "--json"))
    )
    assert again == once and once["total"] == -900
    assert chain.till_db("SELECT COUNT(*) FROM journal WHERE kind = 'refund' AND txn_id = ?", once["txn_id"]) == [(1,)]
    other = chain.cli("refund", two[1]["txn_id"], "--line", "0=1", "--request-id", "cli-ref-1")
    # the id sent with another request (another sale's refund) is refused, not answered with the first's receipt
    assert other.returncode == 1 and "request_id_reused" in other.stdout, other.stdout
    assert chain.till_db("SELECT COUNT(*) FROM journal WHERE kind = 'refund'") == [(2,)]  # two[1] is not refunded
    gone = chain.cli("sale", "100", "--request-id", "cli-ref-1")
    assert gone.returncode == 1 and "request_id_used" in gone.stdout, gone.stdout
    third = json.loads(ok(chain.cli("sale", "1700", "--json")))
    # A void run again after a lost answer, with its --request-id: the same receipt, so the cashier knows it was
    # theirs; another id on the voided sale stays already_voided, and the id is of a void, not of a sale.
    done = json.loads(ok(chain.cli("void", third["txn_id"], "--request-id", "cli-void-1", "--json")))
    assert done["kind"] == "void" and done["total"] == -1700
    assert json.loads(ok(chain.cli("void", third["txn_id"], "--request-id", "cli-void-1", "--json"))) == done
    assert chain.till_db("SELECT COUNT(*) FROM journal WHERE kind = 'void' AND txn_id = ?", done["txn_id"]) == [(1,)]
    other = chain.cli("void", third["txn_id"], "--request-id", "cli-void-2")
    assert other.returncode == 1 and "already_voided" in other.stdout, other.stdout
    used = chain.cli("sale", "100", "--request-id", "cli-void-1")
    assert used.returncode == 1 and "request_id_used" in used.stdout, used.stdout
    # the void's id sent to void another sale is refused, not answered with the first void's receipt (the POS would
    # have told the customer a sale was voided that still stands)
    other = chain.cli("void", two[1]["txn_id"], "--request-id", "cli-void-1")
    assert other.returncode == 1 and "request_id_reused" in other.stdout, other.stdout
    voids = chain.till_db("SELECT COUNT(*) FROM journal WHERE kind = 'void'")
    assert json.loads(ok(chain.cli("void", two[1]["txn_id"], "--json")))["kind"] == "void"  # it still stood
    assert chain.till_db("SELECT COUNT(*) FROM journal WHERE kind = 'void'") == [(voids[0][0] + 1,)]


def test_a_command_run_again_with_its_request_id_is_done_once(chain: Chain) -> None:
    """A cashier whose `sale` got no answer (a timeout, a daemon killed) runs it again with the --request-id it
    named: the till answers the sale it recorded, and records no second one. Each command that records something
    sends its id (an id of one kind sent by another command is request_id_used: nothing recorded); a run without
    --request-id is a new request."""
    first = json.loads(ok(chain.cli("sale", "1234", "--request-id", "cli-retry-1", "--json")))
    again = json.loads(ok(chain.cli("sale", "1234", "--request-id", "cli-retry-1", "--json")))
    assert again == first
    assert chain.till_db("SELECT COUNT(*) FROM journal WHERE txn_id = ?", first["txn_id"]) == [(1,)]
    assert chain.till_db("SELECT txn_id FROM pos_requests WHERE request_id = 'cli-retry-1'") == [(first["txn_id"],)]
    fresh = [json.loads(ok(chain.cli("sale", "1234", "--json")))["txn_id"] for _ in range(2)]
    assert len({first["txn_id"], *fresh}) == 3
    for command in (
        ("topup", "100", "--member", "M-0001"),
        ("giftcard", "sell", "500"),
        ("giftcard", "load", "500"),
        ("giftcard", "pay", "500"),
        ("giftcard", "refund", first["txn_id"], "500"),
        ("voucher", "sell", "--value", "1500"),
    ):
        other = chain.cli(*command, "--request-id", "cli-retry-1")
        assert other.returncode == 1 and "request_id_used" in other.stdout, (command, other.stdout)
    wrong = chain.cli("sale", "100", "--request-id", "x" * 65)
    assert wrong.returncode == 2 and "--request-id" in wrong.stdout + wrong.stderr, wrong.stdout + wrong.stderr


class _BrokenDaemon(http.server.BaseHTTPRequestHandler):
    """A daemon that fails as the server says (``answer``): killed before its answer, 500 with a page, a page."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        answer = self.server.answer  # type: ignore[attr-defined]
        if answer is None:  # killed between its COMMIT and its answer
            self.close_connection = True
            return
        status, body = answer
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


def test_a_lost_or_broken_answer_is_one_line_with_its_code_and_the_retry(tmp_path: Path) -> None:
    """No daemon, a daemon gone before its answer, one answering 500 or a page that is not JSON: one line with a
    stable code, no traceback; where the sale may have been recorded, the line says to run the command again with
    its --request-id (the one it was given, or the one it made)."""
    data = tmp_path / "till"
    data.mkdir()
    (data / "api.token").write_text("token\n")
    config = tmp_path / "till.toml"
    config.write_text(f'[terminal]\ndata_dir = "{data}"\n')
    (data / "api.url").write_text(f"http://127.0.0.1:{free_port()}\n")
    gone = tillpoint("sale", "500", "--config", str(config))
    said = gone.stdout + gone.stderr
    assert gone.returncode == 1 and said.startswith("daemon_unreachable: no daemon answers at http://127.0.0.1:"), said
    assert "Nothing was sent" in said and "Traceback" not in said
    # The daemon's note of its address garbled (a crash, a hand): one line naming the file, nothing sent. A note
    # naming another host than this PC's loopback is refused too: the local API's token goes nowhere else.
    for garbled in (b"http://[::1\n", b"\xff\xfe\x00", b"http://127.0.0.1:99999", b"127.0.0.1:8080", b"http://a..b:1"):
        (data / "api.url").write_bytes(garbled)
        for args in (("sale", "500"), ("void", "T1")):
            done = tillpoint(*args, "--config", str(config))
            said = done.stdout + done.stderr
            assert done.returncode == 1 and "Traceback" not in said, (garbled, said)
            assert said.startswith(f"api_url_invalid: {data / 'api.url'} ") and len(said.splitlines()) == 1, said
    doctor = check_daemon(load_config(config), 1.0)  # doctor warns of it too, naming the file
    assert doctor.verdict == Verdict.WARN and doctor.words.startswith(f"api_url_invalid: {data / 'api.url'} "), doctor
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BrokenDaemon)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    (data / "api.url").write_text(f"http://127.0.0.1:{server.server_address[1]}\n")
    try:
        for answer, code in (
            (None, "no_answer"),
            ((500, b"<html><body>\nInternal [b]Server[/b] Error\n</body></html>"), "daemon_failed"),
            ((200, b"<html>a router's page</html>"), "bad_answer"),
        ):
            server.answer = answer  # type: ignore[attr-defined]
            for named in ((), ("--request-id", "cli-lost-1")):
                done = tillpoint("topup", "500", "--member", "M-0001", *named, "--config", str(config))
                said = done.stdout + done.stderr
                assert done.returncode == 1 and "Traceback" not in said, said
                assert said.startswith(f"{code}: ") and len(said.strip().splitlines()) == 1, said
                if code == "bad_answer":
                    continue
                retry = said.split("run the same command again with --request-id ")[1].split()[0]
                assert retry == "cli-lost-1" if named else len(retry) == 32, said
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_file_that_cannot_be_read_or_a_code_cut_short_is_one_line_with_its_code(tmp_path: Path) -> None:
    """The local API's token of another user (a directory here), a head-office token file that cannot be read, an
    enrolment code cut short: one line with a stable code, never a traceback, and nothing sent."""
    data = tmp_path / "till"
    (data / "api.token").mkdir(parents=True)
    config = tmp_path / "till.toml"
    config.write_text(
        f'[terminal]\ndata_dir = "{data}"\n[hq]\nurl = "http://127.0.0.1:{free_port()}"\ntoken_file = "{data}"\n'
    )
    for args, status, said in (
        (("sale", "100"), 1, f"no_api_token: the local API token at {data / 'api.token'} cannot be read"),
        (("sync", "--now"), 2, "configuration error: config key 'hq.token_file'"),
        (("reconcile",), 2, "configuration error: config key 'hq.token_file'"),
        (("enrol", "ABC"), 2, "enrolment failed: enrol_code_invalid: an enrolment code has 4 to 64 characters"),
    ):
        done = tillpoint(*args, "--config", str(config))
        out = done.stdout + done.stderr
        assert done.returncode == status and "Traceback" not in out, (args, out)
        assert said in out and len(out.strip().splitlines()) == 1, (args, out)


_LONG = "A" * 10_000
_NOT_UTF8 = b"\xff\xfe".decode("utf-8", "surrogateescape")  # bytes of another encoding in argv, as Python has them


@pytest.mark.parametrize(
    "args",
    [
        ("sale", "100000000000000000000"),
        ("sale", "100", "--redeem", "100000000000000000000"),
        ("topup", "100000000000000000000", "--member", "M-0001"),
        ("giftcard", "pay", "100000000000000000000"),
        ("voucher", "sell", "--value", "100000000000000000000"),
        ("sale", "100", "--sku", _LONG),
        ("sale", "100", "--member", _LONG),
        ("sale", "100", "--coupon", _LONG),
        ("sale", "100", "--payment-code", _LONG),
        ("topup", "100", "--member", _LONG),
        ("voucher", "sell", "--sku", _LONG),
        ("voucher", "redeem", _LONG),
        ("giftcard", "block", "--reason", _LONG),
        ("scan", _LONG),
        ("tap", _LONG),
        ("enrol", _LONG),
        ("member", "show", "M-0001", "--offline", "--state-dir", _LONG[:300]),
        ("void", _LONG),
        ("void-topup", _LONG),
        ("refund", _LONG, "--line", "0=1"),
        ("refund", "T", "--line", "0=100000000000000000000"),
        ("giftcard", "refund", _LONG, "100"),
        ("voucher", "refund", _LONG),
        ("sale", "100", "--reward", _LONG),
        ("sale", "100", "--category", _LONG),
        ("giftcard", "pay", "100", "--sale-ref", _LONG),
        ("refund", "T", "--line", "0=-1"),
        ("refund", "T", "--line", "-1=1"),
        ("doctor", "--timeout", "-1"),
        ("doctor", "--timeout", "1e308"),
        ("member", "register", "M-0001", "--hq", "http://[::1", "--token", "t"),
        ("member", "register", "M-0001", "--hq", "not an address", "--token", "t"),
        ("void", _NOT_UTF8),
        ("sale", "100", "--member", _NOT_UTF8),
        ("voucher", "redeem", _NOT_UTF8),
        ("doctor", "--config", _NOT_UTF8),
    ],
    ids=lambda args: " ".join(a[:12].encode("utf-8", "backslashreplace").decode() for a in args),
)
def test_an_absurd_argument_is_a_usage_error_in_one_answer(chain: Chain, args: tuple[str, ...]) -> None:
    """A shop's IT person's absurd arguments to the till's commands, with the daemon running: an amount no till
    takes, a 10 kB text, bytes that are not UTF-8: exit 2 (a usage error), never a traceback, never exit 1 (which
    says the till refused what was asked), and nothing recorded."""
    before = chain.till_db("SELECT COUNT(*) FROM journal")
    config: tuple[str, ...] = () if args[0] == "doctor" else ("--config", str(chain.config))
    if args[0] == "member":  # the member app's own directory, never one under the working directory
        config = () if "--state-dir" in args else ("--state-dir", str(chain.root / "phone-absurd"))
    done = tillpoint(*(str(chain.root / a) if a == _LONG[:300] else a for a in args), *config)
    said = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in said, said[-2000:]
    assert chain.till_db("SELECT COUNT(*) FROM journal") == before


def test_a_transaction_id_is_one_path_segment_whatever_it_holds(chain: Chain) -> None:
    """A txn id typed or pasted with a '/', '?' or '#' in it names no transaction: it never turns a refund of one
    unit into a void of the whole sale (``/v1/sales/TXN/void?/refund``), or a top-up's void into another call."""
    sale = json.loads(ok(chain.cli("sale", "1800", "--json")))
    for command in (
        ("refund", f"{sale['txn_id']}/void?", "--line", "0=1"),
        ("void-topup", f"../sales/{sale['txn_id']}"),
    ):
        tried = chain.cli(*command)
        assert tried.returncode == 1 and "not_found" in tried.stdout, (command, tried.stdout)
    with chain.api() as api:
        entries = api.get("/v1/events", params={"after": 0}).json()
    assert not [e for e in entries if e.get("type") == "void" and e.get("voided_txn_id") == sale["txn_id"]]
    refunded = json.loads(ok(chain.cli("refund", sale["txn_id"], "--line", "0=1", "--json")))
    assert refunded["kind"] == "refund" and refunded["total"] == -1800  # the sale was still whole


def test_scan_says_what_the_code_was_and_what_happened(chain: Chain) -> None:
    with chain.api() as api:
        assert api.post("/v1/session/new", json={}).status_code == 200
    member_code = json.loads(ok(chain.hq_cli("member-code", "M-0001", "--json")))["member_code"]
    text = ok(chain.cli("scan", member_code))
    assert "scanned: member code" in text and "member identified: Aiko Tanaka (M-0001, gold" in text, text
    coupon = "TPC1:" + base64.urlsafe_b64encode(b"WELCOME").rstrip(b"=").decode()
    added = json.loads(ok(chain.cli("scan", coupon, "--json")))
    assert (added["kind"], added["result"], added["coupon_id"]) == ("coupon", "coupon_added", "WELCOME")
    card = chain.cli("scan", CARD_NUMBER)
    assert card.returncode == 1 and "scanned: bank card number" in card.stdout, card.stdout
    assert "refused payment_card_refused" in card.stdout and "4111" not in card.stdout + card.stderr
    payment = ok(tillpoint("member", "code", "M-0002", "--state-dir", str(chain.phone), "-q")).strip().splitlines()[-1]
    held = chain.cli("scan", payment, "--json")
    report = json.loads(held.stdout)
    assert held.returncode == 1 and (report["kind"], report["result"], report["code"]) == (
        "payment",
        "refused",
        "session_busy",
    )
    assert payment not in held.stdout and payment.split(":", 1)[1] not in held.stdout
    with chain.api() as api:
        assert api.post("/v1/session/new", json={}).status_code == 200


def test_pairing_sync_reconcile_doctor_and_the_config_reference(chain: Chain) -> None:
    text = ok(chain.cli("pair"))
    code = text.split("pairing code:")[1].split()[0]
    assert len(code) == 6 and code.isdigit() and f"{chain.till.url}/panel/#pair={code}" in text, text
    paired = json.loads(ok(chain.cli("pair", "--json")))
    assert len(paired["code"]) == 6 and paired["panel"].endswith(f"#pair={paired['code']}")
    assert "entries pending" in ok(chain.cli("sync", "--now"))
    synced = json.loads(ok(chain.cli("sync", "--now", "--json")))
    assert set(synced) == {"pushed", "pulled", "pending", "rotated", "held"}
    assert synced["held"] is None, synced  # a head office of this release holds nothing back
    assert "head_office: reachable" in " ".join(ok(chain.cli("reconcile")).split())
    assert json.loads(ok(chain.cli("reconcile", "--json")))["head_office"] == "reachable"
    doctor = chain.cli("doctor", "--json")  # exit 0, 1 (warnings) or 2 (broken): its help says so
    checks = json.loads(doctor.stdout)
    assert (
        doctor.returncode in (0, 1, 2) and checks and {c["verdict"] for c in checks} <= {"ok", "warn", "fail", "skip"}
    ), doctor.stdout
    rendered = chain.cli("doctor")
    assert rendered.returncode == doctor.returncode and rendered.stdout.strip(), rendered.stdout
    assert "### [api]" in ok(tillpoint("config-reference"))
    keys = json.loads(ok(tillpoint("config-reference", "--json")))
    port = next(e for e in keys if (e["section"], e["key"]) == ("api", "port"))
    assert port["default"] == 8732 and port["meaning"]


def test_terminal_credentials(chain: Chain) -> None:
    first = ok(chain.hq_cli("enrol-code", "T-NEXT")).strip()
    issued = json.loads(ok(chain.hq_cli("rotate", "T-NEXT", "--json")))
    assert len(first.replace("-", "")) == 16 and issued["enrol_code"] != first and issued["terminal_id"] == "T-NEXT"
    assert ok(chain.hq_cli("add-terminal", "T-GONE")).strip()
    again = chain.hq_cli("add-terminal", "T-GONE")  # a second time: re-keyed, and the operator is told so
    assert again.returncode == 0 and "registered already: re-keyed" in again.stderr and again.stdout.strip()
    assert ok(chain.hq_cli("revoke", "T-GONE")).strip() == "revoked T-GONE"
    # a revoked terminal is not re-keyed with a credential head office would refuse: the enrolment code is the way back
    revoked = chain.hq_cli("add-terminal", "T-GONE")
    said = revoked.stdout + revoked.stderr
    assert revoked.returncode == 1 and "credential_revoked" in said and "enrol-code T-GONE" in said, said
    assert "Traceback" not in said
    ok(chain.hq_cli("add-terminal", "T-GONE-TOO"))
    assert json.loads(ok(chain.hq_cli("revoke", "T-GONE-TOO", "--json"))) == {
        "terminal_id": "T-GONE-TOO",
        "revoked": True,
    }
    assert ok(chain.hq_cli("admin-token", "Mio")).strip()
    assert json.loads(ok(chain.hq_cli("admin-token", "Ken", "--json")))["name"] == "Ken"
    fleet = json.loads(ok(chain.hq_cli("terminals", "--json")))
    assert TERMINAL in {t["terminal_id"] for t in fleet}
    assert TERMINAL in ok(chain.hq_cli("terminals"))


def test_members_cards_coupons_rules_and_keys(chain: Chain, tmp_path: Path) -> None:
    ok(chain.hq_cli("add-member", "M-CLI", "Cli Carla", "--tier", "silver", "--points", "40"))
    ok(chain.hq_cli("add-card", "04CC11223344", "M-CLI", "--card-key-file", str(chain.hq.key_file)))
    for args, said in (  # mistakes: one line each, no traceback
        (("04CC11223345", "M-CLI", "--card-key-file", str(tmp_path / "nope.key")), "cannot be read"),
        (("XYZ", "M-CLI", "--card-key-file", str(chain.hq.key_file)), "invalid_card"),
        (("04CC11223346", "M-404", "--card-key-file", str(chain.hq.key_file)), "unknown_member"),
    ):
        wrong = chain.hq_cli("add-card", *args)
        assert wrong.returncode == 1 and "Traceback" not in wrong.stdout + wrong.stderr, wrong.stderr
        assert said in wrong.stdout + wrong.stderr, wrong.stdout + wrong.stderr
    cert = chain.hq_cli("serve", "--port", str(free_port()), "--tls-cert", str(tmp_path / "nope.pem"))
    assert cert.returncode == 1 and "--tls-cert" in cert.stdout and "Traceback" not in cert.stderr, cert.stderr
    card_hash = card_uid_hash(chain.hq.key, parse_uid("04CC11223344"))
    blocked = json.loads(ok(chain.hq_cli("block", "member", "M-CLI", "--by", "Mio", "--reason", "lost wallet")))
    assert (blocked["subject"], blocked["status"], blocked["changed"]) == ("M-CLI", "blocked", True)
    unblocked = json.loads(ok(chain.hq_cli("unblock", "member", "M-CLI", "--by", "Mio", "--reason", "found", "--json")))
    assert unblocked["status"] == "active"
    card = json.loads(ok(chain.hq_cli("block", "card", card_hash, "--by", "Mio", "--reason", "reported lost")))
    assert (card["kind"], card["status"]) == ("card", "blocked")
    coupon, rule = tmp_path / "coupon.json", tmp_path / "rule.json"
    coupon.write_text(json.dumps({"coupon_id": "CLI-5", "kind": "amount_off", "value": 500, "text": "5.00 off"}))
    rule.write_text(
        json.dumps({"rule_id": "cli-bonus", "kind": "sku_bonus", "points": 5, "skus": ["CLI"], "text": "+5 pt"})
    )
    assert ok(chain.hq_cli("put-coupon", str(coupon))).strip() == "CLI-5"
    assert json.loads(ok(chain.hq_cli("put-rule", str(rule), "--json"))) == {"rule_id": "cli-bonus"}
    assert ok(chain.hq_cli("delete", "coupon", "CLI-5")) == ""
    assert chain.hq_cli("delete", "coupon", "CLI-5").returncode == 1  # deleted once
    key_id = ok(chain.hq_cli("add-key", "qr")).strip()
    assert key_id and json.loads(ok(chain.hq_cli("add-key", "qr", "--json")))["purpose"] == "qr"
    assert ok(chain.hq_cli("revoke-subject", "card", card_hash)).strip() == f"card:{card_hash}"
    erased = json.loads(ok(chain.hq_cli("erase", "M-CLI", "--by", "privacy desk", "--json")))
    assert erased["member_id"] == "M-CLI"


def test_member_payments_and_the_member_app(chain: Chain, tmp_path: Path) -> None:
    topped = json.loads(ok(chain.hq_cli("topup", "M-0001", "250", "--topup-id", "cli-topup-1")))
    assert topped["amount"] == 250 and topped["topup_id"] == "cli-topup-1"
    token = json.loads(ok(chain.hq_cli("member-token", "M-0003", "--json")))["token"]
    phone = tmp_path / "phone-3"
    cert = json.loads(
        ok(
            tillpoint(
                "member",
                "register",
                "M-0003",
                "--hq",
                chain.hq.url,
                "--token",
                token,
                "--state-dir",
                str(phone),
                "--json",
            )
        )
    )
    devices = json.loads(ok(chain.hq_cli("devices", "M-0003", "--json")))
    assert [d["cert_id"] for d in devices] == [cert["cert_id"]]
    made = json.loads(ok(tillpoint("member", "code", "M-0003", "--state-dir", str(phone), "--identify", "--json")))
    assert made["kind"] == "member" and made["code"].startswith("TPM2:") and Path(made["png"]).stat().st_size > 100
    shown = ok(tillpoint("member", "code", "M-0003", "--state-dir", str(phone)))
    assert "PNG:" in shown and shown.strip().splitlines()[-1].startswith("TPP1:")
    account = json.loads(ok(tillpoint("member", "show", "M-0002", "--state-dir", str(chain.phone), "--json")))
    assert account["member_id"] == "M-0002" and account["member_code"].startswith("TPM2:") and "stored_value" in account
    assert ok(tillpoint("member", "show", "M-0003", "--state-dir", str(phone), "--offline")).strip()
    assert ok(chain.hq_cli("revoke-device", cert["cert_id"])).strip() == f"device:{cert['cert_id']}"
    assert json.loads(ok(chain.hq_cli("devices", "M-0003")))[0]["revoked"]


def _ingest(chain: Chain, *, trusting: bool, payloads: list[dict[str, Any]], first_seq: int) -> list[str]:
    """Entries of the long-named till, written to head office the way its ingest takes them."""
    store = HqStore(chain.hq.db, Settings(spend_needs_proof=not trusting, recompute=False))
    try:
        made = utc_iso(time.time())
        wire = [
            WireEntry(
                terminal_id=LONG_TERMINAL,
                seq=first_seq + n,
                txn_id=f"cli-recon-{first_seq + n}",
                kind="sale",
                payload=p,
                created_at=made,
            )
            for n, p in enumerate(payloads)
        ]
        store.ingest(LONG_TERMINAL, wire)
    finally:
        store.close()
    return [w.txn_id for w in wire]


def test_reconciliation_and_quarantine(chain: Chain) -> None:
    ok(chain.hq_cli("add-terminal", LONG_TERMINAL, "--store-id", LONG_STORE))
    ok(chain.hq_cli("add-member", "M-RECON", "Recon Rita"))
    overspent = entries.sale("M-RECON", 600, redeemed=500, store_id=LONG_STORE)
    _ingest(chain, trusting=True, payloads=[overspent, overspent, overspent], first_seq=1)
    # Points spent on the POS's word alone: held in quarantine (Aiko has the points; only the proof is missing).
    held = _ingest(
        chain,
        trusting=False,
        payloads=[entries.sale("M-0001", 300, redeemed=100, proof="pos", store_id=LONG_STORE)] * 2,
        first_seq=4,
    )
    quarantined = json.loads(ok(chain.hq_cli("quarantine", "--json")))
    assert {q["txn_id"] for q in quarantined} >= set(held)
    assert all(txn in ok(chain.hq_cli("quarantine")) for txn in held)
    assert ok(chain.hq_cli("release", held[0], "--by", "Mio", "--note", "the member confirmed")).startswith("now ")
    rejected = json.loads(ok(chain.hq_cli("reject", held[1], "--by", "Mio", "--note", "no proof", "--json")))
    assert rejected["txn_id"] == held[1] and rejected["now"]
    items = json.loads(
        ok(chain.hq_cli("items", "--terminal-id", LONG_TERMINAL, "--reason", "points_overspent", "--json"))
    )
    assert len(items) == 3 and {i["state"] for i in items} == {"open"}
    assert items[0]["item_id"] in ok(chain.hq_cli("items", "--terminal-id", LONG_TERMINAL))
    groups = json.loads(ok(chain.hq_cli("groups", "--terminal-id", LONG_TERMINAL, "--json")))
    assert {(g["reason"], g["count"]) for g in groups} >= {("points_overspent", 3)}
    assert "points_overspent" in ok(chain.hq_cli("groups", "--terminal-id", LONG_TERMINAL))
    summary = json.loads(ok(chain.hq_cli("summary", "--store-id", LONG_STORE, "--json")))
    assert summary["points_overspent"]["open"] == 3
    assert "points_overspent" in ok(chain.hq_cli("summary", "--store-id", LONG_STORE))
    settled = ok(chain.hq_cli("settle", items[0]["item_id"], "--by", "Mio", "--note", "topped up at the desk"))
    assert f"{items[0]['item_id']}: settled_manual by Mio" in settled
    group = json.loads(
        ok(
            chain.hq_cli(
                "settle-group",
                "--terminal-id",
                LONG_TERMINAL,
                "--day",
                items[1]["day"],
                "--reason",
                "points_overspent",
                "--by",
                "Mio",
                "--note",
                "written off",
                "--json",
            )
        )
    )
    assert group["settled"] == 2
    report = json.loads(ok(chain.hq_cli("report", "--store-id", LONG_STORE, "--json")))
    assert [(r["terminal_id"], r["entries"]) for r in report] == [(LONG_TERMINAL, 5)]
    csv = ok(chain.hq_cli("report", "--store-id", LONG_STORE, "--csv"))
    assert csv.splitlines()[0].startswith("store_id,") and LONG_TERMINAL in csv
    old = chain.hq_cli("report", "--store-id", LONG_STORE, "--format", "json")  # the deprecated spelling
    assert json.loads(ok(old)) == report and "deprecated" in old.stderr
    zone = json.loads(ok(chain.hq_cli("store", LONG_STORE, "--timezone", "Asia/Tokyo", "--day-starts", "04:00")))
    assert (zone["timezone"], zone["day_starts"]) == ("Asia/Tokyo", "04:00")
    assert json.loads(ok(chain.hq_cli("store", LONG_STORE)))["timezone"] == "Asia/Tokyo"
    assert LONG_STORE in {s["store_id"] for s in json.loads(ok(chain.hq_cli("stores", "--json")))}
    assert LONG_STORE in ok(chain.hq_cli("stores"))


def test_a_table_that_is_not_a_terminal_shows_whole_ids(chain: Chain) -> None:
    ok(chain.hq_cli("add-terminal", LONG_TERMINAL + "-B", "--store-id", LONG_STORE))
    store = HqStore(chain.hq.db)
    try:
        store.ingest(
            LONG_TERMINAL + "-B",
            [
                WireEntry(
                    terminal_id=LONG_TERMINAL + "-B",
                    seq=1,
                    txn_id="cli-table-1",
                    kind="sale",
                    payload=entries.sale(None, 400, store_id=LONG_STORE),
                    created_at=utc_iso(time.time()),
                )
            ],
        )
    finally:
        store.close()
    narrow = {**os.environ, "COLUMNS": "60"}  # what a pipe inherits from a small terminal
    done = subprocess.run(
        [sys.executable, "-m", "tillpoint.cli", "hq", "report", "--db", chain.hq.db],
        capture_output=True,
        text=True,
        timeout=60,
        env=narrow,
        check=False,
    )
    text = ok(done)
    assert LONG_STORE in text and LONG_TERMINAL + "-B" in text and "…" not in text, text
    assert max(len(line) for line in text.splitlines()) > 60, "the table keeps its own width, not the terminal's"


def _demo(config: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tillpoint.cli", "demo", "--config", str(config), "--reader", "sim:", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "80"},
        )


def _up_or_ended(demo: subprocess.Popen[bytes], log: Path) -> bool:
    return "running" in log.read_text() or demo.poll() is not None


def test_the_demo_prints_each_event_once_and_its_api_port_is_found(tmp_path: Path) -> None:
    config = tmp_path / "till.toml"
    config.write_text(f'[terminal]\ndata_dir = "{tmp_path / "var" / "tillpoint"}"\n[api]\nport = 0\n')
    log = tmp_path / "demo.log"
    for _ in range(START_ATTEMPTS):  # the API port is named (the option is the subject): a fresh one if taken
        api_port = free_port()
        demo = _demo(config, "--hq-port", "0", "--api-port", str(api_port), log=log)
        wait_until(partial(_up_or_ended, demo, log), 60, "the demo running")
        if demo.poll() != EXIT_PORT_BUSY:
            break
    try:
        assert demo.poll() is None, log.read_text()
        assert f"local API http://127.0.0.1:{api_port}" in log.read_text()
        wait_until(lambda: "sync ok" in log.read_text(), 60, "the till's first pull (it knows the demo's cards)")
        assert ok(tillpoint("tap", AIKO_UID, "--config", str(config))).strip() == f"tapped {AIKO_UID}"
        wait_until(lambda: "sale #1 " in log.read_text(), 60, "the demo's sale")
        text = log.read_text()  # the log line of an event comes before its console line: both are in by now
        sale_lines = [line for line in text.splitlines() if "#1 " in line]
        assert len(sale_lines) == 1 and "M-0001" in sale_lines[0], text
        added = [
            line for line in text.splitlines() if "sim: added" in line
        ]  # the simulated reader and scanner, once each
        assert "approved" not in text and sorted(added) == [
            "reader sim: added simulated reader",
            "reader sim: added simulated scanner",
        ], text
    finally:
        demo.terminate()
        demo.wait(timeout=20)
    assert demo.returncode == 0, log.read_text()


@pytest.mark.parametrize("busy", ["--hq-port", "--api-port"])
def test_the_demo_names_a_busy_port_and_how_to_change_it(tmp_path: Path, busy: str) -> None:
    config = tmp_path / "till.toml"
    config.write_text(f'[terminal]\ndata_dir = "{tmp_path / "var" / "tillpoint"}"\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        ports = {"--hq-port": "0", "--api-port": "0", busy: str(port)}  # 0: the server picks a free one
        log = tmp_path / "demo.log"
        demo = _demo(config, *[x for kv in ports.items() for x in kv], log=log)
        try:
            code = demo.wait(timeout=60)
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait(timeout=10)
    text = log.read_text()
    assert code == EXIT_PORT_BUSY, text
    [line] = [line for line in text.splitlines() if "port_busy" in line]
    assert f"port {port} " in line and f"{busy} N" in line, text
    assert "Traceback" not in text
    assert not (tmp_path / "var" / "tillpoint" / "terminal.db").exists()  # refused before anything started


def test_head_office_names_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tillpoint.cli",
                "hq",
                "serve",
                "--db",
                str(tmp_path / "hq.db"),
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == EXIT_PORT_BUSY, done.stdout + done.stderr
    assert f"port {port} " in done.stderr and "--port N" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "hq.db").exists()  # refused before the database was made


def test_topups_sold_through_the_tills_commands_reach_head_office(chain: Chain) -> None:
    """`hq till-topups` enables the till (its limits checked), the daemon pulls it, `topup` and `void-topup`
    sell and take back stored value through the local API, and head office credits what is left."""
    shown = json.loads(ok(chain.hq_cli("till-topups", TERMINAL)))
    assert shown == {"terminal_id": TERMINAL, "enabled": False, "per_transaction": 0, "per_day": 0,
                     "per_member_day": 0, "offline_total": 0, "timezone": "UTC", "day_starts": "00:00"}  # fmt: skip
    refused = chain.cli("topup", "1000", "--member", "M-0003")
    assert refused.returncode == 1 and "topup_not_enabled" in refused.stdout, refused.stdout + refused.stderr
    unknown = chain.hq_cli("till-topups", "T-NOBODY")  # a mistyped id: not shown as a disabled policy
    assert unknown.returncode == 1 and "not_found" in unknown.stdout + unknown.stderr, unknown.stdout + unknown.stderr
    bad = chain.hq_cli("till-topups", TERMINAL, "--enable")  # an enabled till with no limits: refused
    assert bad.returncode == 1 and "topup_policy_invalid" in bad.stdout, bad.stdout + bad.stderr
    limits = ("--per-transaction", "3000", "--per-day", "9000", "--per-member-day", "4000")
    enabled = json.loads(ok(chain.hq_cli("till-topups", TERMINAL, "--enable", *limits, "--by", "Mio")))
    assert enabled["enabled"] and enabled["per_member_day"] == 4000 and enabled["offline_total"] == 0
    wait_until(
        lambda: '"enabled":true' in str(chain.till_db("SELECT value FROM sync_state WHERE key = 'topup_policy'")),
        30,
        "the till's pull of its top-up policy",
    )
    text = ok(chain.cli("topup", "2500", "--member", "M-0003"))
    assert "till_topup" in text and "stored value now" in text
    kept = json.loads(ok(chain.cli("topup", "1500", "--member", "M-0003", "--json")))
    assert (kept["kind"], kept["total"], kept["stored_value"]) == ("till_topup", 1500, 4000)
    over = chain.cli("topup", "100", "--member", "M-0003")
    assert over.returncode == 1 and "topup_limit_member_day" in over.stdout, over.stdout
    back = json.loads(ok(chain.cli("void-topup", kept["txn_id"], "--request-id", "cli-tv-1", "--json")))
    assert (back["kind"], back["total"], back["stored_value"]) == ("topup_void", -1500, 2500)
    # run again after a lost answer with its id: the void it recorded; any other run of it: already_voided
    assert json.loads(ok(chain.cli("void-topup", kept["txn_id"], "--request-id", "cli-tv-1", "--json"))) == back
    again = chain.cli("void-topup", kept["txn_id"])
    assert again.returncode == 1 and "already_voided" in again.stdout, again.stdout
    status = json.loads(ok(chain.cli("status", "--json")))["topups"]
    assert (status["enabled"], status["sold_today"], status["per_day"]) == (True, 2500, 9000)
    # The cashier runs a top-up again after a timeout, with the id it named: credited once, the same receipt.
    once = json.loads(ok(chain.cli("topup", "700", "--member", "M-0003", "--request-id", "cli-topup-retry", "--json")))
    twice = json.loads(ok(chain.cli("topup", "700", "--member", "M-0003", "--request-id", "cli-topup-retry", "--json")))
    assert twice == once and once["stored_value"] == 3200
    assert chain.till_db("SELECT stored_value FROM members WHERE member_id = 'M-0003'") == [(3200,)]

    def credited() -> int | None:
        store = HqStore(chain.hq.db)
        try:
            member = store.member("M-0003")
            held = {e.txn_id for e in store.entries(TERMINAL)}
        finally:
            store.close()
        return member.stored_value if member is not None and {back["txn_id"], once["txn_id"]} <= held else None

    assert wait_until(credited, 20, "head office's credit of the top-ups") == 3200


def test_vouchers_sold_redeemed_and_refunded_through_the_tills_commands(chain: Chain, tmp_path: Path) -> None:
    """`hq voucher issue` signs a stock into the till, the daemon pulls it; `voucher sell` prints the code as a
    QR (and a PNG to print), the scanner redeems one once, `voucher refund` takes an unused one back, and head
    office holds each voucher's one use."""
    issued = json.loads(ok(chain.hq_cli("voucher", "issue", TERMINAL, "--count", "3", "--value", "1500")))
    assert len(issued["voucher_ids"]) == 3
    bad = chain.hq_cli("voucher", "issue", TERMINAL, "--count", "0", "--value", "1500")
    assert bad.returncode == 1 and "voucher_issue_invalid" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
    wait_until(
        lambda: chain.till_db("SELECT COUNT(*) FROM voucher_stock WHERE sold_txn IS NULL") == [(3,)],
        30,
        "the till's pull of its voucher stock",
    )
    png = tmp_path / "voucher.png"
    text = ok(chain.cli("voucher", "sell", "--value", "1500", "--png", str(png)))
    assert "voucher_sale" in text and "\u2588" in text and png.read_bytes()[:4] == b"\x89PNG"
    code = text.strip().splitlines()[-1]
    first = parse_voucher(code).voucher_id
    assert first in issued["voucher_ids"]
    refunded = json.loads(ok(chain.cli("voucher", "sell", "--value", "1500", "--json")))
    none = chain.cli("voucher", "sell", "--sku", "NOPE")
    assert none.returncode == 1 and "voucher_out_of_stock" in none.stdout, none.stdout

    def sold_at_hq() -> bool:
        store = HqStore(chain.hq.db)
        try:
            return all(store.voucher(v)["state"] == "active" for v in (first, refunded["voucher_id"]))
        finally:
            store.close()

    wait_until(sold_at_hq, 20, "head office's record of the sales")
    scanned = json.loads(ok(chain.cli("scan", code, "--json")))
    assert (scanned["kind"], scanned["result"], scanned["voucher"]["value"]) == ("voucher", "voucher_redeemed", 1500)
    assert code not in json.dumps(scanned)  # the code pays: never echoed
    again = chain.cli("voucher", "redeem", code)
    assert again.returncode == 1 and "voucher_used" in again.stdout, again.stdout
    # Refunded, and the refund run again after a lost answer with its --request-id: the same answer, not
    # voucher_refunded (the cashier would have sent the customer away unpaid); head office holds one refund.
    back = json.loads(ok(chain.cli("voucher", "refund", refunded["code"], "--request-id", "cli-vr-1", "--json")))
    assert (back["kind"], back["value"], back["offline"]) == ("voucher_refund", 1500, False)
    assert (
        json.loads(ok(chain.cli("voucher", "refund", refunded["code"], "--request-id", "cli-vr-1", "--json"))) == back
    )
    used = chain.cli("voucher", "redeem", code, "--request-id", "cli-vr-1")
    assert used.returncode == 1 and "request_id_used" in used.stdout, used.stdout
    gone = chain.cli("voucher", "redeem", refunded["code"])
    assert gone.returncode == 1 and "voucher_refunded" in gone.stdout, gone.stdout
    damaged = chain.cli("voucher", "redeem", code[:-5])
    assert damaged.returncode == 1 and "voucher_malformed" in damaged.stdout, damaged.stdout
    shown = json.loads(ok(chain.hq_cli("voucher", "show", refunded["voucher_id"])))
    assert shown["state"] == "refunded" and shown["use"]["action"] == "refund"
    status = json.loads(ok(chain.cli("status", "--json")))["vouchers"]
    assert status == {"stock": [{"kind": "amount", "value": 1500, "sku": "", "count": 1}], "offline_pending": 0,
                      "offline_total": 0}  # fmt: skip
    listed = json.loads(ok(chain.hq_cli("voucher", "list", "--terminal", TERMINAL, "--json")))
    assert sorted(row["state"] for row in listed) == ["redeemed", "refunded", "stock"]


def test_sync_without_a_credential_makes_no_database(tmp_path: Path) -> None:
    """`tillpoint sync --now` run where no till is (no --config: the demo's ./var/tillpoint) refuses in one line and
    leaves nothing behind: it made a terminal database there first, which `status` then showed as a till."""
    data = tmp_path / "var" / "tillpoint"
    config = tmp_path / "till.toml"
    config.write_text(f'[terminal]\ndata_dir = "{data}"\n')
    done = tillpoint("sync", "--now", "--config", str(config))
    out = done.stdout + done.stderr
    assert done.returncode == 1 and "no head-office credential" in out and len(out.strip().splitlines()) == 1, out
    assert not data.exists()
    shown = tillpoint("status", "--config", str(config))
    assert shown.returncode == 1 and "no terminal database" in shown.stdout + shown.stderr
