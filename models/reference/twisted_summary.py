#!/usr/bin/python3
"""twisted_summary.py — the email-summary workload sent with real Twisted.

The reference peer of the C models: the same workload (tests/golden/workload/
reference.py renders byte-identical messages for a given seed and email
number), the same options (the subset that applies), the same retry policy as
lib/retry.c and the same "mailbench.run/1" JSON, model "twisted".  Run it with
/usr/bin/python3 (Debian's python3-twisted); bin/summary-twisted does.

It is written the way a Twisted user writes a bulk sender, and reads side by
side with lib/async_mailer.c:

  * one connection is an ESMTPClient subclass (twisted.mail.smtp), driven
    through the documented multi-message hooks getMailFrom / getMailTo /
    getMailData / sentMail, so that a session can carry --per-session emails;
    with --per-session 1 its conversation is that of smtp.sendmail (EHLO,
    MAIL, RCPT, DATA, body, ".", RSET, QUIT), minus the TLS context sendmail
    builds per message and plus TCP_NODELAY (see /work/shared DESIGN pitfalls);
  * concurrency: a DeferredSemaphore of --concurrency tokens; the unit that
    holds a token is a chain of --chain emails, each email's Deferred chained
    on the previous one's;
  * temporary failures (4xx, a lost connection, a timeout) are retried with
    bounded exponential backoff and equal jitter (base 10 ms, cap 1 s, at most
    --retries) via task.deferLater; 5xx are permanent and counted by reason;
  * every connect + greeting and every message transaction is bounded by
    --timeout with Deferred.addTimeout (the Deferreds' cancellers abort the
    connection, as sendmail's does).

Twisted's own retries (the factories' retries=5, immediate reconnects, no
back-off, 4xx after MAIL/RCPT/DATA never retried) and its missing default
timeout are not used: see README.md, "The Twisted reference".

Exit status: 0 all delivered, 3 some failed, 2 usage error, 1 internal error.
"""
import io
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "golden", "workload"))
import reference as workload  # noqa: E402  (the Python port of workloads/summary.c)

PROG = "summary-twisted"
MODEL = "twisted"
FROM = "reports@mailbench.test"         # WORKLOAD_FROM
EHLO_NAME = "client.mailbench.test"     # what lib/async_mailer.c says
RETRY_BASE_S, RETRY_CAP_S = 0.010, 1.0  # RETRY_POLICY_DEFAULT
M64 = (1 << 64) - 1

# ---------------------------------------------------------------- digest (lib/digest.c)

FNV_OFFSET, FNV_PRIME = 0xcbf29ce484222325, 0x100000001b3


def digest_hash(data):
    """FNV-1a over the bytes, then splitmix64's finaliser: digest_hash()."""
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & M64
    return workload.mix64(h)


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
    "rate": ("count", 0, 0, "0", "open loop is not implemented here: only 0 (closed loop)"),
    "quit-background": ("flag", 0, 0, None,
                        "free an email's slot when QUIT is sent (default: when the connection is closed)"),
}
CLI_OPTS = {
    "profile": ("path", 0, 0, "FILE", "read settings from FILE first (flags override it)"),
    "json": ("path", 0, 0, "FILE", "write the run's JSON to FILE (- for stdout)"),
    "progress": ("flag", 0, 0, None, "print progress on stderr (default: if a TTY)"),
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
}


def expected(kind, lo, hi):
    if kind == "count":
        return f"a whole number from {lo} to {hi}"
    if kind == "size":
        return f"a size in bytes up to {hi >> 20}MB (e.g. 512, 100KB, 2MB)"
    if kind == "duration":
        f = lambda us: f"{us // SEC}s" if us >= SEC and us % SEC == 0 else ("0" if us == 0 else f"{us}us")  # noqa: E731
        return f"a duration from {f(lo)} to {f(hi)} with its unit (e.g. 250us, 10ms, 1.5s)"
    if kind == "hostport":
        return ("HOST:PORT with HOST an IPv4 address such as 127.0.0.1 or a host name "
                "(not empty, no IPv6) and PORT a number from 1 to 65535")
    return "a file name"


