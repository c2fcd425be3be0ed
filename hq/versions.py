"""Every version of the pricing documents head office issued, and the documents a sale was priced with.

A till names, in each sale, the version (content digest, ``terminal.canonical.doc_digest``) of the
base rule, of every rule document it held and of each coupon it used (``SalePayload.priced_with``).
Head office keeps each version it ever issued (``doc_versions``, written on the one path that stores a
document), so it prices the sale again with exactly those: a difference then is a real one (a till's
bug or a till lying), never a till that had not pulled the newest rules yet.

Naming versions must not let a till choose its rules: a named version must have been current at some
moment in the ``window`` before the sale (head office's time; a till that pulled within it held it), and
a rule document that was current, unchanged, through the whole window must be named (a till cannot
leave out a cap). A sale naming anything else, or a version head office never issued, is priced with
the current documents (what bounds the points it may earn) and flagged ``unknown_doc_version``.
``doc_events`` keeps when each version became current (``-``: deleted).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hq.db.engine import Tx
from hq.recompute import program_of
from sync.protocol import SalePayload
from terminal import loyalty as ly
from terminal.canonical import base_digest, canonical_text, doc_digest
from terminal.loyalty import DEFAULT_BASE_RULE
from terminal.model import EarnRule

KIND_OF_TABLE = {"rule_docs": "rule", "coupons": "coupon", "rules": "base"}
DELETED = "-"
SINCE_EVER = ""
"""The time of the versions held when the history began: current since before any sale it will see."""


def remember(tx: Tx, table: str, key: str, values: Mapping[str, Any], now: str) -> None:
    """Keep the version of a document just stored (rule document, coupon, or the base rule)."""
    kind = KIND_OF_TABLE.get(table)
    if kind is None or values.get("deleted"):
        return
    if kind == "base":
        if key != "base":
            return
        points, per_minor = int(values["points"]), int(values["per_minor"])
        body: Any = {"per_minor": per_minor, "points": points, "rule_id": key}
        digest = base_digest(key, points, per_minor)
    else:
        body = json.loads(str(values["body"]))
        digest = doc_digest(body)
    tx.run(
        "INSERT INTO doc_versions (kind, doc_id, digest, body, first_seen) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (kind, doc_id, digest) DO NOTHING",
        [kind, key, digest, canonical_text(body), now],
    )
    tx.run("INSERT INTO doc_events (kind, doc_id, digest, at) VALUES (?, ?, ?, ?)", [kind, key, digest, now])


def forget(tx: Tx, table: str, key: str, now: str) -> None:
    """A document was deleted: no version of it is current from ``now``."""
    kind = KIND_OF_TABLE.get(table)
    if kind is not None and (kind != "base" or key == "base"):
        tx.run("INSERT INTO doc_events (kind, doc_id, digest, at) VALUES (?, ?, ?, ?)", [kind, key, DELETED, now])


def seed(tx: Tx, now: str) -> None:
    """Keep the versions of the documents held now (when the history begins: current since ever)."""
    del now
    for rule_id, body in tx.all("SELECT rule_id, body FROM rule_docs WHERE deleted = 0"):
        remember(tx, "rule_docs", str(rule_id), {"body": body}, SINCE_EVER)
    for coupon_id, body in tx.all("SELECT coupon_id, body FROM coupons WHERE deleted = 0"):
        remember(tx, "coupons", str(coupon_id), {"body": body}, SINCE_EVER)
    for rule_id, points, per_minor in tx.all("SELECT rule_id, points, per_minor FROM rules WHERE deleted = 0"):
        remember(tx, "rules", str(rule_id), {"points": points, "per_minor": per_minor}, SINCE_EVER)


Timeline = list[tuple[str, str]]
"""When each version of one document became current, oldest first: (time, digest or ``-``)."""


def current_at(timeline: Timeline, at: str) -> str | None:
    """The version current at ``at`` (None: none, or deleted)."""
    found = None
    for when, digest in timeline:
        if when > at:
            break
        found = digest
    return None if found in (None, DELETED) else found


def current_during(timeline: Timeline, start: str, end: str) -> set[str]:
    """Every version current at some moment between ``start`` and ``end``."""
    found = {current_at(timeline, start)} | {d for when, d in timeline if start < when <= end}
    return {d for d in found if d is not None and d != DELETED}


def implausible(
    named: Mapping[str, str], timelines: Mapping[str, Timeline], start: str, end: str, default_base: str
) -> list[str]:
    """What a sale made at ``end`` names that its till cannot have held if it pulled after ``start``: a version
    not current then, or a rule document current and unchanged all along that it leaves out. Pure."""
    problems = []
    for key, digest in sorted(named.items()):
        line = timelines.get(key, [])
        if key == "base":  # before head office ever set one, the base rule was the default
            line = [(SINCE_EVER, default_base), *line]
        if digest not in current_during(line, start, end):
            problems.append(key)
    for key, line in sorted(timelines.items()):
        if not key.startswith("rule:") or key in named:
            continue
        held = current_at(line, start)
        if held is not None and current_during(line, start, end) == {held}:
            problems.append(f"{key} left out")
    return problems


@dataclass(frozen=True, slots=True)
class Priced:
    """The documents to price one sale with, and the versions it named that head office never issued."""

    program: ly.Program | Exception
    coupons: dict[str, Any]
    unknown: tuple[str, ...] = ()
    named: bool = True
    """False: the sale named no versions (an older till): head office's current documents."""


