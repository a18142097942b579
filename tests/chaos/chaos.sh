#!/usr/bin/env bash
# chaos.sh — a Jepsen-style campaign on real paycell processes and real
# (virtual) networks: every replica, the gateway and the client run in a
# network namespace of their own ("host"), joined by veth links to a bridge
# in one more namespace. Faults chosen from a seed cut and degrade those
# links and kill, pause and restart the processes while clients record a
# history of transfers; when the faults end the cluster heals and
# chaos-client checks the ledger against the history (tests/chaos/client.c).
#
#   tests/chaos/chaos.sh [--seconds N] [--seed N] [--faults K1,K2,...]
#                        [--quiet-seconds N] [--workers N] [--settle-seconds N]
#                        [--planted-bug] [--keep]
#
# --seconds is the length of the load; faults run from 5 s in until
# --quiet-seconds (15) before its end, then everything heals. --planted-bug
# runs build/chaos/paycell-planted with its planted bug switched on (units
# acknowledge journal writes they never make): the checker must find
# anomalies. Exit status: 0 no anomaly, 1 anomalies (or a process died on
# its own), 2 the harness could not run, 77 skipped (not root, no netns).
# --settle-seconds (60) bounds the wait, after the load, for cross-unit
# transfers left in flight to end before the ledger is read.
#
# Every replica's data directory is a small tmpfs of its own (the disk-full
# fault fills one and frees it), mounted and unmounted by the harness.
#
# Addresses: 10.77.0.0/24 inside the namespaces only (nothing is added to
# the root namespace, so no other network is touched). Names pcc-TAG-*,
# TAG from the work directory /tmp/chaos-TAG. Everything is removed on exit,
# on failure and on SIGINT/SIGTERM. Logs, the fault log and the history are
# kept in build/chaos-logs/TAG/. docs/RELIABILITY.md describes it all.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
PAYCELL=${PAYCELL:-$ROOT/build/paycell}
CLIENT=$ROOT/build/chaos/chaos-client

RUN_SECONDS=600
SEED=$(( $(od -An -N4 -tu4 /dev/urandom) ))
QUIET=15
WARMUP=5
WORKERS=4
ACCOUNTS=200
UNITS=2
FAULTS=all
PLANTED=0
KEEP=0
RECOVERY_MAX_MS=30000
SETTLE_SECONDS=60
while [ $# -gt 0 ]; do
    case $1 in
    --seconds) RUN_SECONDS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --faults) FAULTS=$2; shift 2 ;;
    --quiet-seconds) QUIET=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --settle-seconds) SETTLE_SECONDS=$2; shift 2 ;;
    --planted-bug) PLANTED=1; shift ;;
    --keep) KEEP=1; shift ;;
    *) echo "usage: chaos.sh [--seconds N] [--seed N] [--faults LIST] [--quiet-seconds N]" \
        "[--workers N] [--settle-seconds N] [--planted-bug] [--keep]" >&2; exit 2 ;;
    esac
done
ALL_KINDS=(part-replica part-oneway part-primary part-unit part-unit-oneway loss slow kill pause
    gateway-restart crash-unit disk-full)
if [ "$FAULTS" = all ]; then KINDS=("${ALL_KINDS[@]}"); else IFS=, read -ra KINDS <<<"$FAULTS"; fi
for k in "${KINDS[@]}"; do
    case " ${ALL_KINDS[*]} " in *" $k "*) ;; *) echo "chaos: unknown fault kind $k" >&2; exit 2 ;; esac
done
[ "$RUN_SECONDS" -gt $((WARMUP + QUIET + 5)) ] ||
    { echo "chaos: --seconds must exceed $((WARMUP + QUIET + 5))" >&2; exit 2; }

# ---- can we run at all? ----
[ "$(id -u)" -eq 0 ] || { echo "skipped: chaos needs root for network namespaces"; exit 77; }
for tool in ip iptables tc; do
    command -v $tool >/dev/null || { echo "skipped: $tool missing (scripts/deps.sh installs it)"; exit 77; }
