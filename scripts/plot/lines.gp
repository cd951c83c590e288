# lines.gp — the measured lines of one panel: for each model a block of
# "x median min max" in file `data` (blocks in the order of `models`, styles
# in `styles`), drawn as median with min–max error bars; then, when set, the
# theoretical bounds from `bound` ("x little cpu") and the invalid runs from
# `invalid` ("x y").  Load after setting title, labels and scales.
if (!exists("bound")) bound = ""
if (!exists("invalid")) invalid = ""
cmd = "plot for [i=1:words(models)] data index (i-1) using 1:2:3:4 with yerrorlines ls int(word(styles,i)) title word(models,i)"
if (strlen(bound) > 0) cmd = cmd . ", bound using 1:2 with lines ls 10 title little_title, bound using 1:3 with lines ls 11 title cpu_title"
if (strlen(invalid) > 0) cmd = cmd . ", invalid using 1:2 with points ls 12 title invalid_title"
eval cmd
