# diskfull.sh — a full disk is an answer, not a crash: the replica refuses
# writes with PC_ENOSPC (clients see a named error), keeps serving reads,
# loses nothing it acknowledged, and accepts writes again once space returns.
# Then the same for a replicated unit behind a gateway, each replica on a
# small tmpfs of its own: a full primary steps aside and another leads (the
# PC_ENOSPC answers it gave first are counted in the gateway's
# paycell_gateway_unit_nospace_total, retried ones too); a full backup
# leaves the unit committing with the other two and says so in its log.
# Every full replica, backup or primary, also shows in the gateway's
# /metrics as paycell_replica_disk_full 1 (its prober asks each replica
# once a second) until space returns; a primary that stepped aside says
# paycell_replica_primary 0 and the one that leads now 1.
# Needs root (it mounts small tmpfs); exits 77 (skipped) otherwise.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "skipped: needs root to mount a small filesystem"; exit 77; }
MNT=$TMP/mnt
mkdir -p "$MNT"
mount -t tmpfs -o size=900m paycell-diskfull "$MNT" || { echo "skipped: cannot mount tmpfs"; exit 77; }
D=$TMP/cluster
UMNTS=()
finish() {
    local status=$?
    [ -f "$D/pids" ] && "$PAYCELL" stop --data "$D" >/dev/null 2>&1
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    # Under the ASan binary a memory error shows in a process's log only.
    sanitizer_reports && status=1
    for m in "$MNT" ${UMNTS[@]+"${UMNTS[@]}"}; do umount "$m" 2>/dev/null || umount -l "$m"; done
    rm -rf "$TMP"
    exit $status
}
trap finish EXIT
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
kill_replica

step "a replicated unit: each replica on a tmpfs of its own (journal + first store step)"
# Replica 1's is too small for the first 64 MiB step of its transfer store.
for r in 0 1 2; do
    mkdir -p "$D/unit0-r$r"
    size=128m; [ $r -eq 1 ] && size=48m
    mount -t tmpfs -o size=$size "paycell-diskfull-r$r" "$D/unit0-r$r" || fail "mount r$r"
    UMNTS+=("$D/unit0-r$r")
