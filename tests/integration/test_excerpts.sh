#!/usr/bin/env bash
# Every code excerpt in a generated report equals `git show REV:path` at the
# results' revision: report-gen on the fixture with its git_rev set to this
# checkout's HEAD (and no legacy code/ copy, so the code is read from git),
# then scripts/check-excerpts on the report.  The checker itself must catch a
# changed line, a wrong line number and a block that names no source.
. "$(dirname "$0")/common.bash"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
REV=$(git -C "$ROOT" rev-parse HEAD)
cp -r "$ROOT/tests/fixtures/report/results" "$TMP/res"
rm -rf "$TMP/res/code"
jq --arg r "$REV" '.git_rev = $r | .git_dirty = false' "$ROOT/tests/fixtures/report/results/env.json" >"$TMP/res/env.json"
"$ROOT/scripts/report-gen" "$TMP/res" --no-plots -o "$TMP/r.md" 2>"$TMP/gen.err"
check_eq "report-gen exit status" 0 $?
"$ROOT/scripts/check-excerpts" "$TMP/r.md" "$REV" >"$TMP/check.out"
check_eq "every excerpt equals git show $REV:path" 0 $?
n=$(grep -c '^ok ' "$TMP/check.out")
if [ "$n" -ge 12 ]; then pass "$n excerpts checked"; else fail "only $n excerpts: $(cat "$TMP/check.out")"; fi
for f in models/mailer/blocking_mailer.c models/mailer/async_mailer.c lib/smtp_session.c models/hybrid.c \
         models/reference/twisted_summary.py; do
    if grep -q "^ok   $f line" "$TMP/check.out"; then pass "an excerpt of $f"; else fail "no excerpt of $f"; fi
done
for fn in maybe_retry 'failed(' attempt_once on_data email_go block_then_build; do
    if grep -A2 '^```c$' "$TMP/r.md" | grep -qF "$fn"; then pass "quoted: $fn"; else fail "not quoted: $fn"; fi
done

# The checker can fail: one changed line, a shifted line number, an unnamed block.
awk '/^```c$/ && !done { print; getline; print $0 " /* changed */"; done = 1; next } { print }' "$TMP/r.md" >"$TMP/changed.md"
"$ROOT/scripts/check-excerpts" "$TMP/changed.md" "$REV" >"$TMP/c1.out"
check_eq "a changed line is caught" 1 $?
sed '0,/ line \([0-9]*\)](/s// line 1](/' "$TMP/r.md" >"$TMP/shifted.md"
"$ROOT/scripts/check-excerpts" "$TMP/shifted.md" "$REV" >"$TMP/c2.out"
check_eq "a wrong line number is caught" 1 $?
printf 'text\n\n```c\nint x;\n```\n' >"$TMP/unnamed.md"
"$ROOT/scripts/check-excerpts" "$TMP/unnamed.md" "$REV" >"$TMP/c3.out"
check_eq "a block naming no source is caught" 1 $?
"$ROOT/scripts/check-excerpts" "$TMP/r.md" 0000000000000000000000000000000000000000 >/dev/null 2>"$TMP/c4.err"
check_eq "an unknown revision exits 2" 2 $?
finish
