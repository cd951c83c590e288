#!/usr/bin/env bash
# Workload profiles end to end (issue 18): smtp-mock --profile applies the
# server keys (a flag overrides one); bad profiles are refused before anything
# runs, exit 2, the message naming FILE:LINE and the key, by the models, by
# smtp-mock and by scripts/sweep alike, and nothing is written.
source "$(dirname "$0")/common.bash"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

# --- smtp-mock --profile: the server keys reach the server -----------------
start_mock P --profile workloads/profiles/slow-server.conf || exit 1
stop_pid "$P_PID"
check_eq "smtp-mock --profile slow-server: latency" "0.200000" "$(jq -r '.params.latency_s' "$P_STATS" | xargs printf '%.6f')"
check_eq "smtp-mock --profile slow-server: jitter (uniform)" "0.050000 uniform" \
    "$(jq -r '"\(.params.jitter_s) \(.params.latency_dist)"' "$P_STATS" | awk '{printf "%.6f %s", $1, $2}')"
start_mock P --profile workloads/profiles/flaky-server.conf --latency 3ms || exit 1
stop_pid "$P_PID"
check_eq "smtp-mock --profile flaky-server: faults and stage from the profile, latency from the flag" \
    "0.003 0.1 0.01 0.02 data" \
    "$(jq -r '.params | "\(.latency_s) \(.tempfail) \(.permfail) \(.drop) \(.fault_stage)"' "$P_STATS")"

# A run against the mock started from the same profile: the reply delay is
# the profile's (cpu-heavy: 1 ms, 4 round trips to the reply to the final dot).
start_mock P --profile workloads/profiles/cpu-heavy.conf || exit 1
timeout 60 "$BIN/summary-async" --server "127.0.0.1:$P_PORT" --emails 20 --concurrency 1 \
    --events 10 --json "$TMP/cpu-heavy.json" 2>/dev/null
stop_pid "$P_PID"
p50=$(jq -r '.p50_us' "$TMP/cpu-heavy.json")
if [ "${p50%.*}" -ge 4000 ] && [ "${p50%.*}" -le 20000 ]; then
    pass "a model against smtp-mock --profile cpu-heavy.conf sees its 1 ms replies (p50 ${p50} us)"
else
    fail "p50 ${p50} us against smtp-mock --profile cpu-heavy.conf (1 ms x 4 round trips expected)"
fi

# --- bad profiles: exit 2, FILE:LINE and the key, nothing written -----------
bad() {     # bad NAME TEXT WANT: every program refuses it
    local name=$1 text=$2 want=$3 f="$TMP/$1.conf" prog out rc
    printf '%b' "$text" >"$f"
    for prog in summary-sync summary-async summary-threads summary-hybrid smtp-mock; do
        rm -f "$TMP/never.json"
        if [ "$prog" = smtp-mock ]; then
            out=$(timeout 10 "$BIN/$prog" --listen 127.0.0.1:0 --profile "$f" --stats "$TMP/never.json" 2>&1 </dev/null)
        else
            out=$(timeout 10 "$BIN/$prog" --server 127.0.0.1:9 --profile "$f" --json "$TMP/never.json" 2>&1)
        fi
        rc=$?
        if [ "$rc" -eq 2 ] && [[ "$out" == *"$f:"*"$want"* ]] && [ ! -e "$TMP/never.json" ]; then
            pass "$prog refuses $name: ${out%%$'\n'*}"
        else
            fail "$prog on $name: exit $rc, wanted 2 and '$f:...$want', got: $out"
        fi
    done
}
bad unknown-key 'emails = 5\n# x\nlatnecy = 5ms\n' "3: unknown key 'latnecy'"
bad out-of-range 'concurrency = 0\n' "1: bad value '0' for 'concurrency'"
bad malformed 'emails = 5\nlatency 5ms\n' "2: expected 'key = value'"
bad jitter 'latency = 1ms\njitter = 5ms\n' "2: jitter = 5ms is more than latency = 1ms"
bad faults 'tempfail = 0.7\ndrop = 0.7\n' "2: 'drop': tempfail + permfail + drop + stall"
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 999000 ]; then
    bad fd-limit "emails = 5\nconcurrency = $((hard + 1))\n" "2: 'concurrency = $((hard + 1))' needs"
else
    echo "skip fd-limit check: hard descriptor limit $hard"
fi

# --- --cpu-per-email: the calibration gives the CPU asked for ---------------
# Per model: N emails at zero latency with --cpu-per-email 3ms and with 0,
# five runs each; the process's CPU (user + sys, less the calibration's own
# CPU, which the JSON records) of the median 3ms run minus the median 0 run,
# over N, must be within 10% of 3 ms.  Medians and a ratio: another process
# on the machine slows both alike; a calibration off by 2x fails by far.
N=400
start_mock C || exit 1
cpu_of() {      # cpu_of MODEL DUR REP: the run's CPU less its calibration, seconds
    local j="$TMP/cal-$1-$2-$3.json"
    timeout 60 "$BIN/summary-$1" --server "127.0.0.1:$C_PORT" --emails $N --concurrency 2 \
        --cpu-per-email "$2" --json "$j" 2>/dev/null || { echo "nan"; return; }
    jq -r '.cpu_user_s + .cpu_sys_s - (.params.calibration.took_s // 0)' "$j"
}
median5() { printf '%s\n' "$@" | sort -g | sed -n 3p; }
for model in sync threads async hybrid; do
    a=() z=()
    for rep in 1 2 3 4 5; do
        a+=("$(cpu_of $model 3ms $rep)"); z+=("$(cpu_of $model 0 $rep)")
    done
    j="$TMP/cal-$model-3ms-1.json"
    ratio=$(awk -v a="$(median5 "${a[@]}")" -v z="$(median5 "${z[@]}")" -v n=$N \
        'BEGIN { printf "%.3f", (a - z) / n / 0.003 }')
    rec=$(jq -c '[.params.calibration.asked_us, .params.events, .params.calibration.events, (.params.calibration.ns_per_event | floor)]' "$j")
    if awk -v r="$ratio" 'BEGIN { exit !(r >= 0.9 && r <= 1.1) }' && [ "$(jq -r '.params.calibration.asked_us == 3000 and .params.events == .params.calibration.events and .params.calibration.ns_per_event > 0' "$j")" = true ]; then
        pass "$model --cpu-per-email 3ms: CPU per email x$ratio of 3 ms (asked_us, events, chosen, ns/event: $rec)"
    else
        fail "$model --cpu-per-email 3ms: CPU per email x$ratio of 3 ms, not within 10% ($rec; runs ${a[*]} / ${z[*]})"
    fi
done
stop_pid "$C_PID"
# The CPU work is set once: both ways at once is a usage error, and the
# Twisted reference, which cannot calibrate, refuses it clearly.
out=$("$BIN/summary-async" --events 5 --cpu-per-email 3ms 2>&1); rc=$?
check_eq "--events with --cpu-per-email: exit 2 naming both" "2 1" "$rc $(grep -c -- '--events and --cpu-per-email' <<<"$out")"
if [ -x "$BIN/summary-twisted" ] && /usr/bin/python3 -c 'import twisted' 2>/dev/null; then
    out=$("$BIN/summary-twisted" --cpu-per-email 3ms 2>&1); rc=$?
    check_eq "summary-twisted refuses --cpu-per-email (exit 2, says to use --events)" "2 1" \
        "$rc $(grep -c 'give --events N instead' <<<"$out")"
fi

finish
