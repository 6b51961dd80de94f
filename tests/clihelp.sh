# clihelp.sh — what the shell tests (tests/*_test.sh) share; sourced, not run. Sets up a scratch
# directory removed at exit, the pass/fail counters and:
#   ok DESC / bad DESC          count a result (bad also shows the start of $tmp/err)
#   check DESC COMMAND...       passes when the command succeeds
#   expect_error DESC CODE PATTERN COMMAND...
#                               exit CODE, PATTERN on stderr, stdout empty, and for exit 1 a
#                               'tower: error:' line
#   user_text CASE / gen_ids CASE   fields of $EXP/CASE/case.json (pretty-printed)
#   finish                      prints "N passed, N failed" and exits non-zero on failures

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -s "$tmp/err" ] && sed 's/^/     stderr: /' "$tmp/err" | head -n 12; }
check() { d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }

expect_error() {
    d=$1 code=$2 pat=$3
    shift 3
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ "$rc" -ne "$code" ]; then bad "$d (exit $rc, want $code)"
    elif [ -s "$tmp/out" ]; then bad "$d (stdout not empty)"
    elif ! grep -q "$pat" "$tmp/err"; then bad "$d (stderr lacks '$pat')"
    elif [ "$code" -eq 1 ] && ! grep -q '^tower: error: ' "$tmp/err"; then bad "$d (no 'tower: error:' line)"
    else ok "$d"; fi
}

user_text() { sed -n 's/^  "user_text": "\(.*\)",$/\1/p' "$EXP/$1/case.json"; }
gen_ids() { tr -d ' \n' <"$EXP/$1/case.json" | sed 's/.*"generated_ids":\[\([0-9,]*\)\].*/\1/' | tr ',' ' '; }

finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}
