#!/usr/bin/python3
"""twisted_support.py — what the Twisted reference shares with the C models.

The model itself (the SMTP session over Twisted's protocols, the Deferred
chain of each email, the run) is in twisted_summary.py.  This module is the
rest, each part a port of the C code it names, so that the reference reads
the same options, schedules the same arrivals, retries on the same policy,
hashes the same bytes and writes the same "mailbench.run/1" JSON:
lib/digest.c, lib/retry.c, lib/arrivals.c, lib/cli.c (with the profiles)
and lib/stats.c.  The workload's messages come from workloads/summary.py.
"""
import bisect
import json
import math
import os
import platform
import resource
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "workloads"))
import summary as workload  # noqa: E402  (the Python port of workloads/summary.c)

PROG = "summary-twisted"
MODEL = "twisted"
RETRY_BASE_S, RETRY_CAP_S = 0.010, 1.0  # RETRY_POLICY_DEFAULT
M64 = (1 << 64) - 1

# ---------------------------------------------------------------- digest (lib/digest.c)

XXHASH_ERROR = None
try:
    import xxhash   # python3-xxhash; main() says so when it is missing
except ImportError as _e:
    xxhash, XXHASH_ERROR = None, _e


def digest_hash(data):
    """XXH3-64, seed 0, of the message's bytes: digest_hash() (python3-xxhash)."""
    return xxhash.xxh3_64_intdigest(data)


# ---------------------------------------------------------------- retry (lib/retry.c)

class Backoff:
    """retry_backoff(): attempt a waits uniform [d/2, d], d = min(cap, base*2^a);
    the jitter comes from splitmix64 seeded like async_mailer (rng = rand64(seed))."""

    def __init__(self, seed):
        self.state = seed & M64
        self.state = self.rand64()

    def rand64(self):
        self.state = (self.state + 0x9e3779b97f4a7c15) & M64
        return workload.mix64(self.state)

    def delay(self, attempt):
        d = RETRY_BASE_S
        for _ in range(attempt):
            if d >= RETRY_CAP_S:
                break
            d *= 2.0
        d = min(d, RETRY_CAP_S)
        u = (self.rand64() >> 11) * (1.0 / 9007199254740992.0)
        return d / 2.0 + u * d / 2.0


# ---------------------------------------------------------------- arrivals (lib/arrivals.c)

class Arrivals:
    """The open-loop schedule and its queue, as lib/arrivals.c: unit i (a
    chain) is due at t_i, constant (start + i/rate) or Poisson (t_0 = start,
    t_i = t_{i-1} + an exponential gap of mean 1/rate drawn from splitmix64
    seeded by seed ^ "arrivals": the same schedule as the C models for the
    same seed).  admit(now) moves every unit due by now into the FIFO (one
    that finds max_queue waiting is shed); pop() takes the oldest."""

    def __init__(self, start, rate, poisson, seed, max_queue, end, limit):
        from collections import deque
        self.start, self.rate, self.poisson = start, rate, poisson
        self.rng = (seed ^ 0x6172726976616c73) & M64
        self.t = []                     # Poisson: t_i drawn in order and kept
        self.end, self.limit, self.max_queue = end, limit, max_queue
        self.admitted = self.shed = self.peak = 0
        self.fifo = deque()

    def due(self, i):
        if not self.poisson:
            return self.start + i / self.rate
        t = self.t
        while len(t) <= i:
            self.rng = (self.rng + 0x9e3779b97f4a7c15) & M64
            u = ((workload.mix64(self.rng) >> 11) + 0.5) * (1.0 / 9007199254740992.0)   # (0, 1)
            t.append(self.start if not t else t[-1] - math.log(u) / self.rate)
        return t[i]

    def admit(self, now_s):
        """Admit (or shed) every unit due by now; when the next is due (inf: over)."""
        while self.admitted < self.limit:
            t = self.due(self.admitted)
            if t >= self.end:
                return math.inf
            if t > now_s:
                return t
            if self.max_queue > 0 and len(self.fifo) >= self.max_queue:
                self.shed += 1
            else:
                self.fifo.append(self.admitted)
                self.peak = max(self.peak, len(self.fifo))
            self.admitted += 1
        return math.inf

    def pop(self):
        return self.fifo.popleft() if self.fifo else None


# ---------------------------------------------------------------- options (lib/cli.c)

class UsageError(Exception):
    pass


def parse_decimal(s):
    i = 0
    while i < len(s) and s[i].isdigit():
        i += 1
    j = i
    if j < len(s) and s[j] == ".":
        j += 1
        while j < len(s) and s[j].isdigit():
            j += 1
    if not any(c.isdigit() for c in s[:j]) or not s[:j].isascii():
        raise ValueError(s)
    return float(s[:j]), s[j:]


