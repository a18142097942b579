# shadow.sh — full-link stress testing on a whole cluster (issue 5): shadow
# copies of real accounts (`paycell shadow seed`), shadow transfers within
# and across units through the gateway (binary and HTTP), requests that mix
# the namespaces refused with shadow_mismatch and changing nothing, the real
# books untouched by all of it (the real audit is the same before and
# after, and every real account reads as before), the shadow books balanced
# on their own, and `paycell shadow purge` leaving no shadow record.
source "$(dirname "$0")/lib.sh"

step "paycell start: GZone + 2 units + gateway"
start_cluster --units 2 --replicas 1 --accounts-max 4096 --transfers-max 100000 --xts-timeout 3
G=$PAYCELL_GATEWAY
H=http://$PAYCELL_HTTP
Z=$PAYCELL_GZONE

account() { expect_exit 0 "$PAYCELL" account create --addresses "$G" --id "$1" --ledger 1 --code 1 "${@:2}"; }
transfer() { # ID DEBIT CREDIT AMOUNT [--shadow]: prints the result
    "$PAYCELL" transfer --addresses "$G" --id "$1" --debit "$2" --credit "$3" --amount "$4" \
        --ledger 1 --code 1 --json "${@:5}" 2>&1
}
balances() { # ACCOUNT [--shadow]: "debits_posted credits_posted"
    "$PAYCELL" lookup account "$1" --addresses "$G" --json "${@:2}" |
        sed -E 's/.*"debits_posted":"([0-9]+)".*"credits_posted":"([0-9]+)".*/\1 \2/'
}
real_books() { # every real account's JSON, and the real audit once nothing is in flight
    for id in 1 2 3 60 61 62; do "$PAYCELL" lookup account $id --addresses "$G" --json; done
    local audit i
    for i in $(seq 1 50); do
        audit=$("$PAYCELL" audit balances --gzone "$Z" --json)
        case "$audit" in *'"in_flight":[]'*) break ;; esac
        sleep 0.2
    done
    echo "$audit"
}

step "real accounts in both units and real transfers, local and cross-unit"
for id in 1 2 3 60 61 62; do account $id; done
expect_in "$(transfer 100 1 2 50)" '"created"'
expect_in "$(transfer 101 1 60 30)" '"created"'
expect_in "$(transfer 102 61 3 20)" '"created"'
expect_in "$(transfer 103 62 1 5)" '"created"'
real_before=$(real_books)
expect_in "$real_before" '"balanced":true'

step "shadow seed copies the real accounts with their balances; a second run changes nothing"
expect_exit 0 "$PAYCELL" shadow seed --from-real 100 --gzone "$Z" --json
expect_in "$OUT" '"copied":6'
expect_in "$OUT" '"accounts_created":6'
expect_in "$OUT" '"refused":0'
expect_exit 0 "$PAYCELL" shadow seed --from-real 100 --gzone "$Z" --json
expect_in "$OUT" '"accounts_existed":6'
expect_in "$OUT" '"transfers_created":0'
for id in 1 2 3 60 61 62; do
    [ "$(balances $id --shadow)" = "$(balances $id)" ] ||
        fail "shadow copy of $id: $(balances $id --shadow), real: $(balances $id)"
done

step "shadow transfers through the gateway, local and cross-unit (binary)"
expect_in "$(transfer 200 1 2 7 --shadow)" '"created"'
expect_in "$(transfer 201 2 61 9 --shadow)" '"created"'
expect_in "$(transfer 202 60 3 4 --shadow)" '"created"'
expect_in "$(transfer 201 2 61 9 --shadow)" '"exists"'
[ "$(balances 2 --shadow)" = "9 57" ] || fail "shadow 2: $(balances 2 --shadow)"
[ "$(balances 61 --shadow)" = "20 9" ] || fail "shadow 61: $(balances 61 --shadow)"

step "HTTP: X-Paycell-Shadow carries the flag; ids are the shadow ids"
shadow_id() { # 2^127 + N, for N below 272
    [ "$1" -lt 272 ] || fail "shadow_id: $1 too large"
    printf '170141183460469231731687303715884105%03d' $((728 + $1))
}
post() { curl -s -o "$TMP/body" -w '%{http_code}' -H 'Content-Type: application/json' "${@:3}" \
    -X POST --data-binary "$2" "$H$1"; }
