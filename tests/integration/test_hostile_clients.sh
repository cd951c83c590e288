#!/usr/bin/env bash
# Hostile clients against smtp-mock (helper: hostile_clients.py): garbage and
# NUL bytes (in commands, in the text, in a Message-ID), bare LF, overlong
# command and text lines (a 998-octet line starting with "." is not one), an
# oversize message, random bytes then a close; SMTP smuggling (a bare LF or
# CR before the "." never ends DATA); a client sending one byte
# at a time (idle and total-time limits); a client that never reads its
# replies (the server stays responsive and its memory bounded); 10,000
# connections at once over --max-conns 1000 (421 and closed promptly while a
# session opened before still completes a transaction).  The server answers
# with the RFC's codes, stays up, and its peak RSS stays small.
source "$(dirname "$0")/common.bash"
# Sanitizer builds carry shadow memory: the same bound, scaled (TSan's shadow
# is several times the application's memory, ASan's about twice).
case "$BIN" in *tsan*) RSS_SCALE=8 ;; *asan*) RSS_SCALE=4 ;; *) RSS_SCALE=1 ;; esac
PY=/usr/bin/python3
H="$(dirname "$0")/hostile_clients.py"
ulimit -n "$(ulimit -Hn)" 2>/dev/null

# field LINE-NAME: the codes after the name in $out.
field() { sed -n "s/^$1 //p" <<<"$out"; }

start_mock G --max-size 10KB --idle-timeout 5s || exit 1
out=$(timeout 60 $PY "$H" garbage "$G_PORT" 2>&1)
check_eq "greeting" 220 "$(field greeting)"
check_eq "binary garbage: 500" 500 "$(field binary-garbage)"
check_eq "NUL in a command: 500" 500 "$(field nul-in-command)"
case "$(field nul-in-argument)" in 5*) pass "NUL in MAIL's argument: $(field nul-in-argument)";;
    *) fail "NUL in MAIL's argument: '$(field nul-in-argument)'";; esac
check_eq "bare LF ends a command (leniently)" 250 "$(field bare-lf-command)"
check_eq "command line of 513 octets: 500" 500 "$(field command-513-octets)"
check_eq "command line of 512 octets: accepted" 250 "$(field command-512-octets)"
check_eq "a 5 MB line: one 500 when it ends" 500 "$(field line-5MB-then-crlf)"
check_eq "EXPN: 502" 502 "$(field unknown-verb)"
check_eq "text line over 1000 octets: 500 at the end of DATA" 500 "$(field text-line-1001-octets)"
check_eq "message over --max-size: 552" 552 "$(field over-max-size)"
check_eq "NUL inside the text: accepted" 250 "$(field nul-in-text)"
check_eq "998-octet text line starting with '.' (999 stuffed): accepted" 250 "$(field dot-line-998)"
check_eq "Python smtplib, a 998-octet line starting with '.': accepted" 250 "$(field smtplib-dot-line-998)"
check_eq "Message-ID with a NUL: accepted" "250 250" "$(field msgid-nul-b) $(field msgid-nul-c)"
check_eq "NUL after a verb: the whole line refused (not NOOP, RSET, QUIT)" "500 500 500" \
    "$(field nul-after-noop) $(field nul-after-rset) $(field nul-after-quit)"
check_eq "the session still answers" 250 "$(field still-answers)"
check_eq "random bytes then a close; a new client is served" 250 "$(field after-random-close)"
stop_pid "$G_PID"
# The NUL text, the 998-octet line, the two NUL Message-IDs, the last client
# and smtplib's: 6 messages, none a duplicate (the IDs differ after the NUL).
check_eq "messages accepted" 6 "$(json_get "$G_STATS" messages)"
check_eq "Message-IDs differing after a NUL are not duplicates" 0 "$(json_get "$G_STATS" duplicates)"
rss=$(json_get "$G_STATS" max_rss_kb)
[ "${rss:-999999}" -lt $((32768 * RSS_SCALE)) ] && pass "peak RSS after garbage and a 5 MB line: ${rss} KB" \
    || fail "peak RSS ${rss} KB after garbage"

# SMTP smuggling: <LF>.<CR><LF>, <LF>.<LF>, <CR>.<CR><LF>, <CR><LF>.<LF> and
# <CR><LF>.<CR> never end DATA; the text runs to the real <CR><LF>.<CR><LF>,
# the message is refused (554) and counted as a protocol error, and the
# smuggled transaction is never run (no 250, no message).
start_mock U || exit 1
out=$(timeout 60 $PY "$H" smuggle "$U_PORT" 2>&1)
for shape in lf-dot-crlf lf-dot-lf cr-dot-crlf crlf-dot-lf crlf-dot-cr; do
    check_eq "smuggling $shape: 554 at the real end, nothing smuggled" "250/250/354/554/250" "$(field "$shape")"
