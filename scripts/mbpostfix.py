"""mbpostfix — a private Postfix instance as the models' target, and the
verification of a run from Postfix's own log (issue 17).

The instance lives in one directory and touches nothing else:
    DIR/etc/main.cf, master.cf   its own config_directory
    DIR/queue                    queue_directory (Postfix makes the queue's subdirectories)
    DIR/data                     data_directory (owned by mail_owner)
    DIR/maillog                  maillog_file (postlogd: the log, no syslog needed)
It listens on one address (default 127.0.0.1, a free port), accepts mail for
the workload's recipients' domain (example.test: relay_domains) and hands
every message to the discard transport (relay_transport = default_transport
= discard:mailbench, mydestination empty, no local delivery): every message
goes through smtpd, cleanup (written to the queue, fsync'ed), qmgr and discard,
and nothing leaves the machine.  No chroot.  Started with
`postfix -c DIR/etc start` (as root: Postfix's master needs it), stopped with
`postfix -c DIR/etc stop`, then by the master's pid if it is still there.

Verification (verify()): from the log, for each queue ID its Message-ID
(cleanup: message-id=<...>), whether it was discarded (discard: status=sent)
and removed from the queue (qmgr: removed).  A run is verified when the
distinct Message-IDs Postfix discarded are the model's delivered emails
(plus at most its maybe-delivered ones), every one of them is a Message-ID
the run could have sent (<mb.SEED.INDEX@mailbench.test>, INDEX below its
emails, one SEED per load generator), none was accepted twice (without
retries), every queued message was discarded and removed, and
delivered + failed = emails.  There is no digest here: Postfix adds its
Received: header, so the bytes it holds are not the bytes sent.

Also a program: `python3 scripts/mbpostfix.py verify MAILLOG MODEL.json`.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

POSTFIX = os.environ.get("MAILBENCH_POSTFIX", "/usr/sbin/postfix")
DOMAIN = "example.test"             # the workload's recipients: ops+N@example.test
MSGID = re.compile(r"^<mb\.(\d+)\.(\d+)@mailbench\.test>$")
LINE = re.compile(r"postfix/([\w/-]+)\[\d+\]: ([0-9A-F]{6,}|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,}): (.*)$")

MAIN_CF = """# A private Postfix instance for mailbench (scripts/mbpostfix.py): every
# message is accepted and discarded; nothing leaves this machine.
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
daemon_directory = {daemon_directory}
command_directory = {command_directory}
shlib_directory = {shlib_directory}
meta_directory = {meta_directory}
mail_owner = {mail_owner}
setgid_group = {setgid_group}
myhostname = postfix.mailbench.test
mydomain = mailbench.test
myorigin = mailbench.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains = {domain}
relay_recipient_maps =
relay_transport = discard:mailbench
default_transport = discard:mailbench
inet_interfaces = {addr}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8 {addr}/32
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_peername_lookup = no
default_process_limit = {procs}
biff = no
"""

MASTER_CF = """# service type  private unpriv  chroot  wakeup  maxproc command
{addr}:{port} inet  n       -       n       -       {procs}     smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixError(Exception):
    """The instance could not be set up, started or stopped."""


def free_port(addr):
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def postfix_available():
    """None when a private instance can run here, else why not."""
    if not os.access(POSTFIX, os.X_OK):
        return f"{POSTFIX} is not installed (Debian package postfix)"
    if os.geteuid() != 0:
        return "a Postfix instance must be started as root (its master process needs it)"
    return None


