"""The path users take, further: the installed wheel's till and head office run the chain's value and its damage
(top-ups, gift cards, a merchant's settlement, statistics on PostgreSQL, a re-keyed credential, a withdrawn
confirmation, a restored head office), as tests/ops/test_wheel.py runs the basics. Split from it so that the two
modules share the run's workers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.postgres import PgServer, pg_server  # noqa: F401 - fixture
from tests.ops.helpers import hq_journal
from tests.ops.wheel import (
    NOT_READY,
    Cli,
    Pair,
    hq_and_till,
    hq_rows,
    rung,
    sale,
    terminal_and_key,
)
from tests.waiting import wait_until


def test_the_installed_wheel_sells_a_topup_head_office_enabled(installed: Path, tmp_path: Path) -> None:
    """Stored value sold at the till, from the wheel: head office enables the till by its command, the daemon
    pulls the policy, `tillpoint topup` sells through the daemon's API and head office credits it; a voucher
    head office signed into the till's stock is sold, used once and refused the second time."""
    import json
    import sqlite3

    tillpoint, db = str(installed / "tillpoint"), str(tmp_path / "hq.db")

    run = Cli(tillpoint, tmp_path)

    run("hq", "add-member", "M-W", "Wheel Wren", "--db", db)
    token = run("hq", "add-terminal", "T-W", "--store-id", "S-001", "--db", db).stdout.strip().splitlines()[-1]
    limits = ("--per-transaction", "5000", "--per-day", "10000", "--per-member-day", "5000")
    assert json.loads(run("hq", "till-topups", "T-W", "--enable", *limits, "--db", db).stdout)["enabled"]
    assert (
        len(json.loads(run("hq", "voucher", "issue", "T-W", "--value", "1500", "--db", db).stdout)["voucher_ids"]) == 1
    )
    key = tmp_path / "card-hash.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    with hq_and_till(tillpoint, tmp_path, db, token, key, "--seed-demo-key", str(key)) as (config, alive):

        def sold() -> dict[str, object] | None:
            alive()
            done = run("topup", "2000", "--member", "M-W", "--json", "--config", str(config), check=False)
            if done.returncode != 0:  # not up yet, the policy not pulled or the clock not checked yet: nothing sold
                assert any(code in done.stdout for code in NOT_READY), done.stdout
                return None
            answer: dict[str, object] = json.loads(done.stdout)
            return answer

        receipt = wait_until(sold, 60, "a top-up once the till pulled its policy")
        assert (receipt["kind"], receipt["stored_value"]) == ("till_topup", 2000)
        over = run("topup", "5001", "--member", "M-W", "--config", str(config), check=False)
        assert over.returncode == 1 and "topup_limit_transaction" in over.stdout, over.stdout

        def credited() -> int | None:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
            try:
                row = conn.execute("SELECT stored_value FROM members WHERE member_id = 'M-W'").fetchone()
            finally:
                conn.close()
            return int(row[0]) if row and row[0] else None

        assert wait_until(credited, 30, "head office's credit of the top-up") == 2000

        # A voucher of the till's stock sold (the POS took 15.00), used once, refused the second time.
        sold_voucher = json.loads(run("voucher", "sell", "--value", "1500", "--json", "--config", str(config)).stdout)
        code = str(sold_voucher["code"])
        used = json.loads(
            run("voucher", "redeem", code, "--sale-ref", "POS-1", "--json", "--config", str(config)).stdout
        )
        assert (used["kind"], used["value"], used["offline"]) == ("voucher_redeem", 1500, False)
        again = run("voucher", "redeem", code, "--config", str(config), check=False)
        assert again.returncode == 1 and "voucher_used" in again.stdout, again.stdout
    # The reports' roll-up of the installed head office holds the top-up, and its check agrees.
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rolled = conn.execute("SELECT SUM(amount) FROM report_days WHERE figure = 'topped_up'").fetchone()
    finally:
        conn.close()
    assert rolled == (2000,)
    assert json.loads(run("hq", "reports", "check", "--db", db).stdout) == {"ok": True, "differences": [], "count": 0}


