# xts_faults.sh — cross-unit transfers survive a gateway and a unit primary
# killed mid-stream. A stream of cross-unit transfers (paycell bench
# --cross-unit 1) runs through the gateway; the gateway is killed with -9
# and restarted; later the primary of unit 0 is killed with -9 and
# restarted. After the XTS timeout and the payee units' recovery loops,
# every global transaction must have ended (committed or cancelled on both
# sides): nothing in flight, no pending amount left on any account, and the
# audit across units equal.
source "$(dirname "$0")/lib.sh"
PORT=$(free_port)
D=$TMP/cluster
trap stop_cluster EXIT

"$PAYCELL" start --data "$D" --units 2 --replicas 3 --port "$PORT" --accounts-max 4096 \
    --transfers-max 2000000 --journal-slots 64 --xts-timeout 2 >"$TMP/start.out" 2>&1 ||
    { cat "$TMP/start.out" >&2; fail "paycell start"; }
source "$D/cluster.env"

bench() {
    "$PAYCELL" bench --addresses "$PAYCELL_GATEWAY" --cross-unit 1 --accounts 1000 \
        --transfers 3000000 --batch 1000 --clients 2 --quiet --seed "$1" >>"$TMP/bench.log" 2>&1 &
    BENCH=$!
}
gateway_pid() { awk '$2 == "gateway" { print $1 }' "$D/pids" | tail -1; }
start_gateway() {
    "$PAYCELL" gateway --gzone "$PAYCELL_GZONE" --listen-binary "$PAYCELL_GATEWAY" \
        --listen-http "$PAYCELL_HTTP" --xts-timeout 2 >>"$TMP/gateway.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        "$PAYCELL" lookup account 1 --addresses "$PAYCELL_GATEWAY" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "gateway did not come back"
}
# Waits until the audit shows nothing in flight, then checks it.
settle() {
    local i
    for i in $(seq 60); do
        OUT=$("$PAYCELL" audit balances --gzone "$PAYCELL_GZONE" --json 2>&1)
        case "$OUT" in *'"in_flight":[]'*) break ;; esac
        sleep 0.5
    done
    expect_in "$OUT" '"in_flight":[]'
    expect_in "$OUT" '"balanced":true'
    expect_in "$OUT" '"debits_pending":"0"'
    expect_in "$OUT" '"credits_pending":"0"'
    expect_in "$OUT" '"clearing":"equal"'
}
wait_transfers() { # until the bench has acknowledged some transfers
    for _ in $(seq 100); do
        "$PAYCELL" audit balances --gzone "$PAYCELL_GZONE" --json 2>/dev/null |
            grep -q '"debits_posted":"[1-9]' && return 0
        sleep 0.1
    done
    fail "no transfers went through: $(tail -3 "$TMP/bench.log")"
}

step "kill -9 the gateway in the middle of cross-unit transfers"
bench 1
wait_transfers
sleep 1
kill -9 "$(gateway_pid)" || fail "no gateway pid"
kill -9 "$BENCH" 2>/dev/null; wait "$BENCH" 2>/dev/null
orphans=$("$PAYCELL" audit balances --gzone "$PAYCELL_GZONE" --json)
start_gateway
settle
echo "after the gateway crash: $OUT"
# What the dead gateway left in flight was ended by the payee units' recovery
# loops (the new gateway knows nothing of it).
case "$orphans" in
*'"in_flight":[]'*) echo "(nothing was in flight at the kill)" ;;
*) grep -q "recovery ended" "$D"/logs/unit*.log ||
    fail "in flight at the kill, never recovered: $orphans" ;;
esac

step "kill -9 unit 0's primary in the middle of cross-unit transfers"
IFS=, read -ra U0 <<<"$PAYCELL_UNIT0"
primary=0
for i in 0 1 2; do
    "$PAYCELL" lookup account 1 --addresses "${U0[$i]}" >/dev/null 2>&1
    [ $? -ne 2 ] && { primary=$i; break; }
done
pid=$(awk -v n="unit0-r$primary" '$2 == n { print $1 }' "$D/pids" | tail -1)
bench 2
sleep 2
kill -9 "$pid" || fail "no pid for unit0-r$primary"
sleep 1
"$PAYCELL" replica --data "$D/unit0-r$primary" --addresses "$PAYCELL_UNIT0" \
    --gzone "$PAYCELL_GZONE" >>"$TMP/replica.log" 2>&1 &
PIDS+=($!)
sleep 2
kill -9 "$BENCH" 2>/dev/null; wait "$BENCH" 2>/dev/null
settle
echo "after the primary crash: $OUT"
echo "xts_faults: ok"
