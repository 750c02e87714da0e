#!/usr/bin/env bash
# Checks systemd/dingrelay.service: `systemd-analyze verify` reports nothing, and
# `systemd-analyze security` rates its exposure at most MAX_EXPOSURE (2.0, "OK").
#
# verify insists that every Exec*= binary exists, and /usr/local/bin/dingrelay usually does not on a
# build machine, so the unit is verified as a copy, in a temporary directory, whose ExecStart points
# at a stub script (verify never runs it); nothing else in the copy changes. verify only warns (and
# exits 0) about unknown settings or values, so any output at all counts as a failure here.
#
# Skipped, with a line saying so, where systemd-analyze is absent or older than 250 (no --offline).
# Needs no build, no root and no running systemd.
set -euo pipefail
cd "$(dirname "$0")/.."

unit=systemd/dingrelay.service
max_exposure=${MAX_EXPOSURE:-2.0}

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "check-unit: skipped: systemd-analyze is not installed, $unit was not checked"
    exit 0
fi
version=$(systemd-analyze --version | awk 'NR == 1 { print $2 }')
if ! [[ $version =~ ^[0-9]+$ ]] || ((version < 250)); then
    echo "check-unit: skipped: systemd-analyze $version is older than 250 (no --offline), $unit was not checked"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#!/bin/sh\nexit 0\n' >"$tmp/dingrelay"
chmod 0755 "$tmp/dingrelay"
sed "s#/usr/local/bin/dingrelay#$tmp/dingrelay#g" "$unit" >"$tmp/dingrelay.service"

verify_status=0
verify_output=$(systemd-analyze verify --man=no --recursive-errors=no "$tmp/dingrelay.service" 2>&1) ||
    verify_status=$?
if ((verify_status != 0)) || [[ -n $verify_output ]]; then
    echo "check-unit: FAILED: systemd-analyze verify $unit (exit $verify_status):"
    # Name the real file, not the temporary copy.
    printf '%s\n' "${verify_output//$tmp\/dingrelay.service/$unit}"
    exit 1
fi
echo "check-unit: systemd-analyze verify $unit: ok (systemd $version)"

security_output=$(systemd-analyze security --offline=true --no-pager "$tmp/dingrelay.service" 2>&1) || {
    echo "check-unit: FAILED: systemd-analyze security $unit:"
    printf '%s\n' "$security_output"
    exit 1
}
# → Overall exposure level for dingrelay.service: 1.1 OK 🙂
overall=$(printf '%s\n' "$security_output" | grep 'Overall exposure level' || true)
exposure=$(printf '%s\n' "$overall" | sed -n 's/.*Overall exposure level for [^:]*: *\([0-9][0-9.]*\).*/\1/p')
if [[ -z $exposure ]]; then
    echo "check-unit: FAILED: no \"Overall exposure level\" line in systemd-analyze security's output:"
    printf '%s\n' "$security_output"
    exit 1
fi
if ! awk -v e="$exposure" -v max="$max_exposure" 'BEGIN { exit !(e <= max) }'; then
    echo "check-unit: FAILED: $unit exposure $exposure is above $max_exposure; what counts against it:"
    printf '%s\n' "$security_output" | grep '✗' || true
    exit 1
fi
echo "check-unit: systemd-analyze security $unit: exposure $exposure (at most $max_exposure): ok"
