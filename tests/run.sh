#!/bin/sh
# Runs the test programs (BUILD/tests/test_*) and shell tests (tests/*_test.sh) of one or more builds,
# several at a time, and adds up their "N passed, N failed" lines.
#
#   sh tests/run.sh [BUILD[:asan]]...      default: $BUILD, else build
#
# ":asan" marks a build made with AddressSanitizer + UBSan: its tests run with TOWER_SANITIZED=1 and
# the sanitizers' options below. Every test of every build goes into one queue, slowest first (the
# sanitized ones before the normal ones), and TOWER_JOBS of them (default: the number of cores) run
# at once. A line is printed as each test finishes, with its build:
#     ok   build-asan  test_attn                 26838 passed   0 failed  (93s)
# and after a failure the tail of that test's log. A program that crashes, exits non-zero or prints no
# summary counts as one failure. The last line is the overall "N passed, N failed".
#
# Environment: TOWER_JOBS; TOWER_FIXTURES (default ../shared/fixtures); TOWER_LONG=1 runs the
# exhaustive sweeps as well (make check-long; each test says next to its sweeps what the default keeps).
#
# Tests run concurrently, so each one keeps its scratch files apart: the programs name theirs after
# their pid or use mkdtemp, the shell tests a mktemp -d directory (tests/clihelp.sh).

# ---- one test (run by xargs below): sh tests/run.sh --one RESULTS BUILD SAN TEST ----------------
if [ "$1" = --one ]; then
    res=$2 b=$3 san=$4 t=$5
    name=$(basename "$t")
    export TOWER_BIN="$PWD/$b/tower" TOWER_BUILD="$PWD/$b"
    if [ "$san" = asan ]; then
        export TOWER_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
    fi
    log="$res/$b.$name.log"
    case "$t" in *.sh) set -- sh "$t";; *) set -- "$t";; esac
    start=$(date +%s)
    "$@" </dev/null >"$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p'); f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    [ -n "$p" ] || { p=0; f=1; }
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    if [ "$f" -eq 0 ]; then status=ok; else status=FAIL; fi
    echo "$p $f" >"$res/$b.$name.res"
    # one writer at a time, so that a failure's log tail stays under its own line
    until mkdir "$res/lock" 2>/dev/null; do sleep 0.1; done
    printf '%-4s %-11s %-28s %5s passed %3s failed  (%ss)\n' "$status" "$b" "$name" "$p" "$f" "$secs"
    if [ "$f" -ne 0 ]; then
        [ "$rc" -ne 0 ] && echo "     | (exit status $rc)"
        grep -v -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 30 | cut -c 1-200 | sed 's/^/     | /'
    fi
    rmdir "$res/lock"
    exit 0
fi

# ---- the queue ------------------------------------------------------------------------------------
[ $# -gt 0 ] || set -- "${BUILD:-build}"
export TOWER_FIXTURES=${TOWER_FIXTURES:-../shared/fixtures}
jobs=${TOWER_JOBS:-$(nproc 2>/dev/null || echo 2)}
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1
# Slowest first (measured under the sanitizers, which take longest), so that the long ones do not
# start last and leave the other cores idle at the end; any test not named here follows them.
slow="test_attn serve_test.sh serve_hostile_test.sh test_bench test_quant serve_openai_test.sh cli_image_test.sh cli_video_test.sh cli_test.sh translate_dataset_test.sh test_video_io
      test_gemma2 test_batch test_media_e2e test_model_load test_hub test_kernels test_tokenizer test_ov_multi_image
      test_generate"
res=$(mktemp -d)
trap 'rm -rf "$res"' EXIT
trap 'exit 130' INT TERM
queue="$res/queue"
: >"$queue"
for spec in "$@"; do
    [ -d "${spec%:asan}/tests" ] || { echo "run.sh: no ${spec%:asan}/tests (build it first)" >&2; exit 2; }
done
for pass in slow rest; do
    for kind in asan normal; do   # sanitized builds first: their tests take several times longer
        for spec in "$@"; do
            b=${spec%:asan}; san=-
            [ "$b" = "$spec" ] || san=asan
            [ "$kind" = asan ] && [ "$san" = - ] && continue
            [ "$kind" = normal ] && [ "$san" = asan ] && continue
            if [ "$pass" = slow ]; then
                list=$(for t in $slow; do case "$t" in *.sh) echo "tests/$t";; *) echo "$b/tests/$t";; esac; done)
            else
                list=$(ls "$b"/tests/test_* tests/*_test.sh 2>/dev/null)
            fi
            for t in $list; do
                [ -f "$t" ] && ! grep -q -x -F "$b $san $t" "$queue" && echo "$b $san $t" >>"$queue"
            done
        done
    done
done

xargs -P "$jobs" -L 1 sh tests/run.sh --one "$res" <"$queue"

total_p=0; total_f=0
while read -r b san t; do
    r="$res/$b.$(basename "$t").res"
    if [ -s "$r" ]; then read -r p f <"$r"; else p=0; f=1; echo "FAIL $b $(basename "$t"): no result"; fi
    total_p=$((total_p + p)); total_f=$((total_f + f))
done <"$queue"
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
