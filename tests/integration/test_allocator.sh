#!/usr/bin/env bash
# test_allocator.sh — one allocator behaviour in every model (issue 10: the
# models differ only in how they wait).  glibc's main arena, where sync and
# async build their emails, used to give its heap back with brk after every
# large free and fault it in again at the next build: ~110 minor page faults
# per email at 16,000 events in sync and async, ~1.5 in threads and hybrid.
# mailer_prepare fixes the trim and mmap thresholds in every model.
#
# The check counts minor page faults (getrusage of the child: a count, not a
# time, so a busy machine does not move it): for 300 emails of 16,000 events
# each model stays under 5 faults per email on top of its 0-event run, and
# no model takes more than 3x another's (+300 for start-up differences).
source "$(dirname "$0")/common.bash"

start_mock A || exit 1
faults() {      # faults MODEL EVENTS: the run's minor page faults
    /usr/bin/python3 - "$BIN/summary-$1" "$A_PORT" "$2" <<'EOF'
import resource, subprocess, sys
prog, port, events = sys.argv[1:]
rc = subprocess.run([prog, "--server", f"127.0.0.1:{port}", "--emails", "300", "--concurrency", "2",
                     "--events", events, "--retries", "0"], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, timeout=120).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt if rc == 0 else f"exit{rc}")
EOF
}
declare -A per
for m in sync threads async hybrid; do
    big=$(faults $m 16000) zero=$(faults $m 0)
    case "$big$zero" in *exit*) fail "$m: a run failed ($big / $zero)"; continue ;; esac
    per[$m]=$(( big > zero ? big - zero : 0 ))
    if [ "${per[$m]}" -le 1500 ]; then
        pass "$m: $((per[$m])) minor faults for 300 emails of 16,000 events beyond its 0-event run (<= 5 an email)"
    else
        fail "$m: $((per[$m])) minor faults for 300 emails of 16,000 events beyond its 0-event run (> 5 an email: the allocator trims and regrows)"
    fi
done
lo= hi=
for m in "${!per[@]}"; do
    v=${per[$m]}
    if [ -z "$lo" ] || [ "$v" -lt "$lo" ]; then lo=$v; fi
    if [ -z "$hi" ] || [ "$v" -gt "$hi" ]; then hi=$v; fi
done
if [ -n "$hi" ] && [ "$hi" -le $(( 3 * lo + 300 )) ]; then
    pass "the models' extra faults are alike (lowest $lo, highest $hi)"
else
    fail "the models' extra faults differ (lowest ${lo:-?}, highest ${hi:-?})"
fi
stop_pid "$A_PID"
finish
