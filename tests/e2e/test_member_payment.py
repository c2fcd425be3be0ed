"""End to end: a member pays from their account with a one-time payment code.

A real head-office process; `tillpoint hq topup` / `hq member-token`; the member-app simulator
(`tillpoint member register`, `member code`, `member show`) as a subprocess; a till (SQLite store,
service, sync client with online confirmation) that pulls the device certificate; the code read
through the real camera pipeline (OpenCV reading a generated video); the sale reaches head office
exactly once with the balance right."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from drivers import open_scanner
from hq.store import HqStore
from sync.client import SyncClient
from sync.confirm import confirmer
from terminal import payments as pay
from terminal.errors import Code, Rejected
from terminal.identity import Payment
from terminal.model import Basket, Line, QrRead, ReaderEvent, Status, utc_iso
from terminal.service import Service
from terminal.store import Store
from tests.fixtures import entries
from tests.fixtures.hq import HqProcess, tillpoint
from tests.fixtures.video import blank, concat, still, write_video
from tests.waiting import wait_until

SIZE = (960, 540)
MEMBER = "E-0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"  # a till-made id: one a stolen credential can contest


@pytest.fixture
def hq_proc(tmp_path: Path) -> Iterator[HqProcess]:
    process = HqProcess(tmp_path / "hq")
    process.start()
    yield process
    process.kill()


def member(*args: str) -> str:
    done = tillpoint("member", *args)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def read_with_camera(video: Path, timeout: float = 20.0) -> str:
    reads: queue.Queue[QrRead] = queue.Queue()
    events: list[ReaderEvent] = []
    scanner = open_scanner(f"camera:{video}")
    scanner.start(reads.put, events.append)
    try:
        return reads.get(timeout=timeout).text
    except queue.Empty:
        pytest.fail(f"the camera read no code within {timeout} s: {events}")
    finally:
        scanner.stop()


def test_member_app_code_through_the_camera_pays_and_reaches_head_office_once(
    hq_proc: HqProcess, tmp_path: Path
) -> None:
    hq_proc.cli("add-member", "M-PAY", "Pay Pat")
    topped = json.loads(hq_proc.cli("topup", "M-PAY", "5000", "--by", "Mio").strip().splitlines()[-1])
    assert topped["balance"] == 5000
    token = hq_proc.cli("member-token", "M-PAY").strip().splitlines()[-1]
    phone = tmp_path / "phone"
    cert = json.loads(member("register", "M-PAY", "--hq", hq_proc.url, "--token", token, "--state-dir", str(phone)))
    assert cert["member_id"] == "M-PAY" and cert["offline_cap"] > 0
    assert (phone / "device.key").stat().st_mode & 0o077 == 0  # the device key is private

    terminal_token = hq_proc.add_terminal("T-PAY")
    till = Store.open(tmp_path / "till" / "t.db")
    client = SyncClient(till, "T-PAY", hq_proc.url, terminal_token)
    client.sync_once()  # bootstrap: the member, the balance, head office's payment key, the certificate
    assert till.stored_value("M-PAY") == 5000 and till.device_cert(cert["cert_id"]) is not None
    service = Service(till, "T-PAY")
    service.confirm_online = confirmer(client)

    printed = member("code", "M-PAY", "--state-dir", str(phone), "--png", str(tmp_path / "code.png"))
    code = printed.strip().splitlines()[-1]
    assert code.startswith("TPP1:")
    assert any(block in printed for block in "\u2580\u2584\u2588")  # a QR drawn in the terminal
    assert (tmp_path / "code.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    video = write_video(tmp_path / "counter.avi", concat(blank(SIZE, 0.3), still(code, SIZE, 1.5), blank(SIZE, 0.3)))
    seen = read_with_camera(video)
    assert seen == code

    quote = service.quote("M-PAY", Basket((Line("BENTO", 1, 3000),)))
    receipt = service.commit(quote, Payment(None, seen))
    assert receipt.total == 3000 and till.stored_value("M-PAY") == 2000
    with pytest.raises(Rejected) as info:  # the same code shown again
        service.commit(service.quote("M-PAY", Basket((Line("TEA", 1, 500),))), Payment(None, seen))
    assert info.value.code is Code.PAYMENT_CODE_REPLAYED
    client.sync_once()
    client.sync_once()  # a second round pushes nothing twice
    client.close()
    till.close()

    hq = HqStore(hq_proc.db)
    try:
        entries = hq.entries("T-PAY")
        assert [(e.kind, e.payload["stored_value"], e.payload["code_id"]) for e in entries] == [
            ("sale", 3000, pay.parse_code(code).code_id)
        ]
        assert hq.member("M-PAY").stored_value == 2000  # type: ignore[union-attr]
        assert not [i for i in hq.items() if i.state.value == "open"]
    finally:
        hq.close()
    shown = json.loads(member("show", "M-PAY", "--state-dir", str(phone)).strip().splitlines()[-1])
    assert shown["stored_value"] == 2000 and shown["member_code"].startswith("TPM2:")
    assert shown["cert_id"] == cert["cert_id"]


def test_revoking_a_device_from_the_cli_reaches_the_till(hq_proc: HqProcess, tmp_path: Path) -> None:
    hq_proc.cli("add-member", "M-LOST", "Lost Phone")
    hq_proc.cli("topup", "M-LOST", "2000")
    token = hq_proc.cli("member-token", "M-LOST").strip().splitlines()[-1]
    phone = tmp_path / "phone"
    cert = json.loads(member("register", "M-LOST", "--hq", hq_proc.url, "--token", token, "--state-dir", str(phone)))
    assert hq_proc.cli("revoke-device", cert["cert_id"]).strip() == f"device:{cert['cert_id']}"
    devices = json.loads(hq_proc.cli("devices", "M-LOST"))
    assert [(d["cert_id"], d["revoked"]) for d in devices] == [(cert["cert_id"], True)]
    till = Store.open(tmp_path / "till" / "t.db")
    client = SyncClient(till, "T-LOST", hq_proc.url, hq_proc.add_terminal("T-LOST"))
    client.sync_once()
    assert till.revoked("device", cert["cert_id"])
    code = member("code", "M-LOST", "--state-dir", str(phone), "-q").strip().splitlines()[-1]
    service = Service(till, "T-LOST")
    with pytest.raises(Rejected) as info:
        service.commit(service.quote("M-LOST", Basket((Line("X", 1, 100),))), Payment(None, code))
    assert info.value.code is Code.DEVICE_CERT_REVOKED
    client.close()
    till.close()


def test_the_daemon_asks_head_office_before_approving_a_code_given_to_its_api(
    hq_proc: HqProcess, tmp_path: Path
) -> None:
    """A payment code given to the daemon's local API is confirmed online before the sale; one sent again is
    refused. While the member's till-made id is contested its stored value does not pay (``member_spend_held``,
    the code left unused), and once staff settle the item the same code pays."""
    from terminal.config import validate
    from terminal.daemon import Daemon

    hq = HqStore(hq_proc.db)
    hq.upsert_member(MEMBER, "Api Ann", "basic", 0)
    from hq import payments

    payments.topup(hq, MEMBER, 3000, "Mio")
    token = payments.member_token(hq, MEMBER)
    terminal_token = hq.add_terminal("T-DMN", "S-001")
    thief_token = hq.add_terminal("T-THF", "S-001")
    hq.close()
    phone = tmp_path / "phone"
    member("register", MEMBER, "--hq", hq_proc.url, "--token", token, "--state-dir", str(phone))
    cfg = validate(
        {
            "terminal": {"id": "T-DMN", "data_dir": str(tmp_path / "till")},
            "hq": {
                "url": hq_proc.url,
                "token": terminal_token,
                "push_interval": 0.2,
                "pull_interval": 0.5,
                "backoff_max": 1,
                "timeout": 3,
            },
            "api": {"port": 0},
        }
    )
    daemon = Daemon(cfg)
    daemon.start()
    try:
        assert daemon.store is not None and daemon.service is not None
        assert daemon.service.confirm_online is not None  # wired by the daemon, not by this test
        deadline = time.monotonic() + 20
        while daemon.store.stored_value(MEMBER) != 3000 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert daemon.store.stored_value(MEMBER) == 3000, "the till never pulled the member"
        code = member("code", MEMBER, "--state-dir", str(phone), "-q").strip().splitlines()[-1]
        url = f"http://127.0.0.1:{daemon.api_server.port}"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {daemon.api_token}"}, timeout=10) as api:
            body = {
                "member_id": MEMBER,
                "lines": [{"sku": "SOBA", "quantity": 1, "unit_price": 1000}],
                "stored_value": 1000,
                "payment_code": code,
            }
            first = api.post("/v1/sales", json=body)
            assert first.status_code == 200, first.text
            again = api.post("/v1/sales", json=body)
            assert again.status_code != 200 and "payment_code_replayed" in again.text

            # A stolen credential enrols the id again with a card of its own: the id's spending is held.
            enrol = {"terminal_id": "T-THF", "seq": 1, "txn_id": "T-THF-1", "kind": "enrol"}
            enrol |= {"created_at": utc_iso(time.time()), "payload": entries.enrol(MEMBER, "e3" * 32)}
            pushed = httpx.post(
                f"{hq_proc.url}/v1/journal",
                json={"protocol": 2, "terminal_id": "T-THF", "entries": [enrol]},
                headers={"Authorization": f"Bearer {thief_token}"},
                timeout=10,
            )
            assert pushed.status_code == 200, pushed.text
            wait_until(lambda: daemon.store.member(MEMBER).status is Status.HELD, 20.0, "the hold at the till")  # type: ignore[union-attr]
            held = {**body, "payment_code": member("code", MEMBER, "--state-dir", str(phone), "-q").split()[-1]}
            refused = api.post("/v1/sales", json=held)
            assert refused.status_code == 409 and refused.json()["code"] == "member_spend_held", refused.text
            admin = HqStore(hq_proc.db)
            try:
                (item,) = [i for i in admin.items(terminal_id="T-THF") if i.reason.value == "enrolment_contested"]
            finally:
                admin.close()
            hq_proc.cli("settle", item.item_id, "--by", "Ana", "--note", "T-THF's card blocked")
            wait_until(lambda: daemon.store.member(MEMBER).status is Status.ACTIVE, 20.0, "the settlement")  # type: ignore[union-attr]
            paid = api.post("/v1/sales", json=held)  # the code the hold refused was left unused
            assert paid.status_code == 200, paid.text
        hq = HqStore(hq_proc.db)
        try:
            with hq.db.read() as tx:
                confirmed = tx.all("SELECT terminal_id, amount FROM payment_confirms")
            assert confirmed == [("T-DMN", 1000), ("T-DMN", 1000)]
            wait_until(lambda: hq.journal_count("T-DMN") >= 2, 20.0, "the sales at head office")
            assert hq.journal_count("T-DMN") == 2 and hq.member(MEMBER).stored_value == 1000  # type: ignore[union-attr]
        finally:
            hq.close()
    finally:
        daemon.stop()
