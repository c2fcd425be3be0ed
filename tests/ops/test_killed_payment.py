"""A till killed between head office's confirmation of a stored-value payment and the commit of the sale (a power
cut, SIGKILL): head office holds the amount back for a sale that never comes. The till noted the question on
disk before it asked, so its next start turns the note into a withdrawal, the sync loop sends it, and head
office releases the member's money. Real head-office and till processes; the till is killed while head office's
answer is on its way to it (held by a proxy)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import httpx

from hq import payments
from hq.store import HqStore
from sync.memberapp import MemberApp
from tests.fixtures.hq import FaultProxy, HqProcess
from tests.ops.helpers import Api, NotifyListener, TillProcess, hq_confirms, till_config, wait_until

TERMINAL = "T-KILLED"
BALANCE = 5000
PRICE = 3000


def head_office(root: Path) -> tuple[HqProcess, str, str]:
    """Head office holding a member with ``BALANCE`` of stored value and this till: (process, till token, the
    member app's token), set up before its server starts."""
    hq = HqProcess(root)
    store = HqStore(hq.db)
    try:
        token = store.add_terminal(TERMINAL, "S-001")
        store.upsert_member("M-1", "Aiko", "gold", 0)
        payments.topup(store, "M-1", BALANCE, "Mio")
        member_token = payments.member_token(store, "M-1")
    finally:
        store.close()
    return hq, token, member_token


def local_notes(db: Path) -> tuple[list[str], list[str]]:
    """(state keys of the till's confirmation notes, txn_ids its journal holds), read while it is down."""
    conn = sqlite3.connect(str(db), timeout=10)
    try:
        keys = conn.execute(
            "SELECT key FROM sync_state WHERE key LIKE 'asking:%' OR key LIKE 'withdraw:%' ORDER BY key"
        ).fetchall()
        txns = conn.execute("SELECT txn_id FROM journal ORDER BY seq").fetchall()
        return [str(k) for (k,) in keys], [str(t) for (t,) in txns]
    finally:
        conn.close()


def test_a_payment_killed_after_head_office_confirmed_it_is_released_after_the_restart(tmp_path: Path) -> None:
    hq, token, member_token = head_office(tmp_path)
    notify = NotifyListener(tmp_path / "notify.sock")
    hq.start()
    proxy = FaultProxy(hq.port, match="/v1/payments/confirm")
    proxy.only = token
    phone = MemberApp("M-1", tmp_path / "phone")
    # The till waits for head office's answer 3 s at most (min(hq.timeout, 3)): the kill lands within that.
    till = TillProcess(till_config(tmp_path, hq, token, TERMINAL, hq_url=proxy.url, hq_timeout=5.0), notify)
    api = Api(till)
    answers: list[httpx.Response | Exception] = []
    try:
        phone.register(hq.url, member_token)
        till.start()
        # A whole sync round done (members pulled and ``last_sync_ok`` set): before it, the till counts itself
        # offline and refuses an offline payment whose clock is unchecked (clock_not_synced).
        wait_until(
            lambda: api.status()["cache"]["members"] >= 1 and api.status()["last_sync_ok"] is not None,
            30,
            "the till's first whole sync round",
        )
        proxy.script("hold")  # head office confirms; its answer waits in the proxy

        def pay() -> None:
            paying = Api(till)
            try:
                answers.append(paying.sale(PRICE, "M-1", stored_value=PRICE, payment_code=phone.next_code()))
            except httpx.HTTPError as exc:
                answers.append(exc)
            finally:
                paying.close()

        payer = threading.Thread(target=pay, name="payer", daemon=True)
        payer.start()
        assert proxy.holding.wait(30), f"head office was never asked to confirm:\n{till.log_tail()}"
        till.kill()  # the power goes: head office has confirmed, the till has not recorded the sale
        proxy.release.set()
        payer.join(timeout=30)
        assert len(answers) == 1 and isinstance(answers[0], httpx.HTTPError), answers  # the POS got no answer
        confirmed = hq_confirms(hq.db, TERMINAL)
        assert [amount for amount, _ in confirmed.values()] == [PRICE], confirmed
        (txn_id,) = confirmed
        assert confirmed[txn_id][1] is None  # held back from Aiko's balance
        assert local_notes(till.data / "terminal.db") == ([f"asking:{txn_id}"], []), till.log_tail()

        till.start()
        wait_until(
            lambda: hq_confirms(hq.db, TERMINAL)[txn_id][1] is not None, 30, "head office to release the held amount"
        )
        # The whole balance is spendable again, confirmed online by head office.
        whole = api.sale(BALANCE, "M-1", stored_value=BALANCE, payment_code=phone.next_code())
        assert whole.status_code == 200, whole.text
        spent = whole.json()["txn_id"]
        assert hq_confirms(hq.db, TERMINAL)[spent] == (BALANCE, None)
        wait_until(lambda: api.status()["pending"] == 0, 30, "the sale pushed")
        assert till.stop() == 0
        assert local_notes(till.data / "terminal.db") == ([], [spent])
    finally:
        api.close()
        till.kill()
        proxy.close()
        hq.kill()
        notify.close()
    store = HqStore(hq.db)
    try:
        member = store.member("M-1")
        assert member is not None and member.stored_value == 0
        assert not [i for i in store.items() if i.state.value == "open"]  # nothing overspent, nothing to reconcile
    finally:
        store.close()
