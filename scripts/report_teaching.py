"""report_teaching — the sections of REPORT.md that show, rather than tell,
what async programming is (issue 15), mixed into scripts/report-gen's Report:

  q3_join      question 3 with tasks that wait on each other (sweep q3b-join)
  q4_pool      question 4's remedy, deferToThread of the blocking call (q4b-pool),
               and where the blocking call runs in each model
  q7_timeouts  question 7 with a stalled server (q7b-stall) and refused
               connections (q7c-refuse): time to detect, retries, emails lost or
               duplicated, the errback path that handled each failure
  teaching     sections A-F: one email's life as a trace, a Deferred as a
               promised result, errbacks, concurrency without parallelism, the
               retry logic of each model side by side, the one-email job
  knowledge_map  every idea of the issue's first paragraph -> what shows it

Code is quoted from the sources at the results' git revision (`git show
REV:path`), or from the folder's legacy code/ copy when the revision is not
in this repository; every excerpt is introduced by "[PATH line N](...)" so
that tests/integration/test_excerpts.sh can check it against `git show`.
Traces and logs come from RESULTS/traces/ (scripts/teaching-runs).
"""
import json
import os
import re
import subprocess

import report_data


def _g(name):
    """A name of scripts/report_data.py (fmt, Agg, boot_ratio, decide, ROOT, ...)."""
    return getattr(report_data, name)


# Where the blocking call runs, per model (the code decides it: models/*.c and
# models/mailer/*; the hybrid's is the --blocking-in-pool switch).
BLOCKING_WHERE = [
    ("sync", "in its one thread, between emails: nothing else is waiting to run"),
    ("threads", "in the email's own thread: the kernel runs the other threads meanwhile"),
    ("async", "in the reactor thread (`email_go`): every connection waits while it runs"),
    ("hybrid", "by default in the reactor thread too (`email_go`; its pool only builds the "
               "email): every connection waits"),
    ("hybrid --blocking-in-pool", "in a pool thread, through `threadpool_defer_to_thread` (Twisted's "
                                  "`deferToThread`, `block_then_build` in models/hybrid.c): the "
                                  "reactor goes on serving the other connections"),
]


