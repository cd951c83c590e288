#!/usr/bin/env bash
# Open loop (--rate): emails are due on a schedule whatever happens, latency
# is measured from the intended start, a bounded queue sheds, and nothing is
# lost silently: delivered + failed + shed + pending = scheduled.
. "$(dirname "$0")/common.bash"
# Under ThreadSanitizer only the models with more than one thread: it finds
# nothing in sync's or async's single thread (ASan and the plain run test all).
MODELS="sync threads async hybrid"
[ "${MAILBENCH_SANITIZER:-}" = tsan ] && MODELS="threads hybrid"

# 1. Past saturation: 60 emails at 200/s against 20 ms replies (sync manages
#    ~10/s, two slots ~20/s): the queue (10) fills, the rest is shed.
for m in $MODELS; do
    start_mock srv --latency 20ms
    timeout 60 "$BIN/summary-$m" --server "127.0.0.1:$srv_PORT" --emails 60 --rate 200 \
        $([ "$m" = sync ] || echo --concurrency 2) --max-queue 10 --events 10 --retries 0 \
        --json "$TMP/$m.json" 2>/dev/null
    stop_pid "$srv_PID"
    j="$TMP/$m.json"
    check_eq "$m overloaded: scheduled" 60 "$(jq -r .scheduled "$j")"
    check_eq "$m overloaded: delivered + failed + shed + pending = scheduled" 60 \
        "$(jq -r '.delivered + .failed + .shed + .pending' "$j")"
    if [ "$(jq -r '.shed > 0 and .peak_queue == 10' "$j")" = true ]; then pass "$m: the full queue shed $(jq -r .shed "$j")"
    else fail "$m: shed $(jq -r .shed "$j"), peak queue $(jq -r .peak_queue "$j")"; fi
    if [ "$(jq -r '.p99_us > .service_p99_us' "$j")" = true ]; then
        pass "$m: latency from the intended start ($(jq -r .p99_us "$j") us) > from the actual start ($(jq -r .service_p99_us "$j") us)"
    else fail "$m: p99 $(jq -r .p99_us "$j") not above service p99 $(jq -r .service_p99_us "$j")"; fi
    if [ "$(jq -r '.behind_schedule > 0' "$j")" = true ]; then pass "$m says it fell behind ($(jq -r .behind_schedule "$j") emails)"
    else fail "$m: behind_schedule 0 although overloaded"; fi
    check_eq "$m: delivered = server's" "$(jq -r .delivered "$j")" "$(jq -r .unique_messages "$srv_STATS")"
done

# 2. Below saturation the schedule is kept: p99 lateness of the start times
#    within 1 ms (20/s, 5 ms replies: every model has room; ~30 starts, so the
#    p99 is their maximum).  Sanitizer builds run several times slower: 5 ms
#    there.  A shared VM wakes a sleeping process ~0.1 ms late and now and
#    then several ms, in noisy spells that last seconds (README, "How exact
#    --latency is"; here even sync, a plain clock_nanosleep, read p99 2-3 ms
#    in such a spell): up to eight tries, a second apart after a miss, the
#    best counts.
if [ -n "${MAILBENCH_SANITIZER:-}" ]; then LATE_MAX=5000; else LATE_MAX=1000; fi
for m in $MODELS; do
    best=""
    for try in 1 2 3 4 5 6 7 8; do
        [ "$try" -gt 1 ] && sleep 1
        start_mock srv --latency 5ms
        timeout 60 "$BIN/summary-$m" --server "127.0.0.1:$srv_PORT" --rate 20 --warmup 0.2s --duration 1.5s \
            $([ "$m" = sync ] || echo --concurrency 4) --events 10 --retries 0 --json "$TMP/k$m.json" 2>/dev/null
        stop_pid "$srv_PID"
        late=$(jq -r .start_lateness_p99_us "$TMP/k$m.json")
        if [ -z "$best" ] || [ "$late" -lt "$best" ]; then best=$late; fi
        [ "$late" -le "$LATE_MAX" ] && break
    done
    if [ "$best" -le "$LATE_MAX" ]; then pass "$m below saturation: start lateness p99 ${best} us <= $LATE_MAX us (try $try)"
    else fail "$m below saturation: start lateness p99 ${best} us > $LATE_MAX us in 8 tries"; fi
    check_eq "$m below saturation: nothing shed or pending" 0 "$(jq -r '.shed + .pending' "$TMP/k$m.json")"
done

