"""report_scaffold — the one scaffold every section of REPORT.md is written
with (scripts/report-gen's Report is this class plus the section mixins).

Contract: Scaffold holds the report being written (`out`, a list of lines
that `w` appends to) and what every section shares: the results (`folder`,
`env`, `rows` by sweep), the Plotter (`p`), the links (`link`: from REPORT.md
to RESULTS/plots; `code_link`: to the repository's top), the measured sources
(`code_dir`, `code_from`: report_code.code_at_revision), the summary rows that
`finding` fills (`findings`), the RSS fit of question 6 (`rss_fit`) and the
invalid-run lists already written (`listed`).  A section never prints: it
only appends lines, so report-gen can assemble them in any order.

A question's section reads, in order:

    rows = self.begin("## N. Title", "sweep")    # heading + the sweep's settings,
    if not rows:                                  # or the "not measured" note
        return
    agg = Agg(rows, "tput")
    self.lines_figure("figN-name", "figN", agg, "Figure N: ...")   # data + link
    self.table(agg, title="concurrency", caption="Throughput (emails/s):")
    self.verdict(text)                  # the answer, by the rule of report_data.decide
"""
from report_code import code_at_revision
from report_data import MODELS, Agg, boot_ratio, decide, fmt, label
from report_plots import PANELS