def test_the_installed_wheel_runs_gift_cards_from_both_ends(installed: Path, tmp_path: Path) -> None:
    """Gift cards from the wheel: head office imports a card of an earlier system and sets the terms by its
    commands; the daemon pulls the card; a tap shows its balance through `tillpoint giftcard balance`; a card
    known only by its UID (the simulated reader's) cannot pay; head office's activity shows the import; staff
    attach it to a member's wallet and the ledger's check holds its value."""
    import json

    from terminal.credentials import card_uid_hash

    tillpoint, db = str(installed / "tillpoint"), str(tmp_path / "hq.db")

    run = Cli(tillpoint, tmp_path)

    key = tmp_path / "card-hash.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    uid = "04A1B2C3D4E5F6"
    uid_hash = card_uid_hash(key.read_bytes(), bytes.fromhex(uid))
    token = run("hq", "add-terminal", "T-W", "--store-id", "S-001", "--db", db).stdout.strip().splitlines()[-1]
    assert json.loads(run("hq", "giftcard", "terms", "--expiry-days", "365", "--db", db).stdout)["expiry_days"] == 365
    card = json.loads(run("hq", "giftcard", "import", uid_hash, "4200", "--by", "Mio", "--db", db).stdout)
    assert (card["state"], card["balance"]) == ("active", 4200) and card["expires_on"]
    again = run("hq", "giftcard", "import", uid_hash, "1", "--by", "Mio", "--db", db, check=False)
    assert again.returncode != 0 and "gift_card_invalid" in again.stdout + again.stderr
    with hq_and_till(tillpoint, tmp_path, db, token, key) as (config, alive):

        def balance() -> dict[str, object] | None:
            alive()
            if run("tap", uid, "--config", str(config), check=False).returncode != 0:
                return None  # the daemon is not up yet
            done = run("giftcard", "balance", "--json", "--config", str(config), check=False)
            if done.returncode != 0:  # the card not pulled yet: the tap was no gift card
                assert "gift_card_unknown" in done.stdout, done.stdout
                return None
            answer: dict[str, object] = json.loads(done.stdout)
            return answer

        shown = wait_until(balance, 60, "the till to pull the imported card")
        assert (shown["card_id"], shown["balance"], shown["state"]) == (card["card_id"], 4200, "active")
        paid = run("giftcard", "pay", "100", "--config", str(config), check=False)
        assert paid.returncode == 1 and "card_cannot_pay" in paid.stdout, paid.stdout  # a UID proves nothing
        activity = json.loads(run("hq", "giftcard", "show", str(card["card_id"]), "--db", db).stdout)["activity"]
        assert [(a["kind"], a["amount"], a["by"]) for a in activity] == [("gift_import", 4200, "Mio")]
    # staff keep the card in a member's wallet, and the ledger holds its value (the installed commands)
    run("hq", "add-member", "M-W", "Wanda", "--db", db)
    kept = json.loads(
        run(
            "hq", "giftcard", "attach", str(card["card_id"]), "M-W", "--by", "Mio", "--reason", "desk", "--db", db
        ).stdout
    )
    assert kept["holder"] == "M-W"
    assert json.loads(run("hq", "ledger", "check", "--db", db).stdout) == {"ok": True, "failures": [], "count": 0}


