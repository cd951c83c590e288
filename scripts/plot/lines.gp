# lines.gp — the measured lines of one panel: for each model a block of
# "x median min max" in file `data` (blocks in the order of `models`, styles
# in `styles`; a blank line inside a block breaks the line: report-gen never
# joins points across a value the model was not measured at), drawn as median
# with min–max error bars; then, when set, each model's own bounds from
# `bound` (one block per model, same order: "x little cpu"), thin lines in
# the model's colour (dashed Little, dotted CPU; in the key only when drawn:
# has_little, has_cpu), and the invalid runs from `invalid` ("x y").  The y
# range is report-gen's (ymin, ymax: the measured region with some room; yt,
# the labelled tics of a log axis under 3 decades), so
# a far bound is clipped, not allowed to squash the data.  Load after setting
# title, labels and scales; for one panel of several, set data, invalid,
# ymin and ymax first.
if (!exists("bound")) bound = ""
if (!exists("invalid")) invalid = ""
if (exists("ymin") && exists("ymax")) { set yrange [ymin:ymax] } else { set yrange [*:*] }
if (exists("yt") && strlen(yt) > 0) { eval "set ytics (".yt.")" } else { set ytics autofreq }
cmd = "plot for [i=1:words(models)] data index (i-1) using 1:2:3:4 with yerrorlines ls int(word(styles,i)) title word(models,i)"
if (strlen(bound) > 0) cmd = cmd . ", for [i=1:words(models)] bound index (i-1) using 1:2 with lines lc int(word(styles,i)) lw 1 dt 2 notitle, for [i=1:words(models)] bound index (i-1) using 1:3 with lines lc int(word(styles,i)) lw 1 dt 3 notitle"
if (strlen(bound) > 0 && exists("has_little")) cmd = cmd . ", NaN with lines ls 10 title little_title"
if (strlen(bound) > 0 && exists("has_cpu")) cmd = cmd . ", NaN with lines ls 11 title cpu_title"
if (strlen(invalid) > 0) cmd = cmd . ", invalid using 1:2 with points ls 12 title invalid_title"
eval cmd
