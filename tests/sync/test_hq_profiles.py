"""Member profiles (hq/profiles.py): validation with stable codes, the admin API and the join page's form
(a real uvicorn, real httpx, SQLite and PostgreSQL); a till's credential changes no profile and reads no
statistics; erasure leaves nothing of the profile."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hq import profiles, stats
from hq.api.server import ServerHandle, start_in_thread
from hq.erasure import erase_member
from hq.ingest import Settings
from hq.store import HqStore
from sync import claims
from sync.protocol import ClaimKeyPayload, WireEntry
from tests.fixtures import entries

TODAY = date(2026, 12, 2)
RULES = {r.name: r for r in profiles.DEFAULT_RULES}


# -- pure -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["2026-02-30", "1990-13-01", "tomorrow", "2030-01-01", "1850-01-01", "1990-1-1"])
def test_a_bad_birthday_is_refused_with_its_code(text: str) -> None:
    with pytest.raises(profiles.ProfileRefused) as refused:
        profiles.check_birthday(text, TODAY)
    assert refused.value.code == "bad_birthday"


def test_a_real_birthday_passes() -> None:
    assert profiles.check_birthday("1990-02-28", TODAY) == date(1990, 2, 28)


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("shoe_size", "42", "unknown_attribute"),
        ("age_band", "31", "bad_attribute_value"),
        ("postcode", "abc", "bad_attribute_value"),
        ("language", "x" * 65, "bad_attribute_value"),
    ],
)
def test_attributes_only_those_configured_with_allowed_values(name: str, value: str, code: str) -> None:
    with pytest.raises(profiles.ProfileRefused) as refused:
        profiles.check_attribute(RULES, name, value)
    assert refused.value.code == code


def test_allowed_attributes_and_consents_parse() -> None:
    profiles.check_attribute(RULES, "age_band", "30-39")
    profiles.check_attribute(RULES, "postcode", "150-0001")
    assert profiles.parse_consent("marketing:v2") == ("marketing", "v2")
    for bad in ("sms:v1", "marketing:", "marketing"):
        with pytest.raises(profiles.ProfileRefused) as refused:
            profiles.parse_consent(bad)
        assert refused.value.code == "bad_consent"


# -- through a real head office -------------------------------------------------------------------------


@pytest.fixture
def store(hq_url: str) -> Iterator[HqStore]:
    hq = HqStore(hq_url, Settings(recompute=False))
    hq.add_terminal("T1", "S1", "till-token")
    hq.upsert_member("M-1", "Aiko", "basic", 0)
    yield hq
    hq.close()


@pytest.fixture
def http(store: HqStore) -> Iterator[httpx.Client]:
    handle: ServerHandle = start_in_thread(store, "127.0.0.1", 0, timeout=10)
    with httpx.Client(base_url=handle.url, timeout=5, trust_env=False) as client:
        yield client
    handle.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_admin_sets_and_reads_a_profile_and_bad_parts_change_nothing(store: HqStore, http: httpx.Client) -> None:
    admin = bearer(store.add_admin("Mio"))
    body = {
        "birthday": "1990-05-17",
        "attributes": {"age_band": "30-39", "language": "ja"},
        "consents": ["marketing:v2"],
    }
    put = http.put("/v1/admin/members/M-1/profile", json=body, headers=admin)
    assert put.status_code == 200, put.text
    got = http.get("/v1/admin/members/M-1/profile", headers=admin).json()
    assert got["birthday"] == "1990-05-17" and got["attributes"] == {"age_band": "30-39", "language": "ja"}
    assert got["marketing"] is True and got["consents"][0]["wording_version"] == "v2"
    with store.db.read() as tx:
        assert tx.one("SELECT birth_md FROM member_profiles WHERE member_id = 'M-1'") == ("05-17",)
    for bad, code in (
        ({"birthday": "2099-01-01"}, "bad_birthday"),
        ({"attributes": {"shoe_size": "42"}}, "unknown_attribute"),
        ({"birthday": "1991-01-01", "attributes": {"age_band": "thirty"}}, "bad_attribute_value"),
        ({"consents": ["sms:v1"]}, "bad_consent"),
    ):
        refused = http.put("/v1/admin/members/M-1/profile", json=bad, headers=admin)
        assert refused.status_code == 422 and refused.json()["code"] == code, refused.text
    assert http.get("/v1/admin/members/M-1/profile", headers=admin).json()["birthday"] == "1990-05-17"
    withdrawn = http.put("/v1/admin/members/M-1/profile", json={"withdraw": ["marketing"]}, headers=admin).json()
    assert withdrawn["marketing"] is False and withdrawn["consents"][0]["withdrawn_at"] is not None
    assert http.get("/v1/admin/members/M-9/profile", headers=admin).json()["code"] == "unknown_member"


def test_a_till_credential_sets_no_profile_and_reads_no_statistics(store: HqStore, http: httpx.Client) -> None:
    till = bearer("till-token")
    put = http.put("/v1/admin/members/M-1/profile", json={"birthday": "1990-01-01"}, headers=till)
    assert put.status_code == 403 and put.json()["code"] == "forbidden"
    assert http.get("/v1/admin/members/M-1/stats", headers=till).status_code == 403
    assert http.get("/v1/admin/members/M-1/profile", headers=till).status_code == 403
    assert store.profile("M-1")["birthday"] is None


def test_a_sale_naming_a_member_head_office_does_not_know_changes_no_statistics(store: HqStore) -> None:
    entry = entries.wire_sale("M-NOBODY", 5000, "2026-01-01T10:00:00.000Z")
    store.ingest("T1", [entry])
    with store.db.read() as tx:
        assert stats.lifetimes(tx) == {}


def test_the_stats_route_reads_what_ingest_kept(store: HqStore, http: httpx.Client) -> None:
    admin = bearer(store.add_admin("Mio"))
    entry = entries.wire_sale("M-1", 1200, "2026-01-01T10:00:00.000Z")
    store.ingest("T1", [entry])
    got = http.get("/v1/admin/members/M-1/stats", params={"as_of": "2026-01-10"}, headers=admin).json()
    assert got["visits"] == 1 and got["spend_30"] == 1200 and got["last_visit"] == "2026-01-01T10:00:00.000Z"
    assert got["stores_visited"] == ["S1"] and got["average_basket"] == 1200


def test_statistics_of_a_member_head_office_does_not_hold_are_unknown_member(
    store: HqStore, http: httpx.Client, tmp_path: Path
) -> None:
    """A mistyped member number, or an erased member: ``unknown_member`` (404) at the route and the command, as the
    profile's, not a member of zeros one could take for a real one who never came."""
    from typer.testing import CliRunner

    from hq.cli import app

    admin = bearer(store.add_admin("Mio"))
    assert http.get("/v1/admin/members/M-1/stats", headers=admin).status_code == 200
    missing = http.get("/v1/admin/members/M-9/stats", headers=admin)
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_member", missing.text
    erase_member(store, "M-1", "Mio", "asked")
    erased = http.get("/v1/admin/members/M-1/stats", headers=admin)
    assert erased.status_code == 404 and erased.json()["code"] == "unknown_member", erased.text
    db = str(tmp_path / "cli.db")
    HqStore(db, backup=False).close()
    done = CliRunner().invoke(app, ["stats", "show", "M-9", "--db", db])
    said = " ".join(done.output.split())
    assert done.exit_code == 1 and said.startswith("unknown_member:"), done.output


