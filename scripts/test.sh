#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs Python deps, the redis-server and
# prometheus/promtool binaries the tests start themselves, then runs pytest.
# The tests start their own servers (Redis, moto S3, Prometheus, workers) on free loopback
# ports; nothing already running on the machine is used.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v promtool >/dev/null && command -v prometheus >/dev/null || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    # Only the binaries the tests run (not prometheus's node-exporter, smartmontools, ...), and
    # no service started: a policy-rc.d answering 101 ("not allowed") while the packages install.
    policy=/usr/sbin/policy-rc.d
    own_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && own_policy=1
    fi
    status=0
    $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q \
        --no-install-recommends "${need[@]}" || status=$?
    [ -z "$own_policy" ] || $SUDO rm -f "$policy"
    [ "$status" -eq 0 ] || exit "$status"
fi
scripts/setup.sh test
exec .venv/bin/python -m pytest "$@"
