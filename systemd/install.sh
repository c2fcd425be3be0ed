#!/usr/bin/env bash
# Install tillpoint on a Debian store PC (or a head-office server) as systemd services.
#
#   sudo bash systemd/install.sh [options]
#
#   --card-key FILE   the chain's card-hash key (same on every till and at head office)
#   --hq-token FILE   this till's head-office token (from `tillpoint hq add-terminal ID`); it goes
#                     to /var/lib/tillpoint/data/hq.token, where the daemon rotates it
#   --with-hq         also install the head-office service (tillpoint-hq.service)
#   --no-start        install and enable, but do not start now
#   --prefix DIR      where the application's virtualenv goes (default /opt/tillpoint)
#   --root DIR        install into another root (image building, tests): no apt, no systemctl
#   --no-apt          do not install Debian packages
#   --no-venv         do not build the virtualenv (it is already there)
#
# What goes where: docs/install.md. Nothing under /var/lib/tillpoint or /etc/tillpoint is
# overwritten (but the token given with --hq-token): an upgrade keeps the data, config and secrets.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
source_dir="$(dirname "$here")"
prefix=/opt/tillpoint
root=""
card_key=""
hq_token=""
with_hq=0
start=1
apt=1
venv=1

while [ $# -gt 0 ]; do
  case "$1" in
    --card-key) card_key="$2"; shift 2 ;;
    --hq-token) hq_token="$2"; shift 2 ;;
    --with-hq) with_hq=1; shift ;;
    --no-start) start=0; shift ;;
    --prefix) prefix="$2"; shift 2 ;;
    --root) root="$(realpath -m "$2")"; apt=0; start=0; shift 2 ;;
    --no-apt) apt=0; shift ;;
    --no-venv) venv=0; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
  echo "run this as root (sudo bash $0 ...)" >&2; exit 1
fi
say() { echo "tillpoint install: $*"; }

# 1. Debian packages: Python, pcscd (PC/SC readers), and what pyscard and evdev (the global hotkeys,
# keyboard-wedge scanners) need to build, having no Linux wheel: python3's headers (python3-dev),
# libpcsclite-dev, swig, gcc and the Linux headers (linux-libc-dev).
if [ "$apt" = 1 ]; then
  say "installing Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3 python3-venv python3-dev pcscd libpcsclite1 \
    libpcsclite-dev swig gcc linux-libc-dev >/dev/null
fi

# 2. The application, in its own virtualenv.
if [ "$venv" = 1 ]; then
  say "building $root$prefix/venv from $source_dir"
  python3 -m venv "$root$prefix/venv"
  "$root$prefix/venv/bin/python" -m pip install -q --upgrade pip
  # From a copy of the sources: a build in the checkout itself leaves build/ and *.egg-info there (root's,
  # under sudo), and the next install from that checkout would ship build/'s files again, even those a
  # newer release removed.
  sources="$(mktemp -d)"
  trap 'rm -rf "$sources"' EXIT
  tar -C "$source_dir" --exclude=__pycache__ -cf - pyproject.toml README.md terminal drivers sync hq tillpoint |
    tar -C "$sources" -xf -
  "$root$prefix/venv/bin/python" -m pip install -q "$sources[pcsc,wedge]"
  if [ -n "$root" ]; then
    # Built under the other root, the virtualenv's scripts name their interpreter there ("#!ROOT/opt/...");
    # in the image they must name it where the image runs them, or the unit's ExecStart finds no interpreter.
    grep -rlZF "$root$prefix/venv" "$root$prefix/venv/bin" "$root$prefix/venv/pyvenv.cfg" |
      xargs -0 -r sed -i "s#$root$prefix/venv#$prefix/venv#g"
  fi
