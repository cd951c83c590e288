#!/usr/bin/env bash
# Every model against smtp-mock: each email ends delivered or failed, and a
# run is verified — the client's delivered count and digest equal the
# server's distinct Message-IDs and digest — with and without injected
# temporary failures and dropped connections.  Bounded counts, loopback only.
source "$(dirname "$0")/common.bash"

models=()
for m in sync threads async hybrid; do
    [ -x "$BIN/summary-$m" ] && models+=("$m") || fail "bin/summary-$m missing"
done


for m in "${models[@]}"; do
    run_verified "$m-plain" "$m" "--latency 1ms" --emails 300 --concurrency 20 --per-session 3
    check_eq "$m-plain: nothing failed" 0 "$(json_get "$LAST_JSON" failed)"
    check_eq "$m-plain: schema" "mailbench.run/1" "$(json_get "$LAST_JSON" schema)"
    check_eq "$m-plain: model" "$m" "$(json_get "$LAST_JSON" model)"

    run_verified "$m-faults" "$m" "--tempfail 0.1 --drop 0.05 --fault-stage rcpt --seed 7" \
        --emails 200 --concurrency 10 --retries 20
    check_eq "$m-faults: all delivered after retries" 200 "$(json_get "$LAST_JSON" delivered)"
    r=$(json_get "$LAST_JSON" retries)
    if [ "$r" -gt 0 ]; then pass "$m-faults: retried ($r)"; else fail "$m-faults: no retry counted"; fi

    # A drop after the final "." is a delivery the client did not see: the
    # retry is a duplicate on the server, and still one delivery here.
    run_verified "$m-dup" "$m" "--drop 0.1 --fault-stage data --seed 3" \
        --emails 200 --concurrency 10 --retries 20
    d=$(json_get "$srv_STATS" duplicates)
    if [ "$d" -gt 0 ]; then pass "$m-dup: duplicates reported by the server ($d)"; else fail "$m-dup: expected duplicates"; fi

    run_verified "$m-permfail" "$m" "--permfail 0.2 --fault-stage mail --seed 5" \
        --emails 100 --concurrency 10
    f=$(json_get "$LAST_JSON" failed)
    if [ "$f" -gt 0 ]; then pass "$m-permfail: permanent failures counted ($f)"; else fail "$m-permfail: expected failures"; fi
    check_eq "$m-permfail: no retry of a 5xx" 0 "$(json_get "$LAST_JSON" retries)"

    run_verified "$m-chain" "$m" "--latency 1ms" --emails 60 --concurrency 8 --chain 5 \
        --events 5000 --body-bytes 20KB --recipients 3

    # No retries and drops after the final ".": the server holds emails the
    # model saw fail.  They are reported as maybe delivered, and the server's
    # count and digest are exactly the delivered plus the maybe-delivered.
    start_mock srv --drop 0.3 --fault-stage data --seed 9 || fail "$m-maybe: no mock"
    timeout 120 "$BIN/summary-$m" --server "127.0.0.1:$srv_PORT" --emails 100 --concurrency 10 \
        --retries 0 --json "$TMP/maybe.json" 2>/dev/null
    stop_pid "$srv_PID"
    j=$TMP/maybe.json
    mb=$(json_get "$j" maybe_delivered)
    if [ "${mb:-0}" -gt 0 ]; then pass "$m-maybe: maybe delivered reported ($mb)"; else fail "$m-maybe: none reported"; fi
    check_eq "$m-maybe: server = delivered + maybe delivered" \
        "$(json_get "$srv_STATS" unique_messages)" "$(( $(json_get "$j" delivered) + mb ))"
    check_eq "$m-maybe: server digest = digest + maybe digest" "$(json_get "$srv_STATS" digest)" \
        "$(printf '%016x' $(( 0x$(json_get "$j" digest) + 0x$(json_get "$j" maybe_digest) )))"

    # Open loop: 100 emails due at 500/s take at least their schedule (0.198 s),
    # and latency is counted from each email's intended start.
    run_verified "$m-open" "$m" "--latency 1ms" --emails 100 --rate 500 --concurrency 20 --chain 2
    check_eq "$m-open: latency mode" open "$(json_get "$LAST_JSON" latency_mode)"
    w=$(json_get "$LAST_JSON" wall_s)
    if awk -v w="$w" 'BEGIN { exit !(w >= 0.198) }'; then pass "$m-open: paced ($w s)"; else fail "$m-open: too fast for 500/s ($w s)"; fi

    # A refused port: every email fails with a reason, exit status 3, no hang.
    timeout 60 "$BIN/summary-$m" --server 127.0.0.1:1 --emails 3 --retries 1 \
        --json "$TMP/refused.json" 2>"$TMP/refused.err"
    check_eq "$m: refused port exits 3" 3 "$?"
    check_eq "$m: refused port, all failed" 3 "$(json_get "$TMP/refused.json" failed)"

    "$BIN/summary-$m" --emails -5 2>"$TMP/bad.err"
    check_eq "$m: bad --emails exits 2" 2 "$?"
    grep -q -- '--emails' "$TMP/bad.err" && pass "$m: message names --emails" || fail "$m: message: $(cat "$TMP/bad.err")"
done
finish
