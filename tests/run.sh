#!/usr/bin/env bash
# run.sh — runs every test `make test` builds and prints one closing line
# "N passed, N failed". Each unit-test case, each integration script and the
# fuzz smoke run count as one test. Output of each part goes to
# build/test-logs/ and is shown when that part fails.
set -u
cd "$(dirname "$0")/.."
logs=build/test-logs
rm -rf "$logs"; mkdir -p "$logs"
passed=0; failed=0; skipped=0; failures=()

# Unit tests: each binary prints "ok NAME"/"FAIL NAME" and "N passed, N failed".
run_unit() {
    local bin=$1 name log
    name=$(echo "$bin" | tr / _)
    log=$logs/$name.log
    "$bin" >"$log" 2>&1
    local p f
    read -r p f < <(awk '/^[0-9]+ passed, [0-9]+ failed$/ {print $1, $3}' "$log" | tail -1)
    if [ -z "${p:-}" ]; then p=0; f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$f" != 0 ]; then
        failures+=("$bin"); echo "FAIL $bin"; grep -v '^ok ' "$log" | tail -30
    else
        echo "ok   $bin ($p tests)"
    fi
}

for bin in build/tests/test_* build/asan/tests/test_*; do
    [ -x "$bin" ] && run_unit "$bin"
done

# Fuzz smoke: a bounded libFuzzer run of every decoder's target
# (build/fuzz/fuzz_*: protocol, json, http; ~25 s together at 200k runs each).
for fuzzer in build/fuzz/fuzz_*; do
    [ -x "$fuzzer" ] && [ -f "$fuzzer" ] || continue
    name=$(basename "$fuzzer")
    if "$fuzzer" -runs="${FUZZ_RUNS:-200000}" -seed=1 >"$logs/$name.log" 2>&1; then
        passed=$((passed + 1)); echo "ok   $name (${FUZZ_RUNS:-200000} runs)"
    else
        failed=$((failed + 1)); failures+=("$name"); echo "FAIL $name"; tail -30 "$logs/$name.log"
    fi
done

# Integration: real processes on loopback. Each script is one test.
for t in tests/integration/*.sh; do
    [ -f "$t" ] || continue
    [ "$(basename "$t")" = lib.sh ] && continue
    name=$(basename "$t" .sh)
    start=$(date +%s)
    timeout 600 bash "$t" >"$logs/it_$name.log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1)); echo "ok   $t ($(( $(date +%s) - start )) s)"
    elif [ $rc -eq 77 ]; then
        skipped=$((skipped + 1)); echo "skip $t: $(tail -1 "$logs/it_$name.log")"
    else
        failed=$((failed + 1)); failures+=("$t"); echo "FAIL $t"; tail -40 "$logs/it_$name.log"
    fi
done

# The same client/server paths once more with the ASan+UBSan binary: any
# memory error or undefined behaviour in the replica or the CLI aborts it.
if [ -x build/asan/paycell ]; then
    for t in tests/integration/basic.sh tests/integration/badinput.sh tests/integration/cells.sh \
        tests/integration/xts_faults.sh; do
        name=asan_$(basename "$t" .sh)
        if PAYCELL=$PWD/build/asan/paycell timeout 600 bash "$t" >"$logs/it_$name.log" 2>&1 &&
            ! grep -qE 'AddressSanitizer|runtime error|LeakSanitizer' "$logs/it_$name.log"; then
            passed=$((passed + 1)); echo "ok   $t (asan)"
        else
            failed=$((failed + 1)); failures+=("$t (asan)"); echo "FAIL $t (asan)"; tail -40 "$logs/it_$name.log"
        fi
    done
fi

if [ ${#failures[@]} -gt 0 ]; then
    echo "failed: ${failures[*]}"
fi
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
