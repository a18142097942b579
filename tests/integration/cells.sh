# cells.sh — a whole cluster from `paycell start`: a GZone and two units of
# three replicas, and a gateway. Transfers within and across units through
# the binary protocol (the CLI) and HTTP; balances; the audit across units;
# chains that would span units refused; buckets moved online; a second
# gateway with a stale table corrected by wrong_unit without applying
# anything twice; bad HTTP input answered 4xx and changing nothing; every
# replica shown up in /metrics by the gateway's prober, and a killed one down.
source "$(dirname "$0")/lib.sh"

step "paycell start: GZone + 2 units x 3 replicas + gateway"
start_cluster --units 2 --replicas 3 --accounts-max 4096 \
    --transfers-max 100000 --journal-slots 32 --xts-timeout 3
G=$PAYCELL_GATEWAY
H=http://$PAYCELL_HTTP

account() { expect_exit 0 "$PAYCELL" account create --addresses "$G" --id "$1" --ledger 1 --code 1; }
transfer() { # ID DEBIT CREDIT AMOUNT: prints the result
    "$PAYCELL" transfer --addresses "$G" --id "$1" --debit "$2" --credit "$3" --amount "$4" \
        --ledger 1 --code 1 --json 2>&1
}
posted() { # ACCOUNT: "debits_posted credits_posted debits_pending credits_pending"
    "$PAYCELL" lookup account "$1" --addresses "$G" --json |
        sed -E 's/.*"debits_pending":"([0-9]+)".*"debits_posted":"([0-9]+)".*"credits_pending":"([0-9]+)".*"credits_posted":"([0-9]+)".*/\2 \4 \1 \3/'
}

# A cross-unit transfer is acknowledged once decided; its payee leg is
# confirmed just after (the gateway's last phase runs after its reply), so
# a balance is awaited, for at most 5 s, rather than read once.
settled() { # ACCOUNT EXPECTED [NOTE]
    local got=""
    for _ in $(seq 50); do
        got=$(posted "$1")
        [ "$got" = "$2" ] && return 0
        sleep 0.1
    done
    fail "account $1${3:+ $3}: $got (expected $2)"
}

step "accounts in both units (buckets 0-49: unit 0, 50-99: unit 1)"
for id in 1 2 60 61; do account $id; done
expect_exit 0 "$PAYCELL" route show --gzone "$PAYCELL_GZONE"
expect_in "$OUT" "0-49"
expect_in "$OUT" "50-99"

step "a local transfer and cross-unit transfers, with retries"
expect_in "$(transfer 100 1 2 10)" '"created"'
expect_in "$(transfer 101 1 60 7)" '"created"'
expect_in "$(transfer 101 1 60 7)" '"exists"'
expect_in "$(transfer 102 61 2 5)" '"created"'
expect_in "$(transfer 103 61 9 5)" '"credit_account_not_found"'
r=$(transfer 103 61 9 5); case "$r" in *created*|*exists*) fail "retry of a refused cross-unit transfer: $r" ;; esac
settled 1 "17 0 0 0"
settled 2 "0 15 0 0"
settled 60 "0 7 0 0"
settled 61 "5 0 0 0" "(the aborted transfer released)"
expect_exit 0 "$PAYCELL" lookup transfer 101 --addresses "$G"
expect_in "$OUT" "1 -> 60"

step "the payer's refusal is its abort, for good: the payee's pending credit cancelled"
expect_exit 0 "$PAYCELL" account create --addresses "$G" --id 90005 --ledger 1 --code 1 \
    --flags debits_must_not_exceed_credits
expect_in "$(transfer 104 90005 60 3)" '"exceeds_credits"'
settled 60 "0 7 0 0" "(the refused transfer's pending credit cancelled)"
expect_in "$(transfer 104 90005 60 3)" '"xts_aborted"'
account 90006
expect_in "$(transfer 105 90006 90005 10)" '"created"'
expect_in "$(transfer 104 90005 60 3)" '"xts_aborted"'
settled 90005 "0 10 0 0" "(funded, and still never debited by the aborted transfer)"
settled 60 "0 7 0 0"