def parse_duration(s):
    v, unit = parse_decimal(s)
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}.get(unit)
    if scale is None:
        if unit == "" and v == 0.0:
            scale = 1.0
        else:
            raise ValueError(s)
    if v * scale > 86400.0 * 365:
        raise ValueError(s)
    return v * scale


def parse_size(s):
    k = 0
    while k < len(s) and "0" <= s[k] <= "9":
        k += 1
    if k == 0:
        raise ValueError(s)
    shift = {"": 0, "b": 0, "k": 10, "kb": 10, "m": 20, "mb": 20, "g": 30, "gb": 30}.get(s[k:].lower())
    if shift is None or int(s[:k]) > (1 << (62 - shift)):
        raise ValueError(s)
    return int(s[:k]) << shift


def parse_count(s):
    body, mul = (s[:-1], 1000) if s[-1:] in ("k", "K") else (s, 1)
    if not body or not (body.lstrip("-").isdigit() and body.lstrip("-").isascii()) or body.count("-") > (body[0] == "-"):
        raise ValueError(s)
    return int(body) * mul


def parse_prob(s):
    v, rest = parse_decimal(s)
    if rest == "%":
        v /= 100.0
    elif rest:
        raise ValueError(s)
    if not 0.0 <= v <= 1.0:
        raise ValueError(s)
    return v


def is_ipv4(host):
    """A dotted IPv4 address as inet_pton reads it (no leading zeros): units_is_ipv4."""
    try:
        socket.inet_pton(socket.AF_INET, host)
        return True
    except (OSError, ValueError):
        return False


def is_hostname(host):
    """An RFC 1123 host name no resolver would take for a number (units.c is_hostname)."""
    if not 0 < len(host) < 254 or not host.isascii():
        return False
    labels = host.split(".")
    for label in labels:
        if not 0 < len(label) <= 63 or label[0] == "-" or label[-1] == "-":
            return False
        if not all(c.isalnum() or c == "-" for c in label):
            return False
    if labels[-1].isdigit():            # RFC 1123 2.1, RFC 3696 2: a numeric TLD
        return False
    try:
        socket.inet_aton(host)          # "0x7f000001": getaddrinfo's numbers
        return False
    except (OSError, ValueError):
        return True


def parse_hostport(s):
    """HOST:PORT as units_parse_server: HOST an IPv4 address as written or a host
    name ("localhost" = 127.0.0.1), PORT 1..65535 in plain decimal."""
    host, colon, port = s.rpartition(":")
    if (not colon or not port.isascii() or not port.isdigit() or len(port) > 5
            or (port[0] == "0" and len(port) > 1) or not 1 <= int(port) <= 65535):
        raise ValueError(s)
    if host == "localhost":
        return "127.0.0.1", int(port)
    if not is_ipv4(host) and not is_hostname(host):
        raise ValueError(s)
    return host, int(port)


def resolve_server(o, from_flag):
    """A host name is looked up once, at start (IPv4), as lib/cli.c does."""
    host, port = parse_hostport(o["server"])
    if not is_ipv4(host):
        try:
            host = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
        except (OSError, UnicodeError) as e:
            why = getattr(e, "strerror", None) or str(e)
            if from_flag:
                raise UsageError(f"--server: cannot resolve '{host}' (in '{o['server']}'): {why}") from None
            raise UsageError(f"{o['profile']}: server = {o['server']}: cannot resolve '{host}': {why}") from None
    return host, port


