#!/usr/bin/env bash
# test_report_gen.sh — scripts/report-gen on the synthetic results folder in
# tests/fixtures/report/results (and scripts/sweep on fake programs):
# same REPORT.md twice, every section and figure present, an invalid run
# shown as invalid, missing or half-written folders rejected with exit 2;
# the peers (twisted, smtp-source): their rows, section 10's figures and code
# mapping, a skipped peer noted with its reason, a fake smtp-source run.
source "$(dirname "$0")/common.bash"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
GEN="$ROOT/scripts/report-gen"
FIX="$ROOT/tests/fixtures/report"

cp -r "$FIX/results" "$TMP/res"
"$GEN" "$TMP/res" -o "$TMP/res/r1.md" 2>"$TMP/gen.err"; check_eq "report-gen exit status" 0 $?
"$GEN" "$TMP/res" -o "$TMP/res/r2.md" 2>>"$TMP/gen.err"
if cmp -s "$TMP/res/r1.md" "$TMP/res/r2.md"; then pass "same REPORT.md twice"; else fail "REPORT.md differs between two runs"; fi
for s in "## Method and machine" "## 1. " "## 2. " "## 3. " "## 4. " "## 5. " "## 6. " "## 7. " "## 8. " "## 9. " "## 10. C async versus Twisted" "## Summary"; do
    if grep -qF "$s" "$TMP/res/r1.md"; then pass "section '$s'"; else fail "section '$s' missing"; fi
done
check_eq "verdict sentences" 11 "$(grep -c '^\*\*Verdict:\*\*' "$TMP/res/r1.md")"
if grep -q '^| concurrency | sync | threads | async | hybrid | twisted (reference) | smtp-source (load) |$' "$TMP/res/r1.md"; then
    pass "q1 table has the peer columns, labelled"; else fail "no peer columns in the q1 table"; fi
if grep -q '^| concurrency | sync | threads | async | hybrid | twisted (reference) |$' "$TMP/res/r1.md"; then
    pass "no smtp-source column where it has no figure (p99)"; else fail "p99 table columns"; fi
check_eq "twisted rows at concurrency 1, 100, 1000" 3 "$(sed -n '/^## 10\./,/^### How/p' "$TMP/res/r1.md" | grep -cE '^\| (1|100|1000) \| [0-9]')"
if grep -qE 'at concurrency 1000 the C async model delivers ×[0-9.]+ the Twisted reference' "$TMP/res/r1.md" \
    && grep -qE 'costs [23]\.[0-9]+ KB in C and [89]\.[0-9]+ KB in Twisted' "$TMP/res/r1.md"; then
    pass "C async versus Twisted verdict from the data"; else fail "C async versus Twisted verdict"; fi
check_eq "mapping rows" 10 "$(sed -n '/^### How models/,/^### Retries/p' "$TMP/res/r1.md" | grep -c '^| [a-z].*(line [0-9]*) |')"
if grep -q "warning" "$TMP/gen.err"; then fail "warnings: $(head -3 "$TMP/gen.err")"; else pass "every mapped name found"; fi
if grep -q "retries a temporary failure itself.*addTimeout" "$TMP/res/r1.md"; then
    pass "what the reference does instead of sendmail's policy"; else fail "reference retry/timeout paragraph"; fi
if grep -qE 'async ÷ smtp-source throughput ×[0-9.]+ at 1000' "$TMP/res/r1.md" && grep -q '| 1000 | smtp-source (load) | .* | 1,112 |' "$TMP/res/r1.md"; then
    pass "q9 smtp-source rows and verdict"; else fail "q9 smtp-source rows"; fi
for f in fig9-size fig9-reuse fig10-tput fig10-cpu; do
    if [ -s "$TMP/res/plots/data/$f.dat" ]; then pass "figure data $f"; else fail "no $f.dat"; fi