S1=$(shadow_id 1); S60=$(shadow_id 60); S250=$(shadow_id 250)
code=$(post /v1/transfers "{\"id\":\"$S250\",\"debit_account_id\":\"$S1\",\"credit_account_id\":\"$S60\",\"amount\":\"3\",\"ledger\":1,\"code\":1}" \
    -H 'X-Paycell-Shadow: 1')
[ "$code" = 200 ] || fail "shadow POST: $code $(cat "$TMP/body")"
expect_in "$(cat "$TMP/body")" '"created"'

step "mixing the namespaces is refused with shadow_mismatch and changes nothing"
code=$(post /v1/transfers "{\"id\":\"$(shadow_id 251)\",\"debit_account_id\":\"$S1\",\"credit_account_id\":\"2\",\"amount\":\"3\",\"ledger\":1,\"code\":1}" \
    -H 'X-Paycell-Shadow: 1')
[ "$code" = 422 ] || fail "mixed shadow POST: $code $(cat "$TMP/body")"
expect_in "$(cat "$TMP/body")" 'shadow_mismatch'
code=$(post /v1/transfers "{\"id\":\"252\",\"debit_account_id\":\"$S1\",\"credit_account_id\":\"$S60\",\"amount\":\"3\",\"ledger\":1,\"code\":1}")
[ "$code" = 422 ] || fail "shadow ids without the header: $code $(cat "$TMP/body")"
expect_in "$(cat "$TMP/body")" 'shadow_mismatch'
code=$(post /v1/accounts "{\"id\":\"$(shadow_id 5)\",\"ledger\":1,\"code\":1}")
expect_in "$(cat "$TMP/body")" 'shadow_mismatch'
expect_in "$(transfer 253 1 60 5 --shadow)" '"created"' # all mapped: fine
expect_in "$(transfer 100 1 2 50)" '"exists"'          # a real retry between them
expect_exit 1 "$PAYCELL" lookup transfer 251 --addresses "$G" --shadow
expect_exit 1 "$PAYCELL" lookup transfer 252 --addresses "$G"

step "the real books are untouched by the shadow traffic; the shadow books balance"
real_after=$(real_books)
[ "$real_after" = "$real_before" ] || fail "real books changed:
before: $real_before
after:  $real_after"
expect_exit 0 "$PAYCELL" audit balances --gzone "$Z" --shadow --json
expect_in "$OUT" '"namespace":"shadow"'
expect_in "$OUT" '"balanced":true'
expect_in "$(curl -s "$H/metrics")" 'paycell_gateway_events_shadow_total'

step "shadow purge removes every shadow record, and only those"
expect_exit 0 "$PAYCELL" shadow purge --gzone "$Z"
expect_in "$OUT" "unit 0: shadow namespace purged"
expect_in "$OUT" "unit 1: shadow namespace purged"
for id in 1 2 3 60 61 62; do
    expect_exit 1 "$PAYCELL" lookup account $id --addresses "$G" --shadow
done
for id in 200 201 202 250 253; do
    expect_exit 1 "$PAYCELL" lookup transfer $id --addresses "$G" --shadow
done
expect_exit 0 "$PAYCELL" audit balances --gzone "$Z" --shadow --json
expect_in "$OUT" '"ledgers":[]'
[ "$(real_books)" = "$real_before" ] || fail "real books changed by the purge"
expect_exit 0 "$PAYCELL" lookup transfer 101 --addresses "$G"

step "after a restart the purge holds (purged slots skipped in recovery)"
"$PAYCELL" stop --data "$D" >/dev/null 2>&1
"$PAYCELL" start --data "$D" --units 2 --replicas 1 --port "$PORT" >"$TMP/start2.out" 2>&1 ||
    { cat "$TMP/start2.out" "$D"/logs/*.log >&2; fail "paycell start (restart)"; }
for _ in $(seq 100); do # until the gateway has sessions with both units again
    "$PAYCELL" lookup account 60 --addresses "$G" >/dev/null 2>&1 && break
    sleep 0.1
done
expect_exit 1 "$PAYCELL" lookup account 1 --addresses "$G" --shadow
[ "$(real_books)" = "$real_before" ] || fail "real books changed by the restart"
expect_in "$(transfer 200 1 2 7 --shadow)" 'debit_account_not_found'
echo "shadow: ok"
