"""report_plots — the figures of REPORT.md: their data and their gnuplot runs.

Contract: Plotter(folder, enabled) writes each figure's data as text under
FOLDER/plots/data/NAME.dat (always, so a figure can be redrawn by hand), and,
when enabled, runs scripts/plot/SCRIPT.gp twice (PNG and SVG) into
FOLDER/plots/.  It never stops the report: a gnuplot failure is kept in
Plotter.errors for report-gen to print.  The files a method writes are
listed in its docstring; every number is written with 6 significant digits.

Line styles are fixed per model (STYLE: scripts/plot/common.gp's colours),
so a model keeps its colour in every figure.
"""
import os
import subprocess

from report_data import MODELS, PEERS, ROOT, VARIANTS, label, metric

PLOTDIR = os.path.join(ROOT, "scripts", "plot")
# The four models and the peers in order (1-6); async ×N is style 7.
STYLE = {m: i + 1 for i, m in enumerate(MODELS + PEERS)}
STYLE.update({v: 7 for v in VARIANTS})


class Plotter:
    """Writes figure data under plots/data and runs the gnuplot scripts."""

    def __init__(self, folder, enabled):
        self.dir = os.path.join(folder, "plots")
        self.data = os.path.join(self.dir, "data")
        self.enabled = enabled
        self.errors = []
        os.makedirs(self.data, exist_ok=True)

    def lines_file(self, name, agg, scale=1.0, xs_filter=None):
        """Blocks of "x median min max" per model; returns the path."""
        path = os.path.join(self.data, name + ".dat")
        with open(path, "w") as f:
            for m in agg.models:
                f.write(f"# {m}: {agg.name} x median min max\n")
                wrote = False
                for x in agg.xs:
                    s = agg.stat(m, x)
                    if s and (xs_filter is None or xs_filter(x)):
                        f.write(f"{x:g} {s[0] * scale:.6g} {s[1] * scale:.6g} {s[2] * scale:.6g}\n")
                        wrote = True
                if not wrote:
                    f.write("NaN NaN NaN NaN\n")
                f.write("\n\n")
        return path

    def invalid_file(self, name, agg, scale=1.0):
        """Invalid runs that still have a value ("x y"), or '' if none."""
        pts = []
        for (m, x), rows in sorted(agg.invalid.items()):
            for r in rows:
                v = metric(r, agg.name)
                if v is not None and v > 0:
                    pts.append(f"{x:g} {v * scale:.6g} {m}\n")
        if not pts:
            return ""
        path = os.path.join(self.data, name + ".invalid.dat")
        with open(path, "w") as f:
            f.write("# invalid runs: x value model\n" + "".join(pts))
        return path

    def bound_file(self, name, blocks):
        """blocks: per model (agg.models order) [(x, little, cpu)]; None as NaN."""
        path = os.path.join(self.data, name + ".bound.dat")
        with open(path, "w") as f:
            f.write("# one block per model: x little_bound cpu_bound (emails/s)\n")
            for rows in blocks:
                for x, lit, cpu in rows:
                    f.write(f"{x:g} {'NaN' if lit is None else f'{lit:.6g}'} "
                            f"{'NaN' if cpu is None else f'{cpu:.6g}'}\n")
                f.write("\n\n")
        return path

    def bars_file(self, name, stats):
        """stats: [(model, median, min, max)]."""
        path = os.path.join(self.data, name + ".dat")
        with open(path, "w") as f:
            f.write("# model median min max style\n")
            for m, med, lo, hi in stats:
                f.write(f"{m} {med:.6g} {lo:.6g} {hi:.6g} {STYLE.get(m, 5)}\n")
        return path

    def plot(self, script, models, out_name=None, **files):
        """Run scripts/plot/<script>.gp for PNG and SVG (named out_name, by
        default the script's name); returns the PNG name."""
        out = os.path.join(self.dir, out_name or script)
        if not self.enabled:
            return (out_name or script) + ".png"
        sets = [f"dir='{PLOTDIR}'", f"out='{out}'",
                "models='" + " ".join(f'"{label(m)}"' for m in models) + "'",
                f"styles='{' '.join(str(STYLE.get(m, 5)) for m in models)}'"]
        sets += [f"{k}='{v}'" for k, v in files.items()]
        for fmt_ in ("png", "svg"):
            cmd = ["gnuplot", "-e", "; ".join(sets + [f"fmt='{fmt_}'"]),
                   os.path.join(PLOTDIR, script + ".gp")]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                self.errors.append(f"{script}.gp ({fmt_}): {p.stderr.strip()[-300:]}")
        return (out_name or script) + ".png"

