#!/usr/bin/env bash
# The per-message digest is XXH3-64 (lib/digest.h) in all three places that
# compute it, and they agree: the C client (tests/bench/send_messages, the
# client core through the blocking driver), smtp-mock (streaming XXH3 over
# the unstuffed DATA as it arrives, in reads of whatever size) and Python
# (python3-xxhash's xxh3_64_intdigest).  Messages with and without lines
# that begin with "." (so stuffed by the client and unstuffed by the mock),
# a 998-octet dot line, a line that is only ".", and a 300 KB message with
# dot lines all over it (it crosses many reads); then the workload's own
# emails (a model's JSON digest, the mock's, and Python's from the port of
# the workload, workloads/summary.py).
source "$(dirname "$0")/common.bash"
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
SEND=${MAILBENCH_BUILD:-$HERE/../../build/release}/bench/send_messages
if [ ! -x "$SEND" ]; then fail "no $SEND (make test builds it)"; finish; fi

mkdir -p "$TMP/msgs"
# Python writes the messages and prints the expected digest of each group.
read -r want_plain want_dots want_all < <($PY - "$TMP/msgs" <<'PYEOF'
import os, sys, xxhash
d = sys.argv[1]
M = (1 << 64) - 1
def msg(i, body_lines):
    head = [b"From: a@example.org", b"To: r@example.org", b"Subject: m%d" % i,
            b"Message-ID: <xxh3-%d@mailbench.test>" % i, b""]
    return b"\r\n".join(head + body_lines) + b"\r\n"
plain = [msg(0, [b"hello"]), msg(1, [b"x" * 997, b"y" * 500]),
         msg(2, [b"line %d" % k for k in range(3000)])]
dots = [msg(3, [b".starts with a dot", b"..two", b".", b"end"]),
        msg(4, [b"." + b"d" * 997]),                  # 998 octets + CRLF = 1000
        msg(5, [(b"." if k % 7 == 0 else b"") + b"%06d " % k + b"z" * (k % 90)
                for k in range(5000)])]               # ~300 KB, dot lines throughout
assert len(dots[2]) > 250000
sums = []
for group, start in ((plain, 0), (dots, 3)):
    s = 0
    for k, m in enumerate(group):
        with open(os.path.join(d, "m%d.eml" % (start + k)), "wb") as f:
            f.write(m)
        s = (s + xxhash.xxh3_64_intdigest(m)) & M
    sums.append(s)
print("%016x %016x %016x" % (sums[0], sums[1], (sums[0] + sums[1]) & M))
PYEOF
)
[ -n "${want_all:-}" ] || { fail "python3-xxhash did not compute the digests"; finish; }

# send LABEL FILES... : C client -> mock; the three digests must agree.
send() {
    local label=$1; shift
    start_mock X || { fail "$label: smtp-mock did not start"; return; }
    local out
    out=$(timeout 60 "$SEND" "$X_PORT" "$@" 2>"$TMP/$label.err")
    stop_pid "$X_PID"
    read -r _ d _ f _ dig <<<"$out"
    check_eq "$label: C client delivered all" "$#" "${d:-0}"
    check_eq "$label: C client digest = Python digest" "$want" "${dig:-none}"
    check_eq "$label: smtp-mock digest = Python digest" "$want" "$(json_get "$X_STATS" digest)"
    check_eq "$label: smtp-mock messages" "$#" "$(json_get "$X_STATS" unique_messages)"
}
want=$want_plain send "no dot lines" "$TMP"/msgs/m0.eml "$TMP"/msgs/m1.eml "$TMP"/msgs/m2.eml
want=$want_dots send "dot lines" "$TMP"/msgs/m3.eml "$TMP"/msgs/m4.eml "$TMP"/msgs/m5.eml
want=$want_all send "all six" "$TMP"/msgs/m*.eml

# The workload's emails: model JSON = mock = Python's port + xxhash.
run_verified "async 12 emails of 50 KB" async "" --emails 12 --concurrency 3 --events 100 \
    --body-bytes 50000 --seed 7
py=$($PY - "$HERE/../../workloads" <<'PYEOF'
import sys, xxhash
sys.path.insert(0, sys.argv[1])
import summary
s = 0
for i in range(12):
    s = (s + xxhash.xxh3_64_intdigest(summary.render(7, i, events=100, body_bytes=50000))) & ((1 << 64) - 1)
print("%016x" % s)
PYEOF
)
check_eq "workload emails: Python digest = model digest" "$py" "$(json_get "$LAST_JSON" digest)"
check_eq "workload emails: Python digest = smtp-mock digest" "$py" "$(json_get "$LAST_STATS" digest)"

# The workload marks its emails SMTP-safe and the client then skips its scan
# (SMTP_CLIENT_SAFE); MAILBENCH_VERIFY_SAFE=1 makes the client scan them
# anyway and fail any false mark (554): every model (the shared send path:
# async's session, the blocking models' driver) delivers all, verified, and
# the digest is Python's.
py=$($PY - "$HERE/../../workloads" <<'PYEOF'
import sys, xxhash
sys.path.insert(0, sys.argv[1])
import summary
s = 0
for i in range(6):
    s = (s + xxhash.xxh3_64_intdigest(summary.render(5, i, events=10, body_bytes=1000000,
                                                     recipients=2))) & ((1 << 64) - 1)
print("%016x" % s)
PYEOF
)
for model in async sync threads hybrid; do
    MAILBENCH_VERIFY_SAFE=1 run_verified "$model: 1 MB, marks verified" $model "" --emails 6 \
        --concurrency 2 --events 10 --body-bytes 1000000 --recipients 2 --seed 5 --retries 0
    check_eq "$model: 1 MB, marks verified: all delivered" 6 "$(json_get "$LAST_JSON" delivered)"
    check_eq "$model: 1 MB, marks verified: digest = Python's" "$py" "$(json_get "$LAST_JSON" digest)"
done
finish