def test_the_installed_wheel_settles_a_merchant_whose_timing_changed(installed: Path, tmp_path: Path) -> None:
    """Settlement from the wheel: a merchant paying at issuance moves to redemption mid-month; its till earns
    points before and after; the operator prints the month's statement with the installed commands. The points
    issued before the switch are charged (their lot kept the timing it was issued under), those issued after are
    not yet (they are charged when spent). The month is not over, and head office refuses to close it; the month
    before is, and its closed statement's bytes do not change."""
    import json
    import sqlite3

    tillpoint, db = str(installed / "tillpoint"), str(tmp_path / "hq.db")

    run = Cli(tillpoint, tmp_path)

    def merchant(timing: str) -> None:
        run("hq", "merchant", "add", "M-S", "--name", "Shop S", "--timing", timing, "--db", db)

    def held_at_hq(txn_id: str) -> str | None:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute("SELECT day FROM journal WHERE txn_id = ? AND effect = 'applied'", [txn_id]).fetchone()
        finally:
            conn.close()
        return str(row[0]) if row else None

    run("hq", "add-member", "M-W", "Wheel Wren", "--db", db)
    token = run("hq", "add-terminal", "T-W", "--store-id", "S-001", "--db", db).stdout.strip().splitlines()[-1]
    merchant("issuance")
    run("hq", "store", "S-001", "--merchant", "M-S", "--db", db)
    key = tmp_path / "card-hash.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    with hq_and_till(tillpoint, tmp_path, db, token, key) as (config, alive):

        def sold(amount: str) -> dict[str, Any] | None:
            alive()
            done = run("sale", amount, "--member", "M-W", "--json", "--config", str(config), check=False)
            if done.returncode != 0:  # the daemon not up, or the member not pulled yet
                assert any(code in done.stdout + done.stderr for code in NOT_READY), done.stdout + done.stderr
                return None
            answer: dict[str, Any] = json.loads(done.stdout)
            return answer

        before = wait_until(lambda: sold("3000"), 60, "a member's sale once the till is up")
        day = wait_until(lambda: held_at_hq(str(before["txn_id"])), 30, "head office holding the first sale")
        merchant("redemption")
        after = wait_until(lambda: sold("5000"), 30, "a sale after the switch")
        wait_until(lambda: held_at_hq(str(after["txn_id"])), 30, "head office holding the second sale")
    earned = (int(before["points_delta"]), int(after["points_delta"]))
    assert min(earned) > 0, earned
    period = day[:7]
    statement = json.loads(run("hq", "settlement", "statement", period, "M-S", "--db", db).stdout)
    assert (statement["state"], statement["timing"]) == ("open", "redemption")
    assert (statement["points"]["issued"], statement["points"]["charged"]) == (sum(earned), earned[0])
    # The month of the sales is not over by head office's clock: closing it now would make its remaining sales
    # late entries of the next, for ever. The month before is over: the operator closes it.
    early = run("hq", "settlement", "close", period, "--by", "Mio", "--reason", "month end", "--db", db, check=False)
    assert early.returncode == 1 and "period_not_over" in early.stdout + early.stderr, early.stdout + early.stderr
    year, month = int(period[:4]), int(period[5:])
    before = f"{year - (month == 1)}-{(month - 2) % 12 + 1:02d}"
    shut = run("hq", "settlement", "close", before, "--by", "Mio", "--reason", "month end", "--db", db)
    assert json.loads(shut.stdout)["period"] == before, shut.stdout
    closed = json.loads(run("hq", "settlement", "statement", before, "M-S", "--db", db).stdout)
    assert (closed["state"], closed["timing"], closed["points"]["issued"]) == ("closed", "redemption", 0)
    csv = tmp_path / "statement.csv"
    run("hq", "settlement", "statement", before, "M-S", "--format", "csv", "--out", str(csv), "--db", db)
    first = csv.read_bytes()
    run("hq", "settlement", "statement", before, "M-S", "--format", "csv", "--out", str(csv), "--db", db)
    assert csv.read_bytes() == first and b"state,closed" in first
    assert json.loads(run("hq", "ledger", "check", "--db", db).stdout)["ok"] is True