def convert(kind, lo, hi, value):
    """The value of an option, or ValueError."""
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
            "quit-background": False, "profile": None, "json": None, "progress": False}


def usage(f):
    f.write(f"Usage: {PROG} [OPTIONS]\n"
            "Send emails summarising synthetic application activity to an SMTP server\n"
            "and measure the run (model: twisted, the Python/Twisted reference).\n\nOptions:\n")
    for name, (kind, lo, hi, meta, text) in list(MODEL_OPTS.items()) + list(CLI_OPTS.items()):
        left = f"--{name}" + (f" {meta}" if meta else "")
        f.write(f"  {left:<22} {text}\n")
    f.write("\nDefaults: --server 127.0.0.1:2525 --emails 1000 (with --duration: no cap) --concurrency 10\n"
            "  --recipients 1 --events 1000 --body-bytes 0 --per-session 1 --chain 1 --blocking 0\n"
            "  --retries 5 --timeout 30s --seed 1 --rate 0 --warmup 0 --duration 0\n"
            "\nThe SMTP exchange is the C models' (lib/smtp_client.c): EHLO, then MAIL, RCPT...\n"
            "and DATA in one write when the server offers PIPELINING, the text and its final\n"
            "\".\" in one write, no RSET after a delivered message, QUIT after the last one.\n"
            "An email holds its --concurrency slot until its connection is closed (the 221\n"
            "read), or until QUIT is sent with --quit-background; its latency ends at the\n"
            "reply to its final \".\".  --duration/--warmup: only emails ending in the window\n"
            "make the rate, the latency figures and the CPU per email (the process CPU\n"
            "over the window: Python's start-up and imports are not in it).\n"
            "\nNot supported here (exit 2): --threads (any value: one reactor thread),\n"
            "--rate other than 0.  A profile's server keys are accepted and ignored, as by\n"
            "the C models; flags override the profile's keys.\n"
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
    if name == "rate":
        try:
            if parse_count(value) != 0:
                raise ValueError(value)
        except ValueError:
            raise UsageError(f"{where}--rate {value}: the open loop is not implemented in "
                             f"{PROG} (only --rate 0, the closed loop)") from None
        o["rate"] = 0
        return
    kind, lo, hi, _, _ = MODEL_OPTS.get(name) or CLI_OPTS[name]
    try:
        o[name] = convert(kind, lo, hi, value)
    except ValueError:
        if where:
            raise UsageError(f"{where}bad value '{value}' for '{name}': "
                             f"expected {expected(kind, lo, hi)}") from None
        raise UsageError(f"--{name}: bad value '{value}': expected {expected(kind, lo, hi)}") from None


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


class RunStats:
    """mb_run_stats: counters, exact latency samples, failure reasons."""

    def __init__(self, emails):
        self.emails, self.delivered, self.failed, self.retries = emails, 0, 0, 0
        self.connections, self.digest = 0, 0
        self.latencies_us = []
        self.reasons = {}
        self.threads_peak = 0
        self.sample_threads()
        self.start_s = now()

    def sample_threads(self):
        self.threads_peak = max(self.threads_peak, proc_status("Threads"))

    def record_delivered(self, hash_, latency_us):
        self.delivered += 1
        self.digest = (self.digest + hash_) & M64
        self.latencies_us.append(latency_us)

    def record_failed(self, reason):
        self.failed += 1
        reason = reason[:79]
        if reason not in self.reasons and len(self.reasons) >= 31:
            reason = "other"
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def finish(self):
        self.wall_s = now() - self.start_s
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


def run_json(o, s):
    import twisted
    lat = sorted(s.latencies_us)
    u = os.uname()
    return {
        "schema": "mailbench.run/1", "model": MODEL,
        "params": {"server": o["server"], "emails": o["emails"], "concurrency": o["concurrency"],
                   "threads": 1, "recipients": o["recipients"], "events": o["events"],
                   "body_bytes": o["body-bytes"], "per_session": o["per-session"],
                   "chain": o["chain"], "blocking_us": round(o["blocking"] * 1e6),
                   "retries": o["retries"], "timeout_s": o["timeout"], "seed": o["seed"],
                   "rate": 0, "profile": o["profile"]},
        "emails": s.emails, "delivered": s.delivered, "failed": s.failed, "retries": s.retries,
        "failure_reasons": s.reasons, "connections": s.connections,
        "wall_s": round(s.wall_s, 6),
        "emails_per_s": round(s.delivered / s.wall_s, 3) if s.wall_s > 0 else 0.0,
        "p50_us": percentile(lat, 50), "p90_us": percentile(lat, 90),
        "p99_us": percentile(lat, 99), "p999_us": percentile(lat, 99.9),
        "max_us": lat[-1] if lat else 0,
        "mean_us": round(sum(lat) / len(lat), 1) if lat else 0.0,
        "latency_mode": "closed",
        "cpu_user_s": round(s.cpu_user_s, 6), "cpu_sys_s": round(s.cpu_sys_s, 6),
        "max_rss_kb": s.max_rss_kb, "ctx_voluntary": s.ctx_voluntary,
        "ctx_involuntary": s.ctx_involuntary, "threads_peak": s.threads_peak,
        "digest": f"{s.digest:016x}",
        # No maybe_delivered / maybe_digest / maybe_hashes: twisted.mail does
        # not say whether a lost connection came after the final "." (README).
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
    rate = s.delivered / s.wall_s if s.wall_s > 0 else 0.0
    sys.stderr.write(f"{PROG}: {s.delivered}/{s.emails} delivered, {s.failed} failed, "
                     f"{s.retries} retries, {s.wall_s:.3f}s, {rate:.1f} emails/s\n")
    sys.stderr.write(f"{PROG}: latency p50 {fmt_us(percentile(lat, 50))} p99 {fmt_us(percentile(lat, 99))} "
                     f"max {fmt_us(lat[-1] if lat else 0)} (closed loop); cpu {s.cpu_user_s:.2f}s user "
                     f"{s.cpu_sys_s:.2f}s sys; {s.max_rss_kb / 1024:.1f} MB RSS; {s.threads_peak} threads\n")


# ---------------------------------------------------------------- the SMTP session

def build_classes():
    """The Twisted classes, defined once Twisted is imported (so --help and
    usage errors work, and say so, without it)."""
    from twisted.internet import error, protocol
    from twisted.internet.defer import Deferred
    from twisted.mail import smtp

    class SessionLost(error.ConnectionLost):
        """The connection ended while a reply was awaited; `stage` names the
        command it was awaited for, as the C client's reasons do."""

        def __init__(self, stage, reason):
            error.ConnectionLost.__init__(self, f"{stage}: connection lost ({reason.getErrorMessage()})")
            self.stage = stage

    class Session(smtp.ESMTPClient):
        """One SMTP connection carrying up to --per-session emails.

        ESMTPClient calls getMailFrom() after EHLO and after each RSET; when
        no email is waiting we park there (self.parked) until send() gives
        one, and getMailFrom() returning None means QUIT.  The Deferreds:
        `ready` fires with the session once EHLO is answered; each send()
        fires when the reply to "." is 2xx, or fails with SMTPDeliveryError
        (the server's code) or the reason the connection was lost."""
        requireAuthentication = False       # as smtp.sendmail() sets them
        requireTransportSecurity = False
        heloFallback = True

        def __init__(self, factory):
            smtp.ESMTPClient.__init__(self, None, None, EHLO_NAME, logsize=8)
            self.factory = factory
            self.ready = factory.ready      # fired by smtpState_from the first time
            self.current = None             # (email, Deferred) in transaction
            self.waiting = None             # (email, Deferred) given while RSET is outstanding
            self.parked = False             # in smtpState_from with nothing to send
            self.closing = False            # QUIT at the next chance; never reused
            self.lost = False               # connectionLost seen
            self.sent = 0                   # transactions ended on this connection
            self.stage = "greeting"         # the reply awaited: the last command sent

        def connectionMade(self):
            # Twisted writes the body and the final "." separately: without
            # TCP_NODELAY, Nagle + delayed ACK add ~40 ms per email.
            self.transport.setTcpNoDelay(True)
            self.factory.run.live += 1
            smtp.ESMTPClient.connectionMade(self)

        # -- the pool's view
        def usable(self):
            return self.parked or (self.current is None and self.waiting is None
                                   and not self.closing and not self.lost and self.ready is None)

        def send(self, email):
            d = Deferred(lambda _: self.abort())
            self.waiting = (email, d)
            if self.parked:
                self.parked = False
                smtp.ESMTPClient.smtpState_from(self, 250, b"")
            return d

        def quit(self):
            self.closing = True
            if self.parked:
                self.parked = False
                self._disconnectFromServer()

        def abort(self):
            self.closing = True
            if not self.lost:
                self.transport.abortConnection()

        # -- ESMTPClient's hooks
        def sendLine(self, line):
            word = line.split(b" ", 1)[0].split(b":", 1)[0]
            self.stage = "end of data" if line in (b".", b"\r\n.") else word.decode("ascii", "replace")
            smtp.ESMTPClient.sendLine(self, line)

        def smtpState_from(self, code, resp):
            if self.ready is not None:      # EHLO answered: the session is open
                d, self.ready = self.ready, None
                self.parked = True
                d.callback(self)
            elif self.waiting is None and not self.closing:
                self.parked = True
            else:
                smtp.ESMTPClient.smtpState_from(self, code, resp)

        def getMailFrom(self):
            if self.waiting is None:
                return None                 # QUIT
            self.current, self.waiting = self.waiting, None
            return FROM

        def getMailTo(self):
            return self.current[0].rcpt

        def getMailData(self):
            return io.BytesIO(self.current[0].wire)

        def sentMail(self, code, resp, numOk, addresses, log):
            (email, d), self.current = self.current, None
            self.sent += 1
            if code in smtp.SUCCESS:
                d.callback(email)
                return
            if numOk == 0 and addresses:    # "No recipients accepted": the RCPT's reply
                code, resp = addresses[-1][1], addresses[-1][2]
            d.errback(smtp.SMTPDeliveryError(code, resp, None, addresses))

        def sendError(self, exc):
            self.closing = True
            smtp.ESMTPClient.sendError(self, exc)   # QUIT, or drop the connection
            self.fail_pending(exc)

        def connectionLost(self, reason):
            smtp.ESMTPClient.connectionLost(self, reason)
            self.lost = self.closing = True
            self.parked = False
            self.factory.run.connection_closed()
            self.fail_pending(SessionLost(self.stage, reason))

        def fail_pending(self, why):
            for pending in (self.ready, self.current and self.current[1], self.waiting and self.waiting[1]):
                if pending is not None and not pending.called:
                    pending.errback(why)
            self.ready = self.current = self.waiting = None

    class SessionFactory(protocol.ClientFactory):
        """One connection attempt; `ready` is its Deferred (see open_session)."""

        def __init__(self, run, ready):
            self.run, self.ready, self.session = run, ready, None
            self.cancelled = False      # the canceller ran: CancelledError wins

        def buildProtocol(self, addr):
            self.session = Session(self)
            return self.session

        def clientConnectionFailed(self, connector, reason):
            if not self.cancelled and not self.ready.called:
                self.ready.errback(reason)

    def open_session(run):
        """A Deferred firing with a greeted Session; cancelling it aborts the
        connection (or the connect), as smtp.sendmail()'s canceller does."""
        def cancel(_):
            factory.cancelled = True
            if factory.session is not None:
                factory.session.abort()
            elif connector.state == "connecting":
                connector.stopConnecting()
        ready = Deferred(cancel)
        factory = SessionFactory(run, ready)
        connector = run.reactor.connectTCP(run.o["host"], run.o["port"], factory,
                                           timeout=run.o["timeout"])
        return ready

    return smtp, error, open_session


# ---------------------------------------------------------------- the run (lib/async_mailer.c)

class Email:
    """One built email: what the transaction needs and what the stats record."""
    __slots__ = ("index", "rcpt", "wire", "hash")


class Job:
    """One email in progress (struct async_job)."""
    __slots__ = ("index", "t0", "attempt", "email", "session")

    def __init__(self, index):
        self.index, self.t0, self.attempt, self.email, self.session = index, 0.0, 0, None, None


class Mailer:
    def __init__(self, o, reactor, stats):
        from twisted.internet import defer, task
        self.defer, self.task = defer, task
        self.smtp, self.error, self.open_session = build_classes()
        self.o, self.reactor, self.stats = o, reactor, stats
        self.rcpt = [f"ops+{i}@example.test".encode("ascii") for i in range(o["recipients"])]
        self.backoff = Backoff(o["seed"])
        self.sem = defer.DeferredSemaphore(o["concurrency"])
        self.nchains = -(-o["emails"] // o["chain"])
        self.next_chain = self.chains_done = self.done = 0
        self.idle = []          # sessions waiting for an email
        self.live = 0           # connections open
        self.finished = False   # every chain has ended

    # -- sessions
    def get_session(self):
        while self.idle:
            s = self.idle.pop()
            if s.usable():
                return self.defer.succeed(s)
            s.quit()            # the server closed it while it waited
        d = self.open_session(self)
        d.addTimeout(self.o["timeout"], self.reactor)
        d.addCallback(self.count_connection)
        return d

    def count_connection(self, session):
        self.stats.connections += 1
        return session

    def put_session(self, s):
        more = self.done + 1 < self.o["emails"]
        if s.usable() and s.sent < self.o["per-session"] and more:
            self.idle.append(s)
        elif not s.lost and not s.closing and s.current is None:
            s.quit()
        else:
            s.abort()

    def connection_closed(self):
        self.live -= 1
        if self.finished and self.live == 0 and self.reactor.running:
            self.reactor.stop()

    # -- one attempt, and the retries
    def attempt(self, job):
        d = self.get_session()
        d.addCallback(self.send_on_session, job)
        d.addBoth(self.release_session, job)
        d.addErrback(self.maybe_retry, job)
        return d

    def send_on_session(self, session, job):
        job.session = session
        d = session.send(job.email)
        d.addTimeout(self.o["timeout"], self.reactor)
        return d

    def release_session(self, result, job):
        if job.session is not None:
            s, job.session = job.session, None
            self.put_session(s)
        return result

    def permanent(self, failure):
        code = getattr(failure.value, "code", -1)
        return isinstance(code, int) and 500 <= code < 600

    def maybe_retry(self, failure, job):
        if self.permanent(failure) or job.attempt >= self.o["retries"]:
            return failure
        delay = self.backoff.delay(job.attempt)
        job.attempt += 1
        self.stats.retries += 1
        return self.task.deferLater(self.reactor, delay, self.attempt, job)

    # -- one email
    def build(self, job):
        o = self.o
        data = workload.render(o["seed"], job.index, o["events"], o["recipients"], o["body-bytes"], o["chain"])
        e = Email()
        e.index, e.rcpt, e.hash = job.index, self.rcpt, digest_hash(data)
        e.wire = data.replace(b"\r\n", b"\n")   # Twisted's sender turns "\n" into CRLF
        job.email = e
        return job

    def send_email(self, job):
        return self.attempt(job)

    def delivered(self, result, job):
        us = int((now() - job.t0) * 1e6)
        self.stats.record_delivered(job.email.hash, max(us, 0))
        return result

    def failed(self, failure, job):
        self.stats.record_failed(self.reason(failure))
        return None             # handled: the run goes on

    def email_end(self, result, job):
        self.done += 1
        return None

    def send_one(self, _, index):
        """One email, as callbacks on one Deferred; fires when it has ended."""
        job = Job(index)
        job.t0 = now()
        if self.o["blocking"] > 0:
            time.sleep(self.o["blocking"])      # stalls every connection: the point
        d = self.defer.maybeDeferred(self.build, job)
        d.addCallback(self.send_email)
        d.addCallbacks(self.delivered, self.failed, callbackArgs=(job,), errbackArgs=(job,))
        d.addBoth(self.email_end, job)
        return d

    # -- chains and the semaphore
    def run_chain(self, first, end):
        """Emails first..end-1, each started when the previous one has ended."""
        d = self.defer.succeed(None)
        for i in range(first, end):
            d.addCallback(self.send_one, i)
        return d

    def start_chain(self):
        if self.next_chain >= self.nchains:
            return
        c = self.next_chain
        self.next_chain += 1
        first = c * self.o["chain"]
        d = self.sem.run(self.run_chain, first, min(first + self.o["chain"], self.o["emails"]))
        d.addBoth(self.chain_end)

    def chain_end(self, result):
        self.chains_done += 1
        self.start_chain()
        if self.chains_done == self.nchains:
            self.finished = True
            while self.idle:
                self.idle.pop().quit()
            if self.live == 0:
                self.reactor.stop()
            else:   # a server that never answers QUIT must not keep us here
                self.reactor.callLater(self.o["timeout"], self.reactor.stop)
        return None

    def start(self):
        for _ in range(min(self.o["concurrency"], self.nchains)):
            self.start_chain()

    # -- failure reasons, in the C models' words where they have one
    def reason(self, failure):
        v, smtp, error = failure.value, self.smtp, self.error
        if isinstance(v, smtp.SMTPClientError) and v.code > 0:
            resp = v.resp.decode("utf-8", "replace") if isinstance(v.resp, bytes) else str(v.resp)
            return f"{v.code} {resp.splitlines()[0] if resp else ''}".rstrip()
        if isinstance(v, self.defer.TimeoutError):
            return f"Deferred timed out after {self.o['timeout']:g} seconds"
        if isinstance(v, error.ConnectionRefusedError):
            return "connect: Connection refused"
        if isinstance(v, (error.ConnectionDone, error.ConnectionLost)):
            return str(v.args[0]) if v.args else "connection lost"
        if isinstance(v, smtp.SMTPClientError):
            resp = v.resp.decode("utf-8", "replace") if isinstance(v.resp, bytes) else str(v.resp)
            return resp.splitlines()[0] if resp else type(v).__name__
        return f"{type(v).__name__}: {v}"


# ---------------------------------------------------------------- main

def raise_fd_limit(o):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < o["concurrency"] + 64:
        sys.stderr.write(f"{PROG}: warning: only {soft} file descriptors for --concurrency "
                         f"{o['concurrency']} (raise the hard limit: ulimit -Hn)\n")


def main(argv):
    try:
        import twisted  # noqa: F401  (first: without it nothing here can run)
    except ImportError as e:
        sys.stderr.write(f"{PROG}: Twisted is not available to {sys.executable} ({e}); "
                         "install python3-twisted\n")
        return 1
    try:
        o = parse_options(argv)
    except UsageError as e:
        sys.stderr.write(f"{PROG}: {e}\nTry '{PROG} --help'.\n")
        return 2
    if o is None:
        return 0
    from twisted.internet import reactor, task
    raise_fd_limit(o)
    stats = RunStats(o["emails"])
    m = Mailer(o, reactor, stats)
    progress = o["progress"] or sys.stderr.isatty()
    if progress:
        def tick():
            stats.sample_threads()
            el = now() - stats.start_s
            sys.stderr.write(f"\r{PROG}: delivered {m.done}/{o['emails']}, "
                             f"{m.done / el if el > 0 else 0:.0f}/s ")
        ticker = task.LoopingCall(tick)
        ticker.start(1.0, now=False)
    reactor.callWhenRunning(m.start)
    reactor.run(installSignalHandlers=True)
    stats.finish()
    if progress:
        sys.stderr.write("\n")
    lost = o["emails"] - stats.delivered - stats.failed
    if lost:        # stopped by a signal or the QUIT guard before every email ended
        for _ in range(lost):
            stats.record_failed("not sent: run interrupted")
    print_summary(o, stats)
    if o["json"]:
        write_json(run_json(o, stats), o["json"])
    return 0 if stats.failed == 0 else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
