#!/usr/bin/env bash
# The same failure gives the same reason in every model: a server that never
# answers the end of data, one slower than --timeout from the greeting on, and
# a port nobody listens on.  The reactor models time out through addTimeout,
# the blocking ones through poll(); both must name the SMTP stage the same way
# (a regression: async and hybrid said "Deferred timed out after 1 seconds").
. "$(dirname "$0")/common.bash"

MODELS="sync threads async hybrid"

# reasons LABEL MOCK-OPTIONS|none — each model's failure_reasons, one line per model
reasons() {
    local label=$1 mockopts=$2 port m
    if [ "$mockopts" = none ]; then
        start_mock gone || return; port=$gone_PORT; stop_pid "$gone_PID"   # a port just freed
    else
        start_mock srv $mockopts || return; port=$srv_PORT
    fi
    for m in $MODELS; do
        timeout 30 "$BIN/summary-$m" --server "127.0.0.1:$port" --emails 2 --concurrency 1 \
            --retries 0 --timeout 300ms --events 10 --json "$TMP/$label-$m.json" 2>/dev/null
        jq -c '.failure_reasons' "$TMP/$label-$m.json" >"$TMP/$label-$m.reasons"
    done
    [ "$mockopts" = none ] || stop_pid "$srv_PID"
}

check_same() {
    local label=$1 expect=$2 m
    for m in $MODELS; do
        check_eq "$label: $m's reason" "$expect" "$(cat "$TMP/$label-$m.reasons")"
    done
}

reasons stall "--stall 1"
check_same stall '{"end of data: timeout after end of data, before reply":2}'
reasons slow "--latency 2s"
check_same slow '{"greeting: timeout before greeting":2}'
reasons refused none
check_same refused "{\"connect to 127.0.0.1:$gone_PORT: Connection refused\":2}"
finish
