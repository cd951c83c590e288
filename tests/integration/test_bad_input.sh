#!/usr/bin/env bash
# Bad input to every program: each option of bin/summary-{sync,threads,async,
# hybrid} (and bin/summary-twisted when built) and of bin/smtp-mock given a
# negative, zero-where-invalid, overflowing, wrong-unit or missing value, an
# unknown option, a bad profile (unknown key, bad value, missing file, a
# directory), an unwritable --json / --stats / --maildir: exit status 2, one
# message naming the option (and nothing written to the --json path).  The
# models and the Twisted reference agree (issue 11): --server is read strictly
# (no octal, signs, spaces, empty host, IPv6; a name must resolve; port plain
# decimal 1..65535), an option given twice is an error, --threads 0 is
# refused, and a missing --profile names the option.  Then
# scripts/report-gen on a missing folder, a CSV cut mid-row, a truncated
# runs/*.json and a truncated env.json: exit 2, a clear message, and the -o
# file left as it was.
source "$(dirname "$0")/common.bash"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIG=99999999999999999999

# bad PROG NEEDLE ARGS... — PROG ARGS must exit 2, say NEEDLE on stderr and
# leave $TMP/out.json unwritten.
bad() {
    local prog=$1 needle=$2; shift 2
    rm -f "$TMP/out.json"
    if [ "$prog" = mock ]; then
        # A port of its own choosing, unless --listen is what is tested
        # (smtp-mock refuses an option given twice).
        local listen=(--listen 127.0.0.1:0)
        case " $* " in *" --listen "*) listen=() ;; esac
        timeout 10 "$BIN/smtp-mock" "${listen[@]}" "$@" >"$TMP/stdout" 2>"$TMP/stderr"
    else
        timeout 10 "$prog" "$@" >"$TMP/stdout" 2>"$TMP/stderr"
    fi
    local rc=$? name
    name="$(basename "$prog") $*"
    if [ "$rc" -ne 2 ]; then
        fail "$name: exit $rc, expected 2 ($(head -n 1 "$TMP/stderr"))"
    elif ! grep -qF -- "$needle" "$TMP/stderr"; then
        fail "$name: message does not name '$needle': $(head -n 1 "$TMP/stderr")"
    elif [ "$prog" != mock ] && [ "$(wc -l <"$TMP/stderr")" -ne 2 ]; then
        fail "$name: not one message and the hint: $(tr '\n' '|' <"$TMP/stderr")"
    elif [[ "$needle" != *"given twice"* ]] && grep -q "given twice" "$TMP/stderr"; then
        fail "$name: refused for a repeated option, not for the value under test"
    elif [ -e "$TMP/out.json" ]; then
        fail "$name: wrote the --json file on a usage error"
    else
        pass "$name -> 2: $(head -n 1 "$TMP/stderr")"
    fi
}

printf 'emails = 5\nbogus-key = 1\n' >"$TMP/unknown.conf"
printf 'emails = 5\ntimeout = 10xs\n' >"$TMP/badvalue.conf"
printf 'concurrency = %s\n' "$BIG" >"$TMP/overflow.conf"
printf 'emails 5\n' >"$TMP/syntax.conf"
printf 'latency = 5\n' >"$TMP/srvkey.conf"
printf 'server = 0177.0.0.1:1\n' >"$TMP/octal.conf"
printf 'server = :1\n' >"$TMP/nohost.conf"
printf 'threads = 0\n' >"$TMP/threads0.conf"
printf 'server = localhost:2\n' >"$TMP/server2.conf"
printf 'emails = \351\n' >"$TMP/latin1.conf"         # not UTF-8: a bad value, not a crash
printf 'emails = 1\000\n' >"$TMP/nul.conf"
mkdir -p "$TMP/adir"

