"""The Debian package (packaging/deb/build.sh): it holds what it should with the right control data,
lintian finds no error in it, an unpacked copy runs on its own (head office answers, the till serves
its panel, every module comes from the package), and dpkg installs, upgrades, removes and purges it
in a throwaway root the way Debian users expect, without touching this system."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import terminal
from tests.fixtures.hq import free_port
from tests.ops.helpers import ROOT, NotifyListener, till_config
from tests.waiting import wait_until

BUILD = ROOT / "packaging" / "deb" / "build.sh"
SYSTEMD = ROOT / "systemd"
VERSION = terminal.__version__
UPGRADE_VERSION = f"{VERSION}+1"  # the same tree, packaged as a later version
BUILD_TIMEOUT = 900.0
APP = "opt/tillpoint"
LIB = f"{APP}/lib"
INSTALLED = {  # path in the package -> the source it must be a copy of (None: only present)
    f"{APP}/bin/tillpoint": ROOT / "packaging/deb/tillpoint",
    f"{LIB}/terminal/__init__.py": ROOT / "terminal/__init__.py",
    f"{LIB}/terminal/api/panel/index.html": ROOT / "terminal/api/panel/index.html",
    f"{LIB}/terminal/api/panel/panel.js": ROOT / "terminal/api/panel/panel.js",
    f"{LIB}/terminal/api/panel/panel.css": ROOT / "terminal/api/panel/panel.css",
    f"{APP}/share/doc/install.md": ROOT / "docs/install.md",
    "lib/systemd/system/tillpoint.service": SYSTEMD / "tillpoint.service",
    "lib/systemd/system/tillpoint-hq.service": SYSTEMD / "tillpoint-hq.service",
    "usr/lib/sysusers.d/tillpoint.conf": SYSTEMD / "tillpoint.sysusers",
    "usr/lib/tmpfiles.d/tillpoint.conf": SYSTEMD / "tillpoint.tmpfiles",
    "usr/share/polkit-1/rules.d/50-tillpoint-pcscd.rules": SYSTEMD / "tillpoint-pcscd.polkit.rules",
    "lib/udev/rules.d/60-tillpoint-readers.rules": SYSTEMD / "60-tillpoint-readers.rules",
    "etc/modprobe.d/tillpoint-nfc-blacklist.conf": SYSTEMD / "tillpoint-nfc-blacklist.conf",
    "etc/tillpoint/tillpoint.toml": SYSTEMD / "tillpoint.toml",
    "usr/share/doc/tillpoint/copyright": ROOT / "packaging/deb/copyright",
    "usr/share/doc/tillpoint/changelog.gz": None,
}
CONFFILES = ["/etc/modprobe.d/tillpoint-nfc-blacklist.conf", "/etc/tillpoint/tillpoint.toml"]
# The units' ExecStart path: a symlink to the launcher, which finds ../lib from its real path.
UNIT_EXE = f"{APP}/venv/bin/tillpoint"


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: apt-get install {package} (bash .ci/dev test does it as root)", pytrace=False)
    return found


def run(*cmd: str, timeout: float = 120.0, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False, **kw)


class Build:
    """build.sh in a process of its own (the upgrade builds while the other tests run)."""

    def __init__(self, out: Path, version: str | None = None) -> None:
        out.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "TILLPOINT_DEB_VERSION"}
        if version is not None:
            env["TILLPOINT_DEB_VERSION"] = version
        self.log = out / "build.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                ["bash", str(BUILD), "--out", str(out)],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                text=True,
                start_new_session=True,
            )

    def wait(self) -> Path:
        try:
            out, _ = self.proc.communicate(timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"build.sh took more than {BUILD_TIMEOUT:.0f} s") from None
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])
        assert self.proc.returncode == 0, f"build.sh failed ({self.proc.returncode}):\n{tail}"
        deb = Path(out.strip().splitlines()[-1])
        assert deb.is_file(), f"build.sh printed {deb}, which is not a file:\n{tail}"
        return deb

    def stop(self) -> None:
        """End the build (its own session: build.sh, pip, dpkg-deb); build.sh cleans up on SIGTERM."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)


LINTIAN_SKIPPED = ("binaries/spelling",)
"""lintian checks the package test leaves out, each able to emit only a tag below a warning (checked below)."""


