# bars.gp — one bar per model from `data` ("model median min max style"),
# min–max as error bars.  Load after setting title and ylabel.
set style fill solid 0.7 border -1
set boxwidth 0.6
set xrange [-0.6:*]
if (exists("ymax")) { set yrange [0:ymax] } else { set yrange [0:*] }
set offsets 0, 0.6, graph 0.08, 0
set key off
set grid noxtics
plot data using 0:2:(0.6):5 with boxes lc variable notitle, \
     data using 0:2:3:4 with yerrorbars lc rgb "#000000" pt 7 ps 0.2 notitle, \
     data using 0:2:xtic(1) with points pt -1 notitle