done
"$PAYCELL" start --data "$D" --units 1 --replicas 3 --port "$(free_port)" --accounts-max 1000 \
    --transfers-max 100000 --journal-slots 16 >"$TMP/start.out" 2>&1 ||
    { cat "$TMP/start.out" "$D"/logs/*.log >&2; fail "paycell start"; }
source "$D/cluster.env"
G=$PAYCELL_GATEWAY
nospace() { # the gateway's PC_ENOSPC answers from unit 0
    curl -s "http://$PAYCELL_HTTP/metrics" |
        awk '/^paycell_gateway_unit_nospace_total\{unit="0"\}/ {print $2}'
}
replica_metric() { # NAME REPLICA: the gateway's paycell_replica_NAME of unit 0's replica
    curl -s "http://$PAYCELL_HTTP/metrics" |
        awk -v m="paycell_replica_$1{unit=\"0\",replica=\"$2\"}" '$1 == m {print $2}'
}
wait_metric() { # NAME REPLICA VALUE: until the gateway's /metrics says so (10 s at most)
    local i
    for i in $(seq 100); do [ "$(replica_metric "$1" "$2")" = "$3" ] && return 0; sleep 0.1; done
    fail "paycell_replica_$1 of replica $2 never became $3 (it is" \
        "'$(replica_metric "$1" "$2")'; log: $(tail -3 "$D/logs/unit0-r$2.log"))"
}
xfer() { # ID: the transfer through the gateway; prints the CLI's output
    "$PAYCELL" transfer --addresses "$G" --id "$1" --debit 1 --credit 2 --amount 1 --ledger 1 \
        --code 1 2>&1
}
primary() { # the replica whose last view line says primary
    local r
    for r in 0 1 2; do
        grep -E 'view [0-9]+: ' "$D/logs/unit0-r$r.log" | tail -1 | grep -q "normal, primary" &&
            { echo "$r"; return; }
    done
}
alive() { # every process of the cluster still running
    local pid name
    while read -r pid name; do kill -0 "$pid" 2>/dev/null || fail "$name exited: $(tail -3 "$D/logs/$name.log")"; done <"$D/pids"
}
count() { grep -c "$2" "$D/logs/unit0-r$1.log"; } # REPLICA TEXT: lines of its log
wait_count() { # REPLICA TEXT N: until more than N lines say TEXT (10 s at most)
    local i
    for i in $(seq 100); do [ "$(count "$1" "$2")" -gt "$3" ] && return 0; sleep 0.1; done
    fail "replica $1 never logged '$2' (log: $(tail -3 "$D/logs/unit0-r$1.log"))"
}
for id in 1 2; do expect_exit 0 "$PAYCELL" account create --addresses "$G" --id $id --ledger 1 --code 1; done
expect_in "$(xfer 100)" "created"
[ "$(nospace)" = 0 ] || fail "nospace metric before any fill: '$(nospace)'"
P=$(primary)
[ "$P" = 0 ] || fail "replica 0 should lead view 0 of a fresh unit, not '$P'"
# Every replica answers the gateway's prober (replica 1's store could not
# grow for the first transfer already: its turn comes below).
for r in 0 1 2; do wait_metric up $r 1; done
wait_metric disk_full 0 0
wait_metric disk_full 2 0
wait_metric primary 0 1

step "a backup whose transfer store cannot grow: its commits wait, the unit goes on"
for id in $(seq 50 69); do expect_in "$(xfer "$id")" "created"; done
wait_count 1 "disk full: reserving transfer slots" 0
wait_metric disk_full 1 1
wait_metric up 1 1
alive
mount -o remount,size=128m "$D/unit0-r1" || fail "remount"
wait_count 1 "disk space returned" 0
wait_metric disk_full 1 0
for id in $(seq 70 79); do expect_in "$(xfer "$id")" "created"; done
[ "$(nospace)" = 0 ] || fail "a backup's full disk showed in the gateway's nospace count"

step "the primary's disk fills: it steps aside, another replica leads, writes go on"
dd if=/dev/zero of="$D/unit0-r$P/filler" bs=1M status=none 2>/dev/null
acked="100"
refused=0
moved=""
for id in $(seq 101 299); do
    out=$(xfer "$id")
    case "$out" in
    *PC_ENOSPC*) refused=$((refused + 1)) ;;
    *created*) acked+=" $id" ;;
    esac
    now=$(primary)
    if [ -n "$now" ] && [ "$now" != "$P" ] && [ "$(count "$P" "the primary steps aside")" -gt 0 ]; then
        moved=$now
        break
    fi
done
[ -n "$moved" ] || fail "the full primary $P still leads after 199 transfers (log: $(tail -3 "$D/logs/unit0-r$P.log"))"
wait_count "$P" "disk full:" 0
wait_metric disk_full "$P" 1
wait_metric primary "$P" 0
wait_metric primary "$moved" 1
echo "replica $moved leads; $refused transfers answered PC_ENOSPC on the way; nospace counter $(nospace)"
# The full primary answered the gateway's sessions PC_ENOSPC before it
# stepped aside; the sessions retried (so clients may see none), but the
# gateway counts every such answer.
[ "$(nospace)" -gt 0 ] || fail "no PC_ENOSPC answer counted in /metrics: '$(nospace)'"
for id in $(seq 401 410); do expect_in "$(xfer "$id")" "created"; acked+=" $id"; done
[ -f "$D/unit0-r$P/filler" ] || fail "the filler is gone"
alive

step "space returns: the old primary catches up, nothing acknowledged was lost"
rm -f "$D/unit0-r$P/filler"
wait_count "$P" "disk space returned" 0
wait_metric disk_full "$P" 0
expect_in "$(xfer 200)" "created"
for id in $acked 200; do
    expect_exit 0 "$PAYCELL" lookup transfer "$id" --addresses "$G"
done

step "a backup's disk fills: the unit commits with the other two, the backup's log says so"
P=$(primary)
B=$(( (P + 1) % 3 ))
before=$(nospace)
full=$(count "$B" "disk full:"); back=$(count "$B" "disk space returned")
dd if=/dev/zero of="$D/unit0-r$B/filler" bs=1M status=none 2>/dev/null
for id in $(seq 300 315); do expect_in "$(xfer "$id")" "created"; done
[ "$(nospace)" = "$before" ] || fail "a full backup changed the gateway's nospace count"
wait_count "$B" "disk full:" "$full"
wait_metric disk_full "$B" 1
wait_metric primary "$P" 1
rm -f "$D/unit0-r$B/filler"
for id in $(seq 316 331); do expect_in "$(xfer "$id")" "created"; done
wait_count "$B" "disk space returned" "$back"
wait_metric disk_full "$B" 0
alive
expect_exit 0 "$PAYCELL" audit balances --gzone "$PAYCELL_GZONE"
expect_in "$OUT" "balanced"
echo "diskfull: all checks passed"
