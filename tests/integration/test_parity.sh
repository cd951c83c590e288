#!/usr/bin/env bash
# The parity check (MEASUREMENT.md §1): with one email in flight there is
# nothing to overlap, so every model must deliver the same rate.  Each model
# runs alone against a fresh smtp-mock with a 20 ms reply latency (about
# 100 ms per email: five waits, QUIT's included, so CPU noise on a shared
# machine is a small part of it), sized by time; the rates must agree within
# 3%, and the server must never have seen two connections at once.  Before
# the slot rule (the reactor models read the 221 in the background) async
# was 24% faster here: --quit-background shows that effect, and must.
. "$(dirname "$0")/common.bash"

declare -A RATE
for m in sync threads async hybrid; do
    start_mock srv --latency 20ms || { fail "$m: smtp-mock did not start"; continue; }
    timeout 60 "$BIN/summary-$m" --server "127.0.0.1:$srv_PORT" --concurrency 1 --warmup 0.2s \
        --duration 1.5s --events 20 --retries 0 --json "$TMP/$m.json" 2>"$TMP/$m.err"
    stop_pid "$srv_PID"
    RATE[$m]=$(jq -r .emails_per_s "$TMP/$m.json")
    check_eq "$m: server peak connections at concurrency 1" 1 "$(jq -r .max_concurrent "$srv_STATS")"
    check_eq "$m: delivered = server's unique" "$(jq -r .delivered "$TMP/$m.json")" "$(jq -r .unique_messages "$srv_STATS")"
done
spread=$(/usr/bin/python3 -c "import sys; r=[float(x) for x in sys.argv[1:]]; print(f'{max(r)/min(r)-1:.4f}')" \
    "${RATE[sync]}" "${RATE[threads]}" "${RATE[async]}" "${RATE[hybrid]}")
if /usr/bin/python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= 0.03 else 1)" "$spread"; then
    pass "parity: rates within 3% (sync ${RATE[sync]}, threads ${RATE[threads]}, async ${RATE[async]}, hybrid ${RATE[hybrid]}/s; spread $spread)"
else
    fail "parity: rates differ by more than 3% (sync ${RATE[sync]}, threads ${RATE[threads]}, async ${RATE[async]}, hybrid ${RATE[hybrid]}/s; spread $spread)"
fi

# The background variant is the reactor's own advantage: visibly faster.
start_mock srv --latency 20ms
timeout 60 "$BIN/summary-async" --server "127.0.0.1:$srv_PORT" --concurrency 1 --warmup 0.2s \
    --duration 1.5s --events 20 --retries 0 --quit-background --json "$TMP/bg.json" 2>/dev/null
stop_pid "$srv_PID"
bg=$(jq -r .emails_per_s "$TMP/bg.json")
if /usr/bin/python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > 1.1 * float(sys.argv[2]) else 1)" "$bg" "${RATE[async]}"; then
    pass "--quit-background is faster at concurrency 1 ($bg against ${RATE[async]}/s)"
else
    fail "--quit-background should save a round trip: $bg against ${RATE[async]}/s"
fi
check_eq "--quit-background: the server saw the closing connection too" 2 "$(jq -r .max_concurrent "$srv_STATS")"

# Concurrency is what the server counted: with every thread up before the
# run starts (the gate), the server sees all 1,000 at once, never more.
for m in threads async; do
    start_mock srv --latency 50ms
    timeout 120 "$BIN/summary-$m" --server "127.0.0.1:$srv_PORT" --concurrency 1000 --warmup 0.1s \
        --duration 0.5s --events 0 --retries 0 --json "$TMP/c$m.json" 2>/dev/null
    stop_pid "$srv_PID"
    peak=$(jq -r .max_concurrent "$srv_STATS")
    if [ "$peak" -ge 950 ] && [ "$peak" -le 1000 ]; then pass "$m at concurrency 1000: the server saw $peak"
    else fail "$m at concurrency 1000: the server saw $peak at once (want 950..1000)"; fi
done

# --prebuild (section 9: the SMTP machinery alone): the emails are built
# before the clock starts and the run still verifies against the server.
for m in sync async; do
    run_verified "prebuild-$m" "$m" "--latency 0" --emails 40 --concurrency 4 --events 50 \
        --body-bytes 20000 --prebuild
    check_eq "prebuild-$m: params.prebuild" true "$(jq -r .params.prebuild "$LAST_JSON")"
done
finish
