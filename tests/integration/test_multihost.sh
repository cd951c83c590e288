#!/usr/bin/env bash
# Client and server apart, one and two load generators (issue 17), on this
# machine: three network namespaces joined by veth pairs, private test
# addresses inside them only (10.213.0.0/24; nothing is added to the host's
# own interfaces), smtp-mock in one, the models in the others, run by
# scripts/sweep through its host mechanism:
#   (a) netns:NS hosts, one load generator: the server listens on
#       10.213.0.1 in its namespace, the model connects from another; the
#       run verifies against the server's stats fetched back;
#   (b) ssh:HOST hosts (MAILBENCH_SSH = a stand-in for ssh that runs the
#       command in the namespace named HOST, so the sweep's whole ssh path
#       runs: remote temp dirs, the pid file, kill by remote pid, stats and
#       JSON read back with cat), two load generators: shares of the emails
#       and concurrency, distinct seeds, --start-at, merged, verified;
#   (c) the same with runs sized by time ({window});
#   (d) a server address that is not there: the sweep says so, exit 1.
# Needs root and `ip netns`: otherwise SKIP (passes).  The namespaces and
# every process in them are removed on exit, failure and signals included.
source "$(dirname "$0")/common.bash"
ROOTDIR=$(cd "$(dirname "$0")/../.." && pwd)
SWEEP="$ROOTDIR/scripts/sweep"
T0=$(date +%s%N)
LAB=mbt$$ S=mbt$$-srv C1=mbt$$-c1 C2=mbt$$-c2
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null || ! ip netns add "$LAB-probe" 2>"$TMP/ns.err"; then
    echo "SKIP multihost: cannot create network namespaces here (needs root and ip netns: $(cat "$TMP/ns.err" 2>/dev/null))"
    exit 0
fi
ip netns del "$LAB-probe"
trap '"$ROOTDIR/scripts/netns-lab" down "$LAB"; cleanup' EXIT
# The topology (scripts/netns-lab): S:s1 10.213.0.1/30 <-> C1:c1 10.213.0.2/30;
# S:s2 10.213.0.5/30 <-> C2:c2 10.213.0.6/30, C2 reaching 10.213.0.1 through .5.
"$ROOTDIR/scripts/netns-lab" up "$LAB" >"$TMP/lab.out" 2>&1 || { fail "netns-lab up: $(cat "$TMP/lab.out")"; finish; }
pass "three namespaces joined by veth pairs"
ip -4 -o addr show | grep -q '10\.213\.' && fail "a test address leaked onto the host" \
    || pass "no 10.213.0.0/24 address outside the namespaces"

# ssh stand-in: "ssh [-o OPT]... HOST COMMAND..." runs COMMAND with sh in the namespace HOST.
cat >"$TMP/fake-ssh" <<'SH'
#!/bin/sh
while [ "$1" = "-o" ]; do shift 2; done
host=$1; shift
exec ip netns exec "$host" sh -c "$*"
SH
chmod +x "$TMP/fake-ssh"

cat >"$TMP/mh.conf" <<'CONF'
question = 1
title = multihost test
param = concurrency
unit = emails in flight
values = 6
models = async
server = --latency 1ms
model = --concurrency {x} --emails {emails} --events 20 --retries 0 --seed {seed}
emails = 41
timeout = 30
verdict_reps = 1
CONF

csv_col() { /usr/bin/python3 -c 'import csv,sys; print(" ".join(r[sys.argv[2]] for r in csv.DictReader(open(sys.argv[1]))))' "$@"; }

# (a) one load generator in C1, the server in S
"$SWEEP" --out "$TMP/a" --reps 1 --bin "$BIN" --server-host "netns:$S" --server-addr 10.213.0.1 \
    --clients "netns:$C1" "$TMP/mh.conf" >/dev/null 2>"$TMP/a.err"