done
[ -x "$CLIENT" ] && [ -x "$PAYCELL" ] || { echo "chaos: build first: make all $CLIENT" >&2; exit 2; }
if [ $PLANTED -eq 1 ]; then
    PAYCELL=$ROOT/build/chaos/paycell-planted
    [ -x "$PAYCELL" ] || { echo "chaos: make build/chaos/paycell-planted first" >&2; exit 2; }
fi

WORK=$(mktemp -d /tmp/chaos-XXXXXX)
TAG=${WORK##*/chaos-}
NSP=pcc-$TAG
LOGDIR=$ROOT/build/chaos-logs/$TAG
mkdir -p "$WORK/data" "$WORK/logs" "$LOGDIR"
FAULT_LOG=$WORK/faults.log
T0=$(date +%s%3N)

declare -A IP PID
NAMESPACES=()
MOUNTS=() # each replica's data directory: a small tmpfs of its own
CLIENT_PID=
UNEXPECTED=0

say() { echo "chaos: $*"; }
elapsed() { local t; t=$(( $(date +%s%3N) - T0 )); printf '%d.%01d' $((t / 1000)) $((t % 1000 / 100)); }
flog() { local line; line="$(date +%s%3N) +$(elapsed)s $*"; echo "$line" >>"$FAULT_LOG"; echo "  $line"; }

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [ -n "$CLIENT_PID" ] && kill -9 "$CLIENT_PID" 2>/dev/null
    {
        for h in "${!PID[@]}"; do kill -9 "${PID[$h]}"; done
        # Anything else still running in our namespaces is ours too.
        for ns in "${NAMESPACES[@]}"; do
            for p in $(ip netns pids "$ns"); do kill -9 "$p"; done
        done
        wait
    } 2>/dev/null
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
    # The data lives on the tmpfs mounts: --keep copies it off them first.
    for m in ${MOUNTS[@]+"${MOUNTS[@]}"}; do
        rm -f "$m/filler"
        [ $KEEP -eq 1 ] && cp -a --sparse=always "$m" "$m.kept" 2>/dev/null
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
        [ $KEEP -eq 1 ] && rmdir "$m" 2>/dev/null && mv "$m.kept" "$m"
    done
    cp -r "$WORK/logs" "$LOGDIR/" 2>/dev/null
    cp "$FAULT_LOG" "$WORK"/*.txt "$LOGDIR/" 2>/dev/null
    [ -f "$WORK/history" ] && gzip -c "$WORK/history" >"$LOGDIR/history.gz"
    if [ $KEEP -eq 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the network: one bridge namespace, one namespace per host ----
HOSTS=(gw cl z0 z1 z2)
IP[gw]=10.77.0.10; IP[cl]=10.77.0.11
for r in 0 1 2; do IP[z$r]=10.77.0.2$r; done
for u in $(seq 0 $((UNITS - 1))); do
    for r in 0 1 2; do HOSTS+=("u${u}r$r"); IP[u${u}r$r]=10.77.0.$((30 + 10 * u + r)); done
done
PORT=7000
GW=${IP[gw]}:$PORT
GZ=${IP[z0]}:$PORT,${IP[z1]}:$PORT,${IP[z2]}:$PORT
declare -A UNIT_ADDR
for u in $(seq 0 $((UNITS - 1))); do
    UNIT_ADDR[$u]=${IP[u${u}r0]}:$PORT,${IP[u${u}r1]}:$PORT,${IP[u${u}r2]}:$PORT
done

netns_up() {
    local br=$NSP-br h ns
    ip netns add "$br" || return 1
    NAMESPACES+=("$br")
    ip -n "$br" link set lo up
    ip -n "$br" link add br0 type bridge || return 1
    ip -n "$br" link set br0 up
    for h in "${HOSTS[@]}"; do
        ns=$NSP-$h
        ip netns add "$ns" || return 1
        NAMESPACES+=("$ns")
        ip link add eth0 netns "$ns" type veth peer name "v-$h" netns "$br" || return 1
        ip -n "$br" link set "v-$h" master br0 up
        ip -n "$ns" addr add "${IP[$h]}/24" dev eth0
        ip -n "$ns" link set lo up
        ip -n "$ns" link set eth0 up
        # Faults go into the CHAOS chain; healing flushes it. Loopback is
        # never touched.
        printf '*filter\n:CHAOS - [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -j CHAOS\n%s\n' \
            '-A OUTPUT -o lo -j ACCEPT
-A OUTPUT -j CHAOS
COMMIT' | ip netns exec "$ns" iptables-restore -w || return 1
    done
}

declare -A DIRTY # hosts with a fault rule or qdisc in place
on() { local h=$1; shift; ip netns exec "$NSP-$h" "$@"; }
ipt() { local h=$1; shift; DIRTY[$h]=1; on "$h" iptables -w -A CHAOS "$@"; }

# ---- processes ----
UNSAFE_ENV=()
[ $PLANTED -eq 1 ] && UNSAFE_ENV=(PAYCELL_TEST_UNSAFE=1 PAYCELL_TEST_PLANTED_BUG=ack-before-journal-write)

# Each process is started by `ip netns exec` in its host's namespace, from
# this shell directly (not from a function in a subshell), so $! is the
# paycell process itself: ip and env exec it in place.
start_proc() {
    local h=$1 log=$WORK/logs/$1.log ns=$NSP-$1
    echo "--- $(date +%s%3N) start" >>"$log"
    case $h in
    gw) ip netns exec "$ns" "$PAYCELL" gateway --gzone "$GZ" --listen-binary "$GW" \
            --listen-http "${IP[gw]}:$((PORT + 1))" --xts-timeout 3 >>"$log" 2>&1 & ;;
    z?) ip netns exec "$ns" "$PAYCELL" replica --data "$WORK/data/$h" --addresses "$GZ" \
            >>"$log" 2>&1 & ;;
    u*) ip netns exec "$ns" env ${UNSAFE_ENV[@]+"${UNSAFE_ENV[@]}"} "$PAYCELL" replica \
            --data "$WORK/data/$h" --addresses "${UNIT_ADDR[${h:1:1}]}" --gzone "$GZ" \
            >>"$log" 2>&1 & ;;
    esac
    PID[$h]=$!
}

# Alive and not a zombie (our children stay zombies until reaped); no fork.
alive() {
    local pid_ comm state rest
    read -r pid_ comm state rest <"/proc/$1/stat" 2>/dev/null && [ "$state" != Z ]
}

kill_proc() { # kill -9 and reap
    {
        kill -CONT "${PID[$1]}"
        kill -9 "${PID[$1]}"
        wait "${PID[$1]}"
    } 2>/dev/null
}

# Restarts whatever died without being told to: that is a finding (an
# assertion, a fatal error), reported with its log.
check_procs() {
    local h
    for h in "${!PID[@]}"; do
        alive "${PID[$h]}" && continue
        wait "${PID[$h]}" 2>/dev/null
        UNEXPECTED=$((UNEXPECTED + 1))
        flog "UNEXPECTED: $h (pid ${PID[$h]}) exited on its own; last log lines:"
        tail -5 "$WORK/logs/$h.log" | sed 's/^/    /' | tee -a "$FAULT_LOG"
        start_proc "$h"
    done
}

# Every replica's data directory is a tmpfs of its own (the disk-full fault
# fills one), sized for what the replica preallocates — its journal ring
# (32 or 16 slots of 2 MiB) and the first 64 MiB step of its transfer store
# (reserved at its first commit) — plus about 30 MiB for checkpoints and the
# store's growth, which is what a fill takes away. Mounted from the root
# namespace before anything starts, so every host sees them; unmounted by
# cleanup on every exit path.
DISK_MB_UNIT=160
DISK_MB_GZONE=128
mount_data() { # HOST
    local d=$WORK/data/$1 mb=$DISK_MB_UNIT
    [ "${1:0:1}" = z ] && mb=$DISK_MB_GZONE
    mkdir -p "$d" || return 1
    mount -t tmpfs -o "size=${mb}m,mode=0700" "$NSP-$1" "$d" ||
        { say "cannot mount a ${mb} MiB tmpfs on $d"; return 1; }
    MOUNTS+=("$d")
}

format_all() {
    local r u
    for r in 0 1 2; do
        mount_data "z$r" || return 1
        for u in $(seq 0 $((UNITS - 1))); do mount_data "u${u}r$r" || return 1; done
        "$PAYCELL" format --data "$WORK/data/z$r" --unit 63 --replica $r --replica-count 3 \
            --journal-slots 16 --accounts-max 1024 --transfers-max 1024 --pending-max 1024 \
            >>"$WORK/logs/format.log" 2>&1 || return 1
        for u in $(seq 0 $((UNITS - 1))); do
            "$PAYCELL" format --data "$WORK/data/u${u}r$r" --unit "$u" --replica $r \
                --replica-count 3 --journal-slots 32 --accounts-max 4096 \
                --transfers-max 1000000 --pending-max 16384 >>"$WORK/logs/format.log" 2>&1 ||
                return 1
        done
    done
}

cluster_up() {
    local h i units=""
    for h in "${HOSTS[@]}"; do [ "$h" = gw ] || [ "$h" = cl ] || start_proc "$h"; done
    for u in $(seq 0 $((UNITS - 1))); do units+="${units:+;}${UNIT_ADDR[$u]}"; done
    for i in $(seq 150); do
        on cl "$PAYCELL" cluster init --gzone "$GZ" --units "$units" --xts-timeout 3 \
            >>"$WORK/logs/init.log" 2>&1 && break
        [ "$i" -eq 150 ] && { say "cluster init failed"; tail -5 "$WORK/logs/init.log"; return 1; }
        sleep 0.2
    done
    start_proc gw
    for i in $(seq 100); do
        on cl "$PAYCELL" lookup account 1 --addresses "$GW" >/dev/null 2>&1
        [ $? -ne 2 ] && return 0
        sleep 0.1
    done
    say "the gateway did not come up"; tail -5 "$WORK/logs/gw.log"; return 1
}

# The unit's primary, from its replicas' logs: the replica whose last view
# line says "normal, primary" in the highest view. Empty when none does.
primary_of() { # UNIT (0.. or z)
    local prefix=u${1}r r best="" best_view=-1 line view
    [ "$1" = z ] && prefix=z
    for r in 0 1 2; do
        line=$(grep -E 'view [0-9]+: ' "$WORK/logs/$prefix$r.log" 2>/dev/null | tail -1)
        case $line in *"normal, primary"*) ;; *) continue ;; esac
        view=$(echo "$line" | sed -E 's/.*view ([0-9]+): .*/\1/')
        [ "$view" -gt "$best_view" ] && { best_view=$view; best=$prefix$r; }
    done
    echo "$best"
}

