# offered.sh — the open-loop bench (`paycell bench --offered`, issue 5):
# a short run against a 1-unit cluster (one replica) through its gateway,
# with shadow and hot-merchant traffic, must account for every transfer it
# offered (offered = accepted + throttled + failed + dropped + unanswered,
# overall, for real/shadow and hot/other, and per phase) and leave none
# unanswered; against a second gateway with a low --rate-limit the same
# holds while part of the load is throttled. Nothing here is timed: rates
# and latencies are printed, not asserted.
source "$(dirname "$0")/lib.sh"

step "paycell start: GZone + 1 unit x 1 replica + gateway"
start_cluster --units 1 --replicas 1 --accounts-max 8192 --transfers-max 400000

# num NAME [JSON]: the first "NAME":N in the JSON (top-level keys come first).
num() { printf '%s' "${2:-$OUT}" | grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2; }
# obj NAME: the body of the first object "NAME":{...} (flat objects only).
obj() { printf '%s' "$OUT" | grep -o "\"$1\":{[^}]*}" | head -1; }
# adds_up TEXT WHAT: offered = accepted + throttled + failed + dropped + unanswered.
adds_up() {
    local o a t f d u
    o=$(num offered "$1"); a=$(num accepted "$1"); t=$(num throttled "$1")
    f=$(num failed "$1"); d=$(num dropped "$1"); u=$(num unanswered "$1")
    [ -n "$o" ] && [ -n "$u" ] || fail "$2: no counts in: $1"
    [ "$o" -eq $((a + t + f + d + u)) ] ||
        fail "$2: offered $o != accepted $a + throttled $t + failed $f + dropped $d + unanswered $u"
    echo "$2: offered $o = accepted $a + throttled $t + failed $f + dropped $d + unanswered $u"
}

step "usage: --offered needs --addresses; --then RATE:SECONDS; --duration only with --offered"
expect_exit 2 "$PAYCELL" bench --offered 1000
expect_exit 2 "$PAYCELL" bench --addresses "$PAYCELL_GATEWAY" --offered 1000 --then 5x
expect_exit 2 "$PAYCELL" bench --addresses "$PAYCELL_GATEWAY" --duration 3
expect_exit 2 "$PAYCELL" bench --addresses "$PAYCELL_GATEWAY" --offered 1000 --transfers 10

step "open loop through the gateway: 2 phases, 30% shadow, 50% for the hot merchant"
expect_exit 0 "$PAYCELL" bench --addresses "$PAYCELL_GATEWAY" --offered 20000 --duration 2 \
    --then 40000:1 --accounts 1000 --batch 100 --clients 8 --shadow-share 0.3 --hot-share 0.5 \
    --grace 5 --json --quiet
adds_up "$OUT" total
[ "$(num offered)" -eq 80000 ] || fail "offered $(num offered), expected 20000 x 2 + 40000 x 1"
[ "$(num unanswered)" -eq 0 ] || fail "unanswered: $(num unanswered)"
[ "$(num requests_offered)" -eq 800 ] || fail "requests_offered $(num requests_offered)"
[ "$(num accepted)" -gt 0 ] || fail "nothing accepted: $OUT"
for part in real shadow hot other; do
    adds_up "$(obj "$part")" "$part"
    [ "$(num offered "$(obj "$part")")" -gt 0 ] || fail "no $part traffic: $OUT"
done
[ $(($(num offered "$(obj real)") + $(num offered "$(obj shadow)"))) -eq "$(num offered)" ] ||
    fail "real + shadow != offered"
[ $(($(num offered "$(obj hot)") + $(num offered "$(obj other)"))) -eq "$(num offered)" ] ||
    fail "hot + other != offered"
expect_in "$OUT" '"phases":[{"offered_per_s":20000,"seconds":2.000,'
expect_in "$OUT" '"per_second":[{"second":0,'
phases=$(printf '%s' "$OUT" | grep -o '"counts":{[^}]*}')
[ "$(printf '%s\n' "$phases" | wc -l)" -eq 2 ] || fail "expected 2 phases: $phases"
while read -r p; do adds_up "$p" phase; done <<<"$phases"

step "the same with people's output: a line per second and a summary"
expect_exit 0 "$PAYCELL" bench --addresses "$PAYCELL_GATEWAY" --offered 10000 --duration 2 \
    --accounts 1000 --batch 100 --clients 4 --grace 5
expect_in "$OUT" "bench:   1s offered"
expect_in "$OUT" "unanswered=0"
expect_in "$OUT" "phase 1: offered_per_s=10000"

step "against a gateway with --rate-limit 10000: part throttled, every transfer still accounted for"
P2=$(free_port)
"$PAYCELL" gateway --gzone "$PAYCELL_GZONE" --listen-binary "127.0.0.1:$P2" --rate-limit 10000 \
    --warmup-ms 0 --quiet >"$TMP/gw2.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$P2") 2>/dev/null && break; sleep 0.1; done
expect_exit 0 "$PAYCELL" bench --addresses "127.0.0.1:$P2" --offered 40000 --duration 2 \
    --then 5000:1 --accounts 1000 --batch 100 --clients 8 --grace 5 --json --quiet
adds_up "$OUT" "rate-limited total"
[ "$(num unanswered)" -eq 0 ] || fail "unanswered: $(num unanswered)"
[ "$(num throttled)" -gt 0 ] || fail "nothing throttled at 4x the rate limit: $OUT"
[ "$(num accepted)" -gt 0 ] || fail "nothing accepted: $OUT"
[ "$(num failed)" -eq 0 ] || fail "failed: $OUT"
while read -r p; do adds_up "$p" phase; done < <(printf '%s' "$OUT" | grep -o '"counts":{[^}]*}')

step "the cluster's books balance (real and shadow runs together)"
expect_exit 0 "$PAYCELL" audit balances --gzone "$PAYCELL_GZONE" --json
expect_in "$OUT" '"balanced":true'
echo "ok"