class Scaffold:
    """The report being written and the scaffold of every section."""

    def __init__(self, folder, env, rows, plotter, link_base, code_base):
        self.folder, self.env, self.rows, self.p = folder, env, rows, plotter
        self.link = link_base          # path from REPORT.md to RESULTS/plots
        self.code_link = code_base     # path from REPORT.md to the repository top
        self.code_dir, self.code_from = code_at_revision(folder, env)
        self.out = []
        self.findings = {}             # summary rows: claim -> text, ci, vs, enough (finding())
        self.rss_fit = {}              # model -> (base MB, MB per in-flight email), from q6
        self.listed = set()            # invalid-run lists already written

    def w(self, *lines):
        self.out.extend(lines)

    # ------------------------------------------------------------ opening
    def begin(self, heading, sweep, note="", conf=True, sub=False):
        """A question's opening: its heading, then the sweep's settings
        (conf_line, followed by note) — or, when the folder has no such sweep,
        the "not measured" note.  Returns the sweep's rows, or None: the
        section stops there.  conf=False: the section describes its data
        itself.  sub: a sub-question (### 2a), whose heading is written only
        when it was measured."""
        if not sub:
            self.w(heading, "")
        rows = self.sweep_rows(sweep)
        if not rows:
            self.missing(sweep, [sweep])
            return None
        if sub:
            self.w(heading, "")
        if conf:
            self.w(self.conf_line(sweep) + note, "")
        return rows

    def sweep_rows(self, name):
        return self.rows.get(name)

    def missing(self, title, names):
        """The note of a section whose sweeps (names) are not in the folder
        (title, the question, is not printed)."""
        self.w(f"*Not measured in this results folder (no {', '.join(names)} sweep).*", "")

    def conf_line(self, name):
        """A sweep's settings in one sentence, from env.json."""
        s = self.env["sweeps"].get(name, {})
        return (f"Sweep `{name}` ({s.get('conf', '?')}): values {', '.join(s.get('values', []))}; "
                f"server `{s.get('server', '')}`; model `{s.get('model', '')}`; "
                f"emails = `{s.get('emails', '')}`.")

    # ------------------------------------------------- figures and tables
    def figure(self, png, alt):
        """The link to a figure (a PNG under RESULTS/plots), and under it
        what the figure draws and leaves out (Plotter.note: error bars,
        invalid runs, points not measured, not reached or not joined,
        bounds clipped, y ranges shared)."""
        self.w(f"![{alt}]({self.link}/{png})", "")
        note = self.p.notes.get(png)
        if note:
            self.w(f"*{alt.split(':')[0]}, what it draws and leaves out:* {note}", "")

    def plot_figure(self, script, models, alt, out_name=None, **files):
        """Draws scripts/plot/SCRIPT.gp over data files already written
        (files: the script's variables, data1=PATH, ...) and links it."""
        self.figure(self.p.plot(script, models, out_name, **files), alt)

    def lines_figure(self, script, data, agg, alt, bound=None, unjoined=()):
        """A figure of one metric against the swept value, a line per model:
        its data in plots/data/DATA.dat, the invalid runs in
        DATA.invalid.dat (red crosses), the models' bounds when a bound file
        is given; drawn by scripts/plot/SCRIPT.gp and linked.  unjoined:
        (model, x) points drawn without a line to them (not reached)."""
        files = {"data": self.p.lines_file(data, agg, logx=self.logx(script), unjoined=unjoined)}
        if bound:
            files["bound"] = bound
        self.plot_figure(script, agg.models, alt, **files)

    @staticmethod
    def not_reached(rows):
        """(model, x) where the server counted under 95% of the concurrency
        asked for (median over the runs): drawn, not joined."""
        reached = Agg(rows, "reached_pct")
        return {(m, x) for m in reached.models if m in MODELS and m != "sync" for x in reached.xs
                if reached.med(m, x) is not None and reached.med(m, x) < 95}

    @staticmethod
    def logx(script):
        """Whether SCRIPT's x axis is logarithmic (report_plots.PANELS)."""
        return PANELS.get(script, {}).get("logx", False)

    def table(self, agg, unit="", title=None, caption=None):
        """Rows = swept values, columns = models, cells = median (min–max),
        under its caption; the sweep's invalid runs listed after the first."""
        if caption:
            self.w(caption, "")
        self.w(f"| {title or 'value'} | " + " | ".join(label(m) for m in agg.models) + " |",
               "|---:|" + "---:|" * len(agg.models))
        for x in agg.xs:
            self.w(f"| {agg.label[x]} | " + " | ".join(agg.cell(m, x, unit) for m in agg.models) + " |")
        self.w("")
        self.invalid_list(agg)

    @staticmethod
    def end_ratios(agg):
        """(first x, last x, ["model ×r", ...]): each model's median at the
        sweep's last value over its median at the first (Q3, Q7)."""
        x0, x1 = agg.xs[0], agg.xs[-1]
        parts = []
        for m in agg.models:
            a, b = agg.med(m, x0), agg.med(m, x1)
            if a and b:
                parts.append(f"{m} ×{fmt(b / a)}")
        return x0, x1, parts

    def invalid_list(self, agg):
        """The invalid runs of a sweep, listed once (under its first table)."""
        bad = [(m, x, r) for (m, x), rs in sorted(agg.invalid.items()) for r in rs]
        key = tuple(r.get("run_file") for _, _, r in bad)
        if not bad or key in self.listed:
            return
        self.listed.add(key)
        self.w("Invalid runs, left out of every median of this sweep (✗ in the tables, red crosses "
               "in the figures):", "")
        for m, x, r in bad:
            self.w(f"- {m} at {agg.label[x]}, repetition {int(r['rep']) + 1}: {r.get('reason') or 'invalid'}"
                   f" (`{r.get('run_file') or '?'}`)")
        self.w("")

    # ------------------------------------------------------------ verdicts
    def verdict(self, text):
        """The section's answer, one paragraph."""
        self.w("**Verdict:** " + text, "")

    def finding(self, key, text, a, b, higher, vs, exact=False):
        """A summary row: async's samples a against the samples b of model
        vs, decided by decide() (never a default winner).  A measured claim
        needs 2 or more runs a side; exact (counted) ones need one."""
        ci = boot_ratio(a, b, higher)
        if ci is not None:
            self.findings[key] = dict(text=text, ci=ci, vs=vs,
                                      enough=exact or min(ci[3], ci[4]) >= 2)

    def winner_at(self, agg, x, higher=True, models=None):
        """The model that beats every other one at x by the verdict rule, or
        None (no clear winner).  Peers never win."""
        ms = [m for m in (models or agg.models) if m in MODELS and agg.points.get((m, x))]
        for m in ms:
            if all(decide(boot_ratio(agg.points[(m, x)], agg.points[(o, x)], higher)) == "a"
                   for o in ms if o != m):
                return m
        return None
