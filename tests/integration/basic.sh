# basic.sh — the ledger through the CLI on a real replica: result codes,
# idempotent retries, limits, two-phase timeouts, history, JSON output, exit
# statuses, and state surviving a clean restart and a kill -9.
source "$(dirname "$0")/lib.sh"
PORT=$(free_port); A=127.0.0.1:$PORT
"$PAYCELL" format --data "$TMP/d" --transfers-max 100000 --accounts-max 1000 || fail format
start_replica "$TMP/d" "$PORT" || fail "replica did not start"

step "accounts"
expect_exit 0 "$PAYCELL" account create --addresses "$A" --id 1 --ledger 700 --code 10 --flags debits_must_not_exceed_credits
expect_in "$OUT" "created"
expect_exit 0 "$PAYCELL" account create --addresses "$A" --id 2 --ledger 700 --code 10
expect_exit 0 "$PAYCELL" account create --addresses "$A" --id 1 --ledger 700 --code 10 --flags debits_must_not_exceed_credits --json
expect_in "$OUT" '"result":"exists"'
expect_exit 1 "$PAYCELL" account create --addresses "$A" --id 1 --ledger 701 --code 10 --flags debits_must_not_exceed_credits
expect_in "$OUT" "exists_with_different_ledger"

step "overdraft is refused and changes nothing"
expect_exit 1 "$PAYCELL" transfer --addresses "$A" --id 1 --debit 1 --credit 2 --amount 100 --ledger 700 --code 1
expect_in "$OUT" "exceeds_credits"
expect_exit 0 "$PAYCELL" lookup account 1 --addresses "$A" --json
expect_in "$OUT" '"debits_posted":"0"'
expect_in "$OUT" '"credits_posted":"0"'
expect_exit 1 "$PAYCELL" transfer --addresses "$A" --id 1 --debit 1 --credit 2 --amount 100 --ledger 700 --code 1
expect_in "$OUT" "id_already_failed"

step "the same transfer id twice: created, then exists"
expect_exit 0 "$PAYCELL" transfer --addresses "$A" --id 10 --debit 2 --credit 1 --amount 500 --ledger 700 --code 1 --json
expect_in "$OUT" '"result":"created"'
expect_exit 0 "$PAYCELL" transfer --addresses "$A" --id 10 --debit 2 --credit 1 --amount 500 --ledger 700 --code 1 --json
expect_in "$OUT" '"result":"exists"'
expect_exit 1 "$PAYCELL" transfer --addresses "$A" --id 10 --debit 2 --credit 1 --amount 501 --ledger 700 --code 1
expect_in "$OUT" "exists_with_different_amount"
expect_exit 0 "$PAYCELL" transfer --addresses "$A" --id 11 --debit 1 --credit 2 --amount 200 --ledger 700 --code 1

step "pending transfer posted after its timeout expires"
expect_exit 0 "$PAYCELL" transfer --addresses "$A" --id 20 --debit 2 --credit 1 --amount 50 --ledger 700 --code 1 --pending --timeout 1
expect_exit 0 "$PAYCELL" lookup account 2 --addresses "$A" --json
expect_in "$OUT" '"debits_pending":"50"'
sleep 2.2
# No write since: the replica's idle tick alone released the reservation.
expect_exit 0 "$PAYCELL" lookup account 2 --addresses "$A" --json
expect_in "$OUT" '"debits_pending":"0"'
expect_exit 1 "$PAYCELL" transfer --addresses "$A" --id 21 --post 20
expect_in "$OUT" "pending_transfer_expired"
expect_exit 0 "$PAYCELL" lookup account 2 --addresses "$A" --json
expect_in "$OUT" '"debits_pending":"0"'

