"""`tillpoint hq ...`: migrating and running head office, and the first terminal, member and card of a new
database."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from hq.cli.common import (
    DEFAULT_DB,
    DbOpt,
    StoreOpt,
    card_hash,
    console,
    fail,
    hq_store,
    print_rows,
    shown_db,
    terminal_store,
)
from terminal.console import JsonOpt, check_port, show_json

if TYPE_CHECKING:
    from hq.store import HqStore

app = typer.Typer()


BackupOpt = Annotated[bool, typer.Option(help="Back the database up before a migration (--no-backup: you made one).")]
LockWaitOpt = Annotated[
    float | None,
    typer.Option(
        min=0.001,
        help="Seconds a migration (and the backup before it) waits for a lock another session holds before it gives "
        "up, applying nothing of it; default 60 (docs/deploy.md, Upgrades).",
    ),
]
"""``hq migrate``'s and ``hq serve``'s: the same backup and the same bound."""


@app.command("migrate")
def hq_migrate(
    db: DbOpt = DEFAULT_DB,
    backup: BackupOpt = True,
    migration_lock_wait: LockWaitOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply the migrations this release has and the database lacks (after a backup), and say which. Run it before
    starting the new release's servers; every other command but serve refuses a database it lacks them on."""
    from hq.db.schema import MIGRATIONS

    with hq_store(db, upgrade=True, backup=backup, migration_lock_wait=migration_lock_wait) as store:
        done = store.migrated
    report = {
        "database": shown_db(db),
        "applied": done.applied,
        "filled": done.filled,
        "backup": done.backup,
        "schema": MIGRATIONS[-1][0],
    }
    if as_json:
        show_json(report)
        return
    if done.applied:
        print_rows([{"migration": name} for name in done.applied], ["migration"])
    console.print(
        f"applied {len(done.applied)} migration(s)"
        + (f", filled in the data of {', '.join(done.filled)}" if done.filled else "")
        + (f"; backup before them: {done.backup}" if done.backup else "")
        + f"; the schema is at {MIGRATIONS[-1][0]}"
        + ("" if done.applied else " (nothing to do)")
    )


class _Stops:
    """SIGINT and SIGTERM taken from ``hq serve``'s first moment: a stop sent while head office starts (opening
    its database, the backup before a migration, the migration itself) lets the step under way finish, instead of
    cutting it with the signal's default death (exit status -15, which systemd logs as a failure), and the command
    then ends before serving (``stop_if_noted``). Once it serves, ``hq.api.server.serve`` or uvicorn's supervisor
    takes them. The handler takes no lock, as the till's (``terminal.cli._signal_waiter``): a second signal's
    handler runs inside the first's. The handlers found are put back when the command ends."""

    def __init__(self, ctx: typer.Context) -> None:
        self.received: list[int] = []
        self._found = {sig: signal.signal(sig, self._note) for sig in (signal.SIGINT, signal.SIGTERM)}
        ctx.call_on_close(self.put_back)

    def _note(self, sig: int, _frame: FrameType | None) -> None:
        self.received.append(sig)

    def put_back(self) -> None:
        for sig, handler in self._found.items():
            signal.signal(sig, handler)

    def stop_if_noted(self, store: HqStore | None = None, *, closed: bool = False) -> None:
        """Close the database (``store``; ``closed``: closed already) and exit with status 0 if a stop came while
        head office started."""
        if not self.received:
            return
        if store is not None:
            store.close()
        print(
            f"head office stopped ({signal.Signals(self.received[0]).name}) before serving: the start-up step under "
            f"way finished, database {'closed' if store is not None or closed else 'not opened'}",
            file=sys.stderr,
            flush=True,
        )
        raise typer.Exit(0)


