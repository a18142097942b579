# corruption.sh — damaged data files are detected and named, never silently
# used: a flipped byte in an acknowledged WAL entry, in a stored transfer,
# and in both checkpoints each make the replica refuse to start with a clear
# "corrupt" message. A torn, unacknowledged tail is cut and the replica
# starts with every acknowledged transfer.
source "$(dirname "$0")/lib.sh"

flip() { # flip FILE OFFSET: inverts one byte in place
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "$(printf '\\%03o' $(( 255 - b )))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# make_data DIR: a data directory with acknowledged transfers in its WAL (no
# checkpoint after them: the replica is killed, not stopped).
make_data() {
    local port
    port=$(free_port)
    "$PAYCELL" format --data "$1" --accounts-max 1000 --transfers-max 100000 --checkpoint-mib 1024 >/dev/null 2>&1 || fail format
    start_replica "$1" "$port" || fail "start"
    "$PAYCELL" bench --addresses "127.0.0.1:$port" --accounts 100 --transfers 20000 --batch 1000 --quiet >/dev/null || fail "load"
    kill_replica
}

expect_refusal() { # DIR: the replica must exit non-zero and name the corruption
    local port out
    port=$(free_port)
    out=$(timeout 10 "$PAYCELL" replica --data "$1" --listen "127.0.0.1:$port" 2>&1)
    [ $? -ne 0 ] || fail "replica started on corrupt data"
    expect_in "$out" "corrupt"
    echo "refused as expected: $(echo "$out" | grep -m1 corrupt)"
}

step "flipped byte inside an acknowledged WAL entry"
make_data "$TMP/w"
wal=$(ls "$TMP/w"/wal-* | head -1)
flip "$wal" $(( 4096 + 128 + 200 )) # inside entry 2 (entries are 4 KiB aligned)
expect_refusal "$TMP/w"

step "flipped byte in a stored transfer (after a clean stop checkpointed it)"
make_data "$TMP/t"
port=$(free_port); start_replica "$TMP/t" "$port" || fail start; stop_replica
flip "$TMP/t/transfers" $(( 160 * 1234 + 17 ))
expect_refusal "$TMP/t"

step "both checkpoints damaged"
make_data "$TMP/c"
port=$(free_port); start_replica "$TMP/c" "$port" || fail start; stop_replica
port=$(free_port); start_replica "$TMP/c" "$port" || fail start; stop_replica
for f in "$TMP/c"/checkpoint-*; do flip "$f" 40; done
expect_refusal "$TMP/c"

step "one checkpoint damaged: the other one is used"
make_data "$TMP/o"
port=$(free_port); start_replica "$TMP/o" "$port" || fail start; stop_replica
start_replica "$TMP/o" "$port" || fail start
"$PAYCELL" transfer --addresses "127.0.0.1:$port" --id 7 --debit 1 --credit 2 --amount 5 --ledger 1 --code 1 >/dev/null || fail transfer
stop_replica
newest=$(ls -t "$TMP/o"/checkpoint-* | head -1)
flip "$newest" 40
start_replica "$TMP/o" "$port" || fail "did not fall back to the older checkpoint"
expect_exit 0 "$PAYCELL" lookup transfer 7 --addresses "127.0.0.1:$port"
stop_replica

step "garbage after the last entry is a torn tail: cut, and data intact"
make_data "$TMP/g"
wal=$(ls "$TMP/g"/wal-* | tail -1)
# Find the end of the log: the first all-zero 128-byte block after data.
end=$(head -c 16M "$wal" | od -An -v -tx1 -w128 | grep -n -m1 -E '^( 00){128}$' | cut -d: -f1)
[ -n "$end" ] || fail "no zero tail found"
off=$(( (end - 1) * 128 ))
head -c 300 /dev/urandom | dd of="$wal" bs=1 seek="$off" conv=notrunc status=none
port=$(free_port); start_replica "$TMP/g" "$port" || fail "refused a torn tail"
expect_exit 0 "$PAYCELL" lookup account 1 --addresses "127.0.0.1:$port" --json
stop_replica
echo "corruption: all checks passed"