def test_the_installed_head_office_keeps_statistics_on_postgresql(
    installed: Path,
    tmp_path: Path,
    pg_server: PgServer,  # noqa: F811 - the fixture
) -> None:
    """Head office from the wheel on PostgreSQL: its migrations (m040's PostgreSQL-only storage setting, m041's
    views among them) make the schema, a till's sale reaches the member's statistics through the one-statement
    write, a voided second sale gives the member's last visit back to the first, and the statistics rebuilt from
    the journal are the same."""
    import json

    import psycopg

    url, tillpoint = pg_server.fresh_schema(), str(installed / "tillpoint")
    run = Cli(tillpoint, tmp_path)
    run("hq", "add-member", "M-P", "Pia Park", "--db", url)
    token = run("hq", "add-terminal", "T-W", "--store-id", "S-001", "--db", url).stdout.strip().splitlines()[-1]
    key = tmp_path / "card-hash.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)

    def shown() -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(run("hq", "stats", "show", "M-P", "--json", "--db", url).stdout)
        return answer

    with hq_and_till(tillpoint, tmp_path, url, token, key) as (config, alive):

        def sold(amount: str = "2500") -> dict[str, Any] | None:
            alive()
            done = run(
                "sale", amount, "--member", "M-P", "--category", "food", "--json", "--config", str(config), check=False
            )
            if done.returncode != 0:  # the daemon not up, or the member not pulled yet
                assert any(code in done.stdout + done.stderr for code in NOT_READY), done.stdout + done.stderr
                return None
            answer: dict[str, Any] = json.loads(done.stdout)
            return answer

        wait_until(lambda: sold(), 60, "a member's sale once the till is up")
        wait_until(lambda: shown()["visits"] == 1 or None, 30, "head office counting the sale")
        first = shown()
        # A second sale, voided: the member's last visit taken back is found again (the span read on PostgreSQL)
        second = wait_until(lambda: sold("1200"), 30, "a second sale")
        wait_until(lambda: shown()["visits"] == 2 or None, 30, "head office counting the second sale")
        assert shown()["last_visit"] > first["last_visit"]
        run("void", str(second["txn_id"]), "--json", "--config", str(config))
        wait_until(lambda: shown()["visits"] == 1 or None, 30, "head office taking the void's visit back")
    kept = shown()
    assert kept["last_visit"] == first["last_visit"] and kept["first_visit"] == first["first_visit"]
    assert (kept["visits"], kept["spend"]) == (1, 2500), kept
    assert json.loads(run("hq", "stats", "rebuild", "--json", "--db", url).stdout)["member_totals"] == 1
    assert shown() == kept
    with psycopg.connect(url) as conn:
        (options,) = conn.execute("SELECT reloptions FROM pg_class WHERE oid = 'member_totals'::regclass").fetchone()
        day_rows = conn.execute(
            "SELECT kind, item, visits, spend FROM member_day_rows UNION ALL "
            "SELECT kind, item, visits, spend FROM member_day_rows_recent ORDER BY kind"
        ).fetchall()
    assert options == ["fillfactor=80"]
    # m041 and m060: a day's rows in one of two tables (all days, the recent ones), read through views
    assert day_rows == [("c", "food", 0, 2500), ("s", "S-001", 1, 2500)]


def test_the_installed_daemon_takes_up_a_credential_head_office_re_keyed(installed: Path, tmp_path: Path) -> None:
    """Head office re-keys the till (`tillpoint hq add-terminal` of a terminal it holds): the running installed
    daemon is refused with the credential it holds; the operator puts the new one in the till's token file, and
    the daemon reads the file again at the next refusal: the sale rung after the re-keying reaches head office,
    with no restart."""
    tillpoint, db = str(installed / "tillpoint"), str(tmp_path / "hq.db")
    run = Cli(tillpoint, tmp_path)
    token, key = terminal_and_key(run, tmp_path, db)
    pair = Pair(tillpoint, tmp_path, db, key)
    pair.configure(None)  # the credential lives in the token file, where enrolment keeps it
    pair.keep_token(token)

    def held() -> list[str]:
        pair.alive()
        return [txn for _, txn in hq_journal(Path(db), "T-W")]

    try:
        pair.start("hq")
        pair.start("till")
        pair.wait_pulled()
        first = rung(pair, 100)
        wait_until(lambda: held() == [first], 30, "the first sale at head office")
        rekeyed = run("hq", "add-terminal", "T-W", "--store-id", "S-001", "--db", db)
        new = rekeyed.stdout.strip().splitlines()[-1]
        assert new != token and "re-keyed" in rekeyed.stderr, rekeyed.stderr
        second = rung(pair, 200)
        wait_until(
            lambda: pair.alive() or "401" in str(pair.status().get("sync_error")), 30, "the old credential refused"
        )
        assert held() == [first]
        pair.keep_token(new)
        wait_until(lambda: held() == [first, second], 30, "the sale rung after the re-keying at head office")
        wait_until(lambda: pair.status()["sync_error"] is None, 30, "the daemon syncing without an error")
    finally:
        pair.stop()


