#!/usr/bin/env bash
# smtp-mock --refuse-for DUR: connections are refused (ECONNREFUSED) for DUR
# from the start, then served.  Every model rides out a 300 ms outage with
# enough retries (all delivered and verified, some retries, the reason of
# none left), and loses its emails with too few; a bad value exits 2.  And
# a stalled server (--stall): only the timeout ends it; the retry after a
# stall at data is a duplicate the sweeps' rule accepts (a fault injected).
. "$(dirname "$0")/common.bash"

for m in sync threads async hybrid; do
    run_verified ride-$m $m "--refuse-for 300ms" --emails 6 --concurrency 3 --retries 8 --events 20
    check_eq "$m: outage ridden out" 6 "$(json_get "$LAST_JSON" delivered)"
    r=$(json_get "$LAST_JSON" retries)
    if [ "$r" -ge 1 ]; then pass "$m: $r retries while refused"; else fail "$m: no retry while refused"; fi
done
start_mock srv --refuse-for 2s
for m in sync async; do
    timeout 20 "$BIN/summary-$m" --server "127.0.0.1:$srv_PORT" --emails 2 --concurrency 1 --retries 1 \
        --events 20 --json "$TMP/lost-$m.json" 2>/dev/null
    check_eq "$m: lost to a long outage" 2 "$(json_get "$TMP/lost-$m.json" failed)"
    check_eq "$m: the reason is the refusal" "Connection refused" \
        "$(jq -r '.failure_reasons | keys[0]' "$TMP/lost-$m.json" | sed 's/.*: //')"
done
stop_pid "$srv_PID"
check_eq "params.refuse_for_s" 2 "$(jq -r '.params.refuse_for_s' "$srv_STATS")"

run_verified stall async "--stall 0.3 --seed 2" --emails 20 --concurrency 4 --retries 5 --timeout 150ms --events 20
check_eq "stall: every email delivered after its timeouts" 20 "$(json_get "$LAST_JSON" delivered)"
if [ "$(json_get "$LAST_STATS" stalls_injected)" -ge 1 ]; then pass "stall: stalls injected"; else fail "stall: none injected"; fi

"$BIN/smtp-mock" --refuse-for soon >/dev/null 2>"$TMP/e"
check_eq "--refuse-for bad value exits 2" 2 $?
if grep -q "invalid --refuse-for value 'soon'" "$TMP/e"; then pass "bad value named"; else fail "message: $(cat "$TMP/e")"; fi
finish
