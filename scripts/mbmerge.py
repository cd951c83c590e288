"""mbmerge — K "mailbench.run/1" JSONs from K load generators made into one run.

Each load generator ran the same model with its share of the emails and the
concurrency against the same server; the merged run is what one client
sending all of them would have reported, computed exactly where it can be:

  - counts (emails, delivered, failed, retries, connections, the window's
    counts, maybe_delivered, open-loop counters) are summed, failure reasons
    summed by text;
  - the digests are summed modulo 2^64, as the run digest is defined
    (lib/digest.h: the digest of a set of emails is the sum of their hashes),
    so the merged digest is the digest of the union; maybe_hashes concatenated;
  - the latency, service and lateness histograms (the JSON's *_hist objects,
    lib/hist.c hist_fprint_json) are merged bucket by bucket, as
    hist_merge does, and every percentile is recomputed from the merged
    buckets with hist_percentile's rule: so p99 of the merged run is what
    the C code would report for the union of the samples;
  - the rate is the sum of the generators' rates (they ran at the same time,
    started together by --start-at), wall_s the longest;
  - CPU: the totals are summed (cpu_user_s, cpu_sys_s, cpu_window_s and so
    cpu_per_email_us), and each generator's CPU, RSS and rate are kept in
    "hosts" (a list, in input order); max_rss_kb and threads_peak are the
    largest of them.
"""
import math

MASK = 2**64 - 1
SCHEME = "mb-loglinear/1"
LINEAR, SUB = 256, 128                     # lib/hist.h HIST_LINEAR, HIST_SUB
NBUCKETS = LINEAR + (32 - 8) * SUB


class MergeError(Exception):
    """Runs that cannot be merged (different models, no histogram, ...)."""


def bucket(i):
    """(lowest value, width) of bucket i: lib/hist.c hist_bucket."""
    if i < LINEAR:
        return i, 1
    e, sub = 8 + (i - LINEAR) // SUB, (i - LINEAR) % SUB
    return (SUB + sub) << (e - 7), 1 << (e - 7)


def empty_hist():
    return {"scheme": SCHEME, "linear": LINEAR, "sub": SUB, "count": 0, "sum": 0, "min": 0,
            "max": 0, "overflow": 0, "buckets": []}


def check_hist(h, what):
    if not isinstance(h, dict):
        raise MergeError(f"{what}: no histogram (a run JSON from before the buckets were written?)")
    if h.get("scheme") != SCHEME or h.get("linear") != LINEAR or h.get("sub") != SUB:
        raise MergeError(f"{what}: histogram scheme {h.get('scheme')!r} "
                         f"({h.get('linear')}/{h.get('sub')}), expected {SCHEME} ({LINEAR}/{SUB})")
    n = 0
    for i, c in h["buckets"]:
        if not 0 <= i < NBUCKETS or c < 0:
            raise MergeError(f"{what}: bad bucket [{i}, {c}]")
        n += c
    if n != h["count"]:
        raise MergeError(f"{what}: buckets hold {n} samples, count says {h['count']}")


def merge_hists(hists):
    """The histogram of all the samples: hist_merge over the list."""
    counts = {}
    out = empty_hist()
    for h in hists:
        if h["count"] == 0:
            continue
        for i, c in h["buckets"]:
            counts[i] = counts.get(i, 0) + c
        if out["count"] == 0 or h["min"] < out["min"]:
            out["min"] = h["min"]
        out["max"] = max(out["max"], h["max"])
        out["count"] += h["count"]
        out["sum"] += h["sum"]
        out["overflow"] += h["overflow"]
    out["buckets"] = [[i, counts[i]] for i in sorted(counts) if counts[i]]
    return out


def percentile(h, q):
    """hist_percentile: nearest rank, the middle of its bucket clamped to
    [min, max]; 0 when empty, max at q >= 100.  Same double arithmetic."""
    if h["count"] == 0:
        return 0
    if q >= 100.0:
        return h["max"]
    r = math.ceil(q / 100.0 * float(h["count"]))
    rank, seen = (1 if r < 1.0 else int(r)), 0
    for i, c in h["buckets"]:
        seen += c
        if seen >= rank:
            low, width = bucket(i)
            mid = low + (width - 1) // 2
            return h["min"] if mid < h["min"] else h["max"] if mid > h["max"] else mid
    return h["max"]


def share_above(h, us):
    """hist_share_above: the share of samples in buckets wholly above us."""
    if h["count"] == 0:
        return 0.0
    return float(sum(c for i, c in h["buckets"] if bucket(i)[0] > us)) / float(h["count"])


def mean(h):
    return float(h["sum"]) / float(h["count"]) if h["count"] else 0.0


