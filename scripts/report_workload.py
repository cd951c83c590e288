"""report_workload — the "For this workload" section of a workload profile's
report (scripts/report-gen, Report.for_workload; issue 18).

A report made with a workload profile (scripts/sweep --profile FILE.conf:
env.json has "workload") opens with the profile named with its values and,
at the profile's operating point (its concurrency in q1-concurrency, its
server latency, its CPU work), each model's throughput, p99 in the closed
loop and in the open loop, CPU and memory per email, lines of code and the
headroom (the highest offered rate sustained with p99 under an objective,
from q11-load), then a recommendation computed by the rules it states.
Nothing here runs without env["workload"]: the default report is unchanged.
"""
import os

from report_code import WAIT_LAYER, code_stats_files
from report_data import MODELS, TAU, Agg, boot_ratio, decide, fit_line, fmt, fmt_ci

SLO_STEPS = (50, 200, 1000, 5000)     # ms: the objective is the first >= 4x one email alone
OPEN_LOAD = 0.8                       # open-loop p99 at this fraction of each model's saturation
HEADROOM_CORE = 0.7                   # share of a core past which one reactor is said to be full


def describe(values, set_keys):
    """The profile's values in one line, the keys it set first."""
    v = values
    parts = [f"{v['concurrency']} emails in flight"]
    if "cpu-per-email" in set_keys and v.get("cpu-per-email"):
        parts.append(f"{v['cpu-per-email']} of CPU per email (calibrated)")
    else:
        parts.append(f"{v['events']} events summarised per email")
    parts.append(f"{v['recipients']} recipient{'s' if int(v['recipients']) != 1 else ''}")
    parts.append(f"body {int(v['body-bytes']):,} bytes" if int(v["body-bytes"]) else
                 "the summary alone as body (~1.4 KB)")
    parts.append(f"{v['per-session']} email{'s' if int(v['per-session']) != 1 else ''} per connection")
    parts.append(f"{v['retries']} retries, {v['timeout']} timeout")
    server = f"server latency {v['latency']}"
    if "jitter" in set_keys and v.get("jitter") not in (None, "0"):
        server += f" ± {v['jitter']}"
    faults = [f"{k} {v[k]}" for k in ("tempfail", "permfail", "drop", "stall") if k in set_keys
              and float(v.get(k) or 0) > 0]
    return ", ".join(parts) + "; " + server + (f" (faults in the profile, not injected "
                                               f"outside section 7: {', '.join(faults)})" if faults else "")


def nearest(xs, want):
    """The measured x closest to want (on a log scale for counts)."""
    if not xs:
        return None
    return min(xs, key=lambda x: (abs(x - want) / max(want, 1e-9), x))


