"""`tillpoint hq ...`: head office's server and administration, a thin shell over ``HqStore``.

``app`` is the whole ``hq`` command group, assembled here from one Typer sub-app per area (each module
of this package); the ``tillpoint`` command (``tillpoint.cli``) adds it under the name ``hq``:

    migrate [--db --no-backup --migration-lock-wait S --json]   apply this release's migrations (after a
                                       backup) and say which; run it before the new release's servers
    serve [--db --host --port --workers ...]   the head-office API (serve.py; also add-terminal,
                                       add-member, add-card for a new database)

    enrol-code TERMINAL --store-id S   a one-time code the till redeems for its own credential
    rotate TERMINAL --store-id S       a fresh enrolment code; the till's current token works until it is used
    revoke TERMINAL                    refuse the terminal's credential at once
    admin-token NAME                   a token for /v1/admin (reports, settling items)
    terminals                          every terminal: how far behind, last seen, clock offset
    report [--store-id] [--terminal-id] [--day-from] [--day-to] [--json | --csv]
    groups [--state open] ...          items by cause, terminal and business day, with counts (read this first)
    items [--reason R --day D ...]     reconciliation items one by one, a page at a time (--after CURSOR)
    summary                            open and settled items per cause
    settle ITEM --by NAME --note WHY   settle an item by hand
    settle-group --terminal-id T --day D --reason R --by NAME --note WHY   settle a whole group
    receipt [--digest D] [--number N] [--store-id S]   the sales read from a POS's printed receipt
    store STORE [--timezone TZ --day-starts HH:MM] [--merchant M] / stores   each store's business day and merchant
    block|unblock member|card ID --by NAME --reason WHY   stop (or allow again) a member or a card
    quarantine / release TXN / reject TXN --by NAME --note WHY   entries held by the trust rules
    put-coupon FILE / put-rule FILE    store a coupon or earning-rule JSON document
    delete KIND ID                     delete a member, card, rule, rule_doc, coupon, key or revocation
    add-key PURPOSE / revoke-subject KIND SUBJECT   signing keys and the revocation list
    erase MEMBER [--by NAME]           erase a member (tombstones to tills, sales kept anonymised)
    profile MEMBER [--birthday --attr NAME=VALUE --consent marketing:V --withdraw-consent marketing]
    attribute NAME --label L (--allowed a,b | --pattern P)   an attribute the chain collects
    stats rebuild / stats roll / stats show MEMBER [--as-of DAY]   members' statistics (docs/members.md)
    topup / member-token / member-code / devices / revoke-device   member payments (payments.py)
    release-hold TXN --by NAME --reason WHY [--terminal T]   end one transaction's hold of a member's stored value
                                       or a gift card's balance (payments.py, docs/payments.md)
    segment put ID FILE / show ID / list / delete ID / preview ID [--as-of DAY] [--sample N]
                                       segments of members as data (segments.py, docs/segments.md)
    campaign put ID FILE / show / list / pause / resume / end / run [ID] [--now T] / report ID
        [--format table|json|csv --svg FILE] / programme / settings [FILE]   campaigns (docs/campaigns.md)
    pool create ID QUANTITY [--chunk N] / show ID / close ID   flash-drop quantity pools (pools.py, docs/loyalty.md)
    voucher issue TERMINAL --count N --value V [--sku S] / offline-total TERMINAL N / show ID / list
                                       prepaid vouchers (vouchers.py, docs/stored-value.md)
    giftcard show CARD / list / unblock CARD / clear CARD --by N --reason R / import HASH AMOUNT --by N
        / terms [--expiry-days D --dormant-days D] / expire --as-of DAY   gift cards (giftcards.py,
        docs/giftcards.md)
    reward put FILE / codes ID FILE / list / purchases MEMBER / refund PURCHASE   the rewards catalogue
                                       (rewards.py, docs/rewards.md)
    staff add ID --name N --role R [--store S ...] [--merchant M] / list / disable ID / passwd ID   back-office staff accounts
        / unlock ID                    (an account's failed sign-ins forgotten, audited)
    audit verify                       walk the back office's audit chain, naming the first broken record
                                       (backoffice.py, docs/backoffice.md)
    merchant add ID --name N [--cost-per-100 C --reimburse-per-100 R --timing T] / list / show ID
                                       the chain's merchants
    ledger check / ledger expire --as-of DAY   the ledger of points and stored value (ledger.py, docs/ledger.md)
    reports check / rebuild            the report roll-up against the journal and the ledger (rollup.py,
                                       docs/reports.md)
    settlement statement PERIOD MERCHANT [--format json|csv|pdf --out F] / statements PERIOD [--dir D]
        / close PERIOD --by NAME --reason WHY / periods / deferred [--as-of DAY]   settlement between
        merchants, deferred revenue (docs/settlement.md)

Each command imports the head-office modules it runs (the store, the API, uvicorn ...) when it runs,
not when the command line is built, so that every `tillpoint` command, the till's too, starts without
loading them; the import contracts (pyproject.toml) check those imports like any other.

Only ``migrate`` and ``serve`` migrate a database: every other command refuses one lacking this release's
migrations (``migration_needed``, naming ``tillpoint hq migrate``), so that no listing or report run with a new
release starts an upgrade as a side effect; a new, empty database is made whole by any command that writes.

Every command that prints data takes ``--json`` (one JSON document on stdout); those that print JSON
anyway (block, store, erase, topup, devices) accept it too.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from hq.cli import (
    backoffice,
    campaigns,
    documents,
    giftcards,
    ledger,
    members,
    payments,
    pools,
    quarantine,
    reconcile,
    reports,
    rewards,
    segments,
    serve,
    settlement,
    stores,
    terminals,
    vouchers,
)

AREAS = (
    terminals,
    quarantine,
    reconcile,
    stores,
    members,
    segments,
    campaigns,
    pools,
    rewards,
    documents,
    payments,
    vouchers,
    giftcards,
    ledger,
    reports,
    settlement,
    backoffice,
    serve,
)
"""Each area's commands, in the order ``tillpoint hq --help`` lists them."""

