#!/usr/bin/env bash
# smtp-mock under bad input and limits: garbage, overlong lines and commands
# out of order get the RFC's reply codes and the server stays up for others;
# idle clients get 421; --max-conns turns extra clients away with 421; faults
# are injected and counted; latency is applied; bad options exit 2.
source "$(dirname "$0")/common.bash"
PY=/usr/bin/python3
CLIENTS="$(dirname "$0")/mock_clients.py"
dialog() { timeout 20 $PY "$CLIENTS" dialog 127.0.0.1 "$1" | tr '\n' ' ' | sed 's/ $//'; }

start_mock E --max-size 10KB --max-rcpts 2 --idle-timeout 10s || exit 1

# A client that sits in the middle of a line must not hold up anyone else.
$PY -c "
import socket, time
s = socket.create_connection(('127.0.0.1', $E_PORT)); s.recv(100)
s.sendall(b'NOOP and then noth'); time.sleep(3)" &
holder=$!

long=$(head -c 600 /dev/zero | tr '\0' x)
out=$(printf '%s\n' "MAIL FROM:<a@x>" "EHLO c" "RCPT TO:<b@x>" "DATA" "HELLO?" \
      "$(printf 'GARB\001\377AGE')" "EXPN x" "MAIL FROM:a@x" "NOOP $long" \
      "MAIL FROM:<a@x> SIZE=999999" "MAIL FROM:<a@x>" "RCPT TO:<1@x>" "RCPT TO:<2@x>" \
      "RCPT TO:<3@x>" "MAIL FROM:<a@x>" "RSET" "VRFY" "QUIT" | dialog "$E_PORT")
check_eq "garbage, overlong and out-of-order replies" \
    "220 503 250 503 503 500 500 502 501 500 552 250 250 250 452 503 250 501 221" "$out"

