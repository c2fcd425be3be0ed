"""The systemd units verify and are hardened (exposure <= 2.0); the install files agree with each
other; install.sh and uninstall.sh work into a scratch root, and uninstall keeps the data."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from terminal.config import load
from tests.ops.helpers import ROOT

SYSTEMD = ROOT / "systemd"
UNITS = ["tillpoint.service", "tillpoint-hq.service"]
INSTALLED_EXE = "/opt/tillpoint/venv/bin/tillpoint"
MAX_EXPOSURE = 2.0


def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail(
            "systemd-analyze is missing: install the Debian package systemd (apt-get install systemd; "
            "bash .ci/dev test does it as root)",
            pytrace=False,
        )
    return found


def unit_settings(unit: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (SYSTEMD / unit).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def exposure(unit_file: Path) -> float:
    done = subprocess.run(
        [analyze(), "security", "--offline=true", str(unit_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", done.stdout)
    assert found, f"no exposure level in systemd-analyze output:\n{done.stdout}\n{done.stderr}"
    return float(found.group(1))


@pytest.mark.parametrize("unit", UNITS)
def test_unit_verifies(unit: str, tmp_path: Path) -> None:
    # ExecStart names the installed virtualenv; verify against this checkout's own console script.
    exe = Path(sys.executable).parent / "tillpoint"
    assert exe.exists(), f"{exe} missing: install the package into the virtualenv (pip install -e .)"
    copy = tmp_path / unit
    copy.write_text((SYSTEMD / unit).read_text().replace(INSTALLED_EXE, str(exe)))
    done = subprocess.run([analyze(), "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_unit_exposure_is_low(unit: str) -> None:
    score = exposure(SYSTEMD / unit)
    assert score <= MAX_EXPOSURE, f"{unit}: systemd-analyze security rates it {score}, above {MAX_EXPOSURE}"


def test_the_exposure_check_can_fail(tmp_path: Path) -> None:
    weak = tmp_path / "weak.service"
    weak.write_text("[Service]\nExecStart=/bin/true\n")
    assert exposure(weak) > MAX_EXPOSURE


def test_till_unit_is_notify_with_watchdog_and_device_access() -> None:
    s = unit_settings("tillpoint.service")
    assert s["Type"] == ["notify"] and s["Restart"] == ["on-failure"]
    assert int(s["WatchdogSec"][0]) > 0 and s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert {"char-usb_device rw", "char-video4linux rw"} <= set(s["DeviceAllow"])
    # the printer in the middle's USB (usblp) and serial (ttyS) printers, as docs/receipts.md sets them up
    assert {"char-usb rw", "char-ttyS rw"} <= set(s["DeviceAllow"])
    sysusers = (SYSTEMD / "tillpoint.sysusers").read_text()
    assert re.search(r"^m tillpoint lp$", sysusers, re.M) and re.search(r"^m tillpoint dialout$", sysusers, re.M)
    assert s["ProtectSystem"] == ["strict"] and s["DevicePolicy"] == ["closed"]


def test_install_files_agree_with_each_other(tmp_path: Path) -> None:
    unit = unit_settings("tillpoint.service")
    sysusers = (SYSTEMD / "tillpoint.sysusers").read_text()
    user = unit["User"][0]
    assert re.search(rf"^u {user} ", sysusers, re.M), "the unit's User= is not made by sysusers.d"
    assert f'subject.user == "{user}"' in (SYSTEMD / "tillpoint-pcscd.polkit.rules").read_text()
    assert "org.debian.pcsc-lite.access_pcsc" in (SYSTEMD / "tillpoint-pcscd.polkit.rules").read_text()
    edited = tmp_path / "tillpoint.toml"  # the shipped config validates once head office's address is set
    edited.write_text((SYSTEMD / "tillpoint.toml").read_text().replace("hq.example.invalid", "hq.chain.example"))
    example = load(edited)
    state = ["/var/lib/" + d for d in unit["StateDirectory"][0].split()]
    assert str(example.data_dir) in state and str(example.card_key_path.parent) in state
    assert not example.hq.token_file  # <data_dir>/hq.token: writable, so the daemon can rotate it
    assert unit["ExecStart"][0] == f"{INSTALLED_EXE} run --config /etc/tillpoint/tillpoint.toml"
    tmpfiles = (SYSTEMD / "tillpoint.tmpfiles").read_text()
    assert f"d /var/lib/tillpoint/data       0700 {user} {user}" in tmpfiles


def test_a_configuration_error_stops_the_till_instead_of_restarting_it_every_2_s(tmp_path: Path) -> None:
    """Restart=on-failure with no start limit restarted a till whose config is wrong (the installed file not yet
    edited, after a reboot) every 2 s for ever, each time logging the same error. `tillpoint run` exits 2 on a
    configuration error and only then; the unit does not restart on it."""
    s = unit_settings("tillpoint.service")
    assert s["Restart"] == ["on-failure"] and s["StartLimitIntervalSec"] == ["0"]
    assert "2" in " ".join(s.get("RestartPreventExitStatus", [])).split()
    done = subprocess.run(
        [sys.executable, "-m", "tillpoint.cli", "run", "--config", str(SYSTEMD / "tillpoint.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "config key 'hq.url'" in done.stdout + done.stderr, done.stdout + done.stderr


def test_head_office_writes_its_migration_backup_where_the_unit_lets_it() -> None:
    """A migration on PostgreSQL first runs pg_dump into $TILLPOINT_HQ_BACKUP_DIR, else the working directory: a
    service's is "/", read-only under ProtectSystem=strict, so every start with a migration to apply stopped with
    backup_failed. It must be the unit's state directory (the only place it may write)."""
    s = unit_settings("tillpoint-hq.service")
    assert s["ProtectSystem"] == ["strict"]
    env = dict(v.split("=", 1) for line in s.get("Environment", []) for v in line.split())
    backups = env.get("TILLPOINT_HQ_BACKUP_DIR") or (s.get("WorkingDirectory") or ["/"])[-1]
    writable = ["/var/lib/" + d for d in s["StateDirectory"][0].split()]
    assert backups in writable, f"a migration's pg_dump would write to {backups}, not to {writable}"