if TYPE_CHECKING:  # the click that typer's groups are typed with
    from typer._click import Command, Context


def _own_name(area: typer.Typer) -> str:
    """The name ``area`` was made with (``typer.Typer(name=...)``): such an area is one group of the ``hq`` group
    (``segment ...``), and the others give it their commands and groups (``add-member``, ``merchant ...``)."""
    name = area.info.name
    return name if isinstance(name, str) else ""


def area_names(area: typer.Typer) -> list[str]:
    """The names ``area`` gives the ``hq`` group, as typer names them (its own name; else each command's given
    name or its function's with dashes, and each group's name), without building any of them."""
    if _own_name(area):
        return [_own_name(area)]
    names = [
        info.name or typer.main.get_command_name(getattr(info.callback, "__name__", ""))
        for info in area.registered_commands
    ]
    for info in area.registered_groups:
        name = typer.main.solve_typer_info_defaults(info).name
        names.append(name if isinstance(name, str) else "")
    return names


@cache
def _built(index: int) -> dict[str, Command]:
    """What ``AREAS[index]`` gives the ``hq`` group, built once a process."""
    built = typer.main.get_command(AREAS[index].app)
    assert isinstance(built, TyperGroup), built
    return {built.name or "": built} if _own_name(AREAS[index].app) else dict(built.commands)


@cache
def _area_of() -> dict[str, int]:
    return {name: i for i, area in enumerate(AREAS) for name in area_names(area.app)}


class HqCommands(TyperGroup):
    """The ``hq`` group. Its commands are built an area at a time, when the command line names one of them: a
    command builds its own area's commands only, not the hundred and more of the whole group (0.26 CPU-s of a
    command of about 0.7 here, 0.15 with one area); ``--help`` and listing build them all, in ``AREAS`` order.

    A command the database fails under (a full disk, a read-only file system, a damaged file) says so in one
    line, its stable code first (``StorageFailed.problem``), and exits 1."""

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        area = _area_of().get(cmd_name)
        if area is not None and cmd_name not in self.commands:
            self.commands.update(_built(area))
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        if args and args[0] not in _area_of():  # a name of no area: all of them, for typer's "Did you mean"
            self.list_commands(ctx)
        return super().resolve_command(ctx, args)

    def list_commands(self, ctx: Context) -> list[str]:
        """Every command, in ``AREAS`` order (not the order this process happened to ask for them in)."""
        names: list[str] = []
        for area in range(len(AREAS)):
            built = _built(area)
            self.commands.update(built)
            names += built
        return names

    def invoke(self, ctx: Context) -> Any:
        from hq.cli.common import fail
        from hq.errors import StorageFailed

        try:
            return super().invoke(ctx)
        except StorageFailed as exc:
            fail(f"{exc.problem}: {exc}")


app = typer.Typer(
    cls=HqCommands, help="The head-office server and its administration.", no_args_is_help=True, add_completion=False
)
"""The whole ``hq`` group: its areas' commands come in through ``HqCommands`` as they are asked for."""


@app.callback()
def _group() -> None:
    """Nothing of its own: typer makes a group of an app only when it has a callback or commands."""
