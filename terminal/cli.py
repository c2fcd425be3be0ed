"""The till's own `tillpoint ...` commands: a thin shell over the daemon, the store, the local API, and the
member-app simulator. ``tillpoint.cli`` adds head office's ``hq`` group and ``demo`` to these; this package
never imports head office."""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import quote

import typer
from rich.markup import escape
from typer.core import TyperGroup

from terminal import config as config_mod
from terminal import logs
from terminal.config import Config, credential_of
from terminal.console import JsonOpt, make_console, port_busy, show_json, table
from terminal.errors import ApiUrlInvalid, ConfigError, ConfigFileError, PortBusy, TerminalError
from terminal.money import MAX_AMOUNT, Currency

if TYPE_CHECKING:  # imported where used, so that a quick command does not load them
    import httpx
    from typer._click import Context

    from sync.client import SyncClient
    from sync.memberapp import MemberApp
    from terminal.store import Store

commands = typer.Typer()
"""The till's commands, without the group's options: ``app`` below and ``tillpoint.cli`` both add them."""


def _show_version(value: bool) -> None:
    if value:
        from sync.protocol import PROTOCOL_VERSION
        from terminal import __version__

        print(f"tillpoint {__version__} (protocol {PROTOCOL_VERSION})")
        raise typer.Exit()


class TillGroup(TyperGroup):
    """The commands' group: an argument that is not text (bytes the locale could not decode, as a file name of
    another encoding pasted in) is a usage error (exit 2) before any command runs; it could be neither sent to the
    daemon nor printed (each was a traceback)."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        for arg in args:
            try:
                arg.encode("utf-8")
            except UnicodeEncodeError as exc:
                shown = arg.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")[:60]
                raise typer.BadParameter(f"argument_not_text: {shown!r} is not UTF-8 text") from exc
        return super().parse_args(ctx, args)


def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and the protocol, and exit."
        ),
    ] = False,
) -> None:
    """tillpoint: loyalty, coupons and member payments for shop tills."""


console = make_console()
MAX_UNITS = 10_000
"""Units of one line a refund returns at most (``terminal.service.MAX_UNITS``, not imported: a quick command)."""
err_console = make_console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config (else $TILLPOINT_CONFIG).")]


def _load(path: Path | None, **overrides: dict[str, Any]) -> Config:
    cfg = config_mod.load(path)
    if overrides:
        raw = cfg.model_dump(exclude_unset=True)  # what the file left out stays left out (config.check_held)
        for section, values in overrides.items():
            raw.setdefault(section, {}).update(values)
        cfg = config_mod.validate(raw)
    return cfg


def cli_config(path: Path | None, **overrides: dict[str, Any]) -> Config:
    try:
        return _load(path, **overrides)
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc


def _signal_waiter(
    on_hup: Callable[[], Any] | None = None, halted: threading.Event | None = None
) -> Callable[[], None]:
    """Take SIGINT, SIGTERM (and SIGHUP with ``on_hup``) from now on, and return the wait: it blocks until SIGINT
    or SIGTERM, or until ``halted`` is set, and runs ``on_hup`` for each SIGHUP (there, not in the handler). Taken
    before the daemon starts, so that a stop sent while it starts or just after its READY=1 (systemd's stop or
    restart) ends it through its own stop once it has started, not by the signal's default death.

    The handler takes no lock: Python runs a handler between two steps of whatever the main thread does, a second
    signal's handler inside the first's. One that set a ``threading.Event`` waited there for the lock it held
    itself (SIGTERM twice while the daemon started: it hung until killed). It notes the signal in a deque and
    writes a byte to a pipe, which the wait selects on."""
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    received: deque[int] = deque()

    def note(sig: int, _frame: Any) -> None:
        received.append(sig)
        try:
            os.write(wake_write, b"\0")
        except BlockingIOError:  # the pipe is full of wakes not yet read: the wait wakes anyway
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, *((signal.SIGHUP,) if on_hup else ())):
        signal.signal(sig, note)

    def wait() -> None:
        while True:
            select.select([wake_read], [], [], 0.5)  # ``halted`` is looked at twice a second
            try:
                while os.read(wake_read, 4096):
                    pass
            except BlockingIOError:
                pass
            if halted is not None and halted.is_set():
                return
            while received:
                if received.popleft() != signal.SIGHUP:
                    return
                assert on_hup is not None
                on_hup()

    return wait


def _print_event(event: dict[str, Any]) -> None:
    """One line of the console's event log. Every value is printed as text: a member's name, a POS's sku in a
    refusal or a reader's detail holding "[/x]" is not console markup (it raised, and the sale's answer with it)."""
    kind = event["type"]
    e = {k: escape(str(v)) for k, v in event.items()}
    if kind == "member":
        console.print(
            f"[cyan]tap[/] {e['reader']}: [bold]{e['name']}[/] ({e['member_id']}, {e['tier']}) {e['points']} pt"
        )
    elif kind in ("sale", "void", "refund"):
        member = (
            f"{e['member_id']}: points {event['points_delta']:+d} -> balance {e['points_balance']}"
            if event.get("member_id")
            else "no member"
        )
        console.print(f"[green]{kind}[/] #{e['seq']} {e['txn_id']} total {e['total']}; {member}")
    elif kind == "rejected":
        console.print(f"[red]rejected[/] {e['code']}: {e['message']}")
    elif kind == "sync":
        state = "ok" if event["ok"] else f"[yellow]offline[/] ({e['error']})"
        console.print(f"[magenta]sync[/] {state} {e.get('pushed', '')} {e.get('pulled', '')}".rstrip())
    elif kind == "reader":
        console.print(f"[blue]reader[/] {e['reader']} {e['kind']} {e.get('detail', '')}")


def run_daemon(
    cfg: Config,
    hq_url_note: str = "",
    reload: Callable[[], Config] | None = None,
    events: bool = True,
    api_port_option: str = "[api] port in the config file",
) -> None:
    from terminal.daemon import Daemon

    logs.setup(cfg.log.level, cfg.log.format)
    daemon = Daemon(cfg)
    if events:
        daemon.subscribers.append(_print_event)
    wait = _signal_waiter(None if reload is None else lambda: daemon.reload(reload), daemon.halted)
    try:
        daemon.start()
    except PortBusy as exc:
        daemon.stop()
        port_busy(exc, "the local API", api_port_option)
    except ConfigFileError as exc:  # no restart mends it: exit 2, as a config that does not validate
        daemon.stop()
        console.print(f"[red]configuration error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from exc
    except TerminalError as exc:
        daemon.stop()
        console.print(f"[red]cannot start:[/] {escape(str(exc))}", soft_wrap=True)  # one line in a log, however narrow
        raise typer.Exit(1) from exc
    api = "off" if daemon.api_server is None else daemon.api_server.url or f"on the Unix socket {cfg.api.unix_socket}"
    console.print(f"tillpoint terminal {cfg.terminal.id} running; local API {api}{hq_url_note}. Ctrl-C stops.")
    try:
        wait()
    finally:
        daemon.stop()
    if daemon.halt_reason is not None:  # exit status 1: systemd starts it again (Restart=on-failure)
        console.print(f"[red]stopped:[/] {escape(daemon.halt_reason)}", soft_wrap=True)
        raise typer.Exit(1)


@commands.command()
def run(
    config: ConfigOpt = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error (else \\[log] level).")] = None,
    log_format: Annotated[str | None, typer.Option(help="auto, journal, json or text (else \\[log] format).")] = None,
) -> None:
    """Run the daemon from its config (what the systemd service starts). SIGHUP reloads the config."""
    flags = {k: v for k, v in (("level", log_level), ("format", log_format)) if v is not None}
    overrides: dict[str, dict[str, Any]] = {"log": flags} if flags else {}
    # Under systemd stdout is the journal too: the cashier-style event lines (with member names) stay off.
    run_daemon(
        cli_config(config, **overrides),
        reload=lambda: _load(config, **overrides),
        events=not logs.stderr_is_journal(sys.stdout),
    )


@commands.command()
def doctor(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds allowed for each network check.", min=0.1, max=600)] = 5.0,
) -> None:
    """Check this till: config, pcscd and readers, cameras and scanners, the printer in the middle, database, disk,
    head office, clock.
    Exit code 0: all good; 1: warnings; 2: something is broken."""
    from terminal import doctor as doctor_mod

    checks = doctor_mod.run_checks(config, timeout=timeout)
    if as_json:
        print(json.dumps([c.as_dict() for c in checks], indent=2))
    else:
        print("\n".join(doctor_mod.render(checks)))
    raise typer.Exit(doctor_mod.exit_code(checks))


def _api_url(cfg: Config) -> str:
    """The running daemon's local API: the URL it wrote at start, else the config's ``[api]``."""
    return cfg.local_api()[0]


def _api_request(cfg: Config, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to the running daemon's local API, over TCP or, when it has no TCP listener, its Unix socket."""
    from terminal.localhttp import local_client

    url, socket = cfg.local_api()
    with local_client(socket) as client:
        return client.request(method, f"{url}{path}", **kwargs)