class TeachingSections:
    """Methods mixed into report-gen's Report (they use its w, rows, env, p)."""

    # ------------------------------------------------------------ sources
    def source(self, path):
        """The lines of repository file `path` as measured, or None."""
        cache = self.__dict__.setdefault("_sources", {})
        if path in cache:
            return cache[path]
        text = None
        rev = self.env.get("git_rev") or ""
        if rev:
            p = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=_g("ROOT"), capture_output=True)
            if p.returncode == 0:
                text = p.stdout.decode(errors="replace")
        if text is None:
            legacy = os.path.join(self.folder, "code", os.path.basename(path))
            if os.path.isfile(legacy):
                with open(legacy, errors="replace") as f:
                    text = f.read()
        cache[path] = text.split("\n") if text is not None else None
        return cache[path]

    def quote(self, title, path, start, end=r"^}", lang="c", limit=45):
        """Writes '**title** — [path line N](link):' and the lines from the
        first match of `start` to the first match of `end` after it
        (inclusive; at most `limit` lines).  Returns True if quoted."""
        lines = self.source(path)
        if lines is None:
            self.w(f"*{title}: `{path}` is not available at the measured revision.*", "")
            return False
        i = next((k for k, l in enumerate(lines)       # a definition, not a prototype
                  if re.search(start, l) and not l.rstrip().endswith(";")), None)
        if i is None:
            self.w(f"*{title}: not found in `{path}` at the measured revision.*", "")
            return False
        j = next((k for k in range(i, min(len(lines), i + limit)) if re.search(end, lines[k])),
                 min(len(lines), i + limit) - 1)
        text = "\n".join(lines[i:j + 1]).rstrip()
        self.w(f"**{title}** — [{path} line {i + 1}]({self.code_link}/{path}#L{i + 1}):", "",
               f"```{lang}", text, "```", "")
        return True

    def trace(self, name):
        """The events of RESULTS/traces/NAME.jsonl, or None."""
        path = os.path.join(self.folder, "traces", name + ".jsonl")
        try:
            with open(path) as f:
                return [json.loads(l) for l in f if l.strip()]
        except (OSError, ValueError):
            return None

    def traces_file(self, name):
        try:
            with open(os.path.join(self.folder, "traces", name), errors="replace") as f:
                return f.read()
        except OSError:
            return None

    def shown(self, key, where):
        """Record what shows one idea (for knowledge_map)."""
        self.__dict__.setdefault("_shown", {}).setdefault(key, []).append(where)

    # ------------------------------------------------------------ Q3: join
    def q3_join(self):
        fmt, Agg, boot_ratio, decide, fmt_ci = (_g(n) for n in ("fmt", "Agg", "boot_ratio", "decide", "fmt_ci"))
        self.w("### Tasks that wait on each other inside the reactor: a summary joins N emails", "")
        rows = self.sweep_rows("q3b-join")
        if not rows:
            self.w("*Not measured in this results folder (no q3b-join sweep).*", "")
            return
        self.w(self.conf_line("q3b-join") + " Every (N+1)th email is a summary of the N before it: "
               "it starts only once they have all ended. In async and the hybrid the summary's "
               "Deferred is `gatherResults` over its members' Deferreds (then it asks the "
               "DeferredSemaphore for a token like any email); in threads its thread waits on a "
               "condition variable; sync has sent the members already. The summaries waiting "
               "for their members hold no connection, so fewer emails are in flight: that is "
               "the cost of the communication between tasks.", "")
        tput = Agg(rows, "tput")
        self.w("Throughput (emails/s):", "")
        self.table(tput, title="emails joined per summary")
        x0, x1 = tput.xs[0], tput.xs[-1]
        parts = []
        for m in tput.models:
            ci = boot_ratio(tput.points.get((m, x1)) or [], tput.points.get((m, x0)) or [])
            if ci:
                d = decide(ci)
                parts.append(f"{m} {fmt_ci(ci)} ("
                             + {"a": "faster", "b": "slower", None: "no clear change"}[d] + ")")
        verdict = (f"a summary that waits for {tput.label[x1]} others changes throughput, against "
                   f"independent emails, by " + "; ".join(parts) + "." if parts else
                   "not enough valid runs to compare the join with independent emails.")
        ci = boot_ratio(tput.points.get(("async", x1)) or [], tput.points.get(("threads", x1)) or [])
        if ci:
            d = decide(ci)
            verdict += (f" With the join, async ÷ threads is {fmt_ci(ci)}: "
                        + {"a": "async still delivers more", "b": "threads deliver more",
                           None: "no clear difference"}[d] + ".")
        self.q3_join_verdict = verdict
        self.shown("independent", "Q3b table (tasks waiting on each other: `gatherResults`)")

    def q3_verdict(self):
        """One verdict for question 3: dependence with the emails in flight
        held constant (q3-chain), and the join (q3b-join)."""
        fmt, Agg, boot_ratio, decide, fmt_ci = (_g(n) for n in ("fmt", "Agg", "boot_ratio", "decide", "fmt_ci"))
        parts = []
        rows = self.sweep_rows("q3-chain") or []
        if rows:
            tput = Agg(rows, "tput")
            x0, x1 = tput.xs[0], tput.xs[-1]
            for x in (x0, x1):
                ci = boot_ratio(tput.points.get(("async", x)) or [], tput.points.get(("threads", x)) or [])
                if ci:
                    parts.append(f"chains of {tput.label[x]}: async ÷ threads {fmt_ci(ci)} ("
                                 + {"a": "async ahead", "b": "threads ahead", None: "no clear difference"}[decide(ci)]
                                 + ")")
        v = getattr(self, "q3_join_verdict", None)
        text = ("with as many chains in flight as the concurrency, dependence alone: "
                + "; ".join(parts) + "." if parts else "")
        if v:
            text += (" " if text else "") + "Joined: " + v
        self.w("**Verdict (question 3, isolated):** " + (text or "not measured."), "")

    # ------------------------------------------------------------ Q4: pool
    def q4_where(self):
        self.w("Where the blocking call runs in each model:", "", "| model | the blocking call runs |",
               "|---|---|")
        for m, where in BLOCKING_WHERE:
            self.w(f"| {m} | {where} |")
        self.w("")
        self.shown("disadvantages", "Q4: a blocking call in the reactor thread stalls every connection")

    def q4_pool(self):
        fmt, Agg, boot_ratio, decide, fmt_ci = (_g(n) for n in ("fmt", "Agg", "boot_ratio", "decide", "fmt_ci"))
        self.w("### The remedy: the blocking call moved off the reactor (`deferToThread`)", "")
        rows = self.sweep_rows("q4b-pool")
        if not rows:
            self.w("*Not measured in this results folder (no q4b-pool sweep).*", "")
            return
        self.w(self.conf_line("q4b-pool") + " Twisted's documented remedy for a blocking call is "
               "`deferToThread`; its reactor's pool holds up to 10 threads by default. The hybrid with "
               "`--blocking-in-pool` runs the call and the build in one pool job:", "")
        self.quote("hybrid --blocking-in-pool", "models/hybrid.c", r"^static struct defer(?:red)?_result block_then_build")
        p99, tput = Agg(rows, "p99"), Agg(rows, "tput")
        q4 = self.sweep_rows("q4-blocking") or []
        ref = Agg(q4, "p99") if q4 else None
        rt = Agg(q4, "tput") if q4 else None
        xref = next((x for x in (ref.xs if ref else []) if ref.label[x] in ("10ms", "0.01s")), None)
        self.w("| threads in the pool | hybrid p99 ms | hybrid emails/s |", "|---:|---:|---:|")
        for x in p99.xs:
            self.w(f"| {p99.label[x]} | {p99.cell('hybrid', x)} | {tput.cell('hybrid', x)} |")
        if xref is not None:
            for m in ("async", "threads", "hybrid"):
                if ref.med(m, xref) is not None:
                    how = "in the reactor" if m != "threads" else "in its own thread"
                    self.w(f"| {m}, call {how} (question 4, {ref.label[xref]}) | {ref.cell(m, xref)} | "
                           f"{rt.cell(m, xref)} |")
        self.w("")
        self.invalid_list(p99)
        best = min((x for x in p99.xs if p99.med("hybrid", x) is not None),
                   key=lambda x: p99.med("hybrid", x), default=None)
        parts = []
        if best is not None and xref is not None:
            for m in ("async", "threads"):
                ci = boot_ratio(p99.points.get(("hybrid", best)) or [], ref.points.get((m, xref)) or [],
                                higher=False)
                if ci:
                    parts.append(f"its p99 against {m}'s ({'call in the reactor' if m == 'async' else 'call in each thread'}) "
                                 f"{fmt_ci(ci)} for the hybrid ("
                                 + {"a": "better", "b": "worse", None: "no clear difference"}[decide(ci)] + ")")
        x10 = next((x for x in p99.xs if x == 10), None)
        verdict = ""
        if best is not None:
            verdict = (f"moving the blocking call to a pool, the hybrid's best p99 is "
                       f"{fmt(p99.med('hybrid', best))} ms with {p99.label[best]} threads"
                       + (f" ({fmt(p99.med('hybrid', x10))} ms with Twisted's default 10)" if x10 is not None
                          and p99.med("hybrid", x10) is not None else "")
                       + ("; " + "; ".join(parts) if parts else "") + ".")
        self.w("**Verdict (deferToThread):** " + (verdict or "not enough valid runs."), "")
        self.shown("disadvantages", "Q4b: the remedy, `deferToThread`, with its pool size")

    # ------------------------------------------------------------ Q7: timeouts
    def run_json(self, row):
        path = os.path.join(self.folder, row.get("run_file") or "")
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    PATHS = {   # (model kind, reason pattern) -> the path that handled it
        ("reactor", "timed out|timeout"): "the attempt's `deferred_add_timeout` cancels it (its canceller "
                                          "aborts the connection) → errback `release_session` → errback "
                                          "`maybe_retry` (retries left: `defer_later(backoff)` → `attempt`; "
                                          "none left: passes the failure on) → errback `failed` (recovers: "
                                          "counts the email failed)",
        ("reactor", "refused|connect"): "`smtp_session_open`'s Deferred fails → errback `maybe_retry` (retry "
                                        "or pass on) → errback `failed`",
        ("reactor", ""): "errback `maybe_retry` → errback `failed`",
        ("blocking", "timed out|timeout"): "`poll()` returns after `--timeout` → `smtp_client_abort` → "
                                           "`attempt_once` returns ATTEMPT_TEMP → the `for` loop sleeps "
                                           "`backoff()` and tries again; out of attempts: `stats_run_failed`",
        ("blocking", "refused|connect"): "`smtp_blocking_connect` returns -1 → ATTEMPT_TEMP → the `for` loop "
                                         "sleeps `backoff()` and tries again; out of attempts: `stats_run_failed`",
        ("blocking", ""): "ATTEMPT_TEMP or ATTEMPT_PERM → the `for` loop → `stats_run_failed`",
    }

    def path_of(self, model, reason):
        kind = "reactor" if model in ("async", "hybrid", "twisted") else "blocking"
        for (k, pat), path in self.PATHS.items():
            if k == kind and pat and re.search(pat, reason, re.I):
                return path
        return self.PATHS[(kind, "")]

    def q7_fault(self, name, title, detect):
        fmt, Agg, fmt_n = _g("fmt"), _g("Agg"), _g("fmt_n")
        self.w(f"### {title}", "")
        rows = self.sweep_rows(name)
        if not rows:
            self.w(f"*Not measured in this results folder (no {name} sweep).*", "")
            return None
        self.w(self.conf_line(name), "")
        dl, fl, rt, dup, mx = (Agg(rows, k) for k in ("delivered", "failed", "retries", "srv_duplicates", "max"))
        self.w(f"Time to detect: {detect}. Medians per point; *lost* = failed for good (the server "
               "never accepted them), *duplicated* = accepted twice by the server (a retry after the "
               "server had accepted the message); max latency = the slowest delivered email, "
               "detection and retries included:", "",
               "| value | model | delivered | lost | retries | duplicated | max latency ms |",
               "|---:|---|---:|---:|---:|---:|---:|")
        for x in dl.xs:
            for m in dl.models:
                self.w(f"| {dl.label[x]} | {m} | {fmt_n(dl.med(m, x))} | {fmt_n(fl.med(m, x))} | "
                       f"{fmt_n(rt.med(m, x))} | {fmt_n(dup.med(m, x))} | {mx.cell(m, x)} |")
        self.w("")
        self.invalid_list(dl)
        # The errback (or loop) path of each failure reason, from the runs' JSON.
        x1 = dl.xs[-1]
        reasons = {}
        for r in rows:
            if r["x"] != x1 or not r["valid"]:
                continue
            rec = self.run_json(r) or {}
            for reason, n in ((rec.get("model") or {}).get("failure_reasons") or {}).items():
                reasons.setdefault((r["model"], reason), []).append(n)
        if reasons:
            self.w(f"How each failure at {dl.label[x1]} was handled, from the failure reasons in the "
                   "runs' JSON (`runs/`), with the path in the model's code that handled it:", "",
                   "| model | failure reason | emails (per run) | handled by |", "|---|---|---:|---|")
            for (m, reason), ns in sorted(reasons.items()):
                short = re.sub(r"\s+", " ", reason)[:80].replace("|", "\\|")
                self.w(f"| {m} | `{short}` | {fmt_n(sorted(ns)[len(ns) // 2])} | {self.path_of(m, reason)} |")
            self.w("")
        elif any(fl.med(m, x1) for m in fl.models):
            self.w("*The runs' JSON files (`runs/`) are not in this folder: the failure reasons cannot be "
                   "listed.*", "")
        else:
            self.w(f"No email failed for good at {dl.label[x1]}: every failure was retried until it was "
                   f"delivered (the retries column), each retry through the same path as above.", "")
        self.shown("errbacks", f"Q7 ({name}): the errback path of each failure")
        em = Agg(rows, "emails")
        return dict(x=x1, label=dl.label[x1], lost={m: fl.med(m, x1) for m in fl.models},
                    emails={m: em.med(m, x1) for m in em.models},
                    dup={m: dup.med(m, x1) for m in dup.models}, retries={m: rt.med(m, x1) for m in rt.models},
                    max=mx)

    def q7_timeouts(self):
        fmt, fmt_n = _g("fmt"), _g("fmt_n")
        timeout = None
        for r in self.sweep_rows("q7b-stall") or []:
            if r.get("p_timeout_s"):
                timeout = r["p_timeout_s"]
                break
        stall = self.q7_fault("q7b-stall", "The fault only a timeout can end: a stalled server",
                              f"the `--timeout` of each wait ({fmt(timeout * 1000) + ' ms' if timeout else 'see the command'}): "
                              "a silent server sends nothing to notice")
        refuse = self.q7_fault("q7c-refuse", "Connections refused for a while, then recovery",
                               "at once (the kernel answers the connect with a reset: ECONNREFUSED); "
                               "what costs time is waiting for the server to come back, with the retries' "
                               "backoff")
        parts = []
        for what, res in (("stalls", stall), ("refusals", refuse)):
            if not res:
                continue
            share = {m: 100.0 * v / res["emails"][m] for m, v in res["lost"].items()
                     if v is not None and res["emails"].get(m)}
            dshare = {m: 100.0 * v / res["emails"][m] for m, v in res["dup"].items()
                      if v is not None and res["emails"].get(m)}
            # Within a percentage point of each other: the same outcome (the
            # models share the retry policy; sync sends fewer emails).
            same = bool(share) and max(share.values()) - min(share.values()) < 1 \
                and (not dshare or max(dshare.values()) - min(dshare.values()) < 1)
            parts.append(f"with {what} at {res['label']}, lost " + ", ".join(f"{m} {fmt(v)}%" for m, v in share.items())
                         + ("" if not dshare else "; duplicated " + ", ".join(f"{m} {fmt(v)}%" for m, v in dshare.items()))
                         + (" of the emails — the same in every model within a percentage point: they share the "
                            "retry policy and the timeouts, and the way of waiting does not change what is lost"
                            if same else " of the emails — the models differ by more than a percentage point"
                            + ("; sync, with one email in flight, exposes fewer emails to the fault than the "
                               "models with many in flight" if share.get("sync") is not None and
                               share["sync"] < min(v for m, v in share.items() if m != "sync") else "")))
        self.w("**Verdict (timeouts and outages):** " + ("; ".join(parts) + "." if parts else "not measured."), "")

    # ------------------------------------------------------------ teaching
    def teaching(self):
        for section in (self.teach_trace, self.teach_deferred, self.teach_errbacks,
                        self.teach_parallelism, self.teach_readability, self.teach_one_email):
            section()

    def teach_trace(self):
        fmt = _g("fmt")
        self.w("## A. What async programming is, in one trace", "")
        a, s = self.trace("async"), self.trace("sync")
        if not a or not s:
            self.w("*No traces in this results folder (`traces/async.jsonl`, `traces/sync.jsonl`: run "
                   "`scripts/teaching-runs RESULTS`).*", "")
            return
        runs = {}
        try:
            with open(os.path.join(self.folder, "traces", "runs.json")) as f:
                runs = {r["name"]: r for r in json.load(f)}
        except (OSError, ValueError, KeyError, TypeError):
            pass
        cmd = lambda n: f"; the command: `{runs[n]['command']}`" if n in runs else ""
        self.w("One email (number 0) of a small run of the async model, from its `--trace` "
               f"(`traces/async.jsonl`{cmd('async')}): every callback and errback "
               "of its Deferred chain, its SMTP transaction, and between them what the one reactor "
               "thread did: its turns (each starts when `epoll` returns with ready events) and the "
               "callbacks of the other emails it ran meanwhile. Times in ms from the email's start.", "")
        mine = [e for e in a if e.get("email") == 0]
        if not mine:
            self.w("*Email 0 is not in the async trace.*", "")
            return
        t0 = mine[0]["t_ns"]
        self.w("| ms | email 0 | meanwhile, the reactor |", "|---:|---|---|")
        idx = {id(e): k for k, e in enumerate(a)}
        prev = idx[id(mine[0])]
        waits = []
        for e in mine:
            k = idx[id(e)]
            between = a[prev + 1:k]
            turns = sum(1 for b in between if b["ev"] == "turn" and b.get("phase") == "start")
            others = sorted({b["email"] for b in between if b.get("email", -1) > 0 and b["ev"] == "callback"})
            ncb = sum(1 for b in between if b.get("email", -1) > 0 and b["ev"] == "callback" and b.get("phase") == "start")
            meanwhile = []
            if turns:
                meanwhile.append(f"{turns} turn{'s' if turns > 1 else ''}")
            if ncb:
                meanwhile.append(f"{ncb} callbacks of email{'s' if len(others) > 1 else ''} "
                                 + ", ".join(map(str, others)))
            if e["ev"] == "callback":
                what = (f"{'errback' if e.get('side') == 'errback' else 'callback'} `{e['name']}` starts "
                        f"({e.get('in')})" if e.get("phase") == "start" else
                        f"`{e['name']}` returns a {e.get('out')}"
                        + (" — the chain pauses until it fires" if e.get("out") == "deferred" else ""))
            elif e["ev"] == "smtp":
                what = ("**sent** MAIL, RCPT, DATA and the message" if e.get("step") == "sent" else
                        f"**reply**: {e.get('result')}" + (f" ({e.get('reason')})" if e.get("reason") else ""))
            elif e["ev"] == "email":
                what = f"email {e.get('phase')}s"
            else:
                what = e["ev"]
            self.w(f"| {fmt((e['t_ns'] - t0) / 1e6)} | {what} | {', '.join(meanwhile) or ''} |")
            prev = k
            if e["ev"] == "smtp" and e.get("step") == "sent":
                waits.append(e["t_ns"])
            if e["ev"] == "smtp" and e.get("step") == "replied" and waits:
                waits[-1] = (waits[-1], e["t_ns"])
        self.w("")
        life = (mine[-1]["t_ns"] - t0) / 1e6
        cb = sum(1 for e in mine if e["ev"] == "callback" and e.get("phase") == "start")
        turns = sum(1 for e in a if e["ev"] == "turn" and e.get("phase") == "start"
                    and t0 <= e["t_ns"] <= mine[-1]["t_ns"])
        busy = sum(max(0, e2["t_ns"] - e1["t_ns"]) for e1, e2 in zip(mine, mine[1:])
                   if e1["ev"] == "callback" and e1.get("phase") == "start" and e2["ev"] == "callback"
                   and e2.get("phase") == "end" and e2.get("name") == e1.get("name")) / 1e6
        self.w(f"Email 0 lived {fmt(life)} ms; {cb} of its callbacks ran, and the reactor turned {turns} "
               "times in that span, serving the other emails between them: the thread never waited "
               "for email 0, it waited for *any* socket to be ready.", "")
        self.shown("what", "section A: the async trace of one email")
        self.shown("best", "section A: while email 0 waits for the server, the reactor runs the others")
        self.shown("reactor", "section A: the reactor's turns in the trace")
        self.shown("sequence", "section A: the callbacks of one email's chain, in order, with timestamps")
        # The same email in the sync model.
        self.w(f"The same email in the sync model (`traces/sync.jsonl`{cmd('sync')}): each call that blocks the "
               "thread, and for how long. Nothing else runs in the process meanwhile.", "",
               "| ms | blocking call | blocked for ms |", "|---:|---|---:|")
        mine = [e for e in s if e.get("email") == 0]
        t0 = mine[0]["t_ns"] if mine else 0
        open_ = {}
        blocked = 0.0
        for e in mine:
            if e["ev"] != "block":
                continue
            if e.get("phase") == "start":
                open_[e["what"]] = e["t_ns"]
                start_what = e["what"]
                continue
            st = open_.pop(start_what, None) if open_ else None
            if st is None:
                continue
            d = (e["t_ns"] - st) / 1e6
            blocked += d
            label = {"READY": "wait for the greeting and the EHLO reply", "MESSAGE_DONE":
                     "wait for the replies to MAIL, RCPT, DATA and the message",
                     "CLOSED": "QUIT, wait for the 221 and the close"}.get(e["what"], e["what"])
            self.w(f"| {fmt((st - t0) / 1e6)} | {label} | {fmt(d)} |")
        self.w("")
        if mine:
            life = (mine[-1]["t_ns"] - t0) / 1e6
            self.w(f"Email 0 took {fmt(life)} ms in the sync model, {fmt(blocked)} ms of it inside blocking "
                   f"calls ({fmt(100 * blocked / life if life else 0)}%): the time a reactor spends on "
                   "other emails.", "")

    def teach_deferred(self):
        self.w("## B. A Deferred is a promised result", "",
               "The same step — send the message on a connection and learn how it went — three ways, "
               "quoted from the measured code. **Blocking** (sync and threads): the call returns the "
               "outcome, the thread waits inside it.", "")
        ok = self.quote("blocking", "models/mailer/blocking_mailer.c", r"^static enum attempt attempt_once")
        self.w("**Callback style** (the layer under the Deferreds, lib/smtp_session.c): the reactor calls "
               "`on_data` when bytes arrive; the code feeds the SMTP core and reacts to each event it "
               "yields — the sequence is spread over callbacks the reactor invokes.", "")
        ok &= self.quote("callback", "lib/smtp_session.c", r"^static void on_data")
        ok &= self.quote("callback (the events)", "lib/smtp_session.c", r"^static void handle_event")
        self.w("**Deferred chain** (async and hybrid): the send returns at once a Deferred — a promise "
               "of the outcome — and the rest of the work is attached to it, in order, with "
               "`addCallback` / `addBoth` / `addErrback`.", "")
        ok &= self.quote("Deferred chain", "models/mailer/async_mailer.c", r"^static struct deferred \*attempt\(")
        ok &= self.quote("the email's chain", "models/mailer/async_mailer.c", r"^static void email_go")
        if ok:
            self.shown("sequence", "section B: the email's chain of callbacks, quoted")
            self.shown("deferred", "section B: blocking, callback and Deferred code side by side")
        bench = self.traces_file("bench-deferred.txt")
        if bench:
            rows = [l for l in bench.splitlines() if re.match(r"ns per ", l)]
            self.w("What a Deferred costs (`traces/bench-deferred.txt`, `scripts/bench-deferred`, this "
                   "machine): ns per operation, our C library against Twisted's Deferred.", "",
                   "| figure | C ns | Twisted ns | Twisted ÷ C |", "|---|---:|---:|---:|")
            for l in rows:
                m = re.match(r"(ns per .*?)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)x", l)
                if m:
                    self.w(f"| {m.group(1)} | {m.group(2)} | {m.group(3)} | ×{m.group(4)} |")
            self.w("")
            self.shown("deferred", "section B: the Deferred microbenchmark, C against Twisted")
        else:
            self.w("*The Deferred microbenchmark is not measured in this results folder "
                   "(`traces/bench-deferred.txt`; `scripts/teaching-runs` writes it).*", "")
        cpu = _g("Agg")(self.sweep_rows("q5-overhead") or [], "cpu_us")
        if cpu.xs:
            x = cpu.xs[0]
            meds = {m: cpu.med(m, x) for m in ("sync", "async") if cpu.med(m, x) is not None}
            if len(meds) == 2:
                self.w(f"Per email, whole (section 5): async {_g('fmt')(meds['async'])} µs of CPU, sync "
                       f"{_g('fmt')(meds['sync'])} µs: the chain's callbacks are a small part of an email.", "")

    def teach_errbacks(self):
        fmt = _g("fmt")
        self.w("## C. Errbacks: recover, pass on, or go unhandled", "")
        log = self.traces_file("unhandled.log")
        runs = {}
        try:
            with open(os.path.join(self.folder, "traces", "runs.json")) as f:
                runs = {r["name"]: r for r in json.load(f)}
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if log and "Unhandled error in Deferred" in log:
            cmd = runs.get("unhandled", {}).get("command", "summary-async --no-errback")
            self.w("**No errback.** A run of the async model with `--no-errback` (each email's chain "
                   f"has no `failed` errback) against a server that refuses every message (`{cmd}`): "
                   "each email's Deferred is released still holding its Failure, and the library "
                   "reports it, as Twisted does when a Deferred with an unhandled error is "
                   "garbage-collected. Its stderr (`traces/unhandled.log`):", "",
                   "```text", log.rstrip(), "```", "")
            self.shown("errbacks", "section C: the unhandled-error report from a real run")
        else:
            self.w("*No unhandled-error log in this results folder (`traces/unhandled.log`).*", "")
        self.w("**An errback that recovers** returns a value: the chain goes on down the callback side "
               "(`failed` counts the email and returns `deferred_ok(NULL)`).", "")
        if self.quote("recover", "models/mailer/async_mailer.c", r"^static struct defer(?:red)?_result failed\("):
            self.shown("errbacks", "section C: an errback that recovers, quoted")
        self.w("**An errback that passes the failure on** returns it: the next errback gets it. "
               "`maybe_retry` passes on a permanent failure or one with no retry left, and otherwise "
               "returns a new Deferred — the backoff, then another attempt — so the chain waits for it: "
               "the retry errback of the measured code.", "")
        if self.quote("retry errback", "models/mailer/async_mailer.c", r"^static struct defer(?:red)?_result maybe_retry"):
            self.shown("errbacks", "section C: the retry errback that passes a failure on, quoted")
        t = self.trace("async-retry")
        if t:
            mr = [e for e in t if e["ev"] == "callback" and e.get("name") == "maybe_retry" and e.get("phase") == "end"]
            again = sum(1 for e in mr if e.get("out") == "deferred")
            on = sum(1 for e in mr if e.get("out") == "failure")
            fl = sum(1 for e in t if e["ev"] == "callback" and e.get("name") == "failed" and e.get("phase") == "start")
            reasons = sorted({e.get("reason", "") for e in t if e["ev"] == "smtp" and e.get("result") == "failure"})
            self.w(f"In a traced run against a server that answers 30% of messages with a 4xx "
                   f"(`traces/async-retry.jsonl`): `maybe_retry` ran {len(mr)} times as an errback; "
                   f"{again} times it returned a Deferred (a retry after the backoff), {on} times it "
                   f"passed the failure on, and `failed` recovered {fl} email{'s' if fl != 1 else ''}. "
                   + (f"The failures it saw: {', '.join('`' + r + '`' for r in reasons[:3])}." if reasons else ""), "")
            self.shown("errbacks", "section C: the retry errback in a traced run")

    def q2_ceiling(self):
        """One line under question 2a: why async stops winning there."""
        fmt, Agg = _g("fmt"), _g("Agg")
        rows = self.sweep_rows("q2-cpu") or []
        tput, cpu = Agg(rows, "tput"), Agg(rows, "cpu_us")
        x = tput.xs[-1] if tput.xs else None
        ac = cpu.med("async", x) if x is not None else None
        if ac:
            self.w(f"Why async stops winning here: at {tput.label[x]} events it costs {fmt(ac)} µs of "
                   f"CPU per email, so its one thread cannot finish more than {fmt(1e6 / ac)} emails/s "
                   f"(its single-thread ceiling), whatever the concurrency; threads and the hybrid use "
                   f"the machine's {self.env.get('cores')} cores (section D).", "")

    def teach_parallelism(self):
        fmt, Agg, fmt_ci, boot_ratio, decide = (_g(n) for n in ("fmt", "Agg", "fmt_ci", "boot_ratio", "decide"))
        self.w("## D. Concurrency without parallelism", "")
        rows = self.sweep_rows("q2-cpu") or []
        if not rows:
            self.w("*Not measured in this results folder (no q2-cpu sweep).*", "")
            return
        tput, cpu = Agg(rows, "tput"), Agg(rows, "cpu_us")
        x = tput.xs[-1]
        a, ac = tput.med("async", x), cpu.med("async", x)
        cores = self.env.get("cores")
        if not (a and ac):
            self.w("*Not enough valid async runs at the highest CPU work.*", "")
            return
        ceiling = 1e6 / ac
        self.w(f"With {tput.label[x]} events summarised per email (the CPU-bound end of question 2), "
               f"async costs {fmt(ac)} µs of CPU per email: one reactor on one core can finish at most "
               f"1 s ÷ {fmt(ac)} µs = **{fmt(ceiling)} emails/s**, its single-thread ceiling, and it "
               f"measured {fmt(a)}/s. Many emails are in flight (concurrency), but only one runs at a "
               f"time (no parallelism): while it computes a summary, no socket is served. The machine "
               f"has {cores} cores.", "")
        others = []
        for m in ("threads", "hybrid"):
            v = tput.med(m, x)
            if v:
                ci = boot_ratio(tput.points.get((m, x)) or [], tput.points.get(("async", x)) or [])
                others.append(f"{m} {fmt(v)}/s ({m} ÷ async {fmt_ci(ci)}"
                              + (", above async's ceiling" if v > ceiling else "") + ")")
        if others:
            self.w("The models that use every core: " + "; ".join(others) + ". Threads run the CPU "
                   "work of several emails at once; the hybrid keeps one reactor for the I/O and "
                   "sends the CPU work to its pool (`threadpool_defer_to_thread`), so the reactor is free while "
                   "the pool computes.", "")
        r2 = tput.med("async2", x)
        if r2:
            ci = boot_ratio(tput.points.get(("async2", x)) or [], tput.points.get(("async", x)) or [])
            self.w(f"The multi-reactor design keeps the async model and uses more cores: `async ×2` "
                   f"(`--reactors 2`, two reactor threads, each a whole async model over half the "
                   f"emails) measured {fmt(r2)}/s here (async ×2 ÷ async {fmt_ci(ci)}).", "")
        pin = self.env.get("pinning") or {}
        if pin.get("client"):
            ncpu = len(str(pin["client"]).replace("-", ",").split(","))
            self.w(f"In these sweeps the server was pinned to core {pin.get('server')} and the client "
                   f"to core(s) {pin['client']}: the models that use every core had {ncpu} of the "
                   f"{cores} here, so this machine cannot show what they gain from more cores; "
                   "`scripts/sweep --pin none` (or a machine with more cores) can.", "")
        self.shown("disadvantages", f"section D: async's single-thread ceiling ({fmt(ceiling)} emails/s) "
                                    "against the models that use every core")

    def teach_readability(self):
        self.w("## E. Readability: the retry logic of each model, side by side", "",
               "Section 8 counts lines and decision points; here is the retry itself, as measured.", "")
        ok = self.quote("sync and threads: a loop around a blocking attempt", "models/mailer/blocking_mailer.c",
                        r"for \(int attempt = 0", end=r"^    }$")
        ok &= self.quote("async and hybrid: an errback that schedules the next attempt",
                         "models/mailer/async_mailer.c", r"^static struct defer(?:red)?_result maybe_retry")
        ok &= self.quote("async and hybrid: where it sits in the attempt's chain", "models/mailer/async_mailer.c",
                         r"^static struct deferred \*attempt\(")
        lines = self.source("models/reference/twisted_summary.py")
        if lines and any(re.match(r"\s*def maybe_retry\(", l) for l in lines):
            self.quote("the Twisted reference", "models/reference/twisted_summary.py",
                       r"^\s*def maybe_retry\(", end=r"^\s*return self\.task\.deferLater\(|^\s*return \w*deferLater\(",
                       lang="python")
        self.w("The blocking retry reads top to bottom in one function; the Deferred one is split "
               "into an errback and the chain it extends, and the backoff is a Deferred the chain "
               "waits on instead of a sleep.", "")
        if ok:
            self.shown("sequence", "section E: the retry as a loop and as an errback")

    def teach_one_email(self):
        fmt, Agg = _g("fmt"), _g("Agg")
        self.w("## F. The actual job: one email", "",
               "The job this project started from sends one summary email per application event. "
               "With one email in flight, every design does the same thing — connect, the SMTP "
               "dialogue, wait for the replies — and the waiting is the server's, not the code's:", "")
        rows = [r for r in (self.sweep_rows("q1-concurrency") or []) if r["x"] == 1]
        if not rows:
            self.w("*Not measured in this results folder (no q1-concurrency runs at concurrency 1).*", "")
            return
        tput, p50 = Agg(rows, "tput"), Agg(rows, "p50")
        self.w("| model | emails/s | time per email (p50) ms |", "|---|---:|---:|")
        ms = [m for m in _g("MODELS") if tput.med(m, 1)]
        for m in ms:
            self.w(f"| {m} | {tput.cell(m, 1)} | {p50.cell(m, 1)} |")
        self.w("")
        if ms:
            lo, hi = min(tput.med(m, 1) for m in ms), max(tput.med(m, 1) for m in ms)
            line, ok = self.parity()
            self.w(f"At concurrency 1 the fastest and the slowest model are {fmt((hi / lo - 1) * 100)}% apart "
                   f"(the parity check: {'passed' if ok else 'failed' if ok is False else 'not decided'}). "
                   "For one email per event the choice between the designs is about the code "
                   "(sections B, C, E), not about speed.", "")

    # ------------------------------------------------------------ the map
    IDEAS = [
        ("what", "What async programming is"),
        ("advantages", "Its advantages"),
        ("disadvantages", "Its disadvantages"),
        ("reactor", "What a reactor is"),
        ("deferred", "What a Deferred is"),
        ("sequence", "How callbacks manage a sequence of work"),
        ("errbacks", "How errbacks manage its errors"),
        ("best", "When async performs best: many tasks, so one can always make progress"),
        ("io", "When async performs best: lots of I/O"),
        ("independent", "When async performs best: tasks largely independent of each other"),
    ]

    def knowledge_map(self):
        """Every idea of the issue's first paragraph -> what shows it here."""
        shown = self.__dict__.setdefault("_shown", {})
        figs = lambda names: [f"[{n}]({self.link}/{n}.png)" for n in names
                              if os.path.isfile(os.path.join(self.folder, "plots", n + ".png"))
                              or getattr(self.p, "enabled", True) is False]
        add = {
            "advantages": ([("Q1 throughput and memory", "fig1a-throughput"), ("Q6 memory per email", "fig6-memory")],
                           "the summary table's advantages"),
            "disadvantages": ([("Q2 CPU-bound", "fig2a-cpu"), ("Q4 one blocking call", "fig4-blocking"),
                               ("Q8 code", "fig8-code")], None),
            "best": ([("Q1 many tasks", "fig1a-throughput")], None),
            "io": ([("Q2 server latency", "fig2b-latency")], None),
            "independent": ([("Q3 chains, emails in flight held", "fig3-chain")], None),
        }
        have_rows = {"advantages": "q1-concurrency", "disadvantages": "q4-blocking", "best": "q1-concurrency",
                     "io": "q2-latency", "independent": "q3-chain"}
        self.w("## What shows each idea", "",
               "Each thing the report sets out to teach (its first paragraph), and the figure, trace or "
               "code excerpt in this report that shows it; a row with nothing says so.", "",
               "| idea | shown by |", "|---|---|")
        missing = []
        for key, idea in self.IDEAS:
            items = list(shown.get(key, []))
            figs_, extra = add.get(key, ([], None))
            if self.sweep_rows(have_rows.get(key, "")):
                items += [f"{t} ([{f}]({self.link}/{f}.png))" for t, f in figs_]
                if extra:
                    items.append(extra)
            if not items:
                missing.append(idea)
            self.w(f"| {idea} | {'; '.join(items) if items else '**nothing in this results folder**'} |")
        self.w("")
        if missing:
            self.w("*Not shown by this results folder: " + "; ".join(missing) + ".*", "")
        return missing
