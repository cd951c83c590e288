#!/usr/bin/env bash
# The dependency rule: models/ -> workloads/ -> lib/, never the other way.
# Each C file is compiled (syntax only) with the include paths its layer is
# allowed, so a header of a higher layer fails to build; and a planted
# violation shows the check can fail.
source "$(dirname "$0")/common.bash"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
CC=${CC:-cc}
flags=(-std=c11 -D_GNU_SOURCE -fsyntax-only -Wall -Werror)
layer_ok() {  # layer_ok FILE INCLUDES...: compiles with only those paths
    local f=$1; shift
    "$CC" "${flags[@]}" "$@" "$f" 2>"$TMP/err"
}
bad=0; n=0
for f in lib/*.c; do
    n=$((n + 1)); layer_ok "$f" -Ilib || { bad=$((bad + 1)); echo "lib/ file needs more than lib/: $f"; head -3 "$TMP/err"; }
done
check_eq "every lib/ file ($n) builds with -Ilib alone" 0 "$bad"
bad=0; n=0
for f in workloads/*.c; do
    n=$((n + 1)); layer_ok "$f" -Ilib -Iworkloads || { bad=$((bad + 1)); echo "workloads/ file reaches models/: $f"; head -3 "$TMP/err"; }
done
check_eq "every workloads/ file ($n) builds with -Ilib -Iworkloads" 0 "$bad"
# No header of a lower layer names a higher one, even in a comment-free
# #include that the compile above might not reach (headers not included by
# any .c of their layer).
hits=$(grep -lE '#include "(summary|mailer|async_mailer|blocking_mailer|mock_[a-z_]*)\.h"' lib/*.h lib/*.c 2>/dev/null | tr '\n' ' ')
check_eq "no lib/ file includes a workload or model header" "" "$hits"
hits=$(grep -lE '#include "(mailer|async_mailer|blocking_mailer)\.h"' workloads/*.h workloads/*.c 2>/dev/null | tr '\n' ' ')
check_eq "no workloads/ file includes a model header" "" "$hits"
# The histogram is pure: lib/hist.h names no header of the project (so
# neither the run record nor the options), lib/hist.c only its own.
hits=$(grep -hE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' lib/hist.h | tr '\n' ' ')
check_eq "lib/hist.h includes standard headers only" "" "$hits"
hits=$(grep -hE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' lib/hist.c | grep -v '"hist.h"' | tr '\n' ' ')
check_eq "lib/hist.c includes no project header but its own" "" "$hits"
# The check can fail: a lib/ file that includes the workload's header.
printf '#include "summary.h"\nint planted(void);\nint planted(void) { return WORKLOAD_MAX_RECIPIENTS; }\n' >"$TMP/planted.c"
if layer_ok "$TMP/planted.c" -Ilib; then fail "a planted lib/ violation compiled"; else pass "a planted lib/ violation is refused"; fi
finish