def claim_token(store: HqStore) -> str:
    """An anonymous sale of T1 with its claim code, as the till's receipt carries it."""
    key = Ed25519PrivateKey.generate()
    public = claims.public_bytes(key)
    sale_txn = str(uuid.uuid4())
    key_entry = ClaimKeyPayload(key_id=claims.key_id_of(public).hex(), public_key=claims.b64(public)).wire()
    pushed = [
        WireEntry(
            terminal_id="T1",
            seq=seq,
            txn_id=sale_txn if kind == "sale" else f"T1-{seq}",
            kind=kind,
            payload=payload,
            created_at="2026-01-01T10:00:00.000Z",
        )
        for seq, kind, payload in ((1, "claim_key", key_entry), (2, "sale", entries.sale(None, 2000)))
    ]
    store.ingest("T1", pushed)
    return claims.sign(key, sale_txn, int(time.time()), 3600)


def test_the_join_page_collects_birthday_attributes_and_marketing_consent(store: HqStore, http: httpx.Client) -> None:
    page = http.get("/join").text
    for needle in ('id="birthday"', 'data-name="age_band"', 'id="marketing"', profiles.MARKETING_VERSION):
        assert needle in page
    assert "http://" not in page and "https://" not in page  # nothing loaded from elsewhere
    terms = http.get("/v1/join/terms").json()
    body: dict[str, Any] = {
        "token": claim_token(store),
        "display_name": "Rin",
        "consent_version": terms["version"],
        "birthday": "2031-01-01",
        "attributes": {"age_band": "20-29"},
        "marketing_version": terms["marketing_version"],
    }
    refused = http.post("/v1/claims", json=body)
    assert refused.status_code == 422 and refused.json()["code"] == "bad_birthday"
    assert (
        http.post("/v1/claims", json={**body, "birthday": "2001-04-01", "attributes": {"x": "1"}}).json()["code"]
        == "unknown_attribute"
    )
    joined = http.post("/v1/claims", json={**body, "birthday": "2001-04-01"})
    assert joined.status_code == 200, joined.text
    member_id = joined.json()["member_id"]
    got = store.profile(member_id)
    assert got["birthday"] == "2001-04-01" and got["attributes"] == {"age_band": "20-29"} and got["marketing"]
    assert store.member_stats(member_id, "2026-01-01").visits == 1  # the claimed sale is the member's visit