class Debs:
    def __init__(self, deb: Path, upgrade_dir: Path) -> None:
        self.deb = deb
        self._dir = upgrade_dir
        self._upgrade_deb: Path | None = None
        # lintian takes about a minute: it reads the package while the other tests run. One check that can only
        # inform is left out, on the bundled libraries' binaries (binaries/spelling: spelling-error-in-binary,
        # info). A warning fails as an error does, unless packaging/deb/lintian-overrides overrides it;
        # --display-info shows the overrides that match nothing.
        self.lintian = subprocess.Popen(
            [
                tool("lintian", "lintian"),
                "--fail-on",
                "error,warning",
                "--display-info",
                "--tag-display-limit",
                "0",
                "--dont-check-part",
                ",".join(LINTIAN_SKIPPED),
                str(deb),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def lintian_result(self) -> subprocess.CompletedProcess[str]:
        try:
            out, err = self.lintian.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            self.lintian.kill()
            raise AssertionError("lintian ran for more than 15 minutes") from None
        return subprocess.CompletedProcess(self.lintian.args, self.lintian.returncode, out, err)

    def upgrade(self) -> Path:
        """The same tree packaged as a later version: the package unpacked, its Version raised, packed again
        (uncompressed: what an upgrade does depends on the version and the scripts, not on the compression)."""
        if self._upgrade_deb is None:
            tree = self._dir / "tree"
            done = run("dpkg-deb", "-R", str(self.deb), str(tree))
            assert done.returncode == 0, done.stderr
            control = tree / "DEBIAN" / "control"
            text = control.read_text()
            assert f"Version: {VERSION}\n" in text
            control.write_text(text.replace(f"Version: {VERSION}\n", f"Version: {UPGRADE_VERSION}\n"))
            target = self._dir / f"tillpoint_{UPGRADE_VERSION}_amd64.deb"
            done = run("dpkg-deb", "--root-owner-group", "-Znone", "-b", str(tree), str(target), timeout=300)
            assert done.returncode == 0, done.stderr
            shutil.rmtree(tree)
            self._upgrade_deb = target
        return self._upgrade_deb


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Debs]:
    """The package, built once."""
    tool("dpkg-shlibdeps", "dpkg-dev")
    out, upgrade_out = tmp_path_factory.mktemp("deb"), tmp_path_factory.mktemp("deb-upgrade")
    first = Build(out)
    try:
        deb = first.wait()
    finally:
        first.stop()
    held = Debs(deb, upgrade_out)
    try:
        yield held
    finally:
        if held.lintian.poll() is None:
            held.lintian.kill()
            held.lintian.wait(timeout=30)
        for built in (*out.glob("*.deb"), *upgrade_out.glob("*.deb")):  # 100 MB or more each
            built.unlink()


@pytest.fixture(scope="module")
def unpacked(debs: Debs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("unpacked")
    done = run("dpkg-deb", "-x", str(debs.deb), str(root))
    assert done.returncode == 0, done.stderr
    yield root
    shutil.rmtree(root, ignore_errors=True)


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """What a service gets: no PYTHONPATH, no virtualenv, nothing of the test run's environment."""
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "LANG": "C.UTF-8", **extra}


# -- 1. contents and control data -------------------------------------------------------------------


def test_contents_conffiles_and_control(debs: Debs, unpacked: Path) -> None:
    listing = run("dpkg-deb", "-c", str(debs.deb))
    assert listing.returncode == 0, listing.stderr
    entries: dict[str, str] = {}
    for line in listing.stdout.splitlines():
        fields = line.split(None, 5)
        assert fields[1] == "root/root", f"not owned by root: {line}"
        entries[fields[5].removeprefix("./").split(" -> ")[0].rstrip("/")] = line
    for path, source in INSTALLED.items():
        assert path in entries, f"{path} is not in the package"
        if source is not None:
            assert (unpacked / path).read_bytes() == source.read_bytes(), f"{path} differs from {source}"
    assert entries[f"{APP}/bin/tillpoint"].startswith("-rwxr-xr-x")
    assert entries[UNIT_EXE].startswith("l") and entries[UNIT_EXE].endswith(" -> ../../bin/tillpoint")
    assert f"/{UNIT_EXE} run --config /etc/tillpoint/tillpoint.toml" in (SYSTEMD / "tillpoint.service").read_text()
    scard = [p for p in entries if re.match(rf"{LIB}/smartcard/scard/_scard\..*\.so$", p)]
    assert len(scard) == 1, "pyscard (the [pcsc] extra) is missing"
    sections = run("readelf", "-S", "-d", str(unpacked / scard[0]))
    assert ".symtab" not in sections.stdout, "pyscard, built from source here, is not stripped"
    assert "RPATH" not in sections.stdout and "RUNPATH" not in sections.stdout, "pyscard names a library path"
    # What build.sh compiles (pyscard, evdev) names libc, even a module calling none of it (evdev's _ecodes): a
    # shared object naming no library is one ldd calls statically linked (shared-library-lacks-prerequisites).
    built_here = [p for p in entries if re.match(rf"{LIB}/(smartcard|evdev)/.*\.so$", p)]
    assert len(built_here) >= 4, built_here
    for path in built_here:
        dynamic = run("readelf", "-d", str(unpacked / path)).stdout
        assert "(NEEDED)" in dynamic and "[libc.so.6]" in dynamic, f"{path} names no libc:\n{dynamic}"
        assert re.search(r"\(FLAGS\)\s.*\bBIND_NOW\b", dynamic), f"{path} is not bound at load (-z now):\n{dynamic}"
    assert entries["etc/tillpoint/tillpoint.toml"].startswith("-rw-r-----")
    assert not [p for p in entries if "__pycache__" in p or p.endswith(".pyc")], "byte-code in the package"
    assert not [p for p in entries if p.startswith(f"{LIB}/bin/")], "pip's console scripts (absolute shebangs)"
    unused = [
        p
        for p in entries
        if p.startswith(f"{LIB}/pip") or re.match(rf"{LIB}/numpy/((.*/)?tests/|_core/_\w+_tests\..*\.so$)", p)
    ]
    assert not unused, f"what nothing runs (pip, numpy's tests and their extension modules): {unused[:5]}"
    assert not [p for p in entries if p.startswith(("etc/systemd/", "usr/local/", "var/"))]

    conffiles = run("dpkg-deb", "-I", str(debs.deb), "conffiles")
    assert conffiles.returncode == 0, conffiles.stderr
    assert sorted(conffiles.stdout.split()) == CONFFILES
    for script in ("postinst", "prerm", "postrm"):
        shown = run("dpkg-deb", "-I", str(debs.deb), script)
        assert shown.returncode == 0 and shown.stdout.startswith("#!/bin/sh"), f"no {script}"
        assert "DPKG_ROOT" in shown.stdout, f"{script} ignores DPKG_ROOT"

    fields = run("dpkg-deb", "-f", str(debs.deb), "Package", "Version", "Architecture", "Depends", "Suggests")
    control = dict(line.split(": ", 1) for line in fields.stdout.splitlines())
    assert control["Package"] == "tillpoint"
    assert control["Version"] == VERSION, "the package's version is not terminal.__version__"
    assert debs.deb.name == f"tillpoint_{VERSION}_amd64.deb"
    assert control["Architecture"] == "amd64"
    depends = [d.strip() for d in control["Depends"].split(",")]
    for needed in ("python3 (>= 3.11)", "python3 (<< 3.12)", "pcscd", "libpcsclite1", "systemd"):
        assert needed in depends, f"Depends lacks {needed}: {control['Depends']}"
    assert any(d.startswith("libc6 (>= ") for d in depends), f"no shared-library dependencies: {control['Depends']}"
    assert "postgresql-client" in control["Suggests"].split(", "), "no pg_dump for a PostgreSQL migration's backup"


# -- 3. the unpacked package runs on its own --------------------------------------------------------


def test_unpacked_command_runs(unpacked: Path, tmp_path: Path) -> None:
    done = run(str(unpacked / APP / "bin/tillpoint"), "--help", cwd=tmp_path, env=clean_env(tmp_path))
    assert done.returncode == 0 and "Usage: tillpoint" in done.stdout, done.stdout + done.stderr
    done = run(str(unpacked / UNIT_EXE), "--version", cwd=tmp_path, env=clean_env(tmp_path))
    assert done.returncode == 0 and done.stdout.startswith(f"tillpoint {VERSION} "), done.stdout + done.stderr


# Runs the launcher as its shebang would, then reports where every imported module came from.
WHERE_FROM = """
import atexit, json, runpy, sys
launcher, report = sys.argv[1], sys.argv[2]
def write():
    files = {name: getattr(m, "__file__", None) for name, m in list(sys.modules.items())}
    with open(report, "w") as out:
        json.dump({name: f for name, f in files.items() if isinstance(f, str)}, out)
atexit.register(write)
sys.argv = [launcher, "--help"]
runpy.run_path(launcher, run_name="__main__")
"""


def test_unpacked_imports_come_from_the_package(unpacked: Path, tmp_path: Path) -> None:
    report = tmp_path / "modules.json"
    launcher = unpacked / UNIT_EXE
    done = run(
        "/usr/bin/python3", "-ISB", "-c", WHERE_FROM, str(launcher), str(report), cwd=tmp_path, env=clean_env(tmp_path)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    modules: dict[str, str] = json.loads(report.read_text())
    lib = f"{unpacked / LIB}/"
    assert modules["terminal"] == f"{lib}terminal/__init__.py"
    assert modules["terminal.cli"].startswith(lib) and modules["typer"].startswith(lib)
    assert modules["tillpoint.cli"].startswith(lib) and modules["hq.cli"].startswith(lib)  # the command, both sides
    stdlib = "/usr/lib/python3.11/"
    strays = {name: f for name, f in modules.items() if not f.startswith((lib, stdlib))}
    assert not strays, f"modules from outside the package and the standard library: {strays}"


# Loads every compiled extension module of the package (a damaged or mislinked shared object fails
# here, not on the first camera frame), then decodes a QR code with the till's own decoder.
LOAD_ALL = """
import importlib, json, pathlib, sys
lib = pathlib.Path(sys.argv[1])
sys.path.insert(0, str(lib))
unused = {"PIL._imagingtk"}  # Pillow's Tk bridge needs tkinter (python3-tk); tillpoint draws no windows
names = set()
for so in lib.rglob("*.so"):
    parts = so.relative_to(lib).parts
    if parts[0].endswith(".libs"):
        continue  # the wheels' private copies of C libraries, loaded by their extensions
    stem = parts[-1].split(".")[0]
    if len(parts) > 1 and stem == parts[-2]:
        names.add(".".join(parts[:-1]))  # cv2/cv2.abi3.so: the package cv2 loads it itself
    else:
        names.add(".".join(parts[:-1] + (stem,)))
failed = {}
for name in sorted(names - unused):
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
import numpy, qrcode
from drivers.decode import decode
image = numpy.array(qrcode.make("TP1:deb-package").get_image().convert("L"))
print(json.dumps({"loaded": sorted(names - unused - set(failed)), "failed": failed,
                  "zxing": decode(image, backend="zxing"), "opencv": decode(image, backend="opencv")}))
"""


def test_unpacked_compiled_libraries_load(unpacked: Path, tmp_path: Path) -> None:
    done = run("/usr/bin/python3", "-ISB", "-c", LOAD_ALL, str(unpacked / LIB), cwd=tmp_path, env=clean_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not result["failed"], f"compiled extensions that do not load: {result['failed']}"
    for needed in (
        "cv2",
        "numpy._core._multiarray_umath",
        "zxingcpp",
        "pydantic_core._pydantic_core",
        "smartcard.scard._scard",
        "PIL._imaging",
        "evdev._input",  # the global hotkeys and wedge scanners (the unit gives the group input for them)
    ):
        assert needed in result["loaded"], f"{needed} is not among the package's extensions: {result['loaded']}"
    assert result["zxing"] == ["TP1:deb-package"] and result["opencv"] == ["TP1:deb-package"], result


def mapped_from(pid: int, where: Path) -> bool:
    """Whether the process has a shared object from under ``where`` mapped (its Python libraries)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return f" {where}/" in maps


def stop(proc: subprocess.Popen[Any]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise AssertionError("no exit within 20 s of SIGTERM") from None
    return proc.returncode


def test_unpacked_head_office_answers_health(unpacked: Path, tmp_path: Path) -> None:
    proc = serve_unpacked(unpacked, tmp_path, str(tmp_path / "hq.db"))
    stop(proc)


def test_unpacked_head_office_runs_on_postgresql_on_debians_libpq(unpacked: Path, tmp_path: Path, pg_url: str) -> None:
    """Head office on PostgreSQL from the package: its driver is in the package, in pure Python, on Debian's
    libpq5 (which the package recommends), not a binary wheel bundling its own libpq and OpenSSL."""
    assert not list((unpacked / LIB).glob("psycopg_binary*")), "the package bundles a libpq of its own"
    proc = serve_unpacked(unpacked, tmp_path, pg_url)
    try:
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert re.search(r" /usr/lib/\S+/libpq\.so", maps), "head office on PostgreSQL without Debian's libpq"
    finally:
        stop(proc)


def serve_unpacked(unpacked: Path, tmp_path: Path, db: str) -> subprocess.Popen[Any]:
    """``tillpoint hq serve --db DB`` from the unpacked package, answering ``GET /v1/health`` on its own
    libraries (stopped by the caller)."""
    port = free_port()
    log = tmp_path / "hq.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(unpacked / APP / "bin/tillpoint"),
                "hq",
                "serve",
                "--db",
                db,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
            env=clean_env(tmp_path),
        )
    try:

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"head office exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, 60, "GET /v1/health of head office started from the unpacked package")
        assert mapped_from(proc.pid, unpacked / LIB), "head office does not run on the package's libraries"
    except BaseException:
        stop(proc)
        raise
    return proc


def test_unpacked_till_starts_and_serves_the_panel(unpacked: Path, tmp_path: Path) -> None:
    config = till_config(tmp_path, None, None, "T-DEB")
    port = int(re.search(r"^port = (\d+)$", config.read_text(), re.M).group(1))  # type: ignore[union-attr]
    notify = NotifyListener(tmp_path / "notify.sock")
    log = tmp_path / "till.log"
    try:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(unpacked / UNIT_EXE), "run", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=tmp_path,
                env=clean_env(tmp_path, NOTIFY_SOCKET=str(notify.path)),
            )
        try:

            def ready() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"the till exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
                return notify.count("READY=1") > 0

            wait_until(ready, 60, "READY=1 from the till started from the unpacked package")
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
            assert cmdline[:3] == [b"/usr/bin/python3", b"-ISB", str(unpacked / UNIT_EXE).encode()], cmdline
            assert mapped_from(proc.pid, unpacked / LIB), "the till does not run on the package's libraries"
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5, follow_redirects=True) as http:
                page = http.get("/")
                assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
                assert "<title>tillpoint</title>" in page.text and "panel.js" in page.text
                script = http.get("/panel/panel.js")
                assert (
                    script.status_code == 200 and script.content == (ROOT / "terminal/api/panel/panel.js").read_bytes()
                )
            assert stop(proc) == 0, log.read_text()[-3000:]
        finally:
            stop(proc)
    finally:
        notify.close()


# -- 4. install, upgrade, remove, purge with dpkg in a throwaway root ---------------------------------


def system_state() -> dict[str, Any]:
    """What the package would touch on this system if a maintainer script escaped the root."""
    state: dict[str, Any] = {}
    for path in (
        "/var/lib/tillpoint",
        "/etc/tillpoint",
        "/opt/tillpoint",
        "/usr/lib/sysusers.d/tillpoint.conf",
        "/etc/systemd/system/multi-user.target.wants/tillpoint.service",
        "/var/lib/systemd/deb-systemd-helper-enabled/tillpoint.service.dsh-also",
    ):
        try:
            st = os.lstat(path)
            state[path] = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            state[path] = None
    state["passwd"] = "\ntillpoint:" in "\n" + Path("/etc/passwd").read_text()
    return state


def test_install_upgrade_remove_purge_in_a_throwaway_root(debs: Debs, tmp_path: Path) -> None:
    dpkg_bin = tool("dpkg", "dpkg")
    before = system_state()
    root = tmp_path / "root"
    admin = root / "var/lib/dpkg"
    for sub in ("info", "updates"):
        (admin / sub).mkdir(parents=True)
    (admin / "status").touch()
    (admin / "available").touch()
    # --force-script-chrootless: the maintainer scripts run here with DPKG_ROOT=<root> and work under it;
    # --force-depends: the throwaway root has no python3, pcscd... packages.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DPKG_", "PYTHON"))}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # dpkg wants ldconfig & co.

    def dpkg(*args: str) -> str:
        done = run(
            dpkg_bin,
            f"--root={root}",
            f"--log={tmp_path / 'dpkg.log'}",
            "--force-script-chrootless",
            "--force-depends",
            "--force-not-root",
            "--force-confdef",
            "--force-confold",
            *args,
            timeout=300,
            env=env,
        )
        assert done.returncode == 0, f"dpkg {' '.join(args)}: {done.returncode}\n{done.stdout}{done.stderr}"
        return done.stdout

    def status() -> str:
        done = run(dpkg_bin, f"--root={root}", "-s", "tillpoint", env=env)
        return done.stdout if done.returncode == 0 else ""

    # Install: files in place, the user, its directories and the enabled till unit, all under root.
    dpkg("--install", str(debs.deb))
    assert "Status: install ok installed" in status() and f"Version: {VERSION}\n" in status()
    assert (
        os.access(root / APP / "bin/tillpoint", os.X_OK) and (root / UNIT_EXE).resolve() == root / APP / "bin/tillpoint"
    )
    found = re.search(r"^tillpoint:x:(\d+):(\d+):", (root / "etc/passwd").read_text(), re.M)
    assert found, "postinst did not make the tillpoint user (systemd-sysusers --root)"
    uid, gid = int(found.group(1)), int(found.group(2))
    data = root / "var/lib/tillpoint/data"
    assert data.is_dir() and data.stat().st_uid == uid and data.stat().st_mode & 0o777 == 0o700
    config = root / "etc/tillpoint/tillpoint.toml"
    assert config.stat().st_gid == gid and config.stat().st_mode & 0o777 == 0o640
    assert (root / "etc/systemd/system/multi-user.target.wants/tillpoint.service").is_symlink()
    assert not (root / "etc/systemd/system/multi-user.target.wants/tillpoint-hq.service").exists()

    # The installed command and units, as a store PC uses them.
    installed_commands_work(root, tmp_path)

    # The till makes data; the operator edits the config.
    journal = data / "terminal.db"
    journal.write_bytes(b"journal entries head office has not acknowledged")
    edited = config.read_text().replace('id = "T-001"', 'id = "T-042"')
    assert edited != config.read_text()
    config.write_text(edited)

    # Upgrade to a later version of the package: data and the edited conffile stay.
    upgrade = debs.upgrade()
    assert upgrade.name == f"tillpoint_{UPGRADE_VERSION}_amd64.deb"
    dpkg("--install", str(upgrade))
    assert f"Version: {UPGRADE_VERSION}\n" in status()
    assert journal.read_bytes() == b"journal entries head office has not acknowledged"
    assert config.read_text() == edited
    assert not list(config.parent.glob("*.dpkg-*")), "an unchanged conffile should not leave .dpkg-* files"

    # Remove: the program goes (with the byte-code postinst made), data and configuration stay.
    dpkg("--remove", "tillpoint")
    assert "Status: deinstall ok config-files" in status()
    assert not (root / "opt/tillpoint").exists(), f"left in /opt: {list((root / 'opt').rglob('*'))[:10]}"
    assert not (root / "lib/systemd/system/tillpoint.service").exists()
    assert journal.read_bytes() == b"journal entries head office has not acknowledged"
    assert config.read_text() == edited

    # Purge: the data and the configuration go too.
    dpkg("--purge", "tillpoint")
    assert status() == ""
    assert not (root / "var/lib/tillpoint").exists()
    assert not (root / "etc/tillpoint").exists()
    assert not (root / "etc/modprobe.d/tillpoint-nfc-blacklist.conf").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/tillpoint.service").exists()

    assert system_state() == before, "a maintainer script touched this system instead of the throwaway root"


def installed_commands_work(root: Path, tmp_path: Path) -> None:
    """The installed package's command in a clean environment: its help and head office's, doctor on the file as
    installed (the placeholder head office: the config check fails, naming hq.url, as postinst says) and once the
    operator set hq.url (every check runs; head office is not there), and the installed units verify."""
    exe = str(root / UNIT_EXE)
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home)
    for args, usage in ((["--help"], "Usage: tillpoint "), (["hq", "--help"], "Usage: tillpoint hq ")):
        done = run(exe, *args, cwd=home, env=env)
        assert done.returncode == 0 and usage in done.stdout, done.stdout + done.stderr
    config = root / "etc/tillpoint/tillpoint.toml"
    done = run(exe, "doctor", "--config", str(config), "--json", cwd=home, env=env)
    checks = json.loads(done.stdout)
    assert done.returncode == 2 and [c["name"] for c in checks] == ["config"], done.stdout + done.stderr
    assert checks[0]["verdict"] == "fail" and "'hq.url'" in checks[0]["words"], checks
    # The operator's edit, with the till's paths under the throwaway root and ports nothing listens on.
    edited = home / "tillpoint.toml"
    edited.write_text(
        config.read_text()
        .replace("https://hq.example.invalid", f"http://127.0.0.1:{free_port()}")
        .replace('"/var/lib/tillpoint/', f'"{root}/var/lib/tillpoint/')
        .replace("port = 8732", f"port = {free_port()}")
    )
    done = run(exe, "doctor", "--config", str(edited), "--json", cwd=home, env=env)
    checks = json.loads(done.stdout)
    verdicts = {c["name"]: c["verdict"] for c in checks}
    assert done.returncode == 2 and verdicts["config"] == "ok" and verdicts["head office"] == "fail", checks
    assert {"card key", "hq token", "pcscd", "database", "disk", "daemon"} <= set(verdicts), checks
    assert "Traceback" not in done.stderr, done.stderr
    # The units as installed, their command the installed one under the throwaway root.
    units = tmp_path / "units"
    units.mkdir()
    for unit in ("tillpoint.service", "tillpoint-hq.service"):
        text = (root / "lib/systemd/system" / unit).read_text()
        assert f"ExecStart=/{UNIT_EXE} " in text, unit
        (units / unit).write_text(text.replace(f"/{APP}/", f"{root}/{APP}/"))
        done = run(
            tool("systemd-analyze", "systemd"),
            "verify",
            str(units / unit),
            env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"},
        )
        assert done.returncode == 0 and not done.stderr.strip(), f"{unit}: {done.stderr}"


# -- 5. lintian (started with the build, see Debs) ------------------------------------------------


def test_lintian_reports_no_error_and_no_warning_not_overridden(debs: Debs) -> None:
    """A new warning fails the package test: fix its cause, or override it in packaging/deb/lintian-overrides with
    the reason it is inherent to a package carrying its own Python libraries (docs/install.md). An override that
    matches nothing any more goes too."""
    done = debs.lintian_result()
    lines = done.stdout.splitlines()
    found = [line for line in lines if line.startswith(("E: ", "W: "))]
    stale = [line for line in lines if re.match(r"I: tillpoint: (unused|mismatched)-override ", line)]
    assert done.returncode == 0 and not found and not stale, (
        f"lintian exited with {done.returncode}; {len(found)} errors and warnings, {len(stale)} stale overrides:\n"
        + "\n".join(found + stale)
        + done.stderr
    )


def test_the_lintian_checks_left_out_can_raise_no_warning() -> None:
    """Every tag of the checks the package test leaves out is below a warning, by lintian's own tag files: leaving
    them out can hide no error and no warning (lintian 2.116, Debian 12: /usr/share/lintian/tags/<letter>/<tag>.tag)."""
    tool("lintian", "lintian")
    severities: dict[str, list[str]] = {check: [] for check in LINTIAN_SKIPPED}
    for tag in Path("/usr/share/lintian/tags").glob("*/*.tag"):
        fields = dict(line.split(": ", 1) for line in tag.read_text().splitlines() if ": " in line and line[0] != " ")
        if fields.get("Check") in severities:
            severities[fields["Check"]].append(fields.get("Severity", ""))
    assert all(severities.values()), f"a check left out has no tag in lintian's data (renamed?): {severities}"
    assert all(s in ("info", "pedantic", "classification") for v in severities.values() for s in v), severities


def test_every_lintian_override_has_its_reason_and_is_in_the_install_guide() -> None:
    """Each override in packaging/deb/lintian-overrides follows a comment giving its reason, and docs/install.md's
    table of what the package carries names its tag: an operator reading lintian's output finds why."""
    lines = (ROOT / "packaging/deb/lintian-overrides").read_text().splitlines()
    tags: set[str] = set()
    for number, line in enumerate(lines):
        if not line.startswith("tillpoint: "):
            assert not line.strip() or line.startswith("# "), f"not an override, a comment or blank: {line}"
            continue
        tags.add(line.split()[1])
        above = number - 1
        while above >= 0 and lines[above].startswith("tillpoint: "):
            above -= 1
        assert above >= 0 and lines[above].startswith("# "), f"an override without its reason above it: {line}"
    doc = (ROOT / "docs/install.md").read_text()
    section = doc[doc.index("### What the package carries") :]
    section = section[: section.index("\n## ")]
    assert tags and not [tag for tag in sorted(tags) if f"`{tag}`" not in section], (tags, section)
