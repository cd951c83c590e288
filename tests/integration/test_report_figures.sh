#!/usr/bin/env bash
# test_report_figures.sh — what report_plots.Plotter draws and says (issue 13,
# "figures a reader can trust"), on synthetic rows: a line is broken (a blank
# line in the data) where a model has no valid point, around a point not
# reached and across more than a decade on a log axis, and joined elsewhere;
# compared panels get one y range, others their own; the y range is the
# measured region (a bound far above is clipped); the note under the figure
# names the invalid runs, the values not measured, the points not reached or
# not joined, the clipped bounds and the error bars hidden by their markers.
# With gnuplot, the figure is drawn without an error.
source "$(dirname "$0")/common.bash"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

/usr/bin/python3 - "$ROOT/scripts" "$TMP" >"$TMP/out" 2>&1 <<'PY'
import os, shutil, sys
sys.path.insert(0, sys.argv[1])
from report_data import Agg
from report_plots import Plotter

def row(model, x, v, valid=True, rep=0):
    return dict(model=model, x=float(x), value=str(x), valid=valid, rep=rep, emails_per_s=v,
                run_file=f"runs/{model}-{x}-{rep}.json", p99_us=v * 1000.0)

rows = []
for x in (1, 10, 100, 1000):
    rows += [row("async", x, 100 * x, rep=0), row("async", x, 110 * x, rep=1)]
for x in (1, 10, 1000):                    # threads: not measured at 100
    rows += [row("threads", x, 90 * x, rep=0), row("threads", x, 91 * x, rep=1)]
rows += [row("sync", 1, 50), row("sync", 1, 51, rep=1),
         row("sync", 10, 48, valid=False),                      # only an invalid run at 10
         row("sync", 100, 49), row("sync", 100, 50, rep=1),
         row("sync", 1000, 47), row("sync", 1000, 49, rep=1)]
agg = Agg(rows, "tput")
p = Plotter(sys.argv[2], enabled=bool(shutil.which("gnuplot")))
path = p.lines_file("t", agg, logx=True, unjoined={("async", 1000.0)})
blocks = open(path).read().split("\n\n\n")
def segments(b):
    return [[l.split()[0] for l in s.splitlines() if l and not l.startswith("#")]
            for s in b.split("\n\n")]
print("sync", segments(blocks[0]))
print("threads", segments(blocks[1]))
print("async", segments(blocks[2]))
bound = p.bound_file("t", [[(x, 1e9, None) for x in agg.xs]] * 3)
png = p.plot("fig1a-throughput", agg.models, data=path, bound=bound)
print("note", p.notes[png])
print("errors", p.errors)
# compared panels (figure 4) share one range; a different quantity does not (figure 7)
lo = p.lines_file("lo", Agg([row("async", x, 1.0 + x) for x in (0, 1)] +
                            [row("async", x, 1.2 + x, rep=1) for x in (0, 1)], "tput"))
hi = p.lines_file("hi", Agg([row("async", x, 500.0 + x) for x in (0, 1)] +
                            [row("async", x, 600.0 + x, rep=1) for x in (0, 1)], "tput"))
p.enabled = False
p.plot("fig4-blocking", ["async"], data1=lo, data2=hi, data3=hi)
p.plot("fig7-failures", ["async"], data1=lo, data2=hi)
r4, r7 = p.ranges["fig4-blocking.png"], p.ranges["fig7-failures.png"]
print("shared", r4[0] == r4[1] == r4[2] and r4[0][0] <= 2 and r4[0][1] >= 601)
print("own", r7[0][1] < 10 and r7[1][0] > 100)
PY
cat "$TMP/out" | sed 's/^/  /'
out() { grep "^$1 " "$TMP/out" | cut -d' ' -f2-; }
check_eq "sync: broken at 10 (only invalid runs there)" "[['1'], ['100', '1000']]" "$(out sync)"
check_eq "threads: broken at 100 (not measured)" "[['1', '10'], ['1000']]" "$(out threads)"
check_eq "async: joined, the point not reached (1000) alone" "[['1', '10', '100'], ['1000']]" "$(out async)"
note=$(out note)
for want in "Invalid runs (not in the medians): 1, 1 drawn as red crosses" \
            "Only invalid runs (no point, no line): sync at 10" \
            "Not measured (no point, no line): threads at 100" \
            "Not reached (the server counted under 95% of the concurrency; drawn, not joined): async at 1000" \
            "Clipped at the top" "are shorter than their marker"; do
    case "$note" in *"$want"*) pass "note: $want" ;; *) fail "note lacks '$want': $note" ;; esac
