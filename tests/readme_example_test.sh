#!/bin/sh
# readme_example_test.sh — the README's library example, compiled from the README itself against
# build/libtower.a (include/tower.h only) and run on the tiny checkpoint with an image: it must
# build without warnings, count the prompt's tokens before encoding, and print exactly what
# `tower run --image` prints for the same question. A program written against the public header
# sends an image the way `tower run` does.
# Environment (set by tests/run.sh): TOWER_BIN, TOWER_BUILD, TOWER_FIXTURES, TOWER_SANITIZED.

T=${TOWER_BIN:-build/tower}
B=${TOWER_BUILD:-build}
FX=${TOWER_FIXTURES:-../shared/fixtures}
M=$FX/tiny-towervision
IMG=$FX/expected/img_60x60/image.png
. "$(dirname "$0")/clihelp.sh"

# the first ```c block after the heading "## The library in one example"
sed -n '/^## The library in one example/,$p' README.md | sed -n '/^```c$/,/^```$/p' | sed '1d;$d' >"$tmp/example.c"
check "README: the example block is there" test -s "$tmp/example.c"
SAN=
[ -n "$TOWER_SANITIZED" ] && SAN="-fsanitize=address,undefined -fno-omit-frame-pointer"
# shellcheck disable=SC2046,SC2086
${CC:-cc} -std=c11 -Wall -Wextra -Werror -Wno-unused-parameter $SAN -Iinclude "$tmp/example.c" "$B/libtower.a" \
    $(make -s ldlibs) -o "$tmp/example" 2>"$tmp/err"
check "README: the example compiles against include/tower.h alone, without warnings" test -x "$tmp/example"
"$tmp/example" "$M" "$IMG" "Describe the image." >"$tmp/got" 2>"$tmp/err"
rc=$?
check "README: the example runs (exit $rc)" test "$rc" -eq 0
check "README: the token count is known before encoding (50)" grep -q '^50 prompt tokens$' "$tmp/err"
"$T" run -m "$M" --image "$IMG" -p "Describe the image." -n 32 >"$tmp/want" 2>/dev/null
check "README: prints what tower run --image prints" cmp -s "$tmp/got" "$tmp/want"
"$tmp/example" "$M" "$tmp/none.png" "Hi" >"$tmp/out" 2>"$tmp/err"
check "README: a missing image is an error naming it" sh -c '[ $0 -eq 1 ] && grep -q "none.png" "$1"' $? "$tmp/err"
finish
