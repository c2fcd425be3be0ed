"""The pure receipt core: the ESC/POS parser (commands, code pages, cuts), the templates that read a
receipt's lines, the loyalty block, and ``tillpoint receipt try``. Receipts are made with python-escpos."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from terminal.cli import app as cli_app
from terminal.errors import Code, Rejected
from terminal.receipts.block import BlockInfo, qr_native, qr_raster, render, text_width
from terminal.receipts.escpos import Kind, ReceiptParser, Tokenizer, parse
from terminal.receipts.templates import first_reading, load_template, money, read, read_captured
from tests.fixtures.receipts import (
    EN,
    EN2,
    JA,
    ZH,
    Item,
    Sale,
    chinese,
    english,
    japanese,
    make,
    make_two_lines,
    random_sale,
    templates,
    two_line_templates,
)

T = templates()
SALE = Sale((Item("Apples", "1001", 2, 150), Item("Whole milk 1L", "1002", 1, 99)), discount=20)


def parsed(language: str, stream: bytes) -> list:  # type: ignore[type-arg]
    t = T[language]
    return parse(stream, t.encoding, t.multibyte, t.kanji_default)


def expected(language: str, sale: Sale) -> list[tuple[str, int, int]]:
    return [(x.name if language == "ja" else x.sku, x.quantity, x.unit_price) for x in sale.items]


@pytest.mark.parametrize("language", ["en", "ja", "zh"])
def test_generated_receipts_read_back_as_generated(language: str) -> None:
    rng = random.Random(language)
    for _ in range(40):
        sale = random_sale(rng, language, rng.randint(1, 15))
        (captured,) = parsed(language, make(language, sale))
        got = read_captured(T[language], captured)
        assert [(x.sku, x.quantity, x.unit_price) for x in got.items] == expected(language, sale)
        assert got.total == sale.total
        assert got.discount == sale.discount
        assert got.number == sale.number
        assert got.time == sale.time
        assert captured.cut


T2 = two_line_templates()


@pytest.mark.parametrize("language", ["en", "ja", "zh"])
def test_items_printed_over_two_lines_read_back_as_generated(language: str) -> None:
    """Name on one line, ``qty x price  amount`` on the next (and a SKU line under it in English)."""
    rng = random.Random(f"two-{language}")
    t = T2[language]
    for _ in range(40):
        sale = random_sale(rng, language, rng.randint(1, 15))
        (captured,) = parse(make_two_lines(language, sale), t.encoding, t.multibyte, t.kanji_default)
        got = read_captured(t, captured)
        assert [(x.name, x.sku, x.quantity, x.unit_price, x.amount) for x in got.items] == [
            (x.name, x.name if language == "ja" else x.sku, x.quantity, x.unit_price, x.amount) for x in sale.items
        ]
        assert (got.total, got.discount, got.number, got.time) == (sale.total, sale.discount, sale.number, sale.time)
        assert [x.text for x in captured.lines][0] in got.unread  # the header is no item, though its pattern fits


@pytest.mark.parametrize("language", ["en", "ja", "zh"])
def test_a_two_line_receipt_is_not_read_by_a_one_line_template_nor_a_lone_name_line_as_an_item(
    language: str,
) -> None:
    sale = Sale((Item(random_sale(random.Random(3), language, 1).items[0].name, "1001", 2, 150),))
    t = T2[language]
    (captured,) = parse(make_two_lines(language, sale), t.encoding, t.multibyte, t.kanji_default)
    with pytest.raises(Rejected) as one_line:
        read_captured(T[language], captured)
    assert one_line.value.code in (Code.RECEIPT_UNREAD, Code.RECEIPT_TOTAL_MISMATCH)
    lines = [x.text for x in captured.lines]
    detail = next(i for i, x in enumerate(lines) if x.strip()[:1].isdigit())  # the item's second line
    got = read(t, lines[:detail] + lines[detail + 1 :])  # a name line with nothing under it
    assert got.items == () and sale.items[0].name in " ".join(got.unread)


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ("['(?P<name>.+)', '(?P<qty>\\d+)']", "group 'amount' or 'price'"),
        ("['(?P<amount>\\d+)', '(?P<qty>\\d+)']", "group 'sku' or 'name'"),
        ("['(?P<name>.+)', '(unclosed']", "not a regular expression"),
        ("['(?P<name>.+)', 'a', 'b', 'c', '(?P<amount>.+)']", "1 to 4 lines"),
        ("[]", "1 to 4 lines"),
    ],
)
def test_a_bad_multi_line_item_is_refused_naming_what_is_wrong(item: str, problem: str) -> None:
    with pytest.raises(Rejected) as refused:
        load_template(f"name = 'x'\n[patterns]\nitem = {item}\ntotal = '(?P<amount>.+)'")
    assert refused.value.code is Code.TEMPLATE_INVALID and problem in refused.value.message


def test_receipt_try_reads_a_two_line_template(tmp_path: Path) -> None:
    sale = Sale((Item("Whole milk 1L", "1002", 3, 99), Item("Apples", "1001", 2, 150)), discount=20)
    (tmp_path / "en2.toml").write_text(EN2, encoding="utf-8")
    (tmp_path / "en2.bin").write_bytes(make_two_lines("en", sale))
    ok = CliRunner().invoke(
        cli_app, ["receipt", "try", str(tmp_path / "en2.toml"), str(tmp_path / "en2.bin"), "--json"]
    )
    assert ok.exit_code == 0, ok.output
    (shown,) = json.loads(ok.stdout)["receipts"]
    assert [(x["name"], x["sku"], x["quantity"]) for x in shown["read"]["items"]] == [
        ("Whole milk 1L", "1002", 3),
        ("Apples", "1001", 2),
    ]
    assert shown["read"]["total"] == sale.total and shown["refused"] is None


def test_code_pages_kanji_and_layout() -> None:
    (ja,) = parsed("ja", japanese(SALE))
    assert ja.lines[0].text == "アクメ商店" and ja.lines[0].align == "center" and ja.lines[0].bold
    assert ja.kanji and ja.encoding == "cp932"
    (zh,) = parsed("zh", chinese(SALE))
    assert zh.lines[0].text == "顶点超市"
    assert any(x.text == "合计 ¥3.79" for x in zh.lines)
    (en,) = parsed("en", english(Sale((Item("Café crème", "1", 1, 300),)), page="cp858"))
    assert en.lines[0].size == (1, 2)  # double height
    assert any(x.text.startswith("Café crème") for x in en.lines)


def test_image_data_that_looks_like_a_cut_is_not_a_cut() -> None:
    # the logo's raster data holds GS V and ESC i: the tokenizer skips image data by its length
    (captured,) = parsed("en", english(SALE))
    assert captured.lines[0].text == "ACME STORES"


def test_cuts_separate_receipts_and_digests_cover_each_receipts_bytes() -> None:
    import hashlib

    a, b = english(SALE), japanese(SALE)
    got = parsed("ja", a + b + b"no cut yet\n")
    assert [x.cut for x in got] == [True, True, False]
    assert got[0].digest == hashlib.sha256(a).hexdigest() and got[0].raw == a
    assert got[1].digest == hashlib.sha256(b).hexdigest()
    assert got[2].lines[-1].text == "no cut yet"


@given(st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=30))
@settings(max_examples=60, deadline=None)
def test_any_split_of_the_stream_parses_the_same(sizes: list[int]) -> None:
    stream = english(SALE) + japanese(SALE) + chinese(SALE)
    whole = parse(stream, "cp437", "cp932")
    p = ReceiptParser("cp437", "cp932")
    got, i, k = [], 0, 0
    while i < len(stream):
        n = sizes[k % len(sizes)]
        got += p.feed(stream[i : i + n])
        i, k = i + n, k + 1
    last = p.close()
    assert last is None or not last.lines
    assert [(x.lines, x.digest, x.cut_offset) for x in got] == [(x.lines, x.digest, x.cut_offset) for x in whole]


POLLS = [b"\x10\x04\x01", b"\x10\x04\x04", b"\x10\x05\x02", b"\x1dr\x01", b"\x1dI\x42", b"\x1da\xff",
         b"\x1bv", b"\x1bu\x00", b"\x10\x14\x01\x00\x01", b"\x1bp\x00\x19\xfa", b"\x1d(H\x06\x000\x30abcd"]  # fmt: skip


@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=8), st.randoms())
@settings(max_examples=60, deadline=None)
def test_status_requests_and_drawer_kicks_between_prints_leave_the_digest_as_it_is(
    at: list[int], rng: random.Random
) -> None:
    """A POS polls the printer (DLE EOT, GS r, GS I, ESC v ...) between lines, opens the drawer for the sale and
    not for its reprint: the receipt's digest is that of what it prints, whatever came between, in any reads."""
    import hashlib

    receipt = english(SALE)
    logo = receipt.index(b"ACME")
    breaks = [i + 1 for i in range(logo, len(receipt)) if receipt[i] == 0x0A]  # after a printed line
    places = sorted({breaks[k % len(breaks)] for k in at})
    polled, last = b"", 0
    for i in places:
        polled += receipt[last:i] + b"".join(rng.sample(POLLS, rng.randint(1, 4)))
        last = i
    polled += receipt[last:]
    p = ReceiptParser()
    got, i = [], 0
    while i < len(polled):  # in reads of any size: a request split across two is still told
        n = rng.randint(1, 40)
        got += p.feed(polled[i : i + n])
        i += n
    (captured,) = got
    assert captured.digest == hashlib.sha256(receipt).hexdigest() and captured.raw == receipt
    assert captured.size == len(polled) and captured.lines == parsed("en", receipt)[0].lines
    # what is printed is the digest's: another line, another digest
    (other,) = parsed("en", receipt.replace(b"Thank you!", b"Thank you."))
    assert other.digest != captured.digest


