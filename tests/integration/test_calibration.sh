#!/usr/bin/env bash
# --cpu-per-email (issue 18): the calibration gives the CPU asked for, in
# every model, within 10%.  Timing-sensitive: on a machine shared with other
# work, re-run it alone before concluding anything.
source "$(dirname "$0")/common.bash"

# --- --cpu-per-email: the calibration gives the CPU asked for ---------------
# Per model: N emails at zero latency with --cpu-per-email 3ms and with 0,
# five runs each; the process's CPU (user + sys, less the calibration's own
# CPU, which the JSON records) of the least 3ms run minus the least 0 run,
# over N, must be within 10% of 3 ms.  The least of a few, on both sides as
# in the calibration: another process on the machine only ever adds CPU time
# to a run; a calibration off by 2x fails by far.
N=400
start_mock C || exit 1
cpu_of() {      # cpu_of MODEL DUR REP: the run's CPU less its calibration, seconds
    local j="$TMP/cal-$1-$2-$3.json"
    timeout 60 "$BIN/summary-$1" --server "127.0.0.1:$C_PORT" --emails $N --concurrency 2 \
        --cpu-per-email "$2" --json "$j" 2>/dev/null || { echo "nan"; return; }
    jq -r '.cpu_user_s + .cpu_sys_s - (.params.calibration.took_s // 0)' "$j"
}
least() { printf '%s\n' "$@" | sort -g | sed -n 1p; }
for model in sync threads async hybrid; do
    if [ -n "${MAILBENCH_TSAN:-}" ]; then
        # ThreadSanitizer's instrumentation costs each thread differently:
        # no CPU time measured under it means anything (make tsan still runs
        # the calibration in threads, for races).
        if [ "$(cpu_of $model 3ms 1)" != nan ]; then
            pass "$model --cpu-per-email 3ms runs clean under ThreadSanitizer (its 10% check skipped)"
        else
            fail "$model --cpu-per-email 3ms under ThreadSanitizer: the run failed"
        fi
        continue
    fi
    a=() z=()
    for rep in 1 2 3 4 5; do
        a+=("$(cpu_of $model 3ms $rep)"); z+=("$(cpu_of $model 0 $rep)")
    done
    j="$TMP/cal-$model-3ms-1.json"
    ratio=$(awk -v a="$(least "${a[@]}")" -v z="$(least "${z[@]}")" -v n=$N \
        'BEGIN { printf "%.3f", (a - z) / n / 0.003 }')
    rec=$(jq -c '[.params.calibration.asked_us, .params.events, .params.calibration.events, (.params.calibration.ns_per_event | floor)]' "$j")
    if awk -v r="$ratio" 'BEGIN { exit !(r >= 0.9 && r <= 1.1) }' && [ "$(jq -r '.params.calibration.asked_us == 3000 and .params.events == .params.calibration.events and .params.calibration.ns_per_event > 0' "$j")" = true ]; then
        pass "$model --cpu-per-email 3ms: CPU per email x$ratio of 3 ms (asked_us, events, chosen, ns/event: $rec)"
    else
        fail "$model --cpu-per-email 3ms: CPU per email x$ratio of 3 ms, not within 10% ($rec; runs ${a[*]} / ${z[*]})"
    fi
done
stop_pid "$C_PID"
finish