def test_the_installed_till_withdraws_a_confirmation_whose_answer_was_lost(installed: Path, tmp_path: Path) -> None:
    """A member pays 30.00 of their 50.00 stored value with their phone's code at the installed till; head office
    confirms it and holds the amount back, but the network loses its answer; the till's offline rules (20.00 a
    payment here) refuse the sale, so its entry never comes. The installed daemon withdraws the confirmation with
    its next sync: head office stops holding the 30.00, and the member pays the whole 50.00 at the till."""
    from sync.memberapp import MemberApp
    from tests.security.test_lost_confirmation import DroppingNetwork

    tillpoint, db = str(installed / "tillpoint"), str(tmp_path / "hq.db")
    run = Cli(tillpoint, tmp_path)
    run("hq", "add-member", "M-W", "Wheel Wren", "--db", db)
    run("hq", "topup", "M-W", "5000", "--db", db)
    member_token = run("hq", "member-token", "M-W", "--db", db).stdout.strip().splitlines()[-1]
    token, key = terminal_and_key(run, tmp_path, db)
    pair = Pair(tillpoint, tmp_path, db, key)
    network = DroppingNetwork(("127.0.0.1", pair.hq_port), limit=1)  # loses the first confirmation's answer
    pair.configure(token, hq_url=network.url, extra="[payments]\nper_transaction = 2000\n")
    phone = MemberApp("M-W", tmp_path / "phone")

    def confirmations() -> list[tuple[int, int]]:
        """(amount, withdrawn) of each of the member's confirmations head office holds."""
        pair.alive()
        found = hq_rows(db, "SELECT amount, withdrawn_at IS NOT NULL FROM payment_confirms WHERE member_id = 'M-W'")
        return sorted((int(amount), int(withdrawn)) for amount, withdrawn in found)

    def paid(amount: int) -> httpx.Response | None:
        pair.alive()
        reply = sale(pair, amount, member_id="M-W", stored_value=amount, payment_code=phone.next_code())
        if reply.status_code == 409 and reply.json()["code"] in ("unknown_member", "device_cert_unknown"):
            return None  # the member or the phone's certificate not pulled yet: head office was not asked
        return reply

    network.start()
    try:
        pair.start("hq")
        network.target = ("127.0.0.1", pair.hq_port)  # where head office listens (moved if its port was taken)
        pair.start("till")
        pair.wait_hq()
        phone.register(pair.hq_url, member_token)  # the till pulls the phone's certificate with a later round
        pair.wait_pulled()
        lost = wait_until(lambda: paid(3000), 30, "the till to take the member's phone code")
        assert lost.status_code == 409 and lost.json()["code"] == "offline_limit_transaction", lost.text
        assert network.dropped == 1  # head office confirmed it: its answer was lost on the way
        wait_until(lambda: confirmations() == [(3000, 1)], 30, "the till's withdrawal of the unused confirmation")
        whole = paid(5000)
        assert whole is not None and whole.status_code == 200, whole.text if whole is not None else None
        wait_until(
            lambda: hq_rows(db, "SELECT stored_value FROM members WHERE member_id = 'M-W'") == [(0,)],
            30,
            "the whole balance's sale at head office",
        )
        assert confirmations() == [(3000, 1), (5000, 0)]
        # Staff's view from the installed commands: nothing held back now; the withdrawn hold cannot be released.
        assert json.loads(run("hq", "holds", "--db", db).stdout) == []
        [(withdrawn,)] = hq_rows(db, "SELECT txn_id FROM payment_confirms WHERE amount = 3000")
        said = run(
            "hq", "release-hold", str(withdrawn), "--by", "Mio", "--reason", "till gone", "--db", db, check=False
        )
        assert said.returncode == 1 and "no_hold" in said.stdout + said.stderr, said.stdout + said.stderr
    finally:
        pair.stop()
        network.stop()


