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
  - without injected faults, the server saw no duplicate.
"""
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time

MASK = 2**64 - 1
# Beyond this many listed maybe-delivered hashes the exact subset search is
# not attempted (2^24 sums): such a run is reported as not checkable, never
# guessed valid.
MAYBE_SEARCH_MAX = 24


class Server:
    """One smtp-mock on 127.0.0.1 (a free port unless port is given), always
    stopped by pid (stop() / kill())."""

    def __init__(self, binary, args, workdir, prefix=(), port=0, tag="server"):
        self.stats = os.path.join(workdir, tag + ".stats.json")
        self.out = os.path.join(workdir, tag + ".out")
        self.err = os.path.join(workdir, tag + ".err")
        self.cmd = list(prefix) + [binary, "--listen", f"127.0.0.1:{port}", "--stats", self.stats] + list(args)
        with open(self.out, "w") as o, open(self.err, "w") as e:
            self.proc = subprocess.Popen(self.cmd, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
        self.port = self._wait_port()

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
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        return load_json(self.stats)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
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
    if server.get("duplicates", 0) > 0 and not faults_injected:
        return False, f"{server['duplicates']} duplicated emails without injected faults"
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
