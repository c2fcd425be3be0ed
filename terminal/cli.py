"""`tillpoint ...`: a thin shell over the daemon, the store, the local API and the head office."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, Optional

import httpx
import typer
from rich.console import Console
from rich.table import Table

from terminal import config as config_mod
from terminal.config import Config
from terminal.errors import ConfigError, TerminalError

app = typer.Typer(help="tillpoint: loyalty, coupons and member payments for shop tills.", no_args_is_help=True)
hq_app = typer.Typer(help="The head-office server and its administration.", no_args_is_help=True)
app.add_typer(hq_app, name="hq")
console = Console()

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config (else $TILLPOINT_CONFIG).")]
HqDbOpt = Annotated[Path, typer.Option("--db", help="Head-office SQLite database.")]
DEFAULT_HQ_DB = Path("var/hq/hq.db")


def _config(path: Path | None, **overrides: dict[str, Any]) -> Config:
    try:
        cfg = config_mod.load(path)
        if overrides:
            raw = cfg.model_dump()
            for section, values in overrides.items():
                raw[section].update(values)
            cfg = config_mod.validate(raw)
        return cfg
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from exc


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


def _print_event(event: dict[str, Any]) -> None:
    kind = event["type"]
    if kind == "member":
        console.print(f"[cyan]tap[/] {event['reader']}: [bold]{event['name']}[/] ({event['member_id']}, "
                      f"{event['tier']}) {event['points']} pt")
    elif kind in ("sale", "void"):
        console.print(f"[green]{kind}[/] #{event['seq']} {event['txn_id']} total {event['total']} "
                      f"points {event['points_delta']:+d} -> balance {event['points_balance']}")
    elif kind == "rejected":
        console.print(f"[red]rejected[/] {event['code']}: {event['message']}")
    elif kind == "sync":
        state = "ok" if event["ok"] else f"[yellow]offline[/] ({event['error']})"
        console.print(f"[magenta]sync[/] {state} {event.get('pushed', '')} {event.get('pulled', '')}".rstrip())
    elif kind == "reader":
        console.print(f"[blue]reader[/] {event['reader']} {event['kind']} {event.get('detail', '')}")


def _run_daemon(cfg: Config, hq_url_note: str = "") -> None:
    from terminal.daemon import Daemon

    daemon = Daemon(cfg)
    daemon.subscribers.append(_print_event)
    try:
        daemon.start()
    except TerminalError as exc:
        console.print(f"[red]cannot start:[/] {exc}")
        raise typer.Exit(1) from exc
    api = daemon.api_server.url if daemon.api_server else "off"
    console.print(f"tillpoint terminal {cfg.terminal.id} running; local API {api}{hq_url_note}. Ctrl-C stops.")
    try:
        _wait_for_signal()
    finally:
        daemon.stop()


@app.command()
def run(config: ConfigOpt = None) -> None:
    """Run the daemon from its config (what the systemd service starts)."""
    _run_daemon(_config(config))


@app.command()
def demo(
    config: ConfigOpt = None,
    hq_port: Annotated[int, typer.Option(help="Port of the embedded head office.")] = 8731,
    reader: Annotated[str, typer.Option(help="Reader: auto: (PC/SC if present, else simulated), sim:, pcsc:")] = "auto:",
    amount: Annotated[int, typer.Option(help="Each tap rings a sale of this many minor units.")] = 1250,
) -> None:
    """Embedded head office seeded with demo members + the daemon; every tap earns points."""
    from sync.hq.demo import DEMO_CARDS, seed_demo
    from sync.hq.storage import HqStore
    from terminal.api.server import ThreadedServer
    from terminal.keys import load_or_create_key
    from sync.hq.app import create_app

    base = _config(config)
    key = load_or_create_key(base.card_key_path)
    hq_store = HqStore(str(base.data_dir.parent / "hq" / "hq.db"))
    seed_demo(hq_store, key)
    token = hq_store.add_terminal(base.terminal.id, base.terminal.store_id)
    hq = ThreadedServer(create_app(hq_store), "127.0.0.1", hq_port).start()
    cfg = _config(config, hq={"url": hq.url, "token": token, "pull_interval": 5.0},
                  reader={"devices": [reader]}, sale={"auto_amount": amount})
    table = Table("card UID", "member", "what happens")
    for card in DEMO_CARDS:
        table.add_row(card.uid, f"{card.display_name} ({card.member_id})", card.note)
    console.print(table)
    console.print("Tap a simulated card from another shell:  [bold].venv/bin/tillpoint tap 04A1B2C3D4E501[/]")
    try:
        _run_daemon(cfg, f"; head office {hq.url}")
    finally:
        hq.stop()
        hq_store.close()


def _api(cfg: Config, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    token = cfg.api_token_path.read_text().strip() if cfg.api_token_path.exists() else ""
    url = f"http://{cfg.api.host}:{cfg.api.port}{path}"
    try:
        response = httpx.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    except httpx.TransportError as exc:
        console.print(f"[red]no daemon answers at {url}[/] ({exc.__class__.__name__}); is `tillpoint run` or `demo` up?")
        raise typer.Exit(1) from exc
    if response.status_code >= 400:
        console.print(f"[red]refused[/] {response.status_code}: {response.text}")
        raise typer.Exit(1)
    return response.json()


@app.command()
def tap(uid: str, config: ConfigOpt = None) -> None:
    """Tap a simulated card (hex UID) on the running daemon's simulated reader."""
    _api(_config(config), "POST", "/v1/sim/tap", {"uid": uid})
    console.print(f"tapped {uid}")