SEC = 1_000_000
# name: (kind, min, max, metavar, help); kinds as in lib/cli.c.
MODEL_OPTS = {
    "server": ("hostport", 1, 65535, "HOST:PORT", "SMTP server: an IPv4 address or a host name, port 1..65535"),
    "emails": ("count", 1, 1_000_000_000, "N", "emails to send"),
    "concurrency": ("count", 1, 1_000_000, "C", "emails in flight at once (a DeferredSemaphore)"),
    "recipients": ("count", 1, 1000, "R", "recipients per email"),
    "events": ("count", 0, 10_000_000, "E", "application events summarised per email (CPU work)"),
    "body-bytes": ("size", 0, 256 << 20, "B", "pad each message to B bytes (0: the summary only)"),
    "per-session": ("count", 1, 1_000_000_000, "K", "emails per SMTP connection"),
    "chain": ("count", 1, 1_000_000_000, "K", "email i waits for email i-1 unless i % K == 0 (1: independent)"),
    "blocking": ("duration", 0, 60 * SEC, "DUR", "a blocking call of DUR per email, in the reactor thread"),
    "retries": ("count", 0, 1000, "N", "retries of a temporary failure"),
    "timeout": ("duration", 1, 86400 * SEC, "DUR", "timeout per connect+greeting and per message (addTimeout)"),
    "seed": ("count", 0, (1 << 63) - 1, "S", "seed of the workload"),
    "duration": ("duration", 0, 86400 * SEC, "DUR",
                 "steady-state window: start emails for DUR after the warm-up, then drain (0: send --emails)"),
    "warmup": ("duration", 0, 3600 * SEC, "DUR",
               "emails ending in the first DUR count for verification only, not in the figures"),
    "rate": ("count", 0, 10_000_000, "R",
             "open loop: start R emails/s, latency from the intended start (0: closed loop)"),
    "arrivals": ("choice", 0, 0, "constant|poisson",
                 "open loop: constant spacing 1/R, or Poisson arrivals of mean rate R (seeded)"),
    "max-queue": ("count", 0, 1_000_000_000, "N",
                  "open loop: at most N emails waiting to start; more are shed (0: unbounded)"),
    "quit-background": ("flag", 0, 0, None,
                        "free an email's slot when QUIT is sent (default: when the connection is closed)"),
}
CLI_OPTS = {
    "profile": ("path", 0, 0, "FILE", "read settings from FILE first (flags override it)"),
    "json": ("path", 0, 0, "FILE", "write the run's JSON to FILE (- for stdout)"),
    "progress": ("flag", 0, 0, None, "print progress on stderr (default: if a TTY)"),
    "start-at": ("count", 1_000_000_000_000, 99_999_999_999_999, "EPOCH_MS",
                 "start at this wall-clock time, Unix ms (several load generators start together)"),
    "help": ("help", 0, 0, None, "print this help and exit"),
}
SERVER_KEYS = {
    "latency": "duration", "jitter": "duration", "tempfail": "prob", "permfail": "prob",
    "drop": "prob", "stall": "prob", "latency-dist": ("fixed", "uniform", "exp"),
    "fault-stage": ("greeting", "mail", "rcpt", "data", "body"), "max-conns": "count",
    "max-size": "size", "max-rcpts": "count", "idle-timeout": "duration",
    "session-timeout": "duration",
}
UNSUPPORTED = {
    "threads": "runs one reactor thread; --threads sizes the pools of the threads and hybrid models",
    "cpu-per-email": "does not calibrate its CPU work (the C models do): give --events N instead "
                     "(Python costs ~20-40x the C models' CPU per event)",
}


def expected(kind, lo, hi, meta=None):
    if kind == "count":
        return f"a whole number from {lo} to {hi}"
    if kind == "size":
        return f"a size in bytes up to {hi >> 20}MB (e.g. 512, 100KB, 2MB)"
    if kind == "duration":
        f = lambda us: f"{us // SEC}s" if us >= SEC and us % SEC == 0 else ("0" if us == 0 else f"{us}us")  # noqa: E731
        return f"a duration from {f(lo)} to {f(hi)} with its unit (e.g. 250us, 10ms, 1.5s)"
    if kind == "choice":
        return f"one of {meta}"
    if kind == "hostport":
        return ("HOST:PORT with HOST an IPv4 address such as 127.0.0.1 or a host name "
                "(not empty, no IPv6) and PORT a number from 1 to 65535")
    return "a file name"


def convert(kind, lo, hi, value, meta=None):
    """The value of an option, or ValueError."""
    if kind == "choice":                # a whole word of "a|b" (lib/cli.c K_CHOICE)
        if 0 < len(value) < 16 and value in meta.split("|"):
            return value
        raise ValueError(value)
    if kind == "count":
        v = parse_count(value)
        if not lo <= v <= hi:
            raise ValueError(value)
        return v
    if kind == "size":
        v = parse_size(value)
        if v > hi:
            raise ValueError(value)
        return v
    if kind == "duration":
        v = parse_duration(value)
        if v * SEC < lo - 0.5 or v * SEC > hi + 0.5:
            raise ValueError(value)
        return v
    if kind == "hostport":
        parse_hostport(value)
        return value
    if kind == "flag" or not value:     # a flag has no value (a profile cannot set one)
        raise ValueError(value)
    return value


def defaults():
    return {"server": "127.0.0.1:2525", "emails": 0, "concurrency": 10, "recipients": 1,
            "events": 1000, "body-bytes": 0, "per-session": 1, "chain": 1, "blocking": 0.0,
            "retries": 5, "timeout": 30.0, "seed": 1, "rate": 0, "duration": 0.0, "warmup": 0.0,
            "arrivals": "constant", "max-queue": 0, "quit-background": False, "profile": None,
            "json": None, "progress": False, "start-at": 0}


