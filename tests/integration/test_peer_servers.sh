#!/usr/bin/env bash
# Every model against SMTP servers mailbench did not write (issue 4):
#  (a) a Python aiosmtpd server (tests/integration/aiosmtpd_server.py; no
#      PIPELINING offered): 100 emails, all delivered, and verified — the
#      client's digest equals the server's, 100 distinct Message-IDs;
#  (b) Postfix's smtp-sink (PIPELINING, an EHLO reply ending in "250 "):
#      100 emails delivered, smtp-sink's own counter (-c) and its dump files
#      (-d) say 100, and the digest of the dumped messages equals the client's;
#  (c) smtp-sink refusing a stage (-f RCPT: 5xx to every RCPT, -f .: 5xx after
#      the data, -r MAIL: 4xx to every MAIL): every email reported failed with
#      the server's reply, exit status 3, a 4xx retried, a 5xx not.
# Also: the Python digest port agrees with lib/digest.c (aiosmtpd's digest =
# smtp-mock's for the same workload).  Loopback only, ports found by binding
# port 0, every server stopped by pid, every wait bounded.
source "$(dirname "$0")/common.bash"
# bash skips the EXIT trap (which stops the servers) when a signal kills it,
# e.g. run-tests' timeout: turn those signals into an exit.
trap 'exit 143' TERM; trap 'exit 130' INT; trap 'exit 129' HUP; trap 'exit 141' PIPE
PY=/usr/bin/python3
SINK=/usr/sbin/smtp-sink
AIO="$(cd "$(dirname "$0")" && pwd)/aiosmtpd_server.py"
RUN=(--emails 100 --concurrency 10 --per-session 3 --recipients 2 --body-bytes 10KB)

models=()
for m in sync threads async hybrid; do
    [ -x "$BIN/summary-$m" ] && models+=("$m") || fail "bin/summary-$m missing"
done
have_sink=1 have_aio=1
[ -x "$SINK" ] || { echo "SKIP smtp-sink: $SINK not installed"; have_sink=0; }
"$PY" -c 'import aiosmtpd' 2>/dev/null || { echo "SKIP aiosmtpd: python3-aiosmtpd not installed"; have_aio=0; }

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# listening PORT — a socket listens on 127.0.0.1:PORT (no connection made,
# so smtp-sink's session counter is not disturbed).
listening() {
    local hex
    hex=$(printf '0100007F:%04X 00000000:0000 0A' "$1")
    grep -q "$hex" /proc/net/tcp
}

# start_aiosmtpd — sets aio_PORT, aio_PID, aio_STATS (written when stopped).
start_aiosmtpd() {
    local out="$TMP/aio.out" i
    aio_STATS="$TMP/aio.stats.json"
    # Removed first: the shell truncates it only once the background job
    # runs, and the previous server's "listening on" line must not be read.
    rm -f "$aio_STATS" "$out"
    "$PY" "$AIO" --stats "$aio_STATS" >"$out" 2>"$TMP/aio.err" &
    aio_PID=$!
    PIDS+=("$aio_PID")
    for i in $(seq 1 200); do
        grep -q '^listening on ' "$out" 2>/dev/null && break
        kill -0 "$aio_PID" 2>/dev/null || break
        sleep 0.05
    done
    aio_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out" | head -n1)
    [ -n "$aio_PORT" ] && return 0
    echo "aiosmtpd_server did not start:"; cat "$TMP/aio.err"
    stop_pid "$aio_PID"
    return 1
}

