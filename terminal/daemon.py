"""Wiring: config -> store, service, readers, sync loop and local API. Thin on purpose.

Events (taps, members, sales, rejections, reader and sync changes) go to subscribers and into a
bounded ring that the local API serves, so the demo, the panel and tests all watch the same thing.
"""

from __future__ import annotations

import fcntl
import gc
import hmac
import itertools
import json
import logging
import os
import shutil
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx

from drivers import open_reader, open_scanner
from drivers.errors import DriverError
from drivers.sim import SimReader, SimScanner
from sync.client import (
    CREDENTIAL_REFUSED,
    PUSH_HELD,
    HqFailed,
    HqRejected,
    SyncClient,
    SyncError,
    SyncLoop,
    SyncResult,
    enrol,
    held_message,
    read_token_file,
    terminal_info,
    tls_verify,
    write_token_file,
)
from sync.protocol import DeviceHealth, ErrorCode, TillHealth
from terminal import __version__, logs, topups
from terminal import session as cashier
from terminal.api.pairing import Pairing
from terminal.checkin import CheckinCodes
from terminal.checkout import Checkout, LastTap
from terminal.config import Config, check_held, held_by
from terminal.configfiles import read_key_file, read_template
from terminal.configfiles import why as _why
from terminal.credentials import card_uid_hash
from terminal.enrolment import claim_signer, enrol_on_tap
from terminal.errors import Code, ConfigError, ConfigFileError, Rejected, SetupCode, storage_refusal
from terminal.keys import KeyLost, card_key, key_check, load_or_create_token
from terminal.metrics import Metrics, SyncFigures, Watchdog, watchdog_interval
from terminal.metrics import serve as serve_metrics
from terminal.model import (
    Basket,
    Card,
    CardRead,
    EarnRule,
    JournalEntry,
    Line,
    Member,
    QrRead,
    Quote,
    ReaderEvent,
    Receipt,
    SaleOrder,
    utc_iso,
)
from terminal.payments import RiskLimits
from terminal.ports import CacheDocs, CardReader, Event, QrScanner
from terminal.receiptrows import RowKeeper
from terminal.service import Service, clock_back
from terminal.session import Session
from terminal.store import RESENT, Store

if TYPE_CHECKING:
    from drivers.printer import PrinterProxy
    from terminal.api.server import ApiServers
    from terminal.hotkeys import HotkeyListener
    from terminal.receiptfiles import Keeper

log = logging.getLogger("tillpoint.daemon")

READER_STALL = 30.0  # seconds a reader or scanner loop may go without progress before the watchdog stops
# Settings a SIGHUP applies at once; any other change is logged as waiting for a restart.
LIVE_HQ = ("push_interval", "pull_interval", "backoff_max")
GIFT_TAP_S = 60.0  # how old a tap a gift card action may take


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    # Best effort and bounded: a listener that stopped reading must never block a stop or a sale.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.sendto(message.encode(), address)
        except OSError as exc:
            log.debug("sd_notify %r not delivered: %s", message.split("\n")[0], exc)


def hq_token_path(config: Config) -> Path:
    return config.hq_token_path


def payment_limits(config: Config) -> RiskLimits:
    p = config.payments
    return RiskLimits(
        p.per_transaction, p.per_member_day, p.terminal_total, p.max_offline, p.max_clock_age, p.max_clock_offset
    )


def hq_token(config: Config) -> str:
    """The till's head-office credential: ``hq.token``, else the token file (``""``: none); a file that cannot
    be read as text is ``ConfigError`` naming it."""
    if config.hq.token:
        return config.hq.token
    path = hq_token_path(config)
    try:
        return path.read_text(encoding="utf-8").strip() if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(
            "hq.token_file", f"a readable text file with the till's token ({path}: {_why(exc)})"
        ) from exc


def enrol_terminal(
    config: Config,
    store: Store,
    verify: ssl.SSLContext | bool,
    transport: httpx.BaseTransport | None = None,
    code: str | None = None,
) -> str:
    """Redeem ``code`` (default ``hq.enrol_code``), keep the credential in the token file, pin head office's root
    key and note the store head office enrolled the till for; returns the token. Raises SyncError (also when the
    till already pinned another root key: a code does not move a till to another head office), and
    ``ConfigError`` (``enrol_wrong_store``) when the code is another store's than ``terminal.store_id``: head
    office refuses it unused; one of an older release redeems it, and the credential is kept for the corrected
    config."""
    hq, store_id = config.hq, config.terminal.store_id
    try:
        reply = enrol(
            hq.url,
            code or hq.enrol_code,
            config.terminal.id,
            store_id=store_id,
            verify=verify,
            timeout=hq.timeout,
            transport=transport,
        )
    except HqRejected as exc:
        if exc.code != ErrorCode.ENROL_WRONG_STORE:
            raise
        raise ConfigError(
            "terminal.store_id", f"the store of the enrolment code ({exc})", SetupCode.ENROL_WRONG_STORE
        ) from exc
    pinned = store.state("hq_root_key")
    if pinned and pinned != reply.root_key:
        raise HqFailed(
            200,
            "head office's root key is not the one this till pinned: not enrolled (a code does not "
            "move a till to another head office)",
        )
    write_token_file(hq_token_path(config), reply.token)
    store.set_state(hq_root_key=reply.root_key, hq_store_id=reply.store_id)
    if reply.store_id != store_id:
        raise ConfigError(
            "terminal.store_id",
            f"{reply.store_id}, the store head office enrolled this till for (got {store_id!r}): head office would "
            "hold every sale in quarantine (wrong_store); correct terminal.store_id and start again (the "
            "credential is kept)",
            SetupCode.ENROL_WRONG_STORE,
        )
    log.info("enrolled with head office as %s of store %s", reply.terminal_id, reply.store_id)
    return reply.token


