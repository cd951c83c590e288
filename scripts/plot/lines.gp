# lines.gp — the measured lines of one panel: for each model a block of
# "x median min max" in file `data` (blocks in the order of `models`, styles
# in `styles`), drawn as median with min–max error bars; then, when set, each
# model's own bounds from `bound` (one block per model, same order: "x little
# cpu"), thin lines in the model's colour (dashed Little, dotted CPU), and the
# invalid runs from `invalid` ("x y").  The y range keeps the measured region:
# at most 3x the highest measured value, so a far bound is clipped, not
# allowed to squash the data.  Load after setting title, labels and scales.
if (!exists("bound")) bound = ""
if (!exists("invalid")) invalid = ""
if (strlen(bound) > 0) {
    stats data using 4 nooutput
    if (exists("STATS_max")) { set yrange [*:STATS_max * 3] }
}
cmd = "plot for [i=1:words(models)] data index (i-1) using 1:2:3:4 with yerrorlines ls int(word(styles,i)) title word(models,i)"
if (strlen(bound) > 0) cmd = cmd . ", for [i=1:words(models)] bound index (i-1) using 1:2 with lines lc int(word(styles,i)) lw 1 dt 2 notitle, for [i=1:words(models)] bound index (i-1) using 1:3 with lines lc int(word(styles,i)) lw 1 dt 3 notitle, NaN with lines ls 10 title little_title, NaN with lines ls 11 title cpu_title"
if (strlen(invalid) > 0) cmd = cmd . ", invalid using 1:2 with points ls 12 title invalid_title"
eval cmd