# An overlong text line inside DATA, then a normal message on the same session.
longtext=$(head -c 1200 /dev/zero | tr '\0' y)
out=$(printf '%s\n' "EHLO c" "MAIL FROM:<a@x>" "RCPT TO:<b@x>" "DATA" | dialog "$E_PORT")
check_eq "DATA accepted" "220 250 250 250 354" "$out"
out=$($PY - "$E_PORT" "$longtext" <<'PYEOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
f = s.makefile("rb")
def code():
    while True:
        l = f.readline()
        if not l: return "EOF"
        if l[3:4] != b"-": return l[:3].decode()
r = [code()]
s.sendall(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n")
r += [code() for _ in range(4)]
s.sendall(b"Subject: x\r\n\r\n" + sys.argv[2].encode() + b"\r\n.\r\n")
r.append(code())
s.sendall(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n")
r += [code() for _ in range(3)]
s.sendall(b"Subject: y\r\n\r\n" + (b"z" * 100 + b"\r\n") * 200 + b".\r\n")
r.append(code())
s.sendall(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nMessage-ID: <ok@x>\r\n\r\nfine\r\n.\r\nQUIT\r\n")
r += [code() for _ in range(5)]
print(" ".join(r))
PYEOF
)
check_eq "pipelined: long text line 500, too big 552, then a good message" \
    "220 250 250 250 354 500 250 250 354 552 250 250 354 250 221" "$out"

# The server is still up for a well-behaved client while the holder waits.
timeout 10 swaks --server "127.0.0.1:$E_PORT" --to b@example.org >/dev/null 2>&1 \
    && pass "a second client is served meanwhile" || fail "second client not served"
kill -0 "$E_PID" 2>/dev/null && pass "server still running" || fail "server died"
wait "$holder" 2>/dev/null
stop_pid "$E_PID"
check_eq "accepted messages" 2 "$(json_get "$E_STATS" messages)"
check_eq "protocol errors counted" 11 "$(json_get "$E_STATS" protocol_errors)"

# Idle timeout: 421 then the connection is closed.
start_mock I --idle-timeout 300ms || exit 1
out=$(timeout 10 $PY "$CLIENTS" idle 127.0.0.1 "$I_PORT" 5 2>/dev/null | tr '\n' ' ')
check_eq "idle client gets 421 and is closed" "220 421 EOF " "$out"
stop_pid "$I_PID"
check_eq "idle_timeouts counted" 1 "$(json_get "$I_STATS" idle_timeouts)"

# --max-conns 1: a second concurrent client gets 421 and is closed.
start_mock M --max-conns 1 || exit 1
$PY -c "
import socket, time
s = socket.create_connection(('127.0.0.1', $M_PORT)); s.recv(100); time.sleep(2)" &
holder=$!
sleep 0.5
out=$(printf 'NOOP\n' | dialog "$M_PORT")
check_eq "over --max-conns: 421" "421 EOF" "$out"
wait "$holder" 2>/dev/null
stop_pid "$M_PID"
check_eq "rejected_connections counted" 1 "$(json_get "$M_STATS" rejected_connections)"

# Faults: drops after the final "." and 4xx, client retries; every message
# arrives, the retried drops show up as duplicates, the digest still matches.
start_mock F --seed 7 --drop 0.2 --tempfail 0.2 --fault-stage data || exit 1
read -r _ d _ f _ a _ dig < <(timeout 60 $PY "$CLIENTS" smtplib 127.0.0.1 "$F_PORT" 40)
stop_pid "$F_PID"
check_eq "with faults: all delivered" 40 "${d:-0}"
check_eq "with faults: digest of first copies = client digest" "${dig:-none}" "$(json_get "$F_STATS" digest)"
check_eq "with faults: unique_messages" 40 "$(json_get "$F_STATS" unique_messages)"
check_eq "duplicates = drops injected at data" "$(json_get "$F_STATS" drops_injected)" "$(json_get "$F_STATS" duplicates)"
check_eq "attempts = 40 + drops + tempfails" "$(jq '40 + .drops_injected + .tempfail_injected' "$F_STATS")" "${a:-0}"

# Permanent failures at RCPT: 5xx, not retried, nothing accepted.
start_mock G --permfail 1 --fault-stage rcpt || exit 1
read -r _ d _ f _ < <(timeout 60 $PY "$CLIENTS" smtplib 127.0.0.1 "$G_PORT" 3)
stop_pid "$G_PID"
check_eq "permfail at rcpt: nothing delivered" "0 3" "${d:-x} ${f:-x}"
check_eq "permfail_injected" 3 "$(json_get "$G_STATS" permfail_injected)"

# Greeting faults: tempfail gives 421, permfail 554 and then only QUIT works.
start_mock H --tempfail 1 --fault-stage greeting || exit 1
check_eq "tempfail at greeting" "421 EOF" "$(printf 'NOOP\n' | dialog "$H_PORT")"
stop_pid "$H_PID"
start_mock K --permfail 1 --fault-stage greeting || exit 1
check_eq "permfail at greeting" "554 503 221 EOF" "$(printf 'EHLO x\nQUIT\nNOOP\n' | dialog "$K_PORT")"
stop_pid "$K_PID"

# --fault-stage body when DATA and the text come in one write (a pipelining
# client with a small message): the fault still strikes before the final
# "." -- dropped, never accepted; a 421 with --tempfail.
onewrite() {            # onewrite PORT: the reply codes, up to EOF or 2 s of silence
    $PY - "$1" <<'PYEOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
f = s.makefile("rb")
def code():
    while True:
        try:
            l = f.readline()
        except ConnectionResetError:
            return "EOF"
        except socket.timeout:
            return "TIMEOUT"
        if not l: return "EOF"
        if l[3:4] != b"-": return l[:3].decode()
r = [code()]
s.sendall(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"
          b"Message-ID: <one-write@x>\r\n\r\nhi\r\n.\r\nQUIT\r\n")
while r[-1] not in ("EOF", "TIMEOUT") and len(r) < 8:
    r.append(code())
print(" ".join(r))
PYEOF
}
start_mock BD --fault-stage body --drop 1 || exit 1
check_eq "body drop, DATA and text in one write: closed after the 354" \
    "220 250 250 250 354 EOF" "$(onewrite "$BD_PORT")"
stop_pid "$BD_PID"
check_eq "body drop in one write: drops_injected" 1 "$(json_get "$BD_STATS" drops_injected)"
check_eq "body drop in one write: nothing accepted" 0 "$(json_get "$BD_STATS" messages)"
start_mock BT --fault-stage body --tempfail 1 || exit 1
check_eq "body tempfail, DATA and text in one write: 421 after the 354" \
    "220 250 250 250 354 421 EOF" "$(onewrite "$BT_PORT")"
stop_pid "$BT_PID"
check_eq "body tempfail in one write: nothing accepted, one injected" "0 1" \
    "$(json_get "$BT_STATS" messages) $(json_get "$BT_STATS" tempfail_injected)"
start_mock BS --fault-stage body --stall 1 || exit 1
check_eq "body stall, DATA and text in one write: silent after the 354, not closed" \
    "220 250 250 250 354 TIMEOUT" "$(onewrite "$BS_PORT")"
stop_pid "$BS_PID"
check_eq "body stall in one write: nothing accepted, one injected" "0 1" \
    "$(json_get "$BS_STATS" messages) $(json_get "$BS_STATS" stalls_injected)"
# The same at data: the message is stored (as documented), then silence --
# the QUIT that came in the same write is not acted on (no close).
start_mock DS --fault-stage data --stall 1 || exit 1
check_eq "data stall, QUIT in the same write: silent after the 354, not closed" \
    "220 250 250 250 354 TIMEOUT" "$(onewrite "$DS_PORT")"
stop_pid "$DS_PID"
check_eq "data stall in one write: the message stored, one injected" "1 1" \
    "$(json_get "$DS_STATS" messages) $(json_get "$DS_STATS" stalls_injected)"

# The stats JSON: params.listen is the port bound (not the 0 asked for);
# every string is escaped (a --maildir with a quote, a backslash, a tab and
# a byte that is not UTF-8 still gives valid JSON, holding the path).
base="$TMP/ma\"il\\dir	tab"
odd="$base"$'\xff'
mkdir -p "$odd"
start_mock J --maildir "$odd" --hostname mx-1.example.org || exit 1
stop_pid "$J_PID"
if jq -e . "$J_STATS" >/dev/null 2>&1; then pass "stats JSON is valid with an odd --maildir"
else fail "stats JSON invalid: $(grep -o '"params".*' "$J_STATS" | head -c 300)"; fi
check_eq "params.listen: the port bound" "127.0.0.1:$J_PORT" "$(jq -r .params.listen "$J_STATS" 2>&1)"
check_eq "params.hostname" "mx-1.example.org" "$(jq -r .params.hostname "$J_STATS" 2>&1)"
[ "$(jq -r .params.maildir "$J_STATS" 2>&1)" = "$base"$'\xef\xbf\xbd' ] \
    && pass "params.maildir: the path (the non-UTF-8 byte as U+FFFD)" \
    || fail "params.maildir: '$(jq -r .params.maildir "$J_STATS" 2>&1)'"

# A hostname of 255 octets (the longest allowed): every reply naming it is
# whole, CRLF-ended (the client gets the 220, the EHLO reply and the 221).
h255=$(printf 'a%.0s' $(seq 1 63)).$(printf 'b%.0s' $(seq 1 63)).$(printf 'c%.0s' $(seq 1 63)).$(printf 'd%.0s' $(seq 1 63))
start_mock LH --hostname "$h255" || exit 1
out=$($PY - "$LH_PORT" "$h255" <<'PYEOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"EHLO c\r\nQUIT\r\n")
data = b""
while True:
    d = s.recv(65536)
    if not d: break
    data += d
h = sys.argv[2].encode()
want = (b"220 " + h + b" ESMTP mailbench\r\n250-" + h + b"\r\n")
print("ok" if data.startswith(want) and data.endswith(b"221 " + h + b" Bye\r\n") else repr(data[:80]))
PYEOF
)
check_eq "hostname of ${#h255} octets: whole replies" ok "$out"
stop_pid "$LH_PID"

# Latency: every reply is held about --latency.
start_mock L --latency 200ms || exit 1
ms=$($PY - "$L_PORT" <<'PYEOF'
import socket, sys, time
t = time.time()
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.recv(100); t1 = time.time()
s.sendall(b"NOOP\r\n"); s.recv(100); t2 = time.time()
print(int((t1 - t) * 1000), int((t2 - t1) * 1000))
PYEOF
)
read -r g n <<<"$ms"
[ "${g:-0}" -ge 195 ] && [ "${g:-0}" -lt 400 ] && pass "greeting delayed ${g}ms" || fail "greeting delay ${g}ms"
[ "${n:-0}" -ge 195 ] && [ "${n:-0}" -lt 400 ] && pass "NOOP reply delayed ${n}ms" || fail "NOOP delay ${n}ms"
stop_pid "$L_PID"

# Bad option values: one clear message, exit 2.
for args in "--latency 10" "--drop 2" "--tempfail 0.6 --permfail 0.6" "--fault-stage helo" \
            "--listen nowhere" "--listen 0127.0.0.1:0" "--latency 1ms --latency 2ms" \
            "--max-conns 0" "--max-size 1T" "--latency-dist pareto" "--bogus" "extra" \
            "--latency 10ms --jitter 11ms" "--jitter 1ms"; do
    # shellcheck disable=SC2086
    timeout 10 "$BIN/smtp-mock" $args >/dev/null 2>"$TMP/bad.err"
    rc=$?
    if [ "$rc" -eq 2 ] && [ -s "$TMP/bad.err" ]; then pass "bad option '$args' exits 2"
    else fail "bad option '$args': exit $rc, stderr '$(cat "$TMP/bad.err")'"; fi
done
grep -q "'1T'" <("$BIN/smtp-mock" --max-size 1T 2>&1) && pass "message names the bad value" || fail "message lacks the value"
# A jitter over the latency would cut draws below 0 and move the mean up.
msg=$("$BIN/smtp-mock" --jitter 20ms --latency 10ms 2>&1 >/dev/null)
grep -q -- "--jitter value '20ms'" <<<"$msg" && pass "jitter > latency: the message names --jitter" \
    || fail "jitter > latency: message '$msg'"
start_mock jit --latency 10ms --jitter 10ms --latency-dist uniform \
    && pass "jitter = latency is accepted" || fail "jitter = latency refused"
stop_pid "$jit_PID"
help=$("$BIN/smtp-mock" --help)
missing=""
for o in listen hostname latency jitter latency-dist seed tempfail permfail drop fault-stage \
         max-conns max-size max-rcpts idle-timeout stats maildir help; do
    grep -q -- "--$o" <<<"$help" || missing="$missing $o"
done
check_eq "--help documents every option" "" "$missing"
finish
