"""The docs a newcomer and a shop's IT person follow name commands, options, pages and keys that exist.

Every `tillpoint ...` command line in README.md and docs/*.md (code blocks and inline code) is walked through
the command's own parser, built in-process: each subcommand must exist, each long option must be one of its
command's, and it may not be given more arguments than it takes. Every relative link must reach a file and,
where it names an anchor, a heading of that file. Every key a TOML example of the docs sets, and every
`[section] key` the text names, must be one of the configuration's.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest
import typer

from terminal.config import CameraSettings, Config, validate
from terminal.errors import ConfigError
from tillpoint.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)(\S*)")
INLINE = re.compile(r"`([^`\n]+)`")
INDENTED = re.compile(r"^ {4,}(\S*/)?tillpoint ")
# the command where a line runs it: at the start, after a space, a path (.venv/bin/) or "python -m"
COMMAND = re.compile(r"(?:(?<=^)|(?<=[\s/($]))tillpoint(?=\s|$)")
# where the shell's command ends: a comment, a pipe to another program, a sequence, a redirect
ENDS = {"#", ";", "&&", "||", "|", ">", ">>", "<", "2>&1", "2>/dev/null", "\\"}
LONG = re.compile(r"--[a-z0-9][a-z0-9-]*")
WORD = re.compile(r"[a-z][a-z0-9-]*")
# a word the docs use where a subcommand goes without naming one: tillpoint hq ...
ELLIPSES = ("...", "…")


@dataclass(frozen=True)
class Code:
    doc: str
    line: int
    text: str
    fenced: bool
    lang: str = ""


def code_of(path: Path, root: Path = ROOT) -> Iterator[Code]:
    """Each line of a fenced block (a line ending in a backslash joined with the next) and each inline span."""
    name = str(path.relative_to(root))
    fence: str | None = None
    lang = ""
    pending = ""
    start = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        mark = FENCE.match(line)
        if fence is None:
            if mark:
                fence, lang = mark.group(1), mark.group(2)
                continue
            if pending or (INDENTED.match(line) and "`" not in line):  # an indented code block's command
                start = start if pending else number
                if line.rstrip().endswith("\\"):
                    pending += line.strip()[:-1].rstrip() + " "
                else:
                    yield Code(name, start, pending + line.strip(), fenced=True)
                    pending = ""
                continue
            for span in INLINE.findall(line):
                yield Code(name, number, span.replace("\\|", "|"), fenced=False)
            continue
        if mark and mark.group(1) == fence:
            if pending:
                yield Code(name, start, pending, fenced=True, lang=lang)
            fence, pending = None, ""
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\") and lang != "toml":
            pending += (line.strip() if pending else line.rstrip())[:-1].rstrip() + " "
            continue
        yield Code(name, start, pending + line.strip() if pending else line, fenced=True, lang=lang)
        pending = ""


def shell_words(text: str) -> list[str]:
    """The words of a command as the shell splits them ("Mio Sato" is one), up to a gap of three spaces (the
    next column of a diagram) or a comment."""
    text = re.split(r"\s{3,}", text.strip(), maxsplit=1)[0]
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # a quote left open: prose
        return text.split()


def command_lines(code: Code) -> Iterator[list[str]]:
    """The words after each `tillpoint` the code runs, up to where its command ends."""
    for found in COMMAND.finditer(code.text):
        before = code.text[: found.start()].split()
        if before and before[-1] in ("-u", "--user", "-g", "--group", "-o", "--owner"):  # sudo -u tillpoint: the user
            continue
        words: list[str] = []
        depth = 0  # inside [--member ID | --tapped] a bar is a choice, not a pipe
        for word in shell_words(code.text[found.end() :]):
            if word == "|" and depth > 0:
                continue
            if word in ENDS or word in ("/", "or") or word.startswith("#") or word == "tillpoint" or not word.isascii():
                break
            depth += word.count("[") - word.count("]")
            if word.startswith(("$", '"$', "'")) and not words:  # an argument of another program
                break
            words.append(word.rstrip(",;)"))
            if word.endswith((",", ";", ")")):  # (tillpoint hq migrate, or ...): prose goes on
                break
        yield words


@cache
def root() -> typer.core.TyperGroup:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return group


@cache
def children(group: typer.core.TyperGroup) -> dict[str, object]:
    ctx = typer.Context(group)
    return {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}


def bare_command(code: Code) -> list[str] | None:
    """An inline span naming a command without the word tillpoint (`hq serve --db`, `sync --now --rotate`):
    its words, when it starts with a command and goes on with one of its subcommands or an option."""
    words = shell_words(code.text)
    if code.fenced or "tillpoint" in code.text or len(words) < 2:
        return None
    command = children(root()).get(words[0])
    if command is None:
        return None
    second = words[1].strip("[]").split("|")[0]
    if words[1].startswith("--") or (isinstance(command, typer.core.TyperGroup) and second in children(command)):
        return words
    return None


def check(words: list[str]) -> list[str]:
    """What is wrong with one command line: a subcommand or long option the command does not have, or more
    arguments than it takes (fewer is how the docs name a command in passing)."""
    cmd: object = root()
    path = ["tillpoint"]
    wrong: list[str] = []
    descending = True
    arguments: list[str] = []
    value_next = False
    for word in words:
        options = LONG.findall(word) if word.lstrip("[(").startswith("--") else []
        params = {o: p for p in getattr(cmd, "params", []) for o in (*p.opts, *p.secondary_opts)}
        if options:
            wrong += [f"{' '.join(path)}: no option {o}" for o in options if o not in params and o != "--help"]
            taken = params.get(options[-1])
            flag = taken is not None and getattr(taken, "is_flag", False)
            value_next = "=" not in word and not flag  # an unknown option's value is no argument either
            descending = False  # after an option, the words are its values and arguments
            continue
        short = word.strip("[]()|")
        if re.fullmatch(r"-[a-zA-Z]", short):
            if short not in params and short != "-h":
                wrong.append(f"{' '.join(path)}: no option {short}")
            taken = params.get(short)
            value_next = taken is not None and not getattr(taken, "is_flag", False)
            continue
        if value_next or short in ("", *ELLIPSES) or short.startswith("-"):
            value_next = False
            continue
        if not descending or not isinstance(cmd, typer.core.TyperGroup):
            arguments.append(word)
            continue
        if not WORD.fullmatch(word.replace("|", "-").strip("[]")):
            descending = False  # a placeholder (ID, FILE, [...]) or a value
            arguments.append(word)
            continue
        names = children(cmd)
        for alternative in word.strip("[]").split("|"):  # giftcard sell|load|pay
            if alternative not in names:
                wrong.append(f"{' '.join(path)}: no command {alternative!r}")
        first = word.strip("[]").split("|")[0]
        if first not in names:
            return wrong
        cmd = names[first]
        path.append(first)
    if not isinstance(cmd, typer.core.TyperGroup):
        takes = [p for p in getattr(cmd, "params", []) if not p.opts[0].startswith("-")]
        if all(p.nargs != -1 for p in takes) and len(arguments) > sum(p.nargs for p in takes):
            wrong.append(
                f"{' '.join(path)}: takes {len(takes)} arguments, not {len(arguments)} ({' '.join(arguments)})"
            )
    return wrong


def all_code() -> list[Code]:
    return [code for path in DOCS for code in code_of(path)]


def all_commands() -> Iterator[tuple[Code, list[str]]]:
    for code in all_code():
        for words in command_lines(code):
            yield code, words
        bare = bare_command(code)
        if bare is not None:
            yield code, bare


def test_the_docs_name_commands() -> None:
    """The test reads what it should: the docs name many commands, and commands at both levels."""
    lines = [" ".join(words) for _, words in all_commands()]
    assert len(lines) > 200
    assert any(line.startswith("hq serve") for line in lines)
    assert any(line.startswith("sale ") for line in lines)


def test_every_command_and_option_in_the_docs_exists() -> None:
    wrong = [
        f"{code.doc}:{code.line}: {problem}   [{code.text.strip()}]"
        for code, words in all_commands()
        for problem in check(words)
    ]
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("tillpoint sale 4200 --membre M-0002", "tillpoint sale: no option --membre"),
        (".venv/bin/tillpoint hq staff ad mio --name Mio", "tillpoint hq staff: no command 'ad'"),
        ("sudo -u tillpoint tillpoint doctr --json", "tillpoint: no command 'doctr'"),
        ("tillpoint giftcard sell|lod|pay AMOUNT", "tillpoint giftcard: no command 'lod'"),
        ("tillpoint member code MEMBER [--png FILE] [-x]", "tillpoint member code: no option -x"),
        ("tillpoint sale AMOUNT [--member ID | --taped]", "tillpoint sale: no option --taped"),
        (
            'tillpoint hq block member M-0001 --by Mio --reason "card lost" now',
            "tillpoint hq block: takes 2 arguments, not 3 (member M-0001 now)",
        ),
    ],
)
def test_a_wrong_command_line_is_found(line: str, problem: str) -> None:
    found = [p for words in command_lines(Code("x.md", 1, line, fenced=True)) for p in check(words)]
    assert found == [problem]


def test_a_right_command_line_passes() -> None:
    for line in (
        "tillpoint sale AMOUNT [--member ID | --tapped] [--coupon C]   # a comment --nothing",
        "tillpoint hq serve --db var/hq/hq.db --port 8731 | tee log",
        "tillpoint hq ...",
        'tillpoint hq staff add mio --name "Mio Sato" --role chain_admin --store S-1 --password-stdin',
        "tillpoint hq release TXN --by NAME --note WHY",
        "chown tillpoint:tillpoint /var/lib/tillpoint",
    ):
        assert [p for words in command_lines(Code("x.md", 1, line, fenced=True)) for p in check(words)] == []


def test_a_bare_command_span_is_checked() -> None:
    code = Code("x.md", 1, "hq serve --tls-cert/--tls-keys", fenced=False)
    assert check(bare_command(code) or []) == ["tillpoint hq serve: no option --tls-keys"]
    assert bare_command(Code("x.md", 1, "run the tests", fenced=False)) is None


HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """The anchors of a page's headings as GitHub makes them: lower case, punctuation dropped, spaces to
    hyphens, a repeated heading's anchor numbered."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    fence: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        mark = FENCE.match(line)
        if mark:
            fence = None if fence == mark.group(1) else fence or mark.group(1)
            continue
        heading = HEADING.match(line)
        if fence is None and heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    wrong = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            where = (path.parent / file) if file else path
            if not where.exists():
                wrong.append(f"{path.relative_to(root)}:{number}: {target}: no such file")
            elif anchor and where.suffix == ".md" and anchor not in anchors(where):
                wrong.append(f"{path.relative_to(root)}:{number}: {target}: no such heading")
    return wrong