check_eq "(a) netns: sweep exit" 0 "$?"
check_eq "(a) both runs (warm-up + 1) valid" "1 1" "$(csv_col "$TMP/a/mh.csv" valid)"
check_eq "(a) delivered" "41 41" "$(csv_col "$TMP/a/mh.csv" delivered)"
check_eq "(a) the server saw the emails" "41 41" "$(csv_col "$TMP/a/mh.csv" srv_unique_messages)"
R="$TMP/a/runs/mh-0002.json"
case "$(jq -r .server_command "$R")" in "ip netns exec $S "*"--listen 10.213.0.1:"*) pass "(a) server ran in $S on 10.213.0.1" ;;
    *) fail "(a) server command: $(jq -r .server_command "$R")" ;; esac
case "$(jq -r .command "$R")" in "ip netns exec $C1 "*"--server 10.213.0.1:"*) pass "(a) model ran in $C1 against 10.213.0.1" ;;
    *) fail "(a) model command: $(jq -r .command "$R")" ;; esac
check_eq "(a) env per host: the server's namespace has 10.213.0.1" 1 \
    "$(jq '.addresses | test("10\\.213\\.0\\.1/30")' "$TMP/a/env-server.json" | grep -c true)"
check_eq "(a) env.json names the hosts" "netns:$S netns:$C1" "$(jq -r '[.hosts.server, .hosts.clients[0]] | join(" ")' "$TMP/a/env.json")"
[ -z "$(ip netns pids "$S")$(ip netns pids "$C1")" ] && pass "(a) nothing left running in the namespaces" \
    || fail "(a) processes left: $(ip netns pids "$S") $(ip netns pids "$C1")"

# (b) two load generators over "ssh" (the stand-in), the server in S; async and sync
ls -d /tmp/mailbench-client-* /tmp/mailbench-server-* 2>/dev/null | sort >"$TMP/tmpdirs.before"
sed -i 's/^models = async$/models = async sync/' "$TMP/mh.conf"
MAILBENCH_SSH="$TMP/fake-ssh" "$SWEEP" --out "$TMP/b" --reps 1 --bin "$BIN" --server-host "ssh:$S" \
    --server-addr 10.213.0.1 --clients "ssh:$C1,ssh:$C2" "$TMP/mh.conf" >/dev/null 2>"$TMP/b.err"
check_eq "(b) ssh, async and sync: sweep exit" 0 "$?"
check_eq "(b) every run valid (merged counts and digest = the server's)" "1 1 1" "$(csv_col "$TMP/b/mh.csv" valid)"
check_eq "(b) merged delivered" "41 41 41" "$(csv_col "$TMP/b/mh.csv" delivered)"
R=$(grep -l '"model_name": "async"' "$TMP"/b/runs/mh-*.json | tail -n 1)
check_eq "(b) shares of the emails" "21 20" "$(jq -r '[.clients[].delivered] | join(" ")' "$R")"
check_eq "(b) shares of the concurrency, summed" "3 3 6" "$(jq -r '[.clients[].params.concurrency, .model.params.concurrency] | join(" ")' "$R")"
check_eq "(b) distinct seeds" "1 2" "$(jq -r '[.clients[].params.seed] | join(" ")' "$R")"
check_eq "(b) CPU per host kept" "ssh:$C1 ssh:$C2" "$(jq -r '[.model.hosts[].host] | join(" ")' "$R")"
check_eq "(b) one start time for both" 1 "$(jq -r .command "$R" | grep -o -- '--start-at [0-9]*' | sort -u | wc -l)"
case "$(jq -r .command "$R")" in "$TMP/fake-ssh -o BatchMode=yes $C1 "*) pass "(b) the clients ran over ssh" ;;
    *) fail "(b) client command: $(jq -r .command "$R" | head -c 300)" ;; esac