@given(st.binary(max_size=4000))
@settings(max_examples=200, deadline=None)
def test_garbage_never_raises_and_every_byte_is_accounted_for(data: bytes) -> None:
    got = parse(data, "cp437", "gb18030", kanji_default=True)
    assert sum(x.size for x in got) == len(data)


def test_truncated_commands_and_unknown_commands() -> None:
    for cut_at in range(1, 60):
        parse(english(SALE)[:cut_at])  # never raises
    got = parse(b"\x1b\xffhello\n\x1dV")
    assert got[0].lines[0].text == "hello" and got[0].unknown == 1 and not got[0].cut
    tokens = list(Tokenizer().feed(b"\x10\x04\x01\x1dr\x01\x1dV\x41\x03"))
    assert [t.kind for t in tokens] == [Kind.STATUS, Kind.STATUS, Kind.CUT]


def test_huge_images_are_skipped_without_being_held() -> None:
    t = Tokenizer()
    head = b"\x1dv0\x00" + (100).to_bytes(2, "little") + (60000).to_bytes(2, "little")
    list(t.feed(head))
    for _ in range(600):
        assert not list(t.feed(b"\x1dV\x00" * 3333 + b"\x00"))
        assert len(t._buf) == 0
    assert [x.kind for x in t.feed(b"\x1dV\x00")] == [Kind.CUT]


