"""Configuration: one TOML file, validated at start, with defaults good enough to run with no file.

The file comes from ``--config`` or ``TILLPOINT_CONFIG``. Every value is checked before anything
starts; a bad one raises ``ConfigError`` naming the key (``hq.push_interval``) and what was expected.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from terminal.errors import ApiUrlInvalid, ConfigError, SetupCode

ENV_CONFIG = "TILLPOINT_CONFIG"
ENV_STATE = "STATE_DIRECTORY"  # set by systemd's StateDirectory=


def _device_specs(value: list[str], examples: str) -> list[str]:
    """Device specs are ``kind:argument``; the driver registry checks the kind when it opens them."""
    for spec in value:
        if ":" not in spec:
            raise ValueError(f"{spec!r} is not 'kind:argument' (e.g. {examples})")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TerminalSection(_Section):
    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")] = "T-001"
    """This till's id: letters, digits, . _ -; unique in the chain."""
    store_id: Annotated[str, Field(min_length=1, max_length=64)] = "S-001"
    """The store this till belongs to (store-limited rules and coupons, reports)."""
    data_dir: str = ""
    """Where the database lives; empty means the last directory of $STATE_DIRECTORY (systemd's StateDirectory=:
    /var/lib/tillpoint/data under the shipped unit), else ./var/tillpoint."""
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    """ISO 4217 code of the money the till counts."""
    currency_exponent: Annotated[int, Field(ge=0, le=4)] = 2
    """Minor units per major unit = 10**exponent (EUR 2, JPY 0)."""


class SecuritySection(_Section):
    card_key_file: str = ""
    """The card-hash key, kept outside the database; empty means <data_dir>/../card-hash.key."""
    api_token_file: str = ""
    """The local API's token; empty means <data_dir>/api.token (created 0600 at start, and made again when the file holds no token)."""


class ReaderSection(_Section):
    devices: list[str] = Field(default_factory=lambda: ["auto:"])
    """Readers, each with one owner: "pcsc:<name glob>" (pcscd) or "nfcpy:usb:054c:06c3" (nfcpy)."""
    debounce: Annotated[float, Field(ge=0, le=60)] = 0.5
    """Hold-off: the same card back on the same reader within this many seconds of leaving is one tap."""
    sun_key_file: str = ""
    """NTAG 424 DNA SUN master key (16 bytes, raw or hex); empty: SUN cards only identify, never pay."""
    felica_key_file: str = ""
    """FeliCa Lite-S master key (16 bytes, raw or hex); empty: Lite-S cards only identify, never pay."""

    @field_validator("devices")
    @classmethod
    def _kinds_known(cls, value: list[str]) -> list[str]:
        return _device_specs(value, "'pcsc:', 'sim:'")


def _readable_url(url: str) -> str:
    """``url`` (or ""), once it reads as a web address with a host and, if any, a port: a bracketed host that is no
    IPv6 address or a port that is no number would stop the till later, at its first request, with a traceback."""
    if url:
        try:
            parts = urlsplit(url)
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"a web address ({exc})") from exc
        if not parts.hostname:
            raise ValueError("a web address with a host")
    return url


class HqSection(_Section):
    url: Annotated[str, Field(pattern=r"^https?://"), AfterValidator(lambda u: _readable_url(u))] = (
        "http://127.0.0.1:8731"
    )
    """Head office's base URL (https in production)."""
    token: str = ""
    """This till's head-office credential; or token_file, or an enrolment code."""
    token_file: str = ""
    """File holding the credential (written by enrolment and rotation)."""
    ca_file: str = ""
    """CA bundle for a private head-office certificate; empty: the system's CAs."""
    allow_plain_http: bool = False
    """Let ``url`` be plain http to another machine (a lab network only: anyone on the network can then read
    the till's credential and change what head office sends); plain http to this machine is always allowed."""
    push_interval: Annotated[float, Field(gt=0, le=3600)] = 2.0
    """Seconds between pushes of the journal (a commit also wakes the pusher)."""
    pull_interval: Annotated[float, Field(gt=0, le=86400)] = 10.0
    """Seconds between pulls of member, card, rule, coupon and key changes."""
    timeout: Annotated[float, Field(gt=0, le=120)] = 5.0
    """Seconds before a head-office request gives up."""
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 500
    """Journal entries per push, at most (a push also keeps under 4 MiB of JSON: large sales go fewer at a time)."""
    backoff_max: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """Cap in seconds of the exponential backoff (with jitter) while head office is down."""
    enrol_code: str = ""
    """One-time enrolment code from `tillpoint hq enrol-code`: with no token, the daemon redeems it at
    start and keeps the credential in token_file (default <data_dir>/hq.token)."""
    rotate_after_days: Annotated[float, Field(ge=0, le=3650)] = 30.0
    """Replace the credential (kept in a token file) this often; 0: never."""
    end_of_day: bool = True
    """Report each finished business day's totals to head office."""


