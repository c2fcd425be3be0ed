"""The back office's words: every refusal code and every word in English, Japanese and Chinese, and every
page rendered in each language without a missing word (the templates use a strict undefined)."""

from __future__ import annotations

import pytest

from hq.backoffice import i18n, pages
from hq.backoffice.errors import STATUS, Code
from hq.backoffice.i18n import _WORDS
from hq.backoffice.roles import Role


def test_every_word_is_in_three_languages_and_every_code_has_words() -> None:
    assert set(STATUS) == set(Code)
    for key, texts in _WORDS.items():
        assert len(texts) == 3 and all(t.strip() for t in texts), key
    assert {c.value for c in Code} <= set(_WORDS)
    words = {lang: i18n.words(lang) for lang in i18n.LANGUAGES}
    assert words["ja"]["members"] != words["en"]["members"] != words["zh"]["members"]


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_the_sign_in_and_refusal_pages_render_in_each_language(lang: str) -> None:
    common = {"me": None, "csrf": "", "current": "", "error": "", "error_code": "", "notice": ""}
    html = pages.render("sign_in", lang, None, **common, staff_id="")
    assert f'<html lang="{lang}">' in html and i18n.words(lang)["sign_in"] in html
    refused = pages.render("refused", lang, Role.AUDITOR, **(common | {"error": "x", "error_code": "forbidden"}))
    assert 'data-code="forbidden"' in refused


def test_every_kind_of_item_state_and_fleet_problem_has_words() -> None:
    from hq.fleet import PROBLEMS
    from sync.protocol import ItemState, Reason

    keys = {f"reason_{r.value}" for r in Reason} | {f"istate_{s.value}" for s in ItemState} | {"istate_any"}
    keys |= {f"problem_{p}" for p in PROBLEMS} | {"eod_complete", "eod_incomplete", "eod_not_reported"}
    assert keys <= set(_WORDS), sorted(keys - set(_WORDS))


def test_no_word_is_named_like_a_method_of_the_words_mapping() -> None:
    """``t.items`` in a template would be the mapping's method, not the word."""
    assert not set(_WORDS) & set(dir(dict))
