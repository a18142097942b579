# flow.sh — flow control in the gateway (issue 5): a cluster of two units
# (one replica each) from `paycell start`, and gateways started here with
# limits set low. (a) a rate-limited gateway answers a burst with quick
# 429 / PC_ETHROTTLED refusals and applies nothing for them; (b) a unit that
# stops answering trips its circuit breaker: requests touching it are
# refused at once, the other unit keeps serving, and after it resumes a
# half-open probe closes the breaker; (c) a hot credit account over
# --hot-key-rate gets `throttled` per event while the rest of each batch is
# created. The audit stays balanced throughout.
source "$(dirname "$0")/lib.sh"

step "paycell start: GZone + 2 units x 1 replica + gateway"
start_cluster --units 2 --replicas 1 --accounts-max 4096 --transfers-max 100000 --xts-timeout 3
G=$PAYCELL_GATEWAY
H=$PAYCELL_HTTP

# start_gateway NAME ARGS...: a gateway of our own; waits for its first port.
start_gateway() {
    local name=$1 port=$2; shift 2
    "$PAYCELL" gateway --gzone "$PAYCELL_GZONE" "$@" >"$TMP/$name.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return 0; sleep 0.1; done
    fail "gateway $name did not start: $(cat "$TMP/$name.log")"
}
json_transfer() { # ID DEBIT CREDIT
    printf '{"id":"%s","debit_account_id":"%s","credit_account_id":"%s","amount":"1","ledger":1,"code":1}' "$1" "$2" "$3"
}
post() { # HOSTPORT NAME BODY: writes the code and time to $TMP/NAME.code, body to $TMP/NAME
    curl -s -m 20 -o "$TMP/$2" -w '%{http_code} %{time_total}' -H 'Content-Type: application/json' \
        -X POST --data-binary "$3" "http://$1/v1/transfers" >"$TMP/$2.code"
}
found() { # ID: HTTP code of a lookup through the main gateway
    curl -s -o /dev/null -w '%{http_code}' "http://$H/v1/transfers/$1"
}
balanced() {
    expect_exit 0 "$PAYCELL" audit balances --gzone "$PAYCELL_GZONE" --json
    expect_in "$OUT" '"balanced":true'
}

step "accounts in both units (buckets 0-49: unit 0, 50-99: unit 1)"
accounts='[{"id":"1","ledger":1,"code":1},{"id":"2","ledger":1,"code":1},{"id":"60","ledger":1,"code":1},{"id":"61","ledger":1,"code":1}'
for id in $(seq 100 149); do accounts="$accounts,{\"id\":\"$id\",\"ledger\":1,\"code\":1}"; done
curl -s -o "$TMP/acc" -w '%{http_code}' -H 'Content-Type: application/json' -X POST \
    --data-binary "$accounts]" "http://$H/v1/accounts" >"$TMP/acc.code"
[ "$(cat "$TMP/acc.code")" = 200 ] || fail "accounts: $(cat "$TMP/acc.code") $(cat "$TMP/acc")"

step "(a) --rate-limit 5: a burst gets quick 429s, nothing applied for them"
P2=$(free_port); P3=$(free_port)
start_gateway rate "$P3" --listen-binary "127.0.0.1:$P2" --listen-http "127.0.0.1:$P3" \
    --rate-limit 5 --warmup-ms 0 --queue-ms 5000
# "Quick" below: under 2 s, where a request let through would wait in the
# queue for its 5 s deadline (and 30 curls start at once on a busy machine).
for i in $(seq 1000 1029); do post "127.0.0.1:$P3" "r$i" "$(json_transfer "$i" 1 60)" & done
wait_bg() { for j in $(jobs -p); do case " ${PIDS[*]} " in *" $j "*) ;; *) wait "$j" ;; esac; done; }
wait_bg
ok=0 refused=0
for i in $(seq 1000 1029); do
    read -r code secs <"$TMP/r$i.code"
    case "$code" in
    200) ok=$((ok + 1)); expect_in "$(cat "$TMP/r$i")" '"created"' ;;
    429) refused=$((refused + 1))
         expect_in "$(cat "$TMP/r$i")" '"code":"throttled"'
         expect_in "$(cat "$TMP/r$i")" '"field":"rate"'
         awk -v s="$secs" 'BEGIN { exit !(s < 2) }' || fail "429 took $secs s"
         [ "$(found "$i")" = 404 ] || fail "refused transfer $i exists" ;;
    *) fail "transfer $i: HTTP $code $(cat "$TMP/r$i")" ;;
    esac
