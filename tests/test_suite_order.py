"""The order the workers take the test modules in (tests/conftest.py ``LONGEST_FIRST``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from tests.conftest import LONGEST_FIRST, TESTS, _longest_first


def test_every_module_named_longest_first_exists() -> None:
    missing = [name for name in LONGEST_FIRST if not (TESTS / name).is_file()]
    assert not missing, f"LONGEST_FIRST names modules that are gone: {missing}"
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)


def test_the_longest_modules_go_first_and_each_module_stays_together_in_its_order() -> None:
    names = [
        "tests/a/test_few.py::t1",
        "tests/a/test_many.py::t1",
        f"tests/{LONGEST_FIRST[1]}::t1",
        "tests/a/test_many.py::t2",
        f"tests/{LONGEST_FIRST[0]}::t1",
        "tests/a/test_many.py::t3[x]",
        f"tests/{LONGEST_FIRST[1]}::t2",
    ]
    items = cast(list[pytest.Item], [SimpleNamespace(nodeid=n) for n in names])
    _longest_first(items)
    assert [i.nodeid for i in items] == [
        f"tests/{LONGEST_FIRST[0]}::t1",
        f"tests/{LONGEST_FIRST[1]}::t1",
        f"tests/{LONGEST_FIRST[1]}::t2",
        "tests/a/test_many.py::t1",
        "tests/a/test_many.py::t2",
        "tests/a/test_many.py::t3[x]",
        "tests/a/test_few.py::t1",
    ]
