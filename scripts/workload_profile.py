"""workload_profile — a workload profile (workloads/profiles/NAME.conf) in the
sweeps: scripts/sweep --profile FILE (and report-run, make report PROFILE=).

The profile is read by the C parser, not parsed again here: load() runs
`bin/summary-hybrid --profile FILE --dump-profile`, which applies every rule
(unknown key, value out of range, malformed line, keys that cannot hold
together, a concurrency beyond the descriptor limit) and exits 2 with
"FILE:LINE: ..." naming the key, or prints the resolved values as JSON.

A sweep conf says how a profile enters it (apply()):
  {fixed}          in `model`: the workload's fixed options.  Without a
                   profile, the conf's `fixed` key (today's options, so the
                   default report's commands are unchanged); with one, the
                   profile's --events (or --cpu-per-email), --recipients,
                   --body-bytes, --per-session, --retries and --timeout, in
                   that order, less the keys in the conf's `swept` (the ones
                   the sweep sets itself).
  {server_fixed}   in `server`: likewise, the conf's `server_fixed`, or the
                   profile's --latency, --jitter and --latency-dist (less
                   `swept`).  The profile's faults are not applied (q7
                   injects its own); its limits neither.
  {=EXPR} {=EXPR:dur}  anywhere in a key: a Python expression of the
                   profile's values (below), as a whole number, or with :dur
                   as a duration ("100us", "20ms", "2s").  {=EXPR|DEFAULT}:
                   DEFAULT without a profile (today's value).
  workload.fixed / workload.server_fixed replace the profile's options in
                   one sweep (q11b: ten times the profile's latency).
  workload.KEY = V overrides KEY under a profile (workload.values for the
                   values around the profile's, workload.models, ...);
                   workload-cpu.KEY too when the profile sets cpu-per-email.
                   workload.skip = REASON leaves a sweep out of a profile's
                   report.
Names in expressions: the profile's keys with '-' as '_' (concurrency,
events, recipients, body_bytes, per_session, retries, emails, chain; latency,
jitter, timeout, cpu_per_email in seconds, 0 when not set), cpu (the CPU per
email: cpu_per_email, or events x 0.2 us, the summary's cost on the machine
the shipped profiles were written on, + 10 us), t_email (5 round trips of
latency + cpu + 100 us: an email's time alone), fd_max (the descriptors a run
can get), and min, max, int, round.
A swept concurrency above fd_max - 64 is dropped (the run could not open
its sockets); values are deduplicated and sorted.
"""
import json
import os
import re
import resource
import subprocess


class ProfileError(Exception):
    """The profile is refused (message from the C parser: FILE:LINE: ...)."""


# The model keys a profile fixes in every sweep, in the order they appear.
FIXED_KEYS = ("events", "cpu-per-email", "recipients", "body-bytes", "per-session", "retries",
              "timeout")
SERVER_KEYS = ("latency", "jitter", "latency-dist")
NS_PER_EVENT = 200e-9       # the summary's CPU per event where the profiles were written


def parse_duration(text):
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)(us|ms|s)?", str(text).strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, None: 0}[m.group(2)]


def fmt_duration(seconds):
    us = int(round(seconds * 1e6))
    if us <= 0:
        return "0"
    if us % 1000000 == 0:
        return f"{us // 1000000}s"
    if us % 1000 == 0:
        return f"{us // 1000}ms"
    return f"{us}us"


class Workload:
    def __init__(self, path, dump):
        self.path = path
        self.name = os.path.basename(path)[:-5] if path.endswith(".conf") else os.path.basename(path)
        self.dump = dump
        self.values = dict(dump["model"], **dump["server"])
        self.lines = dump.get("lines", {})

    def is_set(self, key):
        return key in self.lines

    def names(self):
        """The variables of {=EXPR}."""
        v = {}
        for k, val in self.values.items():
            name = k.replace("-", "_")
            if isinstance(val, str):
                try:
                    val = parse_duration(val)
                except ValueError:
                    pass
            v[name] = val
        v["cpu_per_email"] = v.get("cpu_per_email") or 0.0
        cpu = v["cpu_per_email"] if self.is_set("cpu-per-email") else v["events"] * NS_PER_EVENT
        v["cpu"] = cpu + 10e-6
        v["t_email"] = 5 * v["latency"] + v["cpu"] + 100e-6
        v["fd_max"] = fd_max()
        v.update(min=min, max=max, int=int, round=round)
        return v

    def fixed(self, swept):
        """The profile's fixed model options (less the swept keys)."""
        out = []
        for k in FIXED_KEYS:
            if k in swept or (k == "cpu-per-email" and "events" in swept):
                continue
            if k == "events" and self.is_set("cpu-per-email"):
                continue
            if k == "cpu-per-email" and not self.is_set("cpu-per-email"):
                continue
            out += [f"--{k}", str(self.values[k])]
        return " ".join(out)

    def server_fixed(self, swept):
        out = ["--latency", self.values["latency"]] if "latency" not in swept else []
        for k in ("jitter", "latency-dist"):
            if self.is_set(k) and k not in swept and "latency" not in swept:
                out += [f"--{k}", str(self.values[k])]
        return " ".join(out)

    def summary(self):
        """What env.json records: the file, the keys it set and every value."""
        return {"name": self.name, "path": self.path, "set": sorted(self.lines),
                "values": self.values}


def fd_max():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 10 ** 9 if hard == resource.RLIM_INFINITY else hard