done
check_eq "no gnuplot error" "[]" "$(out errors)"
if command -v gnuplot >/dev/null; then
    [ -s "$TMP/plots/fig1a-throughput.png" ] && pass "figure drawn" || fail "no PNG written"
fi
check_eq "compared panels share one y range" True "$(out shared)"
check_eq "panels of different quantities keep their own" True "$(out own)"

# a wide gap on a log axis: 10 -> 1000 not joined
/usr/bin/python3 - "$ROOT/scripts" "$TMP/w" >"$TMP/wide" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from report_data import Agg
from report_plots import Plotter
rows = [dict(model="async", x=float(x), value=str(x), valid=True, rep=r, emails_per_s=x + r)
        for x in (10, 1000, 10000) for r in (0, 1)]
p = Plotter(sys.argv[2], enabled=False)
a = Agg(rows, "tput")
path = p.lines_file("w", a, logx=True)
print("log", "\n\n" in open(path).read().split("\n\n\n")[0])
p.plot("fig2a-cpu", ["async"], data=path)
print(p.notes["fig2a-cpu.png"])
path = p.lines_file("w2", a, logx=False)
print("lin", "\n\n" in open(path).read().split("\n\n\n")[0])
PY
check_eq "log x: not joined across more than a decade" "log True" "$(grep ^log "$TMP/wide")"
check_eq "linear x: joined" "lin False" "$(grep ^lin "$TMP/wide")"
if grep -q "Not joined: neighbouring values more than a decade apart (10 → 1000)" "$TMP/wide"; then
    pass "the note names the wide gap"; else fail "wide gap not named: $(cat "$TMP/wide")"; fi

# A model swept at its own values (values.twisted = 0.5 0.6 1.0): its 0.6 is
# not a gap in the others' lines, whose values it is not among (env.json's
# model_values, carried into each row by load_results as "planned"); a value
# planned for a model but with no row is still "not measured".
/usr/bin/python3 - "$ROOT/scripts" "$TMP/o" >"$TMP/own" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from report_data import Agg, planned_values
from report_plots import Plotter
sweep = {"models": ["sync", "async", "twisted"], "values": ["0.5", "0.7", "1.0"],
         "model_values": {"twisted": ["0.5", "0.6", "1.0"]}}
planned = planned_values(sweep)
rows = [dict(model=m, x=float(x), value=x, valid=True, rep=r, emails_per_s=1.0 + r,
             planned=planned[m])
        for m, xs in (("sync", ("0.5", "0.7", "1.0")), ("async", ("0.5", "1.0")),
                      ("twisted", ("0.5", "0.6", "1.0"))) for x in xs for r in (0, 1)]
p = Plotter(sys.argv[2], enabled=False)
path = p.lines_file("o", Agg(rows, "tput"))
for m, b in zip(("sync", "async", "twisted"), open(path).read().split("\n\n\n")):
    print(m, [[l.split()[0] for l in s.splitlines() if l and not l.startswith("#")] for s in b.split("\n\n")])
p.plot("fig11-load", ["sync", "async", "twisted"], data1=path, data2=path)
print("note", p.notes["fig11-load.png"])
print("old", planned_values({"models": ["sync"]}))
PY
check_eq "own values: sync joined over twisted's 0.6" "[['0.5', '0.7', '1']]" "$(grep '^sync ' "$TMP/own" | cut -d' ' -f2-)"
check_eq "own values: async broken at its own 0.7 (not measured)" "[['0.5'], ['1']]" "$(grep '^async ' "$TMP/own" | cut -d' ' -f2-)"
check_eq "own values: twisted joined over the others' 0.7" "[['0.5', '0.6', '1']]" "$(grep '^twisted ' "$TMP/own" | cut -d' ' -f2-)"
note=$(grep '^note ' "$TMP/own")
for want in "Not measured (no point, no line): async at 0.7" "Not run by design" "at 0.6" "twisted (reference) at 0.7"; do
    case "$note" in *"$want"*) pass "own values note: $want" ;; *) fail "own values note lacks '$want': $note" ;; esac
done
check_eq "results without model values: nothing planned (no change)" "old {}" "$(grep '^old ' "$TMP/own")"
finish
