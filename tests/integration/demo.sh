# demo.sh — `paycell demo --json`, short: the report is one JSON object on
# stdout; the demo passed (exit 0); the audit is equal, nothing failed, the
# shadow traffic stayed in its namespace, the failover drill ran and the
# killed replica came back; the traffic mix is what the demo says (users
# paying merchants, cross-unit and shadow shares); and the report's numbers
# are what the gateway's /metrics counted (read by the demo just before it
# stopped the cluster), compared here field by field. Afterwards nothing
# the demo started is left: no process, no temporary directory.
source "$(dirname "$0")/lib.sh" || exit 1

# field NAME: a number (or "string") field of the report, top level first.
field() { grep -o "\"$1\":\"\\?[0-9.-]*" "$TMP/report.json" | head -1 | sed 's/.*:"\?//'; }
# mfield NAME: the same inside "metrics":{...}.
mfield() { sed 's/.*"metrics":{//; s/}.*//' "$TMP/report.json" | grep -o "\"$1\":\"\\?[0-9]*" |
           sed 's/.*:"\?//'; }
flag() { grep -q "\"$1\":true" "$TMP/report.json"; }

before=$(ls -d /tmp/paycell-demo-* 2>/dev/null | sort)
PORT=0
for try in 1 2 3; do
    PORT=$(free_port)
    step "paycell demo --duration 12 --port $PORT --json"
    "$PAYCELL" demo --duration 12 --port "$PORT" --json >"$TMP/report.json" 2>"$TMP/demo.err"
    status=$?
    grep -q "the cluster did not start" "$TMP/demo.err" || break
done
[ "$status" -eq 0 ] || { tail -20 "$TMP/demo.err"; cat "$TMP/report.json"; fail "the demo exited $status"; }
[ "$(wc -l <"$TMP/report.json")" -eq 1 ] && grep -q '^{.*}$' "$TMP/report.json" ||
    fail "stdout is not one JSON object: $(head -c 300 "$TMP/report.json")"
grep -q "big screen: https://127.0.0.1:$((PORT + 1))/?key=pck_[0-9a-f]*$" "$TMP/demo.err" ||
    fail "no big screen address (https, with the observer key)"

step "the verdicts"
for f in passed audit_equal shadow_isolated rejoined metrics_read metrics_agree; do
    flag "$f" || fail "$f is not true: $(cat "$TMP/report.json")"
done
[ "$(field failed)" = 0 ] || fail "failed transfers: $(field failed)"
[ "$(field cluster_audit_real)" = 0 ] && [ "$(field cluster_audit_shadow)" = 0 ] ||
    fail "paycell audit balances did not say balanced (real $(field cluster_audit_real), shadow $(field cluster_audit_shadow))"
[ "$(field killed_replica)" -ge 0 ] || fail "the failover drill killed nothing"
awk -v f="$(field failover_ms)" 'BEGIN { exit !(f > 0 && f < 30000) }' ||
    fail "failover time $(field failover_ms) ms"
[ "$(field audit_debits)" = "$(field audit_credits)" ] && [ "$(field audit_debits)" = "$(field gmv)" ] ||
    fail "books: debits $(field audit_debits) credits $(field audit_credits) GMV $(field gmv)"

step "the mix: 100,000 users, 1,000 merchants, cross-unit and shadow traffic"
[ "$(field users)" = 100000 ] && [ "$(field merchants)" = 1000 ] || fail "population"
[ "$(field payments)" -gt 10000 ] || fail "only $(field payments) payments"
awk -v s="$(field cross_unit_share)" 'BEGIN { exit !(s > 0.15 && s < 0.6) }' ||
    fail "cross-unit share $(field cross_unit_share)"
[ "$(field shadow_payments)" -gt 0 ] || fail "no shadow payments"
[ "$(grep -o '"per_second":\[[0-9,]*\]' "$TMP/report.json" | tr -cd , | wc -c)" -ge 10 ] ||
    fail "fewer than 11 seconds in per_second"

step "the report's numbers are what /metrics counted"
expect_same() { [ "$1" = "$2" ] || fail "$3: report $1, /metrics $2"; }
expect_same "$(field payments)" "$(mfield payments_total)" "payments"
expect_same "$(field gmv)" "$(mfield gmv_total)" "GMV"
expect_same "$(( $(field payments) + $(field shadow_payments) ))" "$(mfield transfers_created_total)" \
    "transfers created (real + shadow)"
expect_same "$(field cross_unit)" "$(mfield xts_committed_total)" "cross-unit commits"
expect_same "$(field throttled_hot)" "$(mfield throttled_hot_key)" "hot-merchant refusals"
expect_same "$(field throttled_requests)" "$(mfield throttled_requests)" "requests refused whole"
[ "$(mfield failovers_total)" -ge 1 ] || fail "the gateway saw no failover"

step "nothing left behind"
after=$(ls -d /tmp/paycell-demo-* 2>/dev/null | sort)
[ "$before" = "$after" ] || fail "left: $(comm -13 <(echo "$before") <(echo "$after"))"
for p in $(seq "$PORT" $((PORT + 25))); do
    (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null && fail "port $p still answers"
done
echo "ok: demo report $(head -c 200 "$TMP/report.json")..."