@app.command("serve")
def hq_serve(
    ctx: typer.Context,
    db: DbOpt = DEFAULT_DB,
    host: str = "127.0.0.1",
    port: int = 8731,
    seed_demo_key: Annotated[
        Path | None, typer.Option(help="Seed demo members, hashing card UIDs with this key file.")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="Serve HTTPS with this certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The certificate's private key (PEM).")] = None,
    clock_skew: Annotated[float, typer.Option(help="Seconds a till's clock may be off before it is flagged.")] = 300.0,
    timezone: Annotated[str, typer.Option(help="The chain's business-day time zone (IANA).")] = "UTC",
    write_off_points: Annotated[int, typer.Option(help="Settle overspends of up to N points automatically.")] = 0,
    sun_key_file: Annotated[
        Path | None,
        typer.Option(help="The chain's NTAG 424 DNA master key: head office verifies every SUN tap that paid."),
    ] = None,
    card_key_file: Annotated[
        Path | None,
        typer.Option(help="The chain's card-hash key (with --sun-key-file: ties a SUN message to its card)."),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Head-office processes on this port (PostgreSQL only): docs/deploy.md.")
    ] = 1,
    backup: BackupOpt = True,
    migration_lock_wait: LockWaitOpt = None,
    trust_pos: Annotated[
        bool,
        typer.Option(
            help="Accept points spent on the POS's word, without a card or code proof (a risk: docs/security.md)."
        ),
    ] = False,
    push_entries_per_day: Annotated[
        int,
        typer.Option(
            help="Entries head office stores of one till a day (UTC); beyond, its pushes wait for the next day "
            "(push_limited). 0: no bound."
        ),
    ] = 50_000,  # hq.ingest.PUSH_ENTRIES_PER_DAY
    push_bytes_per_day: Annotated[
        int, typer.Option(help="Bytes of entries head office stores of one till a day (0: no bound).")
    ] = 256 * 1024 * 1024,  # hq.ingest.PUSH_BYTES_PER_DAY
    campaign_interval: Annotated[
        float,
        typer.Option(help="Run the campaigns that are due every N seconds (0: off, run them from elsewhere)."),
    ] = 60.0,
    wallet_sender: Annotated[
        str | None,
        typer.Option(
            help="How wallet sign-in codes are sent: console, file:DIR or smtp://host:port?from=ADDR "
            "(+sms=URL for phone numbers): docs/wallet.md. Default: $TILLPOINT_WALLET_SENDER, else console."
        ),
    ] = None,
) -> None:
    """Serve the head-office API (SQLite file, or PostgreSQL with --db postgresql://...)."""
    stops = _Stops(ctx)  # before anything starts: docs/deploy.md, Stopping head office
    from hq.api.app import WALLET_SENDER_ENV
    from hq.api.server import serve
    from hq.db.schema import MIGRATION_LOCK_WAIT_S
    from hq.demo import seed_demo
    from hq.errors import BackupFailed, HqError, KeyFileInvalid, MigrationBlocked, StorageFailed
    from hq.store import open_store
    from hq.wallet.senders import sender_from_spec
    from hq.workers import NeedsPostgres, ServeOptions, check_workers, serve_workers
    from terminal.keys import load_or_create_key

    try:
        check_workers(db, workers)
        if wallet_sender is not None:
            sender_from_spec(wallet_sender)  # refused here, before anything starts
            os.environ[WALLET_SENDER_ENV] = wallet_sender  # every worker process reads it
    except (NeedsPostgres, ValueError) as exc:
        fail(exc)
    check_port(host, port, "head office", "--port N")
    certfile, keyfile = (str(tls_cert) if tls_cert else None), (str(tls_key) if tls_key else None)
    for name, path in (("--tls-cert", certfile), ("--tls-key", keyfile)):
        if path is not None and not os.access(path, os.R_OK):
            fail(f"{name}: {path} is missing or unreadable")
    if seed_demo_key is not None:  # made on first use, before anything reads it
        try:
            load_or_create_key(seed_demo_key)
        except (OSError, ValueError) as exc:
            fail(f"{KeyFileInvalid.code}: cannot start head office: --seed-demo-key: {exc}")
    card_key_file = card_key_file or seed_demo_key
    stops.stop_if_noted()
    made = "://" not in db and not Path(db).exists()  # a mistyped path is a new, empty head office: say so
    try:  # an upgrade migrates here, once, after a backup (docs/install.md)
        store = open_store(
            db,
            clock_skew=clock_skew,
            timezone=timezone,
            write_off_points=write_off_points,
            sun_key_file=sun_key_file,
            card_key_file=card_key_file,
            trust_pos=trust_pos,
            push_entries_per_day=push_entries_per_day,
            push_bytes_per_day=push_bytes_per_day,
            backup=backup,
            migration_lock_wait=MIGRATION_LOCK_WAIT_S if migration_lock_wait is None else migration_lock_wait,
        )
    except StorageFailed as exc:
        fail(f"{exc.problem}: cannot start head office: {exc}")
    except (MigrationBlocked, BackupFailed, KeyFileInvalid) as exc:
        fail(f"{exc.code}: cannot start head office: {exc}")
    except HqError as exc:
        fail(f"cannot start head office: {exc}")
    store.keep_chain_timezone()  # the zone of the stores without a calendar, for the commands run beside it
    if seed_demo_key is not None:
        seed_demo(store, load_or_create_key(seed_demo_key))
    stops.stop_if_noted(store)
    scheme = "https" if certfile else "http"
    fresh = " (new and empty: made now)" if made else ""
    print(f"head office on {scheme}://{host}:{port}, database {shown_db(db)}{fresh}", file=sys.stderr, flush=True)
    if workers > 1:
        store.close()  # migrated and seeded once, here; each worker opens its own pool
        stops.put_back()  # until uvicorn's supervisor takes them, a stop ends head office at once, as before
        stops.stop_if_noted(closed=True)  # one noted until then
        serve_workers(
            ServeOptions(
                db=db,
                clock_skew=clock_skew,
                timezone=timezone,
                write_off_points=write_off_points,
                sun_key_file=str(sun_key_file) if sun_key_file else None,
                card_key_file=str(card_key_file) if card_key_file else None,
                trust_pos=trust_pos,
                push_entries_per_day=push_entries_per_day,
                push_bytes_per_day=push_bytes_per_day,
                campaign_interval=campaign_interval,
            ),
            host,
            port,
            workers,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
        return
    from hq.scheduler import CampaignTimer

    timer = (
        CampaignTimer(store.db, campaign_interval, skew=store.settings.clock_skew).start()
        if campaign_interval > 0
        else None
    )
    try:
        stopped_by = serve(store, host, port, ssl_certfile=certfile, ssl_keyfile=keyfile, noted=stops.received)
    finally:
        if timer is not None:
            timer.stop()
        store.close()
    why = f" ({stopped_by})" if stopped_by else ""
    print(f"head office stopped{why}: requests in flight answered, database closed", file=sys.stderr, flush=True)


@app.command("add-terminal")
def hq_add_terminal(
    terminal_id: str, store_id: StoreOpt = None, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False
) -> None:
    """Register a terminal and print its credential (shown once). A terminal head office holds already is
    re-keyed: the credential its till holds stops working (``hq rotate`` gives an enrolment code instead). A revoked
    one is refused: a new credential would be refused too, and only an enrolment code lets its till back in."""
    with hq_store(db) as store:
        revoked = store.terminal_revoked(terminal_id)  # None: a new terminal
        if revoked:
            fail(
                f"credential_revoked: {terminal_id} is revoked, and a new credential for it would be refused too: "
                f"`tillpoint hq enrol-code {terminal_id}` gives the code that lets its till back in "
                "(`tillpoint enrol CODE` at the till); nothing was changed"
            )
        held = revoked is not None
        store_id = terminal_store(store, terminal_id, store_id)
        token = store.add_terminal(terminal_id, store_id)
    if held:
        print(
            f"{terminal_id} was registered already: re-keyed; the credential its till holds no longer works "
            "(give it this one, or use hq rotate for an enrolment code)",
            file=sys.stderr,
        )
    if as_json:
        show_json({"terminal_id": terminal_id, "store_id": store_id, "token": token})
    else:
        print(token)


@app.command("add-member")
def hq_add_member(
    member_id: str,
    name: Annotated[str | None, typer.Argument(help="Display name (unchanged when omitted).")] = None,
    tier: Annotated[str | None, typer.Option(help="Tier; a new member starts basic.")] = None,
    points: Annotated[int | None, typer.Option(help="Set the points balance (an administrator's act).")] = None,
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Create a member, or change only what is given: balances, lots and tier survive an update."""
    with hq_store(db) as store:
        store.upsert_member(member_id, name, tier, points)


@app.command("add-card")
def hq_add_card(
    uid: str,
    member_id: str,
    card_key_file: Annotated[Path, typer.Option(help="The chain's card-hash key.")],
    blocked: bool = False,
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Link a card (hex UID, stored only as its keyed hash) to a member."""
    uid_hash = card_hash(uid, card_key_file)
    with hq_store(db) as store:
        try:
            store.upsert_card(uid_hash, member_id, "blocked" if blocked else "active")
        except ValueError as exc:
            fail(f"unknown_member: {exc}")