@app.command()
def sale(
    amount: Annotated[int, typer.Argument(help="Total in minor units.")],
    member: Annotated[Optional[str], typer.Option(help="Member id; default: the last tapped member.")] = None,
    sku: str = "MISC",
    config: ConfigOpt = None,
) -> None:
    """Ring a one-line sale through the running daemon."""
    line = {"sku": sku, "quantity": 1, "unit_price": amount}
    console.print_json(data=_api(_config(config), "POST", "/v1/sales", {"member_id": member, "lines": [line]}))


@app.command()
def void(txn_id: str, config: ConfigOpt = None) -> None:
    """Void a sale of this till through the running daemon."""
    console.print_json(data=_api(_config(config), "POST", f"/v1/sales/{txn_id}/void"))


@app.command()
def status(config: ConfigOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Readers, pending journal entries, last successful sync and offline time."""
    from terminal.daemon import store_status
    from terminal.store import Store

    cfg = _config(config)
    if not cfg.db_path.exists():
        console.print(f"no terminal database at {cfg.db_path} yet: start `tillpoint run` or `tillpoint demo` first")
        raise typer.Exit(1)
    store = Store.open(cfg.db_path)
    info = store_status(store)
    store.close()
    info["readers"] = _live_readers(cfg)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        console.print(f"{key:>14}: {value}")


def _live_readers(cfg: Config) -> list[dict[str, str]] | str:
    try:
        response = httpx.get(f"http://{cfg.api.host}:{cfg.api.port}/v1/status", timeout=2)
        return list(response.json()["readers"])
    except (httpx.HTTPError, ValueError, KeyError):
        return "daemon not running"


# -- head office --------------------------------------------------------------------------------


@hq_app.command("serve")
def hq_serve(
    db: HqDbOpt = DEFAULT_HQ_DB,
    host: str = "127.0.0.1",
    port: int = 8731,
    seed_demo_key: Annotated[Optional[Path], typer.Option(help="Seed demo members, hashing card UIDs with this key file.")] = None,
) -> None:
    """Serve the head-office API (SQLite storage)."""
    import uvicorn

    from sync.hq.app import create_app
    from sync.hq.demo import seed_demo
    from sync.hq.storage import HqStore

    store = HqStore(str(db))
    if seed_demo_key is not None:
        from terminal.keys import load_or_create_key

        seed_demo(store, load_or_create_key(seed_demo_key))
    uvicorn.run(create_app(store), host=host, port=port, log_level="warning")


@hq_app.command("add-terminal")
def hq_add_terminal(terminal_id: str, store_id: str = "S-001", db: HqDbOpt = DEFAULT_HQ_DB) -> None:
    """Register a terminal and print its credential (shown once)."""
    from sync.hq.storage import HqStore

    store = HqStore(str(db))
    print(store.add_terminal(terminal_id, store_id))
    store.close()


@hq_app.command("add-member")
def hq_add_member(member_id: str, name: str, tier: str = "basic", points: int = 0, db: HqDbOpt = DEFAULT_HQ_DB) -> None:
    """Create or update a member."""
    from sync.hq.storage import HqStore

    store = HqStore(str(db))
    store.upsert_member(member_id, name, tier, points)
    store.close()


@hq_app.command("add-card")
def hq_add_card(
    uid: str,
    member_id: str,
    card_key_file: Annotated[Path, typer.Option(help="The chain's card-hash key.")],
    blocked: bool = False,
    db: HqDbOpt = DEFAULT_HQ_DB,
) -> None:
    """Link a card (hex UID, stored only as its keyed hash) to a member."""
    from sync.hq.storage import HqStore
    from terminal.credentials import card_uid_hash, parse_uid

    key = card_key_file.read_bytes()
    store = HqStore(str(db))
    store.upsert_card(card_uid_hash(key, parse_uid(uid)), member_id, "blocked" if blocked else "active")
    store.close()


def main() -> None:  # pragma: no cover - console entry for `python -m terminal.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
