"""Head office on several processes: ``tillpoint hq serve --workers N`` against one PostgreSQL.

Uvicorn's own supervisor runs the workers (it binds the socket once, starts N processes that accept
on it, restarts one that dies, and stops them all on SIGTERM). Each worker builds its application
with ``app_from_env``, from the serve options the parent put in ``TILLPOINT_HQ_SERVE``: its own
connection pool, nothing shared in memory. Everything a worker decides is decided in PostgreSQL
(row locks on the terminal being pushed, unique keys on seq and txn_id), so any worker may take any
request; several hosts behind a load balancer work the same way (docs/deploy.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from hq.api.app import create_app
from hq.ingest import PUSH_BYTES_PER_DAY, PUSH_ENTRIES_PER_DAY
from hq.scheduler import CampaignTimer
from hq.store import open_store

ENV = "TILLPOINT_HQ_SERVE"


class ServeOptions(BaseModel):
    """What ``hq serve`` passes to each worker (the parent has already migrated and seeded the database)."""

    db: str
    clock_skew: float = 300.0
    timezone: str = "UTC"
    write_off_points: int = 0
    sun_key_file: str | None = None
    card_key_file: str | None = None
    trust_pos: bool = False
    push_entries_per_day: int = PUSH_ENTRIES_PER_DAY
    push_bytes_per_day: int = PUSH_BYTES_PER_DAY
    campaign_interval: float = 60.0


class NeedsPostgres(ValueError):
    """Several workers share one database server: a SQLite file would serialise them behind its lock."""


def check_workers(db: str, workers: int) -> None:
    if workers < 1:
        raise ValueError("--workers must be 1 or more")
    if workers > 1 and not db.startswith(("postgresql://", "postgres://")):
        raise NeedsPostgres(
            "--workers above 1 needs head office on PostgreSQL (--db postgresql://...); "
            "a SQLite head office serves from one process"
        )


def app_from_env() -> FastAPI:
    """The application of one worker (uvicorn calls this in each worker process)."""
    options = ServeOptions.model_validate_json(os.environ[ENV])
    store = open_store(
        options.db,
        clock_skew=options.clock_skew,
        timezone=options.timezone,
        write_off_points=options.write_off_points,
        sun_key_file=Path(options.sun_key_file) if options.sun_key_file else None,
        card_key_file=Path(options.card_key_file) if options.card_key_file else None,
        trust_pos=options.trust_pos,
        push_entries_per_day=options.push_entries_per_day,
        push_bytes_per_day=options.push_bytes_per_day,
    )
    if options.campaign_interval > 0:  # each worker's timer: runs are idempotent (hq/scheduler.py)
        CampaignTimer(store.db, options.campaign_interval, skew=store.settings.clock_skew).start()
    return create_app(store)  # its pool closes with the process


def serve_workers(
    options: ServeOptions,
    host: str,
    port: int,
    workers: int,
    *,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    log_level: str = "warning",
) -> None:
    """Run ``workers`` head-office processes on one socket until SIGINT/SIGTERM."""
    os.environ[ENV] = options.model_dump_json()
    uvicorn.run(
        "hq.workers:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        timeout_keep_alive=30,
    )
