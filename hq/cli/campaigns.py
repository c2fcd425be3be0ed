"""`tillpoint hq campaign ...`: campaigns (docs/campaigns.md): store one, show, list, pause, resume, end,
run what is due (a timer calls ``run`` every few minutes), report what one earned (a table, JSON, CSV or
an SVG chart), what the whole programme earns against the holdout, and the chain-wide settings."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from hq.cli.common import DEFAULT_DB, DbOpt, console, fail, hq_store, print_rows, read_json
from terminal.console import JsonOpt

app = typer.Typer(
    name="campaign", help="Campaigns: put, show, list, pause, resume, end, run, report, programme, settings."
)

AsOf = Annotated[str | None, typer.Option("--as-of", help="The reference day YYYY-MM-DD (default: today, UTC).")]


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


FormatOpt = Annotated[Format, typer.Option("--format", help="table, json or csv.")]


@app.command("put")
def put(
    campaign_id: str,
    file: Annotated[Path, typer.Argument(help="The campaign JSON (docs/campaigns.md).")],
    by: Annotated[str, typer.Option(help="Who stores it.")] = "head office",
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Check a campaign and store it under ID (a changed spec applies to the runs after it). Prints JSON."""
    from hq.campaigns import CampaignInvalid, save
    from hq.segments import UnknownSegment

    data = read_json(file)
    with hq_store(db) as store:
        try:
            done = save(store.db, campaign_id, data, by)
        except (CampaignInvalid, UnknownSegment) as exc:
            fail(exc)
    print(json.dumps(done))


@app.command("show")
def show(campaign_id: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """A campaign, its spec, state, whether it is served (``served``; if not, ``not_served`` says why) and runs.
    Prints JSON."""
    from hq.campaigns import UnknownCampaign
    from hq.campaigns import show as shown

    with hq_store(db, create=False) as store:
        try:
            print(json.dumps(shown(store.db, campaign_id), indent=2))
        except UnknownCampaign as exc:
            fail(exc)


@app.command("list")
def listed(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Every campaign; one today's rules refuse is not served, with why (``served``: ``no: <reason>``)."""
    from hq.campaigns import all_campaigns

    with hq_store(db, create=False) as store:
        rows = all_campaigns(store.db)
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        shown = [
            {
                **row,
                "served": "yes" if row["served"] else f"no: {row['not_served']['code']}: {row['not_served']['reason']}",
            }
            for row in rows
        ]
        print_rows(shown, ["campaign_id", "name", "state", "served", "version", "updated_at"])


def _state(campaign_id: str, state: str, db: str) -> None:
    from hq.campaigns import CampaignInvalid, UnknownCampaign, change_state

    with hq_store(db) as store:
        try:
            print(json.dumps(change_state(store.db, campaign_id, state)))
        except (CampaignInvalid, UnknownCampaign) as exc:
            fail(exc)


@app.command("pause")
def pause(campaign_id: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """No more runs until resumed (coupons issued stay valid). Prints JSON."""
    _state(campaign_id, "paused", db)


@app.command("resume")
def resume(campaign_id: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """Runs again as its schedule says. Prints JSON."""
    _state(campaign_id, "active", db)


@app.command("end")
def end(campaign_id: str, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """No more runs, ever (its report stays). Prints JSON."""
    _state(campaign_id, "ended", db)


@app.command("run")
def run(
    campaign_id: Annotated[
        str | None, typer.Argument(help="One campaign (default: every active one that is due).")
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(
            help="Run as at this ISO time with an offset (default: now; refused as clock_suspect while head "
            "office's clock disagrees with its tills)."
        ),
    ] = None,
    day: Annotated[
        str | None, typer.Option(help="With CAMPAIGN: run this local day's occasion again (YYYY-MM-DD).")
    ] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """Run what is due: idempotent (a rerun issues nothing twice), safe to start from a timer on several
    hosts at once. Prints JSON: what each run did."""
    from datetime import date

    from hq.campaigns import CampaignInvalid, UnknownCampaign, run_due, run_now, run_one
    from hq.segments import UnknownSegment

    with hq_store(db) as store:
        try:
            moment = run_now(store.db, now)
            if campaign_id is None:
                done = run_due(store.db, moment)
            else:
                one = run_one(store.db, campaign_id, moment, occasion_day=date.fromisoformat(day) if day else None)
                done = [one] if one is not None else []
        except (CampaignInvalid, UnknownCampaign, UnknownSegment, ValueError) as exc:
            fail(exc)
    print(json.dumps(done))


@app.command("report")
def report(
    campaign_id: str,
    as_of: AsOf = None,
    fmt: FormatOpt = Format.TABLE,
    svg: Annotated[Path | None, typer.Option(help="Also write the chart (SVG) to this file.")] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """What a campaign earned: per arm, targeted, issued, delivered to tills, redeemed; per variant, the
    difference from control in visits, spend and margin per member with a 95 % interval."""
    from hq.campaigns import UnknownCampaign
    from hq.outcomes import as_csv, as_svg, campaign_report
    from hq.segments import SegmentInvalid, reference_day

    with hq_store(db, create=False) as store:
        try:
            found = campaign_report(store.db, campaign_id, reference_day(as_of))
        except (UnknownCampaign, SegmentInvalid) as exc:
            fail(exc)
    if svg is not None:
        svg.write_text(as_svg(found), encoding="utf-8")
    if as_json or fmt is Format.JSON:
        print(json.dumps(found, indent=2))
    elif fmt is Format.CSV:
        print(as_csv(found), end="")
    else:
        console.print(f"[bold]{escape(found['name'])}[/] ({campaign_id}) as of {found['as_of']}", highlight=False)
        print_rows(
            found["arms"],
            ["arm", "targeted", "issued", "delivered", "redeemed", "redemption_rate", "visits", "spend", "margin"],
        )
        print_rows(
            found["effects"], ["variant", "metric", "treated", "control", "difference", "low", "high", "significant"]
        )


@app.command("programme")
def programme(as_of: AsOf = None, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False) -> None:
    """What the whole programme earns: each holdout period, everyone else against the holdout."""
    from hq.outcomes import programme_report
    from hq.segments import SegmentInvalid, reference_day

    with hq_store(db, create=False) as store:
        try:
            found = programme_report(store.db, reference_day(as_of))
        except SegmentInvalid as exc:
            fail(exc)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    for period in found:
        console.print(
            f"[bold]{period['period_id']}[/] {period['starts']}..{period['ends']} holdout {period['share']:.1%}: "
            f"{period['holdout_members']} held out, {period['programme_members']} in the programme",
            highlight=False,
        )
        print_rows(period["effects"], ["metric", "programme", "holdout", "difference", "low", "high", "significant"])


@app.command("settings")
def settings(
    file: Annotated[
        Path | None, typer.Argument(help="New settings JSON: offer_cap, holdout, margins (default: show them).")
    ] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
) -> None:
    """The chain-wide offer cap, holdout and category margins. Prints JSON."""
    from hq.campaigns import CampaignInvalid, save_settings, settings_of

    with hq_store(db) as store:
        if file is None:
            print(settings_of(store.db).model_dump_json(indent=2))
            return
        data = read_json(file)
        try:
            print(save_settings(store.db, data).model_dump_json(indent=2))
        except CampaignInvalid as exc:
            fail(exc)
