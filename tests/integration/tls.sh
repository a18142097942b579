# tls.sh — TLS at the gateway (issue 8): `paycell start --tls --auth` makes
# a CA and certificates, and the gateway's binary and HTTP listeners speak
# TLS only: mutual on the binary listener; on HTTP, where every request
# carries its API key, a client certificate is optional (a browser has none)
# but one presented must be the CA's. A client with the CA and the client
# certificate creates and looks up a transfer (binary and HTTPS, /metrics
# too); a plaintext client, a client whose certificate comes from another
# CA, one without a certificate (binary) and one that does not trust the
# server's CA are each refused (PC_ETLS or a dropped connection), change
# nothing, and are counted in
# paycell_gateway_tls_handshake_failures_total, as is a connection that
# never finishes its handshake. A private key others may read stops a
# gateway from starting. Commands that talk to replicas directly (the
# audit) stay plaintext with the TLS variables set. bench works over TLS.
source "$(dirname "$0")/lib.sh"

step "paycell start --tls --auth: certificates made, exported in cluster.env"
start_cluster --units 2 --replicas 1 --accounts-max 65536 --transfers-max 400000 --tls --auth
[ "$PAYCELL_TLS_CA" = "$D/certs/ca.crt" ] || fail "PAYCELL_TLS_CA=$PAYCELL_TLS_CA"
[ -f "$PAYCELL_TLS_CERT" ] && [ -f "$PAYCELL_TLS_KEY" ] || fail "client certificate in cluster.env"
[ "$(stat -c %a "$D/certs/server.key")" = 600 ] || fail "server key mode"
expect_in "$(cat "$D/logs/gateway.log")" "(TLS; client certificates required on binary, optional on http where keys are)"
G=$PAYCELL_GATEWAY
H=https://$PAYCELL_HTTP
Z=$PAYCELL_GZONE
export PAYCELL_KEY=$PAYCELL_CLIENT_KEY # a client's key: TLS and keys together
OTHER=$TMP/other
expect_exit 0 "$PAYCELL" certs init "$OTHER"

failures() { # LISTENER: the gateway's count of refused handshakes
    curl -s --cacert "$PAYCELL_TLS_CA" --cert "$PAYCELL_TLS_CERT" --key "$PAYCELL_TLS_KEY" \
        -H "Authorization: Bearer $PAYCELL_OBSERVER_KEY" "$H/metrics" |
        awk -v l="$1" '$1 == "paycell_gateway_tls_handshake_failures_total{listener=\"" l "\"}" {print $2}'
}
failures_reach() { # LISTENER N: the count once it reaches N (a busy gateway may
    # take a moment to read a connection its client already gave up on), at most 5 s
    local n
    for _ in $(seq 50); do
        n=$(failures "$1")
        [ "${n:-0}" -ge "$2" ] && break
        sleep 0.1
    done
    echo "${n:-0}"
}
lookup99() { "$PAYCELL" lookup account 99 --addresses "$G" --json; }

step "a TLS client with the CA and a client certificate moves money"
for id in 1 2; do
    expect_exit 0 "$PAYCELL" account create --addresses "$G" --id $id --ledger 1 --code 1
done
expect_exit 0 "$PAYCELL" transfer --addresses "$G" --id 100 --debit 1 --credit 2 --amount 7 \
    --ledger 1 --code 1
expect_exit 0 "$PAYCELL" lookup transfer 100 --addresses "$G" --json
expect_in "$OUT" '"amount":"7"'
[ "$(failures binary)" = 0 ] || fail "failures before any refusal: $(failures binary)"

step "a plaintext client to the TLS port is dropped, nothing applied"
expect_exit 2 env PAYCELL_TLS_CA= "$PAYCELL" account create --addresses "$G" --id 99 --ledger 1 \
    --code 1
expect_exit 1 lookup99
expect_in "$OUT" "not_found"
BEFORE=$(failures_reach binary 1)
[ "$BEFORE" -ge 1 ] || fail "plaintext client not counted: $BEFORE"

step "a client certificate from another CA is refused (PC_ETLS) and counted"
expect_exit 2 env PAYCELL_TLS_CERT="$OTHER/client.crt" PAYCELL_TLS_KEY="$OTHER/client.key" \
    "$PAYCELL" account create --addresses "$G" --id 99 --ledger 1 --code 1
expect_in "$OUT" "PC_ETLS"
[ "$(failures binary)" -gt "$BEFORE" ] || fail "another CA's certificate not counted"
BEFORE=$(failures binary)

step "no client certificate: refused (PC_ETLS) and counted"
expect_exit 2 env PAYCELL_TLS_CERT= PAYCELL_TLS_KEY= "$PAYCELL" account create --addresses "$G" \
    --id 99 --ledger 1 --code 1
expect_in "$OUT" "PC_ETLS"
[ "$(failures binary)" -gt "$BEFORE" ] || fail "a missing certificate not counted"

