# crash.sh — 50 random kill -9 points under load; see tests/integration/crash.c.
set -eu
"${PWD}/build/itests/crash" "${PWD}/build/paycell" "${CRASH_ITERATIONS:-50}"
