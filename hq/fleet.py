"""The fleet as Prometheus metrics: one set of gauges per till, read from the fleet view at scrape time.

``GET /metrics`` on head office (administrator token) serves them; ``deploy/prometheus/tillpoint.rules.yml``
alerts on them (a till silent, a backlog old, a clock off, a reader missing). Each scrape reads the
fleet once; nothing is cached, so two head-office processes answer the same.

``problems`` names what is wrong with one till by the same limits as those alerts, and ``worst_first``
orders the fleet by it (the back office's fleet page).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

READER_DOWN_STATES = frozenset({"removed"})
"""The reader event after which a reader or scanner counts as missing. An ``error`` is a failed read (a
mute card, a card pulled away too soon) on a reader that is still there; ``added`` brings it back."""

Fleet = Callable[[], list[dict[str, Any]]]


def families(rows: list[dict[str, Any]]) -> list[GaugeMetricFamily]:
    """The metric families of a fleet view (pure: rows in, families out)."""
    labels = ["terminal", "store"]
    out = {
        "silent": GaugeMetricFamily(
            "tillpoint_hq_terminal_silent_seconds", "Seconds since head office last heard from the till", labels=labels
        ),
        "backlog": GaugeMetricFamily(
            "tillpoint_hq_terminal_backlog_seconds",
            "Age of the till's oldest entry not yet at head office",
            labels=labels,
        ),
        "pending": GaugeMetricFamily(
            "tillpoint_hq_terminal_pending_entries", "Entries the till holds that head office has not", labels=labels
        ),
        "clock": GaugeMetricFamily(
            "tillpoint_hq_terminal_clock_offset_seconds", "The till's clock minus head office's", labels=labels
        ),
        "disk": GaugeMetricFamily(
            "tillpoint_hq_terminal_free_disk_bytes", "Free space where the till keeps its data", labels=labels
        ),
        "crashes": GaugeMetricFamily(
            "tillpoint_hq_terminal_loop_crashes", "Sync loop crashes since the till started", labels=labels
        ),
        "revoked": GaugeMetricFamily(
            "tillpoint_hq_terminal_revoked", "1 when the till's credential is revoked", labels=labels
        ),
        "pushed": GaugeMetricFamily(
            "tillpoint_hq_terminal_pushed_entries_today",
            "Entries head office stored of the till today (its day, UTC), against --push-entries-per-day",
            labels=labels,
        ),
        "pushed_bytes": GaugeMetricFamily(
            "tillpoint_hq_terminal_pushed_bytes_today",
            "Bytes of entries head office stored of the till today, against --push-bytes-per-day",
            labels=labels,
        ),
        "push_refused": GaugeMetricFamily(
            "tillpoint_hq_terminal_push_refused_today",
            "The till's pushes refused today for passing the day's bound (push_limited)",
            labels=labels,
        ),
        "reader": GaugeMetricFamily(
            "tillpoint_hq_terminal_reader_up",
            "1 when the reader or scanner's last event says it works",
            labels=[*labels, "reader", "state"],
        ),
    }
    for row in rows:
        key = [str(row["terminal_id"]), str(row["store_id"])]
        _add(out["silent"], key, row.get("silent_seconds"))
        _add(out["backlog"], key, row.get("backlog_seconds"))
        _add(out["pending"], key, row.get("pending"))
        _add(out["clock"], key, row.get("clock_offset"))
        _add(out["disk"], key, row.get("free_disk_bytes"))
        _add(out["crashes"], key, row.get("loop_crashes"))
        _add(out["revoked"], key, 1 if row.get("revoked") else 0)
        _add(out["pushed"], key, row.get("pushed_entries_today"))
        _add(out["pushed_bytes"], key, row.get("pushed_bytes_today"))
        _add(out["push_refused"], key, row.get("push_refused_today"))
        for reader in row.get("readers") or []:
            up = 0 if reader["state"] in READER_DOWN_STATES else 1
            out["reader"].add_metric([*key, str(reader["name"]), str(reader["state"])], up)
    return list(out.values())


def _add(family: GaugeMetricFamily, labels: list[str], value: float | int | None) -> None:
    if value is not None:
        family.add_metric(labels, float(value))


class _FleetCollector(Collector):
    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet

    def collect(self) -> Iterator[Metric]:
        yield from families(self._fleet())


def exposition(fleet: Fleet) -> tuple[bytes, str]:
    """The Prometheus text of the fleet now, and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FleetCollector(fleet))
    return generate_latest(registry), CONTENT_TYPE_LATEST


SILENT_S = 600.0
"""Silent longer than this (seconds since head office last heard from it): offline (alert ``TillSilent``)."""
BACKLOG_S = 1800.0
CLOCK_S = 120.0
LOW_DISK_BYTES = 500_000_000


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with a till: a stable code and how bad (higher first)."""

    code: str
    weight: int


PROBLEMS = {
    "offline": 60,
    "reader_missing": 50,
    "backlog_old": 40,
    "never_reported": 30,
    "clock_wrong": 25,
    "disk_low": 20,
    "loop_crashed": 10,
    "last_error": 5,
    "revoked": 1,
}
"""Every problem code and its weight: a till that cannot sell or sync comes before one that only warns."""


def problems(row: dict[str, Any]) -> list[Problem]:
    """What is wrong with one till of the fleet view, worst first (pure; the alert rules' limits). A revoked
    till is only that."""
    if row.get("revoked"):
        return [Problem("revoked", PROBLEMS["revoked"])]  # out of service on purpose: nothing else matters
    found: list[str] = []
    silent, backlog = row.get("silent_seconds"), row.get("backlog_seconds")
    if silent is None or silent > SILENT_S:
        found.append("offline")
    if any(r["state"] in READER_DOWN_STATES for r in row.get("readers") or []):
        found.append("reader_missing")
    if backlog is not None and backlog > BACKLOG_S:
        found.append("backlog_old")
    if row.get("reported_at") is None:
        found.append("never_reported")
    if row.get("clock_offset") is not None and abs(float(row["clock_offset"])) > CLOCK_S:
        found.append("clock_wrong")
    if row.get("free_disk_bytes") is not None and int(row["free_disk_bytes"]) < LOW_DISK_BYTES:
        found.append("disk_low")
    if row.get("loop_crashes"):
        found.append("loop_crashed")
    if row.get("last_error"):
        found.append("last_error")
    return sorted((Problem(code, PROBLEMS[code]) for code in found), key=lambda p: -p.weight)


def worst_first(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[Problem]]]:
    """The fleet with each till's problems, what is wrong first: by the sum of their weights, then the
    longest silent, then the till's id (pure)."""
    rated = [(row, problems(row)) for row in rows]

    def key(rated_row: tuple[dict[str, Any], list[Problem]]) -> tuple[int, float, str]:
        row, found = rated_row
        silent = row.get("silent_seconds")
        return (
            -sum(p.weight for p in found),
            -(float("inf") if silent is None else float(silent)),
            str(row["terminal_id"]),
        )

    return sorted(rated, key=key)