def test_a_staff_only_attribute_is_not_asked_for_and_a_joining_member_cannot_set_it(
    store: HqStore, http: httpx.Client
) -> None:
    """The chain's win-back list is an attribute staff set: the join page and its terms do not offer it, and a
    member naming it in their own join (a curious browser tab editing the request) is refused, nothing written;
    an administrator still sets it, and the segment built on it selects only the members staff put there."""
    store.set_attribute_rule(profiles.AttributeRule("winback", "Win-back list", ("yes",), members_set=False))
    assert 'data-name="winback"' not in http.get("/join").text
    terms = http.get("/v1/join/terms").json()
    assert [a["name"] for a in terms["attributes"] if not a["members_set"]] == []
    assert "winback" not in {a["name"] for a in terms["attributes"]}
    body: dict[str, Any] = {
        "token": claim_token(store),
        "display_name": "Sora",
        "consent_version": terms["version"],
        "attributes": {"age_band": "20-29", "winback": "yes"},
    }
    refused = http.post("/v1/claims", json=body)
    assert refused.status_code == 422 and refused.json()["code"] == "unknown_attribute", refused.text
    with store.db.read() as tx:
        assert tx.all("SELECT member_id FROM member_attributes WHERE name = 'winback'") == []
    joined = http.post("/v1/claims", json={**body, "attributes": {"age_band": "20-29"}})
    assert joined.status_code == 200, joined.text
    admin = bearer(store.add_admin("Mio"))
    put = http.put("/v1/admin/members/M-1/profile", json={"attributes": {"winback": "yes"}}, headers=admin)
    assert put.status_code == 200 and put.json()["attributes"] == {"winback": "yes"}, put.text
    with store.db.read() as tx:
        assert tx.all("SELECT member_id FROM member_attributes WHERE name = 'winback'") == [("M-1",)]


def test_erasure_removes_the_profile_attributes_and_consents(store: HqStore) -> None:
    store.update_profile(
        "M-1",
        profiles.ProfileChange(
            birthday="1990-05-17", attributes={"postcode": "150-0001"}, consents=(("marketing", "v2"),)
        ),
    )
    erase_member(store, "M-1", "privacy desk")
    with store.db.read() as tx:
        for table in ("member_profiles", "member_attributes", "consents"):
            assert tx.all(f"SELECT * FROM {table} WHERE member_id = 'M-1'") == [], table


def test_changing_a_staff_only_attributes_values_keeps_it_off_the_join_page(tmp_path: Path) -> None:
    """An operator adds a value to the win-back list, naming its label and values again but not --staff-only: it
    stays staff-only (members still cannot put themselves on the list); --members-set opens it, on purpose."""
    from typer.testing import CliRunner

    from hq.cli import app

    db = str(tmp_path / "hq.db")
    HqStore(db).close()
    runner = CliRunner()

    def who_sets(*extra: str) -> bool:
        done = runner.invoke(
            app, ["attribute", "winback", "--label", "W", "--allowed", "yes,maybe", *extra, "--db", db]
        )
        assert done.exit_code == 0, done.output
        return {a["name"]: a["members_set"] for a in json.loads(done.output)}["winback"]

    assert who_sets() is True  # a new attribute: members give it
    assert who_sets("--staff-only") is False
    assert who_sets() is False  # its values changed: still staff's
    assert who_sets("--members-set") is True