def load(path, bindir):
    """The profile through the C parser; ProfileError with its message."""
    prog = os.path.join(bindir, "summary-hybrid")
    if not os.access(prog, os.X_OK):
        raise ProfileError(f"{prog} is missing (run make): it reads the profile")
    if not os.path.isfile(path):
        raise ProfileError(f"--profile: no such workload profile: {path}")
    p = subprocess.run([prog, "--profile", path, "--dump-profile"], capture_output=True,
                       text=True, timeout=30)
    if p.returncode != 0:
        msg = "\n".join(l for l in p.stderr.strip().splitlines() if not l.startswith("Try '"))
        raise ProfileError(msg or f"{prog} exited with {p.returncode}")
    return Workload(path, json.loads(p.stdout))


EXPR = re.compile(r"\{=([^{}|]+?)(?::(dur|int))?(?:\|([^{}]*))?\}")


def expand(text, names, where):
    """Replaces every {=EXPR} / {=EXPR:dur} / {=EXPR|DEFAULT} in text; with
    names None (no profile) by its DEFAULT (left as is without one)."""
    def one(m):
        if names is None:
            return m.group(3) if m.group(3) is not None else m.group(0)
        try:
            val = eval(m.group(1), {"__builtins__": {}}, names)
        except Exception as e:
            raise ProfileError(f"{where}: bad expression {m.group(0)!r}: {e}")
        if m.group(2) == "dur":
            return fmt_duration(val)
        return str(int(round(val)))
    return EXPR.sub(one, text)


def apply(conf, wl):
    """Resolves a sweep conf (dict from scripts/sweep's read_conf) for the
    workload wl (None: no profile).  Returns conf, changed in place; sets
    conf["workload_skip"] when the sweep is not part of a profile's report."""
    over = {}
    if wl is not None:
        over = {k[len("workload."):]: v for k, v in conf.items() if k.startswith("workload.")}
        if wl.is_set("cpu-per-email"):
            over.update({k[len("workload-cpu."):]: v for k, v in conf.items()
                         if k.startswith("workload-cpu.")})
        conf.update(over)
        if "skip" in over:
            conf["workload_skip"] = over["skip"]
    swept = conf.get("swept", "").split()
    fixed = wl.fixed(swept) if wl and "fixed" not in over else conf.get("fixed", "")
    server_fixed = (wl.server_fixed(swept) if wl and "server_fixed" not in over
                    else conf.get("server_fixed", ""))
    names = wl.names() if wl else None
    for key in list(conf):
        val = conf[key]
        if not isinstance(val, str) or key.startswith(("workload.", "workload-cpu.")):
            continue
        val = val.replace("{fixed}", fixed).replace("{server_fixed}", server_fixed)
        if "{=" in val:
            val = expand(val, names, conf.get("path", "?") + f": {key}")
        conf[key] = val
    if wl is not None:
        for key in [k for k in conf if k == "values" or k.startswith("values.")]:
            conf[key] = tidy_values(conf[key], conf.get("param"), names["fd_max"])
    return conf


def tidy_values(text, param, fds):
    """Dedupe and sort a value list; drop a concurrency the descriptors
    cannot hold."""
    vals = []
    for v in text.split():
        if v not in vals:
            vals.append(v)
    def num(v):
        try:
            return float(v)
        except ValueError:
            return parse_duration(v)
    vals.sort(key=num)
    if param == "concurrency":
        vals = [v for v in vals if num(v) <= fds - 64] or vals[:1]
    return " ".join(vals)


def _flag(args, name, default=None):
    """The value after --name in an argument list."""
    for i, a in enumerate(args[:-1]):
        if a == "--" + name:
            return args[i + 1]
    return default


def run_seconds(model, margs, sargs, kind, hyperfine_runs=0, cores=1):
    """A model of one run's wall time (--dry-run under a profile, where no
    earlier results folder has these values): an email alone takes 5 round
    trips of the server's latency + its CPU (events x 0.2 us, or
    --cpu-per-email) + its blocking call; sync sends one at a time, the
    others C at once but no faster than their one client core (the sweep
    pins the server to the other) allows.  A run sized by time lasts its
    warm-up and its window, each at least a round of the emails in flight,
    then drains one; a run sized by emails, the emails at that rate.  Plus
    0.3 s to start and stop the two processes.  A guide, not a measurement."""
    def dur(v):
        try:
            return parse_duration(v) if v is not None else 0.0
        except ValueError:
            return 0.0
    lat = dur(_flag(sargs, "latency", "0"))
    cpu = (dur(_flag(margs, "cpu-per-email")) if _flag(margs, "cpu-per-email")
           else int(_flag(margs, "events", "1000")) * NS_PER_EVENT) + 30e-6
    te = 5 * lat + cpu + dur(_flag(margs, "blocking", "0")) + 100e-6
    conc = 1 if model == "sync" else int(_flag(margs, "concurrency", "10"))
    blocking = dur(_flag(margs, "blocking", "0"))
    per_email = max(te / conc, cpu / cores, blocking if model in ("async", "hybrid") else 0)
    if model == "twisted":
        per_email = max(te / conc, 20 * cpu + 1.5e-3)
    rnd = per_email * conc
    if kind == "hyperfine":
        return hyperfine_runs * (0.05 + int(_flag(margs, "emails", "1000")) * per_email)
    if _flag(margs, "duration"):
        w, d = dur(_flag(margs, "warmup", "0")), dur(_flag(margs, "duration", "0"))
        return 0.3 + max(w, rnd) + max(d, rnd) + te
    return 0.3 + int(_flag(margs, "emails", "1000")) * per_email + te
