"""report_plots — the figures of REPORT.md: their data and their gnuplot runs.

Contract: Plotter(folder, enabled) writes each figure's data as text under
FOLDER/plots/data/NAME.dat (always, so a figure can be redrawn by hand), and,
when enabled, runs scripts/plot/SCRIPT.gp twice (PNG and SVG) into
FOLDER/plots/.  It never stops the report: a gnuplot failure is kept in
Plotter.errors for report-gen to print.  The files a method writes are
listed in its docstring; every number is written with 6 significant digits.

Line styles are fixed per model (STYLE: scripts/plot/common.gp's colours),
so a model keeps its colour in every figure.

What a figure can be trusted for (issue 13) is decided here, from the data
alone, so that the figure and the sentence under it agree with or without
gnuplot:
- a model's line joins only neighbouring values of its sweep where it has a
  valid point at both, and (log x axis) that are at most a decade apart; a
  point the server did not reach is drawn unjoined.  The line is broken
  with a blank line in the data (gnuplot's segments), never bridged;
- each panel's y range is the measured region (medians, min–max and the
  invalid runs), set here: a bound beyond it is clipped, and the panels of
  one figure that are compared (PANELS) share one range;
- note() is the sentence under the figure: the error bars (and how many are
  shorter than a marker at the plotted scale), the invalid runs, the points
  not measured, not reached or not joined, the bounds clipped or exceeded,
  the y ranges shared or not and why.
"""
import math
import os
import subprocess

from report_data import MODELS, PEERS, ROOT, VARIANTS, fmt, label, metric

PLOTDIR = os.path.join(ROOT, "scripts", "plot")
# The four models and the peers in order (1-6); async ×N is style 7.
STYLE = {m: i + 1 for i, m in enumerate(MODELS + PEERS)}
STYLE.update({v: 7 for v in VARIANTS})

# Each figure script's panels: log x axis, log y per panel, the groups of
# panels that are compared and share one y range (1-based), and why the
# others do not.  Panels are the data/data1.. files in order.
PANELS = {
    "fig1a-throughput": dict(logx=True, logy=[True]),
    "fig1b-p99": dict(logx=True, logy=[True]),
    "fig1c-rss": dict(logx=True, logy=[True]),
    "fig2a-cpu": dict(logx=True, logy=[True]),
    "fig2b-latency": dict(logx=False, logy=[True]),
    "fig3-chain": dict(logx=True, logy=[True]),
    "fig4-blocking": dict(logx=False, logy=[True, True, True], share=[[1, 2, 3]]),
    "fig5-overhead": dict(bars=True, logy=[False] * 3, share=[[1, 3]],
                          why="the context switches are another quantity"),
    "fig6-memory": dict(logx=True, logy=[True, True], why="MB and threads are different quantities"),
    "fig7-failures": dict(logx=False, logy=[False, True], why="retries and milliseconds are different quantities"),
    "fig8-code": dict(bars=True, logy=[False, False], why="lines and decision points are different counts"),
    "fig9-peers": dict(logx=True, logy=[True, True], share=[[1, 2]]),
    "fig10-twisted": dict(logx=True, logy=[True, True], why="emails/s and µs per email are different quantities"),
    "fig11-load": dict(logx=False, logy=[True, False], why="milliseconds and a ratio are different quantities"),
}
HIDDEN = 0.025      # an error bar shorter than this share of the axis is hidden by its marker
PAD = 1.15          # the y range: the measured region, ×1.15 (log) or +8% (linear) of room


def nice(v, up):
    """The next value of the series 1, 1.5, 2, 3, 5, 7 (× 10^k) above (up) or below v > 0."""
    e = math.floor(math.log10(v))
    steps = [k * 10 ** p for p in (e - 1, e, e + 1) for k in (1, 1.5, 2, 3, 5, 7)]
    return min(s for s in steps if s >= v * (1 - 1e-9)) if up else max(s for s in steps if s <= v * (1 + 1e-9))


