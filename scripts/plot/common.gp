# common.gp — terminal, output and the model styles shared by every figure.
# Loaded first by each figure script.  Variables set by scripts/report-gen
# with -e: out (path without extension), fmt ('png' or 'svg'), and
# optionally w, h (size in pixels).  Models keep one colour in every figure:
# line style 1 sync, 2 threads, 3 async, 4 hybrid, 5 twisted (reference),
# 6 smtp-source (load), 7 async ×N (--reactors); 10/11 the bounds; 12 an invalid run.
if (!exists("w")) w = 960
if (!exists("h")) h = 600
set encoding utf8
if (fmt eq "svg") {
    set terminal svg size w,h dynamic font "Helvetica,13" background "#ffffff"
} else {
    set terminal pngcairo size w,h font "Helvetica,12" background "#ffffff"
}
set termoption noenhanced
set output out.".".fmt
set grid xtics ytics mxtics mytics lc "#dddddd" lw 1
set border 3
set tics nomirror
set format y "%g"
set format x "%g"
set key below Left reverse nobox spacing 1.1 width -6 maxcols 3
# Points at the ends of the x range are kept off the axes.
set autoscale xfix
set offsets graph 0.03, graph 0.03, 0, 0
set style line 1 lc rgb "#1b9e77" lw 2 pt 7 ps 1.0
set style line 2 lc rgb "#d95f02" lw 2 pt 5 ps 1.0
set style line 3 lc rgb "#7570b3" lw 3 pt 9 ps 1.3
set style line 4 lc rgb "#e7298a" lw 2 pt 13 ps 1.2
# The peers, dashed so that they never read as one of the four models:
# 5 the Twisted reference, 6 Postfix's smtp-source (a load generator).
set style line 5 lc rgb "#66a61e" lw 2 dt 2 pt 11 ps 1.2
set style line 6 lc rgb "#a6761d" lw 2 dt 4 pt 3 ps 1.2
# 7 async with N reactor threads (bin/summary-async --reactors N): async's
# colour, dash-dot, open triangles.
set style line 7 lc rgb "#7570b3" lw 2 dt 5 pt 8 ps 1.2
# Bar charts colour boxes with "lc variable" (a linetype number): same colours.
set linetype 1 lc rgb "#1b9e77"
set linetype 2 lc rgb "#d95f02"
set linetype 3 lc rgb "#7570b3"
set linetype 4 lc rgb "#e7298a"
set linetype 5 lc rgb "#66a61e"
set linetype 6 lc rgb "#a6761d"
set linetype 7 lc rgb "#7570b3"
set style line 10 lc rgb "#555555" lw 1.5 dt 2
set style line 11 lc rgb "#000000" lw 1.5 dt 3
set style line 12 lc rgb "#ff0000" lw 2 pt 2 ps 2
set style line 13 lc rgb "#444444" lw 1 dt 4
little_title = "Little's-law bound (model's colour, dashed)"
cpu_title = "CPU bound (model's colour, dotted)"
invalid_title = "invalid run (not in medians)"
# A panel of several: N = "2"; eval panel_set takes report-gen's dataN,
# invalidN, yminN, ymaxN and ytN as the data, invalid, ymin, ymax and yt
# (labelled y tics of a short log axis) of lines.gp.
panel_set = "data = value('data'.N); invalid = exists('invalid'.N) ? value('invalid'.N) : ''; yt = exists('yt'.N) ? value('yt'.N) : ''; if (exists('ymin'.N)) { ymin = value('ymin'.N); ymax = value('ymax'.N) } else { undefine ymin ymax }"
