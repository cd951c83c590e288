# Figure 10 — the C async model against the Twisted reference, from the runs
# of question 1: throughput (data1) and CPU time per delivered email (data2)
# against concurrency, log–log.
w = 1500
h = 600
load dir."/common.gp"
set multiplot layout 1,2 title "C async versus Twisted (question 1's runs)"
set logscale xy
set xlabel "concurrency (emails in flight)"
set ylabel "throughput (emails/s)"
set title "throughput"
N = "1"; eval panel_set
load dir."/lines.gp"
set ylabel "CPU µs per delivered email"
set title "CPU time per email (whole process)"
N = "2"; eval panel_set
load dir."/lines.gp"
unset multiplot