# safe OPT — SAFE=the safe values of S without OPT, so that the option under
# test is given once (a second one would be refused as given twice).
safe() {
    local i
    SAFE=()
    for ((i = 0; i < ${#S[@]}; i += 2)); do
        [ "${S[i]}" = "$1" ] || SAFE+=("${S[i]}" "${S[i + 1]}")
    done
}

models=(sync threads async hybrid)
[ -x "$BIN/summary-twisted" ] && models+=(twisted)
for m in "${models[@]}"; do
    P="$BIN/summary-$m"
    # Safe values first (a refused port, one email): a bad value given after
    # them is the one that must be refused before anything runs.
    S=(--server 127.0.0.1:1 --emails 1 --retries 0 --timeout 100ms --json "$TMP/out.json")
    safe --emails
    for v in -1 0 $BIG 10x 1.5; do bad "$P" "--emails: bad value '$v'" "${SAFE[@]}" --emails "$v"; done
    for v in 0 -3 $BIG; do bad "$P" "--concurrency: bad value '$v'" "${S[@]}" --concurrency "$v"; done
    for v in 0 -1 $BIG; do bad "$P" "--recipients: bad value '$v'" "${S[@]}" --recipients "$v"; done
    for v in -1 $BIG 1e3; do bad "$P" "--events: bad value '$v'" "${S[@]}" --events "$v"; done
    for v in -1 1T 10xB 1GB; do bad "$P" "--body-bytes: bad value '$v'" "${S[@]}" --body-bytes "$v"; done
    for v in 0 -2; do bad "$P" "--per-session: bad value '$v'" "${S[@]}" --per-session "$v"; done
    for v in 0 $BIG; do bad "$P" "--chain: bad value '$v'" "${S[@]}" --chain "$v"; done
    for v in 5 -1ms 10xs 2h; do bad "$P" "--blocking: bad value '$v'" "${S[@]}" --blocking "$v"; done
    safe --retries
    for v in -1 $BIG; do bad "$P" "--retries: bad value '$v'" "${SAFE[@]}" --retries "$v"; done
    safe --timeout
    for v in 0 10xs -1s 10 ${BIG}s; do bad "$P" "--timeout: bad value '$v'" "${SAFE[@]}" --timeout "$v"; done
    for v in -1 $BIG; do bad "$P" "--seed: bad value '$v'" "${S[@]}" --seed "$v"; done
    # --server (issue 11 #13): every address read as written.  0177.0.0.1 and
    # 127.0.0.01 are 127.0.0.1 to getaddrinfo (octal; 0127.0.0.1 would be
    # 87.0.0.1): they must be refused, not reach the loopback's port 1.
    safe --server
    for v in nohost 127.0.0.1:70000 127.0.0.1:0 300.1.1.1:25 127.0.0.1: \
             0177.0.0.1:1 127.0.0.01:1 +127.0.0.1:1 " 127.0.0.1:1" "127.0.0.1 :1" 127.1:1 \
             0x7f000001:1 2130706433:1 127.0.0.1:+1 127.0.0.1:01 "127.0.0.1: 1" 127.0.0.1:1x \
             "127.0.0.1:1 " 127.0.0.1:1k 127.0.0.1:65536 127.0.0.1:-0 :1 "[::1]:1" ::1:1 a_b:1 \
             -a.example:1 a..b:1; do
        bad "$P" "--server: bad value '$v'" "${SAFE[@]}" --server "$v"
    done
    bad "$P" "no IPv6" "${SAFE[@]}" --server "[::1]:1"
    # A well-formed name that does not resolve (RFC 6761 .invalid): refused
    # at start, once, instead of every email failing on a resolver error.
    bad "$P" "--server: cannot resolve 'no-such-host.invalid'" "${SAFE[@]}" --server no-such-host.invalid:1
    bad "$P" "bad value '0177.0.0.1:1' for 'server'" "${SAFE[@]}" --profile "$TMP/octal.conf"
    bad "$P" "bad value ':1' for 'server'" "${SAFE[@]}" --profile "$TMP/nohost.conf"
    # An option given twice (issue 11 #15): an error, whatever the option.
    safe --emails
    bad "$P" "--emails given twice ('1' and '2')" "${SAFE[@]}" --emails 1 --emails=2
    bad "$P" "--server given twice ('127.0.0.1:1' and 'localhost:1')" "${S[@]}" --server localhost:1
    bad "$P" "--json given twice" "${S[@]}" --json "$TMP/out.json"
    bad "$P" "--progress given twice" "${S[@]}" --progress --progress
    bad "$P" "--profile given twice" "${S[@]}" --profile "$TMP/octal.conf" --profile "$TMP/octal.conf"
    # --threads 0 (issue 11 #15): refused by every model, each saying why.
    case $m in
    threads|hybrid) bad "$P" "--threads: bad value '0'" "${S[@]}" --threads 0 ;;
    *) bad "$P" "--threads 0: not used by summary-$m" "${S[@]}" --threads 0 ;;
    esac
    bad "$P" "threads" "${S[@]}" --profile "$TMP/threads0.conf"
    # A flag overrides the profile's key: not "given twice" (the port is refused: exit 3).
    timeout 10 "$P" "${S[@]}" --profile "$TMP/server2.conf" >/dev/null 2>"$TMP/stderr"
    check_eq "$m: --server over the profile's server, run (exit 3)" 3 "$?"
    check_eq "$m: --server over the profile's server, the flag's" "127.0.0.1:1" \
        "$(jq -r .params.server "$TMP/out.json" 2>/dev/null)"
    # Accepted: localhost, and a name looked up at start (exit 3: the port is refused).
    safe --server
    for v in localhost:1 127.0.0.1:1; do
        timeout 10 "$P" "${SAFE[@]}" --server "$v" >/dev/null 2>"$TMP/stderr"
        check_eq "$m --server $v: accepted, the port refused" 3 "$?"
    done
    rm -f "$TMP/out.json"
    bad "$P" "--bogus" "${S[@]}" --bogus
    bad "$P" "--latency" "${S[@]}" --latency 5ms        # a server key, not a flag
    bad "$P" "--emails: missing value" "${S[@]}" --emails
    bad "$P" "--progress" "${S[@]}" --progress=1
    bad "$P" "bogus-key" "${S[@]}" --profile "$TMP/unknown.conf"
    bad "$P" "10xs" "${S[@]}" --profile "$TMP/badvalue.conf"
    bad "$P" "$BIG" "${S[@]}" --profile "$TMP/overflow.conf"
    bad "$P" "key = value" "${S[@]}" --profile "$TMP/syntax.conf"
    bad "$P" "latin1.conf:1: bad value" "${S[@]}" --profile "$TMP/latin1.conf"
    bad "$P" "nul.conf: not a text file" "${S[@]}" --profile "$TMP/nul.conf"
    bad "$P" "'5'" "${S[@]}" --profile "$TMP/srvkey.conf"
    # Issue 11 #14: a bad --profile names the option and the file, in every model.
    bad "$P" "--profile: cannot read '/nonexistent/p.conf'" "${S[@]}" --profile /nonexistent/p.conf
    bad "$P" "--profile: '$TMP/adir' is a directory" "${S[@]}" --profile "$TMP/adir"
    if [ "$(id -u)" -ne 0 ]; then
        printf 'emails = 5\n' >"$TMP/noread.conf"; chmod 000 "$TMP/noread.conf"
        bad "$P" "--profile: cannot read" "${S[@]}" --profile "$TMP/noread.conf"
    fi
    safe --emails
    bad "$P" "--emails: missing value (got the option '--seed')" "${SAFE[@]}" --emails --seed 3
    safe --json
    bad "$P" "--json: cannot write '/nonexistent/d/x.json'" "${SAFE[@]}" --json /nonexistent/d/x.json
    bad "$P" "--json: '$TMP/adir' is a directory" "${SAFE[@]}" --json "$TMP/adir"
    if [ "$m" = twisted ]; then
        bad "$P" "--rate" "${S[@]}" --rate -1
        bad "$P" "--threads 4: not used by summary-twisted" "${S[@]}" --threads 4
        continue
    fi
    for v in -1 10xs $BIG; do bad "$P" "--rate: bad value '$v'" "${S[@]}" --rate "$v"; done
    case $m in
    sync|async) bad "$P" "--threads 4: not used by summary-$m" "${S[@]}" --threads 4 ;;
    *) for v in -1 0 $BIG; do bad "$P" "--threads: bad value '$v'" "${S[@]}" --threads "$v"; done ;;
    esac
