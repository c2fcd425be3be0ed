"""Receipt templates: a POS's receipt layout as data, and what a template reads from a receipt. Pure.

A chain writes one template per POS model and language (TOML)::

    name = "acme-pos5-en"
    pos_model = "ACME POS 5"
    language = "en"
    encoding = "cp437"            # the printer's single-byte code page
    multibyte = "cp932"           # Kanji mode: cp932 (Japanese) or gb18030 (Chinese)
    kanji_default = false         # the printer starts in Kanji mode (Chinese printers do)
    width = 42                    # characters per line (Font A)
    decimals = 2                  # digits after the decimal separator in printed prices
    number_scope = "store"        # receipt numbers never repeat in a store ("day": they start again each day)
    time_format = "%Y-%m-%d %H:%M"  # how patterns.time prints the sale's time (strptime): a receipt's age
    [patterns]
    item = '^(?P<name>.+?)\\s+(?P<qty>\\d+)\\s*x\\s*(?P<price>[\\d.,]+)\\s+(?P<amount>[\\d.,]+)$'
    discount = '^Discount.*?-(?P<amount>[\\d.,]+)$'
    total = '^TOTAL\\s+(?P<amount>[\\d.,]+)$'
    tax = '^VAT.*?(?P<amount>[\\d.,]+)$'
    number = '^Receipt\\s*#?\\s*(?P<number>\\S+)'
    time = '(?P<time>\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2})'

An item printed over two lines (or up to four) is a list of patterns, one per line, matched against
consecutive lines; the groups of all its lines make the item::

    item = ['^(?P<name>\\D.*)$',                                      # Whole milk 1L
            '^(?P<qty>\\d+) x (?P<price>[\\d.,]+)\\s+(?P<amount>[\\d.,]+)$']   #   2 x 1.50      3.00

A ``sku`` pattern reads a line under an item that gives its sku. An item line needs ``amount`` or ``price`` (unit price), may have ``qty`` (default 1, or amount/price)
and ``sku`` or ``name`` (the line's sku is the sku, else the name). A receipt is read when it has at
least one item and a total, and the items less the discounts come to the total; otherwise it is
refused with a stable code and kept, never dropped.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from terminal.errors import Code, Rejected
from terminal.model import Basket, Line
from terminal.receipts.escpos import Captured

FIELDS = ("sku", "discount", "total", "tax", "number", "time")
MAX_ITEM_LINES = 4


class Patterns(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    item: str | tuple[str, ...]
    """One pattern, or one per line of an item printed over several lines (at most ``MAX_ITEM_LINES``)."""
    total: str
    sku: str | None = None
    """A line under an item giving its sku (group ``sku``)."""
    discount: str | None = None
    tax: str | None = None
    number: str | None = None
    time: str | None = None

    @field_validator("*")
    @classmethod
    def _compiles(cls, value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
        if isinstance(value, tuple) and not 1 <= len(value) <= MAX_ITEM_LINES:
            raise ValueError(f"an item is printed over 1 to {MAX_ITEM_LINES} lines, not {len(value)}")
        for pattern in (value,) if isinstance(value, str) else value or ():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from exc
        return value

    @property
    def item_lines(self) -> tuple[str, ...]:
        """The item's patterns, one per printed line."""
        return (self.item,) if isinstance(self.item, str) else self.item


class Template(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=64)]
    pos_model: str = ""
    language: str = ""
    encoding: str = "cp437"
    multibyte: str = "cp932"
    kanji_default: bool = False
    width: Annotated[int, Field(ge=16, le=80)] = 42
    decimals: Annotated[int, Field(ge=0, le=4)] = 2
    number_scope: Literal["store", "day"] = "store"
    """How long the POS's receipt numbers (``patterns.number``) stay unique: ``store`` (never twice in a store) or
    ``day`` (they start again each day). A receipt of a number already sold is a reprint (``receipt_reprint``)."""
    time_format: Annotated[str, Field(max_length=64)] | None = None
    """How ``patterns.time`` prints the sale's time, as ``strptime`` reads it (``"%Y-%m-%d %H:%M"``); without it a
    receipt's age is not known, so ``[receipts] max_age_days`` cannot refuse it and its rows are kept for ever."""
    patterns: Patterns

    @field_validator("encoding", "multibyte")
    @classmethod
    def _codec(cls, value: str) -> str:
        try:
            "".encode(value)
        except LookupError as exc:
            raise ValueError(f"unknown encoding {value!r}") from exc
        return value

    @field_validator("patterns")
    @classmethod
    def _groups(cls, value: Patterns) -> Patterns:
        item = {g for pattern in value.item_lines for g in re.compile(pattern).groupindex}
        if "amount" not in item and "price" not in item:
            raise ValueError("the item pattern needs a group 'amount' or 'price'")
        if "sku" not in item and "name" not in item:
            raise ValueError("the item pattern needs a group 'sku' or 'name'")
        if "amount" not in re.compile(value.total).groupindex:
            raise ValueError("the total pattern needs a group 'amount'")
        return value


