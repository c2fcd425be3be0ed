"""The sync loop cannot die: head office failing and a full disk are states it shows and retries; a bug
is logged, counted and retried, and stops counting as progress so the watchdog can have the daemon
restarted. A client double stands in for the network here (the loop is what is under test)."""

from __future__ import annotations

import threading
from typing import Any

from sync.client import HqUnreachable, SyncLoop, SyncResult
from terminal.errors import Code, Rejected
from tests.waiting import wait_until


class Script:
    """``sync_once`` answering from a list (its last answer for ever after): an exception is raised,
    anything else returned."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.done = threading.Event()

    def sync_once(self, pull: bool = True) -> SyncResult:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if len(self.answers) == 1:
            self.done.set()
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]


def run(script: Script) -> tuple[SyncLoop, list[Any]]:
    loop = SyncLoop(script, push_interval=0.01, pull_interval=0.01, backoff_max=0.02)  # type: ignore[arg-type]
    seen: list[Any] = []
    loop.on_result.append(seen.append)
    loop.start()
    wait_until(script.done.is_set, 10, "the scripted rounds")
    return loop, seen


def test_expected_failures_are_shown_retried_and_still_progress() -> None:
    script = Script(HqUnreachable("refused"), Rejected(Code.STORAGE_FULL), SyncResult(1, 0))
    loop, seen = run(script)
    try:
        wait_until(lambda: loop.last_error is None and len(seen) >= 3, 10, "the loop to recover")
        assert [type(r).__name__ for r in seen[:3]] == ["HqUnreachable", "Rejected", "SyncResult"]
        assert loop.crashes == 0
    finally:
        loop.stop()


def test_a_bug_is_counted_retried_and_is_not_progress() -> None:
    script = Script(KeyError("a bug"))
    loop, seen = run(script)
    try:
        began = loop.last_progress
        wait_until(lambda: loop.crashes >= 5, 10, "five crashed rounds")
        assert loop.last_progress == began  # the watchdog sees no progress while it keeps crashing
        assert loop._thread.is_alive() and "KeyError" in str(loop.last_error)
        calls = script.calls
        wait_until(lambda: script.calls > calls, 10, "another round after the crashes")  # still running
    finally:
        loop.stop()


def test_a_listener_that_fails_does_not_stop_the_loop() -> None:
    script = Script(SyncResult(0, 0), SyncResult(0, 0), SyncResult(0, 0))
    loop = SyncLoop(script, push_interval=0.01, pull_interval=0.01, backoff_max=0.02)  # type: ignore[arg-type]

    def broken(_: Any) -> None:
        raise RuntimeError("listener bug")

    loop.on_result.append(broken)
    loop.start()
    try:
        wait_until(lambda: script.calls >= 3, 10, "three rounds despite the listener")
    finally:
        loop.stop()