done
check_eq "smuggling: the session ends normally" 221 "$(field quit)"
stop_pid "$U_PID"
check_eq "smuggling: no message accepted" 0 "$(json_get "$U_STATS" messages)"
check_eq "smuggling: each a protocol error" 5 "$(json_get "$U_STATS" protocol_errors)"

# One byte at a time: every 0.5 s is never idle for 1 s but meets the 3 s
# session limit; every 1.5 s meets the idle timeout.  Both: 421, then closed.
start_mock S --idle-timeout 1s --session-timeout 3s || exit 1
$PY "$H" slow "$S_PORT" 0.5 8 >"$TMP/slow1" 2>&1 &
a=$!
$PY "$H" slow "$S_PORT" 1.5 8 >"$TMP/slow2" 2>&1 &
b=$!
wait "$a" "$b"
read -r what code _ t _ tail <"$TMP/slow1"
[ "$what $code $tail" = "closed 421 EOF" ] && awk -v t="$t" 'BEGIN { exit !(t >= 2.8 && t < 4.5) }' \
    && pass "a byte every 0.5 s: 421 at the session limit after ${t}s, closed" \
    || fail "a byte every 0.5 s: $(cat "$TMP/slow1")"
read -r what code _ t _ tail <"$TMP/slow2"
[ "$what $code $tail" = "closed 421 EOF" ] && awk -v t="$t" 'BEGIN { exit !(t >= 0.9 && t < 2.5) }' \
    && pass "a byte every 1.5 s: 421 at the idle timeout after ${t}s, closed" \
    || fail "a byte every 1.5 s: $(cat "$TMP/slow2")"
stop_pid "$S_PID"
check_eq "both counted as timeouts" 2 "$(json_get "$S_STATS" idle_timeouts)"

# A client that sends 50 MB of NOOPs and never reads a reply.
start_mock N --idle-timeout 5s || exit 1
read -r _ sent _ other _ rss < <(timeout 30 $PY "$H" noread "$N_PORT" "$N_PID" 50)
check_eq "another client is served while one never reads" 250 "${other:-none}"
[ "${sent:-0}" -lt 50000000 ] && pass "the non-reader is held back by flow control (${sent} bytes taken)" \
    || fail "the server took all ${sent} bytes without their replies being read"
[ "${rss:-999999}" -lt $((16384 * RSS_SCALE)) ] && pass "server RSS bounded while the replies pile up: ${rss} KB" \
    || fail "server RSS ${rss} KB with a client that never reads"
stop_pid "$N_PID"

# 10,000 connections at once, --max-conns 1000 (fewer if the descriptor
# hard limit is lower: the client needs one per connection).
n=10000 lim=$(ulimit -Hn)
if [ "$lim" != unlimited ] && [ "$lim" -lt $((n + 200)) ]; then
    n=$((lim - 200)); echo "note: descriptor hard limit $lim, flooding with $n connections"
fi
start_mock F --max-conns 1000 --idle-timeout 10s || exit 1
out=$(timeout 60 $PY "$H" flood "$F_PORT" "$n" 2>&1)
read -r _ greeted _ refused _ closed _ silent _ secs _ first codes <<<"$out"
check_eq "sessions greeted: max-conns minus the held one" 999 "${greeted:-x}"
check_eq "the other $((n - 999)) get 421" $((n - 999)) "${refused:-x}"
check_eq "none left without an answer" "0 0" "${closed:-x} ${silent:-x}"
awk -v t="${secs:-99}" 'BEGIN { exit !(t < 10) }' && pass "all answered within ${secs}s" || fail "flood took ${secs}s"
check_eq "the session held through the flood completes a message" "220 250/250/250/354/250" "${first:-} ${codes:-}"
stop_pid "$F_PID"
check_eq "rejected_connections" $((n - 999)) "$(json_get "$F_STATS" rejected_connections)"
check_eq "max_concurrent" 1000 "$(json_get "$F_STATS" max_concurrent)"
rss=$(json_get "$F_STATS" max_rss_kb)
[ "${rss:-999999}" -lt $((65536 * RSS_SCALE)) ] && pass "peak RSS with 1000 sessions and $((n - 999)) refused: ${rss} KB" \
    || fail "peak RSS ${rss} KB in the flood"
help=$("$BIN/smtp-mock" --help)
for o in stall session-timeout "fault-stage S" body; do
    grep -q -- "$o" <<<"$help" && pass "--help documents '$o'" || fail "--help lacks '$o'"
done
finish
