#!/usr/bin/env bash
# test_report_golden.sh — scripts/report-gen's whole output on the committed
# synthetic results folder (tests/fixtures/report/results), compared with
# goldens: REPORT.md byte for byte, every figure's data file by its SHA-256,
# and the workload profile's two sections (the opening "For this workload"
# and question 11, which the committed fixture has no sweep for) from
# tests/fixtures/report/make-fixture --workload.  Any difference fails, with
# the first lines of the diff: a change of the report's text or numbers must
# be deliberate, and is then committed with the regenerated goldens.
#
# Paths that depend on where the copy runs (the folder named in "Generated
# by", the links from REPORT.md to the repository) are written as RESULTS and
# ROOT before comparing.
#
# To regenerate the goldens after a deliberate change (then review the diff
# with git diff tests/golden/report and commit it):
#   REGEN=1 bash tests/integration/test_report_golden.sh
source "$(dirname "$0")/common.bash"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
GOLD="$ROOT/tests/golden/report"
GEN="$ROOT/scripts/report-gen"

# normalise FILE FOLDER: the run's paths replaced by RESULTS and ROOT
normalise() {
    /usr/bin/python3 - "$1" "$2" "$ROOT" <<'PY'
import os, sys
path, folder, root = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3]
text = open(path).read()
text = text.replace("scripts/report-gen " + os.path.relpath(folder, root), "scripts/report-gen RESULTS")
text = text.replace("](" + os.path.relpath(root, folder) + "/", "](ROOT/")
open(path, "w").write(text)
PY
}
# compare NAME ACTUAL: ACTUAL against $GOLD/NAME (or written there with REGEN=1)
compare() {
    if [ "${REGEN:-0}" = 1 ]; then
        cp "$2" "$GOLD/$1"; pass "$1 regenerated"
    elif cmp -s "$GOLD/$1" "$2"; then
        pass "$1 as the golden ($(wc -l <"$2") lines)"
    else
        fail "$1 differs from tests/golden/report/$1:"
        diff -u "$GOLD/$1" "$2" | head -40
    fi
}

cp -r "$ROOT/tests/fixtures/report/results" "$TMP/res"
"$GEN" "$TMP/res" --no-plots -o "$TMP/res/REPORT.md" 2>"$TMP/gen.err"
check_eq "report-gen on the fixture: exit status" 0 "$?"
normalise "$TMP/res/REPORT.md" "$TMP/res"
if grep -q "$TMP" "$TMP/res/REPORT.md"; then fail "a temporary path left in REPORT.md"; else pass "no run-dependent path"; fi
compare REPORT.md "$TMP/res/REPORT.md"
(cd "$TMP/res/plots/data" && sha256sum *.dat) >"$TMP/plots-data.sha256"
check_eq "figure data files written" 34 "$(wc -l <"$TMP/plots-data.sha256")"
compare plots-data.sha256 "$TMP/plots-data.sha256"

/usr/bin/python3 "$ROOT/tests/fixtures/report/make-fixture" "$TMP/wl" --workload
"$GEN" "$TMP/wl" --no-plots -o "$TMP/wl/REPORT.md" 2>"$TMP/wl.err"
check_eq "report-gen on the workload fixture: exit status" 0 "$?"
normalise "$TMP/wl/REPORT.md" "$TMP/wl"
{ sed -n '/^\*\*Workload profile/,/^## Summary/p' "$TMP/wl/REPORT.md" | sed '$d'
  sed -n '/^## 11\./,/^## A\./p' "$TMP/wl/REPORT.md" | sed '$d'; } >"$TMP/workload-sections.md"
if grep -q '^## For this workload' "$TMP/workload-sections.md" && grep -q '^## 11\.' "$TMP/workload-sections.md"; then
    pass "the workload's sections found"; else fail "workload sections missing: $(head -3 "$TMP/workload-sections.md")"; fi
compare workload-sections.md "$TMP/workload-sections.md"
finish
