# Figure 7 — question 7: retries per email and p99 latency against the
# injected fault probability (data1 retries per email, data2 p99 ms).
w = 1500
h = 600
load dir."/common.gp"
set multiplot layout 1,2 title "Q7 Failures: temporary failures (4xx) and dropped connections injected"
set key below Left reverse nobox width 0 maxcols 2
set xlabel "probability of a 4xx reply and of a dropped connection"
set title "retries per email"
set ylabel "retries per email sent"
N = "1"; eval panel_set
load dir."/lines.gp"
set title "p99 latency per email (the cost of retrying)"
set ylabel "p99 latency (ms)"
set logscale y
N = "2"; eval panel_set
load dir."/lines.gp"
unset multiplot
