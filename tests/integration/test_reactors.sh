#!/usr/bin/env bash
# The async model on every core (bin/summary-async --reactors N, issue 16):
#  - --reactors 2 delivers exactly the emails asked, verified against the
#    server (count and digest, and by scripts/mbharness.py's rule), with the
#    same digest as one reactor for the same emails, every delivery in the
#    merged latency histogram (window_delivered = delivered with no window),
#    params.reactors = 2 and the reactor threads counted; plain, with faults
#    and retries, chains + sessions reused, open loop, sized by time;
#  - the shares are exact: 7 emails, 2 reactors, concurrency 3 never has
#    more than 3 connections open at the server;
#  - fewer emails in flight than reactors: it runs fewer and says so;
#  - bad values are refused with exit 2 and a message naming --reactors,
#    and the other models refuse the option.
# Exit status 0 is checked on every run: under `make tsan` a data race in
# the reactor threads makes the program exit 66.
source "$(dirname "$0")/common.bash"

A=$BIN/summary-async
[ -x "$A" ] || { fail "bin/summary-async missing"; finish; }

rc_zero() { check_eq "$1: exit status" 0 "$LAST_RC"; }

# Plain, with the same emails through one reactor for the digest.
run_verified one async "--latency 1ms" --emails 301 --concurrency 20 --per-session 3 --reactors 1
rc_zero one
one_digest=$(json_get "$LAST_JSON" digest)
check_eq "one: params.reactors" 1 "$(jq '.params.reactors' "$LAST_JSON")"

run_verified two async "--latency 1ms" --emails 301 --concurrency 20 --per-session 3 --reactors 2
rc_zero two
check_eq "two: params.reactors" 2 "$(jq '.params.reactors' "$LAST_JSON")"
check_eq "two: delivered exactly the emails asked" 301 "$(json_get "$LAST_JSON" delivered)"
check_eq "two: every delivery in the merged histogram" 301 "$(json_get "$LAST_JSON" window_delivered)"
check_eq "two: the digest of one reactor's run over the same emails" "$one_digest" \
    "$(json_get "$LAST_JSON" digest)"
t=$(json_get "$LAST_JSON" threads_peak)
if [ "$t" -ge 3 ]; then pass "two: reactor threads counted ($t)"; else fail "two: threads_peak $t < 3"; fi
c=$(json_get "$LAST_STATS" max_concurrent)
if [ "$c" -le 20 ]; then pass "two: at most 20 connections at once ($c)"; else fail "two: $c connections > 20"; fi

# Faults: retries inside each reactor, every email delivered once.
run_verified faults async "--tempfail 0.1 --drop 0.05 --fault-stage rcpt --seed 7" \
    --emails 200 --concurrency 10 --retries 20 --reactors 2
rc_zero faults
check_eq "faults: all delivered after retries" 200 "$(json_get "$LAST_JSON" delivered)"
r=$(json_get "$LAST_JSON" retries)
if [ "$r" -gt 0 ]; then pass "faults: retried ($r)"; else fail "faults: no retry counted"; fi

# Chains are never split between reactors; sessions carry several emails.
run_verified chain async "--latency 1ms" --emails 61 --concurrency 8 --chain 5 --per-session 4 \
    --events 2000 --body-bytes 5KB --recipients 3 --reactors 2
rc_zero chain
check_eq "chain: all delivered" 61 "$(json_get "$LAST_JSON" delivered)"

# The issue's split: 7 emails, 2 reactors, concurrency 3 (shares 4+3 emails, 2+1 slots).
run_verified split async "--latency 5ms" --emails 7 --concurrency 3 --reactors 2
rc_zero split
check_eq "split: 7 delivered" 7 "$(json_get "$LAST_JSON" delivered)"
c=$(json_get "$LAST_STATS" max_concurrent)
if [ "$c" -le 3 ]; then pass "split: at most 3 connections at once ($c)"; else fail "split: $c connections > 3"; fi

# Open loop: the rate split between the reactors, still 400/s in all.
run_verified open async "--latency 1ms" --emails 100 --rate 400 --concurrency 20 --chain 2 --reactors 2
rc_zero open
check_eq "open: latency mode" open "$(json_get "$LAST_JSON" latency_mode)"
check_eq "open: scheduled, summed over the reactors" 100 "$(json_get "$LAST_JSON" scheduled)"
w=$(json_get "$LAST_JSON" wall_s)
if awk -v w="$w" 'BEGIN { exit !(w >= 0.24) }'; then pass "open: paced ($w s)"; else fail "open: too fast for 400/s ($w s)"; fi

run_verified poisson async "--latency 1ms" --emails 1000 --rate 300 --arrivals poisson \
    --concurrency 10 --warmup 0.1s --duration 0.4s --reactors 2
rc_zero poisson
n=$(json_get "$LAST_JSON" delivered)
if [ "$n" -ge 80 ] && [ "$n" -le 300 ]; then pass "poisson: about 300/s over 0.5 s ($n)"; else fail "poisson: $n emails"; fi

# Sized by time, closed loop: one window for both reactors.
run_verified timed async "--latency 2ms" --concurrency 10 --warmup 0.1s --duration 0.3s --reactors 2
rc_zero timed
wd=$(json_get "$LAST_JSON" window_delivered)
if [ "$wd" -gt 0 ]; then pass "timed: emails in the window ($wd)"; else fail "timed: window empty"; fi

# More reactors than emails in flight: it runs as many as there are, and says so.
run_verified fewer async "--latency 1ms" --emails 20 --concurrency 2 --reactors 4
rc_zero fewer
check_eq "fewer: params.reactors" 2 "$(jq '.params.reactors' "$LAST_JSON")"
grep -q -- "--reactors 4: running 2" "$TMP/fewer.err" && pass "fewer: said so" \
    || fail "fewer: no note on stderr: $(cat "$TMP/fewer.err")"

# Bad values: exit 2, a message naming the option.
cores=$(nproc)
for v in 0 -1 two 1.5 $((4 * cores + 1)); do
    "$A" --emails 5 --reactors "$v" 2>"$TMP/bad.err"
    check_eq "--reactors $v: exit 2" 2 "$?"
    grep -q -- '--reactors' "$TMP/bad.err" && pass "--reactors $v: message names it" \
        || fail "--reactors $v: message: $(cat "$TMP/bad.err")"
done
for m in sync threads hybrid; do
    "$BIN/summary-$m" --emails 5 --reactors 2 2>"$TMP/bad.err"
    check_eq "summary-$m --reactors 2: exit 2" 2 "$?"
    grep -q "not used by summary-$m" "$TMP/bad.err" && pass "summary-$m: says why" \
        || fail "summary-$m: message: $(cat "$TMP/bad.err")"
done
finish
