"""report_peers — the questions of REPORT.md that compare the C models with
programs outside them: 9 (Postfix's smtp-source as the load, by message size
and connection reuse) and 10 (the C async model against the Twisted
reference: throughput, CPU and memory, the chain mapped step by step onto
the reference's functions, and what the reference does about retries and
timeouts).

Contract: a mixin of report-gen's Report over report_scaffold.Scaffold.
q10() reads question 6's RSS fit (self.rss_fit: run q6 first) and the
sources at the measured revision (self.code_dir); a name of MAPPING not
found in them is a warning on stderr and a row that says so.
"""
import os
import re

from report_code import c_def_line, py_def
from report_data import Agg, fmt, fmt_n, label, ratio, warn
from report_scaffold import Scaffold


# The async model's chain, step by step, against the Twisted reference:
# (step, C file, C function, what it does, regex of the Twisted call that does
# the same, names the reference's function may have, the Twisted idiom).
# mapping() checks every name against the sources saved in code/ and warns
# when one is missing.
MAPPING = [
    ("at most --concurrency emails in flight", "async_mailer.c", "chain_start_next",
     "`deferred_semaphore_acquire(sem)`, then the chain", r"DeferredSemaphore|\.acquire\(",
     ["start_chain", "main", "run"], "`DeferredSemaphore(n)`, `sem.run(f)` / `acquire()`"),
    ("build the email (CPU work) in the reactor thread", "async.c", "build_here",
     "`deferred_maybe(async_job_build, job)`", r"maybeDeferred\(", ["build", "build_email"],
     "`maybeDeferred(build)`"),
    ("one email's chain", "async_mailer.c", "email_go",
     "build → `addCallback(send_email)` → `addCallbacks(delivered, failed)` → `addBoth(email_end)`",
     r"addCallbacks\(", ["send_one", "email_go", "one_email"],
     "`d.addCallback(f)`, `d.addCallbacks(ok, err)`, `d.addBoth(f)`"),
    ("one attempt: a session, the transaction", "async_mailer.c", "attempt",
     "`get_session` → `addCallback(send_on_session)` → `addBoth(release_session)` → `addErrback(maybe_retry)`",
     r"ESMTPSenderFactory\(|SMTPSenderFactory\(|sendmail\(|connectTCP\(", ["attempt", "send"],
     "an `ESMTPClient` session (`connectTCP`) or `sendmail()`; errback on the attempt"),
    ("a time limit on each attempt", "async_mailer.c", "send_on_session",
     "`deferred_add_timeout(d, timeout)`", r"addTimeout\(", ["send_on_session"], "`d.addTimeout(t, reactor)`"),
    ("retry a temporary failure after a backoff", "async_mailer.c", "maybe_retry",
     "errback: a permanent failure passes on; else `defer_later(backoff)` → `attempt` again",
     r"deferLater\(|callLater\(", ["maybe_retry", "retry"],
     "errback + `task.deferLater(reactor, delay, f)`"),
    ("record a delivery", "async_mailer.c", "delivered", "callback: latency and hash into the run",
     r"def \w*deliver\w*\(", ["delivered"], "callback"),
    ("record a failure and go on", "async_mailer.c", "failed",
     "errback returning a value: the failure is handled", r"\.trap\(|def \w*fail\w*\(",
     ["failed"], "errback (`failure.trap`, return = handled)"),
    ("end of one email, either way", "async_mailer.c", "email_end",
     "`addBoth`: free it, the chain's next email or `chain_end`", r"addBoth\(", ["email_end"],
     "`d.addBoth(f)`"),
    ("end of the run", "async_mailer.c", "chain_end",
     "the last chain ended: QUIT the sessions the slots hold; `reactor_run` returns",
     r"reactor\.stop\(|gatherResults\(|DeferredList\(", ["chain_end"], "`gatherResults` / `reactor.stop()`"),
]


