# gzone.sh — the cluster map on a real GZone and three units (one replica
# each): `paycell cluster init` (and its re-run), `paycell route show`,
# `paycell route set` moving an empty bucket online (the units' wrong_unit
# answers follow), refusing to move a bucket that holds accounts with every
# epoch left as it was, putting back a unit already changed when a later unit
# refuses, `paycell audit balances`, and the map surviving a clean restart
# (checkpoint) and a kill -9 (WAL replay) of the GZone.
source "$(dirname "$0")/lib.sh"

declare -A PID
for name in g u0 u1 u2; do
    port=$(free_port) # the replicas before it already listen, so it is not theirs
    declare "PORT_$name=$port"
    "$PAYCELL" format --data "$TMP/$name" --accounts-max 1000 --transfers-max 10000 >/dev/null ||
        fail "format $name"
    start_replica "$TMP/$name" "$port" || fail "replica $name did not start"
    PID[$name]=$REPLICA_PID
done
G=127.0.0.1:$PORT_g U0=127.0.0.1:$PORT_u0 U1=127.0.0.1:$PORT_u1 U2=127.0.0.1:$PORT_u2

step "an empty GZone has no map; route set and audit need one"
expect_exit 0 "$PAYCELL" route show --gzone "$G"
expect_in "$OUT" "not initialised"
expect_exit 1 "$PAYCELL" route set 1 1 --gzone "$G"
expect_in "$OUT" "cluster init"

step "cluster init: epoch 1, contiguous ranges; a re-run changes nothing"
expect_exit 0 "$PAYCELL" cluster init --gzone "$G" --units "$U0;$U1;$U2"
expect_in "$OUT" "epoch 1"
expect_exit 0 "$PAYCELL" cluster init --gzone "$G" --units "$U0;$U1;$U2"
expect_in "$OUT" "already initialised"
expect_exit 1 "$PAYCELL" cluster init --gzone "$G" --units "$U0;$U1"
expect_in "$OUT" "different cluster map"
expect_exit 2 "$PAYCELL" cluster init --gzone "$G" --units "$U0;;$U1"
expect_exit 2 "$PAYCELL" cluster init --gzone "$G" --units "$U0;nohost"
expect_in "$OUT" "unit_address_invalid"
expect_exit 0 "$PAYCELL" route show --gzone "$G"
expect_in "$OUT" "epoch 1, 3 units"
expect_in "$OUT" "buckets 0-32 (33)"
expect_in "$OUT" "buckets 33-65 (33)"
expect_in "$OUT" "buckets 66-99 (34)"
expect_exit 0 "$PAYCELL" route show --gzone "$G" --json
expect_in "$OUT" '"epoch":"1","units_count":3'
expect_in "$OUT" "{\"unit\":1,\"addresses\":\"$U1\",\"buckets\":\"33-65\",\"buckets_count\":33}"
expect_exit 0 "$PAYCELL" unit routing --addresses "$U2" --epoch 1 --buckets 66-99
expect_in "$OUT" "exists"

step "accounts go to the unit that owns their bucket"
expect_exit 0 "$PAYCELL" account create --addresses "$U0" --id 7 --ledger 700 --code 1
expect_exit 1 "$PAYCELL" account create --addresses "$U1" --id 107 --ledger 700 --code 1
expect_in "$OUT" "wrong_unit"
expect_exit 0 "$PAYCELL" account create --addresses "$U1" --id 40 --ledger 700 --code 1

step "route set moves an empty bucket online"
expect_exit 0 "$PAYCELL" route set 10 1 --gzone "$G"
expect_in "$OUT" "epoch 1 -> 2"
expect_in "$OUT" "moved buckets 10 from unit 0 to unit 1"
expect_exit 0 "$PAYCELL" route show --gzone "$G"
expect_in "$OUT" "epoch 2, 3 units"
expect_in "$OUT" "buckets 0-9,11-32 (32)"
expect_in "$OUT" "buckets 10,33-65 (34)"
expect_exit 0 "$PAYCELL" account create --addresses "$U1" --id 10 --ledger 700 --code 1
expect_exit 1 "$PAYCELL" account create --addresses "$U0" --id 110 --ledger 700 --code 1
expect_in "$OUT" "wrong_unit"
expect_exit 0 "$PAYCELL" route set 10 1 --gzone "$G" --json
expect_in "$OUT" '"result":"exists"'

