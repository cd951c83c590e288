#!/usr/bin/env bash
# test_sweep_rules.sh — scripts/sweep's rules of how many runs a point gets
# and how long an open-loop window lasts, and when a run disturbed by steal
# is run again: each checked on hand-made confs and records (no runs).
source "$(dirname "$0")/common.bash"
out=$(/usr/bin/python3 - "$(dirname "$0")/../../scripts/sweep" <<'EOF'
import importlib.machinery, importlib.util, sys
loader = importlib.machinery.SourceFileLoader("sweep", sys.argv[1])
spec = importlib.util.spec_from_loader("sweep", loader)
sw = importlib.util.module_from_spec(spec)
loader.exec_module(sw)
def reps(conf, model, value, r=2):
    c = dict({"values": "1 10 100", "profile": "default"}, **conf)
    return sw.point_reps(c, model, value, r)
print("ends", reps({}, "async", "1"), reps({}, "async", "10"), reps({}, "async", "100"))
print("last", reps({"verdict_at": "last"}, "async", "1"), reps({"verdict_at": "last"}, "async", "100"))
print("models", reps({"verdict_models": "threads async"}, "async", "100"),
      reps({"verdict_models": "threads async"}, "hybrid", "100"))
at = {"verdict_models": "sync threads async hybrid", "verdict_models@100": "threads async"}
print("at", reps(at, "hybrid", "1"), reps(at, "hybrid", "100"), reps(at, "async", "100"))
print("own", reps({"default_reps": "1", "verdict_reps": "1"}, "async", "10"),
      reps({"default_reps": "1", "verdict_reps": "3"}, "async", "100"))
for d, rate in (("0.5s", 100), ("0.5s", 7), ("0.5s", 2), ("0.5s", 0.2)):
    print("window", d, rate, sw.loadcurve_duration(d, rate))
class R:
    redone, total = 0, 100
    steal_redo = sw.Runner.steal_redo
conf = {"name": "q", "param": "p"}
r, spec = R(), {"model": "async", "value": "1", "warmup": False}
rec = {"steal_s": 0.3}
print("steal", r.steal_redo(conf, spec, rec, 1.0), r.redone, "redone_after_steal_s" in rec)
rec = {"steal_s": 0.3}
print("again", r.steal_redo(conf, dict(spec, redone=0.3), rec, 1.0), rec["redone_after_steal_s"])
rec = {"steal_s": 0.1}
print("low", r.steal_redo(conf, spec, rec, 1.0), rec["redone_after_steal_s"])
r.redone = 5
print("cap", r.steal_redo(conf, spec, {"steal_s": 0.9}, 1.0))
import random
runs = [dict(model=m, value=v, rep=k) for m in ("sync", "async") for v in ("1", "100")
        for k in range(5 if v == "100" else 2)]
order = sw.blocked(runs, random.Random(1))
reps_seq = [x["rep"] for x in order]
print("blocks", reps_seq == sorted(reps_seq), len(order) == len(runs),
      all(sorted((x["model"], x["value"]) for x in order if x["rep"] == k)
          == sorted((x["model"], x["value"]) for x in runs if x["rep"] == k) for k in range(5)),
      any([(x["model"], x["value"]) for x in sw.blocked(runs, random.Random(s)) if x["rep"] == 0]
          != [(x["model"], x["value"]) for x in runs if x["rep"] == 0] for s in range(5)))
EOF
)
line() { grep "^$1 " <<<"$out" | head -1 | cut -d' ' -f2-; }
check_eq "both ends get the verdict repetitions (5), the middle the default" "5 2 5" "$(line ends)"
check_eq "verdict_at = last: the last value alone" "2 5" "$(line last)"
check_eq "verdict_models: only those models' points" "5 2" "$(line models)"
check_eq "verdict_models@VALUE at that value, verdict_models elsewhere" "5 2 5" "$(line at)"
check_eq "a sweep's own reps (default_reps) and verdict_reps" "1 3" "$(line own)"
check_eq "open-loop window at 100/s: 50 arrivals in 0.5 s" "0.5s 100 0.500000s" "$(line window | sed -n 1p)"
check_eq "open-loop window at 7/s: 10 arrivals at least" "0.5s 7 1.428571s" "$(grep '^window 0.5s 7 ' <<<"$out" | cut -d' ' -f2-)"
check_eq "open-loop window at 2/s: at most 3 s, whole arrivals" "0.5s 2 3.000000s" "$(grep '^window 0.5s 2 ' <<<"$out" | cut -d' ' -f2-)"
check_eq "open-loop window at 0.2/s: one arrival" "0.5s 0.2 5.000000s" "$(grep '^window 0.5s 0.2 ' <<<"$out" | cut -d' ' -f2-)"
check_eq "steal over 20% of the wall time: run again, counted, not recorded yet" "True 1 False" "$(line steal)"
check_eq "a second attempt is kept, with what the first lost" "False 0.3" "$(line again)"
check_eq "steal under 20%: kept" "False None" "$(line low)"
check_eq "no more redos past 5% of the sweep's runs" "False" "$(line cap)"
check_eq "randomised blocks: repetition r of every point, blocks in turn, shuffled within" \
    "True True True True" "$(line blocks)"

# The paired interval (scripts/report_data.py boot_ratio): two models run in
# randomised blocks while the machine drifts by ±40% over the sweep.  Drawn
# on their own, each side's spread hides a ×1.2 difference; paired block by
# block, the drift cancels and the verdict is decided, either way, and a
# ×1.02 difference stays "no clear difference".  Runs not made in blocks
# (older results) keep the unpaired interval.
out=$(/usr/bin/python3 - "$(dirname "$0")/../../scripts" <<'EOF'
import random, sys
sys.path.insert(0, sys.argv[1])
import report_data as rd
rng = random.Random(3)
drift = [0.6 + 0.8 * k / 7 for k in range(8)]
def side(k):
    v = rd.Runs()
    for b, d in enumerate(drift):
        v.add(1000 * d * k * (1 + rng.uniform(-0.01, 0.01)), b)
    return v
base = side(1.0)
for name, k in (("win", 1.2), ("lose", 1 / 1.2), ("tie", 1.02)):
    a = side(k)
    p, u = rd.boot_ratio(a, base), rd.boot_ratio(list(a), list(base))
    print(name, rd.decide(p), rd.decide(u), p[5], u[5], rd.fmt_ci(p).endswith(", paired"))
a = side(1.2)
a.blocks = [b + 100 for b in a.blocks]          # no block in common
print("apart", rd.boot_ratio(a, base)[5])
EOF
)
check_eq "paired: a ×1.2 win under drift is decided (unpaired: no clear difference)" "a None 8 0 True" "$(line win)"
check_eq "paired: the same loss is decided the other way" "b None 8 0 True" "$(line lose)"
check_eq "paired: ×1.02 stays no clear difference" "None None 8 0 True" "$(line tie)"
check_eq "no blocks in common: unpaired" "0" "$(line apart)"
finish
