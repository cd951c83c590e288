# common.bash — helpers sourced by the integration tests.
# Servers are started on 127.0.0.1 port 0; their pids are recorded and they
# are stopped (by pid) when the test exits, whatever happens.
set -u
BIN=${MAILBENCH_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/bin}
TMP=$(mktemp -d)
PIDS=()
NFAIL=0

cleanup() {
    local p
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP    # a signal still runs cleanup (via EXIT)

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; NFAIL=$((NFAIL + 1)); }
# check DESC EXPECTED ACTUAL
check_eq() {
    if [ "$2" = "$3" ]; then pass "$1 ($3)"; else fail "$1: expected '$2', got '$3'"; fi
}

# start_mock NAME [smtp-mock options...] — starts bin/smtp-mock on a free port.
# Sets ${NAME}_PORT, ${NAME}_PID and ${NAME}_STATS (its --stats file).
start_mock() {
    local name=$1; shift
    local out="$TMP/$name.out" stats="$TMP/$name.stats.json"
    rm -f "$out" "$stats"       # a reused name must not show the last server's port
    "$BIN/smtp-mock" --listen 127.0.0.1:0 --stats "$stats" "$@" >"$out" 2>"$TMP/$name.err" &
    local pid=$!
    PIDS+=("$pid")
    local i
    for i in $(seq 1 100); do
        if grep -q '^listening on ' "$out" 2>/dev/null; then break; fi
        sleep 0.05
    done
    local port
    port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out" | head -n1)
    if [ -z "$port" ]; then echo "smtp-mock did not start:"; cat "$TMP/$name.err"; return 1; fi
    printf -v "${name}_PORT" '%s' "$port"
    printf -v "${name}_PID" '%s' "$pid"
    printf -v "${name}_STATS" '%s' "$stats"
}

# stop_pid PID — SIGTERM, wait up to 10 s for it to exit.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    wait "$pid" 2>/dev/null
}

# json_get FILE FIELD — a top-level field of a JSON object (string or number).
json_get() { jq -r ".$2" "$1"; }

finish() { [ "$NFAIL" -eq 0 ]; exit $?; }

# run_verified LABEL MODEL "MOCK OPTIONS" MODEL-OPTIONS... — a fresh smtp-mock,
# one run of bin/summary-MODEL against it, then the checks that make a run
# verified: every email ended, delivered = the server's distinct Message-IDs,
# the digests equal.  Sets LAST_RC, LAST_JSON and LAST_STATS.
run_verified() {
    local label=$1 model=$2 mockopts=$3; shift 3
    start_mock srv $mockopts || { fail "$label: smtp-mock did not start"; return; }
    local json="$TMP/$label.json"
    timeout 120 "$BIN/summary-$model" --server "127.0.0.1:$srv_PORT" --json "$json" "$@" \
        2>"$TMP/$label.err"
    LAST_RC=$?
    stop_pid "$srv_PID"
    LAST_JSON=$json
    LAST_STATS=$srv_STATS
    if [ ! -s "$json" ]; then fail "$label: no JSON (exit $LAST_RC)"; cat "$TMP/$label.err"; return; fi
    local emails delivered failed
    emails=$(json_get "$json" emails); delivered=$(json_get "$json" delivered)
    failed=$(json_get "$json" failed)
    check_eq "$label: every email ended" "$emails" "$((delivered + failed))"
    check_eq "$label: delivered = server's distinct Message-IDs" \
        "$(json_get "$srv_STATS" unique_messages)" "$delivered"
    check_eq "$label: digest = server's digest" \
        "$(json_get "$srv_STATS" digest)" "$(json_get "$json" digest)"
    # ... and the sweeps' own rule (scripts/mbharness.py), the one copy of it.
    check_eq "$label: verified by the sweeps' rule" valid "$(harness_verify "$json" "$srv_STATS")"
}

# harness_verify MODEL.json SERVER.json — "valid" or "invalid: reason", from
# scripts/mbharness.py: the rule scripts/sweep uses, not a copy of it.
harness_verify() {
    /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/../../scripts/mbharness.py" verify "$1" "$2"
}
