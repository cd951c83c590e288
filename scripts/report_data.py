"""report_data — what scripts/report-gen reads and how it counts: the results
folder loaded and checked, one metric per run, medians per point, numbers
formatted, and the one verdict rule.

Contract: pure functions and data, no output but ReportError (a results
folder that cannot be reported on; report-gen prints it and exits 2) and
warn() (one line on stderr).  Reads only the results folder given; writes
nothing.  The same folder gives the same values: the bootstrap has a fixed
seed.

  models       MODELS, VARIANTS (async ×N), PEERS, MODEL_ORDER, label()
  loading      load_results, read_csv, check_runs, convert
  statistics   metric (a derived value of one run), Agg (median, min–max per
               model and swept value of one metric), ratio, fit_line
  formatting   fmt (3–4 significant digits), fmt_n (counts)
  verdicts     boot_ratio, decide (the rule of every verdict: MEASUREMENT.md
               §5), fmt_ci, TAU, BOOT
"""
import csv
import io
import json
import os
import random
import re
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ["sync", "threads", "async", "hybrid"]
# The peers: the Twisted reference (the async design in real Twisted) and
# Postfix's smtp-source (a load generator, not the workload).  They get rows
# and lines of their own but never a "best model" verdict.
PEERS = ["twisted", "smtp-source"]
LABEL = {"twisted": "twisted (reference)", "smtp-source": "smtp-source (load)"}
# The async model with N reactor threads (scripts/sweep runs "asyncN" as
# bin/summary-async --reactors N; issue 16): rows and lines of their own,
# after the four models, style 7; the same design as async, so not one of the
# four in the "best model" verdicts.
VARIANTS = ["async2", "async4"]
MODEL_ORDER = MODELS + VARIANTS + PEERS


def label(model):
    """How a model is named in tables and legends."""
    m = re.match(r"async(\d+)$", model)
    return f"async ×{m.group(1)}" if m else LABEL.get(model, model)


class ReportError(Exception):
    """The results folder cannot be reported on; the message says why."""


def warn(text):
    print(f"report-gen: warning: {text}", file=sys.stderr)


# ---------------------------------------------------------------- loading

def load_results(folder, partial):
    """env.json and every sweep's rows: {sweep: [row dict]}."""
    env_path = os.path.join(folder, "env.json")
    if not os.path.isdir(folder):
        raise ReportError(f"no such results folder: {folder}")
    if not os.path.isfile(env_path):
        raise ReportError(f"{folder} is not a results folder: env.json is missing "
                          "(run scripts/sweep first)")
    try:
        with open(env_path) as f:
            env = json.load(f)
    except ValueError as e:
        raise ReportError(f"{env_path}: not valid JSON ({e}): the sweep was cut short?")
    if env.get("schema") != "mailbench.env/1" or not isinstance(env.get("sweeps"), dict):
        raise ReportError(f"{env_path}: not a mailbench.env/1 file")
    unfinished = sorted(n for n, s in env["sweeps"].items() if not s.get("complete"))
    if unfinished and not partial:
        raise ReportError(f"{folder} is half-written: sweep(s) {', '.join(unfinished)} did not "
                          "finish (interrupted?). Re-run them with scripts/sweep, or pass "
                          "--partial to report what is there")
    rows = {}
    for name in sorted(env["sweeps"]):
        path = os.path.join(folder, name + ".csv")
        if not os.path.isfile(path):
            if partial:
                continue
            raise ReportError(f"{folder} is half-written: {name}.csv is missing")
        data = read_csv(path, partial)
        for need in ("model", "value", "x", "valid", "warmup"):
            if data and need not in data[0]:
                raise ReportError(f"{path}: column '{need}' is missing")
        rows[name] = [convert(r) for r in data if r.get("warmup") != "1"]
        # Run in randomised blocks (scripts/sweep blocked()): a run's block is
        # its repetition, and two models' runs of one block are paired.
        blocked = env["sweeps"][name].get("order") == "blocked"
        # The values each model was run at (values.MODEL, else the sweep's):
        # a value only another model has is not a gap in this model's line.
        planned = planned_values(env["sweeps"][name])
        for r in rows[name]:
            r["block"] = int(r["rep"]) if blocked and r.get("rep") is not None else None
            r["planned"] = planned.get(r["model"])
    if not rows:
        raise ReportError(f"{folder} holds no sweep results")
    check_runs(folder, partial)
    return env, rows


def planned_values(sweep):
    """model -> the x values it was swept at (env.json: model_values, else
    values), as numbers; {} when env.json does not say (older results)."""
    def xs(vals):
        try:
            return frozenset(float(v) for v in vals)
        except (TypeError, ValueError):
            return None
    base = xs(sweep.get("values") or [])
    if not base:
        return {}
    own = {m: xs(v) for m, v in (sweep.get("model_values") or {}).items()}
    return {m: own.get(m) or base for m in sweep.get("models") or []}


