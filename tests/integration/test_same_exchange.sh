#!/usr/bin/env bash
# The four models hold the same SMTP exchange with the server: each runs
# against a fresh smtp-mock with the same options, and the server's own
# counts (its stats JSON: "commands" by verb and "reply_batches", the reads
# that produced replies, i.e. the client's round trips) must be the same for
# every model, and what the protocol says they are: one EHLO, MAIL, DATA per
# email, a RCPT per recipient, one QUIT per connection, no RSET, HELO, NOOP
# or anything else; 2 round trips per email and 2 per connection.  A model that sent an extra command, skipped PIPELINING,
# split the text from its "." or quit per email while reusing connections
# would differ.  Bounded counts, loopback only.
source "$(dirname "$0")/common.bash"

models=()
for m in sync threads async hybrid; do
    [ -x "$BIN/summary-$m" ] && models+=("$m") || fail "bin/summary-$m missing"
done

emails=50 rcpts=2
# exchange LABEL PER_SESSION — every model once; checks the counts.  With a
# connection per email the connections are exact; with reuse, a reactor
# model's idle sessions are shared by its slots, so at the end of a run a few
# may be short of PER_SESSION: the server's count of connections may exceed
# emails / PER_SESSION by at most the concurrency (5), and everything per
# email and per connection is still exact (EHLO = QUIT = connections).
exchange() {
    local label=$1 per=$2 m first="" batches_first=""
    local sessions=$((emails / per)) conc=5
    for m in "${models[@]}"; do
        run_verified "$label-$m" "$m" "--latency 1ms" --emails "$emails" --concurrency $conc \
            --events 10 --recipients "$rcpts" --per-session "$per"
        check_eq "$label-$m: all delivered" "$emails" "$(json_get "$LAST_JSON" delivered)"
        local conns got batches want
        conns=$(json_get "$LAST_STATS" connections)
        if [ "$per" -eq 1 ]; then
            check_eq "$label-$m: connections" "$sessions" "$conns"
        elif [ "$conns" -ge "$sessions" ] && [ "$conns" -le $((sessions + conc)) ]; then
            pass "$label-$m: connections $conns (emails / $per = $sessions, at most + $conc)"
        else
            fail "$label-$m: connections $conns, want $sessions .. $((sessions + conc))"
        fi
        want=$(jq -cn --argjson e "$emails" --argjson r "$((emails * rcpts))" --argjson s "$conns" \
            '{EHLO: $s, HELO: 0, MAIL: $e, RCPT: $r, DATA: $e, RSET: 0, NOOP: 0, QUIT: $s, other: 0}')
        got=$(jq -c '.commands' "$LAST_STATS")
        batches=$(json_get "$LAST_STATS" reply_batches)
        check_eq "$label-$m: commands (per email: MAIL=DATA, RCPT=$rcpts; EHLO=QUIT per connection)" \
            "$want" "$got"
        # PIPELINING: EHLO; MAIL, RCPTs and DATA in one flight; the text
        # with its "."; QUIT: 2 round trips per connection, 2 per email.
        check_eq "$label-$m: reply batches (2 per email + 2 per connection)" \
            "$((2 * emails + 2 * conns))" "$batches"
        if [ "$per" -eq 1 ] && [ -z "$first" ]; then
            first=$m batches_first=$batches
        elif [ "$per" -eq 1 ]; then
            check_eq "$label-$m: reply batches = $first's" "$batches_first" "$batches"
        fi
    done
}

exchange conn 1         # a connection per email
# Five emails per connection: QUIT = emails / 5.  (Found with this test: the
# threads model hands emails out one at a time from a shared counter, and
# each thread counts --per-session on its own connection, so a thread whose
# share is not a multiple of 5 ends with a short connection: 11 or 12
# connections instead of 10 in about one run in six.)
exchange reuse 5

finish
