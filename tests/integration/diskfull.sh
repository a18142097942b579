# diskfull.sh — a full disk is an answer, not a crash: the replica refuses
# writes with PC_ENOSPC (clients see a named error), keeps serving reads,
# loses nothing it acknowledged, and accepts writes again once space returns.
# Needs root (it mounts a small tmpfs); exits 77 (skipped) otherwise.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "skipped: needs root to mount a small filesystem"; exit 77; }
MNT=$TMP/mnt
mkdir -p "$MNT"
mount -t tmpfs -o size=900m paycell-diskfull "$MNT" || { echo "skipped: cannot mount tmpfs"; exit 77; }
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; umount "$MNT"; rm -rf "$TMP"' EXIT
dd if=/dev/zero of="$MNT/filler" bs=1M count=300 status=none || fail "filler"
PORT=$(free_port); A=127.0.0.1:$PORT
"$PAYCELL" format --data "$MNT/d" --accounts-max 2000 --transfers-max 8000000 >/dev/null 2>&1 || fail format
start_replica "$MNT/d" "$PORT" || fail "start"

step "fill the disk under load"
"$PAYCELL" bench --addresses "$A" --accounts 1000 --transfers 6000000 --quiet >"$TMP/bench.out" 2>&1
[ $? -ne 0 ] || fail "the load never hit a full disk"
expect_in "$(cat "$TMP/bench.out")" "PC_ENOSPC"
kill -0 "$REPLICA_PID" || fail "the replica died on a full disk"
expect_in "$(cat "$TMP/replica.log")" "disk full"

step "reads still work; small writes fit in preallocated space or get a named error"
expect_exit 0 "$PAYCELL" lookup account 1 --addresses "$A"
"$PAYCELL" transfer --addresses "$A" --id 2 --debit 1 --credit 2 --amount 1 --ledger 1 --code 1 >"$TMP/t2.out" 2>&1
rc=$?
[ $rc -eq 0 ] || { [ $rc -eq 2 ] && grep -q PC_ENOSPC "$TMP/t2.out"; } || fail "unexpected: $(cat "$TMP/t2.out")"

step "space returns: full batches succeed again, nothing acknowledged was lost"
rm -f "$MNT/filler"
expect_exit 0 "$PAYCELL" bench --addresses "$A" --accounts 1000 --transfers 200000 --quiet
expect_in "$OUT" "equal"
expect_exit 0 "$PAYCELL" transfer --addresses "$A" --id 1 --debit 1 --credit 2 --amount 1 --ledger 1 --code 1
expect_in "$OUT" "created"
kill_replica
start_replica "$MNT/d" "$PORT" || fail "restart"
expect_exit 0 "$PAYCELL" lookup transfer 1 --addresses "$A"
# The audit: every account's debits and credits summed must be equal.
expect_exit 0 "$PAYCELL" bench --addresses "$A" --accounts 1000 --transfers 1000 --quiet
expect_in "$OUT" "equal"
echo "diskfull: all checks passed"
