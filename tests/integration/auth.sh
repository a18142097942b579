# auth.sh — API keys with roles at the gateway (issue 8): `paycell start
# --auth` makes operator, client and observer keys and the gateway requires
# them. No key, a wrong key and a revoked key are refused with PC_EAUTH
# (HTTP 401); a client key asking for an operator command (shadow purge
# through the gateway) and an observer key asking to move money or read an
# account are refused with PC_EFORBIDDEN (403); none of it changes a balance
# or the books. An operator key purges; an observer key reads /metrics.
# A keys file others may read stops the gateway from starting. Repeated
# failures get the source refused at once (PC_ETHROTTLED, 429) while
# another source is still served.
source "$(dirname "$0")/lib.sh"

step "paycell start --auth: keys made, 0600, in cluster.env"
start_cluster --units 2 --replicas 1 --accounts-max 1024 --transfers-max 10000 --auth
[ "$(stat -c %a "$D/keys")" = 600 ] || fail "keys file mode $(stat -c %a "$D/keys")"
[ "$(stat -c %a "$D/cluster.env")" = 600 ] || fail "cluster.env mode $(stat -c %a "$D/cluster.env")"
G=$PAYCELL_GATEWAY
H=http://$PAYCELL_HTTP
Z=$PAYCELL_GZONE
OPERATOR=$PAYCELL_KEY
CLIENT=$PAYCELL_CLIENT_KEY
OBSERVER=$PAYCELL_OBSERVER_KEY
unset PAYCELL_KEY # each command below says which key it uses
WRONG=pck_$(printf '0%.0s' $(seq 64))
[ ${#OPERATOR} = 68 ] && [ ${#CLIENT} = 68 ] && [ ${#OBSERVER} = 68 ] || fail "keys in cluster.env"
expect_exit 0 "$PAYCELL" keys list --file "$PAYCELL_KEYS"
expect_in "$OUT" "start-observer"
case "$(cat "$PAYCELL_KEYS")" in *pck_*) fail "a key in the clear in the keys file" ;; esac

as() { local key=$1; shift; PAYCELL_KEY=$key "$@"; }
http() { # KEY METHOD PATH [BODY]: prints "STATUS BODY"
    local auth=() body
    [ -n "$1" ] && auth=(-H "Authorization: Bearer $1")
    if [ $# -ge 4 ]; then
        body=$(curl -s -w ' %{http_code}' "${auth[@]}" -X "$2" -H 'Content-Type: application/json' \
            --data-binary "$4" "$H$3")
    else
        body=$(curl -s -w ' %{http_code}' "${auth[@]}" -X "$2" "$H$3")
    fi
    echo "${body##* } ${body% *}"
}
books() { # balances of the real accounts, the shadow one's existence, and the audit
    local id
    for id in 1 2 60; do as "$CLIENT" "$PAYCELL" lookup account $id --addresses "$G" --json; done
    as "$CLIENT" "$PAYCELL" lookup account 5 --addresses "$G" --json --shadow
    "$PAYCELL" audit balances --gzone "$Z" --json
}

step "a client key moves money, over binary and HTTP"
for id in 1 2 60; do
    expect_exit 0 as "$CLIENT" "$PAYCELL" account create --addresses "$G" --id $id --ledger 1 --code 1
done
expect_exit 0 as "$CLIENT" "$PAYCELL" account create --addresses "$G" --id 5 --ledger 1 --code 1 --shadow
expect_exit 0 as "$CLIENT" "$PAYCELL" transfer --addresses "$G" --id 100 --debit 1 --credit 60 \
    --amount 50 --ledger 1 --code 1
expect_in "$(http "$CLIENT" POST /v1/transfers \
    '{"id":"101","debit_account_id":"60","credit_account_id":"2","amount":"7","ledger":1,"code":1}')" \
    '200 {"results":[{"id":"101","result":"created"}]}'
before=$(books)
expect_in "$before" '"credits_posted":"50"'
expect_in "$before" '"balanced":true'

step "a keys file others may read: the gateway refuses to start, saying why"
cp "$PAYCELL_KEYS" "$TMP/open-keys" && chmod 644 "$TMP/open-keys"
expect_exit 2 "$PAYCELL" gateway --gzone "$Z" --listen-http "127.0.0.1:$(free_port)" \
    --keys "$TMP/open-keys"
expect_in "$OUT" "chmod 600"

# Each refusal below with PC_EAUTH is one failure of this source (9 in
# all, the limit being 10 in 60 s): the rate-limit step comes last.
step "no key: PC_EAUTH (binary), 401 PC_EAUTH (HTTP); nothing changes"
expect_exit 2 "$PAYCELL" transfer --addresses "$G" --id 200 --debit 1 --credit 60 --amount 1 \
    --ledger 1 --code 1
expect_in "$OUT" "PC_EAUTH"
r=$(http "" POST /v1/transfers \
    '{"id":"201","debit_account_id":"1","credit_account_id":"60","amount":"1","ledger":1,"code":1}')
expect_in "$r" '401 {"error":{"code":"PC_EAUTH"'

step "a wrong key: PC_EAUTH, 401; nothing changes"
expect_exit 2 as "$WRONG" "$PAYCELL" transfer --addresses "$G" --id 202 --debit 1 --credit 60 \
    --amount 1 --ledger 1 --code 1
expect_in "$OUT" "PC_EAUTH"
r=$(http "$WRONG" POST /v1/transfers \
    '{"id":"203","debit_account_id":"1","credit_account_id":"60","amount":"1","ledger":1,"code":1}')
expect_in "$r" '401 {"error":{"code":"PC_EAUTH"'

step "a revoked key: refused once the gateway rereads the file (no restart)"
expect_exit 0 "$PAYCELL" keys create --file "$PAYCELL_KEYS" --name app-2 --role client --json
APP2=$(echo "$OUT" | sed -E 's/.*"key":"(pck_[0-9a-f]+)".*/\1/')
sleep 2 # the gateway looks at the file once a second (a try before would count as a failure)
expect_exit 0 as "$APP2" "$PAYCELL" lookup account 1 --addresses "$G"
expect_exit 0 "$PAYCELL" keys revoke --file "$PAYCELL_KEYS" --name app-2
for _ in $(seq 50); do # until the revocation lands: only the refusal counts
    as "$APP2" "$PAYCELL" lookup account 1 --addresses "$G" >/dev/null 2>&1 || break
    sleep 0.2
done
expect_exit 2 as "$APP2" "$PAYCELL" transfer --addresses "$G" --id 204 --debit 1 --credit 60 \
    --amount 1 --ledger 1 --code 1
expect_in "$OUT" "PC_EAUTH"
expect_in "$(http "$APP2" GET /v1/accounts/1)" '401 {"error":{"code":"PC_EAUTH"'

step "a client key asking for an operator command (shadow purge): PC_EFORBIDDEN"
expect_exit 2 as "$CLIENT" "$PAYCELL" shadow purge --gateway "$G"
expect_in "$OUT" "PC_EFORBIDDEN"
expect_in "$(http "$CLIENT" GET /metrics)" '403 {"error":{"code":"PC_EFORBIDDEN"'

step "an observer key reads /metrics, not accounts, and moves no money"
r=$(http "$OBSERVER" GET /metrics)
expect_in "$r" "200 "
expect_in "$r" "paycell_gateway_auth_failures_total"
expect_in "$(http "$OBSERVER" GET /v1/cluster)" '200 {"epoch"'
expect_in "$(http "$OBSERVER" GET /v1/accounts/1)" '403 {"error":{"code":"PC_EFORBIDDEN"'
expect_in "$(http "$OBSERVER" POST /v1/transfers \
    '{"id":"205","debit_account_id":"1","credit_account_id":"60","amount":"1","ledger":1,"code":1}')" \
    '403 {"error":{"code":"PC_EFORBIDDEN"'
expect_exit 2 as "$OBSERVER" "$PAYCELL" transfer --addresses "$G" --id 206 --debit 1 --credit 60 \
    --amount 1 --ledger 1 --code 1
expect_in "$OUT" "PC_EFORBIDDEN"
expect_exit 2 as "$OBSERVER" "$PAYCELL" lookup account 1 --addresses "$G"
expect_in "$OUT" "PC_EFORBIDDEN"
# The big screen takes its key in the query (an EventSource sends no header).
[ "$(curl -s -o /dev/null -w '%{http_code}' "$H/?key=$OBSERVER")" = 200 ] || fail "GET /?key="
[ "$(curl -s -o /dev/null -w '%{http_code}' "$H/metrics?key=$OBSERVER")" = 401 ] ||
    fail "?key= must not count on /metrics"

step "nothing refused changed anything"
after=$(books)
[ "$after" = "$before" ] || fail "the books changed: before $before after $after"
for id in 200 201 202 203 204 205 206; do
    expect_exit 1 as "$CLIENT" "$PAYCELL" lookup transfer $id --addresses "$G"
done

step "--key-file: a private file holding a key; a readable one is refused"
printf '%s\n' "$CLIENT" >"$TMP/client.key" && chmod 600 "$TMP/client.key"
expect_exit 0 "$PAYCELL" lookup account 60 --addresses "$G" --key-file "$TMP/client.key"
chmod 644 "$TMP/client.key"
expect_exit 2 "$PAYCELL" lookup account 60 --addresses "$G" --key-file "$TMP/client.key"
expect_in "$OUT" "chmod 600"

step "an operator key purges the shadow namespace through the gateway"
expect_exit 0 as "$OPERATOR" "$PAYCELL" shadow purge --gateway "$G"
expect_exit 1 as "$CLIENT" "$PAYCELL" lookup account 5 --addresses "$G" --shadow
expect_in "$(books)" '"credits_posted":"50"'

step "repeated failures: the source is refused at once (PC_ETHROTTLED, 429), others are not"
for i in $(seq 12); do http "$WRONG" GET /v1/accounts/1; done >"$TMP/codes"
grep -q '^429 {"error":{"code":"PC_ETHROTTLED"' "$TMP/codes" || fail "never 429: $(cat "$TMP/codes")"
grep -c '^401 ' "$TMP/codes" | grep -qx '[0-9]' || fail "more than 9 failures before 429"
# A good key from this source is refused too, over HTTP and binary.
expect_in "$(http "$CLIENT" GET /v1/accounts/1)" '429 {"error":{"code":"PC_ETHROTTLED"'
expect_exit 2 as "$CLIENT" "$PAYCELL" lookup account 1 --addresses "$G"
expect_in "$OUT" "PC_ETHROTTLED"
# Another source (127.0.0.2 is loopback too) is served, and sees the counts.
m=$(curl -s --interface 127.0.0.2 -H "Authorization: Bearer $OBSERVER" "$H/metrics")
expect_in "$m" "paycell_gateway_auth_failures_total 10"
refused=$(echo "$m" | awk '$1 == "paycell_gateway_auth_refused_total" { print $2 }')
[ "$refused" -ge 10 ] || fail "auth_refused_total $refused"
expect_in "$m" "paycell_gateway_auth_forbidden_total 6"
echo "auth: ok"
