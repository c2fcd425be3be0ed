"""A new till enrols with a one-time code over TLS (a private CA made here, on loopback), bootstraps,
sells, syncs; without the CA it cannot connect; once revoked at head office it is refused."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.client import HqUnreachable, SyncClient
from terminal.config import validate
from terminal.daemon import Daemon
from terminal.store import Store
from tests.fixtures.hq import HqProcess, make_tls
from tests.waiting import wait_until

AIKO = bytes.fromhex("04A1B2C3D4E501")


@pytest.fixture
def tls_hq(tmp_path: Path) -> Iterator[tuple[HqProcess, Path]]:
    ca, cert, key = make_tls(tmp_path)
    process = HqProcess(tmp_path / "hq", tls=(cert, key))
    process.start()
    yield process, ca
    process.kill()


def test_enrol_over_tls_with_a_private_ca_then_sell_sync_and_be_revoked(
    tls_hq: tuple[HqProcess, Path], tmp_path: Path
) -> None:
    hq, ca = tls_hq
    code = hq.cli("enrol-code", "T-TLS", "--store-id", "S-009").strip()
    cfg = validate(
        {
            "terminal": {"id": "T-TLS", "store_id": "S-009", "data_dir": str(tmp_path / "till")},
            "security": {"card_key_file": str(hq.key_file)},
            "reader": {"devices": ["sim:"]},
            "hq": {
                "url": hq.url,
                "ca_file": str(ca),
                "enrol_code": code,
                "push_interval": 0.2,
                "pull_interval": 0.3,
                "backoff_max": 0.5,
            },
            "api": {"enabled": False},
            "sale": {"auto_amount": 1000},
        }
    )
    daemon = Daemon(cfg)
    daemon.start()
    try:
        store = daemon.store
        assert store is not None
        token_file = tmp_path / "till" / "hq.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert store.state("hq_root_key")  # pinned from the enrolment reply
        wait_until(lambda: store.counts()["cards"] >= 4, 15, "the bootstrap of the demo cards")
        daemon.tap_sim(AIKO)
        wait_until(lambda: store.entries() and store.pending_count() == 0, 15, "the sale to reach head office")
        listed = hq.cli("terminals", "--json")
        assert '"terminal_id": "T-TLS"' in listed and '"acked_seq": 1' in listed

        # Without the private CA the same head office is not trusted.
        plain = SyncClient(Store.open(tmp_path / "other.db"), "T-TLS", hq.url, token_file.read_text().strip())
        with pytest.raises(HqUnreachable, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            plain.sync_once()
        plain.close()

        hq.cli("revoke", "T-TLS")
        wait_until(lambda: "credential_revoked" in (store.state("last_error") or ""), 15, "the revocation to bite")
    finally:
        daemon.stop()
