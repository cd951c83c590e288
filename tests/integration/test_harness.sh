#!/usr/bin/env bash
# scripts/mbharness.py — the one validity rule (scripts/sweep, fault-matrix,
# first-comparison and common.bash's run_verified all use it), on hand-made
# model/server pairs: each way a run can fail verification, and the
# maybe-delivered case that is valid.
source "$(dirname "$0")/common.bash"
H="$(dirname "$0")/../../scripts/mbharness.py"
m() { printf '{"schema":"mailbench.run/1","emails":%s,"delivered":%s,"failed":%s,"digest":"%s","maybe_delivered":%s,"maybe_digest":"%s","maybe_hashes":[%s]}' "$@" >"$TMP/m.json"; }
s() { printf '{"unique_messages":%s,"digest":"%s","duplicates":%s,"tempfail_injected":%s}' "$@" >"$TMP/s.json"; }
v() { /usr/bin/python3 "$H" verify "$TMP/m.json" "$TMP/s.json"; }
m 3 3 0 0000000000000006 0 0000000000000000 ""; s 3 0000000000000006 0 0
check_eq "counts and digest equal" valid "$(v)"
s 2 0000000000000006 0 0
case "$(v)" in "invalid: lost"*) pass "server has fewer: lost";; *) fail "lost: $(v)";; esac
s 3 0000000000000007 0 0
case "$(v)" in "invalid: digest mismatch"*) pass "digest differs";; *) fail "digest: $(v)";; esac
s 3 0000000000000006 1 0
case "$(v)" in *"duplicated emails without injected faults"*) pass "duplicate without faults";; *) fail "dups: $(v)";; esac
s 3 0000000000000006 1 1
check_eq "duplicate with injected faults" valid "$(v)"
# Without faults, a duplicate the model's own retries explain (a timeout that
# fired while the server had the email) is valid; one more than its retries is not.
printf '{"schema":"mailbench.run/1","emails":3,"delivered":3,"failed":0,"digest":"0000000000000006","maybe_delivered":0,"retries":2}' >"$TMP/m.json"
s 3 0000000000000006 2 0
check_eq "duplicates explained by the model's retries (2 of 2)" valid "$(v)"
s 3 0000000000000006 3 0
case "$(v)" in *"more than the model's 2 retries"*) pass "more duplicates than retries";; *) fail "dups > retries: $(v)";; esac
# Sized by time with no email ending inside the window: not a measurement.
printf '{"schema":"mailbench.run/1","emails":3,"delivered":3,"failed":0,"digest":"0000000000000006","maybe_delivered":0,"params":{"duration_s":0.5},"window_delivered":0}' >"$TMP/m.json"
s 3 0000000000000006 0 0
check_eq "sized by time, nothing ended in the window" "invalid: no email ended inside the steady-state window" "$(v)"
printf '{"schema":"mailbench.run/1","emails":3,"delivered":3,"failed":0,"digest":"0000000000000006","maybe_delivered":0,"params":{"duration_s":0.5},"window_delivered":2}' >"$TMP/m.json"
check_eq "sized by time, 2 ended in the window" valid "$(v)"
m 3 3 0 0000000000000006 0 0000000000000000 ""
# Two emails failed after the final '.'; the server holds one of them (hash 5).
m 4 2 2 0000000000000003 2 000000000000000c '"0000000000000005","0000000000000007"'; s 3 0000000000000008 0 1
check_eq "server = delivered + one maybe-delivered (digest subset)" valid "$(v)"
s 3 0000000000000009 0 1
case "$(v)" in "invalid: digest mismatch"*) pass "no subset of the maybe hashes matches";; *) fail "subset: $(v)";; esac
s 5 0000000000000008 0 1
case "$(v)" in "invalid: extra at server"*) pass "more than the maybe-delivered: extra";; *) fail "extra: $(v)";; esac
m 4 2 1 0000000000000003 0 0000000000000000 ""; s 2 0000000000000003 0 0
case "$(v)" in "invalid: unaccounted"*) pass "delivered + failed != emails";; *) fail "unaccounted: $(v)";; esac
/usr/bin/python3 "$H" verify "$TMP/none.json" "$TMP/s.json" >"$TMP/o"; check_eq "no model JSON" "invalid: no model JSON" "$(cat "$TMP/o")"
finish
