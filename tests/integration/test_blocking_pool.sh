#!/usr/bin/env bash
# --blocking-in-pool (hybrid): the blocking call runs in the thread pool
# (deferToThread), not in the reactor thread.  8 emails in flight, a 20 ms
# blocking call each: in the reactor they take turns (40 emails >= 0.8 s);
# with a pool of 8 the calls overlap (well under half of that).  Both verified.
. "$(dirname "$0")/common.bash"

run_verified inreactor hybrid "--latency 1ms" --emails 40 --concurrency 8 --threads 8 --blocking 20ms --events 20
w1=$(json_get "$LAST_JSON" wall_s)
run_verified inpool hybrid "--latency 1ms" --emails 40 --concurrency 8 --threads 8 --blocking 20ms --events 20 --blocking-in-pool
w2=$(json_get "$LAST_JSON" wall_s)
if awk -v a="$w1" 'BEGIN { exit !(a >= 0.78) }'; then pass "in the reactor the calls take turns (${w1}s)"; else fail "in the reactor: ${w1}s < 0.78s"; fi
if awk -v a="$w1" -v b="$w2" 'BEGIN { exit !(b < a / 2) }'; then pass "in the pool they overlap (${w2}s against ${w1}s)"; else fail "in the pool: ${w2}s against ${w1}s"; fi
"$BIN/summary-async" --blocking-in-pool --emails 1 >/dev/null 2>"$TMP/e"
check_eq "--blocking-in-pool refused by async" 2 $?
if grep -q "only the hybrid can defer the call to a thread" "$TMP/e"; then pass "refusal names why"; else fail "message: $(cat "$TMP/e")"; fi
finish