def test_money() -> None:
    assert money("1,234.50", 2) == 123450
    assert money("￥1,200", 0) == 1200
    assert money("12,50", 2) == 1250
    assert money("7", 2) == 700
    with pytest.raises(ValueError):
        money("--", 2)


def test_a_receipt_no_template_reads_is_refused_with_a_stable_code() -> None:
    (en,) = parsed("en", english(SALE))
    with pytest.raises(Rejected) as refused:
        first_reading([T["ja"], T["zh"]], en)
    assert refused.value.code is Code.RECEIPT_UNREAD
    assert first_reading([T["ja"], T["en"]], en).template == "acme-en"
    bad_total = read(T["en"], ["Apples 1 x 1.00 1.00", "TOTAL 2.00"])
    assert bad_total.total == 200
    with pytest.raises(Rejected) as mismatch:
        from terminal.receipts.templates import check

        check(bad_total)
    assert mismatch.value.code is Code.RECEIPT_TOTAL_MISMATCH


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.tuples(st.integers(1, 20), st.integers(0, 100_000)), min_size=1, max_size=12),
    share=st.floats(0, 1),
)
def test_a_receipts_discounts_are_spread_over_its_lines(lines: list[tuple[int, int]], share: float) -> None:
    """``net_of``: the basket a receipt's discounts leave is what the customer paid (its total is the items'
    less the discount), each SKU keeps its units, no price goes below zero, and a line gives up the discount's
    share of its amount to within one minor unit."""
    from terminal.model import Basket, Line
    from terminal.receipts.templates import net_of

    basket = Basket(tuple(Line(f"S{i}", q, p) for i, (q, p) in enumerate(lines)))
    discount = int(basket.total * share)
    net = net_of(basket, discount)
    assert net.total == basket.total - discount
    assert all(x.unit_price >= 0 and x.quantity > 0 for x in net.lines)
    for line in basket.lines:
        mine = [x for x in net.lines if x.sku == line.sku]
        assert sum(x.quantity for x in mine) == line.quantity and len(mine) <= 2
        given_up = line.amount - sum(x.amount for x in mine)
        assert abs(given_up - line.amount * discount / max(1, basket.total)) < 1


