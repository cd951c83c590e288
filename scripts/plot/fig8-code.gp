# Figure 8 — question 8: code size and complexity of each model's file
# (data1 lines of code, data2 decision points).
w = 1200
h = 500
load dir."/common.gp"
set multiplot layout 1,2 title "Q8 Code: each model's file with the layer it waits through"
set title "lines of code (no blanks, no comments)"
set ylabel "lines"
N = "1"; eval panel_set
load dir."/bars.gp"
set title "decision points (if, for, while, case, &&, ||, ?)"
set ylabel "count"
N = "2"; eval panel_set
load dir."/bars.gp"
unset multiplot