def test_the_documented_head_office_drop_in_gives_it_the_card_key(tmp_path: Path) -> None:
    """docs/install.md's drop-in for head office's server: systemd reads the key as root and hands the dynamic
    user a copy (the user reads nothing of /etc/tillpoint), and the unit's own command gets --card-key-file."""
    doc = (ROOT / "docs/install.md").read_text()
    found = re.search(
        r"sudo tee (/etc/systemd/system/tillpoint-hq\.service\.d/\S+) >/dev/null <<'END'\n(.*?)\nEND\n", doc, re.S
    )
    assert found, "docs/install.md has no drop-in for tillpoint-hq.service"
    drop_in = found.group(2) + "\n"
    lines = drop_in.splitlines()
    unit = unit_settings("tillpoint-hq.service")
    assert lines[:3] == ["[Service]", lines[1], "ExecStart="] and lines[1].startswith("LoadCredential=card-hash.key:")
    key = lines[1].split(":", 1)[1]
    assert f"sudo install -m 0600 card-hash.key {key}\n" in doc
    assert lines[3] == f"ExecStart={unit['ExecStart'][0]} --card-key-file %d/card-hash.key"
    # systemd-analyze verify reads the unit with the drop-in beside it (its own console script for ExecStart).
    exe = Path(sys.executable).parent / "tillpoint"
    (tmp_path / "tillpoint-hq.service.d").mkdir()
    (tmp_path / "tillpoint-hq.service").write_text(
        (SYSTEMD / "tillpoint-hq.service").read_text().replace(INSTALLED_EXE, str(exe))
    )
    (tmp_path / "tillpoint-hq.service.d" / Path(found.group(1)).name).write_text(
        drop_in.replace(INSTALLED_EXE, str(exe))
    )
    done = subprocess.run(
        [analyze(), "verify", str(tmp_path / "tillpoint-hq.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def install_sh_debian_packages() -> list[str]:
    """The Debian packages install.sh's apt-get line installs (its continuation lines joined)."""
    script = (SYSTEMD / "install.sh").read_text().replace("\\\n", " ")
    found = re.search(r"apt-get install -y -qq --no-install-recommends ([^>\n]+)", script)
    assert found, "no apt-get install line in install.sh"
    return found.group(1).split()


def test_install_sh_installs_what_the_from_source_extensions_build_against() -> None:
    """pyscard (PC/SC) and evdev (the global hotkeys the unit's SupplementaryGroups=input is for, and wedge
    scanners) have no Linux wheel: pip builds them in the new virtualenv against Debian's python3 headers
    (python3-dev) and the Linux headers (linux-libc-dev), which a fresh Debian 12 lacks. install.sh and
    docs/install.md's step 1 name the same list."""
    packages = install_sh_debian_packages()
    assert {"python3-dev", "gcc", "swig", "libpcsclite-dev", "linux-libc-dev"} <= set(packages), packages
    assert '"$sources[pcsc,wedge]"' in (SYSTEMD / "install.sh").read_text(), "install.sh leaves out evdev"
    step = re.search(r"^1\. `apt-get install ([^`]+)`", (ROOT / "docs/install.md").read_text(), re.M)
    assert step, "docs/install.md has no step 1 naming the Debian packages"
    assert step.group(1).split() == packages, "docs/install.md's step 1 and install.sh install different packages"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SYSTEMD / name), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_install_scripts_name_the_keys_the_guide_has_set() -> None:
    """A new till's config needs its store as well as its id and head office (a till of store S-002 left at the
    shipped S-001 is refused, store_mismatch): install.sh and the package's postinst say so, as the guide does."""
    guide = (ROOT / "docs/install.md").read_text()
    assert (
        len(re.findall(r"sudoedit /etc/tillpoint/tillpoint.toml +# terminal.id, terminal.store_id, hq.url", guide)) == 2
    )
    for script in (SYSTEMD / "install.sh", ROOT / "packaging/deb/postinst"):
        assert "set terminal.id, terminal.store_id and hq.url in" in script.read_text(), script.name


def test_install_then_uninstall_keeps_data(tmp_path: Path) -> None:
    analyze()  # systemd-sysusers and systemd-tmpfiles come with the same package
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    key, token = tmp_path / "card.key", tmp_path / "hq.token"
    key.write_bytes(bytes(range(32)))
    token.write_text("terminal-token\n")
    done = run_script(
        "install.sh", "--root", str(root), "--no-venv", "--card-key", str(key), "--hq-token", str(token), "--with-hq"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for path in (
        "etc/systemd/system/tillpoint.service",
        "etc/systemd/system/tillpoint-hq.service",
        "etc/sysusers.d/tillpoint.conf",
        "etc/tmpfiles.d/tillpoint.conf",
        "etc/polkit-1/rules.d/50-tillpoint-pcscd.rules",
        "etc/tillpoint/tillpoint.toml",
        "opt/tillpoint/share/doc/install.md",
    ):
        assert (root / path).is_file(), path
    for name, where in (
        ("60-tillpoint-readers.rules", "etc/udev/rules.d"),
        ("tillpoint-nfc-blacklist.conf", "etc/modprobe.d"),
    ):
        if (SYSTEMD / name).exists():
            assert (root / where / name).read_bytes() == (SYSTEMD / name).read_bytes()
    passwd = (root / "etc/passwd").read_text()
    uid = int(re.search(r"^tillpoint:x:(\d+):", passwd, re.M).group(1))  # type: ignore[union-attr]
    data = root / "var/lib/tillpoint"
    assert (data / "data").stat().st_uid == uid and (data / "data").stat().st_mode & 0o777 == 0o700
    assert (data / "card-hash.key").read_bytes() == key.read_bytes()
    assert (data / "card-hash.key").stat().st_mode & 0o777 == 0o600
    assert (data / "data/hq.token").read_text() == "terminal-token\n"
    assert (data / "data/hq.token").stat().st_mode & 0o777 == 0o600

    # The operator edits the config and the till makes data; a reinstall (upgrade) keeps both.
    config = root / "etc/tillpoint/tillpoint.toml"
    config.write_text(config.read_text().replace('id = "T-001"', 'id = "T-042"'))
    (data / "data" / "terminal.db").write_bytes(b"journal")
    assert run_script("install.sh", "--root", str(root), "--no-venv").returncode == 0
    assert 'id = "T-042"' in config.read_text()

    done = run_script("uninstall.sh", "--root", str(root))
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (root / "etc/systemd/system/tillpoint.service").exists()
    assert not (root / "etc/polkit-1/rules.d/50-tillpoint-pcscd.rules").exists()
    assert not (root / "opt/tillpoint").exists()
    assert (data / "data" / "terminal.db").read_bytes() == b"journal"
    assert (data / "card-hash.key").exists() and config.exists() and "kept /var/lib/tillpoint" in done.stdout


def test_install_into_an_image_builds_a_virtualenv_that_runs_where_the_image_puts_it(tmp_path: Path) -> None:
    """``install.sh --root`` builds the virtualenv inside the image's root: its scripts (the ``tillpoint`` the
    unit's ExecStart names first) must name their interpreter where the booted image has it, never the root it was
    built under, and the command runs. It installs the checkout as it is: a module an earlier install's build left
    in the checkout's ``build/`` (one the newer release removed) is not installed again, and the checkout is left
    as it was found."""
    analyze()
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, checkout / name)
    for tree in ("terminal", "drivers", "sync", "hq", "tillpoint", "systemd", "docs"):
        shutil.copytree(ROOT / tree, checkout / tree, ignore=shutil.ignore_patterns("__pycache__"))
    stale = checkout / "build/lib/terminal/removed_since.py"  # what the install of an older release left there
    stale.parent.mkdir(parents=True)
    stale.write_text("GONE = True\n")
    before = sorted(str(p.relative_to(checkout)) for p in checkout.rglob("*"))
    root = tmp_path / "image"
    (root / "etc").mkdir(parents=True)
    done = subprocess.run(
        ["bash", str(checkout / "systemd/install.sh"), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        # pip's byte-code of the dependencies (numpy, OpenCV, fontTools ...) is pip's own work, none of it read
        # here: more than half of the install's CPU
        env={**os.environ, "PIP_NO_COMPILE": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    venv = root / INSTALLED_EXE.removeprefix("/").removesuffix("/bin/tillpoint")
    assert unit_settings("tillpoint.service")["ExecStart"][0].split()[0] == INSTALLED_EXE
    assert (venv / "bin/tillpoint").read_text().splitlines()[0] == f"#!{Path(INSTALLED_EXE).with_name('python')}"
    for script in sorted((venv / "bin").iterdir()):
        if script.is_file() and not script.is_symlink():
            assert str(root) not in script.read_text(errors="replace"), f"{script.name} names the build root"
    assert str(root) not in (venv / "pyvenv.cfg").read_text()
    version = subprocess.run(
        [str(venv / "bin/python"), str(venv / "bin/tillpoint"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}},
    )
    assert version.returncode == 0 and "tillpoint" in version.stdout, version.stdout + version.stderr
    assert not list(venv.glob("lib/python3*/site-packages/terminal/removed_since.py")), "a stale module installed"
    assert sorted(str(p.relative_to(checkout)) for p in checkout.rglob("*")) == before, (
        "install.sh wrote in the checkout"
    )
