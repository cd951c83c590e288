#!/usr/bin/env bash
# The teaching sections of report-gen (scripts/report_teaching.py) on the
# fixture, its code read from git at this checkout's HEAD: the isolated
# questions 3, 4 and 7 with their verdicts computed from the data; the trace
# timeline in callback order; the three ways of one step; the unhandled-error
# log; the microbenchmark; the single-thread ceiling; the one-email parity;
# the map with every idea shown.  Without traces/, each section that needs
# them says so and the map names what is not shown.
. "$(dirname "$0")/common.bash"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cp -r "$ROOT/tests/fixtures/report/results" "$TMP/res"
rm -rf "$TMP/res/code"
jq --arg r "$(git -C "$ROOT" rev-parse HEAD)" '.git_rev = $r' "$ROOT/tests/fixtures/report/results/env.json" >"$TMP/res/env.json"
"$ROOT/scripts/report-gen" "$TMP/res" --no-plots -o "$TMP/r.md" 2>"$TMP/err"
check_eq "report-gen exit status" 0 $?
R="$TMP/r.md"
has() { if grep -qE -- "$2" "$R"; then pass "$1"; else fail "$1: no /$2/"; fi; }
for s in "## A\. What async" "## B\. A Deferred" "## C\. Errbacks" "## D\. Concurrency without" \
         "## E\. Readability" "## F\. The actual job" "## What shows each idea"; do has "section $s" "^$s"; done
# Q3: the join table and one verdict from both sweeps (fixture: async loses 40% x 100/110 with the join).
has "q3b table" '^\| 100 \| 105 .*\| 8,042 '
has "q3 isolated verdict" '^\*\*Verdict \(question 3, isolated\):\*\* .*chains of 1: async ÷ threads ×[0-9.]+ \[.*Joined: .*async ×0\.6[0-9]+ \[.*\(slower\)'
# Q4: where the blocking call runs, the pool table, the verdict with Twisted's default of 10.
has "q4 where-table" '^\| hybrid --blocking-in-pool \| in a pool thread, through `threadpool_defer_to_thread`'
has "q4b rows" '^\| 10 \| 103 '
has "q4b reference rows" '^\| async, call in the reactor \(question 4, 10ms\) \| 21,299'
has "q4b verdict" '^\*\*Verdict \(deferToThread\):\*\* .*best p99 is 49\.3 ms with 20 threads \(103 ms with Twisted.s default 10\)'
# Q7: the two new faults, the errback path per failure reason, a verdict in shares.
has "q7b table" '^\| 0\.1 \| async \| 400 \| 0 \| 80 \| 8 \|'
has "q7c path, async" '^\| async \| `connect to 127\.0\.0\.1:40000: Connection refused` \| 3 \| `smtp_session_open`.s Deferred fails → errback `maybe_retry`'
has "q7c path, threads" '^\| threads \| `connect.*` \| 3 \| `smtp_blocking_connect` returns -1'
has "q7 verdict" '^\*\*Verdict \(timeouts and outages\):\*\* with stalls at 0\.1, lost sync 0%.*with refusals at 1s, lost sync 0%, threads 0\.75%, async 0\.75%.*differ by more than a percentage point'
# A: email 0's callbacks in chain order, the sent/reply rows, reactor turns meanwhile.
order=$(sed -n '/^## A\./,/^## B\./p' "$R" | grep -o 'callback `[a-z_]*` starts' | sed 's/callback `\(.*\)` starts/\1/' | paste -sd' ')
check_eq "A: email 0's callbacks in order" "send_email send_on_session stamp_reply release_session resume_result delivered email_end" "$order"
has "A: reply row with the reactor's turns meanwhile" '^\| [0-9.]+ \| \*\*reply\*\*: 250 \| [0-9]+ turns?'
has "A: the sync timeline" '^\| [0-9.]+ \| wait for the replies to MAIL, RCPT, DATA and the message \| [0-9.]+ \|'
# B, C, E: the quoted code (checked line by line in test_excerpts.sh).
for q in '\*\*blocking\*\* — \[models/mailer/blocking_mailer.c line' '\*\*callback\*\* — \[lib/smtp_session.c line' \
         '\*\*Deferred chain\*\* — \[models/mailer/async_mailer.c line' '\*\*recover\*\* — ' '\*\*retry errback\*\* — ' \
         '\*\*the Twisted reference\*\* — \[models/reference/twisted_summary.py'; do has "quote $q" "^$q"; done
has "B: the microbenchmark" '^\| ns per callback in a chain \| 9\.50 \| 1180\.00 \| ×124 \|'
has "C: the unhandled-error log" '^smtp\.PermFail: 554'
has "C: the retry errback's counts" 'maybe_retry` ran [0-9]+ times as an errback; [0-9]+ times it returned a Deferred'
has "D: the single-thread ceiling" 'at most 1 s ÷ 20,030 µs = \*\*49\.9 emails/s\*\*'
has "F: parity numbers" 'At concurrency 1 the fastest and the slowest model are [0-9.]+% apart'
missing=$(sed -n '/^## What shows each idea/,$p' "$R" | grep -c 'nothing in this results folder')
check_eq "map: every idea shown" 0 "$missing"
check_eq "map: ten ideas" 10 "$(sed -n '/^## What shows each idea/,$p' "$R" | grep -c '^| [A-Z]')"

# Without traces/: the sections say so; the map lists what is not shown.
rm -rf "$TMP/res/traces"
"$ROOT/scripts/report-gen" "$TMP/res" --no-plots -o "$TMP/nt.md" 2>/dev/null
check_eq "report-gen without traces" 0 $?
if grep -q "No traces in this results folder" "$TMP/nt.md" && grep -q "Deferred microbenchmark is not measured" "$TMP/nt.md" \
    && grep -q "No unhandled-error log in this results folder" "$TMP/nt.md"; then
    pass "missing traces said"; else fail "missing traces not said"; fi
if grep -q '^| What a reactor is | \*\*nothing in this results folder\*\* |' "$TMP/nt.md" \
    && grep -q '^\*Not shown by this results folder: .*What a reactor is' "$TMP/nt.md"; then
    pass "map names the idea not shown"; else fail "map without traces"; fi
finish