def read_csv(path, partial):
    """A sweep's rows; a file cut mid-row (no final newline, a row with too
    few or too many fields) is half-written, never read as if complete."""
    with open(path, newline="") as f:
        text = f.read()
    if text and not text.endswith("\n"):
        if not partial:
            raise ReportError(f"{path} is half-written: its last row is cut short (no final "
                              "newline). Re-run the sweep, or pass --partial")
        text = text[:text.rfind("\n") + 1]
    data = []
    for i, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
        if None in row or None in row.values():
            if partial:
                continue
            raise ReportError(f"{path}:{i}: {'too many' if None in row else 'too few'} fields "
                              "(the file is damaged or half-written)")
        data.append(row)
    return data


def check_runs(folder, partial):
    """Every runs/*.json must parse: a truncated one means the folder was
    copied or written half-way, and the figures read from it would be wrong."""
    runs = os.path.join(folder, "runs")
    if not os.path.isdir(runs):
        return
    for name in sorted(os.listdir(runs)):
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(runs, name)) as f:
                json.load(f)
        except (OSError, ValueError) as e:
            if not partial:
                raise ReportError(f"{runs}/{name}: not valid JSON ({e}): the folder is "
                                  "half-written. Re-run that sweep, or pass --partial")


def convert(row):
    """Numbers as floats where they parse; empty strings stay None."""
    out = {}
    for k, v in row.items():
        if v is None or v == "":
            out[k] = None
            continue
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = v
    out["valid"] = row.get("valid") == "1"
    out["model"] = row["model"]
    out["value"] = row["value"]
    return out


# ------------------------------------------------------------- statistics

def metric(row, name):
    """A derived metric of one run, or None when it cannot be computed."""
    g = row.get
    try:
        if name == "tput":
            return g("emails_per_s")
        if name in ("p50", "p99", "max", "mean"):
            return g(name + "_us") / 1000.0
        if name == "rss_mb":
            return g("max_rss_kb") / 1024.0
        if name == "cpu_us":        # marginal: over the steady-state window when measured
            if g("cpu_per_email_us") is not None:
                return g("cpu_per_email_us")
            return (g("cpu_user_s") + g("cpu_sys_s")) / g("emails") * 1e6
        if name == "window_n":
            return g("window_delivered") if g("window_delivered") is not None else g("delivered")
        if name == "offered":
            return g("p_rate")
        if name == "achieved_ratio":
            return g("emails_per_s") / g("p_rate")
        if name == "service_p99":
            return g("service_p99_us") / 1000.0
        if name == "lost_share":            # shed + still waiting, % of scheduled
            return 100.0 * ((g("shed") or 0) + (g("pending") or 0)) / g("scheduled")
        if name == "over10":
            return 100.0 * g("over_10x_median_share")
        if name == "rss_per_inflight":      # KB per email in flight (server-counted)
            return g("max_rss_kb") / g("srv_max_concurrent")
        if name == "reached_pct":
            return 100.0 * g("srv_max_concurrent") / g("p_concurrency")
        if name == "cpu_per_delivered":
            return (g("cpu_user_s") + g("cpu_sys_s")) / g("delivered") * 1e6
        if name == "msg_bytes":
            return g("srv_bytes") / g("srv_messages")
        if name == "srv_cpu_us":
            return (g("srv_cpu_user_s") + g("srv_cpu_sys_s")) / g("emails") * 1e6
        if name == "ctx":
            return (g("ctx_voluntary") + g("ctx_involuntary")) / g("emails")
        if name == "retries_per_email":
            return g("retries") / g("emails")
        if name == "threads":
            return g("threads_peak")
        return g(name)
    except (TypeError, ZeroDivisionError):
        return None


class Runs(list):
    """A point's values, with the block of each (None: not run in blocks),
    so that boot_ratio can pair two points' runs block by block."""

    def __init__(self):
        super().__init__()
        self.blocks = []

    def add(self, value, block):
        self.append(value)
        self.blocks.append(block)


class Agg:
    """Medians with min–max per (model, x) for one metric of one sweep."""

    def __init__(self, rows, name):
        self.name = name
        self.points = {}      # (model, x) -> [values of valid runs]
        self.invalid = {}     # (model, x) -> [rows of invalid runs]
        self.label = {}       # x -> the value as written in the sweep
        self.planned = {}     # model -> the x values it was run at (when env.json says)
        for r in rows:
            key = (r["model"], r["x"])
            self.label[r["x"]] = r["value"]
            if r.get("planned"):
                self.planned[r["model"]] = r["planned"]
            self.points.setdefault(key, Runs())
            if r["valid"]:
                v = metric(r, name)
                if v is not None:
                    self.points[key].add(v, r.get("block"))
            else:
                self.invalid.setdefault(key, []).append(r)
        # A model with no value at all for this metric (smtp-source has no
        # per-email latency) and no invalid run gets no column.
        have = {k[0] for k, v in self.points.items() if v} | {k[0] for k in self.invalid}
        self.models = [m for m in MODEL_ORDER if m in have]
        self.models += sorted(have - set(self.models))
        self.xs = sorted(self.label)

    def planned_at(self, model, x):
        """Was model run at x?  True when not known (results before env.json
        recorded each model's values)."""
        p = self.planned.get(model)
        return p is None or float(x) in p

    def stat(self, model, x):
        """(median, min, max, n) or None."""
        v = self.points.get((model, x))
        if not v:
            return None
        return statistics.median(v), min(v), max(v), len(v)

    def med(self, model, x):
        s = self.stat(model, x)
        return s[0] if s else None

    def cell(self, model, x, unit=""):
        s = self.stat(model, x)
        bad = len(self.invalid.get((model, x), []))
        mark = f" ✗{bad}" if bad else ""
        if not s:
            return "—" + mark
        if s[3] == 1 or fmt(s[1]) == fmt(s[2]):
            return f"{fmt(s[0])}{unit}{mark}"
        return f"{fmt(s[0])}{unit} ({fmt(s[1])}–{fmt(s[2])}){mark}"


