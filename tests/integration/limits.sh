# limits.sh — flow-control limits as cluster settings, changed live (issue
# 5): `paycell cluster set --rate-limit N` reaches every gateway on its next
# refresh of the map (no restart), shows in /metrics, refuses the excess
# with 429 throttled; `--rate-limit off` lifts it; `flag` gives it back to
# the gateway's own flag. Bad values are refused and change nothing.
# `--caller-rate-limit N` holds each caller (API key, or address) to N/s.
source "$(dirname "$0")/lib.sh"

step "paycell start: GZone + 1 unit + gateway, no rate limit"
start_cluster --units 1 --replicas 1 --accounts-max 1024 --transfers-max 10000
H=http://$PAYCELL_HTTP
Z=$PAYCELL_GZONE
limit() { curl -s "$H/metrics" | awk -v n="$1" '$1 == "paycell_gateway_limit{name=\"" n "\"}" { print $2 }'; }
wait_limit() { # NAME VALUE: until the gateway has the map's value (refresh: 2 s)
    for _ in $(seq 60); do [ "$(limit "$1")" = "$2" ] && return 0; sleep 0.1; done
    fail "limit $1: $(limit "$1"), wanted $2"
}
burst() { # N [SOURCE]: N requests at once (from 127.0.0.1, or SOURCE); prints "ok refused"
    local i ok=0 refused=0
    for i in $(seq "$1"); do
        curl -s -o /dev/null -w '%{http_code}\n' --interface "${2:-127.0.0.1}" \
            -H 'Content-Type: application/json' -X POST \
            --data-binary "{\"id\":\"$((BASE + i))\",\"ledger\":1,\"code\":1}" "$H/v1/accounts" &
    done >"$TMP/codes"
    wait
    ok=$(grep -c '^200$' "$TMP/codes"); refused=$(grep -c '^429$' "$TMP/codes")
    BASE=$((BASE + $1))
    echo "$ok $refused"
}
# On a failure, which limits refused (the nonzero throttle counters).
refusals() { curl -s "$H/metrics" | awk '/^paycell_gateway_throttled_total/ && $2 != 0' | tr '\n' ' '; }
BASE=1000
[ "$(limit rate_limit)" = 0 ] || fail "rate limit at start: $(limit rate_limit)"
read -r ok refused < <(burst 20)
[ "$refused" = 0 ] && [ "$ok" = 20 ] || fail "no limit: $ok ok, $refused refused: $(refusals)"

step "cluster set --rate-limit 2: applied live, the excess refused"
expect_exit 2 "$PAYCELL" cluster set --gzone "$Z" --rate-limit 0
expect_exit 2 "$PAYCELL" cluster set --gzone "$Z" --queue-ms 999999
expect_exit 0 "$PAYCELL" cluster set --gzone "$Z" --rate-limit 2 --warmup-ms off --json
expect_in "$OUT" '"rate-limit":2'
expect_in "$OUT" '"warmup-ms":"off"'
wait_limit rate_limit 2
wait_limit warmup_ms 0
read -r ok refused < <(burst 30)
echo "burst of 30 at 2/s: $ok ok, $refused refused"
[ "$refused" -ge 10 ] && [ "$ok" -ge 1 ] || fail "rate limit 2: $ok ok, $refused refused"
expect_in "$(curl -s "$H/metrics")" 'paycell_gateway_throttled_total{reason="rate",shadow="false"}'

step "cluster set --rate-limit off: lifted without a restart"
expect_exit 0 "$PAYCELL" cluster set --gzone "$Z" --rate-limit off
wait_limit rate_limit 0
sleep 1
read -r ok refused < <(burst 20)
[ "$refused" = 0 ] || fail "after off: $ok ok, $refused refused: $(refusals)"
expect_exit 0 "$PAYCELL" route show --gzone "$Z"
expect_in "$OUT" "rate-limit: off (every gateway)"
expect_exit 0 "$PAYCELL" cluster set --gzone "$Z" --rate-limit flag
expect_exit 0 "$PAYCELL" route show --gzone "$Z"
expect_in "$OUT" "rate-limit: each gateway's --rate-limit"

step "cluster set --caller-rate-limit 2: one caller held to it, another not"
# A gateway without keys knows a caller by its address: 127.0.0.2 is
# another caller on the same loopback.
expect_exit 0 "$PAYCELL" cluster set --gzone "$Z" --caller-rate-limit 2 --json
expect_in "$OUT" '"caller-rate-limit":2'
wait_limit caller_rate_limit 2
read -r ok refused < <(burst 30)
echo "burst of 30 from one caller at 2/s each: $ok ok, $refused refused"
[ "$refused" -ge 10 ] && [ "$ok" -ge 1 ] || fail "caller limit 2: $ok ok, $refused refused"
read -r ok refused < <(burst 2 127.0.0.2)
[ "$ok" = 2 ] && [ "$refused" = 0 ] || fail "the other caller: $ok ok, $refused refused"
curl -s -H 'Content-Type: application/json' -X POST \
    --data-binary "{\"id\":\"$BASE\",\"ledger\":1,\"code\":1}" "$H/v1/accounts" >"$TMP/one"
expect_in "$(cat "$TMP/one")" '"field":"caller_rate"'
expect_in "$(curl -s "$H/metrics")" 'paycell_gateway_throttled_total{reason="caller_rate",shadow="false"}'
expect_exit 0 "$PAYCELL" cluster set --gzone "$Z" --caller-rate-limit off
wait_limit caller_rate_limit 0
echo "limits: ok"