def test_every_relative_link_reaches_a_file_and_heading() -> None:
    wrong = [problem for path in DOCS for problem in broken_links(path)]
    assert wrong == [], "\n".join(wrong)


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Top\n\n## Two words (`bench/a_b.py`)\n\n```sh\n# not a heading\n```\n"
        "[ok](page.md#two-words-bencha_bpy) [ok](#top) [web](https://example.com/x.md)\n"
        "[gone](nothere.md) [no](page.md#not-a-heading) [no](#two-words-a_bpy)\n",
        encoding="utf-8",
    )
    assert broken_links(page, tmp_path) == [
        "page.md:9: nothere.md: no such file",
        "page.md:9: page.md#not-a-heading: no such heading",
        "page.md:9: #two-words-a_bpy: no such heading",
    ]


def config_keys_wrong(code: str) -> list[str]:
    """The keys a TOML example sets that the configuration does not have; an example that sets no section of
    the configuration (a receipt template) is not a configuration."""
    raw = tomllib.loads(code)
    sections = Config.model_fields
    if not any(name in sections for name in raw):
        return []
    wrong = []
    for name, table in raw.items():
        if name not in sections or not isinstance(table, dict):
            wrong.append(f"[{name}]: no such section")
            continue
        model = sections[name].annotation
        assert model is not None
        fields = model.model_fields
        for key, value in table.items():
            if key not in fields:
                wrong.append(f"[{name}] {key}: no such key")
            elif name == "scanner" and key == "cameras":
                wrong += [
                    f"[scanner.cameras] {k}: no such key"
                    for camera in value.values()
                    for k in camera
                    if k not in CameraSettings.model_fields
                ]
    return wrong