done
echo "burst of 30 at 5/s: $ok created, $refused refused"
[ "$refused" -ge 10 ] && [ "$ok" -ge 1 ] || fail "expected both answers: $ok ok, $refused refused"
got429=0
for n in 1 2 3 4; do # a batch of 5 events needs a full bucket: the second in a row waits
    curl -s -D "$TMP/rh" -o "$TMP/rb" -H 'Content-Type: application/json' -X POST \
        --data-binary "[$(json_transfer 15${n}0 1 60),$(json_transfer 15${n}1 1 60),$(json_transfer 15${n}2 1 60),$(json_transfer 15${n}3 1 60),$(json_transfer 15${n}4 1 60)]" \
        "http://127.0.0.1:$P3/v1/transfers"
    if head -1 "$TMP/rh" | grep -q 429; then got429=$n; break; fi
    ok=$((ok + 5))
done
[ "$got429" != 0 ] || fail "batches at the limit never refused"
grep -qi '^Retry-After: [1-9]' "$TMP/rh" || fail "no Retry-After on 429: $(cat "$TMP/rh")"
[ "$(found 15${got429}0)" = 404 ] || fail "refused batch applied"

step "(a) binary clients: PC_ETHROTTLED after libpaycell's bounded retries"
for i in $(seq 1100 1119); do
    ("$PAYCELL" transfer --addresses "127.0.0.1:$P2" --id "$i" --debit 1 --credit 60 --amount 1 \
        --ledger 1 --code 1 >"$TMP/b$i" 2>&1; echo $? >"$TMP/b$i.rc") &
done
wait_bg
bok=0 bref=0
for i in $(seq 1100 1119); do
    if [ "$(cat "$TMP/b$i.rc")" = 0 ]; then
        bok=$((bok + 1))
    else
        expect_in "$(cat "$TMP/b$i")" PC_ETHROTTLED
        bref=$((bref + 1))
        [ "$(found "$i")" = 404 ] || fail "throttled binary transfer $i exists: $(cat "$TMP/b$i")"
    fi
done
echo "20 binary clients at 5/s: $bok created, $bref throttled"
[ "$bref" -ge 1 ] && [ "$bok" -ge 1 ] || fail "binary: $bok ok, $bref throttled"
m=$(curl -s "http://127.0.0.1:$P3/metrics")
expect_in "$m" 'paycell_gateway_throttled_total{reason="rate",shadow="false"}'
echo "$m" | grep -q 'throttled_total{reason="rate",shadow="false"} [1-9]' || fail "rate metric: $m"
want=$((ok + bok))
expect_exit 0 "$PAYCELL" lookup account 1 --addresses "$G" --json
expect_in "$OUT" "\"debits_posted\":\"$want\""
sleep 1
balanced

step "(b) a stopped unit trips its breaker; refusals are quick; it recovers"
U1=$(awk '$2 == "unit1-r0" { print $1 }' "$D/pids")
[ -n "$U1" ] || fail "no unit1-r0 in $D/pids"
kill -STOP "$U1"
# Four in flight, the unit limit's floor: more would wait for room and be
# refused at the queue's deadline (429 deadline), as they should.
for i in $(seq 2000 2003); do post "$H" "s$i" "$(json_transfer "$i" 61 60)" & done
opened=0
for _ in $(seq 60); do # overdue calls count as slow: open within a few seconds
    curl -s "http://$H/metrics" | grep -q 'unit_breaker_state{unit="1"} 1' && { opened=1; break; }
    sleep 0.1
