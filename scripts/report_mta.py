"""report_mta — the report's section on a real MTA as the target (issue 17),
imported by scripts/report-gen.  It appears only when the results folder has
a sweep run against a private Postfix instance (scripts/sweep --target
postfix, or a conf's "target = postfix": scripts/sweeps-extra/mta-postfix.conf)
and, to compare with, the same sweep against smtp-mock (the sweep named with
"-mock" for "-postfix": mta-mock).

For each model and concurrency: throughput and p99 against Postfix beside
the same against smtp-mock at zero latency, and where each model's
throughput curve bends (the first concurrency after which ×10 more emails
in flight gains less than ×1.1)."""


def postfix_sweeps(env):
    return sorted(n for n, s in (env.get("sweeps") or {}).items()
                  if isinstance(s.get("hosts"), dict) and s["hosts"].get("target") == "postfix")


def bend(agg, model):
    """The concurrency where the model's rate stops growing (×1.1), or None."""
    xs = [x for x in agg.xs if agg.med(model, x)]
    for a, b in zip(xs, xs[1:]):
        if agg.med(model, b) < 1.1 * agg.med(model, a):
            return a
    return None


def section(rep, Agg, fmt):
    """Writes the section into rep (a report-gen Report) when such a run exists."""
    names = postfix_sweeps(rep.env)
    if not names:
        return
    rep.w("## A real MTA as the target: Postfix", "")
    for name in names:
        twin = name[:-len("-postfix")] + "-mock" if name.endswith("-postfix") else None
        rows, mrows = rep.rows.get(name) or [], rep.rows.get(twin) or []
        tput, p99 = Agg(rows, "tput"), Agg(rows, "p99")
        mtput, mp99 = Agg(mrows, "tput"), Agg(mrows, "p99")
        nbad = sum(1 for r in rows if not r["valid"])
        rep.w(f"Sweep `{name}`: each model against a private Postfix instance started for each "
              "run (its own configuration, queue and log on this machine; every message written "
              "to Postfix's queue by smtpd and cleanup, then discarded), each run verified from "
              "Postfix's own log (the Message-IDs discarded and removed = the model's delivered "
              f"emails; `scripts/mbpostfix.py`); {len(rows)} runs, {nbad} invalid"
              + (f"; beside it `{twin}`, the same sweep against smtp-mock at zero latency." if mrows
                 else f"; no `{twin}` sweep to compare with."), "")
        rep.w("| model | in flight | emails/s Postfix | smtp-mock | Postfix / mock | p99 ms Postfix "
              "| smtp-mock |", "|---|---|---|---|---|---|---|")
        for m in tput.models:
            for x in tput.xs:
                a, b = tput.med(m, x), mtput.med(m, x) if mrows else None
                rep.w(f"| {m} | {tput.label[x]} | {tput.cell(m, x)} | "
                      f"{mtput.cell(m, x) if mrows else '—'} | "
                      f"{'×' + fmt(a / b) if a and b else '—'} | {p99.cell(m, x)} | "
                      f"{mp99.cell(m, x) if mrows else '—'} |")
        rep.w("")
        bends = []
        for m in tput.models:
            bp, bm = bend(tput, m), bend(mtput, m) if mrows else None
            last = tput.label[tput.xs[-1]] if tput.xs else "?"
            bends.append(f"{m} at {tput.label[bp] if bp is not None else 'none up to ' + last}"
                         + (f" (smtp-mock: {mtput.label[bm] if bm is not None else 'none up to ' + last})"
                            if mrows else ""))
        rep.w("Where each model's throughput against Postfix stops growing (the first value after "
              "which the next gains less than ×1.1): " + "; ".join(bends) + ".", "")
