#!/bin/sh
# Runs the whole suite twice — normal build (build/) and AddressSanitizer + UBSan build
# (build-asan/) — and ends with the overall "N passed, N failed" line.
out=$(mktemp)
tp=0; tf=0
for b in build build-asan; do
    echo "== tests in $b =="
    if [ "$b" = build-asan ]; then
        export TOWER_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
    fi
    BUILD=$b sh tests/run.sh | tee "$out"
    line=$(tail -n 1 "$out")
    p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p'); f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    [ -n "$p" ] || { p=0; f=1; }
    tp=$((tp + p)); tf=$((tf + f))
done
rm -f "$out"
echo "== overall (normal + sanitized) =="
echo "$tp passed, $tf failed"
[ "$tf" -eq 0 ]