def toml_examples() -> Iterator[tuple[str, int, str]]:
    for path in DOCS:
        lines: list[str] = []
        start, fence = 0, None
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            mark = FENCE.match(line)
            if fence is None and mark and mark.group(2) == "toml":
                fence, start, lines = mark.group(1), number, []
            elif fence is not None and mark and mark.group(1) == fence:
                yield str(path.relative_to(ROOT)), start, "\n".join(lines)
                fence = None
            elif fence is not None:
                lines.append(line)


def test_every_config_key_in_a_toml_example_exists() -> None:
    examples = list(toml_examples())
    assert len(examples) >= 5
    wrong = [f"{doc}:{line}: {problem}" for doc, line, text in examples for problem in config_keys_wrong(text)]
    assert wrong == [], "\n".join(wrong)
    refused = []
    for doc, line, text in examples:
        raw = tomllib.loads(text)
        if any(name in Config.model_fields for name in raw):
            try:
                validate(raw)  # its values too: an example a till would refuse teaches the wrong thing
            except ConfigError as exc:
                refused.append(f"{doc}:{line}: {exc}")
    assert refused == [], "\n".join(refused)


def test_a_wrong_config_key_is_found() -> None:
    text = '[hq]\nurl = "https://hq.example"\npoll_interval = 5\n\n[scanner.cameras."v4l2:0"]\nzoom = 2\n'
    assert config_keys_wrong(text) == ["[hq] poll_interval: no such key", "[scanner.cameras] zoom: no such key"]
    assert config_keys_wrong('name = "a template"\n[patterns]\nitem = "x"\n') == []


