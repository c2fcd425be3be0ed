from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import certifi
import pytest

from terminal import config
from terminal.errors import ConfigError, SetupCode

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_need_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TILLPOINT_CONFIG", raising=False)
    cfg = config.load(None)
    assert cfg.terminal.id == "T-001" and cfg.reader.devices == ["auto:"]


def test_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[terminal]\nid = "T-042"\n[hq]\nurl = "https://hq.example"\npush_interval = 0.5\n')
    monkeypatch.setenv("TILLPOINT_CONFIG", str(path))
    cfg = config.load()
    assert (cfg.terminal.id, cfg.hq.url, cfg.hq.push_interval) == ("T-042", "https://hq.example", 0.5)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[hq]\npush_interval = -1\n", "hq.push_interval"),
        ("[hq]\nurl = 'ftp://x'\n", "hq.url"),
        ("[api]\nport = 70000\n", "api.port"),
        ("[terminal]\ncurrency = 'euro'\n", "terminal.currency"),
        ("[terminal]\nid = 'bad id!'\n", "terminal.id"),
        ("[reader]\ndevices = ['pcsc']\n", "reader.devices"),
        ("[scanner]\ndevices = ['camera']\n", "scanner.devices"),
        ("[door]\ndevices = ['nfcpy']\n", "door.devices"),
        ("[checkin]\nwallet_url = 'wallet.example'\n", "checkin.wallet_url"),
        ("[hq]\nurl = 'http://[/x]:1'\n", "hq.url"),  # a bracketed host that is no IPv6 address
        ("[hq]\nurl = 'https://hq.example:port'\n", "hq.url"),
        ("[hq]\nurl = 'https://:8731'\n", "hq.url"),
        ("[checkin]\nwallet_url = 'https://[wallet'\n", "checkin.wallet_url"),
        ("[panel]\njoin_url = 'https://shop.example:99999/join'\n", "panel.join_url"),
        ("[hq]\nbogus = 1\n", "hq.bogus"),
        ("[hotkeys]\ntopup = 'F99'\n", "hotkeys.topup"),
        ("[nonsense]\nx = 1\n", "nonsense"),
    ],
)
def test_bad_values_name_their_key(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.key == key
    if key.endswith(".devices"):
        assert "is not 'kind:argument'" in str(info.value)


@pytest.mark.parametrize(
    ("value", "words"),
    [("'fast'", "'auto' or a valid number"), ("-3", "'auto' or greater than 0"), ("20000", "'auto' or less than")],
)
def test_a_camera_control_refused_names_its_key_and_both_kinds_of_value(tmp_path: Path, value: str, words: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[scanner]\ndevices = ["camera:0"]\n[scanner.cameras."camera:0"]\nexposure = {value}\n')
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.key == "scanner.cameras.camera:0.exposure"  # not "...exposure.literal['auto']"
    assert words in str(info.value)


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[hq\n")
    with pytest.raises(ConfigError, match="valid TOML"):
        config.load(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.toml")


def test_a_reader_is_the_tills_or_the_doors_never_both(tmp_path: Path) -> None:
    path = tmp_path / "both.toml"
    path.write_text("[reader]\ndevices = ['pcsc:ACS*']\n[door]\ndevices = ['pcsc:ACS*']\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.key == "door.devices" and "'pcsc:ACS*'" in str(info.value)
    path.write_text("[reader]\ndevices = ['pcsc:ACS*']\n[door]\ndevices = ['nfcpy:usb:054c:06c3']\n")
    assert config.load(path).door.devices == ["nfcpy:usb:054c:06c3"]


def test_the_topup_hotkey_is_global_only_when_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The panel's F3 sells a top-up; as a global hotkey it is off until a key is bound (the POS's keys)."""
    monkeypatch.delenv("TILLPOINT_CONFIG", raising=False)
    assert "topup" not in config.load(None).hotkeys.keymap()
    path = tmp_path / "t.toml"
    path.write_text("[hotkeys]\ntopup = 'Ctrl+F3'\n[panel]\nkeys = { topup = 'F12' }\n")
    cfg = config.load(path)
    assert cfg.hotkeys.keymap()["topup"] == "Ctrl+F3" and cfg.panel.keys["topup"] == "F12"


def test_an_emptied_config_file_is_refused(tmp_path: Path) -> None:
    """A save cut by a power cut leaves the file empty: the defaults would start another till on a new
    database beside the real one, so an empty file is an error naming the file."""
    path = tmp_path / "till.toml"
    for empty in ("", "\n  \n# only a comment\n"):
        path.write_text(empty)
        with pytest.raises(ConfigError, match="is empty") as info:
            config.load(path)
        assert info.value.key == "--config"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8731", True),
        ("http://127.8.9.1:8731", True),
        ("http://[::1]:8731", True),
        ("http://localhost:8731", True),
        ("https://hq.example.com", True),
        ("http://hq.example.com", False),
        ("http://192.0.2.10:8731", False),
        ("http://localhost.example.com", False),
        ("http://127.0.0.1.example.com", False),
    ],
)
def test_head_office_over_plain_http_only_on_this_machine(url: str, allowed: bool) -> None:
    """Over a network plain http lets anyone on it read the till's credential and replay or change what head
    office sends; it is refused unless the operator says the network is trusted."""
    raw = {"hq": {"url": url}}
    if allowed:
        assert config.validate(raw).hq.url == url
    else:
        with pytest.raises(ConfigError, match="allow_plain_http") as info:
            config.validate(raw)
        assert info.value.key == "hq.url"
        assert config.validate({"hq": {"url": url, "allow_plain_http": True}}).hq.allow_plain_http


def test_the_placeholder_head_office_of_the_installed_file_never_runs(tmp_path: Path) -> None:
    """The package enables the till at install with systemd/tillpoint.toml as the config: a start before it is edited
    (a reboot) ran terminal T-001 of store S-001 syncing with nowhere, and made a card-hash key of its own."""
    with pytest.raises(ConfigError, match="placeholder") as info:
        config.load(ROOT / "systemd/tillpoint.toml")
    assert info.value.key == "hq.url" and info.value.code is None
    for url in ("https://hq.example.invalid:8443/", "https://invalid", "https://HQ.EXAMPLE.INVALID."):
        with pytest.raises(ConfigError, match="placeholder"):
            config.validate({"hq": {"url": url}})
    edited = tmp_path / "till.toml"
    edited.write_text(_shipped())
    assert config.load(edited).hq.url == "https://hq.chain.example"
    assert config.validate({"hq": {"url": "https://invalid.example.com"}}).hq.url == "https://invalid.example.com"


def _shipped() -> str:
    """systemd/tillpoint.toml with head office's address set, as docs/install.md says to."""
    text = (ROOT / "systemd/tillpoint.toml").read_text()
    assert 'url = "https://hq.example.invalid"' in text
    return text.replace('url = "https://hq.example.invalid"', 'url = "https://hq.chain.example"')


def test_a_ca_bundle_named_must_be_there(tmp_path: Path) -> None:
    """A missing CA file failed every request to head office, and doctor, with a traceback, and one holding no
    certificate stopped the daemon's start with one: each is a configuration error naming the key."""
    with pytest.raises(ConfigError, match="readable CA bundle") as info:
        config.validate({"hq": {"url": "https://hq.example.com", "ca_file": str(tmp_path / "nope.pem")}})
    assert info.value.key == "hq.ca_file"
    (tmp_path / "cut.pem").write_text("-----BEGIN CERTIFICATE-----\n")  # no certificate: refused at load too
    with pytest.raises(ConfigError, match="a CA bundle of PEM certificates") as info:
        config.validate({"hq": {"ca_file": str(tmp_path / "cut.pem")}})
    assert info.value.key == "hq.ca_file" and str(tmp_path / "cut.pem") in str(info.value)
    bundle = certifi.where()  # PEM certificates
    assert config.validate({"hq": {"ca_file": bundle}}).hq.ca_file == bundle


@pytest.mark.parametrize(
    ("raw", "held", "refused"),
    [
        ({}, config.Held(terminal_id="T-9"), ("terminal.id", SetupCode.CONFIG_INCOMPLETE)),
        ({"terminal": {"id": "T-9"}}, config.Held("T-9", "S-9"), ("terminal.store_id", SetupCode.CONFIG_INCOMPLETE)),
        (
            {"terminal": {"id": "T-9"}},
            config.Held("T-9", hq_store_id="S-9"),
            ("terminal.store_id", "config_incomplete"),
        ),
        ({"hq": {"push_interval": 1}}, config.Held(credential="hq.token"), ("hq.url", SetupCode.CONFIG_INCOMPLETE)),
        ({"hq": {"push_interval": 1}}, config.Held(synced=True), ("hq.url", SetupCode.CONFIG_INCOMPLETE)),
        ({"terminal": {"store_id": "S-1"}}, config.Held(hq_store_id="S-2"), ("terminal.store_id", "store_mismatch")),
        ({}, config.Held("T-001", "S-001"), None),  # a till that always ran on the defaults: nothing changes
        ({}, config.Held(), None),  # a new till, no credential: the defaults are all it has (a demo)
        ({"terminal": {"id": "T-2", "store_id": "S-2"}}, config.Held("T-1", "S-1"), None),  # the operator's choice
        ({"hq": {"url": "https://hq.example"}}, config.Held(credential="hq.token", synced=True), None),
    ],
)
def test_a_key_left_out_is_refused_when_the_till_holds_otherwise(
    raw: dict[str, Any], held: config.Held, refused: tuple[str, str] | None
) -> None:
    cfg = config.validate(raw)
    if refused is None:
        config.check_held(cfg, held)
        return
    with pytest.raises(ConfigError) as exc:
        config.check_held(cfg, held)
    assert (exc.value.key, exc.value.code) == refused and str(exc.value).startswith(f"{refused[1]}: config key")


def test_overrides_keep_what_the_file_left_out(tmp_path: Path) -> None:
    """``run --log-level`` and the demo override keys of the file: what the file left out stays left out."""
    from terminal.cli import _load

    path = tmp_path / "t.toml"
    path.write_text('[terminal]\nid = "T-7"\n')
    cfg = _load(path, log={"level": "debug"})
    assert cfg.log.level == "debug" and "url" not in cfg.hq.model_fields_set
    assert "store_id" not in cfg.terminal.model_fields_set and "id" in cfg.terminal.model_fields_set


def test_the_data_directory_is_systemds_last_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped unit's ``StateDirectory=tillpoint tillpoint/data``: the card key's directory, then the data's."""
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/tillpoint:/var/lib/tillpoint/data")
    cfg = config.validate({})
    assert (cfg.data_dir, cfg.card_key_path) == (
        Path("/var/lib/tillpoint/data"),
        Path("/var/lib/tillpoint/card-hash.key"),
    )
    assert cfg.hq_token_path == Path("/var/lib/tillpoint/data/hq.token")


def _documented() -> str:
    """The example config of docs/configuration.md (its TOML block)."""
    doc = (ROOT / "docs/configuration.md").read_text()
    start = doc.index("```toml\n") + len("```toml\n")
    return doc[start : doc.index("```", start)]


@pytest.mark.parametrize("shipped", ["systemd/tillpoint.toml", "docs/configuration.md"])
def test_a_config_cut_in_the_middle_of_a_line_never_runs_on_a_value_it_did_not_say(
    tmp_path: Path, shipped: str
) -> None:
    """A copy or a save stopped in the middle of a line (a full disk, a power cut) leaves a file that still parses
    when that line gives a number: ``port = 8731`` cut to ``port = 87``. Cut at every character of the file the
    package installs and of the documented reference: each cut is refused, or every value it holds is the whole
    file's (what a cut at a line boundary loses is ``check_held``'s to refuse)."""
    whole = _documented() if shipped.endswith(".md") else _shipped()
    full = tomllib.loads(whole)
    path = tmp_path / "till.toml"
    refused = 0
    for end in range(1, len(whole)):
        text = whole[:end]
        if text.endswith("\n"):
            continue
        try:
            cut = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            continue
        path.write_text(text)
        try:
            config.load(path)
        except ConfigError as exc:
            refused += exc.code is SetupCode.CONFIG_INCOMPLETE
            continue
        differ = [
            f"{section}.{key}"
            for section, values in cut.items()
            for key, value in values.items()
            if value != full[section][key]
        ]
        assert not differ, (text[-60:], differ)
    assert refused, "no cut fell in a number"


def test_the_local_api_on_ipv6_loopback_is_a_bracketed_url(tmp_path: Path) -> None:
    """``[api] host = "::1"``: the commands' URL of the local API brackets it (``http://::1:8080`` is no URL), as
    the daemon's note of it does."""
    cfg = config.validate({"terminal": {"data_dir": str(tmp_path)}, "api": {"host": "::1", "port": 8080}})
    assert cfg.local_api() == ("http://[::1]:8080", "")
    cfg.api_url_path.write_text("http://[::1]:8081\n")
    assert cfg.local_api() == ("http://[::1]:8081", "")
