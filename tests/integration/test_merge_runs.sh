#!/usr/bin/env bash
# scripts/merge-runs (scripts/mbmerge.py): K load generators' run JSONs into
# one run.  (1) The percentiles, mean and tail share it recomputes from merged
# histogram buckets equal what lib/hist.c computes for the union of the
# samples (hist_merge + hist_percentile), on random histograms written
# by build/.../tests/test_hist_json.  (2) One real run merged alone keeps
# every figure the C code wrote.  (3) Two models sending to one smtp-mock
# (seeds 1 and 2, distinct Message-IDs) merge into a run the sweeps' rule
# verifies; one of the two alone does not; mismatched inputs are refused.
source "$(dirname "$0")/common.bash"
ROOTDIR=$(cd "$(dirname "$0")/../.." && pwd)
MERGE="$ROOTDIR/scripts/merge-runs"
BUILDDIR=${MAILBENCH_BUILD:-$ROOTDIR/build/release}

if [ -x "$BUILDDIR/tests/test_hist_json" ]; then
    mkdir -p "$TMP/hist"
    MAILBENCH_HIST_DUMP="$TMP/hist" "$BUILDDIR/tests/test_hist_json" >"$TMP/hist.out" 2>&1 \
        || { fail "test_hist_json dump"; cat "$TMP/hist.out"; }
    out=$(/usr/bin/python3 - "$TMP/hist" "$ROOTDIR/scripts" <<'PY'
import glob, json, os, sys
sys.path.insert(0, sys.argv[2])
import mbmerge
cases = sorted(glob.glob(os.path.join(sys.argv[1], "case*-union.txt")))
bad = 0
for u in cases:
    stem = u[:-len("-union.txt")]
    hs = [json.load(open(f"{stem}-{k}.json"))["latency_hist"] for k in (1, 2, 3)]
    m = mbmerge.merge_hists(hs)
    got = {}
    for q in (0.1, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100):
        got["p%g" % q] = str(mbmerge.percentile(m, q))
    got["mean"] = "%.1f" % mbmerge.mean(m)
    got["share10x"] = "%.6f" % mbmerge.share_above(m, 10 * mbmerge.percentile(m, 50))
    got["count"] = str(m["count"])
    want = dict(line.split() for line in open(u))
    for k, v in want.items():
        if got.get(k) != v:
            bad += 1
            print(f"{os.path.basename(stem)} {k}: C {v}, merge-runs {got.get(k)}")
print(f"{len(cases)} cases, {bad} differences")
PY
)
    case "$out" in
        "15 cases, 0 differences") pass "merged buckets give C's percentiles of the union ($out)" ;;
        *) fail "merged histograms: $out" ;;
    esac
else
    fail "no $BUILDDIR/tests/test_hist_json (make test builds it)"
fi

# Two load generators against one server.
start_mock srv --latency 2ms || fail "smtp-mock did not start"
for k in 1 2; do
    timeout 60 "$BIN/summary-async" --server "127.0.0.1:$srv_PORT" --emails $((100 + k)) \
        --concurrency 5 --seed $k --json "$TMP/c$k.json" 2>"$TMP/c$k.err" &
    PIDS+=($!)
done
wait "${PIDS[-1]}" "${PIDS[-2]}"
stop_pid "$srv_PID"
"$MERGE" --hosts a,b -o "$TMP/merged.json" --verify "$srv_STATS" "$TMP/c1.json" "$TMP/c2.json" 2>"$TMP/v"
check_eq "two generators merged: verified against the server" "0 valid" "$? $(cat "$TMP/v")"
check_eq "merged delivered = 101 + 102" 203 "$(json_get "$TMP/merged.json" delivered)"
check_eq "merged concurrency = 5 + 5" 10 "$(jq .params.concurrency "$TMP/merged.json")"
check_eq "per-host CPU kept as a list" "a b" "$(jq -r '[.hosts[].host] | join(" ")' "$TMP/merged.json")"
check_eq "latency samples = the window's deliveries" "$(json_get "$TMP/merged.json" window_delivered)" \
    "$(jq .latency_hist.count "$TMP/merged.json")"
"$MERGE" --verify "$srv_STATS" "$TMP/c1.json" >/dev/null 2>"$TMP/v"
case "$?:$(cat "$TMP/v")" in 1:"invalid: extra at server"*) pass "one generator alone: invalid (the server has the other's too)" ;; *) fail "one alone: $(cat "$TMP/v")" ;; esac

# One run merged alone: every figure as the C code wrote it.
"$MERGE" "$TMP/c1.json" >"$TMP/one.json"
for f in p50_us p90_us p99_us p999_us max_us mean_us over_10x_median_share service_p50_us \
         service_p99_us service_p999_us digest delivered emails_per_s cpu_per_email_us; do
    check_eq "a run merged alone keeps $f" "$(jq -c ".$f" "$TMP/c1.json")" "$(jq -c ".$f" "$TMP/one.json")"
done

# The Twisted reference writes the same buckets from its exact samples: its
# run merged alone has its count, min, max and a p99 within a bucket (0.4%).
if /usr/bin/python3 -c 'import twisted.mail.smtp' 2>/dev/null && [ -x "$BIN/summary-twisted" ]; then
    start_mock tw --latency 1ms || fail "smtp-mock did not start"
    timeout 60 "$BIN/summary-twisted" --server "127.0.0.1:$tw_PORT" --emails 60 --concurrency 4 \
        --events 10 --json "$TMP/tw.json" 2>"$TMP/tw.err"
    stop_pid "$tw_PID"
    "$MERGE" "$TMP/tw.json" >"$TMP/tw1.json" 2>"$TMP/e"
    check_eq "twisted: merged alone" 0 "$?"
    check_eq "twisted: buckets hold its window's emails, min and max exact" \
        "$(jq -c '[.window_delivered, (.max_us|tostring)]' "$TMP/tw.json")" \
        "$(jq -c '[.latency_hist.count, (.latency_hist.max|tostring)]' "$TMP/tw.json")"
    check_eq "twisted: p99 from the buckets within 0.4% of its exact p99" true \
        "$(jq -n --slurpfile a "$TMP/tw.json" --slurpfile b "$TMP/tw1.json" \
            '(($a[0].p99_us - $b[0].p99_us) | fabs) <= 0.004 * $a[0].p99_us + 1')"
else
    echo "SKIP twisted buckets: no python3-twisted"
fi

# Inputs that cannot be merged.
jq '.model = "sync"' "$TMP/c2.json" >"$TMP/sync.json"
"$MERGE" "$TMP/c1.json" "$TMP/sync.json" >/dev/null 2>"$TMP/e"
check_eq "different models refused (exit 1)" "1 merge-runs: input 2: model 'sync' differs from input 1's 'async'" "$? $(cat "$TMP/e")"
jq 'del(.latency_hist)' "$TMP/c2.json" >"$TMP/old.json"
"$MERGE" "$TMP/c1.json" "$TMP/old.json" >/dev/null 2>"$TMP/e"
case "$?:$(cat "$TMP/e")" in 1:*"no histogram"*) pass "a JSON without buckets refused" ;; *) fail "no buckets: $(cat "$TMP/e")" ;; esac
"$MERGE" --hosts a "$TMP/c1.json" "$TMP/c2.json" >/dev/null 2>&1
check_eq "--hosts of the wrong length: usage error" 2 "$?"
finish