def load_template(text: str) -> Template:
    """A template from its TOML text; ``Rejected(template_invalid)`` naming what is wrong."""
    try:
        return Template.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise Rejected(Code.TEMPLATE_INVALID, f"not TOML: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise Rejected(Code.TEMPLATE_INVALID, f"{where}: {first['msg']}") from exc


@dataclass(frozen=True, slots=True)
class ReadLine:
    name: str
    sku: str
    quantity: int
    unit_price: int
    amount: int


@dataclass(frozen=True, slots=True)
class ReadReceipt:
    """What a template read from one receipt (amounts in minor units)."""

    template: str
    items: tuple[ReadLine, ...]
    discounts: tuple[int, ...]
    total: int | None
    tax: int | None
    number: str | None
    time: str | None
    unread: tuple[str, ...]
    """Lines that no pattern matched (headers, footers, payment lines)."""

    @property
    def basket(self) -> Basket:
        """What the customer paid for: the items net of the receipt's discounts (``net_of``), so the points
        and the rules see the money the POS took, not the prices before its discounts."""
        return net_of(Basket(tuple(Line(x.sku, x.quantity, x.unit_price) for x in self.items)), self.discount)

    @property
    def discount(self) -> int:
        return sum(self.discounts)

    def as_json(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "items": [
                {"name": x.name, "sku": x.sku, "quantity": x.quantity, "unit_price": x.unit_price, "amount": x.amount}
                for x in self.items
            ],
            "discounts": list(self.discounts),
            "total": self.total,
            "tax": self.tax,
            "number": self.number,
            "time": self.time,
            "unread": list(self.unread),
        }


def net_of(basket: Basket, discount: int) -> Basket:
    """``basket`` less ``discount`` (minor units), spread over its lines in proportion to their amounts
    (largest remainders take the odd units); a line whose units no longer share one price is split in two
    lines of its SKU, at a price and at that price plus one. The total is the basket's less the discount."""
    lines = basket.lines
    total = basket.total
    if discount <= 0 or total <= 0:
        return basket
    if discount >= total:
        shares = [line.amount for line in lines]
    else:
        exact = [line.amount * discount for line in lines]
        shares = [e // total for e in exact]
        ranked = sorted(range(len(lines)), key=lambda i: (-(exact[i] % total), i))
        for i in ranked[: discount - sum(shares)]:
            shares[i] += 1
    out: list[Line] = []
    for line, share in zip(lines, shares, strict=True):
        price, odd = divmod(line.amount - share, line.quantity)
        if line.quantity > odd:
            out.append(Line(line.sku, line.quantity - odd, price, line.category))
        if odd:
            out.append(Line(line.sku, odd, price + 1, line.category))
    return Basket(tuple(out))


def money(text: str, decimals: int) -> int:
    """A printed amount in minor units: "1,234.50" (2) -> 123450, "¥1,200" (0) -> 1200, "12,50" -> 1250."""
    digits = re.sub(r"[^\d.,]", "", text)
    if not digits or not any(c.isdigit() for c in digits):
        raise ValueError(f"no amount in {text!r}")
    if decimals:
        m = re.fullmatch(r"(.*?)[.,](\d{" + str(decimals) + "})", digits)
        whole: str = m.group(1) if m else digits
        frac: str = m.group(2) if m else "0"
    else:
        whole, frac = digits, "0"
    units = int(re.sub(r"[.,]", "", whole) or "0")
    return units * int(10**decimals) + int(frac)


def _match_item(patterns: tuple[re.Pattern[str], ...], lines: list[str], at: int) -> dict[str, str | None] | None:
    """The groups of an item starting at ``lines[at]`` (one line per pattern, merged); None: no item there."""
    if at + len(patterns) > len(lines):
        return None
    groups: dict[str, str | None] = {}
    for pattern, line in zip(patterns, lines[at : at + len(patterns)], strict=True):
        m = pattern.search(line)
        if m is None:
            return None
        groups.update({k: v for k, v in m.groupdict().items() if v is not None or k not in groups})
    return groups


def _item(g: dict[str, str | None], decimals: int) -> ReadLine:
    qty = int(g["qty"] or "") if g.get("qty") else None
    price = money(g["price"] or "", decimals) if g.get("price") else None
    amount = money(g["amount"] or "", decimals) if g.get("amount") else None
    if qty is None:
        qty = amount // price if price and amount and amount % price == 0 else 1
    if price is None:
        if amount is None or amount % max(qty, 1):
            raise ValueError("an amount that is not quantity times a unit price")
        price = amount // max(qty, 1)
    name = (g.get("name") or "").strip()
    sku = (g.get("sku") or name).strip()[:64]
    if qty < 1 or not sku:
        raise ValueError("an item without quantity or name")
    return ReadLine(name or sku, sku, qty, price, qty * price if amount is None else amount)


NUMBER_MAX = 200  # characters of a receipt number, as a sale's journal entry holds it
LINES_MAX = 500  # lines of the sale a receipt makes (after the POS's discounts are spread), as its entry holds them


def read(template: Template, lines: list[str] | tuple[str, ...]) -> ReadReceipt:
    """Apply ``template`` to a receipt's text lines; raises nothing (``check`` decides)."""
    p = template.patterns
    rx = {k: re.compile(v) for k in FIELDS if (v := getattr(p, k)) is not None}
    item_rx = tuple(re.compile(x) for x in p.item_lines)
    items: list[ReadLine] = []
    discounts: list[int] = []
    total = tax = None
    number = time = None
    unread: list[str] = []
    texts = [stripped for text in lines if (stripped := text.strip())]
    at = 0
    while at < len(texts):
        line = texts[at]
        at += 1
        hit = False
        if "total" in rx and total is None and (m := rx["total"].search(line)):
            total, hit = _amount(m, template.decimals), True
        elif "discount" in rx and (m := rx["discount"].search(line)):
            got = _amount(m, template.decimals)
            if got is not None:
                discounts.append(got)
                hit = True
        elif "tax" in rx and tax is None and (m := rx["tax"].search(line)):
            tax, hit = _amount(m, template.decimals), True
        elif "sku" in rx and items and total is None and (m := rx["sku"].search(line)):
            last = items[-1]
            sku = (m.groupdict().get("sku") or "").strip()[:64]
            if sku:
                items[-1] = ReadLine(last.name, sku, last.quantity, last.unit_price, last.amount)
                hit = True
        elif total is None and (g := _match_item(item_rx, texts, at - 1)) is not None:
            try:
                items.append(_item(g, template.decimals))
                hit = True
                at += len(item_rx) - 1  # the item's other lines are read
            except ValueError:
                hit = False
        if "number" in rx and number is None and (m := rx["number"].search(line)):
            number, hit = str(m.groupdict().get("number") or m.group(0)), True
        if "time" in rx and time is None and (m := rx["time"].search(line)):
            time, hit = str(m.groupdict().get("time") or m.group(0)), True
        if not hit:
            unread.append(line)
    return ReadReceipt(template.name, tuple(items), tuple(discounts), total, tax, number, time, tuple(unread))


def _amount(m: re.Match[str], decimals: int) -> int | None:
    try:
        return money(m.group("amount"), decimals)
    except (IndexError, ValueError):
        return None


def check(got: ReadReceipt) -> ReadReceipt:
    """``got`` if it is a receipt a sale can be made of; else ``Rejected`` with a stable code."""
    if not got.items or got.total is None:
        raise Rejected(Code.RECEIPT_UNREAD)
    if sum(x.amount for x in got.items) - got.discount != got.total:
        raise Rejected(Code.RECEIPT_TOTAL_MISMATCH)
    if any(x.amount != x.quantity * x.unit_price for x in got.items):
        raise Rejected(Code.RECEIPT_TOTAL_MISMATCH, "An item's amount is not its quantity times its price.")
    if got.number is not None and len(got.number) > NUMBER_MAX:
        raise Rejected(Code.RECEIPT_UNREAD, f"The receipt number is longer than {NUMBER_MAX} characters.")
    if len(got.basket.lines) > LINES_MAX:
        raise Rejected(Code.RECEIPT_UNREAD, f"The receipt makes a sale of more than {LINES_MAX} lines.")
    return got


def read_captured(template: Template, captured: Captured) -> ReadReceipt:
    """A captured receipt read and checked (``Rejected`` when it cannot be a sale)."""
    if captured.failure is not None:
        raise Rejected(Code.RECEIPT_PARSE_FAILED)
    if captured.too_large:
        raise Rejected(Code.RECEIPT_TOO_LARGE)
    if captured.damaged:
        raise Rejected(Code.RECEIPT_DAMAGED)
    return check(read(template, [x.text for x in captured.lines]))


def first_reading(templates: list[Template], captured: Captured) -> ReadReceipt:
    """The reading of the first template that reads ``captured``; the first refusal when none does."""
    refusal: Rejected | None = None
    for t in templates:
        try:
            return read_captured(t, captured)
        except Rejected as exc:
            refusal = refusal or exc
    raise refusal or Rejected(Code.RECEIPT_UNREAD, "No receipt template is configured.")


def try_template(template: Template, stream: bytes) -> list[dict[str, Any]]:
    """What ``template`` reads from each receipt of a saved print stream (``tillpoint receipt try``):
    per receipt its text lines, the reading, and the refusal code when it cannot be a sale."""
    from terminal.receipts.escpos import parse

    shown: list[dict[str, Any]] = []
    for captured in parse(stream, template.encoding, template.multibyte, template.kanji_default):
        got = read(template, [x.text for x in captured.lines])
        row: dict[str, Any] = {
            "digest": captured.digest,
            "cut": captured.cut,
            "lines": [x.text for x in captured.lines],
            "read": got.as_json(),
            "refused": None,
        }
        try:
            read_captured(template, captured)
        except Rejected as exc:
            row["refused"] = {"code": exc.code.value, "message": exc.message}
        shown.append(row)
    return shown
