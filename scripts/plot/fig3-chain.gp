# Figure 3 — question 3: throughput against dependency chain length (log–log).
load dir."/common.gp"
set title "Q3 Independent tasks: throughput against dependency chain length"
set xlabel "emails per dependency chain"
set ylabel "throughput (emails/s)"
set logscale xy
load dir."/lines.gp"
