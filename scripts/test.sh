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
    $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
fi
scripts/setup.sh test
exec .venv/bin/python -m pytest "$@"