SECTION_KEY = re.compile(r"^\[([a-z_]+)\] ([a-z_]+)\b")


def section_key_wrong(code: Code) -> str | None:
    """`[api] allowed_origins` in the text: a key of that section of the configuration."""
    found = SECTION_KEY.match(code.text)
    if code.fenced or found is None or found.group(1) not in Config.model_fields:
        return None
    model = Config.model_fields[found.group(1)].annotation
    assert model is not None
    return None if found.group(2) in model.model_fields else f"[{found.group(1)}] {found.group(2)}: no such key"


def test_every_section_and_key_named_in_the_text_exists() -> None:
    named = [(code, section_key_wrong(code)) for code in all_code() if SECTION_KEY.match(code.text)]
    assert len(named) > 20
    wrong = [f"{code.doc}:{code.line}: {problem}" for code, problem in named if problem]
    assert wrong == [], "\n".join(wrong)
    assert section_key_wrong(Code("x.md", 1, "[hq] pull_every = 5", fenced=False)) == "[hq] pull_every: no such key"


def test_every_metric_of_a_till_is_in_the_install_guide() -> None:
    from terminal.metrics import Metrics

    exposition = Metrics("T-001").exposition()[0].decode()
    families = [line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE ")]
    assert "tillpoint_sales_total" in families
    guide = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
    assert [name for name in families if f"| `{name}" not in guide] == []


def test_every_kind_of_code_is_read(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Run `tillpoint statuz` here.\n\n"
        "```sh\ntillpoint hq serve \\\n  --pork 1\n```\n\n"
        "    tillpoint hq migrate --db x \\\n        --no-backupp\n",
        encoding="utf-8",
    )
    found = [(c.line, p) for c in code_of(page, tmp_path) for words in command_lines(c) for p in check(words)]
    assert found == [
        (1, "tillpoint: no command 'statuz'"),
        (4, "tillpoint hq serve: no option --pork"),
        (8, "tillpoint hq migrate: no option --no-backupp"),
    ]


REPO_PATH = re.compile(r"^(?:terminal|drivers|sync|hq|tillpoint|tests|bench|docs|systemd|packaging|deploy)/[\w./-]*$")


def missing_path(code: Code, root: Path = ROOT) -> str | None:
    """A file or directory of the repository an inline span names (`drivers/pcsc.py`, `tests/x.py::test`) that is
    not there; `bench/qr_sets.categories` names what a module holds."""
    words = code.text.split()
    if code.fenced or not words:
        return None
    path = re.sub(r":\d+$", "", words[0].split("::")[0])
    if not REPO_PATH.match(path) or "*" in path or (root / path).exists():
        return None
    module = path.rsplit(".", 1)[0] + ".py"
    return None if "." in path and (root / module).is_file() else path


def test_every_repository_path_the_docs_name_exists() -> None:
    named = [code for code in all_code() if not code.fenced and REPO_PATH.match(code.text.split("::")[0])]
    assert len(named) > 100
    wrong = [f"{code.doc}:{code.line}: {path}" for code in all_code() if (path := missing_path(code))]
    assert wrong == [], "\n".join(wrong)
    assert missing_path(Code("x.md", 1, "drivers/pcsc.py", fenced=False)) is None
    assert missing_path(Code("x.md", 1, "tests/test_docs.py::test_x", fenced=False)) is None
    assert missing_path(Code("x.md", 1, "drivers/pcsd.py", fenced=False)) == "drivers/pcsd.py"


ROUTE = re.compile(r"\b(GET|POST|PUT|DELETE|PATCH) (/[\w/{}.\-]*)")


def route_key(method: str, path: str) -> tuple[str, str]:
    """A route as the docs and the apps both write it: {txn} and {txn_id} alike, no trailing slash or full stop."""
    path = re.sub(r"\{[^}]*\}", "{}", path.split("?")[0].rstrip("."))
    return method.upper(), path.rstrip("/") or "/"


def app_routes(app: Any) -> set[tuple[str, str]]:
    """Every method and path an app answers: its OpenAPI document's and its own routes' (the pages too)."""
    found = {route_key(method, path) for path, ops in app.openapi()["paths"].items() for method in ops}
    for route in app.routes:
        if getattr(route, "path", None):
            found |= {route_key(method, route.path) for method in getattr(route, "methods", None) or {"GET"}}
    return found


@pytest.mark.slow  # several seconds: it builds head office's whole API
def test_every_api_route_the_docs_name_is_served(tmp_path: Path) -> None:
    """`POST /v1/session/pay`, `GET /v1/admin/terminals` ...: a route of the till's local API or of head office's."""
    from hq.api.app import create_app as hq_app
    from hq.store import HqStore
    from terminal.api.app import create_app as till_app

    store = HqStore(str(tmp_path / "hq.db"))
    try:
        served = app_routes(till_app(MagicMock(), MagicMock(), MagicMock(), MagicMock())) | app_routes(hq_app(store))
    finally:
        store.close()
    named = [
        (str(path.relative_to(ROOT)), number, method, route)
        for path in DOCS
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for method, route in ROUTE.findall(line)
    ]
    assert len(named) > 200
    assert route_key("POST", "/v1/sales/{txn}/refund") in served
    assert route_key("POST", "/v1/sales/{txn}/refunds") not in served
    wrong = [
        f"{doc}:{number}: {method} {route}"
        for doc, number, method, route in named
        if route_key(method, route) not in served
    ]
    assert wrong == [], "\n".join(wrong)
