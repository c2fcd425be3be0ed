"""`tillpoint hq staff add|list|disable|passwd|unlock` over a real head-office database (SQLite and PostgreSQL):
accounts are made with a role (and stores for a store manager only), passwords are asked for or read from
standard input and stored as scrypt hashes, a disabled account cannot sign in, a new password replaces the
old one, an unlock lets an account closed to new addresses be tried from them again, and each change
is in the audit chain."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from hq import audit
from hq.backoffice import staff
from hq.backoffice.errors import Code
from hq.cli import app as hq_commands
from hq.store import HqStore
from tests.conftest import STAFF_SCRYPT_N

GOOD = "twelve chars or more"


def run(url: str, *args: str, stdin: str | None = None) -> tuple[int, str]:
    done = CliRunner().invoke(hq_commands, [*args, "--db", url], input=stdin)
    return done.exit_code, done.output


def test_staff_accounts_from_the_command_line(hq_url: str, real_password_cost: int) -> None:
    HqStore(hq_url).close()  # head office's database (a command would make a missing one, and say so)
    status, out = run(hq_url, "staff", "add", "ken", "--name", "Ken", "--role", "store_manager", "--store", "S1",
                      "--store", "S2", "--password-stdin", stdin=GOOD + "\n")  # fmt: skip
    assert status == 0 and json.loads(out) == {
        "staff_id": "ken", "name": "Ken", "role": "store_manager", "stores": ["S1", "S2"], "merchant": None,
        "disabled": False,
    }  # fmt: skip
    status, out = run(hq_url, "staff", "add", "mio", "--name", "Mio", "--role", "finance", stdin=f"{GOOD}\n{GOOD}\n")
    assert status == 0 and json.loads(out.splitlines()[-1])["role"] == "finance"
    for args, stdin in (
        (["staff", "add", "mio", "--name", "Again", "--role", "finance", "--password-stdin"], GOOD),
        (["staff", "add", "x1", "--name", "X", "--role", "store_manager", "--password-stdin"], GOOD),  # no store
        (["staff", "add", "x2", "--name", "X", "--role", "finance", "--store", "S1", "--password-stdin"], GOOD),
        (["staff", "add", "x3", "--name", "X", "--role", "owner", "--password-stdin"], GOOD),
        (["staff", "add", "x4", "--name", "X", "--role", "finance", "--password-stdin"], "short"),
        (["staff", "add", "Bad Id", "--name", "X", "--role", "finance", "--password-stdin"], GOOD),
        (["staff", "add", "x5", "--name", "X", "--role", "finance"], f"{GOOD}\nsomething else entirely\n"),
        (["staff", "disable", "nobody"], None),
    ):
        assert run(hq_url, *args, stdin=stdin)[0] == 1, args
    status, out = run(hq_url, "staff", "list", "--json")
    assert status == 0 and [s["staff_id"] for s in json.loads(out)] == ["ken", "mio"]

    assert real_password_cost == 2**14 != STAFF_SCRYPT_N
    hq = HqStore(hq_url)
    try:
        with hq.db.read() as tx:
            stored = tx.one("SELECT password FROM staff WHERE staff_id = 'ken'")
        assert (
            stored is not None
            and str(stored[0]).startswith(f"scrypt${real_password_cost}$8$1$")
            and GOOD not in str(stored[0])
        )
        assert isinstance(staff.verify(hq.db, "ken", GOOD, "test", 1), staff.Staff)

        assert run(hq_url, "staff", "passwd", "ken", "--password-stdin", stdin="a brand new password\n")[0] == 0
        assert staff.verify(hq.db, "ken", GOOD, "test", 2) is Code.BAD_CREDENTIALS
        assert isinstance(staff.verify(hq.db, "ken", "a brand new password", "test", 3), staff.Staff)

        for n in range(staff.ACCOUNT_FAILURES):  # a guesser over many addresses
            assert staff.verify(hq.db, "mio", "not it", f"198.51.100.{n}", 10) is Code.BAD_CREDENTIALS
        assert staff.verify(hq.db, "mio", GOOD, "192.0.2.1", 11) is Code.LOCKED_OUT
        assert run(hq_url, "staff", "unlock", "nobody")[0] == 1
        status, out = run(hq_url, "staff", "unlock", "mio", "--reason", "guessed from a botnet")
        assert status == 0 and json.loads(out) == {"staff_id": "mio", "failures": staff.ACCOUNT_FAILURES}
        assert isinstance(staff.verify(hq.db, "mio", GOOD, "192.0.2.1", 12), staff.Staff)

        status, out = run(hq_url, "staff", "disable", "ken", "--reason", "left the company")
        assert status == 0 and json.loads(out)["disabled"] is True
        assert staff.verify(hq.db, "ken", "a brand new password", "test", 4) is Code.BAD_CREDENTIALS

        with hq.db.read() as tx:
            records = [(r.actor, r.action, r.target, r.reason) for r in reversed(audit.recent(tx))]
            forgot = {r.action: r.details.get("known_sources") for r in audit.recent(tx) if r.target == "ken"}
            assert staff.known_sources(tx, "ken") == 0  # the addresses it signed in from went with it
        assert forgot == {"staff_add": None, "staff_passwd": 1, "staff_disable": 1}
        assert records == [
            ("command line", "staff_add", "ken", "account opened"),
            ("command line", "staff_add", "mio", "account opened"),
            ("command line", "staff_passwd", "ken", "password changed"),
            ("command line", "staff_unlock", "mio", "guessed from a botnet"),
            ("command line", "staff_disable", "ken", "left the company"),
        ]
        assert audit.verify(hq.db).ok
    finally:
        hq.close()