@runtime_checkable
class Progressing(Protocol):
    """A reader or scanner loop that reports progress (the watchdog supervises it)."""

    name: str
    last_progress: float
    """Monotonic time of the loop's last turn."""


class Daemon:
    def __init__(self, config: Config, *, hq_transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.hq_transport = hq_transport
        self.store: Store | None = None
        self.service: Service | None = None
        self.readers: list[CardReader] = []
        self.scanners: list[QrScanner] = []
        self.reader_state: dict[str, str] = {}
        self.sync: SyncLoop | None = None
        self.api_server: ApiServers | None = None
        self.last_tap = LastTap()  # the member's last tap, while it stands for them (the session's proof)
        self.last_read: tuple[CardRead, float] | None = None
        """The last card tap, whatever card it was, and when it came (monotonic): a gift card's actions take it."""
        self.api_token = ""
        self.subscribers: list[Callable[[Event], None]] = []
        self.events: deque[Event] = deque(maxlen=500)
        self._event_ids = itertools.count(1)
        self._lock = threading.Lock()
        self.metrics = Metrics(config.terminal.id)
        self.subscribers += [self.metrics.observe, log_event]
        self.watchdog: Watchdog | None = None
        self._stop_metrics: Callable[[], None] | None = None
        self._sync_beat = time.monotonic()
        self.checkout: Checkout | None = None  # the one path that commits a sale
        self.session: Session | None = None  # the cashier's sale (panel, hotkeys, API)
        self.checkin: CheckinCodes | None = None  # the rotating check-in code (docs/checkin.md)
        self.door_readers: list[CardReader] = []  # taps there are check-ins, never sales
        self.pairing: Pairing | None = None  # devices paired with a code
        self.hotkeys: HotkeyListener | None = None
        self.printer: PrinterProxy | None = None  # the printer in the middle (docs/receipts.md)
        self.keeper: Keeper | None = None  # the captured receipts on disk, pruned (docs/receipts.md)
        self.receipt_rows: RowKeeper | None = None  # the rows of receipts sold, those too old to earn deleted
        self._lock_fd: int | None = None
        self.started_at = utc_iso(time.time())
        self.halted = threading.Event()
        """Set when the daemon cannot go on and must be started again (``halt_reason`` says why): ``tillpoint run``
        then stops it and exits 1, and systemd starts it again."""
        self.halt_reason: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.config
        self._lock_data_dir()
        self.store = Store.open(cfg.db_path, repair=True)
        self.store.on_damage = self._damaged
        self._report_rebuild()
        self._check_setup(self.store)
        self._settle_asked()
        key = self._card_key()
        self.service = Service(
            self.store,
            cfg.terminal.id,
            store_id=cfg.terminal.store_id,
            sun_master_key=read_key_file(cfg.reader.sun_key_file),
            hash_uid=lambda uid: card_uid_hash(key, uid),
            limits=payment_limits(cfg),
            spend_needs_proof=cfg.payments.spend_needs_proof,
            receipt_max_age_days=cfg.receipts.max_age_days,
        )
        self.service.on_commit.append(self._committed)
        # The rows of receipts too old to earn, deleted now and once a day, by the earlier of this till's time and head
        # office's as last measured: neither a till clock nor a measured offset a year ahead makes every receipt's
        # rows look old enough to delete.
        self.receipt_rows = RowKeeper(self.store.forget_receipts, cfg.receipts.max_age_days, self.service.rows_now)
        self.receipt_rows.start()
        try:
            self.api_token = load_or_create_token(cfg.api_token_path)
        except OSError as exc:
            raise storage_refusal(exc, f"read or make the local API's token {cfg.api_token_path}") from exc
        self._start_sync()
        session = self._start_session(self.service, self.store)
        self._start_readers(lambda uid: card_uid_hash(key, uid))
        self._start_door(lambda uid: card_uid_hash(key, uid))
        self._start_scanners()
        self._start_printer(session)
        self._enumerate()
        if cfg.api.enabled:
            self._start_api(self.service, session)
        self._note_api_url()
        self.hotkeys = cashier.start_hotkeys(cfg.hotkeys, session, self.emit)
        self._start_metrics()
        self._start_watchdog()
        # Everything loaded so far lives as long as the daemon: keep the collector from rescanning it
        # on every cycle (shorter pauses in the middle of a quote).
        gc.freeze()
        # READY only now: migrations ran, devices were enumerated, the API listens.
        sd_notify(f"READY=1\nSTATUS={self._status_line()}")
        self.emit({"type": "started", "terminal": cfg.terminal.id})

    def _start_session(self, service: Service, store: Store) -> Session:
        """The one sale path, the cashier's session on it (fed by the daemon's events: taps, refusals) and
        the pairing of devices with the local API."""
        cfg = self.config
        self.checkout = Checkout(service, self.last_tap.get)
        claims = claim_signer(store, cfg.terminal.id, cfg.data_dir)
        wallet = cfg.checkin.wallet_url or cfg.hq.url
        self.checkin = CheckinCodes(claims, cfg.terminal.store_id, wallet, offset=service.clock_offset)
        session = Session(
            service,
            self.checkout,
            currency=cfg.terminal.currency,
            exponent=cfg.terminal.currency_exponent,
            join_url=cfg.panel.join_url,
            redeem_default=cfg.panel.redeem_default,
            on_change=lambda snap: self.emit({"type": "session", "session": snap}),
            make_claim_token=claims,  # signed, expiring, single-use
            gifts=service,
        )
        self.session = session
        self.pairing = Pairing(cfg.data_dir / "paired.json", ttl=cfg.panel.pairing_ttl)
        self.subscribers.append(lambda event: cashier.follow(session, event))
        return session

    def _start_api(self, service: Service, session: Session) -> None:
        from terminal.api.app import create_app
        from terminal.api.server import start_api_servers

        cfg = self.config
        assert self.pairing is not None
        app = create_app(
            self,
            service,
            session,
            self.pairing,
            allowed_hosts=cfg.api.allowed_hosts,
            allowed_origins=cfg.api.allowed_origins,
            metrics_enabled=cfg.metrics.enabled,
        )
        self.api_server = start_api_servers(app, cfg.api.host, cfg.api.port, cfg.api.unix_socket)
        logs.adopt("uvicorn", "uvicorn.error", "uvicorn.access")  # its errors are redacted too

    def _lock_data_dir(self) -> None:
        """One daemon per data directory, by an OS lock held for the process's life (released by the
        kernel however the process ends)."""
        directory = self.config.data_dir
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(directory / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:  # a read-only file system, a lock file of another user
            raise storage_refusal(exc, f"lock the data directory {directory}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            held = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(
                "terminal.data_dir",
                f"a directory no other daemon uses: {directory} is locked by the daemon with pid {held}",
            ) from exc
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            raise storage_refusal(exc, f"write the daemon's pid in {directory / 'daemon.lock'}") from exc

    def _note_api_url(self) -> None:
        """Where the local API listens, for the commands on this PC (``tillpoint sale``...); a full or
        read-only disk costs them the note, never the till its start."""
        path = self.config.api_url_path
        url = self.api_server.url if self.api_server is not None else ""
        try:
            if url:
                path.write_text(url + "\n", encoding="utf-8")
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not note the API address in %s: %s", path, exc)

    def _check_setup(self, store: Store) -> None:
        """Refuse a config whose defaults contradict what this till holds (``config.check_held``), then note the
        terminal and store it runs as, for the next start to check against."""
        cfg = self.config
        check_held(cfg, held_by(cfg, store.state))
        ran = {"terminal_id": cfg.terminal.id, "store_id": cfg.terminal.store_id}
        if any(store.state(key) != value for key, value in ran.items()):
            store.set_state(**ran)

    def _card_key(self) -> bytes:
        assert self.store is not None
        try:
            key, check = card_key(
                self.config.card_key_path, self.store.state("card_key_check"), self.store.counts()["cards"]
            )
        except KeyLost as exc:
            key, check, why = self._head_offices_card_key()
            if not check:
                raise ConfigError("security.card_key_file", f"{exc}; {why}") from exc
            log.warning(
                "the card-hash key %s replaces the one this till was started with: it is head office's (%s)",
                self.config.card_key_path,
                why,
            )
            self.store.set_state(card_key_check=check)
        except ValueError as exc:  # a file cut short
            raise ConfigFileError("security.card_key_file", f"a card-hash key of at least 16 bytes ({exc})") from exc
        except OSError as exc:
            path = self.config.card_key_path
            if os.path.lexists(path):  # there, and not a readable file (a directory, another user's)
                said = f"a readable card-hash key file ({path}: {_why(exc)})"
                raise ConfigFileError("security.card_key_file", said) from exc
            raise storage_refusal(exc, f"make the card-hash key {path}") from exc  # none could be made
        if self.store.state("card_key_check") is None:
            self.store.set_state(card_key_check=check)
        return key

    def _head_offices_card_key(self) -> tuple[bytes, str, str]:
        """The card-hash key file as it is, when head office vouches for it: (key, check, what head office said),
        or (b"", "", why not). A till first started with a wrong key (none installed: it made one) recorded that
        key's check and refuses any other; the chain's key, once installed, is taken up when head office's key has
        the same check (``GET /v1/terminal``: neither key leaves its machine), unless the till already put cards
        into the chain under its own key (enrolled or sold them: those would become unknown). Any other key stays
        refused. Reached only once ``card_key`` has read a key of a valid length."""
        path, hq = self.config.card_key_path, self.config.hq
        try:
            key = path.read_bytes()
        except OSError:
            return b"", "", "head office was not asked: the file cannot be read"
        assert self.store is not None
        made = self.store.cards_hashed_here()
        if made:
            why = f"this till enrolled or sold {made} cards hashed with the key it was started with: another key "
            return b"", "", why + "would make them unknown (head office was not asked)"
        token = hq_token(self.config) if hq.url else ""
        if not token:
            return b"", "", "head office was not asked: no credential to ask it with"
        try:
            info = terminal_info(
                hq.url, token, verify=tls_verify(hq.ca_file), timeout=min(hq.timeout, 5.0), transport=self.hq_transport
            )
        except SyncError as exc:
            return b"", "", f"head office, which could vouch for the file, could not be asked ({exc})"
        if info.card_key_check is None or not hmac.compare_digest(info.card_key_check, key_check(key)):
            return b"", "", "nor is it head office's card-hash key"
        return key, key_check(key), "head office hashes cards with the same key"

    def _damaged(self, why: str) -> None:
        """The database file was found damaged while the daemon ran (a bad sector, a page overwritten): every sale
        would be refused until a start rebuilds it (``Store.open(repair=True)``), so the daemon stops for one."""
        self.halt_reason = (
            f"{Code.STORAGE_FAILED.value}: the terminal database {self.config.db_path} is damaged ({why}); "
            "the next start rebuilds it"
        )
        log.error("%s: stopping", self.halt_reason)
        sd_notify(f"STATUS={self.halt_reason}")
        self.halted.set()

    def stop(self) -> None:
        """SIGTERM: no new requests, let a commit in flight finish (the store's lock), then close."""
        sd_notify("STOPPING=1")
        if self.api_server is not None:
            self.api_server.stop()  # uvicorn lets requests in flight finish
        if self.hotkeys is not None:
            self.hotkeys.stop()
        if self.printer is not None:
            self.printer.stop()
        if self.keeper is not None:
            self.keeper.stop()
        if self.receipt_rows is not None:
            self.receipt_rows.stop()
        for reader in [*self.readers, *self.door_readers]:
            reader.stop()
        for scanner in self.scanners:
            scanner.stop()
        if self.watchdog is not None:
            self.watchdog.stop()
        if self._stop_metrics is not None:
            self._stop_metrics()
        if self.sync is not None:
            self.sync.stop()
            self.sync.client.close()
        if self.store is not None:
            self.store.close()
        if self._lock_fd is not None:
            self.config.api_url_path.unlink(missing_ok=True)  # ours: the lock says no other daemon runs here
            os.close(self._lock_fd)  # the lock goes with it
            self._lock_fd = None

    def _start_sync(self) -> None:
        hq = self.config.hq
        assert self.store is not None
        verify = tls_verify(hq.ca_file)
        token = hq_token(self.config) or self._enrol(verify)
        if not token:
            log.warning("no head-office token configured: sync is off, sales stay in the journal")
            return
        path = hq_token_path(self.config)
        client = SyncClient(
            _Beating(self.store, self._beat_sync),
            self.config.terminal.id,
            hq.url,
            token,
            timeout=hq.timeout,
            verify=verify,
            batch_size=hq.batch_size,
            transport=self.hq_transport,
            save_token=None if hq.token else (lambda new: write_token_file(path, new)),
            load_token=None if hq.token else (lambda: read_token_file(path)),
            rotate_after_days=hq.rotate_after_days,
            end_of_day=hq.end_of_day,
            health=self.health_report,
        )
        self.sync = SyncLoop(client, hq.push_interval, hq.pull_interval, hq.backoff_max)
        if self.service is not None:
            from sync.confirm import confirmer, gift_confirmer, voucher_confirmer

            self.service.confirm_online = confirmer(client, min(hq.timeout, 3.0))
            self.service.confirm_voucher = voucher_confirmer(client, min(hq.timeout, 3.0))
            self.service.confirm_gift = gift_confirmer(client, min(hq.timeout, 3.0))
            self.service.push_now = lambda: client.push_now(min(hq.timeout, 3.0))
        self.sync.on_result.append(self._synced)
        self.sync.start()

    def _enrol(self, verify: ssl.SSLContext | bool) -> str:
        """Redeem ``hq.enrol_code`` for this terminal's credential and keep it in the token file."""
        hq = self.config.hq
        if not hq.enrol_code:
            return ""
        assert self.store is not None
        try:
            return enrol_terminal(self.config, self.store, verify, self.hq_transport)
        except SyncError as exc:
            log.error("enrolment with head office failed (sync stays off until a restart): %s", exc)
            self.emit({"type": "sync", "ok": False, "error": f"enrolment failed: {exc}"})
            return ""

    def _start_readers(self, hasher: Callable[[bytes], str]) -> None:
        for spec in self.config.reader.devices:
            try:
                reader = open_reader(
                    spec,
                    hasher,
                    holdoff=self.config.reader.debounce,
                    felica_master_key=read_key_file(self.config.reader.felica_key_file, "reader.felica_key_file"),
                )
            except DriverError as exc:
                self.emit({"type": "reader", "reader": spec, "kind": "error", "detail": str(exc)})
                continue
            self.readers.append(reader)
            reader.start(self.on_card, self.on_reader)

    def _start_door(self, hasher: Callable[[bytes], str]) -> None:
        """The door readers (``[door] devices``): their taps go to ``on_door_card``."""
        for spec in self.config.door.devices:
            try:
                reader = open_reader(spec, hasher, holdoff=self.config.reader.debounce)
            except DriverError as exc:
                self.emit({"type": "reader", "reader": spec, "kind": "error", "detail": str(exc)})
                continue
            self.door_readers.append(reader)
            reader.start(self.on_door_card, self.on_reader)

    def _start_printer(self, session: Session) -> None:
        """The printer in the middle (``[printer]``): receipts go to a ``Desk`` that keeps them, reads them
        with ``[receipts] templates``, records their sales on the session and makes the loyalty block."""
        from drivers.printer import PrinterProxy
        from terminal.receiptfiles import Keeper, Retention
        from terminal.receipts.desk import Desk

        printer, receipts = self.config.printer, self.config.receipts
        if not printer.listen or not printer.target:
            return
        templates = [read_template(path) for path in receipts.templates]
        keep_dir = Path(receipts.keep_dir) if receipts.keep_dir else self.config.data_dir / "receipts"
        retention = Retention(receipts.keep_days, int(receipts.keep_max_mb * 1_000_000))
        self.keeper = Keeper(keep_dir, retention, emit=self.emit)
        self.keeper.start()  # pruned now and once a day
        desk = Desk(
            templates,
            session if receipts.attach else None,
            self.keeper,
            pos_id=printer.pos_id,
            enrich=receipts.enrich,
            native_qr=printer.native_qr,
            title=receipts.title,
            emit=self._receipt_event,
        )
        self.printer = PrinterProxy(
            printer.listen,
            printer.target,
            desk,
            enrich=receipts.enrich and receipts.attach,
            hold=printer.hold,
            queue_chunks=printer.queue_chunks,
            receipt_gap=printer.receipt_gap,
            connect_timeout=printer.connect_timeout,
            probe_cap=printer.probe_max,
            emit=self.emit,
        )
        self.printer.start()
        log.info("printer in the middle: %s -> %s", printer.listen, printer.target)

    def _receipt_event(self, event: Event) -> Event:
        """A captured receipt's event; one refused as sold already (printed again: the same bytes, or a reprint of its
        number) is logged too, a cashier printing a receipt twice to earn on it twice being what it may be."""
        if event.get("code") in (Code.RECEIPT_ALREADY_USED.value, Code.RECEIPT_REPRINT.value):
            log.warning(
                "receipt %s (number %s, %s) refused %s: already sold, printed again",
                str(event.get("digest") or "")[:12],
                event.get("number"),
                event.get("pos_id"),
                event.get("code"),
            )
        return self.emit(event)

    def _start_scanners(self) -> None:
        """QR / barcode scanners from ``[scanner] devices``; their reads go to the cashier session."""
        options = self.config.scanner.driver_options()
        for spec in self.config.scanner.devices:
            try:
                scanner = open_scanner(spec, **options)
            except DriverError as exc:
                self.emit({"type": "reader", "reader": spec, "kind": "error", "detail": str(exc)})
                continue
            self.scanners.append(scanner)
            scanner.start(self.on_qr, self.on_reader)

    # -- operations: enumeration, watchdog, metrics, reload ----------------------------------------

    def _enumerate(self) -> None:
        """List what each reader sees now, so that READY means the hardware was looked at."""
        for reader in self.readers:
            try:
                found = reader.readers()
            except DriverError as exc:
                log.warning("reader %s cannot list its devices: %s", reader.name, exc)
                continue
            log.info(
                "reader %s lists %s", reader.name, ", ".join(found) or "no device yet", extra={"devices": len(found)}
            )

    def _report_rebuild(self) -> None:
        assert self.store is not None
        report = self.store.rebuilt
        if report is None:
            return
        self.metrics.store_rebuilds.inc()
        lost = ", ".join(f"{a}-{b}" for a, b in report.journal_lost) or "none"
        log.error(
            "the database was damaged and has been rebuilt: journal and local facts salvaged, the cache "
            "is pulled again from head office; sales resume once head office has been reached; journal "
            "seqs unreadable: %s",
            lost,
            extra={
                "reason": report.reason,
                "kept_as": report.kept_as,
                "salvaged": sum(report.salvaged.values()),
                "unreadable": sum(report.unreadable.values()),
            },
        )
        self.emit(
            {
                "type": "store_rebuilt",
                "reason": report.reason,
                "kept_as": report.kept_as,
                "salvaged": report.salvaged,
                "unreadable": report.unreadable,
                "journal_lost": [list(r) for r in report.journal_lost],
            }
        )

    def _settle_asked(self) -> None:
        """Before anything sells or syncs: the confirmations a previous process asked head office for and was
        killed before recording (power cut, SIGKILL) are withdrawn, so head office stops holding their amounts;
        those it did record are forgotten (``Store.settle_asked``)."""
        assert self.store is not None
        withdrawn, dropped = self.store.settle_asked(utc_iso(time.time()))
        if withdrawn:
            log.warning(
                "%d confirmation(s) asked of head office by the previous run were never recorded: withdrawn",
                len(withdrawn),
                extra={"txn_ids": " ".join(withdrawn)},
            )
        if dropped:
            log.info("%d confirmation(s) asked by the previous run were recorded", len(dropped))

    def _beat_sync(self) -> None:
        self._sync_beat = time.monotonic()

    def _watch_sync(self) -> None:
        if self.watchdog is None or self.sync is None:
            return
        sync, hq = self.sync, self.config.hq
        # A round waits at most backoff_max, and each request is bounded by the client's timeouts.
        limit = 2 * (hq.backoff_max + hq.push_interval) + 4 * hq.timeout
        self.watchdog.watch("sync", lambda: max(sync.last_progress, self._sync_beat), limit)

    def _start_watchdog(self) -> None:
        self.watchdog = Watchdog(sd_notify, watchdog_interval(), self.metrics)
        self._watch_sync()
        # Loops that report progress (``last_progress``, monotonic seconds) are supervised.
        for loop in [*self.readers, *self.scanners]:
            if isinstance(loop, Progressing):
                self.watchdog.watch(loop.name, _progress_of(loop), READER_STALL)
        self.watchdog.start()

    def _start_metrics(self) -> None:
        store = self.store
        assert store is not None
        self.metrics.watch_store(lambda: sync_figures(store))
        self.metrics.watch_scanners(lambda: self.scanners)
        if self.config.metrics.listen:
            self._stop_metrics = serve_metrics(self.metrics, self.config.metrics.listen)

    def metrics_exposition(self) -> tuple[bytes, str]:
        """The Prometheus text of this till's metrics and its content type (GET /metrics)."""
        return self.metrics.exposition()

    def _status_line(self) -> str:
        readers = ", ".join(r.name for r in self.readers) or "none"
        pending = self.store.pending_count() if self.store is not None else 0
        return f"terminal {self.config.terminal.id}; readers {readers}; {pending} entries to push"

    def reload(self, load: Callable[[], Config]) -> bool:
        """SIGHUP: read the config again. A bad file changes nothing and says why; the sale, log
        level and sync interval settings apply at once; any other change waits for a restart."""
        sd_notify("RELOADING=1")
        try:
            new = load()
            if self.store is not None:  # a file cut short is refused now, not at the next restart
                check_held(new, held_by(new, self.store.state))
        except ConfigError as exc:
            log.error("config reload refused, the running configuration stays: %s", exc)
            self.emit({"type": "config", "ok": False, "error": str(exc)})
            sd_notify(f"READY=1\nSTATUS=config reload refused: {str(exc)[:200]}")
            return False
        old = self.config
        hq = old.hq.model_copy(update={key: getattr(new.hq, key) for key in LIVE_HQ})
        applied = old.model_copy(
            update={"sale": new.sale, "hq": hq, "log": old.log.model_copy(update={"level": new.log.level})}
        )
        waiting = changed_keys(applied, new)
        self.config = applied
        logging.getLogger().setLevel(applied.log.level.upper())
        if self.sync is not None:
            self.sync.push_interval, self.sync.pull_interval, self.sync.backoff_max = (
                hq.push_interval,
                hq.pull_interval,
                hq.backoff_max,
            )
            self._watch_sync()
        if waiting:
            log.warning("config reloaded; these changes need a restart: %s", ", ".join(waiting))
        else:
            log.info("config reloaded")
        self.emit({"type": "config", "ok": True, "restart_needed": waiting})
        sd_notify(f"READY=1\nSTATUS={self._status_line()}")
        return True

    # -- events ----------------------------------------------------------------------------------

    def emit(self, event: Event) -> Event:
        """Tell every subscriber of ``event``. An event says what happened (a sale recorded, a tap read, the session
        changed), so a subscriber that fails changes none of it: its error is logged with its traceback and counted
        (``tillpoint_listener_errors_total{event}``), the next subscribers are told, and whoever emitted it goes on
        (a sale's answer is its receipt, a refusal's its code). Only what stops the process (``BaseException``:
        ^C on the console, ``SystemExit``) goes through. A listener's own refusals are its to show: the session's
        (``cashier.follow``) keeps a tap it refuses in its snapshot."""
        with self._lock:
            event = {"id": next(self._event_ids), "at": utc_iso(time.time()), **event}
            self.events.append(event)
        for subscriber in list(self.subscribers):
            try:
                subscriber(event)
            except Exception:
                kind = str(event.get("type", "?"))
                log.exception("an event listener failed on a %s event (%s): the event stands", kind, subscriber)
                self.metrics.listener_errors.labels(kind).inc()
        return event

    def events_after(self, after: int) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e["id"] > after]

    def on_reader(self, event: ReaderEvent) -> None:
        self.reader_state[event.reader] = event.kind
        shown = {"type": "reader", "reader": event.reader, "kind": event.kind, "detail": event.detail}
        self.emit({**shown, "code": event.code} if event.code else shown)

    def on_card(self, read: CardRead) -> None:
        assert self.service is not None
        self.last_read = (read, time.monotonic())
        if self.session is not None and self.session.wants_gift_tap():
            try:  # the cashier armed the gift card key: this tap is the gift card, whoever's card it is
                self.session.gift_tap(read)
            except Rejected:
                pass  # the snapshot carries the refusal; the key stays armed for another card
            return
        try:
            try:
                found = self.service.identify(read)
            except Rejected as unknown:
                if unknown.code is Code.UNKNOWN_CARD and self._gift_card_tapped(read):
                    return  # a member's tap reads nothing more than before: only a card no member holds is looked up
                found = enrol_on_tap(self.service, self.session, self.emit, read, unknown)  # "new member" armed
        except Rejected as exc:
            self.emit({"type": "rejected", "reader": read.reader, "code": exc.code.value, "message": exc.message})
            return
        self.last_tap.set(found)
        m = found.member
        self.emit(
            {
                "type": "member",
                "reader": read.reader,
                "member_id": m.member_id,
                "name": m.display_name,
                "tier": m.tier,
                "points": m.points,
            }
        )
        if self.config.sale.auto_amount > 0:
            try:
                self.pos_sale(SaleOrder(m.member_id, Basket((Line("DEMO", 1, self.config.sale.auto_amount, "demo"),))))
            except Rejected:
                pass  # already a "rejected" event with its code; a refusal is not a reader fault

    def _gift_card_tapped(self, read: CardRead) -> bool:
        """A tap of a card no member holds that is a gift card this till knows: its balance is shown (never an
        enrolment)."""
        assert self.service is not None
        try:
            card = self.service.gift_card(read)
        except Rejected:
            return False
        self.emit({"type": "gift_card", "reader": read.reader, **card.to_doc(), "uid_hash": None})
        if self.session is not None:
            self.session.show_gift_card(card)
        return True

    def gift_tap(self) -> CardRead:
        """The last tap when it is at most ``GIFT_TAP_S`` old: a gift card is sold, loaded, paid with or
        blocked by a tap the cashier just made, never by one from an earlier customer."""
        if self.last_read is None or time.monotonic() - self.last_read[1] > GIFT_TAP_S:
            raise Rejected(Code.GIFT_CARD_NOT_TAPPED)
        return self.last_read[0]

    def on_door_card(self, read: CardRead) -> None:
        """A tap on a door reader: the member's check-in, journalled (offline too); never the cashier's member."""
        assert self.service is not None
        try:
            found = self.service.identify(read)
            entry = self.service.check_in(found, read.reader)
        except Rejected as exc:
            self.emit({"type": "rejected", "reader": read.reader, "code": exc.code.value, "message": exc.message})
            return
        self.emit(
            {"type": "checkin", "reader": read.reader, "member_id": found.member.member_id, "txn_id": entry.txn_id}
        )
        if self.sync is not None:
            self.sync.wake()

    def checkin_code(self) -> dict[str, Any]:
        assert self.checkin is not None
        return self.checkin.shown()

    def member_for_sale(self, member_id: str | None, tapped: bool = False) -> str | None:
        """The member a sale is rung on: the one named, or with ``tapped`` the member of the last card
        tap; otherwise none. Never a member nobody asked for (an old tap does not follow the next sale)."""
        if not tapped:
            return member_id
        identified = self.last_tap.get()
        if identified is None:
            raise Rejected(Code.NO_MEMBER, "No card was tapped: name the member, or ring the sale without one.")
        last = identified.member.member_id
        if member_id is not None and member_id != last:
            raise Rejected(Code.MEMBER_MISMATCH)
        return last

    def sell(
        self,
        member_id: str | None,
        basket: Basket,
        coupons: Sequence[str] = (),
        redeem: int = 0,
        *,
        stored_value: int | None = 0,
        payment_code: str | None = None,
        pay_by_card: bool = False,
    ) -> Receipt:
        """Quote and commit a sale; the member's part is paid with stored value when asked, authorised
        by a one-time payment code or by the card of the last tap (``pos_sale``)."""
        order = SaleOrder(
            member_id,
            basket,
            tuple(coupons),
            redeem,
            stored_value=stored_value,
            code=payment_code,
            pay_by_card=pay_by_card,
        )
        return self.pos_sale(order)

    def pos_sale(self, order: SaleOrder) -> Receipt:
        """A sale the POS rang (``POST /v1/sales``, the demo's sale on a tap): through the one sale path,
        a refusal by its price or its commit also a ``rejected`` event."""
        assert self.checkout is not None
        return self.checkout.sell(order, refused=self._refused)

    def pos_quote(self, order: SaleOrder) -> Quote:
        assert self.checkout is not None
        return self.checkout.quote(order)

    def _refused(self, exc: Rejected) -> None:
        self.emit({"type": "rejected", "code": exc.code.value, "message": exc.message})

    def on_qr(self, read: QrRead) -> dict[str, Any]:
        """A scanner read a code: the cashier's session acts on it (``terminal.session.on_qr``)."""
        return cashier.on_qr(self.emit, self.session, read)

    def _committed(self, receipt: Receipt) -> None:
        self.emit({"type": receipt.kind, **asdict(receipt)})
        if self.sync is not None:
            self.sync.wake()

    def _synced(self, result: SyncResult | Exception) -> None:
        if isinstance(result, Exception):
            self.metrics.loop_errors.labels("sync", type(result).__name__).inc()
            self.emit({"type": "sync", "ok": False, "error": f"{type(result).__name__}: {result}"[:300]})
        elif result.pushed or result.pulled:
            self.emit({"type": "sync", "ok": True, "pushed": result.pushed, "pulled": result.pulled})

    # -- queries ---------------------------------------------------------------------------------

    def tap_sim(self, uid: bytes) -> None:
        sims = [r for r in self.readers if isinstance(r, SimReader)]
        if not sims:
            raise Rejected(Code.READER_UNAVAILABLE, "No simulated reader is configured on this till.")
        sims[0].tap(uid)

    def scan_sim(self, text: str, timeout: float = 5.0) -> dict[str, Any]:
        """Hold a code up to the simulated scanner (demo, tests); once the till has handled it, what the
        code was and what happened (``terminal.session.Session.scan_report``)."""
        sims = [s for s in self.scanners if isinstance(s, SimScanner)]
        if not sims:
            raise Rejected(Code.READER_UNAVAILABLE, "No simulated scanner is configured on this till.")
        delivered = sims[0].scan(text)
        if not delivered.wait(timeout):
            raise Rejected(
                Code.SCANNER_UNAVAILABLE, f"The simulated scanner did not deliver the code within {timeout:.0f} s."
            )
        return dict(delivered.result) if isinstance(delivered.result, dict) else {}

    def status(self) -> dict[str, Any]:
        assert self.store is not None
        info = store_status(self.store)
        info["terminal_id"] = self.config.terminal.id
        info["readers"] = [{"name": name, "state": state} for name, state in self.reader_state.items()]
        info["sync_enabled"] = self.sync is not None
        if self.sync is not None:
            info["sync_error"] = self.sync.last_error  # in memory: shown even when the disk is full
            info["sync_crashes"] = self.sync.crashes
        offset = self.service.clock_offset() if self.service is not None else None  # a corrupt one: None
        info["clock_offset_s"] = offset  # this till minus head office, last measured
        if self.hotkeys is not None:
            info["hotkeys"] = dict(self.hotkeys.status)
        if self.printer is not None:
            st = self.printer.stats
            info["printer"] = {
                "port": self.printer.port,
                "connections": st.connections,
                "receipts": st.receipts,
                "abandoned": st.abandoned,
                "parser_failures": st.parser_failures,
                "receipt_failures": st.receipt_failures,
                "enriched": st.enriched,
                "hold_timeouts": st.hold_timeouts,
                "printer_unreachable": st.printer_unreachable,
                "listening": st.listening,
            }
        if self.keeper is not None:
            last = self.keeper.last
            info["receipts_kept"] = {
                "problem": self.keeper.failing,  # receipts_dir_read_only, receipts_dir_full ... or None
                "not_kept": self.keeper.failures,
                "files": last.kept if last else None,
                "bytes": last.kept_bytes if last else None,
                "last_prune": utc_iso(self.keeper.last_prune) if self.keeper.last_prune else None,
            }
        return info

    def health_report(self, protocol: int) -> TillHealth:
        """What head office's fleet view shows of this till (sent with each pull round)."""
        assert self.store is not None
        figures = sync_figures(self.store)
        return TillHealth(
            version=__version__,
            protocol=protocol,
            started_at=self.started_at,
            readers=[DeviceHealth(name=name[:200], state=state[:32]) for name, state in self.reader_state.items()][:64],
            pending=figures.pending,
            oldest_pending_at=figures.oldest_pending_at,
            free_disk_bytes=_free_bytes(self.config.data_dir),
            last_error=((self.sync.last_error if self.sync else None) or self.store.state("last_error") or None),
            loop_crashes=self.sync.crashes if self.sync else 0,
        )

    def panel_config(self) -> dict[str, Any]:
        return cashier.panel_config(self.config)

    def panel_focus(self, focused: bool) -> None:
        if self.session is not None:
            self.session.panel_focus(focused)


def _progress_of(loop: Progressing) -> Callable[[], float]:
    return lambda: loop.last_progress


def store_status(store: Store) -> dict[str, Any]:
    """What ``tillpoint status`` shows, read from the database alone (works with no daemon)."""
    return {
        "pending": store.pending_count(),
        "resent": int(store.state(RESENT) or 0),  # entries head office asked for again (its database went back)
        "push_refused": push_refused(store),
        "push_held": held_message(store.state(PUSH_HELD)),  # entries kept for a head office of a newer protocol
        "last_sync_ok": store.state("last_sync_ok"),
        "offline_since": store.state("offline_since"),
        "credential_refused": store.state(CREDENTIAL_REFUSED),  # since when head office refuses the till's token
        "last_error": store.state("last_error"),
        "clock_back_s": clock_back(store, time.time()),  # > payments.max_clock_offset: offline spends refused
        "flags_open": sum(f.get("state") == "open" for f in json.loads(store.state("hq_flags") or "[]")),
        "cache": store.counts(),
        "topups": topup_status(store),
        "vouchers": voucher_status(store),
    }


def push_refused(store: Store) -> list[dict[str, Any]]:
    """Entries head office refused even alone (``body_too_large``; ``txn_id_taken``, with the terminal ``held_by``
    whose entry holds the txn id): kept here, reported to head office."""
    refused: list[dict[str, Any]] = json.loads(store.state("push_refused") or "[]")
    return refused


def voucher_status(store: Store) -> dict[str, Any]:
    """This till's unsold voucher stock, and its offline redemptions against its offline total
    (docs/stored-value.md, "Vouchers")."""
    pending, total = store.voucher_offline()
    return {"stock": store.voucher_stock(), "offline_pending": pending, "offline_total": total}


def topup_status(store: Store) -> dict[str, Any]:
    """Whether head office lets this till sell top-ups, and what it sold today (docs/stored-value.md)."""
    doc = store.topup_policy()
    policy = topups.policy_from_doc(doc)
    day = topups.business_day(datetime.now(UTC), doc)
    tally = store.topup_tally("", day)
    return {
        "enabled": policy.enabled,
        "day": day,
        "sold_today": tally.till_day,
        "per_day": policy.per_day,
        "offline_pending": tally.offline_pending,
    }


def sync_figures(store: Store) -> SyncFigures:
    """Sync state for the metrics, read from the database."""
    oldest = store.unpushed(1)
    return SyncFigures(
        store.pending_count(),
        oldest[0].created_at if oldest else None,
        store.state("offline_since"),
        store.state("last_sync_ok"),
        resent=int(store.state(RESENT) or 0),
        refused=len(push_refused(store)),
    )


def _free_bytes(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def changed_keys(a: Config, b: Config) -> list[str]:
    """``section.key`` names whose values differ between two configs."""
    left, right = a.model_dump(), b.model_dump()
    return [
        f"{section}.{key}" for section in left for key in left[section] if left[section][key] != right[section][key]
    ]


class _Beating:
    """The store as the sync client sees it: every call counts as progress of the sync loop (a long
    pull of many pages is progress; a call hung on a lock, or a request hung past its timeouts,
    is not)."""

    def __init__(self, store: Store, beat: Callable[[], None]) -> None:
        self._store = store
        self._beat = beat

    @property
    def recovering(self) -> bool:
        return self._store.recovering

    def unpushed(self, limit: int) -> list[JournalEntry]:
        self._beat()
        return self._store.unpushed(limit)

    def entries(self, after_seq: int = 0, limit: int = 1000) -> list[JournalEntry]:
        self._beat()
        return self._store.entries(after_seq, limit)

    def mark_pushed(self, up_to_seq: int, at: str) -> int:
        self._beat()
        return self._store.mark_pushed(up_to_seq, at)

    def withdrawals(self, limit: int) -> list[str]:
        self._beat()
        return self._store.withdrawals(limit)

    def unmark_pushed(self, ranges: list[tuple[int, int]]) -> int:
        self._beat()
        return self._store.unmark_pushed(ranges)

    def held_seqs(self, first: int, last: int) -> set[int]:
        self._beat()
        return self._store.held_seqs(first, last)

    def max_seq(self) -> int:
        self._beat()
        return self._store.max_seq()

    def finish_recovery(self, floor: int) -> None:
        self._beat()
        self._store.finish_recovery(floor)

    def renumber_unpushed(self, from_seq: int, above: int) -> list[tuple[int, int]]:
        self._beat()
        return self._store.renumber_unpushed(from_seq, above)

    def apply_changes(
        self,
        members: list[Member],
        cards: list[Card],
        rules: list[EarnRule],
        cursor: int,
        docs: CacheDocs | None = None,
        counted_seq: int | None = None,
    ) -> None:
        self._beat()
        self._store.apply_changes(members, cards, rules, cursor, docs, counted_seq)

    def bootstrap_rows(self, kind: str, rows: list[list[Any]], position: dict[str, str]) -> None:
        self._beat()
        self._store.bootstrap_rows(kind, rows, position)

    def finish_bootstrap(self, version: int) -> None:
        self._beat()
        self._store.finish_bootstrap(version)

    def record_eod(self, day: str, first_seq: int, last_seq: int, totals: str, status: str, detail: str) -> None:
        self._beat()
        self._store.record_eod(day, first_seq, last_seq, totals, status, detail)

    def eod_first_seq(self, day: str) -> int | None:
        self._beat()
        return self._store.eod_first_seq(day)

    def state(self, key: str) -> str | None:
        self._beat()
        return self._store.state(key)

    def set_state(self, **values: str | None) -> None:
        self._beat()
        self._store.set_state(**values)


def log_event(event: Event) -> None:
    """One log line per event worth keeping; names and card data are never part of it."""
    kind = event["type"]
    if "txn_id" in event and "seq" in event:
        log.info(
            "%s approved",
            kind,
            extra={k: event.get(k) for k in ("seq", "txn_id", "member_id", "total", "points_delta")},
        )
    elif kind == "rejected":
        log.info("refused: %s", event["code"], extra={"reader": event.get("reader", "")})
    elif kind == "reader":
        level = logging.INFO if event["kind"] == "added" else logging.WARNING
        log.log(level, "reader %s %s: %s", event["reader"], event["kind"], event.get("detail", ""))
    elif kind == "member":
        log.debug("member identified", extra={"member_id": event["member_id"], "reader": event["reader"]})