# 2b. The work done when an email arrives does not make the next one late:
#     each arrival is due at its time on the clock, not at a delay worked out
#     before that work.  A 3 ms blocking call per email, in the model's own
#     thread, at 20/s: every start is on time (the earliest one within
#     1.5 ms, fewer than half later than 1 ms); with the delay worked out
#     before the work, every start after the first was 3.2-3.5 ms late.
for m in $MODELS; do
    start_mock srv --latency 5ms
    timeout 60 "$BIN/summary-$m" --server "127.0.0.1:$srv_PORT" --rate 20 --warmup 0.2s --duration 1.5s \
        $([ "$m" = sync ] || echo --concurrency 4) --events 10 --retries 0 --blocking 3ms \
        --json "$TMP/b$m.json" 2>/dev/null
    stop_pid "$srv_PID"
    j="$TMP/b$m.json"
    if [ "$(jq -r '.lateness_hist.count >= 20 and .lateness_hist.min < 1500 and 2 * .behind_schedule < .lateness_hist.count' "$j")" = true ]; then
        pass "$m: a 3 ms call at each start does not delay the next (earliest start $(jq -r .lateness_hist.min "$j") us late, $(jq -r .behind_schedule "$j") of $(jq -r .lateness_hist.count "$j") over 1 ms)"
    else fail "$m: starts late after a 3 ms call: $(jq -c '{n: .lateness_hist.count, min: .lateness_hist.min, behind: .behind_schedule}' "$j")"; fi
done

# 2c. While the warm-up waits for its first email to end (50 ms replies: 0.2 s),
#     the arrivals keep their schedule.  The window's timer used to come back
#     at the warm-up's end, already past, on every turn: the reactor spun and
#     its re-added timer stood in front of the arrivals' (async at 199/s:
#     peak queue 31, start lateness p99 146 ms, 30 emails behind).
for m in ${MODELS/sync /}; do             # sync cannot keep 200/s at 50 ms
    start_mock srv --latency 50ms
    timeout 60 "$BIN/summary-$m" --server "127.0.0.1:$srv_PORT" --rate 200 --concurrency 100 \
        --warmup 0.1s --duration 0.5s --events 10 --retries 0 --json "$TMP/w$m.json" 2>/dev/null
    stop_pid "$srv_PID"
    j="$TMP/w$m.json"
    if [ "$(jq -r '.peak_queue <= 3 and .start_lateness_p99_us < 20000 and .delivered > 0' "$j")" = true ]; then
        pass "$m: arrivals on time while the warm-up waits (peak queue $(jq -r .peak_queue "$j"), start lateness p99 $(jq -r .start_lateness_p99_us "$j") us)"
    else fail "$m: arrivals late while the warm-up waits: $(jq -c '{peak_queue, start_lateness_p99_us, behind_schedule, delivered}' "$j")"; fi
done

# 3. Poisson arrivals: the same seed gives the same schedule in every model,
#    a different seed another one.  Compared on the emails' start times (their
#    --trace, offsets from the first email's start): below saturation each
#    starts at its intended time, so the offsets are the schedule.  (Counting
#    the emails scheduled in a time window was flaky by one: the window's end
#    falls a model's start-up later or earlier against the schedule.)  The
#    blocking side is threads with 4 slots, not sync: sync starts an email
#    only when the one before has ended, and a Poisson gap shorter than an
#    email (26% of them at 50/s for a 6 ms email; more under a sanitizer)
#    starts it late: under TSan sync's 2nd email started 10.5 ms late.
starts() {      # starts TRACE: the start offsets of emails 0..9 in ms, one line
    jq -r 'select(.ev == "email" and .phase == "start" and (.attempt // 0) == 0) | [.email, .t_ns] | @tsv' "$1" |
        sort -n -k1,1 | awk 'NR == 1 { t0 = $2 } { printf "%.3f ", ($2 - t0) / 1e6 }'
}
for run in threads:7 async:7 threads:8; do
    m=${run%:*} seed=${run#*:}
    start_mock srv --latency 1ms
    timeout 60 "$BIN/summary-$m" --server "127.0.0.1:$srv_PORT" --rate 50 --arrivals poisson \
        --concurrency 4 --emails 10 --events 10 --seed "$seed" --trace "$TMP/p$m$seed.jsonl" --trace-emails 10 \
        --json "$TMP/p$m.json" 2>/dev/null
    stop_pid "$srv_PID"
done
# the largest difference between two schedules' offsets, ms
maxdiff() { paste <(tr ' ' '\n' <<<"$1") <(tr ' ' '\n' <<<"$2") |
    awk 'NF == 2 { d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d } END { printf "%.3f", m }'; }
s7=$(starts "$TMP/pthreads7.jsonl") a7=$(starts "$TMP/pasync7.jsonl") s8=$(starts "$TMP/pthreads8.jsonl")
check_eq "poisson: 10 emails started in each run" "10 10 10" "$(wc -w <<<"$s7") $(wc -w <<<"$a7") $(wc -w <<<"$s8")"
d=$(maxdiff "$s7" "$a7")
if awk -v d="$d" 'BEGIN { exit !(d <= 5) }'; then pass "poisson: threads and async started on the same schedule (seed 7; offsets apart by at most $d ms)"
else fail "poisson: threads and async schedules differ by $d ms (threads: $s7; async: $a7)"; fi
d=$(maxdiff "$s7" "$s8")
if awk -v d="$d" 'BEGIN { exit !(d > 10) }'; then pass "poisson: seed 8 is another schedule (offsets apart by up to $d ms)"
else fail "poisson: seeds 7 and 8 gave the same schedule within $d ms ($s7 / $s8)"; fi
check_eq "poisson: the JSON says so" poisson "$(jq -r .params.arrivals "$TMP/pasync.json")"
finish