def hist_figures(h):
    """The run JSON's latency fields, from a histogram, as stats.c writes them."""
    return {"p50_us": percentile(h, 50), "p90_us": percentile(h, 90), "p99_us": percentile(h, 99),
            "p999_us": percentile(h, 99.9), "max_us": h["max"], "mean_us": round(mean(h), 1),
            "over_10x_median_share": round(share_above(h, 10 * percentile(h, 50)), 6)}


SUMMED = ("emails", "delivered", "failed", "retries", "connections", "window_delivered",
          "window_failed", "maybe_delivered", "ctx_voluntary", "ctx_involuntary",
          "scheduled", "shed", "pending", "behind_schedule")
PER_HOST = ("host", "emails", "delivered", "failed", "emails_per_s", "p99_us", "cpu_user_s",
            "cpu_sys_s", "cpu_window_s", "cpu_per_email_us", "max_rss_kb", "threads_peak",
            "wall_s", "window_s")


def merge_runs(runs, hosts=None):
    """One "mailbench.run/1" dict from several (see the module's header).
    hosts: a name per run for the "hosts" list (default client1, client2...)."""
    if not runs:
        raise MergeError("nothing to merge")
    hosts = hosts or [f"client{k + 1}" for k in range(len(runs))]
    for k, r in enumerate(runs):
        if not isinstance(r, dict) or r.get("schema") != "mailbench.run/1":
            raise MergeError(f"input {k + 1}: not a mailbench.run/1 JSON")
        for key in ("latency_hist", "service_hist", "lateness_hist"):
            check_hist(r.get(key), f"input {k + 1} ({hosts[k]}) {key}")
    first = runs[0]
    for k, r in enumerate(runs[1:], 2):
        for key in ("model", "latency_mode"):
            if r.get(key) != first.get(key):
                raise MergeError(f"input {k}: {key} {r.get(key)!r} differs from input 1's "
                                 f"{first.get(key)!r}")
    if len(runs) == 1:
        out = dict(first)
    else:
        out = {k: v for k, v in first.items() if not isinstance(v, (int, float)) or isinstance(v, bool)}
    for key in SUMMED:
        out[key] = sum(r.get(key, 0) or 0 for r in runs)
    out["digest"] = "%016x" % (sum(int(r["digest"], 16) for r in runs) & MASK)
    out["maybe_digest"] = "%016x" % (sum(int(r.get("maybe_digest", "0"), 16) for r in runs) & MASK)
    out["maybe_hashes"] = [h for r in runs for h in r.get("maybe_hashes", [])]
    reasons = {}
    for r in runs:
        for text, n in (r.get("failure_reasons") or {}).items():
            reasons[text] = reasons.get(text, 0) + n
    out["failure_reasons"] = reasons
    lat = merge_hists([r["latency_hist"] for r in runs])
    svc = merge_hists([r["service_hist"] for r in runs])
    late = merge_hists([r["lateness_hist"] for r in runs])
    out.update(latency_hist=lat, service_hist=svc, lateness_hist=late)
    out.update(hist_figures(lat))
    out.update(service_p50_us=percentile(svc, 50), service_p99_us=percentile(svc, 99),
               service_p999_us=percentile(svc, 99.9), start_lateness_p99_us=percentile(late, 99),
               max_lag_us=late["max"])
    out["emails_per_s"] = round(sum(r.get("emails_per_s") or 0 for r in runs), 3)
    out["wall_s"] = max(r.get("wall_s") or 0 for r in runs)
    out["window_s"] = max(r.get("window_s") or 0 for r in runs)
    for key in ("cpu_user_s", "cpu_sys_s", "cpu_window_s"):
        out[key] = round(sum(r.get(key) or 0 for r in runs), 6)
    ended = out["window_delivered"] + out["window_failed"]
    if len(runs) > 1:       # (one run keeps its own, computed before rounding)
        out["cpu_per_email_us"] = round(out["cpu_window_s"] * 1e6 / ended, 3) if ended else 0.0
    out["max_rss_kb"] = max(r.get("max_rss_kb") or 0 for r in runs)
    out["threads_peak"] = max(r.get("threads_peak") or 0 for r in runs)
    out["peak_queue"] = max(r.get("peak_queue") or 0 for r in runs)
    params = dict(first.get("params") or {})
    for key in ("emails", "concurrency", "rate"):
        if key in params:
            params[key] = sum((r.get("params") or {}).get(key) or 0 for r in runs)
    params["seeds"] = [(r.get("params") or {}).get("seed") for r in runs]
    out["params"] = params
    out["hosts"] = [dict({k: r.get(k) for k in PER_HOST if k != "host"}, host=h)
                    for r, h in zip(runs, hosts)]
    out["merged_from"] = len(runs)
    return out