done
[ "$opened" = 1 ] || { kill -CONT "$U1"; fail "breaker of the stopped unit did not open"; }
for i in $(seq 2010 2014); do
    post "$H" "s$i" "$(json_transfer "$i" 61 60)"
    read -r code secs <"$TMP/s$i.code"
    [ "$code" = 429 ] || { kill -CONT "$U1"; fail "unit 1 stopped: expected 429, got $code $(cat "$TMP/s$i")"; }
    expect_in "$(cat "$TMP/s$i")" '"field":"circuit_open"'
    # Quick: a call let through to the stopped unit would hang for curl's 20 s.
    awk -v s="$secs" 'BEGIN { exit !(s < 2) }' || { kill -CONT "$U1"; fail "refusal took $secs s"; }
done
post "$H" s2015 "$(json_transfer 2015 1 2)"
read -r code secs <"$TMP/s2015.code"
[ "$code" = 200 ] || { kill -CONT "$U1"; fail "unit 0 while unit 1 stopped: $code"; }
kill -CONT "$U1"
wait_bg
for i in $(seq 2000 2003); do
    read -r code secs <"$TMP/s$i.code"
    [ "$code" = 200 ] || fail "in-flight transfer $i across the stop: $code $(cat "$TMP/s$i")"
done
recovered=0
for n in $(seq 2020 2049); do
    post "$H" "s$n" "$(json_transfer "$n" 61 60)"
    read -r code secs <"$TMP/s$n.code"
    if [ "$code" = 200 ]; then recovered=1; break; fi
    sleep 0.3
done
[ "$recovered" = 1 ] || fail "unit 1 never recovered: $(cat "$TMP/s$n")"
curl -s "http://$H/metrics" | grep -q 'unit_breaker_state{unit="1"} 0' || fail "breaker not closed"
for i in $(seq 2010 2014); do [ "$(found "$i")" = 404 ] || fail "refused transfer $i exists"; done
sleep 1
balanced

step "(c) --hot-key-rate 10: the hot merchant is throttled per event, others proceed"
P4=$(free_port)
start_gateway hot "$P4" --listen-http "127.0.0.1:$P4" --hot-key-rate 10
created_other=0 throttled=0 created_hot=0 last_throttled=0
for b in 0 1 2 3 4; do
    body=""
    for k in $(seq 0 39); do
        id=$((3000 + b * 100 + k))
        if [ $((k % 4)) = 3 ]; then cr=$((100 + b * 10 + k / 4)); else cr=60; fi
        body="$body,$(json_transfer "$id" 1 "$cr")"
    done
    post "127.0.0.1:$P4" "h$b" "[${body#,}]"
    read -r code secs <"$TMP/h$b.code"
    [ "$code" = 200 ] || fail "hot batch $b: $code $(cat "$TMP/h$b")"
    for k in $(seq 0 39); do
        id=$((3000 + b * 100 + k))
        r=$(grep -o "\"id\":\"$id\",\"result\":\"[a-z_]*\"" "$TMP/h$b" | sed 's/.*"result":"//; s/"//')
        if [ $((k % 4)) = 3 ]; then
            [ "$r" = created ] || fail "transfer $id to a cold account: $r"
            created_other=$((created_other + 1))
        elif [ "$r" = throttled ]; then
            throttled=$((throttled + 1))
            last_throttled=$id
        else
            [ "$r" = created ] || fail "transfer $id to the merchant: $r"
            created_hot=$((created_hot + 1))
        fi
    done
done
echo "merchant: $created_hot created, $throttled throttled; others: $created_other created"
[ "$throttled" -ge 60 ] || fail "expected most merchant transfers throttled, got $throttled"
[ "$(found "$last_throttled")" = 404 ] || fail "throttled transfer $last_throttled exists"
curl -s "http://127.0.0.1:$P4/metrics" | grep -q 'throttled_total{reason="hot_key",shadow="false"} [1-9]' ||
    fail "hot_key metric"

step "final audit"
sleep 1
balanced
echo "flow: ok"
