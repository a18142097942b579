# corruption.sh — damaged data files are detected and named, never silently
# used: a flipped byte in an acknowledged WAL entry, in a stored transfer,
# and in both checkpoints each make the replica refuse to start with a clear
# "corrupt" message. A torn, unacknowledged tail is cut and the replica
# starts with every acknowledged transfer.
# Last, a unit of three replicas: the body of the same recent journal entry
# rots on two of them while all three are down. Their header-ring copies say
# what the slot held, so both restart trusted (they vote at once), the unit
# elects a primary, repairs the two bodies from the third replica and keeps
# serving; every acknowledged transfer is present and the three states end
# equal. (Without the header ring both would start untrusted and the view
# change would stall: PAYCELL=<an older build> makes this case fail.)
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

step "a unit: the same recent entry's body rots on two replicas at once"
SLOTS=32
SLOT_SIZE=2101248 # PC_JOURNAL_SLOT_SIZE: 128 + 2 MiB + 3968
ports=($(free_port) $(free_port) $(free_port))
ADDR="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
UPIDS=()
for i in 0 1 2; do
    "$PAYCELL" format --data "$TMP/u$i" --replica-count 3 --replica $i --journal-slots $SLOTS \
        --accounts-max 1000 --transfers-max 200000 >/dev/null 2>&1 || fail "format u$i"
done
unit_start() { # unit_start I...: starts replicas in the background, logging to $TMP/uI.log
    for i in "$@"; do
        "$PAYCELL" replica --data "$TMP/u$i" --addresses "$ADDR" >>"$TMP/u$i.log" 2>&1 &
        UPIDS[$i]=$!
        PIDS+=("$!")
    done
}
unit_kill() { for i in 0 1 2; do kill -9 "${UPIDS[$i]}" 2>/dev/null; wait "${UPIDS[$i]}" 2>/dev/null; done; }
unit_transfer() { # unit_transfer ID: acknowledged within 20 s (a view change may be under way)
    local deadline=$((SECONDS + 20))
    until "$PAYCELL" transfer --addresses "$ADDR" --id "$1" --debit 1 --credit 2 --amount 3 \
        --ledger 1 --code 1 >"$TMP/t.out" 2>&1; do
        [ $SECONDS -lt $deadline ] || fail "transfer $1 not acknowledged: $(cat "$TMP/t.out")"
        sleep 0.2
    done
    echo "$1" >>"$TMP/acked"
}
field() { # field FILE OFFSET TYPE: one little-endian number from a file
    od -An -t"$3" -j "$2" -N"${3:1}" "$1" | tr -d ' '
}
unit_start 0 1 2
"$PAYCELL" bench --addresses "$ADDR" --accounts 100 --transfers 20000 --batch 1000 --quiet \
    >"$TMP/ubench.out" 2>&1 || { cat "$TMP/ubench.out"; fail "unit load"; }
expect_in "$(cat "$TMP/ubench.out")" "equal"
: >"$TMP/acked"
# A few single transfers after the load, so the newest ops lie above the
# checkpoints (taken every SLOTS/4 ops); retried until that is so.
target=0
for round in 1 2 3 4 5 6; do
    for k in 1 2 3; do unit_transfer $((7000000000 + round * 10 + k)); done
    sleep 0.5 # the backups learn the last commit
    unit_kill
    ck=0
    for i in 0 1 2; do
        op=$("$PAYCELL" inspect --data "$TMP/u$i" --json | sed 's/.*"op":\([0-9]*\).*/\1/')
        [ "$op" -gt "$ck" ] && ck=$op
    done
    # The highest op whose slot holds it on all three journals.
    best=0
    for slot in $(seq 0 $((SLOTS - 1))); do
        at=$((slot * SLOT_SIZE))
        op=$(field "$TMP/u0/journal" $((at + 72)) u8)
        [ "$op" -gt "$best" ] && [ $((op % SLOTS)) -eq "$slot" ] &&
            [ "$(field "$TMP/u1/journal" $((at + 72)) u8)" = "$op" ] &&
            [ "$(field "$TMP/u2/journal" $((at + 72)) u8)" = "$op" ] && best=$op
    done
    if [ "$best" -gt "$ck" ]; then target=$best; break; fi
    unit_start 0 1 2
done
[ "$target" -gt 0 ] || fail "no op above every checkpoint after 6 rounds"
slot=$((target % SLOTS))
size=$(field "$TMP/u0/journal" $((slot * SLOT_SIZE + 100)) u4)
[ "$size" -gt 0 ] || fail "op $target has an empty body"
victims=$(shuf -i 0-2 -n 2 | sort | tr '\n' ' ')
for i in $victims; do flip "$TMP/u$i/journal" $((slot * SLOT_SIZE + 128 + size / 2)); done
echo "flipped a byte in the body of op $target (slot $slot, $size bytes) on replicas $victims"
unit_start 0 1 2
for k in 1 2 3 4 5; do unit_transfer $((7100000000 + k)); done
for i in $victims; do
    log=$(cat "$TMP/u$i.log")
    expect_in "$log" "journal slot $slot (op $target): bad body"
    expect_in "$log" "journal slot $slot: its header-ring copy holds op $target: header kept"
    expect_in "$log" "0 faulty): trusted"
done
echo "replicas $victims restarted trusted, each holding op $target's header from its header ring"
expect_exit 0 "$PAYCELL" bench --addresses "$ADDR" --accounts 100 --transfers 2000 --quiet
expect_in "$OUT" "equal"
while read -r id; do
    expect_exit 0 "$PAYCELL" lookup transfer "$id" --addresses "$ADDR"
done <"$TMP/acked"
sleep 2 # idle: every replica learns the final commit
for i in 0 1 2; do kill -TERM "${UPIDS[$i]}"; wait "${UPIDS[$i]}" 2>/dev/null; done
# Under the ASan binary a memory error shows only in a replica's log.
! grep -E -A20 "AddressSanitizer|runtime error:|LeakSanitizer" "$TMP"/u?.log ||
    fail "a sanitizer report in a unit replica's log"
sums=""
for i in 0 1 2; do
    out=$("$PAYCELL" inspect --data "$TMP/u$i" --ids "$TMP/acked" --json) ||
        fail "replica $i lacks acknowledged transfers: $out"
    sums="$sums $(echo "$out" | sed 's/.*"op":\([0-9]*\),"state_checksum":"\([^"]*\)".*/\1:\2/')"
done
[ "$(echo $sums | tr ' ' '\n' | sort -u | wc -l)" -eq 1 ] || fail "states differ:$sums"
echo "all $(wc -l <"$TMP/acked") acknowledged transfers on all three; equal states:$sums"
echo "corruption: all checks passed"