done
# A mapped C function that is gone: a warning and the row says so.
cp -r "$FIX/results" "$TMP/map"
sed -i 's/maybe_retry/maybe_again/' "$TMP/map/code/async_mailer.c"
"$GEN" "$TMP/map" --no-plots >"$TMP/map.md" 2>"$TMP/map.err"
if grep -q "warning: mapping: function maybe_retry not found" "$TMP/map.err" && grep -q '`maybe_retry` (not found in async_mailer.c)' "$TMP/map.md"; then
    pass "missing mapped function warned"; else fail "missing mapped function: $(cat "$TMP/map.err")"; fi
# A skipped peer: the report says why.
jq '.sweeps["q1-concurrency"].skipped = {"twisted": "python3-twisted cannot be imported by /usr/bin/python3"}' \
    "$FIX/results/env.json" >"$TMP/map/env.json"
grep -v ',twisted,' "$FIX/results/q1-concurrency.csv" >"$TMP/map/q1-concurrency.csv"
"$GEN" "$TMP/map" --no-plots >"$TMP/skip.md" 2>/dev/null
if grep -q "The Twisted reference was not run in this results folder: python3-twisted cannot be imported" "$TMP/skip.md" \
    && ! grep -q "| twisted (reference) |" "$TMP/skip.md"; then
    pass "skipped twisted noted, no twisted rows"; else fail "skipped twisted note"; fi
if grep -q "lost: model delivered 20000, server has 19997 unique" "$TMP/res/r1.md" && grep -q "✗1" "$TMP/res/r1.md"; then
    pass "invalid run listed with its reason and marked in the table"
else fail "invalid run not shown"; fi
if grep -q "timed out after 120s" "$TMP/res/r1.md"; then pass "timed-out run listed"; else fail "timed-out run not listed"; fi
if [ -s "$TMP/res/plots/data/fig1a.invalid.dat" ]; then pass "invalid run in the figure data"; else fail "no invalid-run data"; fi
n=$(grep -o '](plots/[a-z0-9-]*\.png)' "$TMP/res/r1.md" | sort -u | wc -l)
missing=0
for f in $(grep -o 'plots/[a-z0-9-]*\.png' "$TMP/res/r1.md" | sort -u); do
    [ -s "$TMP/res/$f" ] || { missing=$((missing + 1)); echo "missing $f"; }
done
check_eq "figures linked from the report exist" 0 "$missing"
if [ "$n" -ge 10 ]; then pass "$n figures linked"; else fail "only $n figures linked"; fi
if [ -s "$TMP/res/plots/fig1a-throughput.svg" ]; then pass "SVG written"; else fail "no SVG"; fi
if grep -q "gnuplot failed" "$TMP/gen.err"; then fail "gnuplot errors: $(head -3 "$TMP/gen.err")"; else pass "gnuplot ran clean"; fi

# Errors a user can cause: exit 2 and one clear message.
"$GEN" "$TMP/nowhere" >/dev/null 2>"$TMP/e1"; rc=$?
check_eq "missing folder exits 2" 2 "$rc"
if grep -q "no such results folder" "$TMP/e1"; then pass "missing folder message"; else fail "message: $(cat "$TMP/e1")"; fi
mkdir "$TMP/empty"
"$GEN" "$TMP/empty" >/dev/null 2>"$TMP/e2"; check_eq "folder without env.json exits 2" 2 $?
if grep -q "env.json is missing" "$TMP/e2"; then pass "no env.json message"; else fail "message: $(cat "$TMP/e2")"; fi
cp -r "$FIX/results" "$TMP/half"
jq '.sweeps["q3-chain"].complete = false | .complete = false' "$FIX/results/env.json" >"$TMP/half/env.json"
"$GEN" "$TMP/half" --no-plots >/dev/null 2>"$TMP/e3"; check_eq "half-written folder exits 2" 2 $?
if grep -q "half-written.*q3-chain" "$TMP/e3"; then pass "half-written message names the sweep"; else fail "message: $(cat "$TMP/e3")"; fi
"$GEN" "$TMP/half" --no-plots --partial >"$TMP/p.md" 2>/dev/null; check_eq "--partial reports anyway" 0 $?
rm "$TMP/half/q7-failures.csv"
jq '.sweeps["q3-chain"].complete = true | .complete = true' "$FIX/results/env.json" >"$TMP/half/env.json"
"$GEN" "$TMP/half" --no-plots >/dev/null 2>"$TMP/e4"; check_eq "missing sweep CSV exits 2" 2 $?
if grep -q "q7-failures.csv is missing" "$TMP/e4"; then pass "missing CSV message"; else fail "message: $(cat "$TMP/e4")"; fi
head -c 300 "$FIX/results/env.json" >"$TMP/half/env.json"
"$GEN" "$TMP/half" --no-plots >/dev/null 2>"$TMP/e5"; check_eq "truncated env.json exits 2" 2 $?