# start_sink [smtp-sink options...] — smtp-sink on a free port with running
# counters (-c, in $TMP/sink.out) and one dump file per transaction under
# $TMP/dump.  Sets sink_PORT, sink_PID.  Retries if the port got taken.
start_sink() {
    local try i
    rm -rf "$TMP/dump" "$TMP/sink.out"
    for try in 1 2 3; do
        sink_PORT=$(free_port)
        "$SINK" -u "$(id -un)" -c -d "$TMP/dump/m." "$@" "127.0.0.1:$sink_PORT" 1000 \
            >"$TMP/sink.out" 2>"$TMP/sink.err" &
        sink_PID=$!
        PIDS+=("$sink_PID")
        for i in $(seq 1 100); do
            listening "$sink_PORT" && return 0
            kill -0 "$sink_PID" 2>/dev/null || break
            sleep 0.05
        done
        stop_pid "$sink_PID"
    done
    echo "smtp-sink did not start:"; cat "$TMP/sink.err"
    return 1
}

# The last "mesg=N" of smtp-sink's -c counters ("sess=.. quit=.. mesg=..\r").
sink_count() {
    local n
    n=$(tr '\r' '\n' <"$TMP/sink.out" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -n1)
    echo "${n:-0}"
}
dump_files() { find "$TMP/dump" -type f 2>/dev/null | wc -l; }

# run_model LABEL MODEL PORT [extra options] — sets RC and J (the run JSON).
run_model() {
    local label=$1 model=$2 port=$3; shift 3
    J="$TMP/$label.json"
    timeout 60 "$BIN/summary-$model" --server "127.0.0.1:$port" "${RUN[@]}" "$@" \
        --json "$J" 2>"$TMP/$label.err"
    RC=$?
    [ -s "$J" ] || { echo "{}" >"$J"; cat "$TMP/$label.err"; }
}

# failure_check LABEL REGEX WHAT — every email failed, each with a reason
# matching REGEX (jq test()).
failure_check() {
    local label=$1 re=$2 what=$3 n
    check_eq "$label: exit 3" 3 "$RC"
    check_eq "$label: nothing delivered" 0 "$(json_get "$J" delivered)"
    check_eq "$label: all failed" 100 "$(json_get "$J" failed)"
    n=$(jq --arg re "$re" '[.failure_reasons // {} | to_entries[] | select(.key | test($re)) | .value] | add // 0' "$J")
    check_eq "$label: failure reasons are $what" 100 "$n"
}

# sink_fail_run LABEL MODEL [smtp-sink options] — a run against a refusing sink.
sink_fail_run() {
    local label=$1 m=$2; shift 2
    start_sink "$@" || { fail "$label: smtp-sink did not start"; return 1; }
    run_model "$label" "$m" "$sink_PORT" --retries 1 --timeout 5s
    stop_pid "$sink_PID"
    return 0
}

aiosmtpd_case() {
    local m=$1 label="$1-aiosmtpd"
    start_aiosmtpd || { fail "$label: server did not start"; return; }
    run_model "$label" "$m" "$aio_PORT"
    stop_pid "$aio_PID"
    [ -s "$aio_STATS" ] || { fail "$label: no server stats"; cat "$TMP/aio.err"; return; }
    check_eq "$label: exit 0" 0 "$RC"
    check_eq "$label: delivered" 100 "$(json_get "$J" delivered)"
    check_eq "$label: digest = server's digest" "$(json_get "$aio_STATS" digest)" "$(json_get "$J" digest)"
    check_eq "$label: server's distinct Message-IDs" 100 "$(json_get "$aio_STATS" unique_messages)"
    check_eq "$label: server's messages (no duplicate)" 100 "$(json_get "$aio_STATS" messages)"
    check_eq "$label: server's recipients" 200 "$(json_get "$aio_STATS" recipients)"
}

sink_case() {
    local m=$1 label="$1-sink"
    start_sink || { fail "$label: smtp-sink did not start"; return; }
    run_model "$label" "$m" "$sink_PORT"
    stop_pid "$sink_PID"
    check_eq "$label: exit 0" 0 "$RC"
    check_eq "$label: delivered" 100 "$(json_get "$J" delivered)"
    check_eq "$label: smtp-sink's message counter" 100 "$(sink_count)"
    check_eq "$label: smtp-sink's dump files" 100 "$(dump_files)"
    local dd
    dd=$("$PY" "$AIO" --sink-dump "$TMP/dump" | sed -n 's/.* digest \([0-9a-f]*\) .*/\1/p')
    check_eq "$label: digest of smtp-sink's dumps = client's" "$(json_get "$J" digest)" "$dd"
}

