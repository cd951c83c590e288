"""mbharness — the one copy of the rules every script runs a benchmark by:
start bin/smtp-mock on 127.0.0.1 (port 0 = a free one), stop it by pid and
read its --stats JSON, and decide whether a model's run is verified against
the server's ground truth.  scripts/sweep, scripts/fault-matrix and
scripts/first-comparison import it; tests/integration/common.bash calls it
(`python3 scripts/mbharness.py verify MODEL.json SERVER.json`), so the shell
tests and the sweeps cannot disagree about what a valid run is.

A run is verified when:
  - every email ended: delivered + failed = emails;
  - the server holds exactly the delivered emails (distinct Message-IDs and
    the digest of their bytes), or those plus exactly k of the run's
    "maybe delivered" emails (failed after an attempt was lost between the
    final '.' and the reply: the server may have them), digest included;
  - a run sized by time had an email end inside its window;
  - without injected faults, the server saw no more duplicates than the model
    made retries (its own timeouts: at-least-once delivery, reported).

Hosts (issue 17): a Host is a place to run a command, nothing more (no agent
of ours):
  local       here, as before (the default: no set-up);
  ssh:HOST    `ssh -o BatchMode=yes HOST CMD` (OpenSSH; keys, user, port and
              the rest from the user's own ~/.ssh/config); files on the host
              are made with mktemp, read back with cat and removed with rm over
              the same ssh; a process is stopped by its remote pid (kill);
  netns:NS    `ip netns exec NS CMD` (a Linux network namespace on this
              machine: the tests, or isolating server and clients here).
MAILBENCH_SSH replaces the ssh program (the tests point it at a script that
runs the command in a namespace, so the ssh path is what they exercise).
Server(..., host=Host("ssh:box"), addr="10.0.0.2") runs smtp-mock there,
listening on addr; its stats are fetched back for the verification.
"""
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

MASK = 2**64 - 1
# Beyond this many listed maybe-delivered hashes the exact subset search is
# not attempted (2^24 sums): such a run is reported as not checkable, never
# guessed valid.
MAYBE_SEARCH_MAX = 24


class HostError(Exception):
    """A host spec that makes no sense, or a host that cannot be reached."""