# The runner, end to end on fake programs (no SMTP): one lossy model.
FAKE_LOSE=async MAILBENCH_SMTP_SOURCE="$FIX/fakebin/smtp-source" timeout 120 "$ROOT/scripts/sweep" --profile quick \
    --bin "$FIX/fakebin" --out "$TMP/sw" "$ROOT/scripts/sweeps/q1-concurrency.conf" \
    "$ROOT/scripts/sweeps/q5-hyperfine.conf" "$ROOT/scripts/sweeps/q9-reuse.conf" >/dev/null 2>"$TMP/sw.err"
check_eq "sweep on fake programs exits 0" 0 $?
check_eq "sweep rows (2 values x (4 models + async2 + smtp-source) + warm-up)" 13 "$(($(wc -l <"$TMP/sw/q1-concurrency.csv") - 1))"
check_eq "lossy model's runs are invalid" 2 "$(jq -r 'select(.model_name=="async" and .warmup==false) | .valid' "$TMP"/sw/runs/q1-*.json | grep -c false)"
check_eq "smtp-source runs valid (its counter = server's count)" 2 "$(jq -r 'select(.model_name=="smtp-source" and .warmup==false) | .valid' "$TMP"/sw/runs/q1-*.json | grep -c true)"
check_eq "smtp-source -d at 100 messages per connection" 100 "$(jq -r 'select(.model_name=="smtp-source" and .value=="100") | .model.params.per_session' "$TMP"/sw/runs/q9-reuse-*.json | head -1)"
if grep -q "skipping the peer twisted: .*summary-twisted is missing" "$TMP/sw.err" \
    && jq -e '.sweeps["q1-concurrency"].skipped.twisted | test("missing")' "$TMP/sw/env.json" >/dev/null; then
    pass "missing twisted skipped with the reason"; else fail "twisted not skipped: $(head -3 "$TMP/sw.err")"; fi
if grep -q '^\[24/25\] .* | elapsed' "$TMP/sw.err"; then pass "progress on stderr"; else fail "no progress line: $(head -2 "$TMP/sw.err")"; fi
check_eq "env.json complete" true "$(jq -r .complete "$TMP/sw/env.json")"
FAKE_LOSE=smtp-source MAILBENCH_SMTP_SOURCE="$FIX/fakebin/smtp-source" timeout 60 "$ROOT/scripts/sweep" --profile quick \
    --bin "$FIX/fakebin" --out "$TMP/sw2" --models smtp-source "$ROOT/scripts/sweeps/q9-reuse.conf" >/dev/null 2>&1
if jq -r 'select(.warmup==false) | .reason' "$TMP"/sw2/runs/q9-*.json | grep -q "server accepted 999 messages, smtp-source was told 1000"; then
    pass "smtp-source losing a message is invalid"; else fail "lossy smtp-source: $(jq -r .reason "$TMP"/sw2/runs/q9-*.json | head -2)"; fi
"$GEN" "$TMP/sw" --no-plots >"$TMP/sw.md" 2>"$TMP/sw.gen.err"; check_eq "report on the fake sweep" 0 $?
"$ROOT/scripts/sweep" --bin "$TMP/nowhere" "$ROOT/scripts/sweeps/q1-concurrency.conf" >/dev/null 2>"$TMP/e6"
check_eq "sweep without programs exits 2" 2 $?
finish
