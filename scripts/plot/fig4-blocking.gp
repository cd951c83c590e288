# Figure 4 — question 4: p50, p99 and max latency against the length of one
# blocking call per email; three panels, files data1..data3.
w = 1500
h = 560
load dir."/common.gp"
set multiplot layout 1,3 title "Q4 One blocking call per email: latency per email"
set key below Left reverse nobox width 0 maxcols 2
set logscale y
set xlabel "blocking call per email (ms)"
set ylabel "latency (ms)"
set title "p50"
N = "1"; eval panel_set
load dir."/lines.gp"
set title "p99"
N = "2"; eval panel_set
load dir."/lines.gp"
set title "max"
N = "3"; eval panel_set
load dir."/lines.gp"
unset multiplot
