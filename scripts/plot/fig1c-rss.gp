# Figure 1c — question 1: peak memory against concurrency (log–log).
load dir."/common.gp"
set title "Q1 Many tasks: peak resident memory against concurrency"
set xlabel "concurrency (emails in flight)"
set ylabel "peak RSS of the model process (MB)"
set logscale xy
load dir."/lines.gp"