step "HTTP: accounts and transfers within and across units"
post() { curl -s -o "$TMP/body" -w '%{http_code}' -H 'Content-Type: application/json' \
    -X POST --data-binary "$2" "$H$1"; }
code=$(post /v1/accounts '[{"id":"3","ledger":1,"code":1},{"id":"70","ledger":1,"code":1}]')
[ "$code" = 200 ] || fail "POST accounts: $code $(cat "$TMP/body")"
code=$(post /v1/transfers '[{"id":"200","debit_account_id":"3","credit_account_id":"1","amount":"4","ledger":1,"code":1},
  {"id":"201","debit_account_id":"70","credit_account_id":"3","amount":"9","ledger":1,"code":1}]')
[ "$code" = 200 ] || fail "POST transfers: $code $(cat "$TMP/body")"
expect_in "$(cat "$TMP/body")" '"created"'
settled 3 "4 9 0 0"
settled 70 "9 0 0 0"
body=$(curl -s "$H/v1/accounts/70")
expect_in "$body" '"debits_posted":"9"'
body=$(curl -s "$H/v1/transfers/201")
expect_in "$body" '"credit_account_id":"3"'
body=$(curl -s "$H/v1/cluster")
expect_in "$body" '"epoch":"1"'
body=$(curl -s "$H/metrics")
expect_in "$body" 'paycell_gateway_xts_committed'

step "a linked chain spanning units is refused, and changes nothing"
code=$(post /v1/transfers '[{"id":"300","debit_account_id":"1","credit_account_id":"2","amount":"1","ledger":1,"code":1,"flags":["linked"]},
  {"id":"301","debit_account_id":"2","credit_account_id":"60","amount":"1","ledger":1,"code":1}]')
expect_in "$(cat "$TMP/body")" 'linked_chain_spans_units'
expect_in "$(cat "$TMP/body")" 'linked_event_failed'
settled 1 "17 4 0 0" "after the refused chain"

step "bad HTTP input: 4xx JSON errors, nothing changes"
before=$("$PAYCELL" audit balances --gzone "$PAYCELL_GZONE" --json)
for body in '{"id":"400",' '{"id":400,"debit_account_id":"1","credit_account_id":"2","amount":"1","ledger":1,"code":1}' \
    '{"id":"400","debit_account_id":"1","credit_account_id":"2","amount":"-5","ledger":1,"code":1}' \
    '{"id":"400","debit_account_id":"1","credit_account_id":"2","amount":"340282366920938463463374607431768211456","ledger":1,"code":1}' \
    '{"id":"400","debit_account_id":"1","credit_account_id":"2","amount":"1","ledger":1,"code":1,"colour":"red"}'; do
    code=$(post /v1/transfers "$body")
    case "$code" in 4??) ;; *) fail "expected 4xx for $body, got $code" ;; esac
    expect_in "$(cat "$TMP/body")" '"error"'
done
head -c 10485760 /dev/zero | tr '\0' ' ' >"$TMP/big"
code=$(curl -s -o "$TMP/body" -w '%{http_code}' -H 'Content-Type: application/json' \
    -X POST --data-binary @"$TMP/big" "$H/v1/transfers")
[ "$code" = 413 ] || fail "10 MiB body: expected 413, got $code"
code=$(curl -s -o "$TMP/body" -w '%{http_code}' "$H/v1/accounts/12345")
[ "$code" = 404 ] || fail "unknown account: expected 404, got $code"
code=$(post /v1/transfers '{"id":"401","debit_account_id":"4444","credit_account_id":"2","amount":"1","ledger":1,"code":1}')
case "$code" in 4??) ;; *) fail "unknown account in a transfer: expected 4xx, got $code" ;; esac
expect_in "$(cat "$TMP/body")" 'debit_account_not_found'
after=$("$PAYCELL" audit balances --gzone "$PAYCELL_GZONE" --json)
[ "$before" = "$after" ] || fail "bad input changed balances: $before -> $after"

