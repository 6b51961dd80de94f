#!/bin/sh
# Runs every test program (build/tests/test_*) and shell test (tests/*_test.sh) and adds up their
# "N passed, N failed" lines. A program that crashes or prints no summary counts as one failure.
# Environment: BUILD (default build), TOWER_FIXTURES (default ../shared/fixtures).
BUILD=${BUILD:-build}
export TOWER_BIN="$PWD/$BUILD/tower" TOWER_BUILD="$PWD/$BUILD"
export TOWER_FIXTURES=${TOWER_FIXTURES:-../shared/fixtures}
total_p=0; total_f=0
log=$(mktemp)
for t in "$BUILD"/tests/test_* tests/*_test.sh; do
    [ -e "$t" ] || continue
    case "$t" in *.sh) cmd="sh $t";; *) cmd="$t";; esac
    start=$(date +%s)
    $cmd >"$log" 2>&1
    rc=$?
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p'); f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    [ -n "$p" ] || { p=0; f=1; }
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    secs=$(( $(date +%s) - start ))
    if [ "$f" -eq 0 ]; then status=ok; else status=FAIL; fi
    printf '%-4s %-40s %5s passed %3s failed  (%ss)\n' "$status" "$(basename "$t")" "$p" "$f" "$secs"
    if [ "$f" -ne 0 ]; then grep -v -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 30 | sed 's/^/     | /'; fi
    total_p=$((total_p + p)); total_f=$((total_f + f))
done
rm -f "$log"
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