def section(rep):
    """The section's lines (a list), or [] when the folder has no workload."""
    wl = rep.env.get("workload")
    if not wl:
        return []
    values, set_keys = wl.get("values", {}), set(wl.get("set", []))
    out = [f"**Workload profile `{wl.get('name')}`** (`{wl.get('path')}`): "
           + describe(values, set_keys) + ".", ""]
    out += ["## For this workload", ""]
    q1 = rep.sweep_rows("q1-concurrency")
    if not q1:
        return out + ["Not measured: the q1-concurrency sweep is missing from this folder.", ""]
    conc = float(values.get("concurrency", 10))
    tput, p99, cpu = Agg(q1, "tput"), Agg(q1, "p99"), Agg(q1, "cpu_us")
    x = nearest(tput.xs, conc)
    models = [m for m in MODELS if tput.med(m, x) is not None]
    if not models:
        return out + [f"No valid run at {tput.label.get(x, x)} emails in flight.", ""]
    # Memory per in-flight email: the least-squares slope of peak RSS against
    # emails in flight over q1's valid runs (as section 6).
    mem = {}
    for m in models:
        pairs = [(1.0 if m == "sync" else min(r["x"], r.get("emails") or r["x"]),
                  r["max_rss_kb"] / 1024.0) for r in q1
                 if r["model"] == m and r["valid"] and r.get("max_rss_kb") is not None]
        fit = fit_line(pairs)
        mem[m] = fit[1] * 1024 if fit else None
    loc = {}
    code = rep.code_dir
    files = sorted(os.listdir(code)) if code and os.path.isdir(code) else []
    for m in models:
        fs = [f for f in [m + ".c"] + WAIT_LAYER.get(m, []) if f in files]
        loc[m] = code_stats_files([os.path.join(code, f) for f in fs])["loc"] if fs else None
    # Open loop and headroom from q11-load (the profile's latency and concurrency).
    q11 = rep.sweep_rows("q11-load")
    one = p99.med("async", nearest(p99.xs, 1)) or p99.med("sync", nearest(p99.xs, 1))
    slo = next((s for s in SLO_STEPS if one is None or s >= 4 * one), SLO_STEPS[-1])
    open_p99, room = {}, {}
    if q11:
        o99, off, lost, ratio = (Agg(q11, k) for k in ("p99", "offered", "lost_share", "achieved_ratio"))
        ox = nearest(o99.xs, OPEN_LOAD)
        for m in models:
            open_p99[m] = o99.med(m, ox)
            ok = [off.med(m, xx) for xx in o99.xs if o99.med(m, xx) is not None
                  and off.med(m, xx) is not None and o99.med(m, xx) <= slo
                  and (lost.med(m, xx) or 0) <= 1 and (ratio.med(m, xx) or 0) >= 0.95]
            room[m] = max(ok) if ok else None
    label_x = tput.label.get(x, fmt(x))
    where = (f"at {label_x} emails in flight (the profile's {fmt(conc)})" if abs(x - conc) < 1e-9
             else f"at {label_x} emails in flight, the point measured nearest the profile's {fmt(conc)}")
    out += [f"Each model {where}, against the mock at the profile's server latency, with the "
            "profile's CPU work, recipients, body, emails per connection, retries and timeout "
            "(medians; min–max of the repetitions in parentheses). Closed loop: q1-concurrency. "
            f"Open loop: q11-load at {fmt(OPEN_LOAD)}× each model's own saturation. Memory: the "
            "fitted RSS per extra email in flight over q1 (as section 6). Lines of code: the model "
            "and its waiting layer (as section 8). Headroom: the highest offered load q11-load "
            f"measured with p99 under **{slo} ms** (the first of {', '.join(map(str, SLO_STEPS))} ms "
            "that is at least 4× an email's p99 alone, "
            + (f"{fmt(one)} ms" if one else "not measured") + "), at most 1% shed and 95% of "
            "the offered rate achieved.", "",
            "| model | emails/s | p99 closed loop (ms) | p99 open loop (ms) | CPU per email (µs) | "
            "memory per in-flight email | lines of code | headroom at p99 < " + f"{slo} ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in models:
        out.append(f"| {m} | {tput.cell(m, x)} | {p99.cell(m, x)} | "
                   f"{fmt(open_p99.get(m)) if open_p99.get(m) is not None else '—'} | "
                   f"{cpu.cell(m, x)} | {fmt(mem[m]) + ' KB' if mem.get(m) is not None else '—'} | "
                   f"{loc[m] if loc.get(m) is not None else '—'} | "
                   f"{fmt(room[m]) + '/s' if room.get(m) else ('none' if q11 else 'not measured')} |")
    out.append("")
    out += recommend(models, x, tput, cpu, mem, loc, room, slo)
    return out


def recommend(models, x, tput, cpu, mem, loc, room, slo):
    """The recommendation and the rules that made it."""
    best = max(models, key=lambda m: tput.med(m, x))
    tied, cis = [best], {}
    for m in models:
        if m == best:
            continue
        ci = boot_ratio(tput.points[(best, x)], tput.points[(m, x)])
        cis[m] = ci
        few = ci is None or ci[3] < 2 or ci[4] < 2      # no verdict on one run a side
        if few or decide(ci) != "a":      # not clearly ahead of m: a tie
            tied.append(m)
    def key(m):
        return (mem[m] if mem.get(m) is not None else float("inf"),
                loc[m] if loc.get(m) is not None else float("inf"))
    pick = min(tied, key=key)
    parts = [f"**Recommendation: {pick}.**"]
    if len(tied) == 1:
        parts.append(f"It has the highest throughput here, {fmt(tput.med(pick, x))} emails/s, clearly "
                     "ahead of " + ", ".join(f"{m} ({fmt_ci(cis[m])})" if cis.get(m) else m
                                             for m in models if m != pick) + ".")
    elif any(ci is None or ci[3] < 2 or ci[4] < 2 for ci in cis.values()):
        parts.append(f"Too few runs at this point to separate {', '.join(tied)} (fewer than 2 a "
                     f"side; {best} has the highest median, {fmt(tput.med(best, x))}/s): of these "
                     f"{pick} uses the least memory per email in flight.")
    else:
        parts.append(f"{', '.join(tied)} deliver the same within the noise "
                     f"(no bootstrap interval clear of ×{fmt(1 + TAU)}; {best} has the highest "
                     f"median, {fmt(tput.med(best, x))}/s); of these {pick} uses the least memory "
                     "per email in flight" + (" and code" if key(pick)[1] == min(key(m)[1] for m in tied)
                                               else "") + ".")
    for other in ("threads", "async"):
        if other != pick and other in models and mem.get(pick) and mem.get(other):
            parts.append(f"Against {other}: ×{fmt(tput.med(pick, x) / tput.med(other, x))} the "
                         f"throughput at ×{fmt(mem[other] / mem[pick])} "
                         f"{'less' if mem[other] >= mem[pick] else 'more'} memory per email in "
                         f"flight ({fmt(mem[pick])} against {fmt(mem[other])} KB).")
            break
    c = cpu.med(pick, x)
    if pick in ("async", "sync") and c:
        limit = 1e6 / c
        used = tput.med(pick, x) * c / 1e6
        parts.append(f"One core holds {pick} up to about {fmt(limit)} emails/s at the CPU per email "
                     f"measured here ({fmt(c)} µs); here it uses {fmt(100 * used)}% of one"
                     + (". Beyond that, hybrid (the CPU work in a thread pool) or several "
                        "reactors help." if used >= HEADROOM_CORE else "."))
    if room:
        have = {m: r for m, r in room.items() if r}
        if have:
            top = max(have, key=have.get)
            line = (f"Headroom under p99 < {slo} ms: " + ", ".join(f"{m} {fmt(r)}/s" for m, r in
                                                                  sorted(have.items(), key=lambda kv: -kv[1])))
            if top != pick and have.get(pick) and have[top] / have[pick] > 1 + TAU:
                line += f"; past {fmt(have[pick])}/s at that objective, {top} goes further"
            parts.append(line + ".")
        else:
            parts.append(f"No model sustained any measured load with p99 under {slo} ms.")
    rules = ["How it is decided:",
             f"1. Throughput at the operating point first: the model with the highest median, and "
             f"every model whose ratio to it is not clearly below (the 95% bootstrap interval of "
             f"the ratio does not clear ×{fmt(1 + TAU)}, the report's verdict rule) counts as tied.",
             "2. Among tied models, the least memory per email in flight, then the fewest lines of "
             "code.",
             f"3. A one-thread model (sync, async) is said to fill its core at {int(HEADROOM_CORE * 100)}% "
             "of one; the rate one core holds is 1 s ÷ its CPU per email.",
             "4. Headroom is reported for every model; a model that sustains ×"
             f"{fmt(1 + TAU)} more under the objective is named.", ""]
    return [" ".join(parts), ""] + rules
