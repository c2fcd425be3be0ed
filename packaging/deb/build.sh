#!/usr/bin/env bash
# Build the Debian package tillpoint_<version>_amd64.deb from this checkout, with dpkg-deb from a
# staged tree.
#
#   bash packaging/deb/build.sh [--out DIR] [--xz]
#
#   --out DIR   where the .deb goes (default: dist/ in the checkout); its path is printed last
#   --xz        compress with xz (a third smaller, a minute slower) instead of gzip -1
#
# Needs Debian 12 (python3 3.11) with python3-pip, python3-dev, dpkg-dev, libpcsclite-dev, swig,
# gcc and linux-libc-dev (pyscard and evdev build from source), and PyPI (or pip's cache) for the
# Python dependencies.
#
# The version is terminal/__init__.py's __version__ and nothing else. TILLPOINT_DEB_VERSION, when
# set, replaces the package's version (the package tests build an "upgrade" of the same tree).
#
# What the package holds, and why:
#   /opt/tillpoint/lib            the application and every Python dependency (pip install --target,
#                                 with Debian's python3, so compiled extensions fit it)
#   /opt/tillpoint/bin/tillpoint  the command: python3 -ISB with ../lib first on sys.path
#   /opt/tillpoint/venv/bin/tillpoint -> ../../bin/tillpoint   the path the units' ExecStart names
#   /opt/tillpoint/share/doc      the operator docs (the units' Documentation=)
#   /lib/systemd/system, /usr/lib/sysusers.d, /usr/lib/tmpfiles.d, /lib/udev/rules.d,
#   /usr/share/polkit-1/rules.d   the install files from systemd/
#   /etc/tillpoint/tillpoint.toml, /etc/modprobe.d/tillpoint-nfc-blacklist.conf   conffiles
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$here/../.." && pwd)"
out="$src/dist"
compress="-Zgzip -z1"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --xz) compress="-Zxz"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

python=/usr/bin/python3
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
  { echo "build.sh: $python must be Debian 12's Python 3.11" >&2; exit 1; }
"$python" -m pip --version >/dev/null 2>&1 || { echo "build.sh: apt-get install python3-pip" >&2; exit 1; }
for tool in dpkg-deb dpkg-shlibdeps dpkg-buildflags; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing: apt-get install dpkg-dev" >&2; exit 1; }
done
[ -f /usr/include/linux/input.h ] ||
  { echo "build.sh: the Linux headers evdev builds against are missing: apt-get install linux-libc-dev" >&2; exit 1; }

upstream="$("$python" - "$src/terminal/__init__.py" <<'PY'
import ast, sys
tree = ast.parse(open(sys.argv[1], encoding="utf-8").read())
for node in tree.body:
    if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__version__" for t in node.targets):
        print(ast.literal_eval(node.value))
        break
else:
    sys.exit("no __version__ in " + sys.argv[1])
PY
)"
version="${TILLPOINT_DEB_VERSION:-$upstream}"
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || { echo "build.sh: $version is not a Debian version" >&2; exit 1; }
maintainer="$(sed -n 's/^Maintainer: //p' "$here/control.in")"
say() { echo "build.sh: [$((SECONDS - began)) s] $*" >&2; }
began=$SECONDS

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
trap 'exit 1' INT TERM HUP
pkg="$work/pkg/debian/tillpoint"  # the staged tree (dpkg-shlibdeps wants it under debian/<package>)
mkdir -p "$pkg/DEBIAN" "$out"

# 1. The wheel, from a copy of the sources (the checkout stays as it is).
mkdir "$work/src"
tar -C "$src" --exclude=__pycache__ -cf - pyproject.toml README.md terminal drivers hq tillpoint sync | tar -C "$work/src" -xf -
say "building the wheel of tillpoint $upstream"
"$python" -m pip wheel -q --no-deps -w "$work/wheel" "$work/src"
wheel="$(echo "$work"/wheel/tillpoint-*.whl)"

