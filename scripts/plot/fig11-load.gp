# Figure 11 — question 11: open loop.  Left, p99 latency from each email's
# intended start against the offered load (a fraction of each model's own
# saturation rate, log y): the hockey stick.  Right, achieved ÷ offered
# throughput.  data1 = p99 ms, data2 = achieved / offered.
w = 1500
h = 600
load dir."/common.gp"
set multiplot layout 1,2 title "Q11 Open loop: emails arrive on a schedule (constant rate), whatever happens"
set key below Left reverse nobox width 0 maxcols 2
set xlabel "offered load (x the model's own saturation rate)"
set title "p99 latency from the intended start (coordinated omission corrected)"
set ylabel "p99 latency (ms)"
set logscale y
N = "1"; eval panel_set
load dir."/lines.gp"
unset logscale y
set title "achieved ÷ offered throughput"
set ylabel "achieved ÷ offered"
N = "2"; eval panel_set
load dir."/lines.gp"
unset multiplot