class DoorSection(_Section):
    """A second reader at the door: a member's tap there is a check-in (docs/checkin.md), never a sale."""

    devices: list[str] = Field(default_factory=list)
    """Door readers, like [reader] devices ("pcsc:<name glob>", "nfcpy:udp:HOST:PORT" ...); none: no door reader.
    A reader is either the till's or the door's, never both."""

    @field_validator("devices")
    @classmethod
    def _kinds_known(cls, value: list[str]) -> list[str]:
        return _device_specs(value, "'pcsc:', 'nfcpy:'")


class CheckinSection(_Section):
    """The rotating check-in code the till shows (panel page /panel/checkin.html, `tillpoint checkin-code`)."""

    wallet_url: Annotated[str, Field(pattern=r"^$|^https?://[^?#\s]+$"), AfterValidator(lambda u: _readable_url(u))] = (
        ""
    )
    """Head office's address as members' phones reach it: the code's QR is a link to its wallet's check-in
    page; empty: [hq] url."""


class ApiSection(_Section):
    host: str = "127.0.0.1"
    """Loopback address to listen on; empty: no TCP listener (the Unix socket only)."""
    port: Annotated[int, Field(ge=0, le=65535)] = 8732
    """TCP port of the local API and panel (0: any free port)."""
    enabled: bool = True
    """Serve the local API and the cashier panel."""
    unix_socket: str = ""
    """Also listen on this Unix socket (mode 0660), e.g. /run/tillpoint/api.sock; empty: none."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Host names accepted besides 127.0.0.1, localhost and [::1] (each one weakens DNS-rebinding protection)."""
    allowed_origins: list[str] = Field(default_factory=list)
    """Web origins (scheme://host[:port]) of a browser-based POS allowed to call the API (CORS); never '*'."""

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        if value and value not in ("127.0.0.1", "::1", "localhost") and not value.startswith("127."):
            raise ValueError("the local API listens on loopback only (127.0.0.1, ::1) or on a Unix socket")
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _exact_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            scheme, sep, rest = origin.partition("://")
            if scheme not in ("http", "https") or not sep or not rest or "*" in rest or "/" in rest:
                raise ValueError(f"{origin!r} is not an exact origin like 'https://pos.example:8443'")
        return value


class PanelSection(_Section):
    """The cashier panel (docs/cashier.md)."""

    enabled: bool = True
    """Serve the cashier panel at /panel/."""
    language: Literal["en", "ja", "zh"] = "en"
    """The panel's language: English, Japanese or Chinese."""
    join_url: Annotated[str, Field(pattern=r"^$|^https?://[^#\s]+$"), AfterValidator(lambda u: _readable_url(u))] = ""
    """The sign-up page the customer's QR opens (join, or claim an anonymous sale's points); empty: no join QR."""
    redeem_default: Literal["max", "none"] = "max"
    """At the payment step: pay with as many points as allowed, or none, until the cashier toggles it."""
    keys: dict[Literal["total", "points", "confirm", "language", "new", "topup", "gift"], str] = Field(
        default_factory=dict
    )
    """Panel-only shortcuts (defaults: total F8, points F4, confirm Enter, language F2, new F6, top-up F3, gift
    card F1); the four actions identify, coupon, pay and cancel use the [hotkeys] keys in the panel too."""
    pairing_ttl: Annotated[float, Field(ge=10, le=3600)] = 120.0
    """Seconds a pairing code stays valid."""


