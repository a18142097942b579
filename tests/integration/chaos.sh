# chaos.sh — the short chaos campaign of `make test` (tests/chaos/, and
# docs/RELIABILITY.md): every replica, the GZone, the gateway and the client
# in network namespaces of their own, all fault kinds for about a minute,
# then the history checker; then the same harness with the planted bug
# (build/chaos/paycell-planted: units acknowledge journal writes they never
# make) and whole units killed, where the checker must find anomalies.
# Needs root for the namespaces: exits 77 (skipped) otherwise.
set -u
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "skipped: chaos needs root for network namespaces"; exit 77; }
ip netns list >/dev/null 2>&1 || { echo "skipped: no ip netns on this machine"; exit 77; }
# Links two programs from the objects `make test` built (a make of its own:
# not the jobserver of the make that runs the tests).
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s --no-print-directory build/chaos/chaos-client \
    build/chaos/paycell-planted ||
    { echo "FAIL: building the chaos binaries"; exit 1; }

echo "--- campaign: every fault kind, the checker must find nothing"
bash tests/chaos/chaos.sh --seconds "${CHAOS_TEST_SECONDS:-120}" --quiet-seconds 10 \
    ${CHAOS_SEED:+--seed "$CHAOS_SEED"}
rc=$?
[ $rc -eq 77 ] && { echo "skipped: network namespaces unavailable"; exit 77; }
[ $rc -eq 0 ] || { echo "FAIL: the chaos campaign found anomalies (exit $rc)"; exit 1; }

echo "--- planted bug: acknowledged journal writes never made, whole units killed"
out=$(bash tests/chaos/chaos.sh --planted-bug --faults crash-unit --seconds 28 \
    --quiet-seconds 5 --settle-seconds 5 ${CHAOS_SEED:+--seed "$CHAOS_SEED"} 2>&1)
rc=$?
echo "$out" | tail -25
[ $rc -eq 1 ] || { echo "FAIL: the planted bug was not caught (exit $rc)"; exit 1; }
# Which anomaly shows first depends on which lost write the crash hit: a
# client's acknowledged transfer, an XTS step at the payee, or a balance that
# no longer matches the replay. Any of them is the checker failing as it must.
echo "$out" | grep -qE "anomaly: (transfer|cross-unit|account|debits)" ||
    { echo "FAIL: exit 1, but no anomaly from the lost writes was reported"; exit 1; }
echo "chaos: campaign clean, planted bug caught"
