"""report_frame — the sections that frame the answers in REPORT.md: the
summary of verdicts (one row per claim), the parity check (like for like),
method and machine (how the runs were made, on what), and the workload
profile's opening (scripts/report_workload.py).

Contract: a mixin of report-gen's Report over report_scaffold.Scaffold.
summary() must run after the question sections (it reads the findings they
record); parity() returns its sentence and whether parity holds (fairness()
and the teaching section F use it); for_workload() returns lines instead of
writing them (report-gen puts them under the title).
"""
import collections

import report_workload
from report_data import MODELS, Agg, boot_ratio, decide, fmt, fmt_ci
from report_scaffold import Scaffold


class FrameSections(Scaffold):
    """Summary, parity, method and machine, the workload's opening."""

    def point_counts(self):
        """How many measured runs each point (sweep, model, value) has, as a
        Counter of counts (the sweep's warm-up run excluded)."""
        per = collections.Counter((name, r.get("model"), r.get("value"))
                                  for name, rs in self.rows.items() for r in rs
                                  if int(float(r.get("rep") if r.get("rep") not in (None, "") else 0)) >= 0)
        return collections.Counter(per.values())

    def point_reps_text(self, reps):
        """The repetitions as run, from the data: 'every point is repeated 2
        times' or '2 runs at 300 points, 5 at 40 (the points the verdicts
        rest on), ...'."""
        counts = self.point_counts()
        if not counts:
            return f"every point is repeated {', '.join(map(str, reps))} times"
        if len(counts) == 1:
            (n, _), = counts.items()
            return f"every point is repeated {n} time{'s' if n != 1 else ''}"
        parts = [f"{n} run{'s' if n != 1 else ''} at {k} point{'s' if k != 1 else ''}"
                 for n, k in sorted(counts.items(), key=lambda t: (-t[1], t[0]))]
        return ("the repetitions per point, as run: " + ", ".join(parts)
                + " (the most at the points the verdicts rest on)")

    def reps_sentence(self):
        """What the repetitions mean for the intervals, from the data."""
        counts = self.point_counts()
        most = max(counts) if counts else 0
        return (f"Each row names the runs its interval rests on (here up to {most} a point); "
                "with few runs an interval is wide and the row says *no clear difference*: "
                "a row that should be decided needs more of them (`--reps`, or `verdict_reps` "
                "in the sweep file).")

    def summary(self):
        self.w("## Summary: advantages and disadvantages of asynchronous programming, as measured", "",
               "Each row compares async with one other model on one claim, with one rule for every "
               "row and both directions: the ratio of medians is oriented so that above ×1 favours "
               "async, and its 95% bootstrap interval ("
               + ("2,000 resamples; the sweeps ran in randomised blocks, repetition r of every point "
                  "close in time, so the resamples draw blocks: pairs of runs made under the same "
                  "conditions, marked *paired*"
                  if any(s.get("order") == "blocked" for s in self.env["sweeps"].values())
                  else "2,000 resamples of each side's repetitions") + ") "
               "decides: *advantage* when the whole interval is above ×1.1, *disadvantage* when it "
               "is below ×1/1.1, otherwise *no clear difference*. Counted metrics (code) have no "
               "interval. " + self.reps_sentence(), "",
               "| claim | measured | async against | ratio for async [95% interval] | verdict for async | figure |",
               "|---|---|---|---|---|---|")
        claims = [
            ("tput_high", "throughput with many tasks", "fig1a-throughput", "Q1"),
            ("memory", "memory per in-flight email", "fig6-memory", "Q6"),
            ("ctx", "context switches per email with many tasks", "fig1a-throughput", "Q1"),
            ("locks", "lock and atomic calls in the code", "fig8-code", "Q8"),
            ("io_bound", "throughput when I/O dominates (high server latency)", "fig2b-latency", "Q2"),
            ("cpu_bound", "throughput when CPU work dominates", "fig2a-cpu", "Q2"),
            ("blocking", "tail latency with one blocking call", "fig4-blocking", "Q4"),
            ("overhead", "CPU cost per email at concurrency 1", "fig5-overhead", "Q5"),
            ("chains", "throughput with dependent tasks", "fig3-chain", "Q3"),
            ("failures", "latency cost of retrying", "fig7-failures", "Q7"),
            ("code", "code size", "fig8-code", "Q8"),
        ]
        for key, claim, fig, q in claims:
            f = self.findings.get(key)
            if not f:
                self.w(f"| {claim} | not measured | — | — | — | {q} |")
                continue
            d = decide(f["ci"])
            verdict = {"a": "**advantage**", "b": "**disadvantage**", None: "no clear difference"}[d]
            if not f["enough"]:
                verdict = "too few runs to decide (fewer than 2 a side)"
            self.w(f"| {claim} | {f['text']} | {f['vs']} | {fmt_ci(f['ci'])} | {verdict} | "
                   f"[{q}, {fig}]({self.link}/{fig}.png) |")
        self.w("")

    # -- like for like
    PARITY = 0.03     # at concurrency 1 the four models agree within 3%

    def parity(self):
        """(line, ok): the four models' rates with one email in flight.  The
        same rule as every verdict, at a 3% threshold: parity fails when some
        pair's ratio of medians has its whole 95% bootstrap interval outside
        [1/1.03, 1.03] (a difference beyond the runs' noise, which on a shared
        VM is mostly steal time and only ever slows a run down)."""
        rows = self.sweep_rows("q1-concurrency") or []
        tput = Agg([r for r in rows if r["x"] == 1], "tput")
        rates = {m: tput.med(m, 1) for m in MODELS if tput.med(m, 1)}
        if len(rates) < 2:
            return "not measured (no valid concurrency-1 runs in q1-concurrency)", None
        lo, hi = min(rates.values()), max(rates.values())
        spread = hi / lo - 1
        ms = list(rates)
        apart = []
        for i, a in enumerate(ms):
            for b in ms[i + 1:]:
                ci = boot_ratio(tput.points[(a, 1)], tput.points[(b, 1)])
                if decide(ci, tau=self.PARITY) is not None:
                    apart.append(f"{a} ÷ {b} {fmt_ci(ci)}")
        best = {m: max(tput.points[(m, 1)]) for m in ms}
        steal = [r.get("steal_s") or 0 for r in rows if r["x"] == 1 and r["model"] in MODELS]
        text = (", ".join(f"{m} {fmt(v)}/s" for m, v in rates.items())
                + f" (medians: highest ÷ lowest {fmt(hi / lo)}, {fmt(spread * 100)}% apart; best runs "
                + ", ".join(f"{m} {fmt(v)}" for m, v in best.items())
                + f"; steal time per run up to {fmt(max(steal) if steal else 0)} s). "
                + ("Pairs apart beyond the noise: " + "; ".join(apart) + "." if apart else
                   "No pair's ratio is clear of ±3% given the repetitions' spread (bootstrap 95% "
                   "intervals, the rule of every verdict)."))
        return text, not apart

    def fairness(self):
        text, ok = self.parity()
        verdict = ("**holds**" if ok else "**FAILS: the models are not doing the same work; the "
                   "comparisons below are not like for like**" if ok is False else "not checked")
        e = self.env
        pin = e.get("pinning")
        pin_text = (f"server on core {pin['server']}, client on core(s) {pin['client']} (taskset)"
                    if isinstance(pin, dict) and pin else "not pinned (fewer than 2 cores, or --pin none)")
        self.w("## Like for like: the parity check", "",
               f"With one email in flight there is nothing to overlap, so every model must deliver "
               f"the same rate. Measured (q1-concurrency, concurrency 1): {text} Parity {verdict}.", "",
               "What makes the models comparable: every model sends the same SMTP exchange per email "
               "(EHLO, MAIL, RCPT and DATA pipelined, the body and its terminator in one write, QUIT) "
               "and holds its concurrency slot from connect until the connection is closed, the 221 "
               "read: the blocking models cannot do otherwise, so the reactor models do the same. "
               "What a reactor gains by reading the 221 in the background (`--quit-background`) is "
               "its own, labelled variant, never inside these figures. The client does not close "
               "first: the server's close after the 221 ends each connection. A run is sized by time "
               "(a warm-up, then a steady-state window; only emails that end inside the window make "
               "the rate, the latency percentiles and the CPU per email, which is the process's CPU "
               "over the window divided by its emails: start-up excluded). Concurrency is what the "
               f"server counted; a point where it saw fewer than 95% of the connections asked for is "
               f"marked *not reached*, and a run where it saw more is invalid. Pinning: {pin_text}.", "")

    # -- method and machine
    def method(self):
        e = self.env
        sweeps = e["sweeps"]
        reps = sorted({s.get("reps") for s in sweeps.values() if s.get("reps")})
        profiles = sorted({s.get("profile", "?") for s in sweeps.values()})
        nruns = sum(len(r) for r in self.rows.values())
        ninvalid = sum(1 for rs in self.rows.values() for r in rs if not r["valid"])
        modes = sorted({r.get("latency_mode") for rs in self.rows.values() for r in rs
                        if r.get("latency_mode")})
        self.w("## Method and machine", "",
               "Each run starts a fresh `bin/smtp-mock` on 127.0.0.1 (a free port), runs one model "
               "(`bin/summary-<model>`) against it under a time limit, then stops the server with "
               "SIGTERM and compares the two accounts: a run is **valid** only when the model's "
               "`delivered` equals the server's count of distinct Message-IDs, the two digests of "
               "the message bytes are equal, every email is either delivered or failed, and (without "
               "injected faults) the server saw no more duplicates than the model made retries (a "
               "duplicate its own timeout explains is at-least-once delivery, counted in the "
               "tables). Invalid runs are kept, listed and drawn "
               "in red; they never count in a median.", "",
               f"Runs of a sweep are executed one at a time "
               + ("in randomised blocks (repetition r of every point, shuffled, then repetition r + 1: "
                  "runs compared as a pair are made close in time; seed "
                  if all(s.get("order") == "blocked" for s in sweeps.values()) else "in shuffled order (seed ")
               + f"{', '.join(sorted({str(s.get('shuffle_seed')) for s in sweeps.values()}))}) after one "
               f"warm-up run; {self.point_reps_text(reps)}; each point is reported as "
               f"the median with the min–max spread in parentheses. Latency is measured "
               f"{' and '.join(modes) or 'closed'}-loop per email (from the start of its work to the "
               f"server's reply to its data). Profile: {', '.join(profiles)}. "
               f"{nruns} measured runs, {ninvalid} invalid.", "",
               "| | |", "|---|---|",
               f"| CPU | {e.get('cpu_model')} ({e.get('cores')} cores) |",
               f"| memory | {fmt((e.get('memory_kb') or 0) / 1048576)} GB |",
               f"| OS, kernel | {e.get('os')}, {e.get('kernel')} |",
               f"| compiler | {e.get('compiler')} |",
               f"| compile command | `{e.get('compile_command')}` |",
               f"| libev | {e.get('libev', {}).get('version')}, backend {e.get('libev', {}).get('backend')} |",
               "| tools | " + ", ".join(v if v.lower().startswith(k[:5].lower()) else f"{k} {v}"
                                        for k, v in sorted(e.get("tools", {}).items()) if v) + " |",
               f"| git revision | `{e.get('git_rev')}`{' (uncommitted changes)' if e.get('git_dirty') else ''} |",
               f"| run | {e.get('started')} → {e.get('finished')}, host {e.get('host')}, load average "
               f"at start {fmt(e.get('loadavg_at_start'))} |",
               f"| command | `{e.get('sweep_command')}` |", *self.hosts_rows(e), "",
               "The exact command of every run is in `commands.txt`, each run's model JSON and "
               "server statistics in `runs/`, each sweep's table in `<sweep>.csv` and each "
               "figure's data in `plots/data/` of the results folder.", "")
        for name in sorted(sweeps):
            self.w(f"- {self.conf_line(name)}")
        self.w("")
        self.machine_load()

    @staticmethod
    def hosts_rows(e):
        """Issue 17: where the server and the load generators ran, when not all
        here (scripts/sweep --server-host/--clients/--target; env-<role>.json)."""
        h = e.get("hosts")
        if not isinstance(h, dict):
            return []
        server = ("a private Postfix (discard), verified from its log" if h.get("target") == "postfix"
                  else f"smtp-mock on {h.get('server')} at {h.get('server_addr')}")
        clients = h.get("clients") or []
        return [f"| hosts | {server}; {len(clients)} load generator{'s' * (len(clients) != 1)}: "
                f"{', '.join(clients)} (each host's environment: "
                f"{', '.join(sorted((h.get('files') or {}).values()))}) |"]

    def machine_load(self):
        """Was the machine quiet?  The CPU the rest of the machine took during
        the runs (busy time minus the model's and the server's), and steal."""
        runs = [r for rs in self.rows.values() for r in rs if r.get("elapsed_s")]
        other = [(r.get("other_cpu_s"), r["elapsed_s"]) for r in runs if r.get("other_cpu_s") is not None]
        steal = sum(r.get("steal_s") or 0 for r in runs)
        if not other:
            self.w("The CPU taken by other processes during the runs was not recorded (results "
                   "from an older sweep).", "")
            return
        cores = self.env.get("cores") or 1
        share = sum(o for o, _ in other) / max(sum(e for _, e in other) * cores, 1e-9)
        busy = [r for r in runs if r.get("other_cpu_s") is not None
                and r["other_cpu_s"] > 0.1 * r["elapsed_s"] * cores]
        load = self.env.get("loadavg_at_start")
        text = (f"While the runs lasted, other processes took {fmt(share * 100)}% of the machine's CPU "
                f"(busy time minus the model's and the server's own, from /proc/stat), and steal time "
                f"was {fmt(steal)} s; load average {fmt(load)} at the start.")
        text += (f" {len(busy)} of {len(runs)} runs saw more than 10% of the CPU taken outside the "
                 "model and the server (this includes the sweep's own Python and kernel work not "
                 "charged to either).")
        if share > 0.05 or steal > 1:
            text = ("**Warning: the machine was not quiet.** " + text + " Figures may be low: re-run "
                    "on a quiet machine, or compare two sweeps with `scripts/compare-results` before "
                    "trusting a verdict.")
        self.w(text, "")

    # -- summary
    def for_workload(self):
        """A workload profile's report: the profile and its values in the
        first lines, then "For this workload" (scripts/report_workload.py);
        [] for the default report."""
        return report_workload.section(self)
