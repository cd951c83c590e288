#!/usr/bin/env bash
# A real MTA as the target (issue 17): a private Postfix instance
# (scripts/postfix-private, scripts/mbpostfix.py) on a loopback test port,
# every message discarded, nothing leaving the machine.
#   (a) by hand: start it, send with summary-async, stop it; the run verifies
#       from Postfix's own log (Message-IDs discarded and removed = the
#       model's delivered emails); the same log refutes a run that claims one
#       email more, or another seed's Message-IDs;
#   (b) scripts/sweep --target postfix: each model (small counts) against a
#       fresh instance per run, every run verified from its log, the log kept;
#   (c) nothing left: no master process of ours, the port closed.
# Needs root and Postfix (/usr/sbin/postfix): otherwise SKIP (passes).
source "$(dirname "$0")/common.bash"
ROOTDIR=$(cd "$(dirname "$0")/../.." && pwd)
PF="$ROOTDIR/scripts/postfix-private"
T0=$(date +%s%N)
if [ "$(id -u)" -ne 0 ] || [ ! -x /usr/sbin/postfix ]; then
    echo "SKIP postfix target: needs root and Postfix (/usr/sbin/postfix, Debian package postfix)"
    exit 0
fi
PFD=$(mktemp -d /tmp/mailbench-pftest-XXXXXX) && chmod 755 "$PFD"   # Postfix's daemons must reach it
ls -d /tmp/mailbench-postfix-* 2>/dev/null | sort >"$TMP/before"
pf_cleanup() {        # an instance left by a failure: stop it, then its master by pid
    local d pid
    for d in "$PFD" $(ls -d /tmp/mailbench-postfix-* 2>/dev/null | sort | comm -13 "$TMP/before" -); do
        [ -f "$d/postfix/etc/main.cf" ] || continue
        /usr/sbin/postfix -c "$d/postfix/etc" stop >/dev/null 2>&1
        pid=$(cat "$d/postfix/queue/pid/master.pid" 2>/dev/null | tr -d ' ')
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    done
    rm -rf "$PFD"
}
trap 'pf_cleanup; cleanup' EXIT

# (a) by hand
"$PF" start "$PFD" --listen 127.0.0.1:0 >"$TMP/start.out" 2>&1
check_eq "(a) postfix-private start" 0 "$?"
ADDR=$(sed -n 's/^listening on //p' "$TMP/start.out")
MPID=$(sed -n 's/^master pid //p' "$TMP/start.out")
case "$ADDR" in 127.0.0.1:[0-9]*) pass "(a) listening on the loopback ($ADDR)" ;; *) fail "(a) start: $(cat "$TMP/start.out")" ;; esac
grep -q '^default_transport = discard:' "$PFD/postfix/etc/main.cf" && pass "(a) default_transport = discard" || fail "(a) main.cf"
timeout 60 "$BIN/summary-async" --server "$ADDR" --emails 40 --concurrency 8 --events 20 --retries 0 \
    --seed 5 --json "$TMP/a.json" 2>"$TMP/a.err"
check_eq "(a) summary-async delivered to Postfix" "0 40" "$? $(json_get "$TMP/a.json" delivered)"
"$PF" stop "$PFD" >"$TMP/stop.out" 2>&1
check_eq "(a) postfix-private stop" 0 "$?"
kill -0 "$MPID" 2>/dev/null && fail "(a) master $MPID still running" || pass "(a) master stopped"
LOG="$PFD/postfix/maillog"
check_eq "(a) the log has a Message-ID per email" 40 "$(grep -c 'postfix/cleanup.*message-id=<mb\.5\.' "$LOG")"
check_eq "(a) every one discarded" 40 "$(grep -c 'postfix/discard.*status=sent' "$LOG")"
"$PF" verify "$LOG" "$TMP/a.json" >"$TMP/v" 2>&1
case "$?:$(cat "$TMP/v")" in "0:valid (Postfix: 40 queued, 40 discarded, 40 distinct Message-IDs)") pass "(a) verified from the log" ;;
    *) fail "(a) verify: $(cat "$TMP/v")" ;; esac
jq '.delivered = 41 | .emails = 41' "$TMP/a.json" >"$TMP/more.json"
"$PF" verify "$LOG" "$TMP/more.json" >"$TMP/v" 2>&1
case "$?:$(cat "$TMP/v")" in "1:invalid: lost"*) pass "(a) a run claiming one more: invalid (lost)" ;; *) fail "(a) more: $(cat "$TMP/v")" ;; esac
jq '.params.seed = 6' "$TMP/a.json" >"$TMP/seed.json"
"$PF" verify "$LOG" "$TMP/seed.json" >"$TMP/v" 2>&1
case "$?:$(cat "$TMP/v")" in "1:invalid: Message-ID <mb.5."*"not one this run sent"*) pass "(a) another run's Message-IDs: invalid" ;;
    *) fail "(a) seed: $(cat "$TMP/v")" ;; esac

