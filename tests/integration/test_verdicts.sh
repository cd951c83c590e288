#!/usr/bin/env bash
# The verdict rule (MEASUREMENT.md §5) on fixtures where async wins, ties and
# loses: the same function decides every summary row, both directions alike.
# Each case rewrites async's medians in the synthetic results folder
# (tests/fixtures/report/results) and checks that the summary row flips.
source "$(dirname "$0")/common.bash"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
GEN="$ROOT/scripts/report-gen"
FIX="$ROOT/tests/fixtures/report/results"

# scale SWEEP MODEL COLUMN FACTOR — multiply one column of one model's rows
scale() {
    /usr/bin/python3 - "$TMP/res/$1.csv" "$2" "$3" "$4" <<'PY'
import csv, sys
path, model, col, k = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
rows = list(csv.DictReader(open(path, newline="")))
for r in rows:
    if r["model"] == model and r[col] not in ("", None):
        r[col] = repr(float(r[col]) * k)
w = csv.DictWriter(open(path, "w", newline=""), rows[0].keys(), lineterminator="\n")
w.writeheader(); w.writerows(rows)
PY
}
# copy_threads SWEEP COLUMN — async's column := threads' (same x, same rep)
copy_threads() {
    /usr/bin/python3 - "$TMP/res/$1.csv" "$2" <<'PY'
import csv, sys
path, col = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(path, newline="")))
t = {(r["value"], r["rep"]): r[col] for r in rows if r["model"] == "threads"}
for r in rows:
    if r["model"] == "async" and (r["value"], r["rep"]) in t:
        r[col] = t[(r["value"], r["rep"])]
w = csv.DictWriter(open(path, "w", newline=""), rows[0].keys(), lineterminator="\n")
w.writeheader(); w.writerows(rows)
PY
}
row() { grep "^| $1 |" "$TMP/r.md" | head -1; }
fresh() { rm -rf "$TMP/res"; cp -r "$FIX" "$TMP/res"; }
gen() { "$GEN" "$TMP/res" --no-plots >"$TMP/r.md" 2>"$TMP/gen.err" || fail "report-gen: $(cat "$TMP/gen.err")"; }

# Throughput with many tasks (Q1, async against threads at the top concurrency).
fresh; scale q1-concurrency async emails_per_s 3; gen
case "$(row 'throughput with many tasks')" in *"**advantage**"*) pass "async x3 faster: advantage";; *) fail "x3: $(row 'throughput with many tasks')";; esac
fresh; scale q1-concurrency async emails_per_s 0.3; gen
case "$(row 'throughput with many tasks')" in *"**disadvantage**"*) pass "async x0.3: disadvantage";; *) fail "x0.3: $(row 'throughput with many tasks')";; esac
fresh; copy_threads q1-concurrency emails_per_s; gen
case "$(row 'throughput with many tasks')" in *"no clear difference"*) pass "async = threads: no clear difference";; *) fail "tie: $(row 'throughput with many tasks')";; esac

# Tail latency with a blocking call (lower is better: the direction flips the ratio).
fresh; scale q4-blocking async p99_us 0.0001; gen
case "$(row 'tail latency with one blocking call')" in *"**advantage**"*) pass "async p99 x0.0001: advantage";; *) fail "p99 x0.0001: $(row 'tail latency with one blocking call')";; esac
fresh; scale q4-blocking async p99_us 10; gen
case "$(row 'tail latency with one blocking call')" in *"**disadvantage**"*) pass "async p99 x10: disadvantage";; *) fail "p99 x10: $(row 'tail latency with one blocking call')";; esac
fresh; copy_threads q4-blocking p99_us; gen
case "$(row 'tail latency with one blocking call')" in *"no clear difference"*) pass "p99 equal: no clear difference";; *) fail "p99 tie: $(row 'tail latency with one blocking call')";; esac

# Dependent tasks: a computed verdict, never "see text".
fresh; scale q3-chain async emails_per_s 0.2; gen
case "$(row 'throughput with dependent tasks')" in *"**disadvantage**"*) pass "chains: async x0.2 is a disadvantage";; *) fail "chains: $(row 'throughput with dependent tasks')";; esac
fresh; gen
if grep -q "see text" "$TMP/r.md"; then fail "a summary row says 'see text'"; else pass "every row computed"; fi

# The crossover rule is symmetric: a 2% loss is no clear difference, not "async best".
fresh; copy_threads q2-latency emails_per_s; scale q2-latency async emails_per_s 0.98; gen
if sed -n '/^### 2b/,/^## 3/p' "$TMP/r.md" | grep -q "async at"; then
    fail "a 2% loss made async the winner: $(sed -n '/^### 2b/,/^## 3/p' "$TMP/r.md" | grep Verdict)"
else pass "a 2% loss to threads is not an async win"; fi

# Results run in randomised blocks (env.json order = blocked): the rows whose
# sides share 3 blocks or more say "paired", and the method says how the runs
# were ordered; without it (older results) neither.
fresh
jq '.sweeps |= map_values(. + {order: "blocked"})' "$TMP/res/env.json" >"$TMP/env.json" && mv "$TMP/env.json" "$TMP/res/env.json"
gen
if grep -q "^| .*3 v 3 runs, paired |" "$TMP/r.md"; then pass "blocked results: a 3 v 3 row is paired"
else fail "blocked results: no paired row: $(grep -c 'v 3 runs' "$TMP/r.md") rows with 3 runs"; fi
if grep -q "one at a time in randomised blocks" "$TMP/r.md"; then pass "blocked results: the method says so"
else fail "blocked results: the method does not say how the runs were ordered"; fi
fresh; gen
if grep -q "runs, paired\|randomised blocks" "$TMP/r.md"; then fail "unblocked results read as paired"
else pass "unblocked results: no row paired"; fi

# scripts/compare-results: the same folder twice agrees; a folder where async
# lost throughput flips that row (exit 1) and lists the points that moved.
"$ROOT/scripts/compare-results" "$FIX" "$FIX" >"$TMP/cmp0" 2>&1; check_eq "compare-results: same folder exits 0" 0 $?
if grep -q "0 verdict(s) flip" "$TMP/cmp0"; then pass "same folder: no flip"; else fail "same folder: $(grep flip "$TMP/cmp0")"; fi
fresh; scale q1-concurrency async emails_per_s 0.3
"$ROOT/scripts/compare-results" "$FIX" "$TMP/res" >"$TMP/cmp1" 2>&1; check_eq "compare-results: a flip exits 1" 1 $?
if grep -q "^| throughput with many tasks | advantage .*| disadvantage .*| \*\*FLIP\*\* |" "$TMP/cmp1"; then
    pass "the flipped row is named"; else fail "flip not shown: $(grep 'many tasks' "$TMP/cmp1")"; fi
if grep -q "^| q1-concurrency | async | 10000 |" "$TMP/cmp1"; then pass "moved points listed"; else fail "moved points: $(grep -c q1-concurrency "$TMP/cmp1")"; fi
"$ROOT/scripts/compare-results" "$FIX" "$TMP/nowhere" >/dev/null 2>&1; check_eq "compare-results: not a results folder exits 2" 2 $?
finish
