# cluster_auth.sh — cluster-internal authentication (issue 8, "done means"
# 2): in a keyed `paycell start` cluster (a GZone and one unit of three
# replicas, every member holding DIR/cluster.key), a process with the right
# addresses but no cluster key, and then one with a wrong key, tries to join
# the unit, to get a vote for a higher view, to make a replica apply a
# prepare, and to send client requests, replica_status among them
# (build/itests/cluster_auth). Every
# attempt is refused unread, the view and the state do not change, the
# cluster serves keyed clients throughout, and each replica's log counts the
# attempts by kind. A control run with the right key shows the same frames
# are well formed. A key file others may read stops a replica from starting.
source "$(dirname "$0")/lib.sh"
DRIVER=${PWD}/build/itests/cluster_auth
PORT=$(free_port)
D=$TMP/cluster
trap stop_cluster EXIT

step "paycell start: keyed by default (DIR/cluster.key 0600, PAYCELL_CLUSTER_KEY in cluster.env)"
"$PAYCELL" start --data "$D" --units 1 --replicas 3 --port "$PORT" --accounts-max 1024 \
    --transfers-max 10000 --journal-slots 32 >"$TMP/start.out" 2>&1 ||
    { cat "$TMP/start.out" "$D"/logs/*.log >&2; fail "paycell start"; }
source "$D/cluster.env"
[ "$PAYCELL_CLUSTER_KEY" = "$D/cluster.key" ] || [ "$PAYCELL_CLUSTER_KEY" -ef "$D/cluster.key" ] ||
    fail "PAYCELL_CLUSTER_KEY=$PAYCELL_CLUSTER_KEY"
[ "$(stat -c %a "$D/cluster.key")" = 600 ] || fail "cluster.key mode $(stat -c %a "$D/cluster.key")"
for r in 0 1 2; do
    grep -q "cluster key: every message MACed" "$D/logs/unit0-r$r.log" || fail "unit0-r$r not keyed"
done
U=$PAYCELL_UNIT0

step "keyed clients are served: accounts 1, 2 and a transfer, through the gateway and directly"
expect_exit 0 "$PAYCELL" account create --addresses "$PAYCELL_GATEWAY" --id 1 --ledger 1 --code 1
expect_exit 0 "$PAYCELL" account create --addresses "$U" --id 2 --ledger 1 --code 1
expect_exit 0 "$PAYCELL" transfer --addresses "$U" --id 100 --debit 1 --credit 2 --amount 10 \
    --ledger 1 --code 1
balances() { "$PAYCELL" lookup account 1 --addresses "$U" --json; "$PAYCELL" lookup account 2 --addresses "$U" --json; }
BEFORE=$(balances)
expect_in "$BEFORE" '"debits_posted":"10"'
VIEW_LINE=$("$DRIVER" view "$U") || fail "view: $VIEW_LINE"
VIEW=${VIEW_LINE#view=}; VIEW=${VIEW%% *}
echo "    $VIEW_LINE"

step "without the key: join, votes, a prepare, client requests — each refused unread"
OUT=$(PAYCELL_CLUSTER_KEY= "$DRIVER" attack "$U" "$VIEW" none 2>&1) || fail "no key: $OUT"
expect_in "$OUT" "peer_attempts=5 client_attempts=3"

step "with a wrong key: the same, refused the same way"
expect_exit 0 "$PAYCELL" keys cluster-init "$TMP/wrong.key"
expect_exit 1 "$PAYCELL" keys cluster-init "$TMP/wrong.key" # never replaced
OUT=$("$DRIVER" attack "$U" "$VIEW" "$TMP/wrong.key" 2>&1) || fail "wrong key: $OUT"
expect_in "$OUT" "peer_attempts=5 client_attempts=3"

step "nothing changed: the view, balances, no account 999, no transfer 777; keyed clients served"
AFTER_VIEW=$("$DRIVER" view "$U") || fail "view after: $AFTER_VIEW"
[ "$AFTER_VIEW" = "$VIEW_LINE" ] || fail "the view moved: $VIEW_LINE -> $AFTER_VIEW"
[ "$(balances)" = "$BEFORE" ] || fail "balances changed: $BEFORE -> $(balances)"
expect_exit 1 "$PAYCELL" lookup account 999 --addresses "$U"
expect_exit 1 "$PAYCELL" lookup transfer 777 --addresses "$U"
expect_exit 0 "$PAYCELL" transfer --addresses "$PAYCELL_GATEWAY" --id 101 --debit 1 --credit 2 \
    --amount 1 --ledger 1 --code 1
expect_exit 0 "$PAYCELL" route show --gzone "$PAYCELL_GZONE"

step "every attempt counted, by kind, in each replica's log (2 x 5 peer frames, 2 x 3 requests)"
sleep 1.2 # the count is logged at most once a second; the last line has it all
for r in 0 1 2; do
    line=$(grep "refused without a valid cluster-key MAC" "$D/logs/unit0-r$r.log" | tail -1)
    expect_in "$line" "peer_frames=10 client_requests=6"
    expect_in "$line" "latest from 127.0.0.1:"
done
# Nothing else was refused: the GZone and the gateway's sessions are keyed.
! grep -q "refused without a valid cluster-key MAC" "$D"/logs/gzone-r*.log ||
    fail "the GZone refused something: $(grep -h refused "$D"/logs/gzone-r*.log)"

step "the CLI with a wrong key gets nothing (its replies fail to arrive: refused, counted)"
expect_exit 2 env PAYCELL_CLUSTER_KEY="$TMP/wrong.key" "$PAYCELL" lookup account 1 --addresses "$U"
sleep 1.2
line=$(grep -h "refused without a valid cluster-key MAC" "$D"/logs/unit0-r*.log | tail -1)
case "$line" in *"client_requests=6 "*) fail "the CLI's refused requests were not counted: $line" ;; esac

step "control: the same frames with the right key are taken (hello kept, read answered)"
expect_exit 0 "$DRIVER" control "$U" "$PAYCELL_CLUSTER_KEY"

step "a keyed tool at an open replica: PC_EMAC, nothing applied"
PORT1=$(free_port)
expect_exit 0 "$PAYCELL" format --data "$TMP/open" --accounts-max 64 --transfers-max 1000
PAYCELL_CLUSTER_KEY= start_replica "$TMP/open" "$PORT1" || fail "open replica"
expect_exit 2 "$PAYCELL" account create --addresses "127.0.0.1:$PORT1" --id 5 --ledger 1 --code 1
expect_in "$OUT" "PC_EMAC"
expect_exit 1 env PAYCELL_CLUSTER_KEY= "$PAYCELL" lookup account 5 --addresses "127.0.0.1:$PORT1"
stop_replica

step "a cluster key others may read stops a replica from starting, with the fix"
cp "$D/cluster.key" "$TMP/open.key" && chmod 644 "$TMP/open.key"
expect_exit 2 timeout 10 "$PAYCELL" replica --data "$D/unit0-r0" --addresses "$U" \
    --cluster-key "$TMP/open.key"
expect_in "$OUT" "chmod 600"

step "the state agrees on all three replicas after a clean stop (paycell inspect)"
"$PAYCELL" stop --data "$D" >/dev/null
for r in 0 1 2; do
    expect_exit 0 "$PAYCELL" inspect --data "$D/unit0-r$r" --json
    sums[$r]=$(echo "$OUT" | sed -E 's/.*"state_checksum":"([0-9]+)".*/\1/')
    expect_in "$OUT" '"accounts":2,"transfers":2' # 1, 2; transfers 100 and 101, no 999 or 777
done
[ "${sums[0]}" = "${sums[1]}" ] && [ "${sums[1]}" = "${sums[2]}" ] || fail "state checksums: ${sums[*]}"
echo "cluster_auth: ok"