step "audit balances across units: equal, nothing in flight"
sleep 1
expect_exit 0 "$PAYCELL" audit balances --gzone "$PAYCELL_GZONE" --json
expect_in "$OUT" '"balanced":true'
expect_in "$OUT" '"in_flight":[]'

step "a second gateway keeps its table; a bucket moves; wrong_unit corrects it"
P2=$(free_port)
"$PAYCELL" gateway --gzone "$PAYCELL_GZONE" --listen-binary "127.0.0.1:$P2" --refresh-ms 3600000 \
    >"$TMP/gw2.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$P2") 2>/dev/null && break; sleep 0.1; done
expect_exit 0 "$PAYCELL" route set 40-44 1 --gzone "$PAYCELL_GZONE"
expect_exit 0 "$PAYCELL" route show --gzone "$PAYCELL_GZONE" --json
expect_in "$OUT" '"epoch":"2"'
expect_exit 0 "$PAYCELL" account create --addresses "127.0.0.1:$P2" --id 140 --ledger 1 --code 1
expect_in "$OUT" "created"
expect_exit 0 "$PAYCELL" lookup account 140 --addresses "$PAYCELL_UNIT1"
expect_exit 1 "$PAYCELL" lookup account 140 --addresses "$PAYCELL_UNIT0"
expect_exit 0 "$PAYCELL" account create --addresses "$G" --id 140 --ledger 1 --code 1
expect_in "$OUT" "exists"
expect_in "$(transfer 500 1 140 3)" '"created"'
settled 140 "0 3 0 0"

step "moving a bucket that holds accounts is refused, the map unchanged"
expect_exit 1 "$PAYCELL" route set 1 1 --gzone "$PAYCELL_GZONE"
expect_in "$OUT" "holds accounts"
expect_exit 0 "$PAYCELL" route show --gzone "$PAYCELL_GZONE" --json
expect_in "$OUT" '"epoch":"2"'
expect_in "$(transfer 501 1 2 1)" '"created"'

step "a global setting in the GZone: the XTS timeout, seen by every gateway"
expect_exit 0 "$PAYCELL" route show --gzone "$PAYCELL_GZONE" --json
expect_in "$OUT" '"xts_timeout_s":3'
expect_exit 0 "$PAYCELL" cluster set --gzone "$PAYCELL_GZONE" --xts-timeout 7 --json
expect_in "$OUT" '"epoch":"3"'
expect_in "$OUT" '"xts_timeout_s":7'
expect_exit 2 "$PAYCELL" cluster set --gzone "$PAYCELL_GZONE" --xts-timeout 0
for _ in $(seq 50); do
    case "$(curl -s "$H/v1/cluster")" in *'"epoch":"3"'*) break ;; esac
    sleep 0.1
done
expect_in "$(curl -s "$H/v1/cluster")" '"epoch":"3"'
expect_in "$(transfer 502 1 60 1)" '"created"'
expect_exit 0 "$PAYCELL" lookup transfer 502 --addresses "$G"
expect_in "$OUT" "timeout 7s"

step "final audit"
sleep 1
expect_exit 0 "$PAYCELL" audit balances --gzone "$PAYCELL_GZONE"
expect_in "$OUT" "balanced"

step "concurrent requests share sub-requests (merged), each answered as its own"
# The gateway sends the parts for one unit made in one loop turn as one
# request and splits the reply by index. A bench of 16 clients keeps it
# busy while rounds of 20 HTTP requests, each with a failing event in the
# middle and a cross-unit one at the end, must get exactly their own results.
"$PAYCELL" bench --addresses "$G" --clients 16 --batch 64 --transfers 40000 --accounts 200 \
    --cross-unit 0.3 --seed 5 --json >"$TMP/bench.json" 2>"$TMP/bench.err" &
