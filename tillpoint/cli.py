"""The `tillpoint` command: the till's own commands, head office's ``hq`` group and ``demo``.

This is the one place that knows both sides: the till (``terminal``, ``drivers``, ``sync``) never imports
head office, head office (``hq``) imports only the till's pure core and the wire protocol, and neither
imports this package (the import contracts in pyproject.toml). ``demo`` lives here because it runs both: a head
office embedded in the process, seeded with demo members, and the daemon against it.

``app`` is the ``tillpoint`` console script (pyproject ``[project.scripts]``); ``python -m tillpoint``
runs the same. Commands import what they run (FastAPI, uvicorn, head office's store ...) when they run,
not when the command line is built, so that every command starts quickly; the import contracts see those
imports like any other. Head office's ``hq`` group itself loads only when it is asked for (or listed by
``--help``): a till's own commands (``tap``, ``status``, ``run`` ...) start without it, on a quarter less CPU.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Annotated, Any

import typer

from terminal import cli as till
from terminal.cli import ConfigOpt, cli_config, console, run_daemon
from terminal.console import check_port, port_busy, table
from terminal.errors import PortBusy

if TYPE_CHECKING:  # the click that typer's groups are typed with (typer 0.29 carries its own copy)
    from typer._click import Command, Context

HQ_GROUP = "hq"


class Commands(till.TillGroup):
    """The till's commands, with head office's group loaded on first use."""

    def list_commands(self, ctx: Context) -> list[str]:
        return [*super().list_commands(ctx), HQ_GROUP]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name != HQ_GROUP:
            return super().get_command(ctx, cmd_name)
        return hq_group()


@cache
def hq_group() -> Command:
    """Head office's commands as one click group, built once a process (click asks for it more than once a
    command line: to resolve it and for its help)."""
    from hq.cli import app as hq_app

    group = typer.main.get_command(hq_app)
    group.name = HQ_GROUP
    return group


app = typer.Typer(cls=Commands, help=till.HELP, no_args_is_help=True)
app.callback()(till.main_options)


def demo(
    config: ConfigOpt = None,
    hq_port: Annotated[int, typer.Option(help="Port of the embedded head office.")] = 8731,
    api_port: Annotated[
        int | None,
        typer.Option(
            help="Port of the till's local API (default: [api] port, 8732); the other commands find it by themselves."
        ),
    ] = None,
    reader: Annotated[
        str, typer.Option(help="Reader: auto: (PC/SC if present, else simulated), sim:, pcsc:")
    ] = "auto:",
    amount: Annotated[int, typer.Option(help="Each tap rings a sale of this many minor units.")] = 1250,
) -> None:
    """Embedded head office seeded with demo members + the daemon; every tap earns points.
    A port already taken stops it at once (exit status 3), naming the option that moves it."""
    from hq.api.app import create_app
    from hq.demo import DEMO_CARDS, seed_demo
    from hq.scheduler import CampaignTimer
    from hq.store import HqStore
    from terminal.api.server import ThreadedServer
    from terminal.keys import load_or_create_key

    api: dict[str, dict[str, Any]] = {"api": {"port": api_port}} if api_port is not None else {}
    base = cli_config(config, **api)
    check_port("127.0.0.1", hq_port, "the embedded head office", "--hq-port N")
    if base.api.enabled and base.api.host:
        check_port(base.api.host, base.api.port, "the local API", "--api-port N")
    key = load_or_create_key(base.card_key_path)
    hq_store = HqStore(str(base.data_dir.parent / "hq" / "hq.db"))
    seed_demo(hq_store, key)
    token = hq_store.add_terminal(base.terminal.id, base.terminal.store_id)
    try:
        hq = ThreadedServer(create_app(hq_store), "127.0.0.1", hq_port).start()
    except PortBusy as exc:  # taken since the check
        hq_store.close()
        port_busy(exc, "the embedded head office", "--hq-port N")
    # The console tells each event once: the log says only what goes wrong (or all of it, at debug level).
    level = base.log.level if base.log.level in ("debug", "error") else "warning"
    cfg = cli_config(
        config,
        **api,
        hq={"url": hq.url, "token": token, "pull_interval": 5.0},
        log={"level": level},
        reader={"devices": [reader]},
        scanner={"devices": list(dict.fromkeys([*base.scanner.devices, "sim:"]))},  # `tillpoint scan` holds codes up
        sale={"auto_amount": amount},
    )
    console.print(
        table(
            ["card UID", "member", "what happens"],
            [(c.uid, f"{c.display_name} ({c.member_id})", c.note) for c in DEMO_CARDS],
        )
    )
    console.print("Tap a simulated card from another shell:  [bold].venv/bin/tillpoint tap 04A1B2C3D4E501[/]")
    timer = CampaignTimer(hq_store.db).start()  # campaigns put into the demo's head office run as scheduled
    try:
        run_daemon(cfg, f"; head office {hq.url}", api_port_option="--api-port N")
    finally:
        timer.stop()
        hq.stop()
        hq_store.close()


app.add_typer(till.commands)  # run, doctor, tap, ... and the member-app simulator
app.command()(demo)


def main() -> None:  # pragma: no cover - console entry for `python -m tillpoint.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