def _request_id(given: str | None) -> str:
    """``--request-id`` as given, checked as the local API takes it (1 to 64 characters, no control character);
    when not given, a new one for this run (``_new_request_id``): every command that records something sends one."""
    if given is None:
        return _new_request_id()
    if not 1 <= len(given) <= 64 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in given):
        raise typer.BadParameter("1 to 64 characters, none a control character (the id a retry sends again)")
    return given


RequestIdOpt = Annotated[
    str | None,
    typer.Option(
        "--request-id",
        callback=_request_id,
        help="The id the till records this under (default: a new one for each run). After a timeout or a lost "
        "answer, run the command again with the same --request-id: the answer recorded under it comes back and "
        "nothing is done twice.",
    ),
]


def _new_request_id() -> str:
    """The request id of one run of a command that records something (a new one each run)."""
    return uuid.uuid4().hex


def _retry_hint(request_id: str | None) -> str:
    """What the cashier does when the answer of a request that may have been recorded was lost."""
    if request_id is None:
        return ""
    return (
        f"; it may have been recorded: run the same command again with --request-id {request_id} "
        "(what was recorded under it is answered, nothing is done twice)"
    )


def _txn_id(value: str) -> str:
    """A TXN argument: a transaction id is 1 to 64 characters (a till's are 36); a longer text names none."""
    if not 1 <= len(value) <= 64:
        raise typer.BadParameter(f"a transaction id of 1 to 64 characters, as its receipt shows it (got {len(value)})")
    return value


TxnArg = Annotated[str, typer.Argument(callback=_txn_id, help="The transaction's id, as its receipt shows it.")]


def _segment(value: str) -> str:
    """``value`` (a txn id as typed) as one segment of an API path: a '/', '?' or '#' in it cannot make the path
    another route's (``refund 'TXN/void?'`` was a void of the whole sale); such an id names nothing (404)."""
    return quote(value, safe="")


