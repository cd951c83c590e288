#!/usr/bin/env bash
# --trace FILE: the timeline of a known small run.  async: one email's
# Deferred chain runs its callbacks in the order async_mailer.c builds it,
# the SMTP transaction is sent before its reply, the reactor's turns are
# there, timestamps never go back; a 4xx then a retry goes through the
# errback maybe_retry; with --no-errback a failure is reported unhandled.
# sync: the blocking calls in order.  Bounded: no email at or past
# --trace-emails is in the trace.  A trace file that cannot be written exits 2.
. "$(dirname "$0")/common.bash"

# names PHASE FILE EMAIL — the callback names of one email, in order
names() { jq -r --argjson e "$3" "select(.ev == \"callback\" and .phase == \"$1\" and .email == \$e) | .name" "$2" | paste -sd' '; }
monotonic() { jq -s '[.[].t_ns] | . == sort' "$1"; }

run() {     # run LABEL MODEL "MOCK OPTS" MODEL OPTS...
    local label=$1 model=$2 mockopts=$3; shift 3
    start_mock srv $mockopts || { fail "$label: smtp-mock did not start"; return; }
    timeout 30 "$BIN/summary-$model" --server "127.0.0.1:$srv_PORT" --json "$TMP/$label.json" \
        --trace "$TMP/$label.trace" --events 20 "$@" 2>"$TMP/$label.err"
    LAST_RC=$?
    stop_pid "$srv_PID"
}

# async, one email, nothing goes wrong.
run ok async "--latency 2ms" --emails 1 --concurrency 1
check_eq "async: exit status" 0 "$LAST_RC"
check_eq "async: callbacks in chain order" \
    "send_email send_on_session stamp_reply release_session resume_result delivered email_end" \
    "$(names start "$TMP/ok.trace" 0)"
check_eq "async: each callback ends, innermost first" \
    "send_email send_on_session stamp_reply release_session resume_result delivered email_end" \
    "$(names end "$TMP/ok.trace" 0)"
check_eq "async: sent before replied" "sent replied" \
    "$(jq -r 'select(.ev == "smtp") | .step' "$TMP/ok.trace" | paste -sd' ')"
check_eq "async: the reply is 250" 250 "$(jq -r 'select(.step == "replied") | .result' "$TMP/ok.trace")"
check_eq "async: first event is the email's start" '"email" "start"' \
    "$(head -1 "$TMP/ok.trace" | jq -c '.ev, .phase' | paste -sd' ')"