def test_a_receipt_number_longer_than_the_journal_holds_is_not_read() -> None:
    """A printed number of 300 characters would make a sale the till approves and head office cannot read."""
    (long_number,) = parsed("en", english(Sale(SALE.items, number="9" * 300)))
    with pytest.raises(Rejected) as refused:
        first_reading([T["en"]], long_number)
    assert refused.value.code is Code.RECEIPT_UNREAD and "200" in refused.value.message
    (fits,) = parsed("en", english(Sale(SALE.items, number="9" * 200)))
    assert first_reading([T["en"]], fits).number == "9" * 200


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("name = 'x'\n[patterns]\nitem = '(?P<name>.+)'\ntotal = '(?P<amount>.+)'", "patterns"),
        ("name = 'x'\n[patterns]\nitem = '(?P<name>.+)(?P<amount>\\d+)'\ntotal = '(unclosed'", "patterns.total"),
        (
            "name = 'x'\nencoding = 'klingon'\n[patterns]\nitem = '(?P<sku>.)(?P<price>.)'\ntotal = '(?P<amount>.)'",
            "encoding",
        ),
        ("name = 'x'\nsurprise = 1\n[patterns]\nitem = '(?P<sku>.)(?P<price>.)'\ntotal = '(?P<amount>.)'", "surprise"),
        ("not toml [", "TOML"),
        (
            "name = 'x'\nnumber_scope = 'week'\n[patterns]\nitem = '(?P<sku>.)(?P<price>.)'\ntotal = '(?P<amount>.)'",
            "number_scope",
        ),
    ],
)
def test_bad_templates_are_refused_naming_the_key(text: str, where: str) -> None:
    with pytest.raises(Rejected) as refused:
        load_template(text)
    assert refused.value.code is Code.TEMPLATE_INVALID
    assert where in refused.value.message


def test_the_loyalty_block_in_the_receipts_code_page_and_width() -> None:
    info = BlockInfo(
        member="山田 花子", points_earned=35, balance=1200, tier="Gold: 300 to Platinum", offer="お茶 半額"
    )
    block = render(info, 32, "cp932")
    (captured,) = parse(japanese(SALE)[:-3] + b"\x1c&" + block + b"\x1dV\x00", "cp437", "cp932")
    text = captured.text
    assert "Member: 山田 花子" in text and "Points earned: 35" in text and "Next offer: お茶 半額" in text
    assert all(text_width(x.text) <= 42 for x in captured.lines)
    narrow = parse(render(BlockInfo(offer="x" * 100), 32, "cp437"), "cp437")[0]
    assert max(text_width(x.text) for x in narrow.lines) == 32
    assert b"\x1b@" not in block