def _api(cfg: Config, method: str, path: str, body: dict[str, Any] | None = None, request_id: str | None = None) -> Any:
    """One call to the running daemon's local API (always a JSON body: the API takes no other); a refusal
    is printed with its stable code and ends the command with exit status 1. ``request_id``: sent in the body,
    and named in what is printed when the answer is lost (no answer in time, a daemon killed or failing), so the
    cashier runs the command again with it and gets the recorded answer instead of a second sale or credit."""
    import httpx  # here: head office's commands, which share this program, never call the daemon

    try:
        token = cfg.api_token_path.read_text().strip() if cfg.api_token_path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:  # another user's (0600), a directory: never a traceback
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _said(
            "no_api_token",
            f"the local API token at {cfg.api_token_path} cannot be read ({why}): run the command as the till's "
            "service user (or root)",
        )
        raise typer.Exit(1) from exc
    if not token:  # the commands read the daemon's token beside its data: without the till's config, none is found
        console.print(
            f"[red]no_api_token[/]: no local API token at {escape(str(cfg.api_token_path))}: pass the till's config "
            "(--config /etc/tillpoint/tillpoint.toml, or $TILLPOINT_CONFIG), or start `tillpoint run` first"
        )
        raise typer.Exit(1)
    if request_id is not None:
        body = {**(body or {}), "request_id": request_id}
    try:
        url, socket = cfg.local_api()
    except ApiUrlInvalid as exc:  # a note cut short by a crash or edited by hand: nothing was sent
        _said(exc.code, f"{exc}; nothing was sent")
        raise typer.Exit(1) from exc
    where = f"{url}{path}" + (f" (Unix socket {socket})" if socket else "")
    try:
        response = _api_request(
            cfg,
            method,
            path,
            json={} if body is None else body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing was sent
        _said(
            "daemon_unreachable",
            f"no daemon answers at {where} ({exc.__class__.__name__}); is `tillpoint run` or `demo` up? "
            "Nothing was sent",
        )
        raise typer.Exit(1) from exc
    except httpx.TransportError as exc:  # sent, and no answer came back: it may have been done
        _said("no_answer", f"no answer from the daemon at {where} ({exc.__class__.__name__}){_retry_hint(request_id)}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        _said("interrupted", f"stopped before the daemon's answer{_retry_hint(request_id)}")
        raise typer.Exit(130) from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code >= 500:
        said = f"{answer['code']}: {answer['message']}" if _refusal(answer) else "internal: no reason given"
        _said("daemon_failed", f"the daemon failed ({response.status_code} {said}){_retry_hint(request_id)}")
        raise typer.Exit(1)
    if response.status_code >= 400:
        said = f"{answer['code']}: {answer['message']}" if _refusal(answer) else f"http_error: {_first_line(response)}"
        console.print(f"[red]refused[/] {response.status_code} {escape(said)}", soft_wrap=True)
        # 422: the request as the command was given is not one the API takes (a 10 kB sku, a member id no member
        # has the length of): a usage error, exit 2; a refusal of what it asked (409, 404 ...) is exit 1
        raise typer.Exit(2 if response.status_code == 422 else 1)
    if answer is None:
        _said("bad_answer", f"{where} answered {response.status_code} with no JSON: is it the till's local API?")
        raise typer.Exit(1)
    return answer


def _refusal(answer: Any) -> bool:
    return isinstance(answer, dict) and isinstance(answer.get("code"), str) and "message" in answer


def _first_line(response: httpx.Response) -> str:
    return (response.text.strip().splitlines() or [response.reason_phrase])[0][:200]


def _said(code: str, message: str) -> None:
    """A command's failure in one line, its stable code first (never console markup: the message is text)."""
    console.print(f"[red]{code}[/]: {escape(message)}", soft_wrap=True)


def _currency(cfg: Config) -> Currency:
    return Currency(cfg.terminal.currency, cfg.terminal.currency_exponent)


def _receipt_lines(receipt: dict[str, Any], money: Currency) -> list[str]:
    """A receipt as the cashier reads it: the sale's subtotal, each discount, the points and the stored
    value paid and left, and what the POS still collects (a void or refund: what was given back)."""
    member = receipt["member_id"] or "none (anonymous)"
    lines = [f"{receipt['kind']} {receipt['txn_id']} (#{receipt['seq']}), member {member}"]
    b = receipt.get("breakdown")
    if b is None:
        lines.append(_row("total", money.format(receipt["total"])))
        for gift in receipt.get("gift_refunds") or ():  # a return: what went back onto the cards, not by the POS
            lines.append(_row(f"back onto gift card {gift['card_id']}", money.format(gift["amount"])))
        if receipt.get("voucher_kept"):  # a return: the vouchers' part, never paid out
            lines.append(_row("kept by the vouchers (used)", money.format(receipt["voucher_kept"])))
        if receipt["member_id"]:
            lines.append(_row("points", f"{receipt['points_delta']:+d} pt"))
    else:
        lines.append(_row("subtotal", money.format(b["subtotal"])))
        lines += [_row(f"discount {d['source']}: {d['text']}", money.format(-d["amount"])) for d in b["discounts"]]
        if b["points_redeemed"]:
            lines.append(_row(f"points paid ({b['points_redeemed']} pt)", money.format(-b["points_value"])))
        if b["stored_value"] or b["stored_value_balance"]:  # a member with an account
            lines.append(_row("stored value paid", money.format(-b["stored_value"])))
            lines.append(_row("stored value left", money.format(b["stored_value_balance"])))
        lines.append(_row("due at the POS", money.format(b["pos_due"])))
        if receipt["member_id"]:
            lines.append(_row("points earned", f"+{b['points_earned']} pt"))
            if b["points_redeemed"]:
                lines.append(_row("points redeemed", f"-{b['points_redeemed']} pt"))
    if receipt["member_id"]:
        lines.append(_row("points balance", f"{receipt['points_balance']} pt"))
    lines += [f"  coupon {cid} not used: {code}" for cid, code in receipt.get("refused") or ()]
    return lines


def _quote_lines(quote: dict[str, Any], money: Currency) -> list[str]:
    """A quote: the same lines as a receipt (nothing is recorded), why each number is what it is, and
    the coupons refused with their codes."""
    lines = [
        f"quote, member {quote['member_id'] or 'none (anonymous)'}",
        _row("subtotal", money.format(quote["total"])),
    ]
    for x in quote["explain"]:
        if x["kind"] == "discount" and x["amount"]:
            lines.append(_row(f"discount {x['source']}: {x['text']}", money.format(-x["amount"])))
    if quote["points_redeemed"]:
        lines.append(_row(f"points paid ({quote['points_redeemed']} pt)", money.format(-quote["redeem_value"])))
    lines.append(_row("to pay", money.format(quote["payable"])))
    lines.append(_row("points earned", f"+{quote['points_earned']} pt"))
    lines += [f"  because {x['source']}: {x['text']} ({x['points']:+d} pt)" for x in quote["explain"] if x["points"]]
    lines += [f"  coupon {cid} refused: {code}" for cid, code in quote["refused"]]
    return lines


def _row(label: str, value: str) -> str:
    return f"  {label:<36} {value:>16}"


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        console.print(line, markup=False, highlight=False)


@commands.command()
def tap(uid: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Tap a simulated card (hex UID) on the running daemon's simulated reader."""
    answer = _api(cli_config(config), "POST", "/v1/sim/tap", {"uid": uid})
    if as_json:
        show_json({**answer, "uid": uid})
    else:
        console.print(f"tapped {uid}")


@commands.command("checkin-code")
def checkin_code(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The running till's check-in code for this 30-second step: the link members' phones open, and its QR."""
    from terminal import qrcodes

    shown = _api(cli_config(config), "GET", "/v1/checkin/code")
    if as_json:
        show_json({k: shown[k] for k in ("code", "link", "step", "renew_in")})
        return
    console.print(qrcodes.terminal_text(shown["link"]), markup=False, highlight=False)
    console.print(shown["link"], markup=False, highlight=False, soft_wrap=True)  # whole, to copy
    console.print(f"renewed in {shown['renew_in']} s (a code is accepted for 30 to 60 s)", markup=False)


@commands.command()
def scan(text: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Hold a code (member, coupon, payment code ...) up to the running daemon's simulated scanner; print
    what the code was (never a payment code's text) and what happened. Exit status 1 when refused."""
    report = _api(cli_config(config), "POST", "/v1/sim/scan", {"text": text})
    if as_json:
        show_json(report)
    else:
        _print_lines([f"scanned: {report.get('what', report.get('kind', '?'))}", f"  {_scan_outcome(report)}"])
    if report.get("result") == "refused":
        raise typer.Exit(1)


def _scan_outcome(report: dict[str, Any]) -> str:
    result = report.get("result")
    if result == "member_identified":
        m = report["member"]
        return f"member identified: {m['name']} ({m['member_id']}, {m['tier']}, {m['points']} pt)"
    if result == "coupon_added":
        error = report.get("error")
        return f"coupon {report['coupon_id']} added" + (
            f", not usable in this sale: {error['code']}: {error['message']}" if error else ""
        )
    if result == "paid":
        receipt = report.get("receipt") or {}
        return f"payment code accepted: sale {receipt.get('txn_id')} recorded"
    if result == "voucher_redeemed":
        v = report["voucher"]
        what = f"one {v['sku']}, up to {v['value']}" if v["voucher_kind"] == "product" else str(v["value"])
        return f"voucher {v['voucher_id']} redeemed: {what} off the sale ({v['txn_id']})"
    if result == "refused":
        return f"refused {report['code']}: {report['message']}"
    return str(result)


@commands.command()
def sale(
    amount: Annotated[int, typer.Argument(help="Total in minor units.", min=0, max=MAX_AMOUNT)],
    member: Annotated[str | None, typer.Option(help="The member's id: the sale is rung on this member.")] = None,
    tapped: Annotated[
        bool,
        typer.Option("--tapped", help="Ring it on the member of the last card tap (refused when no card was tapped)."),
    ] = False,
    sku: str = "MISC",
    category: str = "",
    coupon: Annotated[list[str] | None, typer.Option(help="Coupon id presented (repeatable).")] = None,
    redeem: Annotated[
        int, typer.Option(help="Points to pay with; -1: as many as allowed.", min=-1, max=MAX_AMOUNT)
    ] = 0,
    stored_value: Annotated[
        int | None, typer.Option(help="Stored value to pay with (minor units).", min=0, max=MAX_AMOUNT)
    ] = 0,
    payment_code: Annotated[str | None, typer.Option(help="The member's one-time payment code (TPP1:...).")] = None,
    reward: Annotated[
        list[str] | None, typer.Option(help="A reward of the catalogue bought with points (repeatable).")
    ] = None,
    quote_only: Annotated[bool, typer.Option("--quote", help="Price it only; record nothing.")] = False,
    request_id: RequestIdOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ring a one-line sale through the running daemon (or --quote it: coupons, points, explanation) and
    print its receipt. With neither --member nor --tapped the sale is anonymous: a tap never picks the member."""
    body: dict[str, Any] = {
        "member_id": member,
        "use_identified": tapped,
        "lines": [{"sku": sku, "quantity": 1, "unit_price": amount, "category": category}],
        "coupons": coupon or [],
        "redeem": redeem,
        "rewards": reward or [],
    }
    if amount == 0 and reward:  # only rewards: no line of goods
        body["lines"] = []
    body["payment_code"] = payment_code  # a quote reads it as the member's proof; a sale uses it up
    if not quote_only:
        body["stored_value"] = stored_value
    cfg = cli_config(config)
    if quote_only:
        answer = _api(cfg, "POST", "/v1/quote", body)
    else:
        answer = _api(cfg, "POST", "/v1/sales", body, request_id=request_id)
    if as_json:
        show_json(answer)
    else:
        _print_lines((_quote_lines if quote_only else _receipt_lines)(answer, _currency(cfg)))


@commands.command()
def refund(
    txn_id: TxnArg,
    line: Annotated[list[str], typer.Option(help="LINE=UNITS returned (0-based line index), repeatable.")],
    request_id: RequestIdOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Refund units of a sale through the running daemon."""
    try:
        lines = {int(k): int(v) for k, v in (item.split("=", 1) for item in line)}
    except ValueError as exc:
        console.print("[red]--line takes LINE=UNITS, e.g. --line 0=1[/]")
        raise typer.Exit(2) from exc
    if any(index < 0 or not 1 <= units <= MAX_UNITS for index, units in lines.items()):
        console.print(f"[red]--line takes LINE=UNITS: a line from 0, 1 to {MAX_UNITS} units, e.g. --line 0=1[/]")
        raise typer.Exit(2)
    cfg = cli_config(config)
    answer = _api(
        cfg,
        "POST",
        f"/v1/sales/{_segment(txn_id)}/refund",
        {"lines": lines},
        request_id=request_id,
    )
    if as_json:
        show_json(answer)
    else:
        _print_lines(_receipt_lines(answer, _currency(cfg)))


@commands.command()
def topup(
    amount: Annotated[int, typer.Argument(help="What the POS took, in minor units.", min=1, max=MAX_AMOUNT)],
    member: Annotated[str | None, typer.Option(help="The member's id: the money goes to their stored value.")] = None,
    tapped: Annotated[bool, typer.Option("--tapped", help="Top up the member of the last card tap.")] = False,
    request_id: RequestIdOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sell stored value through the running daemon: the member's balance rises by AMOUNT, within the
    limits head office set for this till (docs/stored-value.md)."""
    cfg = cli_config(config)
    answer = _api(
        cfg,
        "POST",
        "/v1/topups",
        {"member_id": member, "use_identified": tapped, "amount": amount},
        request_id=request_id,
    )
    _show_topup(answer, cfg, as_json)


@commands.command("void-topup")
def void_topup(
    txn_id: TxnArg, request_id: RequestIdOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False
) -> None:
    """Void a top-up of this till (its business day only, while the member's balance still holds it)."""
    cfg = cli_config(config)
    path = f"/v1/topups/{_segment(txn_id)}/void"
    _show_topup(_api(cfg, "POST", path, request_id=request_id), cfg, as_json)


def _show_topup(answer: dict[str, Any], cfg: Config, as_json: bool) -> None:
    if as_json:
        show_json(answer)
        return
    money = _currency(cfg)
    _print_lines(
        [
            f"{answer['kind']} {answer['txn_id']} (#{answer['seq']}), member {answer['member_id']}",
            _row("amount", money.format(answer["total"])),
            _row("stored value now", money.format(answer["stored_value"] or 0)),
        ]
    )


@commands.command("config-reference")
def config_reference(as_json: JsonOpt = False) -> None:
    """Print every configuration key with its default and meaning (Markdown)."""
    from terminal.config_doc import entries, reference

    if as_json:
        show_json(entries())
    else:
        print(reference())


@commands.command()
def pair(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Show a one-time pairing code for the cashier panel or a POS (valid for a short while)."""
    cfg = cli_config(config)
    answer = _api(cfg, "POST", "/v1/pair/code", {})
    code = answer.get("code", answer)
    panel = f"{_api_url(cfg)}/panel/#pair={code}"
    if as_json:
        show_json({**answer, "panel": panel})
        return
    console.print(f"pairing code: [bold]{code}[/]")
    console.print(f"panel: {panel}")


@commands.command()
def void(txn_id: TxnArg, request_id: RequestIdOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Void a sale of this till through the running daemon."""
    cfg = cli_config(config)
    answer = _api(cfg, "POST", f"/v1/sales/{_segment(txn_id)}/void", request_id=request_id)
    if as_json:
        show_json(answer)
    else:
        _print_lines(_receipt_lines(answer, _currency(cfg)))


@commands.command()
def status(config: ConfigOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Pending journal entries, last successful sync and offline time; from a running daemon also its readers,
    printer relay, kept receipts and sync errors."""
    from terminal.daemon import store_status
    from terminal.store import Store

    cfg = cli_config(config)
    if not cfg.db_path.exists():
        console.print(f"no terminal database at {cfg.db_path} yet: start `tillpoint run` or `tillpoint demo` first")
        raise typer.Exit(1)
    store = Store.open(cfg.db_path)
    info = store_status(store)
    store.close()
    live = _live_status(cfg)
    if live is None:
        info["readers"] = "daemon not running"
    else:  # what only the running daemon knows: its readers, the printer relay, the kept receipts, sync errors
        info |= live
    if as_json:
        print(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        console.print(f"{key:>14}: {escape(str(value))}")


def _no_credential() -> NoReturn:
    console.print("[red]no head-office credential:[/] set hq.token, hq.token_file or hq.enrol_code")
    raise typer.Exit(1)


def _sync_client(cfg: Config, store: Store) -> SyncClient | None:
    """A head-office client for one-off commands; enrols first when only an enrolment code is set."""
    from sync.client import SyncClient, SyncError, tls_verify, write_token_file
    from terminal.config import check_held, held_by
    from terminal.daemon import enrol_terminal, hq_token, hq_token_path

    try:
        check_held(cfg, held_by(cfg, store.state))
        token = hq_token(cfg)  # a token file that cannot be read is a configuration error, not a traceback
    except ConfigError as exc:
        store.close()
        console.print(f"[red]configuration error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from exc
    verify = tls_verify(cfg.hq.ca_file)
    if not token and cfg.hq.enrol_code:
        try:
            token = enrol_terminal(cfg, store, verify)
        except (SyncError, ConfigError) as exc:
            console.print(f"[red]enrolment failed:[/] {escape(str(exc))}")
            raise typer.Exit(1) from exc
    if not token:
        return None
    path = hq_token_path(cfg)
    return SyncClient(
        store,
        cfg.terminal.id,
        cfg.hq.url,
        token,
        timeout=cfg.hq.timeout,
        verify=verify,
        batch_size=cfg.hq.batch_size,
        end_of_day=cfg.hq.end_of_day,
        save_token=None if cfg.hq.token else (lambda new: write_token_file(path, new)),
    )


def _open_till(cfg: Config) -> Store:
    from terminal.store import Store

    if not cfg.db_path.exists():
        console.print(f"no terminal database at {cfg.db_path} yet: start `tillpoint run` or `tillpoint demo` first")
        raise typer.Exit(1)
    return Store.open(cfg.db_path)


@commands.command("enrol")
def enrol_cmd(
    code: Annotated[
        str, typer.Argument(help="The one-time code from `tillpoint hq enrol-code TERMINAL` at head office.")
    ],
    config: ConfigOpt = None,
) -> None:
    """Redeem an enrolment code for this till's head-office credential and write it to the token file. A till
    whose credential head office revoked comes back this way: a running daemon takes the new credential up at
    head office's next refusal of the old one, with no restart."""
    from sync.client import EnrolCodeMalformed, SyncError, tls_verify
    from terminal.daemon import enrol_terminal
    from terminal.store import Store

    cfg = cli_config(config)
    if cfg.hq.token:
        console.print("[red]hq.token is set in the config:[/] the credential lives there, not in a token file")
        raise typer.Exit(2)
    if not cfg.hq.url:
        console.print("[red]no head office:[/] set hq.url in the config first")
        raise typer.Exit(2)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store.open(cfg.db_path)
    try:
        enrol_terminal(cfg, store, tls_verify(cfg.hq.ca_file), code=code)
    except (SyncError, ConfigError) as exc:
        console.print(f"[red]enrolment failed:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2 if isinstance(exc, EnrolCodeMalformed) else 1) from exc  # a code mistyped: a usage error
    finally:
        store.close()
    console.print(f"enrolled as {cfg.terminal.id} of store {cfg.terminal.store_id}; credential in {cfg.hq_token_path}")


@commands.command("sync")
def sync_cmd(
    config: ConfigOpt = None,
    now: Annotated[bool, typer.Option("--now", help="Sync now: push, pull, report finished days.")] = False,
    rotate: Annotated[bool, typer.Option(help="Also replace this till's head-office credential.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Sync with head office now. A new till first loads head office's snapshot, with a progress bar
    (on stderr with --json)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from sync.client import PUSH_HELD, SyncError, held_message

    if not now:
        console.print("say --now to sync at once (the daemon syncs by itself every hq.push_interval)")
        raise typer.Exit(2)
    cfg = cli_config(config)
    if not credential_of(cfg):  # refused before a database is made: run without --config, it made one here
        _no_credential()
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    from terminal.store import Store

    store = Store.open(cfg.db_path)
    client = _sync_client(cfg, store)
    if client is None:
        store.close()
        _no_credential()
    try:
        with Progress(
            TextColumn("{task.description:>12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console if as_json else console,
            transient=False,
        ) as bar:
            tasks: dict[str, Any] = {}

            def progress(kind: str, done: int, total: int) -> None:
                if kind not in tasks:
                    tasks[kind] = bar.add_task(kind, total=max(total, 1))
                bar.update(tasks[kind], completed=done if total else 1, total=max(total, 1))

            loaded = client.bootstrap(progress) if store.state("cursor") is None else 0
            result = client.sync_once()
            if rotate:
                client.rotate_credential()
    except SyncError as exc:
        console.print(f"[red]sync failed:[/] {escape(str(exc))}  ({store.pending_count()} entries wait in the journal)")
        raise typer.Exit(1) from exc
    finally:
        client.close()
        pending = store.pending_count()
        held = held_message(store.state(PUSH_HELD))
        store.close()
    if as_json:
        show_json(
            {
                "pushed": result.pushed,
                "pulled": result.pulled + loaded,
                "pending": pending,
                "rotated": rotate,
                "held": held,
            }
        )
        return
    console.print(
        f"pushed {result.pushed}, pulled {result.pulled + loaded}; {pending} entries pending"
        + ("; credential rotated" if rotate else "")
    )
    if held:
        console.print(f"[yellow]held:[/] {escape(held)}")


@commands.command()
def reconcile(
    config: ConfigOpt = None,
    eod: Annotated[bool, typer.Option("--eod", help="Also report today's totals so far.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Pending entries, offline age, end-of-day reports, and what head office flagged for this till."""
    import datetime as dt

    from sync.client import SyncError
    from terminal.model import utc_iso

    cfg = cli_config(config)
    store = _open_till(cfg)
    client = _sync_client(cfg, store)
    hq_state = "no credential"
    if client is not None:
        try:
            client.push_all()
            client.report_eod(until=dt.date.today() + dt.timedelta(days=1) if eod else None)
            client.flags()
            hq_state = "reachable"
        except SyncError as exc:
            hq_state = f"unreachable ({exc}); showing what was fetched at {store.state('hq_flags_at')}"
        finally:
            client.close()
    offline = store.state("offline_since")
    info = {
        "pending": store.pending_count(),
        "offline_since": offline,
        "offline_seconds": None
        if not offline
        else round(time.time() - dt.datetime.fromisoformat(offline.replace("Z", "+00:00")).timestamp()),
        "last_sync_ok": store.state("last_sync_ok"),
        "head_office": hq_state,
        "now": utc_iso(time.time()),
        "end_of_day": [
            {k: r[k] for k in ("day", "first_seq", "last_seq", "status", "reported_at")}
            | {
                "missing": json.loads(r["detail"]).get("missing"),
                "mismatches": json.loads(r["detail"]).get("mismatches"),
            }
            for r in store.eod_reports()
        ],
        "flags": json.loads(store.state("hq_flags") or "[]"),
    }
    store.close()
    if as_json:
        print(json.dumps(info, indent=2))
        return
    for key in ("pending", "offline_since", "offline_seconds", "last_sync_ok", "head_office"):
        console.print(f"{key:>16}: {escape(str(info[key]))}")
    console.print(
        table(
            ["day", "seqs", "status", "missing", "mismatches"],
            title="end of day",
            rows=[
                (
                    r["day"],
                    f"{r['first_seq']}-{r['last_seq']}",
                    r["status"],
                    str(r["missing"] or "-"),
                    "; ".join(r["mismatches"] or []) or "-",
                )
                for r in info["end_of_day"]
            ],
        )
    )
    console.print(
        table(
            ["item", "day", "seq", "reason", "state", "note"],
            title="flagged by head office",
            rows=[
                (f["item_id"], f["day"], str(f["seq"] or "-"), f["reason"], f["state"], f.get("note") or "-")
                for f in info["flags"]
            ],
        )
    )


def _live_status(cfg: Config) -> dict[str, Any] | None:
    """The running daemon's own status (``GET /v1/status``); None when no daemon answers."""
    import httpx

    try:
        response = _api_request(cfg, "GET", "/v1/status", timeout=2)
        body = response.json()
    except ApiUrlInvalid as exc:
        return {"readers": f"{exc.code}: {exc}"}
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) and "readers" in body else None


# -- member app simulator -------------------------------------------------------------------------

member_app = typer.Typer(
    help="A member-app simulator: register a device, show member and payment codes.", no_args_is_help=True
)
commands.add_typer(member_app, name="member")
StateDirOpt = Annotated[Path | None, typer.Option("--state-dir", help="Default: ./var/member/MEMBER.")]


def _web_address(value: str) -> str:
    """``--hq``: an http(s) address with a host (and a port, if any, that is one)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - a port out of range or not a number raises here
    except ValueError as exc:
        raise typer.BadParameter(f"a web address, http(s)://HOST[:PORT] ({exc})") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise typer.BadParameter("a web address, http(s)://HOST[:PORT]")
    return value


def _member_app(member_id: str, state_dir: Path | None) -> MemberApp:
    from sync.memberapp import MemberApp, MemberAppError

    try:
        return MemberApp(member_id, state_dir)
    except MemberAppError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from exc
    except OSError as exc:  # a member id no file name can hold (too long), a state directory not ours
        where = state_dir or "./var/member/MEMBER"
        _said("state_dir_unusable", f"the member app's state directory {where} cannot be used ({exc.strerror or exc})")
        raise typer.Exit(2) from exc


@member_app.command("register")
def member_register(
    member_id: str,
    hq: Annotated[str, typer.Option("--hq", callback=_web_address, help="Head office URL.")],
    token: Annotated[str, typer.Option(help="Member app token (`tillpoint hq member-token MEMBER`).")],
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register this simulated phone's payment key with head office and keep its certificate (printed as JSON)."""
    from sync.memberapp import MemberAppError

    try:
        cert = _member_app(member_id, state_dir).register(hq, token)
    except MemberAppError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from exc
    print(json.dumps(cert.to_doc()))


@member_app.command("code")
def member_payment_code(
    member_id: str,
    state_dir: StateDirOpt = None,
    png: Annotated[Path | None, typer.Option(help="Write the QR as PNG here (default: STATE_DIR/code.png).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the code text.")] = False,
    identify: Annotated[
        bool,
        typer.Option(
            "--identify",
            help="A fresh member code instead: it identifies you and, once, proves you are at the "
            "till (what redeeming points needs).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a fresh one-time payment code (or member code): QR in the terminal, a PNG, and the text."""
    from sync.memberapp import MemberAppError
    from terminal import qrcodes

    member = _member_app(member_id, state_dir)
    try:
        text = member.fresh_member_code() if identify else member.next_code()
    except MemberAppError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from exc
    target = png or member.dir / "code.png"
    target.write_bytes(qrcodes.png(text))
    if as_json:
        show_json(
            {"member_id": member_id, "kind": "member" if identify else "payment", "code": text, "png": str(target)}
        )
        return
    if not quiet:
        print(qrcodes.terminal_text(text))
        print(f"PNG: {target}")
    print(text)


@member_app.command("show")
def member_show(
    member_id: str,
    state_dir: StateDirOpt = None,
    offline: Annotated[bool, typer.Option(help="Do not ask head office for the balance.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The member code head office signed (TPM2:...) as QR and text, the device certificate and the balance."""
    from sync.memberapp import MemberAppError
    from terminal import qrcodes

    member = _member_app(member_id, state_dir)
    try:
        code = member.member_code()
    except MemberAppError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from exc
    info: dict[str, Any] = {
        "member_id": member_id,
        "member_code": code,
        "cert_id": member.cert.cert_id.hex() if member.cert else None,
    }
    if not offline:
        try:
            account = member.account()
            info |= {"stored_value": account["stored_value"], "points": account["points"]}
        except MemberAppError as exc:
            info["error"] = str(exc)
    if as_json:
        show_json(info)
        return
    print(qrcodes.terminal_text(code))
    print(json.dumps(info))


voucher_app = typer.Typer(
    help="Prepaid vouchers through the running daemon: sell, redeem, refund (docs/stored-value.md).",
    no_args_is_help=True,
)
commands.add_typer(voucher_app, name="voucher")


@voucher_app.command("sell")
def voucher_sell(
    value: Annotated[
        int | None, typer.Option(help="An amount voucher of this face value (minor units).", min=1, max=MAX_AMOUNT)
    ] = None,
    sku: Annotated[str | None, typer.Option(help="A product voucher of this sku.")] = None,
    member: Annotated[str | None, typer.Option(help="The member whose wallet shows the voucher.")] = None,
    png: Annotated[Path | None, typer.Option(help="Also write the voucher's QR as PNG here, to print.")] = None,
    request_id: RequestIdOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sell a voucher of this till's stock (the POS took its value): its signed code as a QR and as text."""
    from terminal import qrcodes

    cfg = cli_config(config)
    if png is not None and not png.parent.is_dir():  # before the sale: its code is shown only once
        console.print(f"[red]--png: no directory {escape(str(png.parent))}[/]: nothing was sold")
        raise typer.Exit(1)
    sold = _api(
        cfg,
        "POST",
        "/v1/vouchers/sell",
        {"value": value, "sku": sku, "member_id": member},
        request_id=request_id,
    )
    unwritten = None
    if png is not None:
        try:
            png.write_bytes(qrcodes.png(sold["code"], compact=False))
        except OSError as exc:  # the voucher is sold: its code is still printed below, never lost
            unwritten = f"--png: {png} cannot be written ({exc.strerror or exc}); the voucher is sold, its code printed"
    if as_json:
        show_json(sold | ({"png": str(png)} if png and not unwritten else {}))
    else:
        print(qrcodes.terminal_text(sold["code"], compact=False))
        _show_voucher(sold, cfg)
        print(sold["code"])
    if unwritten:
        err_console.print(f"[red]{escape(unwritten)}[/]")
        raise typer.Exit(1)


@voucher_app.command("redeem")
def voucher_redeem(
    code: Annotated[str, typer.Argument(help="The voucher's TPV1:... text, as scanned or typed.")],
    sale_ref: Annotated[str, typer.Option(help="The POS's reference of the sale it pays.")] = "",
    request_id: RequestIdOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Use a voucher once: what the POS takes off the sale (its value, or one unit of its product)."""
    cfg = cli_config(config)
    body = {"code": code, "sale_ref": sale_ref}
    used = _api(cfg, "POST", "/v1/vouchers/redeem", body, request_id=request_id)
    if as_json:
        show_json(used)
        return
    _show_voucher(used, cfg)


@voucher_app.command("refund")
def voucher_refund(
    code: Annotated[str, typer.Argument(help="The voucher's TPV1:... text.")],
    request_id: RequestIdOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Refund an unused voucher at the store that sold it (while head office answers); the POS pays it back."""
    cfg = cli_config(config)
    back = _api(cfg, "POST", "/v1/vouchers/refund", {"code": code}, request_id=request_id)
    if as_json:
        show_json(back)
        return
    _show_voucher(back, cfg)


def _show_voucher(answer: dict[str, Any], cfg: Config) -> None:
    money = _currency(cfg)
    what = f"one {answer['sku']}, up to" if answer["voucher_kind"] == "product" else "amount"
    _print_lines(
        [
            f"{answer['kind']} {answer['txn_id']} (#{answer['seq']}), voucher {answer['voucher_id']}",
            _row(what, money.format(answer["value"])),
            _row("expires", time.strftime("%Y-%m-%d", time.gmtime(answer["expires_at"]))),
            _row("taken", "offline" if answer["offline"] else "online"),
        ]
    )


gift_app = typer.Typer(
    help="Gift cards through the running daemon, on the card tapped last: balance, sell, load, pay, refund, "
    "block (docs/giftcards.md).",
    no_args_is_help=True,
)
commands.add_typer(gift_app, name="giftcard")
AmountArg = Annotated[int, typer.Argument(help="Minor units.", min=1, max=MAX_AMOUNT)]


@gift_app.command("balance")
def gift_balance(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The tapped gift card's state and balance, as this till knows it."""
    cfg = cli_config(config)
    card = _api(cfg, "GET", "/v1/giftcards/balance")
    if as_json:
        show_json(card)
        return
    money = _currency(cfg)
    _print_lines(
        [
            f"gift card {card['card_id']}: {card['state']}",
            _row("balance", money.format(card["balance"])),
            _row("expires", card["expires_on"] or "never"),
        ]
    )


@gift_app.command("sell")
def gift_sell(
    amount: AmountArg, request_id: RequestIdOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False
) -> None:
    """Sell the tapped card as a gift card with AMOUNT on it (the POS took it)."""
    _gift(config, as_json, "/v1/giftcards/sell", {"amount": amount}, request_id)


@gift_app.command("load")
def gift_load(
    amount: AmountArg, request_id: RequestIdOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False
) -> None:
    """Load AMOUNT (the POS took it) onto the tapped gift card."""
    _gift(config, as_json, "/v1/giftcards/load", {"amount": amount}, request_id)


@gift_app.command("pay")
def gift_pay(
    amount: AmountArg,
    sale_ref: Annotated[str, typer.Option(help="The POS's reference of the sale it pays.")] = "",
    request_id: RequestIdOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The tapped gift card pays AMOUNT of the POS's sale (one tap, one payment)."""
    body = {"amount": amount, "sale_ref": sale_ref}
    _gift(config, as_json, "/v1/giftcards/pay", body, request_id)


@gift_app.command("refund")
def gift_refund(
    txn_id: Annotated[
        str, typer.Argument(callback=_txn_id, help="The gift card payment (its txn id) the POS refunded.")
    ],
    amount: AmountArg,
    request_id: RequestIdOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Give AMOUNT of what the card paid in TXN_ID back onto it."""
    path = f"/v1/giftcards/{_segment(txn_id)}/refund"
    _gift(config, as_json, path, {"amount": amount}, request_id)


@gift_app.command("block")
def gift_block(
    reason: Annotated[str, typer.Option(help="Why (lost, stolen ...).")] = "",
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Block the tapped gift card; head office alone unblocks it."""
    _gift(config, as_json, "/v1/giftcards/block", {"reason": reason})


def _gift(config: Path | None, as_json: bool, path: str, body: dict[str, Any], request_id: str | None = None) -> None:
    cfg = cli_config(config)
    done = _api(cfg, "POST", path, body, request_id=request_id)
    if as_json:
        show_json(done)
        return
    money = _currency(cfg)
    _print_lines(
        [
            f"{done['kind']} {done['txn_id']} (#{done['seq']}), gift card {done['card_id']}",
            _row("moved", money.format(done["amount"])),
            _row("balance", money.format(done["balance"])),
            _row("taken", "offline" if done["offline"] else "online"),
        ]
    )


receipt_app = typer.Typer(help="Receipts the POS prints: templates that read them.", no_args_is_help=True)
commands.add_typer(receipt_app, name="receipt")


@receipt_app.command("try")
def receipt_try(
    template: Annotated[Path, typer.Argument(help="A receipt template (TOML).")],
    files: Annotated[list[Path], typer.Argument(help="Saved print streams (raw ESC/POS bytes).")],
    as_json: JsonOpt = False,
) -> None:
    """Read saved receipts with a template and show what it read; exits 1 if a receipt is not read."""
    from terminal.errors import Rejected
    from terminal.receipts.templates import load_template, try_template

    try:
        tpl = load_template(template.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        err_console.print(f"[red]cannot read {escape(str(template))}: {escape(str(exc))}[/]")
        raise typer.Exit(2) from exc
    except Rejected as exc:
        err_console.print(f"[red]{exc.code.value}: {escape(exc.message)}[/]")
        raise typer.Exit(2) from exc
    results: list[dict[str, Any]] = []
    no_receipt: list[str] = []  # files with no receipt in them (nothing printed)
    for path in files:
        try:
            stream = path.read_bytes()
        except OSError as exc:
            err_console.print(f"[red]cannot read {escape(str(path))}: {escape(str(exc))}[/]")
            raise typer.Exit(2) from exc
        found = [{"file": str(path)} | row for row in try_template(tpl, stream)]
        results += found
        if not found:
            no_receipt.append(str(path))
    if as_json:
        show_json({"template": tpl.name, "receipts": results, "no_receipt": no_receipt})
    else:
        for path_name in no_receipt:
            console.print(f"{escape(path_name)} [red]no receipt in it[/] (nothing was printed)")
        for row in results:
            got = row["read"]
            state = f"[red]{row['refused']['code']}[/]" if row["refused"] else "[green]read[/]"
            uncut = "" if row["cut"] else " [yellow](no cut: the stream ends inside this receipt)[/]"
            console.print(f"{escape(row['file'])} {row['digest'][:12]} {state}{uncut}")
            rows = [
                [x["sku"], x["name"], str(x["quantity"]), str(x["unit_price"]), str(x["amount"])] for x in got["items"]
            ]
            console.print(table(["sku", "name", "quantity", "unit_price", "amount"], rows))
            console.print(
                f"discounts {got['discounts']}  total {got['total']}  tax {got['tax']}  "
                f"number {escape(str(got['number']))}  time {escape(str(got['time']))}"
            )
            for line in got["unread"]:
                console.print(f"  [dim]unread:[/] {escape(line)}")
    if no_receipt or not results or any(row["refused"] for row in results):
        raise typer.Exit(1)


HELP = "tillpoint: loyalty, coupons and member payments for shop tills."
app = typer.Typer(cls=TillGroup, help=HELP, no_args_is_help=True)
app.callback()(main_options)
app.add_typer(commands)


def main() -> None:  # pragma: no cover - console entry for `python -m terminal.cli` (the till's commands)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
