#!/usr/bin/env bash
# async with N reactors in the sweeps and the report (issue 16):
#  - scripts/sweep runs the model name "async2" as bin/summary-async
#    --reactors 2 (a real, short, verified run; the JSON says 2 reactors);
#    the Q1, Q2 and open-loop sweep files list it;
#  - scripts/report-gen shows it as its own column/row "async ×2" in Q1, Q2
#    (with its ratio to async by the verdict rule), Q6 (memory fit) and Q8
#    (its lines of code: async's plus async_reactors.c), and its own line in
#    the figures' data, on the synthetic results folder with async2 rows added.
source "$(dirname "$0")/common.bash"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

# The sweep files.
for f in q1-concurrency q2-cpu q2-latency q11-load; do
    grep -qE '^models = .*\basync2\b' "$ROOT/scripts/sweeps/$f.conf" && pass "$f lists async2" \
        || fail "$f.conf does not list async2"
done

# A real sweep run of async2: one point, quick profile.
sed -e 's/^quick.values = .*/quick.values = 10/' "$ROOT/scripts/sweeps/q2-cpu.conf" >"$TMP/q2-cpu.conf"
timeout 120 "$ROOT/scripts/sweep" --bin "$BIN" --profile quick --reps 1 --models async2 --pin none \
    --out "$TMP/sw" "$TMP/q2-cpu.conf" 2>"$TMP/sw.err"
check_eq "sweep of async2: exit status" 0 "$?"
run=$(ls "$TMP"/sw/runs/q2-cpu-*.json 2>/dev/null | tail -1)
if [ -n "$run" ]; then
    if jq -r .command "$run" | grep -qE 'summary-async --reactors 2 '; then pass "async2 runs summary-async --reactors 2"
    else fail "async2 command: $(jq -r .command "$run")"; fi
    check_eq "async2: the JSON says 2 reactors" 2 "$(jq .model.params.reactors "$run")"
    check_eq "async2: verified" true "$(jq .valid "$run")"
    check_eq "async2: its CSV rows are named async2" 2 "$(grep -c ',async2,' "$TMP/sw/q2-cpu.csv")"
else
    fail "sweep of async2: no run file ($(tail -3 "$TMP/sw.err"))"
fi

# The report: async2 rows added to the synthetic results (async's, x1.9 at q2-cpu).
cp -r "$ROOT/tests/fixtures/report/results" "$TMP/res"
cp "$ROOT/models/mailer/async_reactors.c" "$TMP/res/code/"
/usr/bin/python3 - "$TMP/res" <<'EOF'
import csv, sys
for name in ("q1-concurrency", "q2-cpu", "q2-latency"):
    path = f"{sys.argv[1]}/{name}.csv"
    rows = list(csv.DictReader(open(path)))
    extra = []
    for r in rows:
        if r["model"] == "async":
            r2 = dict(r, model="async2")
            if name == "q2-cpu":
                r2["emails_per_s"] = str(float(r["emails_per_s"]) * 1.9)
            extra.append(r2)
    w = csv.DictWriter(open(path, "w", newline=""), fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows + extra)
EOF
"$ROOT/scripts/report-gen" "$TMP/res" -o "$TMP/r.md" 2>"$TMP/gen.err"
check_eq "report-gen with async2 rows: exit status" 0 "$?"
grep -q "warning\|error" "$TMP/gen.err" && fail "report-gen: $(head -3 "$TMP/gen.err")" || pass "report-gen: no warning"
if grep -q '^| concurrency | sync | threads | async | hybrid | async ×2 | twisted (reference) | smtp-source (load) |$' "$TMP/r.md"; then
    pass "q1: an async ×2 column after the four models"; else fail "q1 table columns"; fi
check_eq "q2: async ×2 columns (2a throughput, CPU; 2b)" 3 \
    "$(sed -n '/^## 2\./,/^## 3\./p' "$TMP/r.md" | grep -c '^| [a-z ]* | sync | threads | async | hybrid | async ×2 |$')"
if grep -qE 'at 100000 events per email async ×2 is faster than async \(async ×2 ÷ async ×1\.9' "$TMP/r.md"; then
    pass "q2: async ×2 against async by the verdict rule"; else fail "q2: no async ×2 ratio line"; fi
if sed -n '/^## 6\./,/^## 7\./p' "$TMP/r.md" | grep -qE '^\| async ×2 \| [0-9.]+ KB \|'; then
    pass "q6: async ×2 memory row"; else fail "q6: no async ×2 row"; fi
if sed -n '/^## 8\./,/^## 9\./p' "$TMP/r.md" | grep -qE '^\| async ×2 \| .*async_reactors.c.* \| [0-9]+ \|' \
    && grep -qE '^async ×2 is async plus `async_reactors.c` .*: [0-9]+ more lines' "$TMP/r.md"; then
    pass "q8: async ×2 counted, with what it adds"; else fail "q8: no async ×2 code row"; fi
grep -q 'async ×4' "$TMP/r.md" && fail "async ×4 shown without runs" || pass "no row for a variant not run"
if grep -q '^# async2:' "$TMP/res/plots/data/fig2a.dat"; then pass "fig2a has an async2 line"; else fail "fig2a data"; fi
finish