check_eq "async: timestamps never go back" true "$(monotonic "$TMP/ok.trace")"
nturn=$(jq -r 'select(.ev == "turn" and .phase == "start") | .ready' "$TMP/ok.trace" | wc -l)
if [ "$nturn" -ge 2 ]; then pass "async: $nturn reactor turns traced"; else fail "async: $nturn reactor turns"; fi
maxready=$(jq -s '[.[] | select(.ev == "turn" and .phase == "start") | .ready] | max' "$TMP/ok.trace")
if [ "$maxready" -ge 1 ]; then pass "async: a turn with $maxready ready watchers (I/O)"; else fail "async: no turn with a ready watcher"; fi
# While the email waits for its reply, the reactor turns without running any of its callbacks.
gap=$(jq -s '[.[] | select(.ev == "smtp" or .ev == "turn")] | (map(.step) | index("sent")) as $s
      | (map(.step) | index("replied")) as $r | [.[$s:$r][] | select(.ev == "turn")] | length' "$TMP/ok.trace")
if [ "$gap" -ge 1 ]; then pass "async: $gap turn events between sent and replied"; else fail "async: no turn while waiting"; fi

# async: the first attempt gets a 4xx, the retry is delivered: the errback path.
run retry async "--latency 1ms --tempfail 0.5 --seed 3" --emails 4 --concurrency 1 --retries 5 --trace-emails 4
retried=$(jq -r 'select(.ev == "callback" and .phase == "start" and .name == "maybe_retry") | .side' "$TMP/retry.trace" | sort -u)
check_eq "async retry: maybe_retry runs as an errback" errback "$retried"
r=$(json_get "$TMP/retry.json" retries)
n=$(jq -r 'select(.ev == "callback" and .phase == "end" and .name == "maybe_retry" and .out == "deferred") | .email' "$TMP/retry.trace" | wc -l)
check_eq "async retry: one maybe_retry returning a Deferred (the backoff) per retry" "$r" "$n"
if [ "$r" -ge 1 ]; then pass "async retry: $r retries"; else fail "async retry: no retry with tempfail 0.5 (seed 3)"; fi
if jq -r 'select(.ev == "smtp" and .step == "replied" and .result == "failure") | .reason' "$TMP/retry.trace" | grep -q '^4[0-9][0-9] '; then
    pass "async retry: the failed reply's reason is the 4xx"; else fail "async retry: no 4xx reason"; fi

# async --no-errback: a 5xx is never handled; the library reports it when the Deferred goes.
run unh async "--permfail 1" --emails 2 --concurrency 1 --retries 0 --no-errback
check_eq "no-errback: two unhandled-error reports on stderr" 2 "$(grep -c '^Unhandled error in Deferred:' "$TMP/unh.err")"
check_eq "no-errback: and in the trace" 2 "$(jq -r 'select(.ev == "unhandled") | .reason' "$TMP/unh.trace" | grep -c '^5')"
check_eq "no-errback: the failures are still counted" 2 "$(json_get "$TMP/unh.json" failed)"
check_eq "no-errback: no errback named failed ran" "" "$(names start "$TMP/unh.trace" 0 | grep -o failed)"

# sync: the blocking calls of one email, in order.
run sync sync "--latency 2ms" --emails 1
check_eq "sync: exit status" 0 "$LAST_RC"
check_eq "sync: blocking calls in order" "build connect READY MESSAGE_DONE CLOSED" \
    "$(jq -r 'select(.ev == "block" and .phase == "end") | .what' "$TMP/sync.trace" | paste -sd' ')"
check_eq "sync: timestamps never go back" true "$(monotonic "$TMP/sync.trace")"
wait_ms=$(jq -s '[.[] | select(.ev == "block")] as $b | ($b | map(select(.what == "reply" and .phase == "start"))[-1].t_ns) as $s
          | ($b | map(select(.what == "MESSAGE_DONE"))[0].t_ns) as $e | (($e - $s) / 1e6 | floor)' "$TMP/sync.trace")
if [ "$wait_ms" -ge 2 ]; then pass "sync: blocked ${wait_ms} ms for the 2 ms reply"; else fail "sync: blocked ${wait_ms} ms"; fi

# Bounded: 30 emails, 2 traced, in every model.
for m in sync threads async hybrid; do
    run bound-$m $m "--latency 1ms" --emails 30 --concurrency 4 --trace-emails 2
    check_eq "$m: only emails 0 and 1 traced" "-1 0 1" \
        "$(jq -r '.email' "$TMP/bound-$m.trace" | sort -un | paste -sd' ' | sed 's/^0 1$/-1 0 1/')"
    check_eq "$m: both traced emails end" 2 "$(jq -r 'select(.ev == "email" and .phase == "end") | .email' "$TMP/bound-$m.trace" | wc -l)"
done

# A trace file that cannot be written: exit 2, a clear message.
"$BIN/summary-async" --server 127.0.0.1:1 --emails 1 --trace /nonexistent/dir/t.jsonl >/dev/null 2>"$TMP/bad.err"
check_eq "unwritable --trace exits 2" 2 $?
if grep -q "cannot write --trace '/nonexistent/dir/t.jsonl'" "$TMP/bad.err"; then pass "unwritable --trace message"; else fail "message: $(cat "$TMP/bad.err")"; fi
"$BIN/summary-sync" --no-errback --emails 1 >/dev/null 2>"$TMP/bad2.err"
check_eq "--no-errback refused by sync" 2 $?
finish