# ---- faults ----
# Every random choice comes from bash's RANDOM seeded with the seed, drawn in
# this shell (never in a $(...) subshell, which would not advance it), so a
# seed replays the same kinds, targets and durations; which replica is the
# primary at a given moment depends on the run.
declare -A COUNT
R=0; U=0; X=""; HOLD=0
rnd() { R=$((RANDOM % $1)); }
pick_unit() { # sets U; units twice as likely as the GZone
    rnd $((2 * UNITS + 1))
    if [ $R -eq $((2 * UNITS)) ]; then U=z; else U=$((R % UNITS)); fi
}
replicas_of() { [ "$1" = z ] && echo z0 z1 z2 || echo "u${1}r0 u${1}r1 u${1}r2"; }
pick_replica() { # sets X: a replica of unit $1
    rnd 3
    if [ "$1" = z ]; then X=z$R; else X=u${1}r$R; fi
}
pick_host() { # sets X: the gateway one time in four, else a replica
    rnd 4
    if [ $R -eq 0 ]; then X=gw; else pick_unit; pick_replica "$U"; fi
}
hold_for() { # sets HOLD: 2..5 s, never past the fault window
    rnd 4; HOLD=$((2 + R))
    local left=$(( (FAULT_END - $(date +%s%3N)) / 1000 ))
    [ $left -lt 1 ] && left=1
    [ $HOLD -gt $left ] && HOLD=$left
}