class HotkeysSection(_Section):
    """Global hotkeys on the POS keyboard (evdev; not grabbed: the POS still gets the keys)."""

    enabled: bool = True
    """Listen for the global hotkeys on the POS keyboard (evdev)."""
    devices: list[str] = Field(default_factory=lambda: ["auto"])
    """Keyboard event devices (/dev/input/by-id/...-event-kbd), or "auto": every keyboard found."""
    identify: str = "F9"
    """Key that arms identification (the next tap or code identifies)."""
    coupon: str = "F10"
    """Key that arms a coupon (the next scan or typed id applies)."""
    pay: str = "F11"
    """Key that moves to payment."""
    cancel: str = "Esc"
    """Key that cancels the current step."""
    enrol: str = "F7"
    """New member: the next tap of a card the till does not know enrols it."""
    topup: str = ""
    """Top-up: the identified member's stored value rises by the typed amount (empty: no global key; the
    panel's own key is [panel] keys.topup)."""
    gift: str = ""
    """Gift card: the next tap sells or loads the typed amount, or pays what the POS still collects for the sale
    done (empty: no global key; the panel's own key is [panel] keys.gift)."""
    burst_gap_ms: Annotated[int, Field(ge=5, le=500)] = 40
    """A hotkey counts only with no other key this close before or after it (a scanner's burst)."""

    @field_validator("identify", "coupon", "pay", "cancel", "enrol", "topup", "gift")
    @classmethod
    def _known_key(cls, value: str) -> str:
        from terminal.hotkeys import parse_chord

        if value:
            parse_chord(value)
        return value

    def keymap(self) -> dict[str, str]:
        return {
            "identify": self.identify,
            "coupon": self.coupon,
            "pay": self.pay,
            "cancel": self.cancel,
            "enrol": self.enrol,
            **({"topup": self.topup} if self.topup else {}),
            **({"gift": self.gift} if self.gift else {}),
        }


class SaleSection(_Section):
    auto_amount: Annotated[int, Field(ge=0)] = 0
    """When above 0, every identified tap rings a one-line sale of this many minor units (demo)."""


class LogSection(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level logged."""
    format: Literal["auto", "journal", "json", "text"] = "auto"
    """auto: journald priorities when stderr is the journal (systemd), else plain text."""


class MetricsSection(_Section):
    enabled: bool = True
    """GET /metrics on the local API (Prometheus text format)."""
    listen: Annotated[str, Field(pattern=r"^$|^\[?[0-9A-Za-z.:-]+\]?:[0-9]{1,5}$")] = ""
    """host:port of a separate metrics-only listener for a remote Prometheus; empty: none."""


BarcodeFormat = Literal["qr", "micro_qr", "code128", "ean13", "ean8", "upca", "datamatrix"]
Terminator = Literal["enter", "tab"]


def _qr_only() -> list[BarcodeFormat]:
    return ["qr"]


def _enter_or_tab() -> list[Terminator]:
    return ["enter", "tab"]


Fraction = Annotated[float, Field(ge=0, le=1)]


Resolution = tuple[Annotated[int, Field(ge=16, le=7680)], Annotated[int, Field(ge=16, le=4320)]]


class CameraSettings(_Section):
    """One camera's controls, ``[scanner.cameras."camera:/dev/video0"]``; a key left out keeps the
    section's value (resolution, fps) or the camera's own setting (the others)."""

    resolution: Resolution | None = None
    """Capture size [width, height] for this camera; none: [scanner] resolution."""
    fps: Annotated[float, Field(gt=0, le=240)] | None = None
    """Frame rate for this camera; none: [scanner] fps."""
    exposure: Literal["auto"] | Annotated[float, Field(gt=0, le=10_000)] | None = None
    """"auto", or a fixed exposure in the driver's unit (V4L2: 100 microseconds; 50-100 = 5-10 ms reads phone
    screens without smearing); none: leave the camera's setting."""
    focus: Literal["auto"] | Annotated[int, Field(ge=0, le=1023)] | None = None
    """"auto", or a fixed focus position (V4L2 focus_absolute; larger is nearer on most UVC cameras); none: leave it."""
    gain: Annotated[float, Field(ge=0, le=1023)] | None = None
    """Sensor gain in the driver's unit; none: leave it."""