check_eq "(b) merged latency samples = the window's emails" "$(jq .model.window_delivered "$R")" "$(jq .model.latency_hist.count "$R")"
ls -d /tmp/mailbench-client-* /tmp/mailbench-server-* 2>/dev/null | sort >"$TMP/tmpdirs.after"
check_eq "(b) the hosts' temp dirs removed" "" "$(comm -13 "$TMP/tmpdirs.before" "$TMP/tmpdirs.after")"
[ -z "$(ip netns pids "$S")$(ip netns pids "$C1")$(ip netns pids "$C2")" ] && pass "(b) nothing left running" \
    || fail "(b) processes left"

# (c) sized by time, two load generators in namespaces
sed -i 's/^model = .*/model = --concurrency {x} {window} --events 20 --retries 0 --seed {seed}/; s/^models = .*/models = threads/' "$TMP/mh.conf"
printf 'warmup = 0.1s\nduration = 0.3s\n' >>"$TMP/mh.conf"
"$SWEEP" --out "$TMP/c" --reps 1 --bin "$BIN" --server-host "netns:$S" --server-addr 10.213.0.1 \
    --clients "netns:$C1,netns:$C2" "$TMP/mh.conf" >/dev/null 2>"$TMP/c.err"
check_eq "(c) by time: sweep exit" 0 "$?"
check_eq "(c) valid" "1 1" "$(csv_col "$TMP/c/mh.csv" valid)"
R="$TMP/c/runs/mh-0002.json"
check_eq "(c) threads split 3 + 3" "3 3" "$(jq -r '[.clients[].params.threads] | join(" ")' "$R")"
check_eq "(c) merged rate = the sum of the generators'" 1 \
    "$(jq '(.model.emails_per_s - ([.clients[].emails_per_s] | add) | fabs) < 0.01' "$R" | grep -c true)"

# (c, continued) one email in flight with two load generators: the first alone takes it
sed -i 's/^values = .*/values = 1/; s/^models = .*/models = async/' "$TMP/mh.conf"
"$SWEEP" --out "$TMP/c1" --reps 1 --bin "$BIN" --server-host "netns:$S" --server-addr 10.213.0.1 \
    --clients "netns:$C1,netns:$C2" "$TMP/mh.conf" >/dev/null 2>"$TMP/c1.err"
check_eq "(c) concurrency 1, two generators: exit" 0 "$?"
check_eq "(c) concurrency 1: valid" "1 1" "$(csv_col "$TMP/c1/mh.csv" valid)"
check_eq "(c) concurrency 1: run by the first generator alone" "1 null" \
    "$(jq -r '[(.command | split("\n") | length), .clients] | map(tostring) | join(" ")' "$TMP/c1/runs/mh-0002.json")"

# (d) the server cannot listen on an address its host does not have
"$SWEEP" --out "$TMP/d" --reps 1 --bin "$BIN" --server-host "netns:$S" --server-addr 10.213.0.99 \
    --clients "netns:$C1" "$TMP/mh.conf" >/dev/null 2>"$TMP/d.err"
check_eq "(d) no such server address: exit 1" 1 "$?"
grep -q "smtp-mock did not start" "$TMP/d.err" && pass "(d) says the server did not start" \
    || fail "(d) message: $(tail -n 2 "$TMP/d.err")"
"$SWEEP" --dry-run --server-host "netns:$S" "$TMP/mh.conf" >/dev/null 2>"$TMP/e.err"
check_eq "(e) --server-host without --server-addr: usage error" 2 "$?"
"$SWEEP" --dry-run --clients "ftp:x" "$TMP/mh.conf" >/dev/null 2>"$TMP/e.err"
check_eq "(e) a bad host: usage error" "2 sweep: bad host 'ftp:x': expected local, ssh:HOST or netns:NS" "$? $(cat "$TMP/e.err")"

ms=$(( ($(date +%s%N) - T0) / 1000000 ))
echo "multihost: run time $((ms / 1000)).$(printf %03d $((ms % 1000)))s"
finish