unfault() { # one host's rules and qdisc gone
    on "$1" sh -c 'iptables -w -F CHAOS; tc qdisc del dev eth0 root 2>/dev/null'
    unset "DIRTY[$1]"
}

heal_net() {
    local h
    for h in "${!DIRTY[@]}"; do unfault "$h"; done
}

fault_part-replica() {
    local p
    pick_unit; pick_replica "$U"; hold_for
    flog "part-replica: $X cut from its peers (both ways) for ${HOLD}s"
    for p in $(replicas_of "$U"); do
        [ "$p" = "$X" ] && continue
        ipt "$X" -s "${IP[$p]}" -j DROP; ipt "$X" -d "${IP[$p]}" -j DROP
    done
    sleep "$HOLD"; unfault "$X"; flog "healed"
}

fault_part-oneway() {
    local p dir
    pick_unit; pick_replica "$U"; hold_for; rnd 2
    if [ $R -eq 0 ]; then dir=-s; flog "part-oneway: $X hears nothing from its peers for ${HOLD}s"
    else dir=-d; flog "part-oneway: $X's peers hear nothing from it for ${HOLD}s"; fi
    for p in $(replicas_of "$U"); do [ "$p" = "$X" ] || ipt "$X" $dir "${IP[$p]}" -j DROP; done
    sleep "$HOLD"; unfault "$X"; flog "healed"
}