# 2. The application and its dependencies, for Debian's python3. No byte-code: postinst compiles it.
say "installing it with its dependencies into /opt/tillpoint/lib"
# pyscard (PC/SC readers) and evdev (the global hotkeys and keyboard-wedge scanners: the unit's
# SupplementaryGroups=input) have no Linux wheel: build them here, for this python3, never from a
# wheel cached elsewhere.
# Head office's PostgreSQL driver without its binary wheel (which bundles libpq and OpenSSL): Debian's libpq5.
# What is built here is built with Debian's hardening flags (dpkg-buildflags: fortified functions, the stack
# protector, relocations read-only and bound at load), and names libc among its libraries even where it calls
# none of it (evdev's _ecodes holds only constants): gcc links --as-needed, and a shared object without libc is
# one ldd calls statically linked.
buildflag() { DEB_BUILD_MAINT_OPTIONS=hardening=+bindnow dpkg-buildflags --get "$1"; }
CFLAGS="$(buildflag CFLAGS)" CPPFLAGS="$(buildflag CPPFLAGS)" \
  LDFLAGS="$(buildflag LDFLAGS) -Wl,--push-state,--no-as-needed -lc -Wl,--pop-state" "$python" -m pip install -q --no-compile --no-warn-script-location --disable-pip-version-check \
  --no-binary pyscard,evdev --target "$pkg/opt/tillpoint/lib" "$wheel[pcsc,wedge]" "psycopg>=3.1" psycopg-pool
rm -rf "$pkg/opt/tillpoint/lib/bin"  # console scripts with absolute shebangs; the launcher replaces them
# Nothing runs these: pip (sqlite-utils names it for its own `install` command) and numpy's own test suite,
# with the extension modules only that suite imports (numpy/_core/_*_tests.*.so).
# A fifth of the modules postinst would compile and lintian would read.
rm -rf "$pkg/opt/tillpoint/lib"/pip "$pkg/opt/tillpoint/lib"/pip-*.dist-info
find "$pkg/opt/tillpoint/lib/numpy" -depth -type d -name tests -exec rm -rf {} +
rm -f "$pkg/opt/tillpoint/lib/numpy/_core"/_*_tests.cpython-*.so
find "$pkg/opt/tillpoint/lib" -depth -type d -name __pycache__ -exec rm -rf {} +
for panel in index.html panel.js panel.css; do
  [ -f "$pkg/opt/tillpoint/lib/terminal/api/panel/$panel" ] ||
    { echo "build.sh: the wheel lacks terminal/api/panel/$panel (package-data in pyproject.toml)" >&2; exit 1; }
done
# Strip the extensions built here from source (pyscard: a linux_x86_64 wheel, with debug symbols).
# PyPI's manylinux wheels stay as published: strip breaks the libraries auditwheel patched.
"$python" - "$pkg/opt/tillpoint/lib" <<'PY' | xargs -0 -r strip --strip-unneeded
import csv, pathlib, sys
lib = pathlib.Path(sys.argv[1])
for info in sorted(lib.glob("*.dist-info")):
    wheel = (info / "WHEEL").read_text(encoding="utf-8").splitlines()
    if any(line.startswith("Tag:") and line.rstrip().endswith("-linux_x86_64") for line in wheel):
        for row in csv.reader((info / "RECORD").read_text(encoding="utf-8").splitlines()):
            if row and ".so" in pathlib.PurePath(row[0]).name:
                sys.stdout.write(f"{lib / row[0]}\0")
PY
# A library search path outside the package ($ORIGIN...) would name the build machine.
while IFS= read -r -d '' object; do
  if readelf -d "$object" | grep -E '\((RPATH|RUNPATH)\)' | grep -vE '\[(\$ORIGIN[^]:]*:?)+\]$'; then
    echo "build.sh: $object has a library search path outside the package" >&2; exit 1
  fi
done < <(find "$pkg/opt/tillpoint/lib" -type f -name '*.so*' -print0)

