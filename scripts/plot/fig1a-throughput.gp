# Figure 1a — question 1: throughput against concurrency (log–log).
load dir."/common.gp"
set title "Q1 Many tasks: throughput against concurrency (server latency fixed)"
set xlabel "concurrency (emails in flight)"
set ylabel "throughput (emails/s)"
set logscale xy
load dir."/lines.gp"