class Postfix:
    """One private instance in workdir (see the module's header).  Same
    surface as mbharness.Server: .address, .port, .cmd, stop() -> stats."""

    def __init__(self, workdir, addr="127.0.0.1", port=0, procs=150, wait_idle_s=30, start=True):
        if not start:                       # an instance started before (from_dir)
            self.dir = os.path.join(workdir, "postfix")
            self.etc, self.log = os.path.join(self.dir, "etc"), os.path.join(self.dir, "maillog")
            self.wait_idle_s, self.version = wait_idle_s, ""
            self.master_pid = self._master_pid()
            return
        why = postfix_available()
        if why:
            raise PostfixError(why)
        self.dir = os.path.join(workdir, "postfix")
        self.etc, self.log = os.path.join(self.dir, "etc"), os.path.join(self.dir, "maillog")
        self.addr, self.port = addr, port or free_port(addr)
        self.address = f"{addr}:{self.port}"
        self.wait_idle_s = wait_idle_s
        defaults = self._defaults()
        for d in ("etc", "queue", "data"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        os.chmod(self.dir, 0o755)
        # Postfix's daemons run as mail_owner: they must reach data/ and the
        # queue, so every directory above must let others search it.
        up = os.path.dirname(self.dir)
        while True:
            if not os.stat(up).st_mode & 0o001:
                raise PostfixError(f"{up} is not searchable by others (mode "
                                   f"{oct(os.stat(up).st_mode & 0o777)}): Postfix's daemons, running "
                                   f"as {defaults['mail_owner']}, could not reach {self.dir}; "
                                   "use a directory under /tmp")
            if up == "/":
                break
            up = os.path.dirname(up)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(dir=self.dir, addr=addr, domain=DOMAIN, procs=procs, **defaults))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(addr=addr, port=self.port, procs=procs))
        shutil.chown(os.path.join(self.dir, "data"), defaults["mail_owner"])
        self.cmd = [POSTFIX, "-c", self.etc, "start"]
        self.version = defaults.get("mail_version", "")
        self.master_pid = None
        self.start()

    @staticmethod
    def _defaults():
        keys = ("daemon_directory", "command_directory", "shlib_directory", "meta_directory",
                "mail_owner", "setgid_group", "mail_version")
        p = subprocess.run([os.path.join(os.path.dirname(POSTFIX), "postconf"), "-d"] + list(keys),
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise PostfixError("postconf -d failed: " + p.stderr.strip()[-300:])
        return dict(line.split(" = ", 1) for line in p.stdout.splitlines() if " = " in line)

    def _postfix(self, action):
        return subprocess.run([POSTFIX, "-c", self.etc, action], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=60)

    def start(self):
        p = self._postfix("start")
        deadline = time.monotonic() + (15 if p.returncode == 0 else 0)
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.addr, self.port), timeout=1) as s:
                    s.recv(512)             # the 220 greeting
                break
            except OSError:
                time.sleep(0.1)
        else:
            self.stop()
            raise PostfixError(f"postfix -c {self.etc} start: not listening on {self.address} "
                               f"(exit {p.returncode}): {(p.stderr + self.tail()).strip()[-500:]}")
        self.master_pid = self._master_pid()

    def _master_pid(self):
        try:
            with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def tail(self, n=5):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def wait_idle(self):
        """Until every message queued has been removed (discarded), the
        timeout passed, or the log stopped growing for a while."""
        deadline = time.monotonic() + self.wait_idle_s
        while time.monotonic() < deadline:
            s = parse_log(read(self.log))
            if s["queued"] == s["removed"]:
                return True
            time.sleep(0.1)
        return False

    def stop(self):
        """Wait for the queue to empty, `postfix -c DIR stop`, then the master
        by pid if it is still there; returns the log's summary (stats)."""
        idle = self.wait_idle() if self.master_pid else False
        try:
            self._postfix("stop")
        except (OSError, subprocess.TimeoutExpired):
            pass
        pid, deadline = self.master_pid or self._master_pid(), time.monotonic() + 10
        while pid and time.monotonic() < deadline and alive(pid):
            time.sleep(0.05)
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)
        stats = parse_log(read(self.log))
        stats.update(mta=f"postfix {self.version}", queue_drained=idle, maillog=self.log)
        return stats


def instance_dir():
    """A fresh directory for a private instance that Postfix's daemons can
    reach: under $TMPDIR when others may search it, else under /tmp."""
    import tempfile
    base = tempfile.gettempdir()
    ok = all(os.stat(d).st_mode & 0o001 for d in ancestors(base))
    d = tempfile.mkdtemp(prefix="mailbench-postfix-", dir=base if ok else "/tmp")
    os.chmod(d, 0o755)
    return d


def ancestors(path):
    path = os.path.abspath(path)
    out = [path]
    while path != "/":
        path = os.path.dirname(path)
        out.append(path)
    return out


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def parse_log(text):
    """The log's summary: per queue ID its Message-ID, discarded, removed."""
    mid, sent, removed, other = {}, {}, set(), {}
    connections = rejects = 0
    for line in text.splitlines():
        if "postfix/smtpd[" in line:
            if ": connect from " in line:
                connections += 1
            if "reject:" in line:
                rejects += 1
        m = LINE.search(line)
        if not m:
            continue
        prog, qid, rest = m.groups()
        if prog == "cleanup" and rest.startswith("message-id="):
            mid[qid] = rest[len("message-id="):].strip()
        elif rest.startswith("to=<") and "status=" in rest:
            st = re.search(r"status=(\w+)", rest).group(1)
            if st == "sent" and prog.endswith("discard"):
                sent[qid] = sent.get(qid, 0) + 1
            else:
                other[qid] = st
        elif prog.endswith("qmgr") and rest == "removed":
            removed.add(qid)
    delivered = [mid[q] for q in mid if q in sent and q not in other]
    return {"schema": "mailbench.postfix-log/1", "queued": len(mid), "removed": len(removed & set(mid)),
            "messages": len(delivered), "unique_messages": len(set(delivered)),
            "duplicates": len(delivered) - len(set(delivered)),
            "not_discarded": sorted(set(mid) - set(sent))[:20], "other_status": other,
            "connections": connections, "rejects": rejects, "message_ids": sorted(set(delivered))}