say "staging the command, the docs and the install files"
# 3. The command, the docs and the install files.
install -D -m 0755 "$here/tillpoint" "$pkg/opt/tillpoint/bin/tillpoint"
mkdir -p "$pkg/opt/tillpoint/venv/bin"
ln -s ../../bin/tillpoint "$pkg/opt/tillpoint/venv/bin/tillpoint"
install -d "$pkg/opt/tillpoint/share/doc"
install -m 0644 "$src"/docs/*.md "$pkg/opt/tillpoint/share/doc/"
sd="$src/systemd"
install -D -m 0644 "$sd/tillpoint.service" "$pkg/lib/systemd/system/tillpoint.service"
install -D -m 0644 "$sd/tillpoint-hq.service" "$pkg/lib/systemd/system/tillpoint-hq.service"
install -D -m 0644 "$sd/tillpoint.sysusers" "$pkg/usr/lib/sysusers.d/tillpoint.conf"
install -D -m 0644 "$sd/tillpoint.tmpfiles" "$pkg/usr/lib/tmpfiles.d/tillpoint.conf"
install -D -m 0644 "$sd/tillpoint-pcscd.polkit.rules" "$pkg/usr/share/polkit-1/rules.d/50-tillpoint-pcscd.rules"
install -D -m 0644 "$sd/60-tillpoint-readers.rules" "$pkg/lib/udev/rules.d/60-tillpoint-readers.rules"
install -D -m 0644 "$sd/tillpoint-nfc-blacklist.conf" "$pkg/etc/modprobe.d/tillpoint-nfc-blacklist.conf"
# The config may come to hold secrets (an enrol code): never world-readable. postinst's
# systemd-tmpfiles gives it and /etc/tillpoint the group tillpoint.
install -d -m 0750 "$pkg/etc/tillpoint"
install -m 0640 "$sd/tillpoint.toml" "$pkg/etc/tillpoint/tillpoint.toml"
doc="$pkg/usr/share/doc/tillpoint"
install -D -m 0644 "$here/copyright" "$doc/copyright"
date="$(LC_ALL=C date -R -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")"
sed -e "s/@VERSION@/$version/g" -e "s/@MAINTAINER@/$maintainer/" -e "s/@DATE@/$date/" "$here/changelog.in" |
  gzip -9n >"$doc/changelog.gz"  # a native version (no Debian revision): changelog.gz
install -D -m 0644 "$here/lintian-overrides" "$pkg/usr/share/lintian/overrides/tillpoint"

say "writing the control data"
# 4. Control data: maintainer scripts, conffiles, md5sums, and the shared libraries' dependencies.
for script in postinst prerm postrm; do install -m 0755 "$here/$script" "$pkg/DEBIAN/$script"; done
printf '%s\n' /etc/modprobe.d/tillpoint-nfc-blacklist.conf /etc/tillpoint/tillpoint.toml >"$pkg/DEBIAN/conffiles"
chmod 0644 "$pkg/DEBIAN/conffiles"
find "$pkg" -path "$pkg/DEBIAN" -prune -o -type d -exec chmod go+rx,go-w {} + 2>/dev/null
chmod 0750 "$pkg/etc/tillpoint"
find "$pkg/opt/tillpoint/lib" -type f -exec chmod 0644 {} +

mkdir -p "$work/pkg/debian"
printf 'Source: tillpoint\n\nPackage: tillpoint\nArchitecture: amd64\n' >"$work/pkg/debian/control"
mapfile -d '' objects < <(find "$pkg/opt/tillpoint/lib" -type f -name '*.so*' -print0)
# The wheels' own copies of libraries (numpy.libs, ...) are found in the staged tree and skipped.
(cd "$work/pkg" && dpkg-shlibdeps -O -S"$pkg" "${objects[@]}") >"$work/shlibs" 2>"$work/shlibdeps.log" ||
  { cat "$work/shlibdeps.log" >&2; exit 1; }
shlibs="$(sed -n 's/^shlibs:Depends=//p' "$work/shlibs")"
depends="python3 (>= 3.11), python3 (<< 3.12), pcscd, libpcsclite1, systemd${shlibs:+, $shlibs}"
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) \
  >"$pkg/DEBIAN/md5sums"
size="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$size/" -e "s/@DEPENDS@/$depends/" \
  "$here/control.in" >"$pkg/DEBIAN/control"

deb="$out/tillpoint_${version}_amd64.deb"
say "packing $deb"
# shellcheck disable=SC2086
dpkg-deb --root-owner-group $compress --build "$pkg" "$deb" >/dev/null
say "built $deb ($(du -h "$deb" | cut -f1)); Depends: $depends"
echo "$deb"
