#!/usr/bin/env bash
# smtp-mock against SMTP clients nobody here wrote: swaks, Python's smtplib,
# Twisted's sendmail and Postfix's smtp-source.  Each server's --stats must
# match what the client says it delivered, digest included.
source "$(dirname "$0")/common.bash"
PY=/usr/bin/python3
CLIENTS="$(dirname "$0")/mock_clients.py"

# swaks: one message, a known body.
start_mock S || exit 1
if timeout 20 swaks --server "127.0.0.1:$S_PORT" --from a@example.org --to b@example.org \
        --header "Message-ID: <swaks-1@mailbench.test>" --body "hello from swaks" \
        >"$TMP/swaks.out" 2>&1; then
    pass "swaks delivers a message"
else
    fail "swaks: $(tail -n 5 "$TMP/swaks.out")"
fi
grep -q '^<-  250 Ok: queued' "$TMP/swaks.out" && pass "swaks sees 250 after DATA" || fail "swaks: no 250 after DATA"
stop_pid "$S_PID"
check_eq "swaks: server counted 1 message" 1 "$(json_get "$S_STATS" messages)"

# Python smtplib: 50 messages (dot-stuffed lines included), digest must match.
start_mock P || exit 1
read -r _ d _ f _ _ _ dig < <(timeout 60 $PY "$CLIENTS" smtplib 127.0.0.1 "$P_PORT" 50)
stop_pid "$P_PID"
check_eq "smtplib delivered" 50 "${d:-0}"
check_eq "smtplib: server messages" 50 "$(json_get "$P_STATS" messages)"
check_eq "smtplib: server digest = client digest" "${dig:-none}" "$(json_get "$P_STATS" digest)"

# Twisted's sendmail: 30 messages at once, one reactor.
start_mock T || exit 1
read -r _ d _ f _ _ _ dig < <(timeout 60 $PY "$CLIENTS" twisted 127.0.0.1 "$T_PORT" 30)
stop_pid "$T_PID"
check_eq "twisted sendmail delivered" 30 "${d:-0}"
check_eq "twisted: server messages" 30 "$(json_get "$T_STATS" messages)"
check_eq "twisted: server digest = client digest" "${dig:-none}" "$(json_get "$T_STATS" digest)"
check_eq "twisted: max_concurrent > 1" 1 "$(jq '.max_concurrent > 1 | if . then 1 else 0 end' "$T_STATS")"

# Postfix smtp-source: 100 sessions, 5000 messages, a connection each.
start_mock Q || exit 1
if timeout 120 /usr/sbin/smtp-source -s 100 -m 5000 -l 1024 "127.0.0.1:$Q_PORT" >"$TMP/src.out" 2>&1; then
    pass "smtp-source -s 100 -m 5000 exits 0"
else
    fail "smtp-source: $(tail -n 5 "$TMP/src.out")"
fi
stop_pid "$Q_PID"
check_eq "smtp-source: server messages" 5000 "$(json_get "$Q_STATS" messages)"
check_eq "smtp-source: server connections" 5000 "$(json_get "$Q_STATS" connections)"
check_eq "smtp-source: no protocol errors" 0 "$(json_get "$Q_STATS" protocol_errors)"

# smtp-source reusing connections (-d), 10 sessions, 2000 messages.
start_mock R || exit 1
timeout 120 /usr/sbin/smtp-source -d -s 10 -m 2000 -l 1024 "127.0.0.1:$R_PORT" >"$TMP/src2.out" 2>&1 \
    && pass "smtp-source -d exits 0" || fail "smtp-source -d: $(tail -n 5 "$TMP/src2.out")"
stop_pid "$R_PID"
check_eq "smtp-source -d: server messages" 2000 "$(json_get "$R_STATS" messages)"
check_eq "smtp-source -d: 10 connections" 10 "$(json_get "$R_STATS" connections)"

# The stats file has every field of the contract.
missing=""
for k in schema connections messages unique_messages duplicates recipients bytes digest \
         tempfail_injected permfail_injected drops_injected protocol_errors idle_timeouts \
         rejected_connections max_concurrent uptime_s cpu_user_s cpu_sys_s max_rss_kb params; do
    [ "$(jq "has(\"$k\")" "$R_STATS")" = true ] || missing="$missing $k"
done
check_eq "stats JSON has every contract field" "" "$missing"
check_eq "stats schema" "mailbench.server/1" "$(json_get "$R_STATS" schema)"
finish
