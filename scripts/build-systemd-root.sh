#!/usr/bin/env bash
# The Debian root tests/system/test_systemd.py boots with systemd-nspawn, built once with debootstrap and
# cached OUTSIDE the clone (default /var/cache/agentos-test/debian-root; `make test-systemd` calls this).
# Needs root and apt (debootstrap, systemd-container). About 2 minutes and 450 MB; a second run does nothing.
set -euo pipefail
ROOT="${1:-${AGENTOS_SYSTEMD_ROOT:-/var/cache/agentos-test/debian-root}}"
SUITE="${AGENTOS_SYSTEMD_SUITE:-bookworm}"
MIRROR="${AGENTOS_SYSTEMD_MIRROR:-http://deb.debian.org/debian}"
if [ -x "$ROOT/lib/systemd/systemd" ]; then
  echo "systemd test root: $ROOT (cached)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "building $ROOT needs root (debootstrap); the systemd test will be skipped" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null || ! command -v systemd-nspawn >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap systemd-container >/dev/null
fi
mkdir -p "$(dirname "$ROOT")"
rm -rf "$ROOT.tmp"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-venv,python3-pip,git,ca-certificates,procps,bubblewrap \
  "$SUITE" "$ROOT.tmp" "$MIRROR" >"$ROOT.log" 2>&1 || { tail -20 "$ROOT.log" >&2; exit 1; }
mv "$ROOT.tmp" "$ROOT"
echo "systemd test root: $ROOT (built)"
