#!/usr/bin/env bash
# The fault matrix, bounded subset: every model against smtp-mock injecting
# faults at several stages (combined 4xx/5xx/drop/stall after the final '.',
# a drop before the greeting, a drop mid-DATA, a stall after the final '.' that
# only the client's 1 s timeout ends), retries exhausted by a 4xx on every
# attempt (bounded, with the exponential backoff's lower bound on wall time),
# a refused port, and the server killed with SIGKILL mid-run and restarted on
# the same port.  Each run: every email delivered or failed with a reason,
# delivered = the server's distinct Message-IDs (digest too), duplicates
# counted, within its time limit.  scripts/fault-matrix prints one PASS/FAIL
# line per check; the full matrix is `scripts/fault-matrix` (a few minutes).
source "$(dirname "$0")/common.bash"
MATRIX="$(dirname "$0")/../../scripts/fault-matrix"
# Under ThreadSanitizer only the models with more than one thread (it finds
# nothing in sync's or async's single thread; ASan and the plain run test all).
models=sync,threads,async,hybrid
[ "${MAILBENCH_SANITIZER:-}" = tsan ] && models=threads,hybrid
MAILBENCH_BIN=$BIN timeout 240 /usr/bin/python3 "$MATRIX" --quick --checks --models "$models" >"$TMP/matrix.out" 2>&1
rc=$?
grep -E '^(PASS|FAIL|  command:)' "$TMP/matrix.out"
sed -n '/^fault /,$p' "$TMP/matrix.out"
[ "$rc" -eq 0 ] && pass "fault matrix (quick) ran, exit 0" || fail "fault matrix exit $rc: $(tail -n 3 "$TMP/matrix.out")"
finish