BENCH=$!
merged_total() { curl -s "$H/metrics" | awk '$1 == "paycell_gateway_unit_parts_merged_total" {print $2}'; }
mixed() { # ID: transfers ID (local), ID+1 (unknown debit account), ID+2 (cross-unit);
    # refused with 429 under the bench's load: sent again (same ids), 50 times at most
    local try
    for try in $(seq 50); do
        mixed_once "$@"
        [ "$(cat "$TMP/mixed-$1.code")" = 429 ] || return 0
        sleep 0.1
    done
}
mixed_once() {
    local t='"ledger":1,"code":1,"amount":"1"'
    curl -s -o "$TMP/mixed-$1" -w '%{http_code}' -H 'Content-Type: application/json' -X POST \
        --data-binary "[{\"id\":\"$1\",\"debit_account_id\":\"1\",\"credit_account_id\":\"2\",$t},
            {\"id\":\"$(($1 + 1))\",\"debit_account_id\":\"4444\",\"credit_account_id\":\"2\",$t},
            {\"id\":\"$(($1 + 2))\",\"debit_account_id\":\"1\",\"credit_account_id\":\"60\",$t}]" \
        "$H/v1/transfers" >"$TMP/mixed-$1.code"
}
for round in 1 2 3 4 5; do
    curls=()
    for k in $(seq 20); do
        mixed $((100000 + round * 1000 + k * 10)) &
        curls+=($!)
    done
    wait "${curls[@]}"
    for k in $(seq 20); do
        id=$((100000 + round * 1000 + k * 10))
        [ "$(cat "$TMP/mixed-$id.code")" = 200 ] || fail "request $id: HTTP $(cat "$TMP/mixed-$id.code")"
        want="{\"results\":[{\"id\":\"$id\",\"result\":\"created\"},{\"id\":\"$((id + 1))\",\"result\":\"debit_account_not_found\"},{\"id\":\"$((id + 2))\",\"result\":\"created\"}]}"
        [ "$(cat "$TMP/mixed-$id")" = "$want" ] || fail "request $id: $(cat "$TMP/mixed-$id") (expected $want)"
    done
done
wait "$BENCH" || { cat "$TMP/bench.err"; fail "the bench beside the merged requests failed"; }
expect_in "$(cat "$TMP/bench.json")" '"audit_equal":true'
merged=$(merged_total)
[ "${merged:-0}" -gt 0 ] || fail "no parts merged under 16 clients (paycell_gateway_unit_parts_merged_total '$merged')"
echo "parts merged: $merged"

step "the gateway's prober: every replica up in /metrics, a killed one down within seconds"
up() { # UNIT REPLICA: its paycell_replica_up in the gateway's /metrics
    curl -s "$H/metrics" |
        awk -v m="paycell_replica_up{unit=\"$1\",replica=\"$2\"}" '$1 == m {print $2}'
}
wait_up() { # UNIT REPLICA VALUE: until /metrics says so (5 s at most: a probe a second)
    for _ in $(seq 50); do [ "$(up "$1" "$2")" = "$3" ] && return 0; sleep 0.1; done
    fail "paycell_replica_up of replica $2 of unit $1 never became $3 (it is '$(up "$1" "$2")')"
}
for u in 0 1; do for r in 0 1 2; do wait_up $u $r 1; done; done
primaries=$(curl -s "$H/metrics" | grep -c '^paycell_replica_primary{unit="1",replica="[0-2]"} 1$')
[ "$primaries" = 1 ] || fail "unit 1 shows $primaries primaries in /metrics"
pid=$(awk '$2 == "unit1-r2" {print $1}' "$D/pids")
[ -n "$pid" ] || fail "no unit1-r2 in $D/pids"
kill -9 "$pid"
wait_up 1 2 0
wait_up 1 1 1
expect_in "$(cat "$D/logs/gateway.log")" "replica 2 of unit 1"
echo "cells: ok"