fault_part-primary() {
    local c x
    rnd "$UNITS"; U=$R; pick_replica "$U"; hold_for
    x=$(primary_of "$U"); [ -n "$x" ] && X=$x
    flog "part-primary: unit $U's primary $X cut from its clients (gateway, client host) for ${HOLD}s"
    for c in gw cl; do ipt "$X" -s "${IP[$c]}" -j DROP; ipt "$X" -d "${IP[$c]}" -j DROP; done
    sleep "$HOLD"; unfault "$X"; flog "healed"
}

fault_part-unit() {
    local p
    rnd "$UNITS"; U=$R; hold_for
    flog "part-unit: unit $U cut from the gateway (both ways) for ${HOLD}s"
    for p in $(replicas_of "$U"); do ipt gw -s "${IP[$p]}" -j DROP; ipt gw -d "${IP[$p]}" -j DROP; done
    sleep "$HOLD"; unfault gw; flog "healed"
}

fault_part-unit-oneway() {
    local p dir
    rnd "$UNITS"; U=$R; hold_for; rnd 2
    if [ $R -eq 0 ]; then dir=-d; flog "part-unit-oneway: the gateway's packets to unit $U are lost for ${HOLD}s"
    else dir=-s; flog "part-unit-oneway: unit $U's packets to the gateway are lost for ${HOLD}s"; fi
    for p in $(replicas_of "$U"); do ipt gw $dir "${IP[$p]}" -j DROP; done
    sleep "$HOLD"; unfault gw; flog "healed"
}

fault_loss() {
    local pct
    pick_host; hold_for; rnd 3; pct=$((10 + 10 * R))
    flog "loss: ${pct}% of $X's packets dropped (both ways) for ${HOLD}s"
    ipt "$X" -m statistic --mode random --probability "0.$pct" -j DROP
    sleep "$HOLD"; unfault "$X"; flog "healed"
}

# This kernel has no netem (CONFIG_NET_SCH_NETEM is off): delay comes from a
# token bucket that holds a host's outgoing packets up to 400 ms.
fault_slow() {
    local rate
    pick_host; hold_for; rnd 3; rate=$((128 << R))
    flog "slow: $X's link capped at ${rate}kbit (queueing delay up to 400 ms) for ${HOLD}s"
    DIRTY[$X]=1
    on "$X" tc qdisc add dev eth0 root tbf rate ${rate}kbit burst 4kb latency 400ms
    sleep "$HOLD"; unfault "$X"; flog "healed"
}

