# lib.sh — helpers for integration scripts: a temp dir, replicas on free
# loopback ports, and assertions that say what they expected.
set -u
PAYCELL=${PAYCELL:-$PWD/build/paycell}
TMP=$(mktemp -d /tmp/paycell-it-XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }

free_port() {
    local port
    while :; do
        port=$(shuf -i 20000-32000 -n 1) # below the ephemeral port range
        (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null || { echo "$port"; return; }
    done
}

# start_replica DIR PORT: starts a replica in the background, waits until it
# accepts connections (up to 30 s). Sets REPLICA_PID.
start_replica() {
    local dir=$1 port=$2
    "$PAYCELL" replica --data "$dir" --listen "127.0.0.1:$port" >>"$TMP/replica.log" 2>&1 &
    REPLICA_PID=$!
    PIDS+=("$REPLICA_PID")
    for _ in $(seq 300); do
        (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return 0
        kill -0 "$REPLICA_PID" 2>/dev/null || { tail -5 "$TMP/replica.log" >&2; return 1; }
        sleep 0.1
    done
    return 1
}

stop_replica() { kill -TERM "$REPLICA_PID" 2>/dev/null; wait "$REPLICA_PID" 2>/dev/null; }
kill_replica() { kill -9 "$REPLICA_PID" 2>/dev/null; wait "$REPLICA_PID" 2>/dev/null; }

# expect_exit CODE CMD...: runs CMD, fails unless it exits with CODE. Output in $OUT.
expect_exit() {
    local want=$1; shift
    OUT=$("$@" 2>&1)
    local got=$?
    [ "$got" -eq "$want" ] || fail "expected exit $want, got $got from: $* -> $OUT"
}

# expect_in TEXT NEEDLE
expect_in() { case "$1" in *"$2"*) ;; *) fail "expected '$2' in: $1" ;; esac; }

# start_cluster ARGS...: `paycell start --data $D --port $PORT ARGS` (D and
# PORT are set here, and stop_cluster stops it all at exit), the logs shown
# if it fails, then the cluster's addresses from its cluster.env.
start_cluster() {
    PORT=$(free_port)
    D=$TMP/cluster
    trap stop_cluster EXIT
    "$PAYCELL" start --data "$D" --port "$PORT" "$@" >"$TMP/start.out" 2>&1 ||
        { cat "$TMP/start.out" "$D"/logs/*.log >&2; fail "paycell start $*"; }
    source "$D/cluster.env"
}

# stop_cluster: the EXIT trap of a script that ran `paycell start --data $D`.
# Stops the cluster, and fails the script on a sanitizer report in any of
# its processes' logs (they log to files, not to the script's output, so
# under the ASan binary this is where a memory error would show).
# sanitizer_reports: prints any sanitizer report in the logs of $D and
# $TMP and succeeds if there was one.
sanitizer_reports() {
    cat "$D"/logs/*.log "$TMP"/*.log 2>/dev/null |
        grep -q -E "AddressSanitizer|runtime error:|LeakSanitizer" || return 1
    grep -h -E -A25 "AddressSanitizer|runtime error:|LeakSanitizer" "$D"/logs/*.log \
        "$TMP"/*.log 2>/dev/null | head -60
    echo "FAIL: a sanitizer report in a cluster process's log"
}
stop_cluster() {
    local status=$?
    "$PAYCELL" stop --data "$D" >/dev/null 2>&1
    sanitizer_reports && status=1
    cleanup
    exit $status
}