def test_qr_commands_hold_the_claim() -> None:
    native = qr_native("https://claim.example/c/ABC")
    assert b"\x1d(k" in native and b"1P0https://claim.example/c/ABC" in native
    raster = qr_raster("https://claim.example/c/ABC")
    assert raster.startswith(b"\x1dv0\x00")
    from tests.fixtures.printer import decode_rasters

    assert decode_rasters(raster) == ["https://claim.example/c/ABC"]


def test_receipt_try_shows_what_a_template_read(tmp_path: Path) -> None:
    (tmp_path / "en.toml").write_text(EN, encoding="utf-8")
    (tmp_path / "ja.toml").write_text(JA, encoding="utf-8")
    (tmp_path / "zh.toml").write_text(ZH, encoding="utf-8")
    (tmp_path / "en.bin").write_bytes(english(SALE) + english(SALE))
    (tmp_path / "ja.bin").write_bytes(japanese(Sale((Item("ラーメン", "1", 2, 800),))))
    runner = CliRunner()
    ok = runner.invoke(cli_app, ["receipt", "try", str(tmp_path / "en.toml"), str(tmp_path / "en.bin"), "--json"])
    assert ok.exit_code == 0, ok.output
    shown = json.loads(ok.stdout)
    assert len(shown["receipts"]) == 2
    assert shown["receipts"][0]["read"]["total"] == SALE.total
    assert [x["sku"] for x in shown["receipts"][0]["read"]["items"]] == ["1001", "1002"]
    text = runner.invoke(cli_app, ["receipt", "try", str(tmp_path / "ja.toml"), str(tmp_path / "ja.bin")])
    assert text.exit_code == 0 and "ラーメン" in text.stdout and "unread: アクメ商店" in text.stdout
    wrong = runner.invoke(cli_app, ["receipt", "try", str(tmp_path / "zh.toml"), str(tmp_path / "en.bin"), "--json"])
    assert wrong.exit_code == 1
    assert json.loads(wrong.stdout)["receipts"][0]["refused"]["code"] == "receipt_unread"
    (tmp_path / "bad.toml").write_text("name = 1", encoding="utf-8")
    bad = runner.invoke(cli_app, ["receipt", "try", str(tmp_path / "bad.toml"), str(tmp_path / "en.bin")])
    assert bad.exit_code == 2


def test_a_receipt_of_more_lines_than_a_sale_holds_is_unread_not_a_failed_capture() -> None:
    from terminal.receipts.templates import check

    lines_max = 500  # the lines a sale's journal entry holds (SalePayload.lines)
    template = load_template(EN)

    def printed(count: int, discount: int = 0) -> list[str]:
        items = [f"Item {n}  {1 + n % 3} x  1.00  {1 + n % 3}.00" for n in range(count)]
        total = sum(1 + n % 3 for n in range(count)) * 100 - discount
        cut = [f"Discount -{discount // 100}.{discount % 100:02d}"] if discount else []
        return [*items, *cut, f"TOTAL {total // 100}.{total % 100:02d}"]

    assert len(check(read(template, printed(lines_max))).basket.lines) == lines_max
    with pytest.raises(Rejected) as refused:  # a sale's entry holds 500 lines: the sale would fail to record
        check(read(template, printed(lines_max + 1)))
    assert refused.value.code is Code.RECEIPT_UNREAD
    # The POS's discount spread over the items splits lines whose units no longer share one price.
    split = read(template, printed(400, discount=399))
    assert len(split.items) == 400 and len(split.basket.lines) > lines_max
    with pytest.raises(Rejected) as refused:
        check(split)
    assert refused.value.code is Code.RECEIPT_UNREAD