step "partial post and void"
expect_exit 0 "$PAYCELL" transfer --addresses "$A" --id 30 --debit 2 --credit 1 --amount 80 --ledger 700 --code 1 --pending
expect_exit 0 "$PAYCELL" transfer --addresses "$A" --id 31 --post 30 --amount 20
expect_exit 1 "$PAYCELL" transfer --addresses "$A" --id 32 --void 30
expect_in "$OUT" "pending_transfer_already_posted"
expect_exit 0 "$PAYCELL" transfer --addresses "$A" --id 40 --debit 2 --credit 1 --amount 7 --ledger 700 --code 1 --pending
expect_exit 0 "$PAYCELL" transfer --addresses "$A" --id 41 --void 40
expect_exit 0 "$PAYCELL" lookup account 2 --addresses "$A" --json
expect_in "$OUT" '"debits_posted":"520"'
expect_in "$OUT" '"credits_posted":"200"'
expect_in "$OUT" '"debits_pending":"0"'

step "unknown account, bad usage, unreachable server"
expect_exit 1 "$PAYCELL" transfer --addresses "$A" --id 50 --debit 999 --credit 1 --amount 1 --ledger 700 --code 1
expect_in "$OUT" "debit_account_not_found"
expect_exit 2 "$PAYCELL" transfer --addresses "$A" --debit 1 --credit 2 --amount 1 --ledger 700 --code 1
expect_exit 2 "$PAYCELL" transfer --addresses "$A" --id 51 --debit 1 --credit 2 --amount -5 --ledger 700 --code 1
expect_exit 2 "$PAYCELL" transfer --addresses "$A" --id 51 --debit 1 --credit 2 --amount 340282366920938463463374607431768211456 --ledger 700 --code 1
expect_exit 2 "$PAYCELL" account create --addresses "$A" --id 3 --ledger 700 --code 10 --flags no_such_flag
expect_exit 2 "$PAYCELL" lookup account 1 --addresses 127.0.0.1:1
expect_exit 1 "$PAYCELL" lookup transfer 999 --addresses "$A"

step "lookup and history"
expect_exit 0 "$PAYCELL" lookup transfer 10 --addresses "$A" --json
expect_in "$OUT" '"amount":"500"'
expect_in "$OUT" '"debit_account_id":"2"'
expect_exit 0 "$PAYCELL" history 2 --addresses "$A" --json --limit 3
[ "$(echo "$OUT" | grep -c '"id"')" -eq 3 ] || fail "history limit 3: $OUT"
expect_in "$(echo "$OUT" | head -1)" '"id":"41"'
expect_exit 0 "$PAYCELL" history 2 --addresses "$A" --json --oldest-first --limit 2
expect_in "$(echo "$OUT" | head -1)" '"id":"10"'

step "state survives a clean restart and a kill -9"
BEFORE=$("$PAYCELL" lookup account 2 --addresses "$A" --json)
stop_replica
start_replica "$TMP/d" "$PORT" || fail "restart"
expect_exit 0 "$PAYCELL" lookup account 2 --addresses "$A" --json
[ "$OUT" = "$BEFORE" ] || fail "after restart: $OUT != $BEFORE"
expect_exit 0 "$PAYCELL" transfer --addresses "$A" --id 60 --debit 2 --credit 1 --amount 1 --ledger 700 --code 1
kill_replica
start_replica "$TMP/d" "$PORT" || fail "restart after kill"
expect_exit 0 "$PAYCELL" lookup transfer 60 --addresses "$A" --json
expect_exit 0 "$PAYCELL" transfer --addresses "$A" --id 10 --debit 2 --credit 1 --amount 500 --ledger 700 --code 1
expect_in "$OUT" "exists"
expect_exit 1 "$PAYCELL" transfer --addresses "$A" --id 1 --debit 1 --credit 2 --amount 100 --ledger 700 --code 1
expect_in "$OUT" "id_already_failed"
step "the documented C example runs against the replica"
expect_exit 0 "$PWD/build/example-transfer" "$A"
expect_in "$OUT" "transfer 424242: created"
expect_in "$OUT" "account 9002: debits 0 credits 1999"
expect_exit 0 "$PWD/build/example-transfer" "$A"
expect_in "$OUT" "transfer 424242: exists"
echo "basic: all checks passed"