def fmt(v):
    """A number with 3–4 significant digits, thousands separated."""
    if v is None:
        return "—"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a == 0:
        return "0"
    return f"{v:.3g}"


def fmt_n(v):
    """A count (a median of counts may end in .5)."""
    return "—" if v is None else (f"{v:,.0f}" if v == int(v) else f"{v:,.1f}")


def ratio(a, b):
    return a / b if a and b else None


# ------------------------------------------------------------- verdicts

TAU = 0.10      # practical threshold: a ratio within ×1.1 either way is no clear difference
BOOT = 2000     # bootstrap resamples


PAIRED_MIN = 3  # blocks both sides ran in, for a paired interval


def pairs_of(a, b):
    """The (a, b) value pairs of the blocks both sides ran in, when both were
    run in randomised blocks (Runs with blocks), else None."""
    ba, bb = getattr(a, "blocks", None), getattr(b, "blocks", None)
    if not ba or not bb or None in ba or None in bb:
        return None
    vb = {k: v for k, v in zip(bb, b) if v is not None}
    return [(v, vb[k]) for k, v in zip(ba, a) if v is not None and k in vb]


def boot_ratio(a, b, higher=True, n=BOOT, seed=20261130):
    """(ratio, lo, hi, ka, kb, paired): median(a) ÷ median(b), oriented so
    that > 1 means a is better (higher=False: lower values are better), with
    the 2.5th and 97.5th percentiles of the same ratio over n bootstrap
    resamples; ka, kb the repetition counts.  When both sides were run in
    randomised blocks and share PAIRED_MIN blocks or more, the resamples draw
    blocks (each a pair of runs made close in time, so the machine's drift
    over a sweep cancels: paired = the number of pairs); otherwise each
    side's repetitions are drawn on their own (paired = 0).  None when a side
    has no value.  A value of 0 counts as 1e-9."""
    pairs = pairs_of(a, b)
    a = [v for v in a if v is not None]
    b = [v for v in b if v is not None]
    if not a or not b:
        return None

    def r(x, y):
        mx, my = max(statistics.median(x), 1e-9), max(statistics.median(y), 1e-9)
        return mx / my if higher else my / mx
    rng = random.Random(seed)
    if pairs and len(pairs) >= PAIRED_MIN:
        reps = []
        for _ in range(n):
            draw = [rng.choice(pairs) for _ in pairs]
            reps.append(r([p[0] for p in draw], [p[1] for p in draw]))
        reps.sort()
        paired = len(pairs)
    else:
        reps = sorted(r([rng.choice(a) for _ in a], [rng.choice(b) for _ in b]) for _ in range(n))
        paired = 0
    return r(a, b), reps[int(0.025 * n)], reps[int(0.975 * n) - 1], len(a), len(b), paired


def decide(ci, tau=TAU):
    """The one verdict rule, the same for every claim and both directions:
    'a' when the whole interval is above 1 + tau, 'b' when it is below
    1 / (1 + tau), None (no clear difference) otherwise."""
    if ci is None:
        return None
    _, lo, hi = ci[:3]
    if lo > 1 + tau:
        return "a"
    if hi < 1 / (1 + tau):
        return "b"
    return None


def fmt_ci(ci):
    """'×1.23 [1.10–1.40], 3 v 3 runs' (', paired' when the interval
    resampled blocks: pairs of runs made close in time)."""
    r, lo, hi, ka, kb = ci[:5]
    paired = ", paired" if len(ci) > 5 and ci[5] else ""
    return f"×{fmt(r)} [{fmt(lo)}–{fmt(hi)}], {ka} v {kb} runs{paired}"


def fit_line(pairs):
    """Least squares y = a + b x; (a, b) or None with fewer than 2 x values."""
    if len({x for x, _ in pairs}) < 2:
        return None
    n = len(pairs)
    mx = sum(x for x, _ in pairs) / n
    my = sum(y for _, y in pairs) / n
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    b = sum((x - mx) * (y - my) for x, y in pairs) / sxx
    return my - b * mx, b