done

# smtp-mock: every option with a bad value exits 2 before listening (on a
# port of its own choosing, should one be wrongly accepted).
M=mock
for v in -1ms 10xs 10 ${BIG}s; do bad "$M" "--latency" --latency "$v"; done
for v in -1ms 10xs; do bad "$M" "--jitter" --jitter "$v"; done
bad "$M" "--latency-dist" --latency-dist pareto
for v in -1 $BIG 1.5; do bad "$M" "--seed" --seed "$v"; done
for o in tempfail permfail drop stall; do
    for v in -0.1 1.5 200% 0.1%% x; do bad "$M" "--$o" "--$o" "$v"; done
done
bad "$M" "add up to more than 1" --tempfail 0.6 --drop 0.3 --stall 0.2
bad "$M" "--fault-stage" --fault-stage helo
bad "$M" "--permfail cannot be used with --fault-stage body" --fault-stage body --permfail 0.1
for v in 0 -1 $BIG; do bad "$M" "--max-conns" --max-conns "$v"; done
for v in 0 -1 1T 10XB; do bad "$M" "--max-size" --max-size "$v"; done
for v in 0 -1 $BIG; do bad "$M" "--max-rcpts" --max-rcpts "$v"; done
for v in -1s 5 10xs; do bad "$M" "--idle-timeout" --idle-timeout "$v"; done
# --listen: an IPv4 address as inet_pton reads it (no leading zero, sign or
# space), or localhost; a port of digits only.  The message names both.
for v in nowhere 127.0.0.1:70000 127.0.0.1:-1 999.0.0.1:0 0127.0.0.1:0 +127.0.0.1:0 " 127.0.0.1:0" \
         127.0.0.01:0 127.1:0 127.0.0.1:+25 "127.0.0.1: 25" 127.0.0.1:2k 127.0.0.1 :; do
    bad "$M" "invalid --listen value '$v'" --listen "$v"
