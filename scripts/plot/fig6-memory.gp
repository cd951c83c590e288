# Figure 6 — question 6: RSS and threads against emails in flight, with the
# fitted straight line per model (data1 RSS, fit1 "x y" blocks, data2 threads).
w = 1500
h = 600
load dir."/common.gp"
set multiplot layout 1,2 title "Q6 Memory and threads against emails in flight"
set key below Left reverse nobox width 0 maxcols 2
set logscale xy
set xlabel "emails in flight"
set ylabel "peak RSS (MB)"
set title "peak RSS, with fitted line (dashed)"
N = "1"; eval panel_set
if (exists("ymin")) { set yrange [ymin:ymax] }
if (strlen(yt) > 0) { eval "set ytics (".yt.")" }
cmd = "plot for [i=1:words(models)] data index (i-1) using 1:2:3:4 with yerrorlines ls int(word(styles,i)) title word(models,i), for [i=1:words(models)] fit1 index (i-1) using 1:2 with lines ls int(word(styles,i)) dt 2 lw 1 notitle"
if (strlen(invalid) > 0) cmd = cmd . ", invalid using 1:2 with points ls 12 title invalid_title"
eval cmd
set ylabel "threads (peak)"
set title "peak thread count"
N = "2"; eval panel_set
load dir."/lines.gp"
unset multiplot
