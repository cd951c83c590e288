#!/usr/bin/env bash
# --join N: every (N+1)th email is a summary that starts only once the N
# emails before it have ended (async/hybrid: gatherResults over their
# Deferreds; threads: a condition variable; sync: they are already sent).
# Every model: all delivered and verified; the trace shows each summary
# starting after its last member ended; a member that fails fails its
# summary with "join: a member failed"; bad combinations exit 2.
. "$(dirname "$0")/common.bash"

for m in sync threads async hybrid; do
    run_verified join-$m $m "--latency 1ms" --emails 20 --concurrency 6 --join 4 --events 20 \
        --trace "$TMP/join-$m.trace" --trace-emails 10
    check_eq "$m --join 4: every email delivered" 20 "$(json_get "$LAST_JSON" delivered)"
    # email 4 (summary of 0..3) and 9 (of 5..8) start after their members' last
    # reply: (async) a member's member_done / (blocking) its MESSAGE_DONE, against
    # the summary's email start (async, after summary_go) / its build (blocking)
    for s in 4 9; do
        ok=$(jq -s --argjson s "$s" 'def member: .email < $s and .email >= $s - 4;
             ([.[] | select(member and ((.name == "member_done" and .phase == "start") or .what == "MESSAGE_DONE")) | .t_ns]) as $m
             | ([.[] | select(.email == $s and ((.ev == "email" and .phase == "start" and ("'$m'" | test("async|hybrid"))) or (.what == "build" and .phase == "start"))) | .t_ns] | min) as $start
             | ($m | length) == 4 and $start > ($m | max)' "$TMP/join-$m.trace")
        check_eq "$m: summary $s starts after its 4 members' replies" true "$ok"
    done
done
check_eq "async: the summary waits in gatherResults' callback" "summary_go summary_go" \
    "$(jq -r 'select(.ev == "callback" and .phase == "start" and (.name | startswith("summary"))) | .name' "$TMP/join-async.trace" | paste -sd' ')"
if jq -r 'select(.ev == "block" and .what == "join" and .phase == "start") | .email' "$TMP/join-threads.trace" | grep -qx 4; then
    pass "threads: the summary blocks in the join"; else fail "threads: no join wait traced"; fi

# A member fails (every reply 4xx, no retry): the summaries are not sent.
for m in threads async; do
    run_verified fail-$m $m "--tempfail 1" --emails 10 --concurrency 3 --join 4 --retries 0 --events 20
    check_eq "$m: the summaries fail with their members" 2 \
        "$(jq -r '.failure_reasons["join: a member failed"] // 0' "$LAST_JSON")"
    check_eq "$m: all failed" 10 "$(json_get "$LAST_JSON" failed)"
done

"$BIN/summary-async" --join 3 --chain 2 --emails 4 >/dev/null 2>"$TMP/e1"
check_eq "--join with --chain exits 2" 2 $?
if grep -q -- "--join 3: .*not with --chain > 1 or --rate" "$TMP/e1"; then pass "--join/--chain message"; else fail "message: $(cat "$TMP/e1")"; fi
"$BIN/summary-threads" --join 3 --rate 100 --emails 4 >/dev/null 2>/dev/null
check_eq "--join with --rate exits 2" 2 $?
finish
