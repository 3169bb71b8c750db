#!/usr/bin/env bash
# The Python package (sdk/python) against the real server: builds the debug binary,
# installs the package with its test extras into a virtualenv under target/ (reused when
# present; the package itself is reinstalled every run), and runs its pytest suite, the
# FastAPI example's test and the README's Python quick start. The tests start their own
# servers on free loopback ports.
#
# Usage: scripts/sdk-python.sh [pytest arguments, default sdk/python/tests]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/sdk-python-venv

cargo build --quiet -p agentcast-server --bin agentcast
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
export AGENTCAST_BIN="$target_dir/debug/agentcast"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check './sdk/python[test]'
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall ./sdk/python

# Arguments replace the default test path: scripts/sdk-python.sh sdk/python/tests/test_restart.py
[ "$#" -gt 0 ] || set -- sdk/python/tests
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
