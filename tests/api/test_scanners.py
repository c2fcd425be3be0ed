"""Scanners configured in ``[scanner]`` are started by the daemon and their reads reach the session."""

from __future__ import annotations

from pathlib import Path

import httpx

from terminal.session import code_body
from tests.api.stack import BEN_CODE, base_url, running_till
from tests.waiting import wait_until


def test_a_member_code_on_the_scanner_identifies_the_member(tmp_path: Path) -> None:
    with running_till(tmp_path, scanner={"devices": ["sim:"]}) as till:
        assert [s.name for s in till.scanners] == ["sim:"]
        with httpx.Client(base_url=base_url(till), headers={"Authorization": f"Bearer {till.api_token}"}) as client:
            # an unsigned member code (anybody can make one) is refused by name
            assert client.post("/v1/sim/scan", json={"text": "TPM1:" + code_body("M-2")}).status_code == 202
            wait_until(lambda: (till.session.snapshot()["error"] or {}).get("code") == "member_code_unsigned")
            assert till.session.snapshot()["member"] is None
            assert client.post("/v1/sim/scan", json={"text": BEN_CODE}).status_code == 202
            wait_until(lambda: till.session.snapshot()["member"] is not None)
            assert till.session.snapshot()["member"]["member_id"] == "M-2"
            kinds = [e.get("kind") for e in till.events_after(0) if e.get("type") == "scan"]
            assert kinds == ["member", "member"]
            # a card number held up to the scanner is refused and never kept
            client.post("/v1/sim/scan", json={"text": "4111 1111 1111 1111"})
            wait_until(lambda: len([e for e in till.events_after(0) if e.get("type") == "scan"]) == 3)
            assert "4111" not in repr(list(till.events_after(0)))


def test_no_scanner_configured_is_a_clear_refusal(tmp_path: Path) -> None:
    with (
        running_till(tmp_path) as till,
        httpx.Client(base_url=base_url(till), headers={"Authorization": f"Bearer {till.api_token}"}) as client,
    ):
        response = client.post("/v1/sim/scan", json={"text": "x"})
        assert response.status_code == 409 and response.json()["code"] == "reader_unavailable"