step "a client that does not trust the server's CA fails with PC_ETLS"
expect_exit 2 env PAYCELL_TLS_CA="$OTHER/ca.crt" "$PAYCELL" account create --addresses "$G" \
    --id 99 --ledger 1 --code 1
expect_in "$OUT" "PC_ETLS"
expect_exit 2 env PAYCELL_TLS_CA="$OTHER/ca.crt" PAYCELL_TLS_CERT="$OTHER/client.crt" \
    PAYCELL_TLS_KEY="$OTHER/client.key" "$PAYCELL" lookup account 1 --addresses "$G"
expect_in "$OUT" "PC_ETLS"
expect_exit 1 lookup99 # none of the refused creates applied

step "a client key others may read is refused by the client (before any byte is sent)"
cp "$PAYCELL_TLS_KEY" "$TMP/open.key" && chmod 644 "$TMP/open.key"
expect_exit 2 env PAYCELL_TLS_KEY="$TMP/open.key" "$PAYCELL" lookup account 1 --addresses "$G"
expect_in "$OUT" "PC_EINVAL"

step "HTTPS with the client certificate: /v1/transfers and /metrics"
C=(--cacert "$PAYCELL_TLS_CA" --cert "$PAYCELL_TLS_CERT" --key "$PAYCELL_TLS_KEY")
BODY=$(curl -s "${C[@]}" -H "Authorization: Bearer $PAYCELL_CLIENT_KEY" \
    -H 'Content-Type: application/json' \
    --data '{"id":"101","debit_account_id":"1","credit_account_id":"2","amount":"3","ledger":1,"code":1}' \
    "$H/v1/transfers")
expect_in "$BODY" '"result":"created"'
BODY=$(curl -s "${C[@]}" -H "Authorization: Bearer $PAYCELL_CLIENT_KEY" "$H/v1/accounts/2")
expect_in "$BODY" '"credits_posted":"10"'
BODY=$(curl -s "${C[@]}" -H "Authorization: Bearer $PAYCELL_OBSERVER_KEY" "$H/metrics")
expect_in "$BODY" "paycell_gateway_payments_total 2"

step "HTTPS without a client certificate: the key decides"
BODY=$(curl -s --cacert "$PAYCELL_TLS_CA" -H "Authorization: Bearer $PAYCELL_OBSERVER_KEY" "$H/metrics")
expect_in "$BODY" "paycell_gateway_payments_total 2"
CODE=$(curl -s -o "$TMP/curl.out" -w '%{http_code}' --cacert "$PAYCELL_TLS_CA" "$H/v1/accounts/1")
[ "$CODE" = 401 ] || fail "HTTPS without certificate or key: $CODE $(cat "$TMP/curl.out")"

step "HTTPS refusals: another CA's certificate, plain HTTP; counted"
HTTP_BEFORE=$(failures http)
curl -s --max-time 10 --cacert "$PAYCELL_TLS_CA" --cert "$OTHER/client.crt" \
    --key "$OTHER/client.key" -H "Authorization: Bearer $PAYCELL_CLIENT_KEY" \
    "$H/v1/accounts/1" >"$TMP/curl.out" 2>&1 && fail "another CA's certificate served: $(cat "$TMP/curl.out")"
curl -s --max-time 10 -H "Authorization: Bearer $PAYCELL_CLIENT_KEY" \
    "http://$PAYCELL_HTTP/v1/accounts/1" >"$TMP/curl.out" 2>&1 &&
    fail "plain HTTP served: $(cat "$TMP/curl.out")"
[ "$(failures http)" -ge $((HTTP_BEFORE + 2)) ] ||
    fail "HTTPS refusals counted: $HTTP_BEFORE -> $(failures http)"

step "a handshake not done in 5 s is dropped and counted"
BEFORE=$(failures binary)
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
sleep 6
[ "$(failures binary)" -gt "$BEFORE" ] || fail "a stalled handshake not counted"
exec 3>&-

step "commands that talk to replicas stay plaintext with TLS in the environment"
expect_exit 0 "$PAYCELL" audit balances --gzone "$Z" --json
expect_in "$OUT" '"balanced":true'

step "a private key others may read stops a gateway from starting"
cp "$D/certs/server.key" "$TMP/server.key" && chmod 644 "$TMP/server.key"
expect_exit 2 "$PAYCELL" gateway --gzone "$Z" --listen-binary "127.0.0.1:$(free_port)" \
    --tls-cert "$D/certs/server.crt" --tls-key "$TMP/server.key" --quiet
expect_in "$OUT" "chmod 600"

step "paycell bench over TLS"
expect_exit 0 "$PAYCELL" bench --addresses "$G" --transfers 200000
expect_in "$OUT" "transfers=200000"
expect_in "$OUT" " equal"
echo "PASS tls"