# (b) every model through the sweep, a fresh instance per run
cat >"$TMP/mta.conf" <<'CONF'
question = 12
title = real MTA test
param = concurrency
unit = emails in flight
values = 4
models = sync threads async hybrid
server = --latency 0
model = --concurrency {x} --emails {emails} --events 20 --retries 0 --seed {seed}
emails = 25
timeout = 60
verdict_reps = 1
CONF
"$ROOTDIR/scripts/sweep" --out "$TMP/b" --reps 1 --bin "$BIN" --target postfix \
    "$TMP/mta.conf" >/dev/null 2>"$TMP/b.err"
check_eq "(b) sweep --target postfix exit" 0 "$?"
csv_col() { /usr/bin/python3 -c 'import csv,sys; print(" ".join(sorted(r[sys.argv[2]] for r in csv.DictReader(open(sys.argv[1])) if r["warmup"] == "0")))' "$@"; }
check_eq "(b) a run per model" "async hybrid sync threads" "$(csv_col "$TMP/b/mta.csv" model)"
check_eq "(b) every run verified from Postfix's log" "1 1 1 1" "$(csv_col "$TMP/b/mta.csv" valid)"
check_eq "(b) Postfix discarded each run's 25" "25 25 25 25" "$(csv_col "$TMP/b/mta.csv" srv_unique_messages)"
n=$(ls "$TMP"/b/runs/mta-*.maillog.gz 2>/dev/null | wc -l)
check_eq "(b) each run's log kept" 5 "$n"
R=$(ls "$TMP"/b/runs/mta-0002.json)
check_eq "(b) the log's discards = the run's" 25 "$(zcat "${R%.json}.maillog.gz" | grep -c 'postfix/discard.*status=sent')"
check_eq "(b) env.json says the target" postfix "$(jq -r .hosts.target "$TMP/b/env.json")"

# (b, continued) a sweep file's own target, and the report's section: the same
# sweep against Postfix (target = postfix) and against smtp-mock, side by side
sed 's/^question = 12$/target = postfix\nquestion = 12/; s/^models = .*/models = async sync/' "$TMP/mta.conf" >"$TMP/mta-postfix.conf"
sed 's/^question = 12$/target = mock\nquestion = 12/; s/^models = .*/models = async sync/' "$TMP/mta.conf" >"$TMP/mta-mock.conf"
"$ROOTDIR/scripts/sweep" --out "$TMP/r" --reps 1 --pin none --bin "$BIN" "$TMP/mta-postfix.conf" \
    "$TMP/mta-mock.conf" >/dev/null 2>"$TMP/r.err"
check_eq "(b) target = postfix and target = mock in one sweep: exit" 0 "$?"
check_eq "(b) the postfix sweep's runs (warm-up + 2) verified from Postfix's log" 3 \
    "$(jq -r '"\(.server.mta) \(.valid)"' "$TMP"/r/runs/mta-postfix-*.json | grep -c '^postfix .* true$')"
check_eq "(b) the mock sweep's runs have smtp-mock's stats" 3 "$(jq -r '.server.schema' "$TMP"/r/runs/mta-mock-*.json | grep -c mailbench.server)"
"$ROOTDIR/scripts/report-gen" "$TMP/r" --no-plots -o "$TMP/r/REPORT.md" 2>"$TMP/rg.err"
check_eq "(b) report-gen exit" 0 "$?"
grep -q '^## A real MTA as the target: Postfix' "$TMP/r/REPORT.md" && pass "(b) the report has the real-MTA section" \
    || fail "(b) no real-MTA section: $(cat "$TMP/rg.err")"
check_eq "(b) a row per model, Postfix beside smtp-mock" 2 \
    "$(grep -cE '^\| (async|sync) \| 4 \| [0-9,.]+ \| [0-9,.]+ \| ×[0-9.]+ \|' "$TMP/r/REPORT.md")"

# (c) nothing left running
check_eq "(c) the sweep's instances removed" "" "$(ls -d /tmp/mailbench-postfix-* 2>/dev/null | sort | comm -13 "$TMP/before" -)"
MPID=$(cat "$PFD/postfix/queue/pid/master.pid" 2>/dev/null | tr -d ' ')
[ -n "$MPID" ] && kill -0 "$MPID" 2>/dev/null && fail "(c) master $MPID still running" || pass "(c) no master of ours left"
ms=$(( ($(date +%s%N) - T0) / 1000000 ))
echo "postfix target: run time $((ms / 1000)).$(printf %03d $((ms % 1000)))s"
finish