def usage(f):
    f.write(f"Usage: {PROG} [OPTIONS]\n"
            "Send emails summarising synthetic application activity to an SMTP server\n"
            "and measure the run (model: twisted, the Python/Twisted reference).\n\nOptions:\n")
    for name, (kind, lo, hi, meta, text) in list(MODEL_OPTS.items()) + list(CLI_OPTS.items()):
        left = f"--{name}" + (f" {meta}" if meta else "")
        f.write(f"  {left:<22} {text}\n")
    f.write("\nDefaults: --server 127.0.0.1:2525 --emails 1000 (with --duration: no cap) --concurrency 10\n"
            "  --recipients 1 --events 1000 --body-bytes 0 --per-session 1 --chain 1 --blocking 0\n"
            "  --retries 5 --timeout 30s --seed 1 --rate 0 --arrivals constant --max-queue 0\n"
            "  --warmup 0 --duration 0\n"
            "\nThe SMTP exchange is the C models' (lib/smtp_client.c): EHLO, then MAIL, RCPT...\n"
            "and DATA in one write when the server offers PIPELINING, the text and its final\n"
            "\".\" in one write, no RSET after a delivered message, QUIT after the last one.\n"
            "An email holds its --concurrency slot until its connection is closed (the 221\n"
            "read), or until QUIT is sent with --quit-background; its latency ends at the\n"
            "reply to its final \".\".  --duration/--warmup: only emails ending in the window\n"
            "make the rate, the latency figures and the CPU per email (the process CPU\n"
            "over the window: Python's start-up and imports are not in it).\n"
            "--rate R (open loop): chain c is due at its intended start (lib/arrivals.c's\n"
            "schedule: constant spacing --chain/R, or Poisson gaps from the seed), waits in a\n"
            "FIFO until a slot is free (--max-queue N bounds it: an arrival finding N waiting\n"
            "is shed), email k of it not before the chain's start + k/R; latency from the\n"
            "intended start, service_p*_us from the actual start.\n"
            "\nNot supported here (exit 2): --threads (any value: one reactor thread), --cpu-per-email.\n"
            "A profile's server keys are accepted and ignored, as by the C models; flags\n"
            "override the profile's keys.\n"
            "Values: durations 250us, 10ms, 1.5s; sizes 512, 100KB, 2MB; counts 1000 or 10k.\n"
            "Each option may be given once (a second one is an error: \"--emails given twice\").\n"
            "--server HOST:PORT: HOST is an IPv4 address, read as written (no octal or\n"
            "short forms), or a host name, looked up once at start; the host must be named\n"
            "(\":2525\" is refused); no IPv6.  PORT is 1 to 65535, digits only.\n"
            "Exit status: 0 all delivered, 3 some failed, 2 usage error.\n")


def apply(o, name, value, where):
    """Stores --name value (from argv, where = "", or a profile, where =
    "FILE:LINE: ") or raises UsageError; the messages are lib/cli.c's."""
    if name in UNSUPPORTED:
        if where:
            raise UsageError(f"{where}'{name} = {value}' is not used by {PROG}, which {UNSUPPORTED[name]}")
        raise UsageError(f"--{name} {value}: not used by {PROG}, which {UNSUPPORTED[name]}")
    kind, lo, hi, meta, _ = MODEL_OPTS.get(name) or CLI_OPTS[name]
    try:
        o[name] = convert(kind, lo, hi, value, meta)
    except ValueError:
        if where:
            raise UsageError(f"{where}bad value '{value}' for '{name}': "
                             f"expected {expected(kind, lo, hi, meta)}") from None
        raise UsageError(f"--{name}: bad value '{value}': expected {expected(kind, lo, hi, meta)}") from None


