"""The till's commands print what others wrote (head office's words, a member's name, a refusal) as text: a value
holding what looks like console markup ("[/x]") is printed as it is, never raised as a markup error."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from terminal.store import Store
from tests.ports import free_port
from tillpoint.cli import app

WORDS = "head office refused: [/x] [bold]nothing[/bold]"


def test_status_prints_head_offices_words_as_text(tmp_path: Path) -> None:
    data = tmp_path / "till"
    config = tmp_path / "till.toml"
    config.write_text(f'[terminal]\nid = "T-1"\ndata_dir = "{data}"\n[api]\nport = {free_port()}\n')
    store = Store.open(data / "terminal.db")
    store.set_state(last_error=WORDS)  # the last sync's refusal, in head office's words
    store.close()
    done = CliRunner().invoke(app, ["status", "--config", str(config)])
    assert done.exit_code == 0, done.output
    assert WORDS in done.output