def test_receipt_try_says_a_file_holds_no_receipt_and_a_receipt_the_stream_cut_short(tmp_path: Path) -> None:
    (tmp_path / "en.toml").write_text(EN, encoding="utf-8")
    (tmp_path / "empty.bin").write_bytes(b"")
    whole = english(SALE)
    (tmp_path / "cut.bin").write_bytes(whole[: len(whole) // 2])
    runner = CliRunner()
    args = ["receipt", "try", str(tmp_path / "en.toml"), str(tmp_path / "empty.bin"), str(tmp_path / "cut.bin")]
    text = runner.invoke(cli_app, args)
    assert text.exit_code == 1
    assert "empty.bin no receipt in it" in text.stdout
    assert "receipt_unread (no cut: the stream ends inside this receipt)" in text.stdout
    shown = json.loads(runner.invoke(cli_app, [*args, "--json"]).stdout)
    assert shown["no_receipt"] == [str(tmp_path / "empty.bin")]
    assert [r["cut"] for r in shown["receipts"]] == [False]
    alone = runner.invoke(cli_app, ["receipt", "try", str(tmp_path / "en.toml"), str(tmp_path / "empty.bin")])
    assert alone.exit_code == 1 and "no receipt in it" in alone.stdout  # not exit 1 with nothing said


def test_tier_progress_names_the_next_tier_and_what_it_needs() -> None:
    from terminal.loyalty import Ladder, TierLevel, next_tier

    ladder = Ladder((TierLevel("basic", 0), TierLevel("silver", 500), TierLevel("gold", 2000)))
    assert next_tier("basic", 120, ladder) == ("silver", 380)
    assert next_tier("silver", 2500, ladder) == ("gold", 0)
    assert next_tier("gold", 0, ladder) is None


def test_printer_and_receipts_are_off_by_default_and_bad_specs_name_the_key() -> None:
    from terminal.config import Config, validate
    from terminal.errors import ConfigError

    cfg = Config()
    assert not cfg.printer.listen and not cfg.printer.target
    assert not cfg.receipts.attach and not cfg.receipts.enrich
    for bad in ("lpt1", "tcp:printer", "ftp:x"):
        with pytest.raises(ConfigError) as refused:
            validate({"printer": {"target": bad}})
        assert refused.value.key == "printer.target"
    # One end alone would run no relay, without a word: the POS's receipts would go nowhere.
    with pytest.raises(ConfigError) as refused:
        validate({"printer": {"listen": "tcp:127.0.0.1:9100"}})
    assert refused.value.key == "printer.target" and "tcp:127.0.0.1:9100" in str(refused.value)
    with pytest.raises(ConfigError) as refused:
        validate({"printer": {"target": "device:/dev/usb/lp0"}})
    assert refused.value.key == "printer.listen"
    whole = validate({"printer": {"listen": "tcp:127.0.0.1:9100", "target": "device:/dev/usb/lp0"}})
    assert whole.printer.target == "device:/dev/usb/lp0"
    assert cfg.printer.receipt_gap == 10.0 and validate({"printer": {"receipt_gap": 0}}).printer.receipt_gap == 0
    for bad_gap in (-1, 3601, "soon"):
        with pytest.raises(ConfigError) as refused:
            validate({"printer": {"receipt_gap": bad_gap}})
        assert refused.value.key == "printer.receipt_gap"


class FailsOnBoom(ReceiptParser):
    """A parser with a bug that raises on one odd line."""

    def _end_line(self, blank: bool = False) -> None:
        if b"BOOM" in b"".join(data for data, _ in self._text):
            raise ValueError("a bug in reading a line")
        super()._end_line(blank)


def test_a_parser_failure_costs_its_receipt_which_is_kept_and_the_next_receipts_are_read() -> None:
    import hashlib

    odd = english(Sale((Item("BOOM", "1001", 2, 150),), number="0001"))
    good = english(Sale((Item("Apples", "1002", 1, 420),), number="0002"))
    p = FailsOnBoom()
    got = p.feed(odd + good)
    assert p.failures == 1 and "a bug in reading a line" in p.failure
    failed, read_ = got
    # the failed receipt: all its bytes, up to and including its cut, flagged; its lines not read
    assert failed.raw == odd and failed.digest == hashlib.sha256(odd).hexdigest() and failed.cut
    assert failed.failure is not None and "ValueError" in failed.failure and failed.lines == ()
    with pytest.raises(Rejected) as refused:
        first_reading([T["en"]], failed)
    assert refused.value.code is Code.RECEIPT_PARSE_FAILED
    # the next receipt, on the same stream, is read as ever
    assert read_.failure is None and read_.raw == good
    assert first_reading([T["en"]], read_).number == "0002"
    # fed in small pieces, and a failure in the last receipt of a stream that ends without a cut
    p = FailsOnBoom()
    got = [c for i in range(0, len(odd + good), 5) for c in p.feed((odd + good)[i : i + 5])]
    assert [x.failure is None for x in got] == [False, True] and got[1].raw == good
    last = p.feed(b"BOOM\n") + [p.close()]
    assert [x.failure is not None for x in last if x] == [True] and p.failures == 2


def uncut(sale: Sale) -> bytes:
    """A receipt as a POS prints it to a printer without a cutter: no cut at its end."""
    stream = english(sale)
    return stream[: stream.rindex(b"\x1dV")]


def test_on_a_printer_without_a_cutter_the_init_and_a_quiet_spell_end_a_receipt() -> None:
    import hashlib

    a, b = uncut(Sale((Item("Apples", "1001", 2, 150),), number="0001")), uncut(SALE)
    p = ReceiptParser()
    # the init that starts the next receipt ends the one in progress (and belongs to it, as a cut would)
    got = p.feed(b"\x1b@" + a + b"\x1b@" + b)
    assert len(got) == 1 and got[0].raw == b"\x1b@" + a + b"\x1b@" and not got[0].cut
    assert got[0].digest == hashlib.sha256(b"\x1b@" + a + b"\x1b@").hexdigest()
    assert got[0].init and got[0].cut_offset == len(a) + 2  # its loyalty block goes before the init that ended it
    assert first_reading([T["en"]], got[0]).number == "0001"
    assert p.idle() is not None and p.idle() is None  # the POS went quiet: the receipt in progress ends, once
    # an init before anything is printed (after a logo, say) starts nothing: the receipt goes on
    assert p.feed(b"\x1b@\x1b@" + a) == [] and p.idle() is not None
    # a printer that cuts ends its receipts at its cuts alone: an init or a quiet spell mid-receipt ends nothing
    p = ReceiptParser()
    (cut,) = p.feed(english(SALE))
    assert p.feed(a + b"\x1b@" + b"more\n") == [] and p.idle() is None
    (whole,) = p.feed(b"\x1dV\x00")
    assert whole.lines[-1].text == "more" and whole.raw == a + b"\x1b@more\n\x1dV\x00"
    # status queries print nothing
    printed = p.printed
    p.feed(b"\x10\x04\x01" * 10)
    assert p.printed == printed
    # between two commands, bytes of the relay's own may go to the printer; inside one (or an image's data), not
    assert p.at_boundary
    p.feed(b"\x1d")
    assert not p.at_boundary
    p.feed(b"v0\x00\x01\x00\x02\x00\xff")
    assert not p.at_boundary
    p.feed(b"\xff")
    assert p.at_boundary


def test_a_receipt_of_more_lines_than_the_bound_comes_out_too_large_and_its_memory_is_freed() -> None:
    from terminal.receipts.escpos import MAX_LINES

    p = ReceiptParser()
    got = p.feed(b"x\n" * (MAX_LINES + 5))
    (big,) = got
    assert big.too_large and big.lines == () and big.size == 2 * (MAX_LINES + 1)
    with pytest.raises(Rejected) as refused:
        first_reading([T["en"]], big)
    assert refused.value.code is Code.RECEIPT_TOO_LARGE
    # the rest of it is skipped, not held, up to its end; the next receipt is read as ever
    assert p.feed(b"y\n" * 50_000) == [] and p._lines == [] and len(p._raw) == 0
    assert p.feed(b"\x1dV\x00") == []
    (after,) = p.feed(english(SALE))
    assert not after.too_large and first_reading([T["en"]], after).basket.total == SALE.total
    # on a printer without a cutter, the rest ends at the next quiet spell
    p = ReceiptParser()
    assert len(p.feed(b"x\n" * (MAX_LINES + 5))) == 1 and p.idle() is None
    (after,) = p.feed(english(SALE))
    assert first_reading([T["en"]], after).number == SALE.number