fault_kill() {
    local x down
    pick_unit; pick_replica "$U"; rnd 4; down=$((1 + R)); rnd 2
    if [ $R -eq 0 ]; then x=$(primary_of "$U"); [ -n "$x" ] && X=$x; fi
    flog "kill: kill -9 $X (pid ${PID[$X]}), restart after ${down}s"
    kill_proc "$X"; sleep "$down"; start_proc "$X"; flog "restarted $X (pid ${PID[$X]})"
}

fault_pause() {
    local x ms
    pick_unit; pick_replica "$U"; rnd 6; ms=$((1500 + 500 * R)); rnd 3
    if [ $R -ne 0 ]; then x=$(primary_of "$U"); [ -n "$x" ] && X=$x; fi
    flog "pause: SIGSTOP $X for ${ms} ms (view-change timeout 500 ms)"
    kill -STOP "${PID[$X]}"; sleep "$((ms / 1000)).$((ms % 1000 / 100))"; kill -CONT "${PID[$X]}"
    flog "SIGCONT $X"
}

fault_gateway-restart() {
    local down
    rnd 16; down=$((5 + R))
    flog "gateway-restart: kill -9 the gateway mid-traffic (cross-unit transfers in flight), restart after $((down / 10)).$((down % 10))s"
    kill_proc gw; sleep "$((down / 10)).$((down % 10))"; start_proc gw; flog "restarted gw (pid ${PID[gw]})"
}

# All three at once, as a power cut of the unit's machines would: one kill
# call, so none of them runs on after another died.
fault_crash-unit() {
    local x down pids=()
    rnd "$UNITS"; U=$R; rnd 3; down=$((1 + R))
    flog "crash-unit: kill -9 all three replicas of unit $U at once, restart after ${down}s"
    for x in $(replicas_of "$U"); do pids+=("${PID[$x]}"); done
    { kill -CONT "${pids[@]}"; kill -9 "${pids[@]}"; wait "${pids[@]}"; } 2>/dev/null
    sleep "$down"
    for x in $(replicas_of "$U"); do start_proc "$x"; done
    flog "restarted unit $U"
}

# A full disk: one unit replica's tmpfs filled to its last page by a filler
# file (the GZone takes no writes during the load, so it is never chosen),
# held under load, then the filler deleted. Its primary half the time: a
# full primary refuses writes with PC_ENOSPC, which the gateway counts
# (paycell_gateway_unit_nospace_total, read before and at the end of the
# hold); a full backup just falls behind while the other two commit.
declare -A DISK_TARGETS
nospace_metric() { # UNIT: the gateway's counter, or "?" when it does not answer
    local v
    v=$(on cl curl -s -m 2 "http://${IP[gw]}:$((PORT + 1))/metrics" 2>/dev/null |
        grep "^paycell_gateway_unit_nospace_total{unit=\"$1\"}" | awk '{print $2}')
    echo "${v:-?}"
}

fault_disk-full() {
    local x m0 m1 filler=
    rnd "$UNITS"; U=$R; pick_replica "$U"; hold_for; HOLD=$((HOLD + 1)); rnd 2
    if [ $R -eq 0 ]; then x=$(primary_of "$U"); [ -n "$x" ] && X=$x; fi
    filler=$WORK/data/$X/filler
    m0=$(nospace_metric "$U")
    # dd stops at ENOSPC: that is the point.
    dd if=/dev/zero of="$filler" bs=1M status=none 2>/dev/null
    DISK_TARGETS[$X]=1
    flog "disk-full: $X's filesystem filled ($(( $(stat -c %s "$filler") >> 20 )) MiB filler," \
        "$(df -B1 --output=avail "$WORK/data/$X" | tail -1 | tr -d ' ') bytes left) for ${HOLD}s"
    # Kept full: space the replica frees meanwhile (an abandoned state sync
    # cuts its transfer store back, and its preallocation with it) is taken
    # again within half a second.
    local t_end=$(( $(date +%s%3N) + HOLD * 1000 ))
    while [ "$(date +%s%3N)" -lt "$t_end" ]; do
        sleep 0.5
        dd if=/dev/zero of="$filler" bs=1M oflag=append conv=notrunc status=none 2>/dev/null
    done
    m1=$(nospace_metric "$U")
    rm -f "$filler"
    flog "freed $X's filesystem (gateway: unit $U PC_ENOSPC answers $m0 -> $m1)"
}

