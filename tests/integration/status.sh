# status.sh — `paycell status`: each replica of a unit says what it is doing
# (replica_status, asked directly: keyed with the cluster key, or dropped).
# A running unit shows one primary and two backups, all normal and at the
# same commit; a replica killed with -9 shows as no answer (exit 1); a
# question without the cluster key is dropped, and the command says why.
source "$(dirname "$0")/lib.sh"

step "paycell start: GZone + 1 unit of 3 replicas + gateway"
start_cluster --units 1 --replicas 3 --accounts-max 1024 --transfers-max 10000

step "every replica answers: one primary, all normal"
expect_exit 0 "$PAYCELL" status --addresses "$PAYCELL_UNIT0"
echo "$OUT"
[ "$(grep -c ', normal, view ' <<<"$OUT")" = 3 ] || fail "not three normal replicas: $OUT"
[ "$(grep -c ', primary,' <<<"$OUT")" = 1 ] || fail "not one primary: $OUT"
expect_exit 0 "$PAYCELL" status --addresses "$PAYCELL_UNIT0" --json
expect_in "$OUT" '"answered":3,"asked":3'
expect_in "$OUT" '"replica":2,"replica_count":3,"state":"normal"'

step "a question without the cluster key is dropped, and the command says so"
expect_exit 1 env PAYCELL_CLUSTER_KEY= "$PAYCELL" status --addresses "${PAYCELL_UNIT0%%,*}"
expect_in "$OUT" "no answer"
expect_in "$OUT" "--cluster-key"

step "a backup killed with -9: no answer for it, exit 1; the others still answer"
BACKUP=$(awk '$2 == "unit0-r2" {print $1}' "$D/pids")
[ -n "$BACKUP" ] || fail "no pid for unit0-r2 in $D/pids"
kill -9 "$BACKUP"
expect_exit 1 "$PAYCELL" status --addresses "$PAYCELL_UNIT0" --json
expect_in "$OUT" '"answered":2,"asked":3'
expect_in "$OUT" "\"address\":\"${PAYCELL_UNIT0##*,}\",\"error\":\"PC_E"
expect_exit 2 "$PAYCELL" status
echo "status: ok"
