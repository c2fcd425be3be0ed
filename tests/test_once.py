"""What the tests' processes make once (``tests.fixtures.once``) is what they would have made each time."""

from __future__ import annotations

import ssl

import httpx
import typer
import typer.testing
from typer.testing import CliRunner

from tests.fixtures.once import context_of as _context
from tillpoint.cli import app


def test_clients_share_one_verifying_context_and_any_other_verify_is_made_as_asked() -> None:
    with httpx.Client() as one, httpx.Client() as two, httpx.Client(verify=False) as lax:
        shared = _context(one)
        assert _context(two) is shared
        assert shared.verify_mode is ssl.CERT_REQUIRED and shared.check_hostname
        assert shared.cert_store_stats()["x509_ca"] > 0  # the public CAs are in it
        assert _context(lax) is not shared and _context(lax).verify_mode is ssl.CERT_NONE


def test_the_test_runner_builds_an_app_once_and_runs_it_each_time() -> None:
    first = CliRunner().invoke(app, ["--help"])
    second = CliRunner().invoke(app, ["hq", "--help"])
    assert first.exit_code == 0 and "tap" in first.stdout
    assert second.exit_code == 0 and "serve" in second.stdout
    assert typer.testing._get_command(app) is typer.testing._get_command(app)
    assert typer.main.get_command(app) is not typer.main.get_command(app)  # the product's own builder is untouched
