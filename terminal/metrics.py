"""Prometheus metrics of one till, and the liveness watchdog that feeds systemd.

``Metrics`` owns its own ``CollectorRegistry`` (several daemons can live in one test process). The
daemon subscribes ``Metrics.observe`` to its event stream, so counters follow exactly what the
cashier saw; store-derived figures are read at scrape time from a ``SyncFigures`` source:

    tillpoint_taps_total{reader}                  card taps read (identified or refused)
    tillpoint_scans_total{scanner}                QR / barcode scans decoded
    tillpoint_sales_total{kind}                   transactions approved (sale, void, ...)
    tillpoint_rejections_total{code}              refusals by stable rejection code
    tillpoint_journal_pending                     journal entries not yet acknowledged by head office
    tillpoint_journal_resent_total                entries head office acknowledged, lost (its database went
                                                  back) and asked for again
    tillpoint_journal_refused                     entries head office refused even alone (body_too_large,
                                                  txn_id_taken), reported to it and kept in the journal
    tillpoint_offline_seconds                     how long head office has been unreachable (0 online)
    tillpoint_sync_lag_seconds                    age of the oldest unacknowledged journal entry
    tillpoint_last_sync_ok_timestamp_seconds      when a sync round last succeeded
    tillpoint_decode_fps{scanner}                 frames per second the QR decoder got through since the
                                                  previous scrape (from each scanner's ``stats.decoded``)
    tillpoint_decoded_frames_total{scanner}       frames decoded
    tillpoint_reader_up{reader}                   1 while a reader is present and working, else 0
    tillpoint_loop_seconds_since_progress{loop}   per supervised loop (watchdog)
    tillpoint_watchdog_healthy                    1 while every supervised loop makes progress

``Watchdog`` pings systemd (``WATCHDOG=1``) only while every supervised loop (reader, scanner,
sync) has shown progress within its limit; a hung loop stops the pings, and systemd restarts the
service after ``WatchdogSec``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from terminal.ports import Clock

log = logging.getLogger("tillpoint.watchdog")
disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series are noise on a till

Notify = Callable[[str], None]
Probe = Callable[[], float | None]


@dataclass(frozen=True, slots=True)
class SyncFigures:
    """What the store says about sync, read at scrape time. Times are ISO 8601 UTC or None."""

    pending: int
    oldest_pending_at: str | None
    offline_since: str | None
    last_sync_ok: str | None
    resent: int = 0
    refused: int = 0


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


class _SyncCollector(Collector):
    def __init__(self, source: Callable[[], SyncFigures | None], clock: Clock) -> None:
        self.source = source
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        try:
            figures = self.source()
        except Exception:  # a failing store must not break the scrape of everything else
            log.warning("metrics: could not read sync figures from the store", exc_info=True)
            figures = None
        if figures is None:
            return
        now = self.clock()
        offline, oldest, ok = (
            _epoch(x) for x in (figures.offline_since, figures.oldest_pending_at, figures.last_sync_ok)
        )
        yield GaugeMetricFamily(
            "tillpoint_journal_pending", "Journal entries not yet acknowledged by head office.", value=figures.pending
        )
        yield CounterMetricFamily(
            "tillpoint_journal_resent",
            "Journal entries head office had acknowledged, no longer held and asked for again.",
            value=figures.resent,
        )
        yield GaugeMetricFamily(
            "tillpoint_journal_refused",
            "Journal entries head office refuses even alone (body_too_large, txn_id_taken), reported to it and "
            "kept here.",
            value=figures.refused,
        )
        yield GaugeMetricFamily(
            "tillpoint_offline_seconds",
            "Seconds since head office became unreachable (0 online).",
            value=max(0.0, now - offline) if offline else 0.0,
        )
        yield GaugeMetricFamily(
            "tillpoint_sync_lag_seconds",
            "Age of the oldest unacknowledged journal entry.",
            value=max(0.0, now - oldest) if oldest else 0.0,
        )
        if ok is not None:
            yield GaugeMetricFamily(
                "tillpoint_last_sync_ok_timestamp_seconds", "Unix time of the last successful sync round.", value=ok
            )


class _ScannerCollector(Collector):
    """Decode figures read from scanners that keep ``stats.decoded`` (drivers/camera.py does)."""

    def __init__(self, source: Callable[[], Iterable[Any]], clock: Clock) -> None:
        self.source = source
        self.clock = clock
        self.began = clock()
        self.last: dict[str, tuple[float, int]] = {}

    def collect(self) -> Iterator[Metric]:
        fps = GaugeMetricFamily(
            "tillpoint_decode_fps", "Frames the QR decoder got through per second.", labels=["scanner"]
        )
        total = CounterMetricFamily("tillpoint_decoded_frames", "Frames decoded.", labels=["scanner"])
        now = self.clock()
        for scanner in list(self.source()):
            decoded = getattr(getattr(scanner, "stats", None), "decoded", None)
            if not isinstance(decoded, int):
                continue
            name = str(getattr(scanner, "name", "?"))
            then, before = self.last.get(name, (self.began, 0))
            self.last[name] = (now, decoded)
            fps.add_metric([name], (decoded - before) / (now - then) if now > then else 0.0)
            total.add_metric([name], decoded)
        yield fps
        yield total


PRINTER_REACHABLE = "1 while the printer in the middle reaches the real printer (0: the POS is refused, as by it)."
RECEIPTS_KEPT = "1 while captured receipts are kept on disk (0: the receipts directory is read-only or full)."


class Metrics:
    def __init__(self, terminal_id: str, clock: Clock = time.time) -> None:
        self.registry = CollectorRegistry()
        self.terminal_id = terminal_id
        r = self.registry
        self.taps = Counter("tillpoint_taps", "Card taps read, by reader.", ["reader"], registry=r)
        self.scans = Counter("tillpoint_scans", "QR and barcode scans decoded, by scanner.", ["scanner"], registry=r)
        self.sales = Counter("tillpoint_sales", "Transactions approved, by kind.", ["kind"], registry=r)
        self.rejections = Counter("tillpoint_rejections", "Refusals, by rejection code.", ["code"], registry=r)
        self.receipts = Counter(
            "tillpoint_receipts",
            "Receipts captured from the POS's print stream, by what became of them (sold, read, unread, "
            "refused) and code.",
            ["state", "code"],
            registry=r,
        )
        self._gauges: dict[str, Gauge] = {}  # made at their first event: a till without a printer has none
        self.reader_up = Gauge(
            "tillpoint_reader_up", "1 while the reader is present and working.", ["reader"], registry=r
        )
        self.loop_age = Gauge(
            "tillpoint_loop_seconds_since_progress",
            "Seconds since a supervised loop last made progress.",
            ["loop"],
            registry=r,
        )
        self.watchdog_healthy = Gauge(
            "tillpoint_watchdog_healthy", "1 while every supervised loop makes progress.", registry=r
        )
        self.store_rebuilds = Counter("tillpoint_store_rebuilds", "Damaged caches rebuilt at start.", registry=r)
        self.loop_errors = Counter(
            "tillpoint_loop_errors",
            "Rounds of a supervised loop that failed, by loop and "
            "error (SyncError: head office; Rejected: the till's store; others: bugs).",
            ["loop", "error"],
            registry=r,
        )
        self.listener_errors = Counter(
            "tillpoint_listener_errors",
            "Event listeners that failed, by event type (logged with the traceback; what the event says stands).",
            ["event"],
            registry=r,
        )
        self.clock = clock

    def watch_store(self, source: Callable[[], SyncFigures | None]) -> None:
        self.registry.register(_SyncCollector(source, self.clock))

    def watch_scanners(self, source: Callable[[], Iterable[Any]], clock: Callable[[], float] = time.monotonic) -> None:
        """Export decode figures of the scanners ``source()`` returns at each scrape; rates are per
        second of ``clock`` (monotonic)."""
        self.registry.register(_ScannerCollector(source, clock))

    def observe(self, event: dict[str, Any]) -> None:
        """Count one daemon event (subscribe this to ``Daemon.subscribers``)."""
        kind = event.get("type")
        if kind == "member" or (kind == "rejected" and "reader" in event):
            self.taps.labels(str(event.get("reader", "?"))).inc()
        if kind in ("scan", "qr"):
            self.scans.labels(str(event.get("scanner", "?"))).inc()
        if kind in ("sale", "void", "refund", "payment", "redeem"):
            self.sales.labels(kind).inc()
        elif kind == "rejected":
            self.rejections.labels(str(event.get("code", "unknown"))).inc()
        elif kind == "receipt":
            self.receipts.labels(str(event.get("state", "?")), str(event.get("code") or "")).inc()
        elif kind == "printer":
            self._gauge("tillpoint_printer_reachable", PRINTER_REACHABLE).set(
                0 if event.get("state") == "unreachable" else 1
            )
        elif kind == "receipts":
            self._gauge("tillpoint_receipts_kept_ok", RECEIPTS_KEPT).set(
                0 if event.get("state") == "keep_failed" else 1
            )
        elif kind == "reader" and event.get("reader"):
            self.reader_up.labels(str(event["reader"])).set(1 if event.get("kind") == "added" else 0)

    def _gauge(self, name: str, meaning: str) -> Gauge:
        if name not in self._gauges:
            self._gauges[name] = Gauge(name, meaning, registry=self.registry)
        return self._gauges[name]

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format of every metric, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


@dataclass
class _Loop:
    probe: Probe
    limit: float


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Half of systemd's WatchdogSec= (from $WATCHDOG_USEC) when the watchdog is meant for us."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


class Watchdog:
    """Checks the supervised loops every ``interval`` s and pings only while all make progress."""

    def __init__(
        self,
        notify: Notify,
        interval: float | None,
        metrics: Metrics | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.notify = notify
        self.interval = interval
        self.metrics = metrics
        self.clock = clock
        self.loops: dict[str, _Loop] = {}
        self.pings = 0
        self._stalled: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, name: str, probe: Probe, limit: float) -> None:
        """Supervise a loop: ``probe()`` is the monotonic time of its last progress (None: not yet)."""
        self.loops[name] = _Loop(probe, limit)

    def stalled(self) -> dict[str, float]:
        """Loops past their limit, with the seconds since their last progress."""
        now, late = self.clock(), {}
        for name, loop in list(self.loops.items()):
            last = loop.probe()
            age = 0.0 if last is None else max(0.0, now - last)
            if self.metrics is not None:
                self.metrics.loop_age.labels(name).set(age)
            if age > loop.limit:
                late[name] = age
        return late

    def check(self) -> bool:
        """One round: ping systemd if every loop is alive; say which one is not, once, if not."""
        late = self.stalled()
        if self.metrics is not None:
            self.metrics.watchdog_healthy.set(0 if late else 1)
        if late:
            if sorted(late) != self._stalled:
                words = ", ".join(f"{name} ({age:.0f} s)" for name, age in sorted(late.items()))
                log.error(
                    "watchdog: no progress in %s; not pinging systemd, so it restarts the service",
                    words,
                    extra={"loops": ",".join(sorted(late))},
                )
                self.notify(f"STATUS=stalled: {words}")
            self._stalled = sorted(late)
            return False
        if self._stalled:
            log.warning("watchdog: every loop makes progress again")
            self.notify("STATUS=running")
            self._stalled = []
        if self.interval is not None:
            self.notify("WATCHDOG=1")
            self.pings += 1
        return True

    def start(self) -> None:
        self.check()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        period = self.interval or 5.0
        while not self._stop.wait(period):
            try:
                self.check()
            except Exception:  # the watchdog thread must outlive a bad probe; no ping this round
                log.exception("watchdog check failed")


def serve(metrics: Metrics, listen: str) -> Callable[[], None]:
    """A metrics-only HTTP listener on ``host:port`` (for a remote Prometheus); returns its stop."""
    from prometheus_client import start_http_server

    host, _, port = listen.rpartition(":")
    server, thread = start_http_server(int(port), host.strip("[]") or "0.0.0.0", registry=metrics.registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)

    return stop
