"""report_scaling — the questions of REPORT.md about load: 1 (many tasks:
throughput, p99 and memory against concurrency, and the QUIT-in-background
variant), 2 (I/O against CPU work, with async ×N), 3 (dependency chains) and
11 (open loop: latency against offered load, the load each model sustains
under an objective); with each model's own bounds drawn in the throughput
figures (Little's law and the CPU bound, MEASUREMENT.md §2).

Contract: a mixin of report-gen's Report over report_scaffold.Scaffold; each
qN() writes one section and records its summary rows with finding().  The
isolated parts of questions 2 and 3 (q2_ceiling, q3_join, q3_verdict) are in
report_teaching.
"""
from report_data import MODELS, PEERS, TAU, VARIANTS, Agg, boot_ratio, decide, fmt, fmt_ci, label
from report_scaffold import Scaffold


class ScalingSections(Scaffold):
    """Questions 1, 2, 3 and 11, and the models' bounds."""

    # -- bounds
    def client_cores(self):
        """Cores the model may use: the pinned client cores, else all."""
        pin = self.env.get("pinning")
        if isinstance(pin, dict) and pin.get("client"):
            return len(pin["client"].split(","))
        return self.env.get("cores") or 1

    def bounds(self, name, rows, agg, inflight_of, t0_global=False, logx=False):
        """Each model's own bounds per x (MEASUREMENT.md §2), written as one
        block per model ("x little cpu") in the order of agg.models:
        - Little's law, N ÷ T1, with T1 the model's own time per email with
          one in flight (its concurrency-1 rate inverted; only where the sweep
          has concurrency 1 at the same settings, i.e. q1) and N the emails it
          can have in flight (sync: 1);
        - CPU: P ÷ c, c the model's own marginal CPU per email at that x (the
          client's: the server runs on its own core when pinned), P the
          threads that can run at once: 1 for sync and async (one thread),
          min(client cores, threads) for threads and hybrid."""
        cpu = Agg(rows, "cpu_us")
        tput1 = {m: agg.med(m, 1.0) for m in agg.models} if t0_global else {}
        cores = self.client_cores()
        blocks = []
        for m in agg.models:
            pts = []
            for x in agg.xs:
                lit = None
                if m in MODELS and tput1.get(m):
                    n = 1 if m == "sync" else inflight_of(x)
                    lit = n * tput1[m] if n else None
                c = cpu.med(m, x) if m in MODELS else None
                par = 1 if m in ("sync", "async") else min(cores, max(1, int(inflight_of(x) or 1)))
                cb = par / (c / 1e6) if c else None
                pts.append((x, lit, cb))
            blocks.append(pts)
        return self.p.bound_file(name, blocks, logx), blocks

    def inflight(self, rows, x):
        """Emails that can be in flight at x for the concurrent models."""
        rs = [r for r in rows if r["x"] == x and r["model"] in ("threads", "async", "hybrid")
              and r.get("p_concurrency")]
        if not rs:
            return None
        r = rs[0]
        if r.get("window_s") is not None and r.get("window_delivered") is not None:
            return r["p_concurrency"]     # sized by time: chains keep arriving, C in flight
        chains = (r.get("emails") or 0) / (r.get("p_chain") or 1)
        return min(r["p_concurrency"], max(chains, 1))

    def throughput_figure(self, script, fig, rows, tput, alt, t0_global=False, unjoined=()):
        """A throughput figure with each model's own bounds drawn in."""
        bfile, _ = self.bounds(fig, rows, tput, lambda x: self.inflight(rows, x), t0_global,
                               self.logx(script))
        self.lines_figure(script, fig, tput, alt, bound=bfile, unjoined=unjoined)

    # -- question 1
    def q1(self):
        rows = self.begin("## 1. Many tasks: throughput, p99 latency and memory against concurrency",
                          "q1-concurrency")
        if not rows:
            return
        tput = Agg(rows, "tput")
        unreached = self.not_reached(rows)
        self.throughput_figure("fig1a-throughput", "fig1a", rows, tput,
                               "Figure 1a: throughput against concurrency", t0_global=True,
                               unjoined=unreached)
        self.table(tput, title="concurrency", caption="Throughput (emails/s), median (min–max):")
        self.w("Thin lines in each model's colour are its own bounds (MEASUREMENT.md §2): dashed, "
               "Little's law (emails in flight ÷ the model's own time per email at concurrency 1; "
               "sync always has one in flight); dotted, the CPU bound (threads that can run at once "
               "÷ the model's marginal CPU per email at that point: 1 for sync and async, which run "
               "one thread; the client's cores for threads and hybrid). The plot keeps the measured "
               "region: a bound above it is clipped at the top.", "")
        p99 = Agg(rows, "p99")
        self.lines_figure("fig1b-p99", "fig1b", p99, "Figure 1b: p99 latency against concurrency",
                          unjoined=unreached)
        self.table(p99, title="concurrency", caption="p99 latency (ms):")
        q11 = Agg(self.sweep_rows("q11-load") or [], "p99")
        over = [x for x in q11.xs if x > 1 and q11.med("sync", x)]
        if over and p99.med("sync", p99.xs[-1]):
            x = over[-1]
            self.w(f"These are closed-loop figures: each slot sends its next email only when the last "
                   f"is done, so a queue never forms and sync's p99 looks flat "
                   f"({fmt(p99.med('sync', p99.xs[-1]))} ms here). Offered {q11.label[x]}× its "
                   f"capacity on a schedule (section 11, open loop), sync's p99 from the intended start "
                   f"is {fmt(q11.med('sync', x))} ms and grows with the queue as long as the overload "
                   "lasts: what a user of a saturated sync sender waits.", "")
        reached = Agg(rows, "reached_pct")
        self.table(reached, unit="%", title="concurrency",
                   caption="Concurrency the server counted (its peak of connections open at once), as "
                   "a % of the concurrency asked for; below 95% the point did not measure that "
                   "concurrency (*not reached*):")
        short = [f"{m} at {reached.label[x]} ({fmt(reached.med(m, x))}%)" for m in reached.models
                 if m in MODELS and m != "sync" for x in reached.xs
                 if reached.med(m, x) is not None and reached.med(m, x) < 95]
        self.w("Not reached: " + (", ".join(short) if short else "none; every model's server-"
               "counted concurrency was at least 95% of the asked for at every point.") + "", "")
        self.littles_law_table(tput)
        n = Agg(rows, "window_n")
        self.table(n, title="concurrency", caption="Emails in each run's steady-state window (the "
                   "sample behind its percentiles), median:")
        rss = Agg(rows, "rss_mb")
        self.lines_figure("fig1c-rss", "fig1c", rss, "Figure 1c: peak RSS against concurrency",
                          unjoined=unreached)
        self.table(rss, title="concurrency", caption="Peak RSS of the model (MB):")
        self.verdict(self.verdict_q1(tput, p99, rss))
        self.background(tput)

    def background(self, tput):
        """Q1b: the reactor models with the 221 read in the background,
        beside the same models holding the slot to the end (Q1)."""
        rows = self.sweep_rows("q1b-background")
        if not rows:
            return
        bg = Agg(rows, "tput")
        models = [m for m in ("async", "hybrid") if m in bg.models]
        self.w("### The reactor's own advantage, measured apart: QUIT in the background", "",
               self.conf_line("q1b-background"), "",
               "A reactor can free an email's slot as soon as QUIT is sent and read the 221 while "
               "the next email goes (`--quit-background`); a blocking model cannot. This is a real "
               "advantage of the design, so it is measured, but apart: the figures above hold every "
               "model's slot until the connection is closed. Throughput (emails/s), median, with the "
               "slot held (Q1) and freed at QUIT (this sweep):", "",
               "| concurrency | " + " | ".join(f"{m} held | {m} at QUIT | gain" for m in models) + " |",
               "|---" * (1 + 3 * len(models)) + "|")
        for x in bg.xs:
            cells = []
            for m in models:
                held, free = tput.med(m, x), bg.med(m, x)
                cells += [fmt(held) if held else "—", fmt(free) if free else "—",
                          f"×{fmt(free / held)}" if held and free else "—"]
            self.w(f"| {bg.label[x]} | " + " | ".join(cells) + " |")
        self.w("")

    def littles_law_table(self, tput):
        """Each model against its own Little's-law bound: N in flight ÷ T1,
        T1 = the model's own time per email with one in flight (its
        concurrency-1 rate inverted); sync keeps one email in flight."""
        models = [m for m in MODELS if tput.med(m, 1)]
        if not models:
            return
        self.w("Each model's throughput as a % of its own Little's-law bound (emails in flight ÷ "
               "its own time per email at concurrency 1; sync always has one in flight), median:", "",
               "| concurrency | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|")
        for x in tput.xs:
            cells = []
            for m in models:
                v, t1 = tput.med(m, x), tput.med(m, 1)
                inflight = 1 if m == "sync" else x
                cells.append(f"{fmt(100 * v / (inflight * t1))}%" if v and t1 else "—")
            self.w(f"| {tput.label[x]} | " + " | ".join(cells) + " |")
        self.w("")

    def verdict_q1(self, tput, p99, rss):
        xmax = tput.xs[-1]
        parts = []
        meds = [f"{m} {fmt(tput.med(m, xmax))}" for m in tput.models
                if m in MODELS and tput.med(m, xmax) is not None]
        if meds:      # medians only: who wins is the rule's call, below
            parts.append(f"at concurrency {tput.label[xmax]} the medians are "
                         f"{', '.join(meds)} emails/s.")
        # Concurrency 1 is the parity point: nothing to overlap, no winner expected.
        by_x = {x: self.winner_at(tput, x) for x in tput.xs if x > 1}
        won = {}
        for x, w in by_x.items():
            won.setdefault(w or "no clear winner", []).append(tput.label[x])
        if won:
            parts.append("Winner by the verdict rule (the bootstrap interval of the ratio of "
                         "medians clear of ×1.1) at each concurrency above 1: "
                         + "; ".join(f"{w} at {', '.join(xs)}" for w, xs in won.items()) + ".")
        # The highest concurrency where both have repetitions to compare.
        both = [x for x in tput.xs if len(tput.points.get(("async", x)) or []) >= 2
                and len(tput.points.get(("threads", x)) or []) >= 2] or \
               [x for x in tput.xs if tput.points.get(("async", x)) and tput.points.get(("threads", x))]
        if both:
            x = both[-1]
            self.finding("tput_high", f"at concurrency {tput.label[x]}: async {fmt(tput.med('async', x))}/s, "
                         f"threads {fmt(tput.med('threads', x))}/s", tput.points[("async", x)],
                         tput.points[("threads", x)], True, "threads")
        a, t = p99.med("async", xmax), p99.med("threads", xmax)
        if a and t:
            parts.append(f"There p99 latency is {fmt(a)} ms for async against {fmt(t)} ms for "
                         f"threads, and peak RSS {fmt(rss.med('async', xmax))} MB against "
                         f"{fmt(rss.med('threads', xmax))} MB.")
        ctx = Agg(self.sweep_rows("q1-concurrency"), "ctx")
        xs = [x for x in ctx.xs if ctx.points.get(("async", x)) and ctx.points.get(("threads", x))]
        if xs:
            x = xs[-1]
            self.finding("ctx", f"at concurrency {ctx.label[x]}: async {fmt(ctx.med('async', x))}, "
                         f"threads {fmt(ctx.med('threads', x))} per email", ctx.points[("async", x)],
                         ctx.points[("threads", x)], False, "threads")
        parts.append(self.peer_sentence(tput))
        return " ".join(p for p in parts if p)

    def peer_sentence(self, tput):
        """The peers against async at the highest value each was measured at."""
        out = []
        for m in PEERS:
            xs = [x for x in tput.xs if tput.med(m, x) and tput.med("async", x)]   # > 0 both
            if xs:
                x = xs[-1]
                out.append(f"{label(m)} {fmt(tput.med(m, x))} emails/s at {tput.label[x]} "
                           f"(async ÷ {m} ×{fmt(tput.med('async', x) / tput.med(m, x))})")
        return ("Peers: " + "; ".join(out) + ".") if out else ""

    # -- question 2
    def q2(self):
        self.w("## 2. Lots of I/O versus CPU", "")
        rows = self.begin("### 2a. CPU work per email grows, server latency fixed", "q2-cpu", sub=True)
        if rows:
            tput = Agg(rows, "tput")
            self.throughput_figure("fig2a-cpu", "fig2a", rows, tput,
                                   "Figure 2a: throughput as CPU work per email grows")
            self.table(tput, title="events per email", caption="Throughput (emails/s):")
            self.table(Agg(rows, "cpu_us"), title="events per email",
                       caption="CPU time per email (µs, model process):")
            self.verdict(self.verdict_crossover(tput, "events per email", "cpu"))
            self.reactors_line(tput, "events per email")
            self.q2_ceiling()
        rows = self.begin("### 2b. Server latency grows, CPU work fixed", "q2-latency", sub=True)
        if rows:
            tput = Agg(rows, "tput")
            self.throughput_figure("fig2b-latency", "fig2b", rows, tput,
                                   "Figure 2b: throughput as server latency grows")
            self.table(tput, title="server latency", caption="Throughput (emails/s):")
            self.verdict(self.verdict_crossover(tput, "server latency", "latency"))
            self.reactors_line(tput, "server latency")

    def verdict_crossover(self, tput, what, key):
        """Where each model wins by the verdict rule, where no model clearly
        does, and the hybrid against async at the far end: every comparison
        decided by decide(), both directions alike."""
        lab = tput.label
        parts = []
        if "async" not in tput.models:
            return "async was not measured in this results folder."
        by = {}
        for x in tput.xs:
            by.setdefault(self.winner_at(tput, x) or "no clear winner", []).append(lab[x])
        parts.append(f"By {what}, the model with the highest throughput by the verdict rule: "
                     + "; ".join(f"{w} at {', '.join(xs)}" for w, xs in by.items()) + ".")
        xmax = tput.xs[-1]
        pts = lambda m: tput.points.get((m, xmax)) or []
        ci = boot_ratio(pts("hybrid"), pts("async"))
        if ci:
            d = decide(ci)
            how = {"a": "the hybrid is faster than async", "b": "async is faster than the hybrid",
                   None: "no clear difference between the hybrid and async"}[d]
            parts.append(f"At {lab[xmax]} {what}, {how} (hybrid ÷ async {fmt_ci(ci)}).")
        if key == "cpu":
            # async against the faster of the two that use every core
            other = max(("threads", "hybrid"), key=lambda m: tput.med(m, xmax) or 0)
            if pts("async") and pts(other):
                self.finding("cpu_bound", f"at {lab[xmax]} {what}: async {fmt(tput.med('async', xmax))}/s, "
                             f"{other} {fmt(tput.med(other, xmax))}/s", pts("async"), pts(other),
                             True, other)
        if key == "latency" and pts("async") and pts("threads"):
            self.finding("io_bound", f"at {lab[xmax]} {what}: async {fmt(tput.med('async', xmax))}/s, "
                         f"threads {fmt(tput.med('threads', xmax))}/s", pts("async"),
                         pts("threads"), True, "threads")
        return " ".join(parts)

    def reactors_line(self, tput, what):
        """async with N reactor threads against one (issue 16), by the verdict
        rule, at the first and the last point of a question-2 sweep."""
        out = []
        for v in [m for m in VARIANTS if m in tput.models]:
            for x in sorted({tput.xs[0], tput.xs[-1]}):
                a, b = tput.points.get((v, x)) or [], tput.points.get(("async", x)) or []
                ci = boot_ratio(a, b)
                if not ci:
                    continue
                d = decide(ci)
                how = {"a": "faster than", "b": "slower than", None: "not clearly different from"}[d]
                out.append(f"at {tput.label[x]} {what} {label(v)} is {how} async "
                           f"({label(v)} ÷ async {fmt_ci(ci)}, medians {fmt(tput.med(v, x))} and "
                           f"{fmt(tput.med('async', x))}/s)")
        if out:
            self.w("**The async model on every core** (`--reactors N`: N reactor threads, each a "
                   "whole async model over its share of the emails): " + "; ".join(out) + ". With "
                   "the sweep's pinning the client has the cores the server does not (one on a "
                   "2-core machine), which caps what N reactors can gain.", "")

    # -- question 3
    def q3(self):
        rows = self.begin("## 3. Independent tasks: dependency chains", "q3-chain",
                          note=" An email of a chain is sent only after the previous one is delivered. "
                          "The runs are sized by time, so there are always as many chains in flight as "
                          "the concurrency: what grows along this sweep is only how long each waits on "
                          "the one before it, not how few emails are in flight.")
        if not rows:
            return
        tput = Agg(rows, "tput")
        self.throughput_figure("fig3-chain", "fig3", rows, tput,
                               "Figure 3: throughput against dependency chain length")
        self.table(tput, title="chain length", caption="Throughput (emails/s):")
        x0, x1, parts = self.end_ratios(tput)
        a0, a1 = tput.med("async", x0), tput.med("async", x1)
        s0, s1 = tput.med("sync", x0), tput.med("sync", x1)
        verdict = (f"from chains of {tput.label[x0]} to chains of {tput.label[x1]}, throughput "
                   f"changes by {', '.join(parts)}.")
        if a1 and s1:
            verdict += (f" With chains of {tput.label[x1]}, async's advantage over sync is ×{fmt(a1 / s1)}"
                        + (f" (×{fmt(a0 / s0)} with independent emails)." if a0 and s0 else "."))
        if tput.points.get(("async", x1)) and tput.points.get(("threads", x1)):
            self.finding("chains", f"chains of {tput.label[x1]}: async {fmt(tput.med('async', x1))}/s, "
                         f"threads {fmt(tput.med('threads', x1))}/s", tput.points[("async", x1)],
                         tput.points[("threads", x1)], True, "threads")
        self.verdict(verdict)
        self.q3_join()
        self.q3_verdict()

    # -- question 11: open loop
    SLOS = (50, 200, 1000)      # ms, p99

    def q11(self):
        if not self.begin("## 11. Open loop: latency against offered load", "q11-load", conf=False):
            return
        both = bool(self.sweep_rows("q11b-load-50ms"))
        self.q11_sweep("q11-load", "fig11-load", "", ("q11b-load-50ms", "b") if both else None)
        if both:
            self.w("### 11b. The same at 50 ms server latency", "")
            self.q11_sweep("q11b-load-50ms", "fig11b-load", "b", ("q11-load", ""))

    def knees(self, p99, off, tput, ratio, lost):
        """The knee of each model's curve: the highest offered load it kept
        up with (at least 95% of the offered rate achieved, at most 1% shed
        or waiting), the next load measured above it, and how many loads
        were measured within ±20% of it (the knee is placed no closer than
        the loads around it)."""
        rows = []
        for m in p99.models:
            xs = [x for x in p99.xs if off.med(m, x) is not None]
            kept = [x for x in xs if (ratio.med(m, x) or 0) >= 0.95 and (lost.med(m, x) or 0) <= 1]
            if not kept:
                rows.append(f"| {label(m)} | none kept up | — | — | — |")
                continue
            k = max(kept)
            above = [x for x in xs if x > k]
            near = [x for x in xs if abs(x - k) <= 0.2 * k + 1e-9]
            nxt = (f"{p99.label[above[0]]}× ({fmt(tput.med(m, above[0]))}/s achieved of "
                   f"{fmt(off.med(m, above[0]))}, p99 {fmt(p99.med(m, above[0]))} ms)"
                   if above else "none measured above")
            rows.append(f"| {label(m)} | {p99.label[k]}× = {fmt(off.med(m, k))}/s | "
                        f"{fmt(p99.med(m, k))} ms | {nxt} | {len(near)} |")
        self.w("The knee of each curve: the highest offered load the model kept up with (at least "
               "95% of the offered rate achieved, at most 1% shed or waiting), its p99 there, the "
               "next load measured above it, and the loads measured within ±20% of the knee:", "",
               "| model | knee | p99 at the knee | next load | loads within ±20% |",
               "|---|---:|---:|---|---:|", *rows, "")

    def q11_sweep(self, name, fig, suffix, companion=None):
        """One open-loop sweep; companion (sweep, suffix): the other one,
        whose figure's panels share this figure's y ranges."""
        rows = self.sweep_rows(name)
        share = {}
        if companion:       # its data written first (the same files it writes itself)
            crows = self.sweep_rows(companion[0])
            share = dict(share1=self.p.lines_file(f"fig11{companion[1]}-p99", Agg(crows, "p99")),
                         share2=self.p.lines_file(f"fig11{companion[1]}-ratio", Agg(crows, "achieved_ratio")))
        sat = self.env["sweeps"].get(name, {}).get("saturation", {})
        self.w(self.conf_line(name), "",
               "Emails arrive on a schedule, at a constant rate, whatever happens to the emails "
               "before them (open loop, as wrk2 does): this is what a user waits for. Latency is "
               "measured from each email's **intended** start (coordinated omission corrected); the "
               "service time, from its actual start, is shown beside it. Each model is offered "
               "fractions of its **own** saturation rate, measured first by a closed-loop probe at the "
               "same concurrency (" + ", ".join(f"{m} {fmt(v)}/s" for m, v in sat.items()) + "). "
               "Past saturation a queue of at most 2,000 waiting emails fills and the rest are shed; "
               "every scheduled email is delivered, failed, shed or still waiting when the run ends.", "")
        p99, ratio = Agg(rows, "p99"), Agg(rows, "achieved_ratio")
        self.plot_figure("fig11-load", p99.models,
                         f"Figure 11{suffix}: p99 latency and achieved throughput against offered load",
                         out_name=fig, data1=self.p.lines_file(f"fig11{suffix}-p99", p99),
                         data2=self.p.lines_file(f"fig11{suffix}-ratio", ratio), **share)
        off, tput, svc, lost = (Agg(rows, k) for k in ("offered", "tput", "service_p99", "lost_share"))
        self.w("Per model and offered load (× its saturation): offered and achieved emails/s, p99 "
               "from the intended start and from the actual start (ms), and the share of scheduled "
               "emails shed or still waiting (%), medians:", "",
               "| model | load | offered | achieved | p99 | p99 service | shed + waiting |",
               "|---|---:|---:|---:|---:|---:|---:|")
        for m in p99.models:
            for x in p99.xs:
                if off.med(m, x) is None:
                    continue
                self.w(f"| {label(m)} | {p99.label[x]} | {fmt(off.med(m, x))} | {tput.cell(m, x)} | "
                       f"{p99.cell(m, x)} | {svc.cell(m, x)} | {fmt(lost.med(m, x))}% |")
        self.w("")
        self.knees(p99, off, tput, ratio, lost)
        # The highest offered rate whose median p99 met the SLO while the
        # model kept up: no more than 1% shed or left waiting, and at least
        # 95% of the offered rate achieved (a bounded queue that sheds can
        # keep p99 low by refusing work: that is not sustaining the load).
        cap = {}
        for m in p99.models:
            for slo in self.SLOS:
                ok = [off.med(m, x) for x in p99.xs if p99.med(m, x) is not None
                      and off.med(m, x) is not None and p99.med(m, x) <= slo
                      and (lost.med(m, x) or 0) <= 1 and (ratio.med(m, x) or 0) >= 0.95]
                cap[(m, slo)] = max(ok) if ok else None
        self.w("Highest offered load (emails/s) sustained with p99 latency under the objective (at "
               "most 1% shed or waiting, at least 95% of the offered rate achieved), over the loads "
               "measured:", "",
               "| p99 objective | " + " | ".join(label(m) for m in p99.models) + " |", "|---" * (len(p99.models) + 1) + "|")
        for slo in self.SLOS:
            self.w(f"| {slo} ms | " + " | ".join(fmt(cap[(m, slo)]) if cap[(m, slo)] else "none"
                                              for m in p99.models) + " |")
        self.w("")
        parts = []
        for slo in self.SLOS:
            best = max(p99.models, key=lambda m: cap[(m, slo)] or 0)
            if cap[(best, slo)]:
                # Within ×(1 + TAU) of the highest is a tie, both ways alike:
                # the loads are measured at a few fractions only.
                tied = [m for m in p99.models if cap[(m, slo)]
                        and cap[(best, slo)] / cap[(m, slo)] <= 1 + TAU]
                rest = [m for m in p99.models if cap[(m, slo)] and m not in tied]
                second = max(rest, key=lambda m: cap[(m, slo)]) if rest else None
                head = (f"{label(tied[0])} sustains the most" if len(tied) == 1 else
                        f"no clear winner among {', '.join(map(label, tied))} (within ×{fmt(1 + TAU)})")
                parts.append(f"under {slo} ms, {head} ({fmt(cap[(best, slo)])}/s"
                             + (f"; next {label(second) if second else second}, ×{fmt(cap[(best, slo)] / cap[(second, slo)])} less"
                                if second else "") + ")")
        sync_knee = [x for x in p99.xs if x > 1 and p99.med("sync", x)]
        if sync_knee:
            x = sync_knee[-1]
            parts.append(f"past its saturation sync's p99 from the intended start grows with the "
                         f"queue ({fmt(p99.med('sync', x))} ms at {p99.label[x]}× against "
                         f"{fmt(svc.med('sync', x))} ms of service): the queue a closed loop hides")
        self.verdict("; ".join(parts) + "." if parts else "not enough valid runs.")
        # Fairness at 90% of saturation.
        fair = [x for x in p99.xs if abs(x - 0.9) < 1e-9] or [x for x in p99.xs if x < 1]
        if fair:
            x = fair[-1]
            p50, mx, o10 = Agg(rows, "p50"), Agg(rows, "max"), Agg(rows, "over10")
            self.w(f"Fairness at {p99.label[x]}× saturation: does one design starve some emails? "
                   "(ms; the share of emails slower than 10× the median)", "",
                   "| model | p50 | p99 | max | slower than 10× p50 |", "|---|---:|---:|---:|---:|")
            unmeasured = []
            for m in p99.models:
                if not p99.points.get((m, x)):
                    unmeasured.append(label(m))     # no row of dashes: said below
                    continue
                self.w(f"| {label(m)} | {p50.cell(m, x)} | {p99.cell(m, x)} | {mx.cell(m, x)} | "
                       f"{fmt(o10.med(m, x))}% |")
            self.w("")
            if unmeasured:
                self.w(f"Not measured at {p99.label[x]}×: {', '.join(unmeasured)} (fewer loads in "
                       "the sweep, or no valid run there).", "")