reject_case() {
    local m=$1 l
    # -f implies -p: no PIPELINING, so these go through the one-by-one path.
    l=$m-sink-rcpt5xx
    if sink_fail_run "$l" "$m" -f RCPT; then
        failure_check "$l" '^5' "the server's 5xx"
        check_eq "$l: a 5xx is not retried" 0 "$(json_get "$J" retries)"
        check_eq "$l: smtp-sink got no message" 0 "$(sink_count)"
    fi
    l=$m-sink-dot5xx
    if sink_fail_run "$l" "$m" -f .; then
        failure_check "$l" '^5' "the server's 5xx"
        check_eq "$l: a 5xx is not retried" 0 "$(json_get "$J" retries)"
    fi
    l=$m-sink-mail4xx
    if sink_fail_run "$l" "$m" -r MAIL; then
        failure_check "$l" '^4' "the server's 4xx"
        check_eq "$l: each 4xx retried once" 100 "$(json_get "$J" retries)"
    fi
    # PIPELINING offered: 421 and disconnect after the pipelined RCPTs.
    l=$m-sink-rcpt421
    if sink_fail_run "$l" "$m" -Q RCPT; then
        failure_check "$l" '^421 ' "the server's 421"
        check_eq "$l: each 421 retried once" 100 "$(json_get "$J" retries)"
    fi
    # Disconnect without a reply after ".": smtp-sink has the data, but the
    # client never saw a 250, so it is no delivery (and retried: temporary).
    l=$m-sink-dotdrop
    if sink_fail_run "$l" "$m" -q .; then
        failure_check "$l" 'connection lost after end of data' "'connection lost after end of data'"
        check_eq "$l: each retried once" 100 "$(json_get "$J" retries)"
    fi
    # 550 right after the 354, then smtp-sink closes the connection while the
    # client is still sending: the client's next write gets EPIPE, which
    # must be a lost connection, not a SIGPIPE (lib/reactor.c: MSG_NOSIGNAL).
    l=$m-sink-abort550
    if sink_fail_run "$l" "$m" -A 0; then
        failure_check "$l" '^5|connection lost' "550 or connection lost"
    fi
}

# The Python digest (aiosmtpd_server.py) against lib/digest.c (smtp-mock):
# the same workload sent to both gives the same server digest.
digest_port_case() {
    local m=${models[0]}
    start_mock mock || { fail "digest port: smtp-mock did not start"; return; }
    run_model digest-mock "$m" "$mock_PORT"
    stop_pid "$mock_PID"
    start_aiosmtpd || { fail "digest port: aiosmtpd did not start"; return; }
    run_model digest-aio "$m" "$aio_PORT"
    stop_pid "$aio_PID"
    local md
    md=$(json_get "$mock_STATS" digest)
    check_eq "digest port: smtp-mock saw 100 messages" 100 "$(json_get "$mock_STATS" unique_messages)"
    check_eq "digest port: Python digest = lib/digest.c's (smtp-mock)" "$md" "$(json_get "$aio_STATS" digest)"
}

[ "$have_aio" -eq 1 ] && [ ${#models[@]} -gt 0 ] && digest_port_case
for m in "${models[@]}"; do
    [ "$have_aio" -eq 1 ] && aiosmtpd_case "$m"
    if [ "$have_sink" -eq 1 ]; then sink_case "$m"; reject_case "$m"; fi
done

# No server of ours is left running.
left=0
for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -0 "$p" 2>/dev/null && left=$((left + 1)); done
check_eq "no peer server left running" 0 "$left"
finish
