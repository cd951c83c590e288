# Figure 1b — question 1: p99 latency against concurrency (log–log).
load dir."/common.gp"
set title "Q1 Many tasks: p99 latency per email against concurrency"
set xlabel "concurrency (emails in flight)"
set ylabel "p99 latency (ms)"
set logscale xy
load dir."/lines.gp"