def listing(items):
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class Plotter:
    """Writes figure data under plots/data and runs the gnuplot scripts."""

    def __init__(self, folder, enabled):
        self.dir = os.path.join(folder, "plots")
        self.data = os.path.join(self.dir, "data")
        self.enabled = enabled
        self.errors = []
        self.info = {}       # data path -> what was drawn and left out (lines_file, bars_file)
        self.notes = {}      # PNG name -> the sentence under the figure (plot)
        self.ranges = {}     # PNG name -> each panel's (ymin, ymax) or None (plot)
        os.makedirs(self.data, exist_ok=True)

    def lines_file(self, name, agg, scale=1.0, xs_filter=None, logx=False, unjoined=(), own_grid=False):
        """Blocks of "x median min max" per model, broken (a blank line) where
        the model has no valid point at a value of the sweep, between
        neighbours more than a decade apart on a log x axis (logx), and
        around the points in unjoined ((model, x): not reached); returns the
        path.  own_grid: each model's values are only those it has runs at
        (x is the model's own, e.g. emails in flight), none "not measured".  Also writes NAME.invalid.dat (invalid_file)."""
        path = os.path.join(self.data, name + ".dat")
        xs = [x for x in agg.xs if xs_filter is None or xs_filter(x)]
        # own_grid: x is the model's own (not the sweep's value), named by itself
        labels = {x: fmt(x) for x in agg.xs} if own_grid else dict(agg.label)
        info = dict(models=list(agg.models), pts=[], missing={}, wide=set(), unjoined=[],
                    invalid=set(), invalid_drawn=set(), vals=[])
        with open(path, "w") as f:
            for m in agg.models:
                f.write(f"# {m}: {agg.name} x median min max\n")
                wrote, prev, alone = False, None, False
                for x in xs:
                    if own_grid and (m, x) not in agg.points:
                        continue
                    if not agg.planned_at(m, x) and (m, x) not in agg.points and (m, x) not in agg.invalid:
                        # only another model's value (values.MODEL): said, but no gap in the line
                        info["missing"].setdefault(("not in its values", m), []).append(labels[x])
                        continue
                    s = agg.stat(m, x)
                    if not s:
                        why = "only invalid runs" if agg.invalid.get((m, x)) else "not measured"
                        info["missing"].setdefault((why, m), []).append(labels[x])
                        prev = None
                        continue
                    here = (m, x) in unjoined
                    if prev is not None and (here or alone or (logx and prev > 0 and x / prev > 10)):
                        f.write("\n")
                        if logx and prev > 0 and x / prev > 10 and not (here or alone):
                            info["wide"].add((prev, x))
                    elif prev is None and wrote:
                        f.write("\n")
                    if here:
                        info["unjoined"].append((m, x, labels[x]))
                    f.write(f"{x:g} {s[0] * scale:.6g} {s[1] * scale:.6g} {s[2] * scale:.6g}\n")
                    info["pts"].append((m, x, s[0] * scale, s[1] * scale, s[2] * scale, s[3]))
                    wrote, prev, alone = True, x, here
                if not wrote:
                    f.write("NaN NaN NaN NaN\n")
                f.write("\n\n")
        info["label"] = labels
        info["invalid_path"] = self.invalid_file(name, agg, scale, xs_filter)
        for (m, x), rows in agg.invalid.items():
            if xs_filter is None or xs_filter(x):
                for r in rows:
                    run = r.get("run_file") or (m, x, r.get("rep"))
                    info["invalid"].add(run)
                    v = metric(r, agg.name)
                    if v is not None and v > 0:
                        info["invalid_drawn"].add(run)
                        info["vals"].append(v * scale)
        self.info[path] = info
        return path

    def invalid_file(self, name, agg, scale=1.0, xs_filter=None):
        """Invalid runs that still have a value ("x y"), or '' if none."""
        pts = []
        for (m, x), rows in sorted(agg.invalid.items()):
            if xs_filter is not None and not xs_filter(x):
                continue
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

    def bound_file(self, name, blocks, logx=False):
        """blocks: per model (agg.models order) [(x, little, cpu)]; None as
        NaN; logx: broken (a blank line) between values more than a decade
        apart, as the measured lines are."""
        path = os.path.join(self.data, name + ".bound.dat")
        with open(path, "w") as f:
            f.write("# one block per model: x little_bound cpu_bound (emails/s)\n")
            for rows in blocks:
                prev = None
                for x, lit, cpu in rows:
                    if logx and prev and x / prev > 10:
                        f.write("\n")
                    prev = x
                    f.write(f"{x:g} {'NaN' if lit is None else f'{lit:.6g}'} "
                            f"{'NaN' if cpu is None else f'{cpu:.6g}'}\n")
                f.write("\n\n")
        self.info[path] = dict(blocks=blocks)
        return path

    def bars_file(self, name, stats, exact=False, what=None, invalid=0):
        """stats: [(model, median, min, max)] (the model's label quoted, so
        that it may hold spaces); exact: counted values, no repetitions;
        what: the note's words for a panel drawn without whiskers; invalid:
        the invalid runs left out."""
        path = os.path.join(self.data, name + ".dat")
        with open(path, "w") as f:
            f.write("# model median min max style\n")
            for m, med, lo, hi in stats:
                f.write(f"\"{label(m)}\" {med:.6g} {lo:.6g} {hi:.6g} {STYLE.get(m, 5)}\n")
        self.info[path] = dict(bars=[s for s in stats if s[0] != "none"], exact=exact, what=what,
                               invalid=invalid)
        return path

    # ------------------------------------------------------------ ranges
    def panel_range(self, infos, logy, bars=False):
        """(ymin, ymax) holding every median, min–max and invalid value of
        the panels infos, with room; None when there is nothing."""
        vals = []
        for inf in infos:
            vals += [v for p in inf.get("pts", []) for v in p[2:5]] + inf.get("vals", [])
            vals += [v for b in inf.get("bars", []) for v in b[1:4]]
        vals = [v for v in vals if v is not None and math.isfinite(v) and (v > 0 or not logy)]
        if not vals:
            return None
        lo, hi = min(vals), max(vals)
        if logy:
            return nice(lo / PAD, False), nice(hi * PAD, True)
        lo = min(lo, 0.0)
        hi = hi * 1.08 if hi > 0 else 1.0
        return lo, hi

    # ------------------------------------------------------------ plotting
    def plot(self, script, models, out_name=None, **files):
        """Run scripts/plot/<script>.gp for PNG and SVG (named out_name, by
        default the script's name); returns the PNG name.  Sets each
        panel's y range (ymin, ymax or ymin1.. for several panels) and keeps
        the sentence under the figure in notes[PNG]; shareN=PATH adds another
        figure's panel to panel N's range (the same quantity compared across
        figures)."""
        png = (out_name or script) + ".png"
        spec = PANELS.get(script, dict(logy=[]))
        keys = ["data"] if "data" in files else sorted(k for k in files if k[:4] == "data" and k[4:].isdigit())
        paths = [files[k] for k in keys]
        extra = {int(k[5:]): v for k, v in list(files.items()) if k.startswith("share")}
        for k in [k for k in files if k.startswith("share")]:
            del files[k]
        logy = spec.get("logy") or [True] * len(paths)
        groups = spec.get("share") or []
        ranges = {}
        for i in range(len(paths)):
            grp = next((g for g in groups if i + 1 in g), [i + 1])
            infos = [self.info.get(paths[j - 1], {}) for j in grp if j <= len(paths)]
            infos += [self.info.get(extra[j], {}) for j in grp if j in extra]
            r = self.panel_range(infos, logy[i] if i < len(logy) else True, spec.get("bars"))
            if r:
                ranges[i] = r
        sets_r = []
        for i, (lo, hi) in ranges.items():
            suffix = "" if keys[i] == "data" else str(i + 1)
            sets_r += [f"ymin{suffix}={lo:.6g}", f"ymax{suffix}={hi:.6g}"]
            if (logy[i] if i < len(logy) else True) and hi / lo < 1000:
                # a log axis of under 3 decades: labels at 1, 2 and 5 of each decade
                # (and 1.5, 3, 7 under one decade)
                ks = (1, 1.5, 2, 3, 5, 7) if hi / lo < 10 else (1, 2, 5)
                tics = [k * 10 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                        for k in ks]
                sets_r.append(f"yt{suffix}='" + ", ".join(f"{t:g}" for t in tics if lo <= t <= hi) + "'")
        self.ranges[png] = [ranges.get(i) for i in range(len(paths))]
        self.notes[png] = self.note(spec, paths, ranges, logy, files.get("bound"), extra)
        out = os.path.join(self.dir, out_name or script)
        if not self.enabled:
            return png
        sets = [f"dir='{PLOTDIR}'", f"out='{out}'",
                "models='" + " ".join(f'"{label(m)}"' for m in models) + "'",
                f"styles='{' '.join(str(STYLE.get(m, 5)) for m in models)}'"]
        for i, k in enumerate(keys):       # each panel's invalid runs (red crosses)
            inv = "invalid" + k[4:]
            if inv not in files and self.info.get(paths[i], {}).get("invalid_path"):
                files[inv] = self.info[paths[i]]["invalid_path"]
        sets += [f"{k}='{v}'" for k, v in files.items()] + sets_r
        bound = self.info.get(files.get("bound") or "", {}).get("blocks") or []
        if any(lit is not None for rows in bound for _, lit, _ in rows):
            sets.append("has_little=1")
        if any(c is not None for rows in bound for _, _, c in rows):
            sets.append("has_cpu=1")
        for fmt_ in ("png", "svg"):
            cmd = ["gnuplot", "-e", "; ".join(sets + [f"fmt='{fmt_}'"]),
                   os.path.join(PLOTDIR, script + ".gp")]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                self.errors.append(f"{script}.gp ({fmt_}): {p.stderr.strip()[-300:]}")
        return png

    # ------------------------------------------------------------ the note
    def note(self, spec, paths, ranges, logy, bound, extra):
        """The sentence under a figure: what its bars are, what it leaves out."""
        infos = [self.info.get(p, {}) for p in paths]
        parts = []
        if spec.get("bars"):
            if all(inf.get("exact") for inf in infos):
                parts.append("Counted values: no repetitions, no error bars")
                parts += [inf["what"] for inf in infos if inf.get("what")]
            else:
                parts.append("Bars: medians; whiskers: min–max of the repetitions")
                parts += [inf["what"] for inf in infos if inf.get("what")]
                bad = max(inf.get("invalid", 0) for inf in infos)
                parts.append(f"Invalid runs (not in the bars): {bad}" if bad else "Invalid runs: none")
        else:
            pts = [(i, p) for i, inf in enumerate(infos) for p in inf.get("pts", [])]
            ns = sorted({p[5] for _, p in pts})
            hidden = one = 0
            for i, p in pts:
                if p[5] < 2:
                    one += 1
                    continue
                if i not in ranges:
                    continue
                lo, hi = ranges[i]
                if logy[i] if i < len(logy) else True:
                    share = (math.log(p[4]) - math.log(p[3])) / math.log(hi / lo) if p[3] > 0 else 1
                else:
                    share = (p[4] - p[3]) / (hi - lo)
                hidden += share < HIDDEN
            if ns:
                reps = f"{ns[0]}" if ns[0] == ns[-1] else f"{ns[0]}–{ns[-1]}"
                text = (f"Error bars: min–max of the repetitions ({reps} valid "
                        f"run{'' if ns[-1] == 1 else 's'} a point)")
                if hidden:
                    text += (f"; {hidden} of {len(pts) - one} {'is' if hidden == 1 else 'are'} shorter than "
                             "their marker at this scale "
                             "(a spread under 2.5% of the axis) and hidden by it: the tables give every "
                             "min–max")
                if one:
                    text += f"; {one} point{'s' if one > 1 else ''} with one valid run, no bar"
                parts.append(text)
            same = self.coincide(infos, ranges, logy)
            if same:
                parts.append("On top of one another at this scale (the later in the key hides the "
                             "earlier): " + "; ".join(same))
            bad = len(set().union(*(inf.get("invalid", set()) for inf in infos)))
            drawn = len(set().union(*(inf.get("invalid_drawn", set()) for inf in infos)))
            if bad:
                parts.append(f"Invalid runs (not in the medians): {bad}, "
                             + (f"{drawn} drawn as red crosses" if drawn else "none drawn")
                             + (f", {bad - drawn} without a value to draw (crashed or timed out)"
                                if bad > drawn else ""))
            else:
                parts.append("Invalid runs: none")
            miss = {}
            for inf in infos:
                for (why, m), xs in inf.get("missing", {}).items():
                    miss.setdefault((why, label(m)), [])
                    miss[(why, label(m))] += [x for x in xs if x not in miss[(why, label(m))]]
            for why in ("not measured", "only invalid runs", "not in its values"):
                by = {}
                for (w, m), xs in sorted(miss.items()):
                    if w == why:
                        by.setdefault(", ".join(xs), []).append(m)
                items = [f"{listing(ms)} at {xs}" for xs, ms in by.items()]
                if items:
                    parts.append({"not measured": "Not measured (no point, no line): ",
                                  "only invalid runs": "Only invalid runs (no point, no line): ",
                                  "not in its values": "Not run by design (the sweep gives these their "
                                  "own values; their lines join the values they have): "}[why]
                                 + "; ".join(items))
            unj = sorted({u for inf in infos for u in inf.get("unjoined", [])})
            if unj:
                by = {}
                for m, _, x in unj:
                    by.setdefault(label(m), []).append(x)
                parts.append("Not reached (the server counted under 95% of the concurrency; drawn, "
                             "not joined): " + "; ".join(f"{m} at {listing(xs)}" for m, xs in by.items()))
            wide = sorted({w for inf in infos for w in inf.get("wide", set())})
            if wide:
                lab = {}
                for inf in infos:
                    lab.update(inf.get("label", {}))
                parts.append("Not joined: neighbouring values more than a decade apart ("
                             + ", ".join(f"{lab.get(a, fmt(a))} → {lab.get(b, fmt(b))}" for a, b in wide)
                             + "): nothing was measured between them")
            if bound and 0 in ranges:
                parts += self.bound_note(infos[0], self.info.get(bound, {}).get("blocks") or [], ranges[0])
        if len(paths) > 1:
            shared = [g for g in spec.get("share") or [] if len(g) > 1]
            if shared:
                parts.append("Panels " + "; ".join(listing([str(i) for i in g]) for g in shared)
                             + " (left to right) share one y range"
                             + (f"; the others have their own: {spec['why']}" if spec.get("why") else ""))
            elif spec.get("why") and extra:
                parts.append(f"Each panel has its own y range ({spec['why']}), the same as the same "
                             "panel's in the companion figure (the other sweep), so the two can be compared")
            elif spec.get("why"):
                parts.append(f"Each panel has its own y range: {spec['why']}")
        elif extra:
            parts.append("The y range is also the companion figure's (the other sweep), so the two can "
                         "be compared")
        return ". ".join(parts) + "." if parts else ""

    @staticmethod
    def coincide(infos, ranges, logy):
        """Groups of models whose medians lie within 1% of the axis of each
        other at every value both were measured at (2 or more, unless one has
        a single point): one line hides
        the other.  One text per group, with its panel when there are several."""
        out = []
        for i, inf in enumerate(infos):
            if i not in ranges:
                continue
            lo, hi = ranges[i]
            log = logy[i] if i < len(logy) else True
            pos = (lambda v: math.log(v / lo) / math.log(hi / lo)) if log else (lambda v: (v - lo) / (hi - lo))
            meds = {}
            for m, x, med, *_ in inf.get("pts", []):
                if med > 0 or not log:
                    meds.setdefault(m, {})[x] = pos(med)
            group = {}
            ms = [m for m in inf.get("models", []) if m in meds]
            for a_i, a in enumerate(ms):
                for b in ms[a_i + 1:]:
                    xs = set(meds[a]) & set(meds[b])
                    if len(xs) >= min(2, len(meds[a]), len(meds[b])) and xs and all(abs(meds[a][x] - meds[b][x]) < 0.01 for x in xs):
                        g = group.get(a) or group.get(b) or []
                        for m in (a, b):
                            if m not in g:
                                g.append(m)
                            group[m] = g
            for g in {id(g): g for g in group.values()}.values():
                out.append(listing([label(m) for m in ms if m in g])
                           + (f" (panel {i + 1})" if len(infos) > 1 else ""))
        return out

    def bound_note(self, info, blocks, rng):
        """Bounds clipped at the plot's top, and measured points above their bound."""
        out, clipped, above = [], [], []
        lows = {(m, x): lo for m, x, _, lo, *_ in info.get("pts", [])}
        lab = info.get("label", {})
        for m, rows in zip(info.get("models", []), blocks):
            for kind, col in (("Little's-law", 1), ("CPU", 2)):
                over = [r[0] for r in rows if r[col] is not None and r[col] > rng[1]]
                whose = label(m) + ("'" if label(m).endswith("s") else "'s")
                if over:
                    clipped.append(f"{whose} {kind} bound from {lab.get(over[0], fmt(over[0]))} on")
                for r in rows:
                    low = lows.get((m, r[0]))
                    if r[col] is not None and low is not None and low > r[col] * 1.02:
                        above.append(f"{label(m)} at {lab.get(r[0], fmt(r[0]))} (every run, least "
                                     f"{fmt(low)}, above its {kind} bound {fmt(r[col])})")
        if clipped:
            out.append("Clipped at the top, so the measured region keeps the plot's height: "
                       + "; ".join(clipped))
        if above:
            out.append("Measured above its own bound by more than 2% in every repetition (the "
                       "bound or the measurement is off): "
                       + "; ".join(above))
        return out
