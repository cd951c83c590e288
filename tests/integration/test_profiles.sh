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

# --- the sweeps under a profile (scripts/sweep --dry-run --commands) --------
# Without a profile the listing is the golden one: every command line of
# the default sweep (tests/golden/sweep/default-commands.txt).  A change to
# a default sweep on purpose regenerates it:
#   /usr/bin/python3 scripts/sweep --dry-run --commands --pin none \
#       > tests/golden/sweep/default-commands.txt
SWEEP=(/usr/bin/python3 scripts/sweep --dry-run --commands --pin none)
"${SWEEP[@]}" >"$TMP/default.txt" 2>"$TMP/default.err"
if grep -q "skipping the peer" "$TMP/default.err"; then
    echo "skip the default listing: $(grep -m1 'skipping the peer' "$TMP/default.err")"
elif diff -u tests/golden/sweep/default-commands.txt "$TMP/default.txt" >"$TMP/default.diff"; then
    pass "without a profile the sweeps' $(wc -l <"$TMP/default.txt") command lines are today's"
else
    fail "without a profile the command lines changed: $(head -20 "$TMP/default.diff")"
fi

# A profile with values found nowhere else: each one must reach every
# sweep's command lines, the swept values must sit around the profile's.
cat >"$TMP/mine.conf" <<'CONF'
# a test profile
concurrency = 30
events      = 777
recipients  = 4
body-bytes  = 3000
per-session = 3
retries     = 2
timeout     = 7s
latency     = 3ms
jitter      = 1ms
CONF
"${SWEEP[@]}" --profile "$TMP/mine.conf" >"$TMP/mine.txt" 2>"$TMP/mine.err"
check_eq "sweep --dry-run --profile: exit 0" 0 "$?"
/usr/bin/python3 - "$TMP/mine.txt" <<'PYEOF'
import shlex, sys
rows = [l.rstrip("\n").split(" | ") for l in open(sys.argv[1])]
bad, sweeps, values = [], set(), {}
for head, server, model in rows:
    sweep, mname, value = head.split()[:3]
    sweeps.add(sweep)
    values.setdefault(sweep, set()).add(value)
    m = shlex.split(model.split("   [rate from:")[0])
    s = shlex.split(server)
    def flag(args, name):
        return args[args.index(name) + 1] if name in args else None
    want = {"--recipients": "4", "--body-bytes": "3000", "--per-session": "3", "--retries": "2",
            "--timeout": "200ms" if sweep == "q7b-stall" else "7s"}     # its own: it sweeps stalls
    if sweep != "q2-cpu":
        want["--events"] = "777"
    if sweep not in ("q1-concurrency", "q1b-background", "q5-overhead", "q5-hyperfine"):
        want["--concurrency"] = "30"
    for k, v in want.items():
        if flag(m, k) != v:
            bad.append(f"{sweep} {mname} {value}: {k} {flag(m, k)} (want {v})")
    lat = {"q2-latency": value, "q5-overhead": "0", "q5-hyperfine": "0", "q11b-load-50ms": "50ms"}
    if flag(s, "--latency") != lat.get(sweep, "3ms"):
        bad.append(f"{sweep} {mname} {value}: server --latency {flag(s, '--latency')}")
    if sweep not in lat and flag(s, "--jitter") != "1ms":
        bad.append(f"{sweep} {mname} {value}: server --jitter {flag(s, '--jitter')}")
expect = {"q1-concurrency": "1 3 30 120 300", "q2-latency": "0 300us 3ms 30ms",
          "q2-cpu": "8 78 777 2331", "q1b-background": "1 3 30", "q4-blocking": "0 1ms 10ms"}
for sweep, vals in expect.items():
    got = " ".join(sorted(values.get(sweep, ()), key=lambda v: (len(v), v)))
    if set(got.split()) != set(vals.split()):
        bad.append(f"{sweep}: values {got}, want {vals}")
missing = {"q1-concurrency", "q1b-background", "q2-cpu", "q2-latency", "q3-chain", "q4-blocking",
           "q5-hyperfine", "q5-overhead", "q7-failures", "q11-load", "q11b-load-50ms"} - sweeps
if missing:
    bad.append(f"sweeps missing: {sorted(missing)}")
print("\n".join(f"FAIL profile values: {b}" for b in bad[:20]) if bad else
      f"PASS the profile's values reach all {len(rows)} command lines of {len(sweeps)} sweeps, "
      "the swept values around its own")
PYEOF
# --cpu-per-email in a profile: the models get it instead of --events, the
# Twisted reference (which cannot calibrate) is left out, q2-cpu sweeps it.
sed 's/^events .*/cpu-per-email = 2ms/' "$TMP/mine.conf" >"$TMP/cpu.conf"
"${SWEEP[@]}" --profile "$TMP/cpu.conf" >"$TMP/cpu.txt" 2>/dev/null
check_eq "profile cpu-per-email = 2ms: every model command has it (q2-cpu its own), none --events, no twisted" \
    "0 0 0 4" "$(grep -v '^q2-cpu' "$TMP/cpu.txt" | grep -vc -- '--cpu-per-email 2ms') $(grep -c -- '--events' "$TMP/cpu.txt") $(grep -c twisted "$TMP/cpu.txt") $(awk '$1 == "q2-cpu" {print $3}' "$TMP/cpu.txt" | sort -u | wc -l)"