def test_the_profile_and_stats_commands(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hq.cli import app

    db = str(tmp_path / "hq.db")
    hq = HqStore(db)
    hq.add_terminal("T1", "S1", "till-token")
    hq.upsert_member("M-1", "Aiko", "basic", 0)
    entry = entries.wire_sale("M-1", 1500, "2026-01-01T10:00:00.000Z")
    hq.ingest("T1", [entry])
    hq.close()
    runner = CliRunner()
    args = ["profile", "M-1", "--birthday", "1990-05-17", "--attr", "age_band=30-39", "--consent", "marketing:v2"]
    done = runner.invoke(app, [*args, "--db", db])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["attributes"] == {"age_band": "30-39"}
    refused = runner.invoke(app, ["profile", "M-1", "--attr", "shoe_size=42", "--db", db])
    assert refused.exit_code == 1 and "unknown_attribute" in refused.output
    rules = runner.invoke(app, ["attribute", "winback", "--label", "W", "--allowed", "yes", "--staff-only", "--db", db])
    assert {a["name"]: a["members_set"] for a in json.loads(rules.output)}["winback"] is False, rules.output
    staff = runner.invoke(app, ["profile", "M-1", "--attr", "winback=yes", "--db", db])  # staff set it
    assert json.loads(staff.output)["attributes"] == {"age_band": "30-39", "winback": "yes"}, staff.output
    withdrawn = runner.invoke(app, ["profile", "M-1", "--withdraw-consent", "marketing", "--db", db])
    assert json.loads(withdrawn.output)["marketing"] is False
    rebuilt = runner.invoke(app, ["stats", "rebuild", "--json", "--db", db])
    assert json.loads(rebuilt.output) == {
        "member_totals": 1,
        "member_days": 1,
        "member_category_days": 1,
        "member_category_windows": 0,  # not rolled yet
    }
    rolled = runner.invoke(app, ["stats", "roll", "--to", "2026-01-30", "--json", "--db", db])
    assert json.loads(rolled.output) == {"days": 1, "as_of": "2026-01-30"}
    ahead = runner.invoke(app, ["stats", "roll", "--to", "2026-01-31", "--json", "--db", db])
    assert json.loads(ahead.output) == {"days": 1, "as_of": "2026-01-31"}  # Jan 1 has left the 30 days
    assert json.loads(runner.invoke(app, ["stats", "roll", "--to", "2026-01-02", "--json", "--db", db]).output) == {
        "days": 0,
        "as_of": "2026-01-31",
    }  # never back, unless asked
    told = runner.invoke(app, ["stats", "roll", "--to", "2026-01-02", "--db", db])
    assert told.exit_code == 0 and "after 2026-01-02" in told.output
    assert "roll --back --to 2026-01-02" in " ".join(told.output.split())
    back = runner.invoke(app, ["stats", "roll", "--to", "2026-01-02", "--back", "--json", "--db", db])
    assert json.loads(back.output) == {"days": 29, "as_of": "2026-01-02"}
    bad = runner.invoke(app, ["stats", "roll", "--to", "yesterday", "--db", db])
    assert bad.exit_code == 1 and "not a day" in bad.output
    reopened = HqStore(db)
    with reopened.db.read() as tx:
        row = tx.one("SELECT last_day, visits_30, spend_30 FROM member_totals WHERE member_id = 'M-1'")
    reopened.close()
    assert row == ("2026-01-01", 1, 1500)
    shown = runner.invoke(app, ["stats", "show", "M-1", "--as-of", "2026-01-02", "--json", "--db", db])
    got = json.loads(shown.output)
    assert got["visits_30"] == 1 and got["spend"] == 1500 and got["stores_visited"] == ["S1"]


def test_the_join_page_runs_only_its_own_script_and_style(http: httpx.Client) -> None:
    """The join page shares its origin with the back office: its policy names its one script and its one style
    by their digests, never 'unsafe-inline', so markup that ever reached the page could not run there."""
    import base64
    import hashlib
    import re

    reply = http.get("/join")
    policy = reply.headers["content-security-policy"]
    assert "unsafe-inline" not in policy, policy
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        (body,) = re.findall(rf"<{tag}>(.*?)</{tag}>", reply.text, re.S)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in policy, (tag, policy)
