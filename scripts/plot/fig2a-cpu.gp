# Figure 2a — question 2: throughput as CPU work per email grows (log–log).
load dir."/common.gp"
set title "Q2 I/O versus CPU: throughput as CPU work per email grows"
set xlabel "CPU work per email (events summarised)"
set ylabel "throughput (emails/s)"
set logscale xy
load dir."/lines.gp"