def expected(model):
    """{seed: emails} of the run: one load generator, or a merged run's."""
    params = model.get("params") or {}
    if model.get("hosts") and params.get("seeds"):
        return {int(s): int(h.get("emails") or 0) for s, h in zip(params["seeds"], model["hosts"])}
    return {int(params.get("seed", 1)): int(model.get("emails") or 0)}


def verify(model, stats):
    """(valid, reason) of a model's run against the Postfix log's summary."""
    if model is None:
        return False, "no model JSON"
    if not stats:
        return False, "no Postfix log"
    d, maybe = model.get("delivered", 0), model.get("maybe_delivered", 0)
    if d + model.get("failed", 0) != model.get("emails"):
        return False, f"unaccounted: delivered {d} + failed {model.get('failed')} != emails {model.get('emails')}"
    if stats["queued"] != stats["removed"] or stats["not_discarded"] or stats["other_status"]:
        return False, (f"Postfix queued {stats['queued']} messages, discarded {stats['messages']}, "
                       f"removed {stats['removed']} (other: {stats['other_status'] or stats['not_discarded']})")
    u = stats["unique_messages"]
    if not d <= u <= d + maybe:
        return False, (f"{'lost' if u < d else 'extra at server'}: model delivered {d} (and {maybe} "
                       f"maybe delivered), Postfix discarded {u} distinct Message-IDs")
    if stats["duplicates"] and not model.get("retries"):
        return False, f"{stats['duplicates']} Message-IDs accepted twice without a retry"
    want = expected(model)
    for m in stats["message_ids"]:
        g = MSGID.match(m)
        if not g or int(g.group(1)) not in want or int(g.group(2)) >= want[int(g.group(1))]:
            return False, f"Message-ID {m} is not one this run sent"
    return True, ""


USAGE = """usage: postfix-private start DIR [--listen ADDR:PORT] [--procs N]
       postfix-private stop DIR
       postfix-private verify MAILLOG MODEL.json"""


def main(argv):
    if len(argv) >= 3 and argv[1] == "start":
        addr, port, procs, rest = "127.0.0.1", 0, 150, argv[3:]
        while rest:
            if rest[0] == "--listen" and len(rest) > 1 and re.fullmatch(r"[\d.]+:\d+", rest[1]):
                addr, port = rest[1].rsplit(":", 1)[0], int(rest[1].rsplit(":", 1)[1])
            elif rest[0] == "--procs" and len(rest) > 1 and rest[1].isdigit() and int(rest[1]) > 0:
                procs = int(rest[1])
            else:
                print(f"postfix-private: bad option {' '.join(rest[:2])!r}\n{USAGE}", file=sys.stderr)
                return 2
            rest = rest[2:]
        try:
            os.makedirs(argv[2], exist_ok=True)
            pf = Postfix(os.path.abspath(argv[2]), addr, port, procs)
        except (PostfixError, OSError) as e:
            print(f"postfix-private: {e}", file=sys.stderr)
            return 1
        print(f"listening on {pf.address}\nmaster pid {pf.master_pid}\nlog {pf.log}\n"
              f"stop: scripts/postfix-private stop {argv[2]}")
        return 0
    if len(argv) == 3 and argv[1] == "stop":
        pf = Postfix(os.path.abspath(argv[2]), start=False)
        if not os.path.isfile(os.path.join(pf.etc, "main.cf")):
            print(f"postfix-private: no instance in {argv[2]}", file=sys.stderr)
            return 2
        stats = pf.stop()
        print(f"stopped; Postfix queued {stats['queued']}, discarded {stats['messages']} "
              f"({stats['unique_messages']} distinct Message-IDs); log {pf.log}")
        return 0
    if len(argv) != 4 or argv[1] != "verify":
        print(USAGE, file=sys.stderr)
        return 2
    text = read(argv[2])
    if not text:
        print(f"mbpostfix: cannot read the log {argv[2]}", file=sys.stderr)
        return 2
    try:
        with open(argv[3]) as f:
            model = json.load(f)
    except (OSError, ValueError) as e:
        print(f"mbpostfix: cannot read {argv[3]}: {e}", file=sys.stderr)
        return 2
    stats = parse_log(text)
    ok, reason = verify(model, stats)
    print(f"{'valid' if ok else 'invalid: ' + reason} (Postfix: {stats['queued']} queued, "
          f"{stats['messages']} discarded, {stats['unique_messages']} distinct Message-IDs)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