done
# --hostname: letters, digits, '-' and '.', at most 255, or an address
# literal; anything else would break the replies or the stats JSON.
long=$(head -c 1000 /dev/zero | tr '\0' a)
for v in "two words" 'a"b' 'a\b' "$(printf 'a\tb')" "$long" "" "[300.0.0.1]" "[IPv6:zz]" "a_b" "a..b"; do
    bad "$M" "invalid --hostname value '$v'" --hostname "$v"
done
# An option given twice is refused, not silently the last one.
bad "$M" "--latency given twice" --latency 1ms --latency 2ms
bad "$M" "--hostname given twice" --hostname a --hostname b
bad "$M" "--listen given twice" --listen 127.0.0.1:0 --listen 127.0.0.1:0
bad "$M" "--stats given twice" --stats "$TMP/s1.json" --stats "$TMP/s2.json"
bad "$M" "--stats" --stats /nonexistent/d/s.json
bad "$M" "--stats" --stats "$TMP/adir"
bad "$M" "--maildir" --maildir /nonexistent/d
bad "$M" "--maildir" --maildir "$TMP/unknown.conf"
bad "$M" "--bogus" --bogus
bad "$M" "--latency" --latency
bad "$M" "extra" extra

# report-gen: a missing or half-written folder never gives a report.
GEN="$ROOT/scripts/report-gen"
FIX="$ROOT/tests/fixtures/report/results"
rg_bad() {            # rg_bad WHAT NEEDLE FOLDER
    echo "KNOWN CONTENT" >"$TMP/REPORT.md"
    timeout 60 "$GEN" "$3" --no-plots -o "$TMP/REPORT.md" >/dev/null 2>"$TMP/rg.err"
    local rc=$?
    if [ "$rc" -eq 2 ] && grep -qF -- "$2" "$TMP/rg.err" && [ "$(cat "$TMP/REPORT.md")" = "KNOWN CONTENT" ]; then
        pass "report-gen, $1 -> 2, -o untouched: $(head -n 1 "$TMP/rg.err")"
    else
        fail "report-gen, $1: exit $rc, '$(head -n 1 "$TMP/rg.err")', -o $(head -c 40 "$TMP/REPORT.md")"
    fi
}
if [ -d "$FIX" ]; then
    rg_bad "missing folder" "no such results folder" "$TMP/no-such-folder"
    cp -r "$FIX" "$TMP/cut"
    f="$TMP/cut/q1-concurrency.csv"; head -c $(( $(stat -c %s "$f") - 9 )) "$f" >"$TMP/x" && mv "$TMP/x" "$f"
    rg_bad "CSV cut mid-row" "q1-concurrency.csv is half-written" "$TMP/cut"
    cp -r "$FIX" "$TMP/short"
    f="$TMP/short/q2-cpu.csv"; awk -F, 'NR == 3 { NF = 6; OFS = "," } { print }' "$f" >"$TMP/x" && mv "$TMP/x" "$f"
    rg_bad "CSV row with too few fields" "q2-cpu.csv:3: too few fields" "$TMP/short"
    cp -r "$FIX" "$TMP/runs"
    f=$(ls "$TMP/runs/runs/"*.json | head -n 1); head -c 150 "$f" >"$TMP/x" && mv "$TMP/x" "$f"
    rg_bad "truncated runs/*.json" "not valid JSON" "$TMP/runs"
    cp -r "$FIX" "$TMP/env"
    head -c 200 "$FIX/env.json" >"$TMP/env/env.json"
    rg_bad "truncated env.json" "env.json: not valid JSON" "$TMP/env"
    cp -r "$FIX" "$TMP/empty"; : >"$TMP/empty/q3-chain.csv"
    timeout 60 "$GEN" "$TMP/empty" --no-plots -o "$TMP/e.md" >/dev/null 2>&1
    rc=$?; [ "$rc" -ne 0 ] || grep -q "q3" "$TMP/e.md" && pass "report-gen, empty CSV: exit $rc" \
        || fail "report-gen, empty CSV: exit 0 and no q3 mention"
else
    fail "fixture $FIX missing"
fi
finish