class PeerSections(Scaffold):
    """Questions 9 and 10."""

    # -- question 9: Postfix's smtp-source as the load
    def q9(self):
        self.w("## 9. Peers: Postfix's smtp-source as the load (message size, connection reuse)", "")
        sweeps = [("q9-size", "message size", "bytes"),
                  ("q9-reuse", "connection reuse", "messages per connection")]
        have = [(n, t, u) for n, t, u in sweeps if self.sweep_rows(n)]
        if not have:
            return self.missing("q9", [n for n, _, _ in sweeps])
        self.w("`smtp-source` is Postfix's SMTP load generator (/usr/sbin/smtp-source), run against a "
               "fresh smtp-mock with the same options as the model it is compared with. It is a load, "
               "not the workload: it builds no summary and does no CPU work per message, and it has no "
               "command pipelining. So the async runs compared with it summarise no events "
               "(`--events 0`) and carry a padded body of the same size, rendered and hashed before the "
               "clock starts (`--prebuild`): what is compared is the SMTP machinery alone. smtp-source's row is built by `scripts/sweep` from its own output (its "
               "`-c` counter and exit status), the wall time and CPU time (wait4) of its process, start-up "
               "included, and the server's statistics: throughput = messages ÷ wall time, valid when it "
               "exits 0 and both its counter and the server count exactly the messages asked for. Its "
               "per-message latency and its RSS are not measured (a spawned child's peak RSS starts from "
               "its parent's). Its payload size (`-l`) excludes its headers: the last column shows what "
               "the server received.", "")
        self.skipped_note([n for n, _, _ in have])
        models = ["async", "smtp-source"]
        files, parts = {}, []
        for i, (name, title, unit) in enumerate(have):
            rows = self.sweep_rows(name)
            self.w(f"### 9{'ab'[i]}. {title}", "", self.conf_line(name), "")
            tput, cpu = Agg(rows, "tput"), Agg(rows, "cpu_us")
            srv, size = Agg(rows, "srv_cpu_us"), Agg(rows, "msg_bytes")
            self.w(f"| {unit} | model | throughput (messages/s) | client CPU µs per message | "
                   "server CPU µs per message | mean message bytes at the server |",
                   "|---:|---|---:|---:|---:|---:|")
            for x in tput.xs:
                for m in tput.models:
                    self.w(f"| {tput.label[x]} | {label(m)} | {tput.cell(m, x)} | {cpu.cell(m, x)} | "
                           f"{srv.cell(m, x)} | {fmt(size.med(m, x))} |")
            self.w("")
            self.invalid_list(tput)
            tput.models = models        # the same line style in both panels
            files[f"data{i + 1}"] = self.p.lines_file(f"fig9-{name[3:]}", tput, logx=True)
            files[f"title{i + 1}"] = f"{title} ({unit})"
            ratios = [f"×{fmt(tput.med('async', x) / tput.med('smtp-source', x))} at {tput.label[x]}"
                      for x in tput.xs if tput.med("async", x) and tput.med("smtp-source", x)]
            if ratios:
                parts.append(f"{title}: async ÷ smtp-source throughput {', '.join(ratios)} {unit}")
            x0 = tput.xs[0]
            ca, cs = cpu.med("async", x0), cpu.med("smtp-source", x0)
            if i == 0 and ca and cs:
                parts.append(f"client CPU per message at {tput.label[x0]} {unit}: async {fmt(ca)} µs, "
                             f"smtp-source {fmt(cs)} µs")
        self.plot_figure("fig9-peers", models,
                         "Figure 9: async against smtp-source, message size and connection reuse", **files)
        self.verdict("; ".join(parts) + "." if parts else
                     "not enough valid runs to compare async with smtp-source.")

    def skipped_note(self, names):
        """A clear note for each peer a sweep skipped, with the reason."""
        seen = set()
        for n in names:
            for m, why in sorted(self.env["sweeps"].get(n, {}).get("skipped", {}).items()):
                if (m, why) not in seen:
                    seen.add((m, why))
                    self.w(f"*{label(m)} was not run in this results folder: {why}.*", "")

    # -- question 10: the C async model against real Twisted
    def q10(self):
        self.w("## 10. C async versus Twisted", "")
        self.w("The Twisted reference (`models/reference/twisted_summary.py`, run by "
               "`bin/summary-twisted` under /usr/bin/python3) is the async model's design written with "
               "real Twisted: a Deferred per email, a DeferredSemaphore for the concurrency, Twisted's "
               "own SMTP client. It renders the same message bytes and is verified the same way (its "
               "delivered count and digest against the server's). Its runs are rows of question 1's "
               "sweep; its CPU time is the whole process's, interpreter start-up and imports included, "
               "divided by the emails delivered.", "")
        rows = self.sweep_rows("q1-concurrency") or []
        skipped = self.env["sweeps"].get("q1-concurrency", {}).get("skipped", {})
        if "twisted" in skipped:
            self.w(f"*The Twisted reference was not run in this results folder: {skipped['twisted']}. "
                   "Only the code mapping below is reported.*", "")
        elif not any(r["model"] == "twisted" for r in rows):
            self.w("*The Twisted reference was not measured in this results folder (no twisted rows in "
                   "the q1-concurrency sweep). Only the code mapping below is reported.*", "")
        else:
            self.twisted_figures(rows)
        self.mapping()
        self.reference_policy(rows)

    def twisted_figures(self, rows):
        rows = [r for r in rows if r["model"] in ("async", "twisted")]
        tput, cpu, rss = Agg(rows, "tput"), Agg(rows, "cpu_per_delivered"), Agg(rows, "rss_mb")
        tput.models = cpu.models = ["async", "twisted"]
        self.plot_figure("fig10-twisted", tput.models,
                         "Figure 10: C async against the Twisted reference, throughput and CPU per email",
                         data1=self.p.lines_file("fig10-tput", tput, logx=True),
                         data2=self.p.lines_file("fig10-cpu", cpu, logx=True))
        both = [x for x in tput.xs if tput.med("twisted", x) is not None or cpu.med("twisted", x) is not None]
        xs = [x for x in both if x in (1, 100, 1000)] or both
        self.w(f"Concurrency {', '.join(tput.label[x] for x in xs)} (medians; server latency as in "
               "question 1):", "",
               "| concurrency | async emails/s | twisted emails/s | async ÷ twisted | async CPU µs per "
               "email | twisted CPU µs per email | twisted ÷ async | async peak RSS MB | twisted peak RSS MB |",
               "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for x in xs:
            ta, tt = tput.med("async", x), tput.med("twisted", x)
            ca, ct = cpu.med("async", x), cpu.med("twisted", x)
            self.w(f"| {tput.label[x]} | {tput.cell('async', x)} | {tput.cell('twisted', x)} | "
                   f"{'×' + fmt(ratio(ta, tt)) if ratio(ta, tt) else '—'} | {cpu.cell('async', x)} | "
                   f"{cpu.cell('twisted', x)} | {'×' + fmt(ratio(ct, ca)) if ratio(ct, ca) else '—'} | "
                   f"{rss.cell('async', x)} | {rss.cell('twisted', x)} |")
        self.w("")
        self.invalid_list(Agg([r for r in rows if r["model"] == "twisted"], "tput"))
        fa, ft = self.rss_fit.get("async"), self.rss_fit.get("twisted")
        mem = lambda f: f"{fmt(f[1] * 1024)} KB" if f else "— (not enough points)"
        self.w(f"Memory per in-flight email (slope of the least-squares fit of peak RSS against emails "
               f"in flight, question 6): async {mem(fa)}, twisted {mem(ft)}.", "")
        parts = []
        for x in xs:
            ta, tt = tput.med("async", x), tput.med("twisted", x)
            ca, ct = cpu.med("async", x), cpu.med("twisted", x)
            if ta and tt:
                parts.append(f"at concurrency {tput.label[x]} the C async model delivers ×{fmt(ta / tt)} "
                             f"the Twisted reference's throughput ({fmt(ta)} against {fmt(tt)} emails/s)"
                             + (f" for ×{fmt(ct / ca)} less CPU per email" if ca and ct else ""))
        if fa and ft and fa[1] > 0:
            parts.append(f"each email in flight costs {fmt(fa[1] * 1024)} KB in C and "
                         f"{fmt(ft[1] * 1024)} KB in Twisted (×{fmt(ft[1] / fa[1])})")
        self.verdict("; ".join(parts) + "." if parts else
                     "not enough valid runs to compare the C async model with Twisted.")

    def mapping(self):
        """How the C chain maps onto the Twisted reference, step by step,
        from MAPPING checked against the sources saved in code/."""
        code = self.code_dir
        src = {}
        for f in ("async_mailer.c", "async.c", "twisted_summary.py"):
            try:
                with open(os.path.join(code, f), errors="replace") as fh:
                    src[f] = fh.read()
            except OSError:
                src[f] = None
        self.w("### How models/async.c and models/mailer/async_mailer.c map onto the Twisted reference", "",
               "Each step of one email, in protocol order: the C function (file and line in the sources "
               "saved with the results, `code/`) and the function of the Twisted reference that does "
               "the same, found by name or by the Twisted call it makes.", "",
               "| step | C (models/mailer/async_mailer.c, models/async.c) | what the C code does | Twisted reference "
               "(twisted_summary.py) | Twisted idiom |", "|---|---|---|---|---|")
        for step, cfile, cname, cdoes, idiom, pynames, pyidiom in MAPPING:
            line = c_def_line(src.get(cfile), cname)
            rel = ("lib/" if cfile == "async_mailer.c" else "models/") + cfile
            if line:
                ccell = f"[`{cname}`]({self.code_link}/{rel}#L{line}) ({cfile}:{line})"
            else:
                ccell = f"`{cname}` (not found in {cfile})"
                warn(f"mapping: function {cname} not found in code/{cfile}")
            found = py_def(src.get("twisted_summary.py"), pynames, idiom)
            if found:
                name, pline = found
                pcell = (f"[`{name}`]({self.code_link}/models/reference/twisted_summary.py#L{pline}) "
                         f"(line {pline})")
            else:
                pcell = "— (not found)"
                warn(f"mapping: no function for '{step}' in code/twisted_summary.py"
                     + (" (file missing)" if src.get("twisted_summary.py") is None else
                        f" (names {', '.join(pynames) or '-'}, pattern {idiom})"))
            self.w(f"| {step} | {ccell} | {cdoes} | {pcell} | {pyidiom} |")
        self.w("")

    def reference_policy(self, rows):
        """What Twisted's sendmail does about 4xx and timeouts, and what the
        reference does instead, read off its source and its runs' params."""
        self.w("### Retries and timeouts: Twisted's `sendmail` and the reference", "",
               "Twisted's own `sendmail()` never retries a temporary (4xx) reply: it reconnects at "
               "once, up to 5 times, only when the connection fails or is lost, and a 4xx reply to "
               "MAIL, DATA or the final dot fails the Deferred with `SMTPDeliveryError`. It also sets "
               "no timeout: a silent server hangs it for ever (shared/spec/deferred.md §7). The C "
               "model retries a 4xx itself after a backoff and bounds every connect and transaction "
               "with a timeout.", "")
        path = os.path.join(self.code_dir, "twisted_summary.py")
        try:
            with open(path, errors="replace") as f:
                src = f.read()
        except OSError:
            self.w("*The reference's source is not in this results folder (`code/twisted_summary.py`): "
                   "what it does instead cannot be read here.*", "")
            return
        tw = [r for r in rows if r["model"] == "twisted" and r.get("p_retries") is not None]
        retries = fmt_n(tw[0]["p_retries"]) if tw else None
        timeout = fmt(tw[0]["p_timeout_s"]) if tw and tw[0].get("p_timeout_s") is not None else None
        said = []
        retry_fn = py_def(src, ["maybe_retry", "retry"], r"deferLater\(|callLater\(")
        if retry_fn and re.search(r"retr", src, re.I):
            said.append(f"it retries a temporary failure itself, in an errback that schedules the next "
                        f"attempt after a backoff with `deferLater`/`callLater` (`{retry_fn[0]}`, line "
                        f"{retry_fn[1]}), up to `--retries` times"
                        + (f" ({retries} in these runs)" if retries is not None else ""))
        if re.search(r"class \w+\((?:smtp\.)?E?SMTPClient\)", src) and not re.search(r"SenderFactory\(", src):
            said.append("it drives `ESMTPClient` sessions itself instead of `sendmail()`'s "
                        "`ESMTPSenderFactory`, so Twisted's immediate reconnects are not in play")
        if re.search(r"retries\s*=\s*0", src):
            said.append("it builds Twisted's sender factory with `retries=0`, so Twisted's own "
                        "reconnects do not add hidden attempts")
        if re.search(r"addTimeout\(", src):
            said.append("it bounds each attempt with `Deferred.addTimeout`"
                        + (f" (`--timeout`, {timeout} s in these runs)" if timeout else "")
                        + ", whose canceller aborts the connection")
        elif re.search(r"timeout\s*=", src):
            said.append("it passes a timeout to Twisted's sender factory (an idle timer on the connection)")
        if said:
            self.w("What the reference does instead, as read from its source: " + "; ".join(said) + ".", "")
        else:
            self.w("*No retry or timeout code was recognised in the reference's source: it behaves like "
                   "`sendmail()` on these points.*", "")