fi
install -d -m 0755 "$root$prefix/share/doc"
install -m 0644 "$source_dir"/docs/*.md "$root$prefix/share/doc/"

# 3. Units, user, directories, device access, polkit.
put() {  # put MODE SOURCE TARGET: copy a file, with the prefix substituted in units
  install -D -m "$1" "$2" "$root$3"
  if [ "$prefix" != /opt/tillpoint ]; then sed -i "s#/opt/tillpoint#$prefix#g" "$root$3"; fi
}
put 0644 "$here/tillpoint.service" /etc/systemd/system/tillpoint.service
if [ "$with_hq" = 1 ]; then put 0644 "$here/tillpoint-hq.service" /etc/systemd/system/tillpoint-hq.service; fi
put 0644 "$here/tillpoint.sysusers" /etc/sysusers.d/tillpoint.conf
put 0644 "$here/tillpoint.tmpfiles" /etc/tmpfiles.d/tillpoint.conf
put 0644 "$here/tillpoint-pcscd.polkit.rules" /etc/polkit-1/rules.d/50-tillpoint-pcscd.rules
# Reader device nodes for the tillpoint group, and the kernel NFC modules kept off the readers
# (pcscd or nfcpy must own a reader alone).
for extra in 60-tillpoint-readers.rules:/etc/udev/rules.d tillpoint-nfc-blacklist.conf:/etc/modprobe.d; do
  name="${extra%%:*}"
  if [ -f "$here/$name" ]; then put 0644 "$here/$name" "${extra#*:}/$name"; fi
done

say "creating the tillpoint user and its directories"
systemd-sysusers ${root:+--root="$root"} "$root/etc/sysusers.d/tillpoint.conf" >/dev/null
systemd-tmpfiles ${root:+--root="$root"} --create "$root/etc/tmpfiles.d/tillpoint.conf"

# 4. Config and secrets: never overwritten.
if [ ! -e "$root/etc/tillpoint/tillpoint.toml" ]; then
  install -m 0640 -g "$(id -g)" "$here/tillpoint.toml" "$root/etc/tillpoint/tillpoint.toml"
  say "wrote /etc/tillpoint/tillpoint.toml: set terminal.id, terminal.store_id and hq.url in it"
fi
owner() {  # owner FILE USER GROUP MODE, resolving names inside the target root
  local uid gid
  uid="$(awk -F: -v n="$2" '$1 == n {print $3}' "$root/etc/passwd")"
  gid="$(awk -F: -v n="$3" '$1 == n {print $3}' "$root/etc/group")"
  chown "${uid:-0}:${gid:-0}" "$1"; chmod "$4" "$1"
}
owner "$root/etc/tillpoint/tillpoint.toml" root tillpoint 0640
if [ -n "$hq_token" ]; then
  install -m 0600 "$hq_token" "$root/var/lib/tillpoint/data/hq.token"
  owner "$root/var/lib/tillpoint/data/hq.token" tillpoint tillpoint 0600
fi
if [ -n "$card_key" ] && [ ! -e "$root/var/lib/tillpoint/card-hash.key" ]; then
  install -m 0600 "$card_key" "$root/var/lib/tillpoint/card-hash.key"
  owner "$root/var/lib/tillpoint/card-hash.key" tillpoint tillpoint 0600
fi

# 5. Tell the running system.
if [ -z "$root" ]; then
  if command -v udevadm >/dev/null && [ -d /run/udev ]; then udevadm control --reload-rules && udevadm trigger; fi
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    units="tillpoint.service"
    if [ "$with_hq" = 1 ]; then units="$units tillpoint-hq.service"; fi
    systemctl enable pcscd.socket $units
    if [ "$start" = 1 ]; then systemctl restart pcscd.socket $units; fi
  else
    say "systemd is not running here: start it later with systemctl enable --now tillpoint"
  fi
fi
say "done. Check it with: tillpoint doctor --config /etc/tillpoint/tillpoint.toml"
say "($prefix/venv/bin/tillpoint; logs: journalctl -u tillpoint; metrics: curl 127.0.0.1:8732/metrics)"