# A bad profile: the sweep exits 2 naming FILE:LINE and the key, and writes
# no results folder.
printf 'emails = 5\nrecipients = 2000\n' >"$TMP/bad.conf"
before=$(ls results 2>/dev/null | md5sum)
out=$(/usr/bin/python3 scripts/sweep --profile "$TMP/bad.conf" --out "$TMP/never" 2>&1); rc=$?
if [ "$rc" -eq 2 ] && [[ "$out" == *"$TMP/bad.conf:2: bad value '2000' for 'recipients'"* ]] \
   && [ ! -e "$TMP/never" ] && [ "$before" = "$(ls results 2>/dev/null | md5sum)" ]; then
    pass "scripts/sweep refuses a bad profile before running: $out"
else
    fail "scripts/sweep on a bad profile: exit $rc, $out"
fi

# --- "For this workload" (scripts/report_workload.py) from the fixture -----
FIXGEN=tests/fixtures/report/make-fixture
/usr/bin/python3 "$FIXGEN" "$TMP/fx" --workload && \
    /usr/bin/python3 scripts/report-gen "$TMP/fx" --no-plots -o "$TMP/fx.md" 2>"$TMP/fx.err"
check_eq "report-gen on a workload fixture: exit 0" 0 "$?"
/usr/bin/python3 - "$TMP/fx.md" <<'PYEOF'
import re, sys
text = open(sys.argv[1]).read()
lines = text.split("\n")
bad = []
if not lines[2].startswith("**Workload profile `fixture-storm`**") or "100 emails in flight" not in lines[2] \
        or "server latency 5ms ± 1ms" not in lines[2] or "3 recipients" not in lines[2]:
    bad.append(f"line 3 does not name the profile and its values: {lines[2][:120]}")
if lines[4] != "## For this workload":
    bad.append(f"line 5 is not the section: {lines[4]}")
rows = [l for l in lines if re.match(r"\| (sync|threads|async|hybrid) \| [0-9]", l)]
sec = text.split("## For this workload")[1].split("\nGenerated by")[0]
rows = [l for l in sec.split("\n") if re.match(r"\| (sync|threads|async|hybrid) \|", l)]
if len(rows) != 4:
    bad.append(f"{len(rows)} model rows in the table")
for r in rows:
    cells = [c.strip() for c in r.strip("|").split("|")]
    # throughput, p99 closed, p99 open, CPU, lines of code, headroom: numbers
    for i in (1, 2, 3, 4, 6, 7):
        if not re.match(r"[0-9]", cells[i]):
            bad.append(f"{cells[0]}: column {i} is {cells[i]!r}")
    if cells[0] != "sync" and not cells[5].endswith("KB"):
        bad.append(f"{cells[0]}: memory per in-flight email {cells[5]!r}")
if "headroom at p99 < 200 ms" not in sec:
    bad.append("no SLO stated in the headroom column")
m = re.search(r"\*\*Recommendation: (\w+)\.\*\*", sec)
if not m or m.group(1) != "async":
    bad.append(f"recommendation {m.group(1) if m else None}, expected async (tied throughput, least memory)")
if "How it is decided:" not in sec:
    bad.append("the rules are not stated")
print("\n".join("FAIL workload section: " + b for b in bad) if bad else
      "PASS the report opens with the profile and its values, then 'For this workload': 4 models, "
      "every column, the SLO, the recommendation (async: tied throughput, least memory) and its rules")
PYEOF
# The same fixture where hybrid clearly delivers twice the rest at the
# operating point: the recommendation follows the data.
/usr/bin/python3 - "$TMP/fx/q1-concurrency.csv" <<'PYEOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for r in rows:
    if r["model"] == "hybrid" and r["value"] == "100":
        r["emails_per_s"] = str(float(r["emails_per_s"]) * 2)
w = csv.DictWriter(open(sys.argv[1], "w", newline=""), list(rows[0]), lineterminator="\n")
w.writeheader()
w.writerows(rows)
PYEOF
/usr/bin/python3 scripts/report-gen "$TMP/fx" --no-plots -o "$TMP/fx2.md" 2>/dev/null
check_eq "hybrid twice as fast at the operating point: the recommendation changes to it" \
    "**Recommendation: hybrid.** It has the highest throughput here" \
    "$(grep -o '\*\*Recommendation: [a-z]*\.\*\* It has the highest throughput here' "$TMP/fx2.md")"
# Without a workload the report has no such section (the default report is unchanged).
/usr/bin/python3 "$FIXGEN" "$TMP/fx0" && /usr/bin/python3 scripts/report-gen "$TMP/fx0" --no-plots -o "$TMP/fx0.md" 2>/dev/null
check_eq "no workload: no 'For this workload' section" 0 "$(grep -c 'For this workload\|Workload profile' "$TMP/fx0.md")"

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