def load_profile(o, path):
    """--profile FILE, as lib/cli.c's check_readable + lib/profile.c."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise UsageError(f"--profile: '{path}' is a directory") from None
    except OSError as e:
        raise UsageError(f"--profile: cannot read '{path}': {e.strerror}") from None
    if b"\0" in data:
        raise UsageError(f"{path}: not a text file")
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    seen = {}                               # key: the line it was first set on
    for n, line in enumerate(lines, 1):
        for i, c in enumerate(line):       # a '#' after whitespace starts a comment
            if c == "#" and (i == 0 or line[i - 1] in " \t"):
                line = line[:i]
                break
        line = line.strip(" \t\r")
        if not line:
            continue
        key, eq, value = line.partition("=")
        key, value = key.strip(" \t"), value.strip(" \t")
        where = f"{path}:{n}: "
        if not eq:
            raise UsageError(f"{where}expected 'key = value', got '{line}'")
        if not key:
            raise UsageError(f"{where}missing key before '='")
        if not value:
            raise UsageError(f"{where}missing value for '{key}'")
        if key in seen:
            raise UsageError(f"{where}'{key}' set twice (first on line {seen[key]})")
        seen[key] = n
        if key in SERVER_KEYS:
            k = SERVER_KEYS[key]
            ok = value in k if isinstance(k, tuple) else True
            try:
                if ok and not isinstance(k, tuple):
                    {"duration": parse_duration, "prob": parse_prob, "count": parse_count,
                     "size": parse_size}[k](value)
            except ValueError:
                ok = False
            if not ok:
                raise UsageError(f"{where}bad value '{value}' for '{key}'")
        elif key in CLI_OPTS:
            raise UsageError(f"{where}'{key}' is a command-line option, not allowed in a profile")
        elif key in MODEL_OPTS or key in UNSUPPORTED:
            apply(o, key, value, where)
        else:
            raise UsageError(f"{where}unknown key '{key}'")


def split_args(argv):
    """[(name, value)] from argv; value None for flags; 'help' ends parsing.
    Each option may appear once, as in lib/cli.c."""
    out, i, given = [], 0, {}
    while i < len(argv):
        a = argv[i]
        if a == "-h":
            return [("help", None)]
        if not a.startswith("--"):
            raise UsageError(f"unexpected argument '{a}'")
        name, eq, value = a[2:].partition("=")
        known = name in MODEL_OPTS or name in CLI_OPTS or name in UNSUPPORTED
        if not known:
            hint = (" (a server setting: put it in a profile or give it to smtp-mock)"
                    if name in SERVER_KEYS else "")
            raise UsageError(f"unknown option '{a}'{hint}")
        if name == "help":
            return [("help", None)]
        if (MODEL_OPTS.get(name) or CLI_OPTS.get(name) or ("",))[0] == "flag":
            if eq:
                raise UsageError(f"--{name} takes no value (got '{value}')")
            out.append((name, None))
        elif eq:
            out.append((name, value))
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            i += 1
            out.append((name, argv[i]))
        elif i + 1 < len(argv):
            raise UsageError(f"--{name}: missing value (got the option '{argv[i + 1]}')")
        else:
            raise UsageError(f"--{name}: missing value")
        value = out[-1][1]
        if name in given and value is None:
            raise UsageError(f"--{name} given twice")
        if name in given:
            raise UsageError(f"--{name} given twice ('{given[name]}' and '{value}')")
        given[name] = value
        i += 1
    return out


def parse_options(argv):
    """The options as a dict, None for --help (printed), or UsageError."""
    o = defaults()
    args = split_args(argv)
    if args and args[0][0] == "help":
        usage(sys.stdout)
        return None
    profiles = [v for k, v in args if k == "profile"]      # one at most (split_args)
    if profiles:
        if not profiles[0]:
            raise UsageError("--profile: bad file name ''")
        o["profile"] = profiles[0]
        load_profile(o, profiles[0])
    for name, value in args:
        if value is None:                   # a flag: --progress, --quit-background
            o[name] = True
        elif name != "profile":
            apply(o, name, value, "")
    o["host"], o["port"] = resolve_server(o, any(k == "server" for k, _ in args))
    if o["start-at"] and o["start-at"] > int(time.time() * 1000) + 3600 * 1000:
        raise UsageError(f"--start-at {o['start-at']} is more than an hour from now")
    if o["emails"] == 0:                    # not given: a run sized by time has no cap
        o["emails"] = 1_000_000_000 if o["duration"] > 0 else 1000
    check_writable(o["json"])
    return o


def check_writable(path):
    """--json is written at the end: refuse at the start a path that cannot be."""
    if not path or path == "-":
        return
    if os.path.isdir(path):
        raise UsageError(f"--json: '{path}' is a directory")
    target = path if os.path.exists(path) else (os.path.dirname(path) or ".")
    if not os.access(target, os.W_OK):
        raise UsageError(f"--json: cannot write '{path}': "
                         f"{'Permission denied' if os.path.exists(target) else 'No such file or directory'}")


# ---------------------------------------------------------------- measurement (lib/stats.c)

def now():
    return time.monotonic()


def proc_status(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


class Window:
    """The steady-state window, as lib/stats.c's stats_window_*.  start() is
    called when the emails start: the window opens at start + warmup (in a
    closed loop, once a round of the emails in flight has ended) and closes
    at its opening + duration, or later: a closed loop's window is extended
    until three rounds' worth (3 x in flight, at most 1,000) have ended in it, up to 10 x its
    length (at 1,000 in flight a round can outlast a short window; an open
    loop's is never extended).  Emails that end inside it make the figures;
    the process CPU time is read when it opens and when it closes (poll_at
    from the Mailer's timers at those instants and from every email's end),
    so Python's start-up, the imports and the drain after the window are
    not in the CPU per email."""

    def __init__(self):
        self.open_at, self.close_at, self.limit_at = 0.0, math.inf, math.inf
        self.duration = 0.0
        self.state = 0                  # 0 not open yet, 1 open, 2 closed
        self.t_open = self.t_close = self.cpu_open = self.cpu_close = 0.0
        self.total = self.count = self.min_count = self.round = 0
        self.satisfied_at = 0.0         # when the round in the window completed (0: not yet)
        self.closed, self.closed_at = False, -1.0

    def start(self, o, start):
        self.open_at = start + o["warmup"]
        self.duration = o["duration"]
        self.close_at = self.open_at + o["duration"] if o["duration"] > 0 else math.inf
        self.limit_at = self.open_at + 10 * o["duration"] if o["duration"] > 0 else math.inf
        self.total = self.count = 0
        self.min_count = (0 if o["rate"] > 0 or o["duration"] <= 0
                          else min(3 * o["concurrency"], 1000))
        self.round = (0 if o["duration"] <= 0 else 1 if o["rate"] > 0     # to end before it opens
                      else min(o["concurrency"], 1000))
        self.satisfied_at = self.open_at if self.min_count == 0 else 0.0
        self.closed, self.closed_at = False, -1.0
        self.state = 0
        self.poll_at(now())

    def closing_time(self):
        """When the window ends, once it has closed."""
        sat = self.satisfied_at
        return self.limit_at if sat == 0 else max(sat, self.close_at)

    def closes(self, t):
        """Close it if its time has come; true once closed."""
        if self.closed:
            return True
        if t < self.close_at or (self.count < self.min_count and t < self.limit_at):
            return False
        self.closed, self.closed_at = True, self.closing_time()
        return True

    def may_start(self):
        """May another email start?  False once the window has closed."""
        return self.close_at == math.inf or not self.closes(now())

    def snapshot(self, t):
        if self.state == 0:
            self.t_open, self.cpu_open = t, time.process_time()
            if self.duration > 0:       # the window runs from when it opened
                self.close_at = t + self.duration
                self.limit_at = t + 10 * self.duration
        else:
            self.t_close, self.cpu_close = t, time.process_time()
        self.state += 1

    def poll_at(self, t):
        if self.state == 0 and t >= self.open_at and (
                self.total >= self.round or t >= self.open_at + 10 * self.duration):
            self.snapshot(t)
        elif self.state == 1 and self.close_at < math.inf and self.closes(t):
            self.snapshot(t)

    def next(self):
        """The next instant poll_at has work to do, or inf."""
        t = now()
        if self.state == 0:
            # Past open_at the warm-up waits for its round of emails (each
            # email's end polls): only the fallback is left, never a past time.
            w = self.open_at if t < self.open_at else self.open_at + 10 * self.duration
            return w if w > t else t + 0.01
        if self.state == 2 or self.close_at == math.inf:
            return math.inf
        return self.close_at if t < self.close_at else t + 0.01    # extended: look again soon

    def contains(self, t):
        """Inside: after the opening, and before the nominal end, or the
        moment the extension got its round of emails, or the limit."""
        if self.state == 0 or t < self.t_open:
            return False
        if self.closed:
            return t < (self.closed_at if self.closed_at >= 0 else self.closing_time())
        if self.satisfied_at > 0:
            return t < max(self.satisfied_at, self.close_at)
        return t < self.limit_at

    def count_end(self, t):
        """An email ended at t (delivered or failed): counts toward the rounds."""
        inside = self.contains(t)
        self.total += 1
        if inside:
            self.count += 1
            if self.count == self.min_count:
                self.satisfied_at = t + 1e-9    # just after: this email is inside
        self.poll_at(t)                 # after counting too: the warm-up's round may have just ended
        return inside

    def finish(self, t):
        """(window_s, cpu_window_s): the window as run, closed now if still open;
        the CPU per second between the snapshots times the window's length."""
        self.poll_at(t)
        if self.state == 0:
            self.snapshot(t)            # ended before the warm-up did: an empty window
        if self.state == 1:
            self.snapshot(t)            # ran out of emails before the window closed
        end = self.closed_at if self.closed and 0 <= self.closed_at < t else t
        window_s = end - self.t_open if end > self.t_open else 0.0
        span = self.t_close - self.t_open
        return window_s, (self.cpu_close - self.cpu_open) / span * window_s if span > 0 else 0.0


class RunStats:
    """stats_run: counters, exact latency samples (emails ending in the
    window only), failure reasons; in the open loop also the service times
    (from the actual start), the start lateness and the schedule's counts."""

    def __init__(self, emails):
        self.emails, self.delivered, self.failed, self.retries = emails, 0, 0, 0
        self.connections, self.digest = 0, 0
        self.latencies_us = []          # from the intended start (open loop) or the start
        self.service_us = []            # from the actual start (stats_run_service)
        self.lateness_us = []           # actual start - intended, starts in the window
        self.behind = 0                 # emails started more than 1 ms late (all)
        self.scheduled = self.shed = self.pending = self.peak_queue = 0     # mailer_arrivals_end
        self.reasons = {}
        self.threads_peak = 0
        self.window = Window()
        self.window_delivered = self.window_failed = 0
        self.window_first = self.window_last = 0.0  # first and last delivery in the window
        self.sample_threads()
        self.start_s = now()

    def sample_threads(self):
        self.threads_peak = max(self.threads_peak, proc_status("Threads"))

    def record_delivered(self, hash_, latency_us):
        t = now()
        self.window.poll_at(t)
        self.delivered += 1
        self.digest = (self.digest + hash_) & M64
        if self.window.count_end(t):
            self.window_delivered += 1
            if self.window_first == 0:
                self.window_first = t
            self.window_last = t
            self.latencies_us.append(latency_us)

    def record_service(self, service_us):
        """stats_run_service: a delivered email's time from its actual start."""
        if self.window.contains(now()):
            self.service_us.append(service_us)

    def record_started(self, intended, actual):
        """stats_run_started (open loop): how late the email started."""
        late = actual - intended
        if self.window.contains(actual):        # the warm-up's start-up is not the schedule's
            self.lateness_us.append(int(late * 1e6) if late > 0 else 0)
        if late > 1e-3:
            self.behind += 1

    def record_failed(self, reason):
        t = now()
        self.window.poll_at(t)
        self.failed += 1
        if self.window.count_end(t):
            self.window_failed += 1
        reason = reason[:79]
        if reason not in self.reasons and len(self.reasons) >= 31:
            reason = "other"
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def per_second(self):
        """The rate in the window: deliveries between its first and last over
        that span (3 to 99), else over the window's length (stats.c)."""
        span, n = self.window_last - self.window_first, self.window_delivered
        if 3 <= n < 100 and span > 0 and span >= 0.8 * self.window_s * (n - 1) / n:
            return (n - 1) / span       # spread over the window, not in bursts
        return self.window_delivered / self.window_s if self.window_s > 0 else 0.0

    def finish(self):
        t = now()
        self.wall_s = t - self.start_s
        self.window_s, self.cpu_window_s = self.window.finish(t)
        if self.window.close_at < math.inf:     # sized by time: the emails it got to
            self.emails = self.delivered + self.failed
        self.sample_threads()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu_user_s, self.cpu_sys_s = ru.ru_utime, ru.ru_stime
        hwm = proc_status("VmHWM")
        self.max_rss_kb = hwm if hwm >= 0 else ru.ru_maxrss
        self.ctx_voluntary, self.ctx_involuntary = ru.ru_nvcsw, ru.ru_nivcsw


def percentile(sorted_us, q):
    """Nearest rank over the sorted samples: the smallest with >= q% at or below it."""
    n = len(sorted_us)
    if n == 0:
        return 0
    rank = max(1, -(-int(round(q * 10)) * n // 1000))     # ceil(n * q / 100), q in 0.1 steps
    return sorted_us[min(rank, n) - 1]


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD"],
                               capture_output=True, timeout=10).returncode != 0
        return (rev or "unknown") + ("-dirty" if rev and dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def share_above(sorted_us, us):
    """The share of the samples above us (hist_share_above, exact)."""
    n = len(sorted_us)
    return (n - bisect.bisect_right(sorted_us, us)) / n if n else 0.0


def hist_json(samples):
    """The samples as lib/hist.c's histogram JSON (hist_fprint_json: the
    same log-linear buckets, exact below 256 us, 128 per power of two), so
    that scripts/merge-runs can merge this model's runs like the C models'."""
    counts = {}
    for v in samples:
        v = int(v)
        if v < 256:
            i = v
        elif v > 0xFFFFFFFF:
            i = 256 + 24 * 128 - 1
        else:
            e = v.bit_length() - 1
            i = 256 + (e - 8) * 128 + ((v >> (e - 7)) & 127)
        counts[i] = counts.get(i, 0) + 1
    ints = [int(v) for v in samples]
    return {"scheme": "mb-loglinear/1", "linear": 256, "sub": 128, "count": len(ints),
            "sum": sum(ints), "min": min(ints) if ints else 0, "max": max(ints) if ints else 0,
            "overflow": sum(1 for v in ints if v > 0xFFFFFFFF),
            "buckets": [[i, counts[i]] for i in sorted(counts)]}


def run_json(o, s):
    import twisted
    lat, svc, late = sorted(s.latencies_us), sorted(s.service_us), sorted(s.lateness_us)
    u = os.uname()
    return {
        "schema": "mailbench.run/1", "model": MODEL,
        "params": {"server": o["server"], "emails": o["emails"], "concurrency": o["concurrency"],
                   "threads": 1, "recipients": o["recipients"], "events": o["events"],
                   "body_bytes": o["body-bytes"], "per_session": o["per-session"],
                   "chain": o["chain"], "blocking_us": round(o["blocking"] * 1e6),
                   "retries": o["retries"], "timeout_s": o["timeout"], "seed": o["seed"],
                   "rate": o["rate"], "warmup_s": o["warmup"], "duration_s": o["duration"],
                   "quit_background": o["quit-background"], "arrivals": o["arrivals"],
                   "max_queue": o["max-queue"], "prebuild": False, "reactors": 1,
                   "profile": o["profile"]},
        "emails": s.emails, "delivered": s.delivered, "failed": s.failed, "retries": s.retries,
        "failure_reasons": s.reasons, "connections": s.connections,
        "wall_s": round(s.wall_s, 6),
        "emails_per_s": round(s.per_second(), 3),
        "p50_us": percentile(lat, 50), "p90_us": percentile(lat, 90),
        "p99_us": percentile(lat, 99), "p999_us": percentile(lat, 99.9),
        "max_us": lat[-1] if lat else 0,
        "mean_us": round(sum(lat) / len(lat), 1) if lat else 0.0,
        "latency_mode": "open" if o["rate"] > 0 else "closed",
        "cpu_user_s": round(s.cpu_user_s, 6), "cpu_sys_s": round(s.cpu_sys_s, 6),
        "max_rss_kb": s.max_rss_kb, "ctx_voluntary": s.ctx_voluntary,
        "ctx_involuntary": s.ctx_involuntary, "threads_peak": s.threads_peak,
        "digest": f"{s.digest:016x}",
        "window_s": round(s.window_s, 6), "window_delivered": s.window_delivered,
        "window_failed": s.window_failed, "cpu_window_s": round(s.cpu_window_s, 6),
        "cpu_per_email_us": round(s.cpu_window_s * 1e6 / (s.window_delivered + s.window_failed), 3)
        if s.window_delivered + s.window_failed else 0.0,
        "service_p50_us": percentile(svc, 50), "service_p99_us": percentile(svc, 99),
        "service_p999_us": percentile(svc, 99.9),
        "scheduled": s.scheduled, "shed": s.shed, "pending": s.pending, "peak_queue": s.peak_queue,
        "behind_schedule": s.behind, "start_lateness_p99_us": percentile(late, 99),
        "max_lag_us": late[-1] if late else 0,
        "over_10x_median_share": round(share_above(lat, 10 * percentile(lat, 50)), 6),
        # No maybe_delivered / maybe_digest / maybe_hashes: twisted.mail does
        # not say whether a lost connection came after the final "." (README).
        "latency_hist": hist_json(lat), "service_hist": hist_json(svc),
        "lateness_hist": hist_json(late),
        "git_rev": git_rev(),
        "machine": {"cores": os.cpu_count(), "kernel": f"{u.sysname} {u.release}",
                    "compiler": f"CPython {platform.python_version()}, Twisted {twisted.__version__}"},
    }


def write_json(obj, path):
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.rename(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise SystemExit(f"{PROG}: cannot write {path}: {e.strerror}") from None


def fmt_us(us):
    if us == 0:
        return "0"
    if us < 1000:
        return f"{us}us"
    return f"{us / 1000:.4g}ms" if us < SEC else f"{us / SEC:.4g}s"


def print_summary(o, s):
    lat = sorted(s.latencies_us)
    rate = s.per_second()
    mode = "open" if o["rate"] > 0 else "closed"
    sys.stderr.write(f"{PROG}: {s.delivered}/{s.emails} delivered, {s.failed} failed, "
                     f"{s.retries} retries, {s.wall_s:.3f}s, {rate:.1f} emails/s\n")
    sys.stderr.write(f"{PROG}: latency p50 {fmt_us(percentile(lat, 50))} p99 {fmt_us(percentile(lat, 99))} "
                     f"max {fmt_us(lat[-1] if lat else 0)} ({mode} loop); cpu {s.cpu_user_s:.2f}s user "
                     f"{s.cpu_sys_s:.2f}s sys; {s.max_rss_kb / 1024:.1f} MB RSS; {s.threads_peak} threads\n")
