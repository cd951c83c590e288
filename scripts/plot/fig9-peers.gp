# Figure 9 — question 9: the async model against Postfix's smtp-source,
# throughput against message size (data1, title1) and against messages per
# connection (data2, title2, when that sweep was run); log–log, one y range
# (ymin1/ymax1, ymin2/ymax2 from report-gen: the same for both panels).  The
# panels are plotted here, not with lines.gp: a file cannot be loaded inside
# an if { } block.
w = exists("data2") ? 1500 : 960
h = 600
load dir."/common.gp"
panel(f) = "plot for [i=1:words(models)] ".f." index (i-1) using 1:2:3:4 with yerrorlines ls int(word(styles,i)) title word(models,i)" . (strlen(invalid) > 0 ? ", invalid using 1:2 with points ls 12 title invalid_title" : "")
set multiplot layout 1,(exists("data2") ? 2 : 1) title "Q9 Peers: async against smtp-source (zero server latency, 10 sessions)"
set logscale xy
set ylabel "throughput (messages/s)"
set xlabel title1
set title "throughput against ".title1
N = "1"; eval panel_set
if (exists("ymin")) { set yrange [ymin:ymax] }
if (strlen(yt) > 0) { eval "set ytics (".yt.")" }
eval panel("data1")
if (exists("data2")) {
    set xlabel title2
    set title "throughput against ".title2
    N = "2"; eval panel_set
    if (exists("ymin")) { set yrange [ymin:ymax] }
    if (strlen(yt) > 0) { eval "set ytics (".yt.")" }
    eval panel("data2")
}
unset multiplot
