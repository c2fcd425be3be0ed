"""docs/configuration.md carries the generated reference of every key, and it is current."""

from __future__ import annotations

from pathlib import Path

from terminal.config_doc import BEGIN, reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_reference_in_the_docs_is_current() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert BEGIN in text, "docs/configuration.md lost its generated reference"
    assert text.split(BEGIN, 1)[1].strip() == reference().split(BEGIN, 1)[1].strip(), (
        "docs/configuration.md is stale: paste the output of `tillpoint config-reference` below the marker"
    )


def test_every_key_has_a_meaning() -> None:
    missing = [line for line in reference().splitlines() if line.startswith("| `") and line.endswith("|  |")]
    assert missing == [], f"{len(missing)} keys have no explanation: {missing[:5]}"