class Host:
    """Where a command runs: "local", "ssh:HOST" or "netns:NS" (see above)."""

    def __init__(self, spec):
        self.spec = spec
        self.kind, _, self.name = spec.partition(":")
        if self.kind == "local" and not self.name:
            return
        if self.kind not in ("ssh", "netns") or not self.name:
            raise HostError(f"bad host {spec!r}: expected local, ssh:HOST or netns:NS")
        if self.kind == "ssh" and (self.name.startswith("-") or any(c.isspace() for c in self.name)):
            raise HostError(f"bad ssh host {self.name!r}")
        if self.kind == "netns" and not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise HostError(f"bad network namespace name {self.name!r}")

    def __repr__(self):
        return self.spec

    @property
    def local(self):
        return self.kind == "local"

    @property
    def shares_files(self):
        """Are this host's files this machine's files (paths the same)?"""
        return self.kind != "ssh"

    def argv(self, cmd):
        """The command line that runs cmd (a list) on this host."""
        if self.kind == "local":
            return list(cmd)
        if self.kind == "netns":
            return ["ip", "netns", "exec", self.name] + list(cmd)
        return self.ssh() + [self.name, shlex.join(cmd)]

    @staticmethod
    def ssh():
        return shlex.split(os.environ.get("MAILBENCH_SSH", "ssh")) + ["-o", "BatchMode=yes"]

    def run(self, cmd, timeout=60):
        """Run cmd there and wait: (exit status, stdout, stderr)."""
        try:
            p = subprocess.run(self.argv(cmd), capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise HostError(f"{self.spec}: {shlex.join(cmd)} did not finish in {timeout}s")
        except OSError as e:
            raise HostError(f"{self.spec}: cannot run {shlex.join(self.argv(cmd)[:4])}: {e.strerror}")
        return p.returncode, p.stdout, p.stderr

    def mkdtemp(self, prefix="mailbench-"):
        if self.shares_files:
            return tempfile.mkdtemp(prefix=prefix)
        rc, out, err = self.run(["mktemp", "-d", f"/tmp/{prefix}XXXXXXXX"])
        if rc != 0 or not out.strip().startswith("/tmp/"):
            raise HostError(f"{self.spec}: mktemp failed (exit {rc}): {err.strip()[-300:]}")
        return out.strip()

    def read(self, path):
        """A file's text on the host, or None."""
        if self.shares_files:
            try:
                with open(path, errors="replace") as f:
                    return f.read()
            except OSError:
                return None
        rc, out, _ = self.run(["cat", path])
        return out if rc == 0 else None

    def read_json(self, path):
        text = self.read(path)
        try:
            return json.loads(text) if text is not None else None
        except ValueError:
            return None

    def rmtree(self, path):
        if not path.startswith(("/tmp/", tempfile.gettempdir() + "/")):
            return                          # never anything but our own temp dirs
        if self.shares_files:
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                self.run(["rm", "-rf", "--", path])
            except HostError:
                pass

    def spawn(self, cmd, out, err, workdir, tag):
        """Start cmd there, stdout/stderr into the local files out, err.  Over
        ssh the remote shell writes its pid to workdir/tag.pid and execs cmd,
        so that the process itself can be signalled (signal())."""
        if self.kind == "ssh":
            pidfile = f"{workdir}/{tag}.pid"
            cmd = ["sh", "-c", 'echo $$ >"$0"; exec "$@"', pidfile] + list(cmd)
        with open(out, "w") as o, open(err, "w") as e:
            proc = subprocess.Popen(self.argv(cmd), stdout=o, stderr=e, stdin=subprocess.DEVNULL)
        proc.mb_host, proc.mb_pidfile = self, (f"{workdir}/{tag}.pid" if self.kind == "ssh" else None)
        return proc

    @staticmethod
    def signal(proc, sig):
        """Send sig to a process started by spawn(): by pid here (ip netns
        exec execs the command, so the pid is its own), by its remote pid over
        ssh (the ssh client exits with it)."""
        if proc.poll() is not None:
            return
        host = getattr(proc, "mb_host", None)
        if host is None or host.kind != "ssh":
            proc.send_signal(sig)
            return
        name = signal.Signals(sig).name[3:]
        try:
            host.run(["sh", "-c", f'kill -{name} "$(cat "$0")"', proc.mb_pidfile], timeout=30)
        except HostError:
            pass
        if sig == signal.SIGKILL:
            proc.kill()                     # and the ssh client, whatever happened there

    def env(self, bindir=None):
        """What this host is (env-*.json): name, kernel, cores, CPU, memory,
        load, IPv4 addresses, and a fingerprint of the programs in bindir."""
        script = ('printf \'{"hostname":"%s","kernel":"%s","cores":%s,"cpu_model":"%s",'
                  '"memory_kb":%s,"loadavg":"%s","addresses":"%s","programs_sha256":"%s"}\' '
                  '"$(hostname)" "$(uname -r)" "$(nproc)" '
                  '"$(sed -n \'s/^model name[^:]*: *//p\' /proc/cpuinfo | head -n1 | tr -d \'"\\\\\')" '
                  '"$(sed -n \'s/^MemTotal: *\\([0-9]*\\).*/\\1/p\' /proc/meminfo)" '
                  '"$(cut -d" " -f1-3 /proc/loadavg)" '
                  '"$(ip -4 -o addr show 2>/dev/null | awk \'{print $4}\' | tr "\\n" " ")" '
                  '"$(cd "$0" 2>/dev/null && cat smtp-mock summary-* 2>/dev/null | sha256sum | cut -c1-16)"')
        try:
            rc, out, err = self.run(["sh", "-c", script, bindir or "/nonexistent"], timeout=60)
            env = json.loads(out) if rc == 0 else {"error": err.strip()[-300:]}
        except (HostError, ValueError) as e:
            env = {"error": str(e)}
        env["host"] = self.spec
        return env


class Server:
    """One smtp-mock on 127.0.0.1 (a free port unless port is given), always
    stopped by pid (stop() / kill()).  host (a Host, default here) and addr
    (the address it listens on, default 127.0.0.1) put it elsewhere; then
    its --stats file lives in a temp dir on that host and stop() fetches it
    back.  .address is what the models connect to: "ADDR:PORT"."""

    def __init__(self, binary, args, workdir, prefix=(), port=0, tag="server", host=None,
                 addr="127.0.0.1"):
        self.host = host or Host("local")
        self.rdir = None if self.host.local else self.host.mkdtemp("mailbench-server-")
        self.stats = os.path.join(self.rdir or workdir, tag + ".stats.json")
        self.out = os.path.join(workdir, tag + ".out")
        self.err = os.path.join(workdir, tag + ".err")
        self.cmd = list(prefix) + [binary, "--listen", f"{addr}:{port}", "--stats", self.stats] + list(args)
        if self.host.local:
            with open(self.out, "w") as o, open(self.err, "w") as e:
                self.proc = subprocess.Popen(self.cmd, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
        else:
            self.proc = self.host.spawn(self.cmd, self.out, self.err, self.rdir, tag)
            self.cmd = self.host.argv(self.cmd)     # as recorded: where it ran
        self.port = self._wait_port()
        self.address = f"{addr}:{self.port}"

    def _wait_port(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(self.out) as f:
                m = re.search(r"^listening on \S+:(\d+)\s*$", f.read(), re.M)
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        self.kill()
        with open(self.err) as f:
            raise RuntimeError("smtp-mock did not start: " + f.read().strip()[-500:])

    def stop(self):
        """SIGTERM (the server writes its stats), SIGKILL after 10 s; the stats or None."""
        if self.proc.poll() is None:
            Host.signal(self.proc, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.host.local:
            return load_json(self.stats)
        stats = self.host.read_json(self.stats)
        self.host.rmtree(self.rdir)
        return stats

    def kill(self):
        if self.proc.poll() is None:
            Host.signal(self.proc, signal.SIGKILL)
        self.proc.wait()


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def maybe_digest_ok(model, server_digest, k):
    """Is the server's digest the model's plus exactly k of its
    maybe-delivered emails' hashes?"""
    try:
        diff = (int(server_digest, 16) - int(model["digest"], 16)) & MASK
        listed = [int(h, 16) for h in model.get("maybe_hashes", [])]
    except (KeyError, TypeError, ValueError):
        return False
    if k == 0:
        return diff == 0
    maybe = model.get("maybe_delivered", 0)
    if k == maybe and "maybe_digest" in model:
        return diff == int(model["maybe_digest"], 16)
    if len(listed) != maybe or len(listed) > MAYBE_SEARCH_MAX:
        return False
    return any(sum(c) & MASK == diff for c in itertools.combinations(listed, k))


def verify_counts(model, unique, server_digest):
    """(verified, k, reason) from the server's distinct count and digest."""
    d = model.get("delivered")
    maybe = model.get("maybe_delivered", 0)
    if d is None or unique is None:
        return False, 0, "missing counts"
    k = unique - d
    if k < 0 or k > maybe:
        what = "lost" if k < 0 else "extra at server"
        return False, k, (f"{what}: model delivered {d} (and {maybe} maybe delivered), "
                          f"server has {unique} unique")
    if not maybe_digest_ok(model, server_digest, k):
        return False, k, (f"digest mismatch: model {model.get('digest')} server {server_digest} "
                          f"({k} of {maybe} maybe-delivered arrived)")
    return True, k, ""


def verify(model, server, faults_injected):
    """(valid, reason): a model's run JSON against the server's stats."""
    if model is None:
        return False, "no model JSON"
    if server is None:
        return False, "no server stats"
    if model.get("schema") != "mailbench.run/1":
        return False, f"model JSON schema {model.get('schema')!r}"
    ok, _, reason = verify_counts(model, server.get("unique_messages"), server.get("digest"))
    if not ok:
        return False, reason
    if model.get("delivered", 0) + model.get("failed", 0) != model.get("emails"):
        return False, (f"unaccounted: delivered {model.get('delivered')} + failed "
                       f"{model.get('failed')} != emails {model.get('emails')}")
    if (model.get("params") or {}).get("duration_s", 0) and model.get("window_delivered") == 0 \
            and model.get("delivered", 0) > 0:
        # Sized by time, and no email ended inside the window: the rate and
        # the percentiles would be 0 and empty, not measured.
        return False, "no email ended inside the steady-state window"
    dups, retries = server.get("duplicates", 0) or 0, model.get("retries", 0) or 0
    if dups > retries and not faults_injected:
        # A duplicate the model's own retries explain (its timeout fired
        # while the server had the email: a CPU-bound reactor's backlog,
        # section E) is at-least-once delivery, measured and reported; one
        # no retry explains is a bug.
        return False, (f"{dups} duplicated emails without injected faults "
                       f"(more than the model's {retries} retries)")
    return True, ""


def faults_injected(server):
    return bool(server) and any(server.get(k, 0) for k in
                                ("tempfail_injected", "permfail_injected", "drops_injected",
                                 "stalls_injected"))


def main(argv):
    """verify MODEL.json SERVER.json: prints 'valid' or 'invalid: reason'."""
    if len(argv) != 4 or argv[1] != "verify":
        print("usage: mbharness.py verify MODEL.json SERVER.json", file=sys.stderr)
        return 2
    model, server = load_json(argv[2]), load_json(argv[3])
    ok, reason = verify(model, server, faults_injected(server))
    print("valid" if ok else "invalid: " + reason)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