nemesis() {
    local i t kind
    while [ "$(date +%s%3N)" -lt "$FAULT_END" ]; do
        # A shuffled cycle of the kinds: every kind once per cycle.
        local order=("${KINDS[@]}")
        for ((i = ${#order[@]} - 1; i > 0; i--)); do
            rnd $((i + 1)); t=${order[$i]}; order[$i]=${order[$R]}; order[$R]=$t
        done
        for kind in "${order[@]}"; do
            [ "$(date +%s%3N)" -lt "$FAULT_END" ] || break
            check_procs
            "fault_$kind"
            COUNT[$kind]=$(( ${COUNT[$kind]:-0} + 1 ))
            rnd 5; sleep "0.$((5 + R))"
        done
    done
}

heal_all() {
    local h
    heal_net
    rm -f "$WORK"/data/*/filler
    for h in "${!PID[@]}"; do kill -CONT "${PID[$h]}" 2>/dev/null; done
    check_procs
}

# ---- the campaign ----
RANDOM=$SEED
say "seed $SEED, ${RUN_SECONDS}s of load (faults from ${WARMUP}s to $((RUN_SECONDS - QUIET))s), \
faults: ${KINDS[*]}$([ $PLANTED -eq 1 ] && echo ', PLANTED BUG ON')"
say "hosts in namespaces $NSP-*, work dir $WORK, logs $LOGDIR"
echo "seed=$SEED seconds=$RUN_SECONDS planted=$PLANTED faults=${KINDS[*]}" >"$FAULT_LOG"
netns_up || { say "could not create network namespaces"; echo "skipped: network namespaces unavailable"; exit 77; }
format_all || { say "format failed"; tail -5 "$WORK/logs/format.log"; exit 2; }
cluster_up || exit 2
on cl "$CLIENT" setup "$GW" "$ACCOUNTS" >/dev/null || { say "account setup failed"; exit 2; }
say "cluster up in $(elapsed)s: gateway $GW, gzone $GZ"
for u in $(seq 0 $((UNITS - 1))); do say "  unit $u: ${UNIT_ADDR[$u]}"; done

RUN_T0=$(date +%s%3N)
FAULT_END=$((RUN_T0 + (RUN_SECONDS - QUIET) * 1000))
# The load runs until told to stop (SIGTERM), at most an hour past the plan.
ip netns exec "$NSP-cl" "$CLIENT" run "$GW" "$ACCOUNTS" "$UNITS" $((RUN_SECONDS + 3600)) \
    "$WORKERS" "$SEED" "$WORK/history" >"$WORK/run.txt" 2>&1 &
CLIENT_PID=$!
sleep "$WARMUP"
nemesis
heal_all
HEAL_MS=$(date +%s%3N)
flog "all faults healed; the load goes on for ${QUIET}s"
sleep "$QUIET"
kill -TERM "$CLIENT_PID"
wait "$CLIENT_PID"
CLIENT_PID=
check_procs

# Cross-unit transfers left in flight by killed gateways end by the payer
# units' recovery (XTS timeout 3 s); wait for that before reading balances.
audit() { on cl "$PAYCELL" audit balances --gzone "$GZ" --json 2>&1; }
for i in $(seq $((SETTLE_SECONDS * 2))); do
    AUDIT=$(audit)
    case "$AUDIT" in *'"in_flight":[]'*) break ;; esac
    sleep 0.5
done
on cl "$CLIENT" check "$GW" "$ACCOUNTS" "$UNITS" "$WORK/history" "$HEAL_MS" "$RECOVERY_MAX_MS" \
    >"$WORK/check.txt" 2>&1
CHECK=$?
AUDIT=$(audit)
AUDIT_OK=0
case "$AUDIT" in *'"balanced":true'*'"in_flight":[]'* | *'"in_flight":[]'*'"balanced":true'*) AUDIT_OK=1 ;; esac

# The replicas a disk-full fault filled: each must have reported it ("disk
# full" in its log) and come back ("disk space returned" after its last
# report), and caught up with its unit: its newest checkpoint (or state sync)
# within half a journal (16 ops) of the unit's newest.
last_checkpoint() {
    grep -oE '(checkpoint at op|now at checkpoint op) [0-9]+' "$WORK/logs/$1.log" | tail -1 |
        grep -oE '[0-9]+$'
}
DISK_BAD=0
DISK_LINES=()
for x in "${!DISK_TARGETS[@]}"; do
    best=0
    for p in $(replicas_of "${x:1:1}"); do
        ck=$(last_checkpoint "$p"); [ "${ck:-0}" -gt "$best" ] && best=${ck:-0}
    done
    ck=$(last_checkpoint "$x"); ck=${ck:-0}
    log=$WORK/logs/$x.log
    reports=$(grep -c 'disk full:' "$log"); returns=$(grep -c 'disk space returned' "$log")
    state="caught up"
    case "$(grep -E 'disk full:|disk space returned' "$log" | tail -1)" in
    *'disk full:'*) state="STILL FULL" ;;
    esac
    [ "$ck" -lt $((best - 16)) ] && state="BEHIND"
    [ "$state" = "caught up" ] || DISK_BAD=$((DISK_BAD + 1))
    DISK_LINES+=("$x: reported full $reports times, space returned $returns times, checkpoint op $ck (unit's newest $best): $state")
done

# ---- summary ----
kv() { grep -oE "(^| )$1=[^ ]*" "$WORK/check.txt" | head -1 | cut -d= -f2; }
ANOMALIES=$(kv anomalies); ANOMALIES=${ANOMALIES:-unknown}
faults_line=""; total=0
for k in "${KINDS[@]}"; do faults_line+=" $k=${COUNT[$k]:-0}"; total=$((total + ${COUNT[$k]:-0})); done
{
    echo "chaos summary (seed $SEED, ${RUN_SECONDS}s, $(nproc) cores, $(uname -r))"
    echo "  faults injected: $total:$faults_line"
    echo "  operations: $(grep -E '^transfers=' "$WORK/check.txt")"
    echo "  availability: longest_unavailable_ms=$(kv longest_unavailable_ms) recovery_after_heal_ms=$(kv recovery_after_heal_ms)"
    echo "  audit balances: $([ $AUDIT_OK -eq 1 ] && echo "balanced, nothing in flight" || echo "NOT OK: $AUDIT")"
    echo "  unexpected process exits: $UNEXPECTED"
    for l in ${DISK_LINES[@]+"${DISK_LINES[@]}"}; do echo "  disk-full $l"; done
    grep '^anomaly' "$WORK/check.txt" | sed 's/^/  /'
    echo "  anomalies: $ANOMALIES"
} | tee "$WORK/summary.txt"

if [ "$CHECK" -eq 0 ] && [ $AUDIT_OK -eq 1 ] && [ $UNEXPECTED -eq 0 ] && [ $DISK_BAD -eq 0 ]; then
    say "PASS: no anomaly (total $(elapsed)s)"
    exit 0
fi
[ "$CHECK" -eq 2 ] && { say "the checker could not run: $(tail -3 "$WORK/check.txt")"; exit 2; }
say "FAIL: anomalies found (total $(elapsed)s); logs in $LOGDIR"
exit 1
