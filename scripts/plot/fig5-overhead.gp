# Figure 5 — question 5: cost per email at concurrency 1, zero latency; three
# bar panels: data1 CPU µs per email (model), data2 context switches per
# email, data3 whole-process CPU µs per email (hyperfine, start-up included).
w = 1500
h = 520
load dir."/common.gp"
set multiplot layout 1,3 title "Q5 Overhead per email (concurrency 1, server latency 0)"
set title "CPU time per email (model's own count)"
set ylabel "CPU time (µs per email)"
N = "1"; eval panel_set
load dir."/bars.gp"
set title "context switches per email"
set ylabel "voluntary + involuntary switches per email"
N = "2"; eval panel_set
load dir."/bars.gp"
set title "whole process, hyperfine (user + sys)"
set ylabel "CPU time (µs per email)"
N = "3"; eval panel_set
load dir."/bars.gp"
unset multiplot