class ScannerSection(_Section):
    """QR / barcode scanners (docs/scanning.md). Each kind uses the keys that concern it."""

    devices: list[str] = Field(default_factory=list)
    """"camera:/dev/video0", "camera:0", "camera:file.avi", "camera:rtsp://...", "wedge:/dev/input/by-id/...",
    "serial:/dev/ttyACM0", "sim:"; empty: no scanner."""
    resolution: Resolution | None = None
    """Camera capture size [width, height]; none: the camera's default."""
    fps: Annotated[float, Field(gt=0, le=240)] | None = None
    """Camera frame rate asked for; None: the camera's default."""
    formats: list[BarcodeFormat] = Field(default_factory=_qr_only, min_length=1)
    """Camera decoding: "qr" only by default; "code128", "ean13" ... for legacy printed coupons."""
    dedupe_window: Annotated[float, Field(ge=0, le=60)] = 1.5
    """Seconds: the same text seen again within this long after its last sighting is the same read."""
    roi: tuple[Fraction, Fraction, Fraction, Fraction] | None = None
    """Camera region of interest [x, y, width, height] as fractions of the frame; none: the whole frame."""
    motion_threshold: Annotated[float, Field(ge=0, le=100)] = 0.5
    """Percent of the frame that must change before a frame is decoded again; 0 decodes every frame."""
    layout: Literal["us", "fr", "de", "jp"] = "us"
    """The keyboard layout a keyboard-wedge scanner is programmed for (not the till's own layout)."""
    terminators: list[Terminator] = Field(default_factory=_enter_or_tab)
    """Keys that end a scan on a keyboard-wedge scanner."""
    idle_timeout: Annotated[float, Field(ge=0, le=5)] = 0.25
    """Wedge and serial scanners with no suffix: a scan ends after this many seconds without input."""
    baudrate: Annotated[int, Field(ge=300, le=4_000_000)] = 9600
    """Serial scanner speed (CDC-ACM scanners ignore it)."""
    cameras: dict[str, CameraSettings] = Field(default_factory=dict)
    """Per-camera controls by device spec: [scanner.cameras."camera:/dev/video0"] with resolution, fps,
    exposure, focus, gain (see [scanner.cameras."<spec>"] below)."""

    @field_validator("devices")
    @classmethod
    def _scanner_specs(cls, value: list[str]) -> list[str]:
        return _device_specs(value, "'camera:/dev/video0', 'sim:'")

    @field_validator("roi")
    @classmethod
    def _roi_inside(cls, value: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if value is not None and (value[2] <= 0 or value[3] <= 0 or value[0] + value[2] > 1 or value[1] + value[3] > 1):
            raise ValueError("roi [x, y, width, height] must have a size and lie inside the frame (fractions 0..1)")
        return value

    @field_validator("cameras")
    @classmethod
    def _camera_specs(cls, value: dict[str, CameraSettings]) -> dict[str, CameraSettings]:
        for spec in value:
            if not spec.startswith("camera:") or not spec.partition(":")[2]:
                raise ValueError(f"{spec!r} is not a camera device spec (e.g. 'camera:/dev/video0')")
        return value

    def driver_options(self) -> dict[str, Any]:
        """Keyword arguments for ``drivers.open_scanner`` (``cameras``: each camera's own settings)."""
        options = self.model_dump(exclude={"devices", "cameras"})
        options["cameras"] = dict(self.cameras)
        return options


class PaymentsSection(_Section):
    """Offline risk limits for stored-value payments (minor units / seconds; 0 = no limit)."""

    per_transaction: Annotated[int, Field(ge=0)] = 5_000
    """Largest stored-value payment taken while head office is unreachable (minor units)."""
    per_member_day: Annotated[int, Field(ge=0)] = 10_000
    """Stored value one member may pay offline on this till per local day (minor units)."""
    terminal_total: Annotated[int, Field(ge=0)] = 100_000
    """Offline stored-value payments on this till not yet acknowledged by head office (minor units)."""
    max_offline: Annotated[int, Field(ge=0)] = 24 * 3600
    """Seconds offline after which account payments are refused."""
    max_clock_age: Annotated[int, Field(ge=0)] = 7 * 24 * 3600
    """Seconds since the last successful sync (the clock check) after which offline payments are refused."""
    max_clock_offset: Annotated[int, Field(ge=0)] = 300
    """Seconds this till's clock may differ from head office's (as the last sync measured it) before offline
    payments are refused and expired-looking payment and member codes are named ``till_clock_wrong``; also how
    far it may read before its own last sync or the start of an outage (300 s when 0)."""
    spend_needs_proof: bool = True
    """Redeeming points needs the member's proof (a secure card tap, a payment code or a fresh member
    code), as paying from stored value always does. Off: points are spent on the POS's word that the
    member is present; head office must be started with --trust-pos too (a risk: docs/security.md)."""


class PrinterSection(_Section):
    """The printer in the middle: tillpoint offers the POS a printer and forwards every byte to the real
    one (docs/receipts.md). Off unless both ``listen`` and ``target`` are set; one without the other is refused."""

    listen: str = ""
    """Where the POS prints: "tcp:0.0.0.0:9100" (a network printer's raw port), "serial:/dev/ttyS1:19200"
    (the POS's serial printer port, through a null-modem cable or a virtual pair) or "device:/dev/g_printer0"
    (a USB printer gadget the POS is cabled to); empty: off."""
    target: str = ""
    """The real printer: "tcp:192.168.1.50:9100", "device:/dev/usb/lp0" (USB) or "serial:/dev/ttyS0:19200"."""
    pos_id: Annotated[str, Field(min_length=1, max_length=64)] = "POS-1"
    """The POS that prints here, as the journal names it beside each receipt."""
    hold: Annotated[float, Field(ge=0.0, le=2.0)] = 0.15
    """Seconds the bytes from a cut on may be held while the loyalty block is made; then they go out unchanged."""
    queue_chunks: Annotated[int, Field(ge=1, le=65536)] = 256
    """Chunks of the print stream the parser may fall behind by; beyond, that receipt's capture is abandoned."""
    receipt_gap: Annotated[float, Field(ge=0.0, le=3600.0)] = 10.0
    """For a printer without a cutter: seconds the POS prints nothing (status queries aside) after which the
    receipt in progress ends, as a cut would end it; not once the printer has cut on the connection; 0: off."""
    native_qr: bool = True
    """The printer has the QR commands (GS ( k); false: QR codes are sent as raster images (GS v 0)."""
    connect_timeout: Annotated[float, Field(gt=0, le=60)] = 5.0
    """Seconds to reach the printer for each POS connection before the POS's connection is reset."""
    probe_max: Annotated[float, Field(ge=0.5, le=300)] = 10.0
    """While the printer is unreachable tillpoint does not listen (the POS is refused, as by the printer) and
    probes it, first after 0.5 s, then doubling up to this many seconds; it listens again once it answers."""

    @field_validator("listen", "target")
    @classmethod
    def _spec(cls, value: str) -> str:
        kind, _, rest = value.partition(":")
        if value and (kind not in ("tcp", "serial", "device") or not rest):
            raise ValueError(f"{value!r} is not tcp:HOST:PORT, serial:PORT[:BAUD] or device:PATH")
        if kind == "tcp" and not rest.rpartition(":")[2].isdigit():
            raise ValueError(f"{value!r} has no port number")
        return value


class ReceiptsSection(_Section):
    """What is done with the receipts the printer in the middle captures (docs/receipts.md)."""

    templates: list[str] = Field(default_factory=list)
    """Receipt template files (TOML), tried in order; the first reads each receipt's code pages too."""
    attach: bool = False
    """Record a sale from each receipt a template reads: the cashier session's member, else anonymous."""
    enrich: bool = False
    """Print the loyalty block before the cut (needs attach); off until a template reads this POS's receipts."""
    keep_dir: str = ""
    """Where captured receipts are kept (unread ones flagged); empty: <data_dir>/receipts."""
    keep_days: Annotated[float, Field(ge=0, le=3650)] = 30.0
    """Days a kept receipt (read, or unread under unread/) is kept; older ones are deleted when tillpoint
    starts and once a day; 0: no age limit."""
    keep_max_mb: Annotated[float, Field(ge=0)] = 200.0
    """Largest total size of the kept receipts, in MB (10^6 bytes); beyond it the oldest are deleted first; 0: no
    cap."""
    title: Annotated[str, Field(max_length=64)] = "Loyalty"
    """The loyalty block's first line."""
    max_age_days: Annotated[float, Field(ge=0, le=3650)] = 7.0
    """Days after the time it prints (a template's time_format) a receipt may earn; an older one is refused
    (receipt_too_old), and the rows that stop a receipt earning twice are deleted 2 days after that; 0: no limit,
    nothing deleted."""


class Config(_Section):
    terminal: TerminalSection = TerminalSection()
    payments: PaymentsSection = PaymentsSection()
    security: SecuritySection = SecuritySection()
    reader: ReaderSection = ReaderSection()
    hq: HqSection = HqSection()
    door: DoorSection = DoorSection()
    checkin: CheckinSection = CheckinSection()
    api: ApiSection = ApiSection()
    sale: SaleSection = SaleSection()
    log: LogSection = LogSection()
    metrics: MetricsSection = MetricsSection()
    scanner: ScannerSection = ScannerSection()
    panel: PanelSection = PanelSection()
    hotkeys: HotkeysSection = HotkeysSection()
    printer: PrinterSection = PrinterSection()
    receipts: ReceiptsSection = ReceiptsSection()

    @property
    def data_dir(self) -> Path:
        """``terminal.data_dir``, else systemd's last state directory: the shipped unit lists the card key's
        directory, then the data's (``StateDirectory=tillpoint tillpoint/data``), so a file that leaves the key
        out finds the database, the token and the card key where the shipped config puts them."""
        if self.terminal.data_dir:
            return Path(self.terminal.data_dir)
        state = os.environ.get(ENV_STATE, "").split(":")[-1]
        return Path(state) if state else Path("var") / "tillpoint"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "terminal.db"

    @property
    def hq_token_path(self) -> Path:
        """Where the till keeps its head-office credential: ``hq.token_file``, else ``<data_dir>/hq.token``
        (enrolment and rotation write it there)."""
        return Path(self.hq.token_file) if self.hq.token_file else self.data_dir / "hq.token"

    @property
    def card_key_path(self) -> Path:
        if self.security.card_key_file:
            return Path(self.security.card_key_file)
        return self.data_dir.parent / "card-hash.key"

    @property
    def api_token_path(self) -> Path:
        return Path(self.security.api_token_file or self.data_dir / "api.token")

    @property
    def api_url_path(self) -> Path:
        """Where the running daemon writes the URL its local API listens on (the CLI's commands read it:
        ``demo --api-port`` or ``[api] port = 0`` put it elsewhere than ``[api] port``)."""
        return self.data_dir / "api.url"

    def local_api(self) -> tuple[str, str]:
        """Where this PC's commands reach the running daemon's local API: its base URL, and the Unix socket to
        reach it through when the API listens on its socket only (``[api] host`` empty; else ""). The URL is the
        one the daemon noted at start (``api_url_path``), else the config's ``[api]`` host and port."""
        path = self.api_url_path
        try:
            written = path.read_bytes().strip()
        except OSError:
            written = b""
        if written:
            return _noted_url(path, written), ""
        if not self.api.host and self.api.unix_socket:
            return "http://localhost", self.api.unix_socket
        host = f"[{self.api.host}]" if ":" in self.api.host else self.api.host
        return f"http://{host}:{self.api.port}", ""


def _noted_url(path: Path, written: bytes) -> str:
    """The URL the daemon noted in ``path`` (``local_api``); ``ApiUrlInvalid`` naming the file when it is not one
    (bytes that are not UTF-8, more than one line, no http scheme, host or port, a host not of the loopback)."""
    try:
        text = written.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiUrlInvalid(path, "not UTF-8 text") from exc
    if len(text) > 2048 or not text.isprintable() or " " in text:
        raise ApiUrlInvalid(path, "not one URL on one line")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ApiUrlInvalid(path, f"not a URL: {exc}") from exc
    if parts.scheme != "http" or not parts.hostname or not port:
        raise ApiUrlInvalid(path, "not an http:// address with a host and a port")
    if not _loopback(parts.hostname):  # the local API listens on loopback only: its token goes nowhere else
        raise ApiUrlInvalid(path, f"{parts.hostname!r} is not this PC's loopback")
    return text


@dataclass(frozen=True, slots=True)
class Held:
    """What a till's own files say about how it was set up, for ``check_held``."""

    terminal_id: str | None = None
    """The terminal its database last ran as (``None``: never ran)."""
    store_id: str | None = None
    """The store its database last ran for."""
    hq_store_id: str | None = None
    """The store head office enrolled it for (``None``: not enrolled with a code)."""
    credential: str = ""
    """Where its head-office credential is (``hq.token``, ``hq.enrol_code`` or the token file); ``""``: none."""
    synced: bool = False
    """Its database holds what a head office sent (a pinned root key, a pull cursor)."""


def credential_of(cfg: Config) -> str:
    """Where this till's head-office credential is: ``hq.token``, ``hq.enrol_code``, or its token file when that
    holds something; ``""``: none."""
    if cfg.hq.token:
        return "hq.token"
    if cfg.hq.enrol_code:
        return "hq.enrol_code"
    try:
        return str(cfg.hq_token_path) if cfg.hq_token_path.stat().st_size > 0 else ""
    except OSError:
        return ""


def held_by(cfg: Config, state: Callable[[str], str | None]) -> Held:
    """What the till holds, from its credential and ``state``: a key of its database's sync state, or None."""
    return Held(
        terminal_id=state("terminal_id"),
        store_id=state("store_id"),
        hq_store_id=state("hq_store_id"),
        credential=credential_of(cfg),
        synced=state("hq_root_key") is not None or state("cursor") is not None,
    )


def _left_out(cfg: Config, held: Held) -> list[tuple[str, str]]:
    """(key, why) for each key the file leaves out whose default contradicts what the till holds."""
    missing: list[tuple[str, str]] = []
    term, hq = cfg.terminal, cfg.hq
    if "id" not in term.model_fields_set and held.terminal_id not in (None, term.id):
        missing.append(("terminal.id", f"this till's database belongs to terminal {held.terminal_id}"))
    store = held.hq_store_id or held.store_id
    if "store_id" not in term.model_fields_set and store not in (None, term.store_id):
        missing.append(("terminal.store_id", f"this till's sales are for store {store}"))
    if "url" not in hq.model_fields_set and (held.credential or held.synced):
        why = f"its credential is in {held.credential}" if held.credential else "its database has synced with one"
        missing.append(("hq.url", f"this till belongs to a head office ({why})"))
    return missing


def check_held(cfg: Config, held: Held) -> None:
    """Refuse a config that would run this till on a default its own files contradict.

    A file cut short (a full disk, a copy interrupted) still parses: the keys it lost take their defaults, and a
    till would run as terminal T-001 of store S-001, or alone on http://127.0.0.1:8731, without a word. A key the
    file leaves out is ``config_incomplete`` when the till's database or credential says its default is wrong;
    a store other than the one head office enrolled the till for is ``store_mismatch``. Raises ``ConfigError``."""
    missing = _left_out(cfg, held)
    if missing:
        (key, why), *more = missing
        also = f" (also left out: {', '.join(k for k, _ in more)})" if more else ""
        default = cfg.model_dump()[key.split(".")[0]][key.split(".")[1]]
        raise ConfigError(
            key,
            f"set in the file: {why}, and the file does not say it, so the default {default!r} would be "
            f"used{also}. Is the file cut short? Restore it from the copy you installed",
            SetupCode.CONFIG_INCOMPLETE,
        )
    if held.hq_store_id is not None and held.hq_store_id != cfg.terminal.store_id:
        raise ConfigError(
            "terminal.store_id",
            f"{held.hq_store_id}, the store head office enrolled this till for (got {cfg.terminal.store_id!r}): "
            "head office holds every entry naming another store in quarantine (wrong_store)",
            SetupCode.STORE_MISMATCH,
        )


def _key_of(error: ErrorDetails, raw: dict[str, Any] | None = None) -> str:
    """The key as the file spells it: the error's location up to the value it reached. What follows a value
    (``literal['auto']``, ``constrained-int``) names the types of a union that refused it, not a key."""
    parts: list[str] = []
    node: Any = raw
    for part in error["loc"]:
        if raw is not None and not isinstance(node, dict | list):
            break
        parts.append(str(part))
        if isinstance(node, dict):
            node = node.get(str(part))
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return ".".join(parts)


def _union_reasons(errors: list[ErrorDetails], raw: dict[str, Any]) -> str:
    """The first error's words, with those of the union's other types for the same key ("Input should be
    'auto' or greater than 0")."""
    key = _key_of(errors[0], raw)
    said = [e["msg"].removeprefix("Value error, ") for e in errors if _key_of(e, raw) == key]
    first, *more = dict.fromkeys(said)
    return " or ".join([first, *(m.removeprefix("Input should be ") for m in more)])


def _door_apart(cfg: Config) -> Config:
    """A reader is the till's or the door's, never both: a tap is a sale's member or a check-in."""
    shared = sorted(set(cfg.reader.devices) & set(cfg.door.devices))
    if shared:
        raise ConfigError("door.devices", f"a reader that is not also in [reader] devices (got {shared[0]!r} in both)")
    return _printer_whole(_ca_file_there(_plain_http_here(_hq_named(cfg))))


def _printer_whole(cfg: Config) -> Config:
    """The printer in the middle needs both ends: the POS's (``listen``) and the printer's (``target``). One
    alone would run no relay, without a word, and the POS's receipts would go nowhere."""
    printer = cfg.printer
    if printer.listen and not printer.target:
        raise ConfigError(
            "printer.target",
            f"the real printer (tcp:HOST:PORT, device:PATH, serial:PORT) for listen = {printer.listen!r}",
        )
    if printer.target and not printer.listen:
        raise ConfigError(
            "printer.listen",
            f"where the POS prints (tcp:HOST:PORT, serial:PORT, device:PATH) for target = {printer.target!r}",
        )
    return cfg


def _hq_named(cfg: Config) -> Config:
    """A head office under a name that never resolves (``.invalid``, RFC 6761) is the shipped file's placeholder:
    the package enables the till at install, so a start before the file is edited (a reboot) would run terminal
    T-001 syncing with nowhere, on a card-hash key of its own."""
    where = (urlsplit(cfg.hq.url).hostname or "").rstrip(".")
    if where == "invalid" or where.endswith(".invalid"):
        raise ConfigError(
            "hq.url",
            f"your head office's address, not the placeholder of the installed file (got {cfg.hq.url!r}: an "
            "'.invalid' name never resolves); set terminal.id, terminal.store_id and hq.url, then start the till",
        )
    return cfg


def _ca_file_there(cfg: Config) -> Config:
    """A CA bundle named must be there to read (else every request to head office, and doctor, fail on it)."""
    if cfg.hq.ca_file and not os.access(cfg.hq.ca_file, os.R_OK):
        raise ConfigError("hq.ca_file", f"a readable CA bundle file (got {cfg.hq.ca_file!r}: missing or unreadable)")
    if cfg.hq.ca_file:
        try:  # what the sync client does with it at start: a file of no certificate failed there, with a traceback
            ssl.create_default_context(cafile=cfg.hq.ca_file)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ConfigError(
                "hq.ca_file", f"a CA bundle of PEM certificates (got {cfg.hq.ca_file!r}: {exc.args[-1]})"
            ) from exc
    return cfg


def _plain_http_here(cfg: Config) -> Config:
    """Plain http to head office only on this machine: over a network anyone on it could read the till's
    credential and change what head office sends (a replayed page unblocks a blocked card)."""
    where = urlsplit(cfg.hq.url).hostname or ""
    if cfg.hq.url.startswith("http://") and not cfg.hq.allow_plain_http and not _loopback(where):
        raise ConfigError(
            "hq.url",
            "https, or plain http to this machine only (127.0.0.1, ::1, localhost); "
            f"allow_plain_http = true on a network you trust (got {cfg.hq.url!r})",
        )
    return cfg


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate(raw: dict[str, Any]) -> Config:
    """Check a parsed TOML document; the first bad value becomes a ConfigError naming its key."""
    try:
        return _door_apart(Config.model_validate(raw))
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        expected = _union_reasons(errors, raw)
        if first["type"] == "extra_forbidden":
            expected = "unknown key"
        raise ConfigError(_key_of(first, raw), f"{expected} (got {first.get('input')!r})") from exc


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the config from ``path``, else $TILLPOINT_CONFIG, else the built-in defaults."""
    chosen = path or os.environ.get(ENV_CONFIG)
    if not chosen:
        return Config()
    try:
        text = Path(chosen).read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except FileNotFoundError as exc:
        raise ConfigError("--config", f"file {str(chosen)!r} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"valid TOML ({exc})") from exc
    except UnicodeDecodeError as exc:  # an editor saved it as Latin-1 or UTF-16
        raise ConfigError("--config", f"a file in UTF-8 ({chosen}: {exc.reason} at byte {exc.start})") from exc
    except OSError as exc:  # not readable by this user, a directory, an I/O error
        raise ConfigError("--config", f"a readable file ({exc})") from exc
    if not raw:  # emptied (a save cut by a power cut): the defaults would start another till on a new database
        raise ConfigError("--config", f"a config with its settings ({chosen} is empty)", SetupCode.CONFIG_INCOMPLETE)
    cut = number_cut_short(text)
    if cut is not None:
        raise ConfigError(
            cut,
            f"a number on a whole line: {chosen} ends in the middle of that line, so its number may have lost "
            "digits (a full disk, a copy interrupted). Restore the file from the copy you installed, or end the "
            "line with a newline if the number is whole",
            SetupCode.CONFIG_INCOMPLETE,
        )
    return validate(raw)


_ASSIGNED_NUMBER = re.compile(r"^\s*([A-Za-z0-9_.\-\"' ]+?)\s*=\s*[+-]?[0-9][0-9_]*(\.[0-9_]*)?([eE][+-]?[0-9_]+)?\s*$")
_TABLE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]")


def number_cut_short(text: str) -> str | None:
    """The key whose number the file may have cut short: a file cut in the middle of its last line still parses when
    that line gives a number (``port = 8731`` cut to ``port = 87``), and would run on a value it never said. Any other
    value cut short is not TOML (a string, an array, a table left open; ``true`` and ``false`` cut). A file ending with
    a newline, or whose last line is a comment, a table or a string, is whole as far as a cut can tell: None."""
    if not text or text.endswith("\n"):
        return None
    lines = text.split("\n")
    assigned = _ASSIGNED_NUMBER.match(lines[-1])
    if assigned is None:
        return None
    table = next((t.group(1) for line in reversed(lines[:-1]) if (t := _TABLE.match(line))), None)
    key = assigned.group(1).replace('"', "").replace("'", "").replace(" ", "")
    return f"{table.replace(' ', '')}.{key}" if table else key
