#!/usr/bin/env bash
# Remove tillpoint's services and application from this PC, KEEPING its data and config:
#
#   sudo bash systemd/uninstall.sh [--prefix DIR] [--root DIR]
#
# Kept: /var/lib/tillpoint (the journal, with any sales head office has not acknowledged yet, the
# cache, the card-hash key, the head-office token), /var/lib/tillpoint-hq (head office's database),
# /etc/tillpoint (the config), and the tillpoint user (system users are never deleted, so no later
# user can inherit its files). A reinstall picks everything up where it was.
set -euo pipefail

prefix=/opt/tillpoint
root=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --root) root="$(realpath -m "$2")"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
  echo "run this as root (sudo bash $0)" >&2; exit 1
fi
say() { echo "tillpoint uninstall: $*"; }

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  # A clean stop: the daemon finishes the commit in flight; unpushed entries stay in the journal.
  systemctl disable --now tillpoint.service tillpoint-hq.service 2>/dev/null || true
fi
for file in /etc/systemd/system/tillpoint.service /etc/systemd/system/tillpoint-hq.service \
            /etc/sysusers.d/tillpoint.conf /etc/tmpfiles.d/tillpoint.conf \
            /etc/polkit-1/rules.d/50-tillpoint-pcscd.rules /etc/udev/rules.d/60-tillpoint-readers.rules \
            /etc/modprobe.d/tillpoint-nfc-blacklist.conf; do
  rm -f "$root$file"
done
rm -rf "$root$prefix/venv" "$root$prefix/share"
rmdir "$root$prefix" 2>/dev/null || true
if [ -z "$root" ]; then
  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
  if command -v udevadm >/dev/null && [ -d /run/udev ]; then udevadm control --reload-rules; fi
fi

say "services and application removed."
for kept in /var/lib/tillpoint /var/lib/private/tillpoint-hq /etc/tillpoint; do
  if [ -e "$root$kept" ]; then say "kept $kept"; fi
done
say "to erase the data too (only once head office holds every entry: tillpoint status shows pending 0):"
say "  rm -rf /var/lib/tillpoint /var/lib/private/tillpoint-hq /etc/tillpoint"
