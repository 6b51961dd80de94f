#!/bin/sh
# tools_api_test.sh — every command in tools/ is written against the public API: its files include
# "tower.h" and tools' own headers only (no header of src/), and they compile with include/ alone
# on the include path, so no struct of the library can be reached (the Makefile builds `tower`
# that way too). Last line: "N passed, N failed".
. "$(dirname "$0")/clihelp.sh"

for f in tools/*.c tools/*.h; do
    bad_inc=
    for h in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
        case "$h" in
        tower.h) ;;
        *) [ -e "tools/$h" ] || bad_inc="$bad_inc $h" ;;
        esac
    done
    if [ -z "$bad_inc" ]; then ok "$f includes only tower.h and tools' own headers"
    else printf '%s includes internal header(s):%s\n' "$f" "$bad_inc" >"$tmp/err"; bad "$f includes:$bad_inc"; fi
done
# the CLI compiles with include/ alone on the include path
B=${TOWER_BUILD:-build}
SAN=
[ -n "$TOWER_SANITIZED" ] && SAN="-fsanitize=address,undefined -fno-omit-frame-pointer"
# shellcheck disable=SC2086
${CC:-cc} -std=c11 -D_GNU_SOURCE -fsyntax-only -Wall -Wextra -Wno-unused-parameter $SAN -Iinclude tools/*.c 2>"$tmp/err"
check "tools/*.c compile with -Iinclude only" test $? -eq 0
finish
