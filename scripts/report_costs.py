"""report_costs — the questions of REPORT.md about what each design costs: 4
(one blocking call per email), 5 (overhead per email at concurrency 1, with
hyperfine's whole-process figures), 6 (memory and threads per in-flight
email, a fitted line), 7 (temporary failures and dropped connections) and 8
(code: size, complexity, locks, callbacks, the retry of each model quoted).

Contract: a mixin of report-gen's Report over report_scaffold.Scaffold; each
qN() writes one section and records its summary rows with finding().  q6()
leaves the fitted RSS lines in self.rss_fit for question 10.  The isolated
parts of questions 4 and 7 (q4_where, q4_pool, q7_timeouts) are in
report_teaching.
"""
import json
import os
import statistics

from report_code import (CODE_PATH, ERROR_ANCHOR, WAIT_LAYER, code_stats, code_stats_files,
                         excerpt_at)
from report_data import MODEL_ORDER, VARIANTS, Agg, fit_line, fmt, fmt_n, label
from report_scaffold import Scaffold


class CostSections(Scaffold):
    """Questions 4 to 8."""

    # -- question 4
    def q4(self):
        rows = self.begin("## 4. One blocking call per email", "q4-blocking")
        if not rows:
            return
        self.q4_where()
        aggs = [Agg(rows, k) for k in ("p50", "p99", "max")]
        files = {f"data{i + 1}": self.p.lines_file(f"fig4-{a.name}", a) for i, a in enumerate(aggs)}
        self.plot_figure("fig4-blocking", aggs[1].models,
                         "Figure 4: p50, p99 and max latency against a blocking call per email", **files)
        for a in aggs:
            self.table(a, title="blocking call", caption=f"{a.name} latency (ms):")
        self.table(Agg(rows, "tput"), title="blocking call", caption="Throughput (emails/s):")
        p99 = aggs[1]
        xmax = p99.xs[-1]
        a, t = p99.med("async", xmax), p99.med("threads", xmax)
        a0 = p99.med("async", p99.xs[0])
        verdict = ""
        if a and t:
            verdict = (f"with a {p99.label[xmax]} blocking call per email, async's p99 is {fmt(a)} ms "
                       f"against {fmt(t)} ms for threads (×{fmt(a / t)})")
            verdict += f"; without the call async's p99 is {fmt(a0)} ms." if a0 else "."
            h = p99.med("hybrid", xmax)
            if h:
                verdict += f" The hybrid's p99 is {fmt(h)} ms."
            self.finding("blocking", f"p99 with a {p99.label[xmax]} blocking call: async {fmt(a)} ms, "
                         f"threads {fmt(t)} ms", p99.points[("async", xmax)],
                         p99.points[("threads", xmax)], False, "threads")
        self.verdict(verdict or "not enough valid runs to compare async and threads.")
        self.q4_pool()

    # -- question 5
    def q5(self):
        rows = self.begin("## 5. Overhead per email at concurrency 1, zero latency", "q5-overhead")
        if not rows:
            return
        cpu, ctx, tput = Agg(rows, "cpu_us"), Agg(rows, "ctx"), Agg(rows, "tput")
        x = cpu.xs[0]
        bars = lambda agg: [(m,) + agg.stat(m, x)[:3] for m in agg.models if agg.stat(m, x)]
        hf = self.hyperfine()
        hf_bars = [(m, v["cpu_us"], v["cpu_us"], v["cpu_us"]) for m, v in hf.items()]
        bad = sum(len(v) for v in cpu.invalid.values())
        files = dict(data1=self.p.bars_file("fig5-cpu", bars(cpu), invalid=bad),
                     data2=self.p.bars_file("fig5-ctx", bars(ctx), invalid=bad),
                     data3=self.p.bars_file("fig5-hyperfine", hf_bars or [("none", 0, 0, 0)],
                                            what="Panel 3 is hyperfine's mean over its timed runs "
                                            "(no whiskers)" if hf_bars else "Panel 3: hyperfine was "
                                            "not run (empty)"))
        self.plot_figure("fig5-overhead", cpu.models, "Figure 5: CPU time and context switches per email",
                         **files)
        self.w("| model | CPU µs per email | context switches per email | throughput (emails/s) | "
               "whole process (hyperfine): wall ms | CPU µs per email (incl. start-up) |",
               "|---|---:|---:|---:|---:|---:|")
        for m in cpu.models:
            h = hf.get(m, {})
            self.w(f"| {m} | {cpu.cell(m, x)} | {ctx.cell(m, x)} | {tput.cell(m, x)} | "
                   f"{h.get('wall', '—')} | {fmt(h.get('cpu_us'))} |")
        self.w("")
        self.invalid_list(cpu)
        if hf:
            self.w(f"hyperfine: {self.hf_note}", "")
        meds = {m: cpu.med(m, x) for m in cpu.models if cpu.med(m, x)}
        if meds:
            cheap = min(meds, key=meds.get)
            verdict = (f"the cheapest model per email is {cheap} ({fmt(meds[cheap])} µs of CPU); "
                       + ", ".join(f"{m} costs ×{fmt(v / meds[cheap])}" for m, v in meds.items() if m != cheap)
                       + ".")
            if "async" in meds and "sync" in meds:
                self.finding("overhead", f"async {fmt(meds['async'])} µs, sync {fmt(meds['sync'])} µs "
                             f"of CPU per email", cpu.points[("async", x)], cpu.points[("sync", x)],
                             False, "sync")
            cm = {m: ctx.med(m, x) for m in ctx.models if ctx.med(m, x) is not None}
            if "async" in cm and "threads" in cm:
                verdict += (f" Context switches per email: async {fmt(cm['async'])}, threads "
                            f"{fmt(cm['threads'])}.")
                self.ctx_at_one = (cm["async"], cm["threads"])
            self.verdict(verdict)

    def hyperfine(self):
        """Per model from runs/*-hyperfine.json: wall ms (median, min–max), CPU µs/email."""
        out = {}
        self.hf_note = ""
        rows = self.rows.get("q5-hyperfine") or []
        emails = {r["model"]: r.get("emails") for r in rows}
        valid = {r["model"]: r["valid"] for r in rows}
        for name in sorted(os.listdir(os.path.join(self.folder, "runs"))) if os.path.isdir(
                os.path.join(self.folder, "runs")) else []:
            if not name.endswith("-hyperfine.json"):
                continue
            try:
                with open(os.path.join(self.folder, "runs", name)) as f:
                    results = json.load(f)["results"]
            except (OSError, ValueError, KeyError):
                continue
            for r in results:
                m = r.get("parameters", {}).get("model")
                n = emails.get(m)
                if not m or not n:
                    continue
                t = r["times"]
                out[m] = {"wall": f"{fmt(statistics.median(t) * 1000)} ({fmt(min(t) * 1000)}–"
                                  f"{fmt(max(t) * 1000)})" + ("" if valid.get(m) else " ✗"),
                          "cpu_us": (r["user"] + r["system"]) / n * 1e6}
                self.hf_note = (f"{len(t)} timed runs per model after one warm-up, {int(n)} emails "
                                f"each (`runs/{name}`); the CPU column is hyperfine's mean user + "
                                f"system time divided by the emails, start-up included.")
        return out

    # -- question 6
    def q6(self):
        rows = self.begin("## 6. Memory and threads per in-flight email", "q1-concurrency", conf=False)
        if not rows:
            return
        self.w("From the runs of question 1: emails in flight = min(concurrency, emails) for "
               "threads, async, hybrid and the Twisted reference, 1 for sync (smtp-source is left "
               "out: its RSS is not measured). The fitted line is a least-squares fit of "
               "peak RSS against emails in flight over every valid run.", "")
        fixed = []
        for r in rows:
            if r["model"] == "smtp-source":
                continue
            r = dict(r)
            r["x"] = 1.0 if r["model"] == "sync" else min(r["x"], r.get("emails") or r["x"])
            fixed.append(r)
        rss, thr = Agg(fixed, "rss_mb"), Agg(fixed, "threads")
        fits, fitpath = {}, os.path.join(self.p.data, "fig6-fit.dat")
        with open(fitpath, "w") as f:
            for m in rss.models:
                pairs = [(x, v) for (mm, x), vs in rss.points.items() if mm == m for v in vs]
                fit = fit_line(pairs)
                fits[m] = fit
                f.write(f"# {m}: fitted RSS MB = a + b x\n")
                xs = sorted({x for x, _ in pairs}) or [1]
                # Many points: a straight line is a curve on the log-log axes.
                steps = [xs[0] * (xs[-1] / xs[0]) ** (k / 40) for k in range(41)] if xs[0] > 0 else xs
                for x in steps if fit else ():
                    f.write(f"{x:.6g} {max(fit[0] + fit[1] * x, 1e-3):.6g}\n")
                if not fit:
                    f.write("NaN NaN\n")
                f.write("\n\n")
        self.plot_figure("fig6-memory", rss.models, "Figure 6: RSS and threads against emails in flight",
                         data1=self.p.lines_file("fig6-rss", rss, logx=True, own_grid=True,
                                                 unjoined=self.not_reached(fixed)),
                         data2=self.p.lines_file("fig6-threads", thr, logx=True, own_grid=True,
                                                 unjoined=self.not_reached(fixed)),
                         fit1=fitpath)
        self.w("| model | fitted RSS per extra in-flight email | fitted base RSS | peak threads at the "
               "highest in-flight |", "|---|---:|---:|---:|")
        for m in rss.models:
            fit = fits.get(m)
            top = max((x for (mm, x) in thr.points if mm == m and thr.med(m, x) is not None), default=None)
            self.w(f"| {label(m)} | {fmt(fit[1] * 1024) + ' KB' if fit else '— (one point)'} | "
                   f"{fmt(fit[0]) + ' MB' if fit else '—'} | "
                   f"{fmt(thr.med(m, top)) if top is not None else '—'} |")
        self.w("")
        self.rss_fit = fits
        a, t = fits.get("async"), fits.get("threads")
        verdict = "not enough valid runs to fit async and threads."
        if a and t:
            verdict = (f"each extra email in flight costs {fmt(a[1] * 1024)} KB with async and "
                       f"{fmt(t[1] * 1024)} KB with threads"
                       + (f" (×{fmt(t[1] / a[1])})." if a[1] > 0 else "."))
            # Per run at the most emails in flight both reached: RSS ÷ in-flight
            # (repetitions behind it, unlike the fitted slope).
            per = Agg(rows, "rss_per_inflight")
            xs = [x for x in per.xs if per.points.get(("async", x)) and per.points.get(("threads", x))]
            if xs:
                x = xs[-1]
                self.finding("memory", f"async {fmt(a[1] * 1024)} KB, threads {fmt(t[1] * 1024)} KB per "
                             f"in-flight email (fitted); per run at {per.label[x]} in flight: async "
                             f"{fmt(per.med('async', x))} KB, threads {fmt(per.med('threads', x))} KB",
                             per.points[("async", x)], per.points[("threads", x)], False, "threads")
        self.verdict(verdict)

    # -- question 7
    def q7(self):
        rows = self.begin("## 7. Failures: temporary failures and dropped connections", "q7-failures")
        if not rows:
            return
        ret, p99 = Agg(rows, "retries_per_email"), Agg(rows, "p99")
        self.plot_figure("fig7-failures", ret.models, "Figure 7: retries and p99 latency against injected faults",
                         data1=self.p.lines_file("fig7-retries", ret), data2=self.p.lines_file("fig7-p99", p99))
        dl, fl, rt = Agg(rows, "delivered"), Agg(rows, "failed"), Agg(rows, "retries")
        dup = Agg(rows, "srv_duplicates")
        self.w("Delivered / failed / retries / duplicates at the server (medians), p99 latency (ms):", "",
               "| fault probability | model | delivered | failed | retries | duplicates | p99 ms |",
               "|---:|---|---:|---:|---:|---:|---:|")
        for x in ret.xs:
            for m in ret.models:
                self.w(f"| {ret.label[x]} | {m} | {fmt_n(dl.med(m, x))} | {fmt_n(fl.med(m, x))} | "
                       f"{fmt_n(rt.med(m, x))} | {fmt_n(dup.med(m, x))} | {p99.cell(m, x)} |")
        self.w("")
        self.invalid_list(p99)
        x0, x1, parts = self.end_ratios(p99)
        verdict = (f"with faults at probability {ret.label[x1]}, retrying multiplies p99 latency by "
                   f"{', '.join(parts)} against no faults" if parts else "not enough valid runs")
        fails = {m: fl.med(m, x1) for m in fl.models if fl.med(m, x1) is not None}
        if fails:
            verdict += "; failed emails: " + ", ".join(f"{m} {fmt(v)}" for m, v in fails.items())
        self.verdict(verdict + ".")
        a, s = p99.med("async", x1), p99.med("threads", x1)
        if a and s:
            self.finding("failures", f"p99 at fault {ret.label[x1]}: async {fmt(a)} ms, threads "
                         f"{fmt(s)} ms", p99.points.get(("async", x1), []),
                         p99.points.get(("threads", x1), []), False, "threads")
        self.q7_timeouts()

    # -- question 8
    def q8(self):
        self.w("## 8. Code: size, complexity and error handling", "")
        code = self.code_dir
        files = sorted(os.listdir(code)) if os.path.isdir(code) else []
        models = [m for m in MODEL_ORDER if m + ".c" in files
                  or m in VARIANTS and {"async.c", "async_reactors.c"} <= set(files)
                  and any(r["model"] == m for rs in self.rows.values() for r in rs)]
        if not models:
            return self.missing("q8", ["code/"])
        # A model is its main file plus the layer that does its waiting (the
        # per-email code it shares with its sibling); the rest (workload, SMTP
        # core, statistics) is the same for all four and not counted.
        sets = {m: [f for f in [m + ".c"] + WAIT_LAYER.get(m, []) if f in files] for m in models}
        stats = {m: code_stats_files([os.path.join(code, f) for f in fs]) for m, fs in sets.items()}
        bars = lambda k: [(m, st[k], st[k], st[k]) for m, st in stats.items()]
        self.plot_figure("fig8-code", models, "Figure 8: lines of code and decision points per model",
                         data1=self.p.bars_file("fig8-loc", bars("loc"), exact=True, what=(
                             "Each bar is the model's file plus the layer it waits through; not counted: "
                             "the workload, the SMTP core and the statistics (shared by all), the Deferred "
                             "library, the reactor and the hybrid's thread pool (lib/threadpool.c)")),
                         data2=self.p.bars_file("fig8-decisions", bars("decisions"), exact=True))
        self.w(f"Measured on {self.code_from}. A model is its own file "
               "(`models/MODEL.c`) plus the layer that does its waiting: `models/mailer/blocking_mailer.c` and "
               "`lib/smtp_blocking.c` for sync and threads, `models/mailer/async_mailer.c` and `lib/smtp_session.c` "
               "(the SMTP client core driven as Deferreds) for async and hybrid. The workload, the "
               "sans-I/O SMTP core and the statistics are shared by all four and not counted; neither "
               "are the Deferred library and the reactor, which a Twisted user gets from Twisted as a "
               "threads user gets pthreads from libc. Lines of code exclude blank lines and comments; "
               "decision points count `if`, `for`, `while`, `case`, `&&`, `||` and `?` outside comments "
               "and strings (cyclomatic complexity = decision points + functions); locks count mutex, "
               "condition-variable and atomic calls; callbacks are functions that take and return a "
               "Deferred's result (`struct deferred_result f(struct deferred_result, void *)`) or libev "
               "`*_cb` handlers.", "",
               "| model | files | lines of code | functions | decision points | most complex function | locks and atomics | callbacks |",
               "|---|---|---:|---:|---:|---|---:|---:|")
        for m, st in stats.items():
            links = ", ".join(f"[{f}]({self.code_link}/{CODE_PATH.get(f, 'models/' + f)})" for f in sets[m])
            self.w(f"| {label(m)} | {links} | {st['loc']} | {st['functions']} | {st['decisions']} | "
                   f"{st['worst'][0]} ({st['worst'][1]}) | {st['locks']} | {st['callbacks']} |")
        self.w("")
        self.reactors_code(stats, sets)
        self.w("How each model handles a temporary failure (the retry, where it is written):", "")
        shown = {}
        for m in models:
            fname, anchor = ERROR_ANCHOR.get(m, (m + ".c", r"retry|fail"))
            path = os.path.join(code, fname)
            if not os.path.isfile(path):
                self.w(f"- **{m}**: `{fname}` is not in this results folder.", "")
                continue
            line, text = excerpt_at(path, anchor)
            if not text:
                self.w(f"- **{m}**: no retry found in `{fname}`.", "")
                continue
            if (fname, line) in shown:
                self.w(f"**{m}** — the same code as {shown[(fname, line)]}.", "")
                continue
            shown[(fname, line)] = m
            where = CODE_PATH.get(fname, "models/" + fname)
            self.w(f"**{m}** — [{where} line {line}]({self.code_link}/{where}#L{line}):", "",
                   "```c", text, "```", "")
        if "async" in stats and "sync" in stats:
            a, s_ = stats["async"], stats["sync"]
            self.verdict(f"async (its file, the Deferred chain and the SMTP session over the "
                         f"reactor) is {a['loc']} lines with {a['decisions']} decision points and "
                         f"{a['callbacks']} callbacks, sync {s_['loc']} lines with {s_['decisions']} "
                         f"(×{fmt(a['loc'] / max(s_['loc'], 1))} the code); locks and atomics: async "
                         f"{a['locks']}, threads {stats.get('threads', {}).get('locks', '—')}.")
            self.finding("code", f"async {a['loc']} lines, sync {s_['loc']} lines (counted, exact)",
                         [a["loc"]], [s_["loc"]], False, "sync", exact=True)
            if "threads" in stats:
                h = stats.get("hybrid", {}).get("locks")
                pool = os.path.join(code, "threadpool.c")
                pool_locks = code_stats(pool)["locks"] if os.path.isfile(pool) else None
                self.finding("locks", f"async {a['locks']}, threads {stats['threads']['locks']}"
                             + (f", hybrid {h} + {pool_locks} in the thread pool it calls "
                                f"(lib/threadpool.c)" if h is not None and pool_locks is not None
                                else f", hybrid {h}" if h is not None else "")
                             + " lock/atomic calls (counted, exact; +1 each so that 0 compares)",
                             [a["locks"] + 1], [stats["threads"]["locks"] + 1], False, "threads",
                             exact=True)

    def reactors_code(self, stats, sets):
        """What async ×N adds to async's code (section 8)."""
        for v in [m for m in VARIANTS if m in stats]:
            if "async" in stats:
                extra = [f for f in sets[v] if f not in sets["async"]]
                self.w(f"{label(v)} is async plus {', '.join(f'`{f}`' for f in extra)} (the reactor "
                       f"threads, the shares, the merge): {stats[v]['loc'] - stats['async']['loc']} "
                       f"more lines, {stats[v]['locks'] - stats['async']['locks']} more lock/atomic "
                       "calls; the Deferred chain is async's, unchanged.", "")
            break