@dataclass
class Documents:
    """Resolves sales' named versions against head office's history, once per batch (read once)."""

    tx: Tx
    window: float = 24 * 3600.0
    """Seconds before a sale in which the versions it names must have been current (head office's time)."""
    slack: float = 300.0
    """Seconds after it too: a till's clock may be that far behind when it pulled a version just issued."""
    _current: tuple[dict[str, Any], EarnRule] | None = None
    _bodies: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    _looked_up: set[str] = field(default_factory=set)
    _current_key: tuple[tuple[str, str], ...] = ()
    _timelines: dict[str, Timeline] = field(default_factory=dict)
    _rules_timed: bool = False
    _coupons_timed: set[str] = field(default_factory=set)

    def current(self) -> tuple[dict[str, Any], EarnRule]:
        if self._current is None:
            docs = {
                str(r[0]): json.loads(r[1])
                for r in self.tx.all("SELECT rule_id, body FROM rule_docs WHERE deleted = 0")
            }
            row = self.tx.one("SELECT rule_id, points, per_minor FROM rules WHERE rule_id = 'base' AND deleted = 0")
            self._current = docs, (EarnRule(str(row[0]), int(row[1]), int(row[2])) if row else DEFAULT_BASE_RULE)
            digests = {rule_id: doc_digest(body) for rule_id, body in docs.items()}
            for rule_id, body in docs.items():
                self._bodies[("rule", rule_id, digests[rule_id])] = body
            base = self._current[1]
            self._current_key = (
                ("base", base_digest(base.rule_id, base.points, base.per_minor)),
                *sorted((f"rule:{k}", d) for k, d in digests.items()),
            )
            self._bodies[("base", "base", base_digest(base.rule_id, base.points, base.per_minor))] = {
                "per_minor": base.per_minor,
                "points": base.points,
                "rule_id": base.rule_id,
            }
            self._bodies[
                (
                    "base",
                    "base",
                    base_digest(DEFAULT_BASE_RULE.rule_id, DEFAULT_BASE_RULE.points, DEFAULT_BASE_RULE.per_minor),
                )
            ] = {
                "per_minor": DEFAULT_BASE_RULE.per_minor,
                "points": DEFAULT_BASE_RULE.points,
                "rule_id": DEFAULT_BASE_RULE.rule_id,
            }
        return self._current

    def load(self, sales: list[SalePayload]) -> None:
        """Read every version the sales name that is not known yet, and when the rule documents and the
        coupons they use were current (a query or two a batch)."""
        self.current()
        self._load_timelines({c for s in sales if s.priced_with is not None for c in s.coupons})
        wanted = {d for s in sales for d in (s.priced_with or {}).values()} - self._looked_up
        if not wanted:
            return
        cond, params = self.tx.in_list("digest", sorted(wanted))
        for kind, doc_id, digest, body in self.tx.all(
            f"SELECT kind, doc_id, digest, body FROM doc_versions WHERE {cond}", params
        ):
            self._bodies[(str(kind), str(doc_id), str(digest))] = json.loads(body)
        self._looked_up |= wanted

    def _load_timelines(self, coupon_ids: set[str]) -> None:
        """When each version of every rule document and of these coupons became current."""
        rows = []
        if not self._rules_timed:
            rows += self.tx.all("SELECT kind, doc_id, digest, at FROM doc_events WHERE kind IN ('rule', 'base')")
            self._rules_timed = True
        wanted = sorted(coupon_ids - self._coupons_timed)
        if wanted:
            cond, params = self.tx.in_list("doc_id", wanted)
            rows += self.tx.all(
                f"SELECT kind, doc_id, digest, at FROM doc_events WHERE kind = 'coupon' AND {cond}", params
            )
            self._coupons_timed |= set(wanted)
        for kind, doc_id, digest, at in sorted(rows, key=lambda r: str(r[3])):
            key = "base" if kind == "base" else f"{kind}:{doc_id}"
            self._timelines.setdefault(key, []).append((str(at), str(digest)))

    def for_sale(self, sale: SalePayload, current_coupons: Mapping[str, Any], made: datetime | None = None) -> Priced:
        """The program and coupon documents to price ``sale`` with (after ``load``); ``made``: when head office
        holds the sale was made (the named versions must have been current in the window before it)."""
        self.current()
        if sale.priced_with is None:
            return Priced(self._current_program(), dict(current_coupons), named=False)
        named = sale.priced_with
        if made is not None:
            lines = {k: v for k, v in self._timelines.items() if not k.startswith("coupon:")}
            lines.update({f"coupon:{c}": self._timelines.get(f"coupon:{c}", []) for c in sale.coupons})
            problems = implausible(
                named, lines, _text(_minus(made, self.window)), _text(_minus(made, -self.slack)), _DEFAULT_BASE
            )
            if problems:
                return Priced(self._current_program(), dict(current_coupons), tuple(problems))
        rule_keys = tuple(sorted((k, d) for k, d in named.items() if not k.startswith("coupon:")))
        unknown = [k for k, d in rule_keys if self._body(k, d) is None]
        if not any(k == "base" for k, _ in rule_keys):
            unknown.append("base")
        coupons: dict[str, Any] = {}
        for coupon_id in sale.coupons:
            digest = named.get(f"coupon:{coupon_id}")
            body = self._body(f"coupon:{coupon_id}", digest) if digest else None
            if body is None:
                unknown.append(f"coupon:{coupon_id}")
            else:
                coupons[coupon_id] = body
        if unknown:
            return Priced(self._current_program(), dict(current_coupons), tuple(sorted(set(unknown))))
        program = _PROGRAMS.get(rule_keys)
        if program is None:
            rules = {k.partition(":")[2]: self._body(k, d) for k, d in rule_keys if k != "base"}
            body = self._body("base", dict(rule_keys)["base"])
            assert body is not None
            program = _parse(rules, EarnRule(str(body["rule_id"]), int(body["points"]), int(body["per_minor"])))
            _remember_program(rule_keys, program)
        return Priced(program, coupons)

    def _body(self, key: str, digest: str) -> Any:
        kind, _, doc_id = key.partition(":")
        return self._bodies.get((kind, doc_id or "base", digest))

    def _current_program(self) -> ly.Program | Exception:
        docs, base = self.current()
        program = _PROGRAMS.get(self._current_key)
        if program is None:
            program = _parse(docs, base)
            _remember_program(self._current_key, program)
        return program


_DEFAULT_BASE = base_digest(DEFAULT_BASE_RULE.rule_id, DEFAULT_BASE_RULE.points, DEFAULT_BASE_RULE.per_minor)


def _minus(moment: datetime, seconds: float) -> datetime:
    try:
        return moment - timedelta(seconds=seconds)
    except OverflowError:
        return (datetime.min if seconds > 0 else datetime.max).replace(tzinfo=UTC)


def _text(moment: datetime) -> str:
    """A time as head office stores it (``db.utc_now``), so texts compare in time order."""
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        pass
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_PROGRAMS: dict[tuple[tuple[str, str], ...], ly.Program | Exception] = {}
"""Programs by the versions they are made of (a version's content never changes), the newest 64."""


_PROGRAMS_LOCK = threading.Lock()


def _remember_program(key: tuple[tuple[str, str], ...], program: ly.Program | Exception) -> None:
    with _PROGRAMS_LOCK:
        while len(_PROGRAMS) >= 64:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
        _PROGRAMS[key] = program


def _parse(docs: Mapping[str, Any], base: EarnRule) -> ly.Program | Exception:
    try:
        return program_of(docs, base)
    except Exception as exc:  # noqa: BLE001 - documents that do not parse price nothing: the caller flags it
        return exc