def test_the_installed_till_resends_what_a_restored_head_office_lost(installed: Path, tmp_path: Path) -> None:
    """Head office restored from its last backup (its disk died): the installed till had pushed four sales since
    and marked them acknowledged. Its next push learns of the hole, the till sends them again, and head office
    ends with every seq exactly once and the till with nothing pending.

    The ports picked for both were taken by another program before they started: the harness moves each
    (``Pair``), the till's config follows head office, and the till pulls from where it moved."""
    tillpoint, db = str(installed / "tillpoint"), str(tmp_path / "hq.db")
    run = Cli(tillpoint, tmp_path)
    token, key = terminal_and_key(run, tmp_path, db)
    pair = Pair(tillpoint, tmp_path, db, key)
    pair.configure(token)
    backup = tmp_path / "hq-backup.db"
    taken = (pair.hq_port, pair.api_port)
    squatters = [socket.create_server(("127.0.0.1", port)) for port in taken]

    def drained(count: int) -> bool:
        pair.alive()
        return len(hq_journal(Path(db), "T-W")) == count and pair.status()["pending"] == 0

    try:
        pair.start("hq")
        pair.start("till")
        pair.wait_pulled()
        assert (pair.hq_port, pair.api_port) != taken and pair.hq_port not in taken and pair.api_port not in taken
        assert f"127.0.0.1:{pair.hq_port}" in pair.config.read_text()
        assert "port_busy" in (tmp_path / "hq.log").read_text() and "port_busy" in (tmp_path / "till.log").read_text()
        for squatter in squatters:
            squatter.close()
        sold = [rung(pair, 1000 + n) for n in range(3)]
        wait_until(lambda: drained(3), 30, "the first sales at head office")
        source = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)  # last night's backup, taken live
        target = sqlite3.connect(backup)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        sold += [rung(pair, 2000 + n) for n in range(4)]
        wait_until(lambda: drained(7), 30, "the day's sales acknowledged")

        pair.stop("hq", kill=True)  # head office's disk dies; the operator restores the backup
        for side in ("-wal", "-shm"):
            Path(db + side).unlink(missing_ok=True)
        shutil.copyfile(backup, db)
        pair.start("hq")
        assert len(hq_journal(Path(db), "T-W")) == 3

        sold += [rung(pair, 3000 + n) for n in range(2)]
        wait_until(lambda: drained(9), 30, "every sale at head office again and nothing pending at the till")
        status = pair.status()
        assert (status["resent"], status["push_refused"], status["sync_error"]) == (4, [], None)
    finally:
        pair.stop()
        for squatter in squatters:
            squatter.close()
    held = hq_journal(Path(db), "T-W")
    assert [seq for seq, _ in held] == list(range(1, 10))
    assert sorted(txn for _, txn in held) == sorted(sold)


def test_the_installed_till_answers_a_pos_retry_after_a_kill_with_the_sale_it_recorded(
    installed: Path, tmp_path: Path
) -> None:
    """The POS sends a sale with its ``request_id``; the installed daemon is killed (SIGKILL) before the POS reads
    the answer; started again, the same request gets the sale recorded under it, and head office holds that one
    sale; the id sent with a top-up's request is ``request_id_used``."""
    tillpoint, db = str(installed / "tillpoint"), str(tmp_path / "hq.db")
    run = Cli(tillpoint, tmp_path)
    token, key = terminal_and_key(run, tmp_path, db)
    pair = Pair(tillpoint, tmp_path, db, key)
    pair.configure(token)
    try:
        pair.start("hq")
        pair.start("till")
        pair.wait_pulled()
        first = sale(pair, 1234, request_id="POS-0001")
        assert first.status_code == 200, first.text
        pair.stop("till", kill=True)  # the answer was lost with it, as far as the POS knows
        pair.start("till")
        again = sale(pair, 1234, request_id="POS-0001")
        assert again.status_code == 200, again.text
        assert again.json() == first.json()

        def held() -> list[str]:
            return [txn for _, txn in hq_journal(Path(db), "T-W")]

        wait_until(lambda: pair.alive() or held() == [first.json()["txn_id"]], 30, "the one sale at head office")
        other = pair.till("/v1/topups", {"member_id": "M-W", "amount": 500, "request_id": "POS-0001"})
        assert other.status_code == 409 and other.json()["code"] == "request_id_used", other.text
        assert held() == [first.json()["txn_id"]]
    finally:
        pair.stop()
