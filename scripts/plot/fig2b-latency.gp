# Figure 2b — question 2: throughput as server latency grows (log y).
load dir."/common.gp"
set title "Q2 I/O versus CPU: throughput as server latency grows"
set xlabel "server latency per reply (ms)"
set ylabel "throughput (emails/s)"
set logscale y
load dir."/lines.gp"