step "moving a bucket that holds accounts is refused and changes nothing"
expect_exit 1 "$PAYCELL" route set 7 1 --gzone "$G"
expect_in "$OUT" "bucket 7 holds accounts in unit 0; moving a bucket with accounts (live migration) is not supported yet"
expect_exit 0 "$PAYCELL" route show --gzone "$G" --json
expect_in "$OUT" '"epoch":"2"'
expect_exit 0 "$PAYCELL" unit routing --addresses "$U0" --epoch 2 --buckets 0-9,11-32
expect_in "$OUT" "exists"
expect_exit 0 "$PAYCELL" unit routing --addresses "$U1" --epoch 2 --buckets 10,33-65
expect_in "$OUT" "exists"
expect_exit 0 "$PAYCELL" unit routing --addresses "$U2" --epoch 1 --buckets 66-99
expect_in "$OUT" "exists"
expect_exit 0 "$PAYCELL" account create --addresses "$U0" --id 207 --ledger 700 --code 1

step "a later unit refusing puts back the units already changed"
# Unit 0 gives up bucket 20 first, then unit 1 refuses bucket 40 (it holds
# account 40): unit 0 is put back at epoch 4 and the map follows to epoch 4.
expect_exit 1 "$PAYCELL" route set 20,40 2 --gzone "$G"
expect_in "$OUT" "bucket 40 holds accounts in unit 1"
expect_in "$OUT" "unit 0 put back to buckets 0-9,11-32"
expect_exit 0 "$PAYCELL" route show --gzone "$G"
expect_in "$OUT" "epoch 4, 3 units"
expect_in "$OUT" "buckets 0-9,11-32 (32)"
expect_exit 0 "$PAYCELL" unit routing --addresses "$U0" --epoch 4 --buckets 0-9,11-32
expect_in "$OUT" "exists"
expect_exit 0 "$PAYCELL" account create --addresses "$U0" --id 20 --ledger 700 --code 1 --json
expect_exit 0 "$PAYCELL" route set 21-22 2 --gzone "$G"
expect_in "$OUT" "epoch 4 -> 5"
expect_exit 0 "$PAYCELL" account create --addresses "$U2" --id 21 --ledger 700 --code 1

step "usage errors"
expect_exit 2 "$PAYCELL" route set 100 1 --gzone "$G"
expect_exit 2 "$PAYCELL" route set 5-3 1 --gzone "$G"
expect_exit 2 "$PAYCELL" route set 5 x --gzone "$G"
expect_exit 2 "$PAYCELL" route set 5 --gzone "$G"
expect_exit 2 "$PAYCELL" route show
expect_exit 1 "$PAYCELL" route set 5 3 --gzone "$G"
expect_in "$OUT" "unit 3 does not exist"

step "audit balances sums the units"
expect_exit 0 "$PAYCELL" transfer --addresses "$U0" --id 1 --debit 7 --credit 207 --amount 5 --ledger 700 --code 1
expect_exit 0 "$PAYCELL" audit balances --gzone "$G" --json
expect_in "$OUT" '{"ledger":700,"accounts":6,"debits_pending":"0","debits_posted":"5","credits_pending":"0","credits_posted":"5","pending":"equal","posted":"equal"'
expect_in "$OUT" '"in_flight":[]'
expect_in "$OUT" '"balanced":true'
expect_exit 0 "$PAYCELL" audit balances --gzone "$G"
expect_in "$OUT" "posted   debits 5  credits 5  equal"
expect_in "$OUT" "balanced"

step "the map survives a clean restart (checkpoint) and a kill -9 (WAL replay)"
expect_exit 0 "$PAYCELL" route show --gzone "$G" --json
BEFORE=$OUT
REPLICA_PID=${PID[g]}
stop_replica
start_replica "$TMP/g" "$PORT_g" || fail "GZone restart"
expect_exit 0 "$PAYCELL" route show --gzone "$G" --json
[ "$OUT" = "$BEFORE" ] || fail "map changed over a restart: $BEFORE -> $OUT"
expect_exit 0 "$PAYCELL" route set 23 2 --gzone "$G"
expect_exit 0 "$PAYCELL" route show --gzone "$G" --json
BEFORE=$OUT
expect_in "$BEFORE" '"epoch":"6"'
kill_replica
start_replica "$TMP/g" "$PORT_g" || fail "GZone restart after kill -9"
expect_exit 0 "$PAYCELL" route show --gzone "$G" --json
[ "$OUT" = "$BEFORE" ] || fail "map changed over a kill -9: $BEFORE -> $OUT"
expect_exit 0 "$PAYCELL" cluster init --gzone "$G" --units "$U0;$U1;$U2"
expect_in "$OUT" "already initialised"
echo "gzone: all checks passed"
