# routing.sh — a unit's owned buckets through the CLI on a real replica:
# `paycell unit routing` and its results (created, exists, stale, conflict,
# bucket_not_empty, usage errors), wrong_unit for accounts and transfers of
# buckets the unit does not own (no tombstone left behind), and the routing
# state surviving a clean restart and a kill -9.
source "$(dirname "$0")/lib.sh"
PORT=$(free_port); A=127.0.0.1:$PORT
"$PAYCELL" format --data "$TMP/d" --transfers-max 10000 --accounts-max 1000 || fail format
start_replica "$TMP/d" "$PORT" || fail "replica did not start"

step "a fresh unit owns every bucket at epoch 0"
expect_exit 0 "$PAYCELL" account create --addresses "$A" --id 1 --ledger 700 --code 10
expect_exit 0 "$PAYCELL" account create --addresses "$A" --id 60 --ledger 700 --code 10
expect_exit 0 "$PAYCELL" unit routing --addresses "$A" --epoch 0 --buckets 0-99 --json
expect_in "$OUT" '"result":"exists"'
expect_in "$OUT" '"unit_epoch":"0"'

step "giving up a bucket that holds accounts is refused"
expect_exit 1 "$PAYCELL" unit routing --addresses "$A" --epoch 1 --buckets 0-49
expect_in "$OUT" "bucket_not_empty"
expect_exit 0 "$PAYCELL" unit routing --addresses "$A" --epoch 1 --buckets 0-49,60 --json
expect_in "$OUT" '"result":"created"'
expect_in "$OUT" '"unit_epoch":"1"'
expect_exit 0 "$PAYCELL" unit routing --addresses "$A" --epoch 1 --buckets 0-49,60
expect_in "$OUT" "exists"
expect_exit 1 "$PAYCELL" unit routing --addresses "$A" --epoch 1 --buckets 0-48,60
expect_in "$OUT" "routing_epoch_conflict"
expect_exit 1 "$PAYCELL" unit routing --addresses "$A" --epoch 0 --buckets 0-99
expect_in "$OUT" "routing_epoch_stale"

step "usage errors"
expect_exit 2 "$PAYCELL" unit routing --addresses "$A" --epoch 2 --buckets 0-100
expect_exit 2 "$PAYCELL" unit routing --addresses "$A" --epoch 2 --buckets 5-3
expect_exit 2 "$PAYCELL" unit routing --addresses "$A" --epoch 2 --buckets 1,,2
expect_exit 2 "$PAYCELL" unit routing --addresses "$A" --epoch 2 --buckets abc
expect_exit 2 "$PAYCELL" unit routing --addresses "$A" --buckets 0-9
expect_exit 2 "$PAYCELL" unit routing --epoch 2 --buckets 0-9
expect_exit 2 "$PAYCELL" unit routes --addresses "$A" --epoch 2 --buckets 0-9

step "wrong_unit for accounts and transfers of buckets owned elsewhere"
expect_exit 1 "$PAYCELL" account create --addresses "$A" --id 70 --ledger 700 --code 10 --json
expect_in "$OUT" '"result":"wrong_unit"'
expect_exit 0 "$PAYCELL" account create --addresses "$A" --id 2 --ledger 700 --code 10
expect_exit 1 "$PAYCELL" transfer --addresses "$A" --id 100 --debit 1 --credit 70 --amount 5 --ledger 700 --code 1
expect_in "$OUT" "wrong_unit"
expect_exit 1 "$PAYCELL" transfer --addresses "$A" --id 101 --debit 170 --credit 1 --amount 5 --ledger 700 --code 1
expect_in "$OUT" "wrong_unit"
expect_exit 0 "$PAYCELL" transfer --addresses "$A" --id 102 --debit 1 --credit 60 --amount 5 --ledger 700 --code 1
expect_exit 1 "$PAYCELL" lookup account 70 --addresses "$A"

step "routing survives a clean restart and a kill -9"
stop_replica
start_replica "$TMP/d" "$PORT" || fail "restart"
expect_exit 0 "$PAYCELL" unit routing --addresses "$A" --epoch 1 --buckets 0-49,60
expect_in "$OUT" "exists"
kill_replica
start_replica "$TMP/d" "$PORT" || fail "restart after kill"
expect_exit 1 "$PAYCELL" account create --addresses "$A" --id 70 --ledger 700 --code 10
expect_in "$OUT" "wrong_unit"

step "a later epoch takes the bucket: the refused ids now succeed"
expect_exit 0 "$PAYCELL" unit routing --addresses "$A" --epoch 2 --buckets 0-99 --json
expect_in "$OUT" '"unit_epoch":"2"'
expect_exit 0 "$PAYCELL" account create --addresses "$A" --id 70 --ledger 700 --code 10
expect_exit 0 "$PAYCELL" transfer --addresses "$A" --id 100 --debit 1 --credit 70 --amount 5 --ledger 700 --code 1
expect_in "$OUT" "created"
expect_exit 0 "$PAYCELL" lookup account 1 --addresses "$A" --json
expect_in "$OUT" '"debits_posted":"10"'
expect_exit 1 "$PAYCELL" unit routing --addresses "$A" --epoch 3 --buckets none
expect_in "$OUT" "bucket_not_empty"
echo "routing: all checks passed"
