#!/bin/sh
# cli_test.sh — end-to-end tests of the `tower` program on the tiny fixture checkpoint: generated
# tokens equal the reference's, prompt sources agree, translate builds the paper's prompt,
# tokenize --jsonl matches the tokenizer fixtures, dump matches the reference tensors, errors
# exit non-zero with a message on stderr and nothing on stdout, chat reuses its KV cache.
# Environment (set by tests/run.sh): TOWER_BIN, TOWER_FIXTURES. Last line: "N passed, N failed".

T=${TOWER_BIN:-build/tower}
FX=${TOWER_FIXTURES:-../shared/fixtures}
M=$FX/tiny-towervision
EXP=$FX/expected
. "$(dirname "$0")/clihelp.sh"

gen_text() { sed -n 's/^  "generated_text": "\(.*\)",$/\1/p' "$EXP/$1/case.json"; }
# The Gemma2 turn the fixtures use, written to a file byte for byte.
write_prompt() { printf '<bos><start_of_turn>user\n%s<end_of_turn>\n<start_of_turn>model\n' "$1" >"$2"; }

if [ ! -x "$T" ]; then echo "tower binary not found at $T"; echo "0 passed, 1 failed"; exit 1; fi
if [ ! -d "$M" ]; then echo "fixture checkpoint not found at $M"; echo "0 passed, 1 failed"; exit 1; fi

# ---- basics ------------------------------------------------------------------------------------
check "--version" sh -c '"$0" --version >/dev/null 2>"$1"' "$T" "$tmp/err"
for c in run chat translate tokenize dump info; do
    check "$c --help" sh -c '"$0" "$1" --help 2>"$2" | grep -q "^usage: tower $1"' "$T" "$c" "$tmp/err"
done
check "info" sh -c '"$0" info -m "$1" 2>"$2" | grep -q "stop ids:.*107"' "$T" "$M" "$tmp/err"

# ---- run: greedy tokens equal the reference ----------------------------------------------------
for c in text_hello text_translate text_long; do
    want=$(gen_ids $c)
    got=$("$T" run -m "$M" -p "$(user_text $c)" -n 16 --no-final-softcap --print-ids 2>"$tmp/err")
    if [ "$got" = "$want" ]; then ok "run $c: 16 greedy ids"; else bad "run $c: got [$got] want [$want]"; fi
done
"$T" run -m "$M" -p "Hello!" -n 16 --no-final-softcap >"$tmp/hello.out" 2>"$tmp/err"
printf '%s\n' "$(gen_text text_hello)" >"$tmp/hello.want"
check "run text_hello: streamed text + newline" cmp -s "$tmp/hello.out" "$tmp/hello.want"
check "run: final softcap on gives the same greedy ids" sh -c \
    '[ "$("$0" run -m "$1" -p "Hello!" -n 16 --final-softcap --print-ids 2>"$2")" = "$3" ]' "$T" "$M" "$tmp/err" "$(gen_ids text_hello)"

# the same prompt from -p, -f, stdin and -p -
printf '%s' "$(user_text text_translate)" >"$tmp/tr.txt"
"$T" run -m "$M" -p "$(user_text text_translate)" -n 8 >"$tmp/p.out" 2>"$tmp/err"
"$T" run -m "$M" -f "$tmp/tr.txt" -n 8 >"$tmp/f.out" 2>"$tmp/err"
"$T" run -m "$M" -n 8 <"$tmp/tr.txt" >"$tmp/s.out" 2>"$tmp/err"
"$T" run -m "$M" -p - -n 8 <"$tmp/tr.txt" >"$tmp/d.out" 2>"$tmp/err"
check "run: -f FILE = -p TEXT" cmp -s "$tmp/p.out" "$tmp/f.out"
check "run: stdin = -p TEXT" cmp -s "$tmp/p.out" "$tmp/s.out"
check "run: -p - = -p TEXT" cmp -s "$tmp/p.out" "$tmp/d.out"
check "run: output not empty" test -s "$tmp/p.out"

# --show-prompt renders the template (one <bos>), --system adds a system turn, --raw keeps text
printf '<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n' >"$tmp/want"
"$T" run -m "$M" -p "Hi" --show-prompt >"$tmp/got" 2>"$tmp/err"
check "run --show-prompt: chat template" cmp -s "$tmp/got" "$tmp/want"
printf '<bos><start_of_turn>system\nBe brief.<end_of_turn>\n<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n' >"$tmp/want"
"$T" run -m "$M" -p "Hi" --system "Be brief." --show-prompt >"$tmp/got" 2>"$tmp/err"
check "run --show-prompt --system" cmp -s "$tmp/got" "$tmp/want"
write_prompt "Hello!" "$tmp/raw.txt"
got=$("$T" run -m "$M" --raw -f "$tmp/raw.txt" -n 16 --print-ids 2>"$tmp/err")
check "run --raw on the rendered prompt = chat run" test "$got" = "$(gen_ids text_hello)"

# a stop string is cut and never printed (" heartbreakerder Clooney..." -> " heartbreakerder ")
"$T" run -m "$M" -p "Hello!" -n 16 --stop Clooney >"$tmp/got" 2>"$tmp/err"
printf ' heartbreakerder \n' >"$tmp/want"
check "run --stop: text cut before the stop string" cmp -s "$tmp/got" "$tmp/want"

# ---- translate ----------------------------------------------------------------------------------
printf '<bos><start_of_turn>user\nTranslate the following source text from English to German:\nThe cat sleeps.<end_of_turn>\n<start_of_turn>model\n' >"$tmp/want"
"$T" translate -m "$M" --from en --to de -p "The cat sleeps." --show-prompt >"$tmp/got" 2>"$tmp/err"
check "translate --show-prompt: the paper's prompt" cmp -s "$tmp/got" "$tmp/want"
"$T" translate -m "$M" --from English --to GERMAN -p "The cat sleeps." --show-prompt >"$tmp/got" 2>"$tmp/err"
check "translate: names are case-insensitive, --from defaults to English" cmp -s "$tmp/got" "$tmp/want"
"$T" translate -m "$M" --to pt_br -p "x" --show-prompt 2>"$tmp/err" | grep -q "from English to Portuguese (Brazil):" \
    && ok "translate: pt_br -> Portuguese (Brazil)" || bad "translate: pt_br -> Portuguese (Brazil)"
"$T" translate -m "$M" --to zh-TW -p "x" --show-prompt 2>"$tmp/err" | grep -q "to Chinese (Traditional):" \
    && ok "translate: zh-TW -> Chinese (Traditional)" || bad "translate: zh-TW -> Chinese (Traditional)"
n=$("$T" translate --list-languages 2>"$tmp/err" | tail -n +2 | wc -l)
check "translate --list-languages: 20 languages" test "$n" -eq 20
"$T" translate -m "$M" --to fr -p "Good morning." -n 4 >"$tmp/got" 2>"$tmp/err"
check "translate: generates" test -s "$tmp/got"
printf 'one\n\ntwo\n' | "$T" translate -m "$M" --to fr --lines -n 4 >"$tmp/got" 2>"$tmp/err"
check "translate --lines: one output line per input line" test "$(wc -l <"$tmp/got")" -eq 3

# ---- tokenize ----------------------------------------------------------------------------------
mkdir "$tmp/tok"
ln -s "$(cd "$M" && pwd)/tokenizer.json" "$tmp/tok/tokenizer.json"
ln -s "$(cd "$M" && pwd)/tokenizer_config.json" "$tmp/tok/tokenizer_config.json"
got=$("$T" tokenize -m "$tmp/tok" -p "Hello" --ids 2>"$tmp/err")
check "tokenize: a tokenizer-only directory, <bos> added by default" test "${got%% *}" = 2
got=$("$T" tokenize -m "$tmp/tok" -p "Hello" --no-special 2>"$tmp/err" | head -n 1)
check "tokenize: table 'id piece'" test "$(echo $got)" = "4521 Hello"
C=$FX/tokenizer/cases.jsonl
for id in own-en-00 own-de-04 ctrl-nul ctrl-nul-alone ctrl-all-c0; do grep "\"id\":\"$id\"" "$C"; done >"$tmp/cases"
grep '"category":"lang:\(ja\|zh\|ko\|hi\)' "$C" | head -n 4 >>"$tmp/cases"
grep '"category":"emoji' "$C" | head -n 2 >>"$tmp/cases"
"$T" tokenize -m "$tmp/tok" --jsonl --no-special <"$tmp/cases" >"$tmp/tok.out" 2>"$tmp/err"
sed 's/.*"ids_no_special":\(\[[^]]*\]\).*/\1/' "$tmp/cases" >"$tmp/want"
sed 's/.*"ids":\(\[[^]]*\]\).*/\1/' "$tmp/tok.out" >"$tmp/got"
check "tokenize --jsonl: ids = fixtures ($(wc -l <"$tmp/cases") lines: unicode, NUL)" \
    sh -c 'test -s "$0" && cmp -s "$0" "$1"' "$tmp/want" "$tmp/got"
sed 's/^{/{"add_special":true,/' "$tmp/cases" | "$T" tokenize -m "$tmp/tok" --jsonl >"$tmp/tok.out" 2>"$tmp/err"
sed 's/.*"ids_with_special":\(\[[^]]*\]\).*/\1/' "$tmp/cases" >"$tmp/want"
sed 's/.*"ids":\(\[[^]]*\]\).*/\1/' "$tmp/tok.out" >"$tmp/got"
check "tokenize --jsonl add_special: ids = fixtures" sh -c 'test -s "$0" && cmp -s "$0" "$1"' "$tmp/want" "$tmp/got"
grep '"id":"own-en-00"' "$C" | sed 's/.*"pieces":\(\[[^]]*\]\).*/\1/' >"$tmp/want"
grep '"id":"own-en-00"' "$tmp/tok.out" | sed 's/.*"pieces":\(\[[^]]*\]\).*/\1/' | sed 's/^\["<bos>",/[/' >"$tmp/got"
check "tokenize --jsonl: pieces = fixtures" cmp -s "$tmp/want" "$tmp/got"
echo '{"text": 5}' | "$T" tokenize -m "$tmp/tok" --jsonl >"$tmp/out" 2>"$tmp/err"
rc=$?
check "tokenize --jsonl: bad line -> exit 1 with a message" sh -c '[ "$0" -eq 1 ] && grep -q "line 1" "$1"' "$rc" "$tmp/err"

# ---- dump -----------------------------------------------------------------------------------------
for c in text_hello text_long; do
    write_prompt "$(user_text $c)" "$tmp/$c.txt"
    "$T" dump -m "$M" --prompt-file "$tmp/$c.txt" -o "$tmp/$c.safetensors" -n 16 \
        --check-against "$EXP/$c/tensors.safetensors" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -eq 0 ] && [ -s "$tmp/$c.safetensors" ] && ! grep -q MISMATCH "$tmp/err" \
        && [ "$(grep -c ': ok' "$tmp/err")" -ge 3 ]; then
        ok "dump $c: input_ids, generated_ids, logits, hidden states match the reference"
    else
        bad "dump $c (rc $rc)"
    fi
done
# read the written file back through dump's own checker
"$T" dump -m "$M" --prompt-file "$tmp/text_hello.txt" -n 16 --check-against "$tmp/text_hello.safetensors" >/dev/null 2>"$tmp/err"
check "dump: the written file reads back (input_ids, generated_ids)" \
    sh -c 'grep -q "check input_ids (11): ok" "$0" && grep -q "check generated_ids (16): ok" "$0"' "$tmp/err"

# ---- errors: exit status, message on stderr, nothing on stdout, no file left -------------------
# expect_error NAME EXIT_CODE STDERR_PATTERN COMMAND...: this file's own, looser than clihelp.sh's
# (pattern case-insensitive, stdin closed, no 'tower: error:' line required: usage errors exit 2)
expect_error() {
    name=$1 code=$2 pat=$3
    shift 3
    "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    rc=$?
    if [ $rc -eq "$code" ] && [ ! -s "$tmp/out" ] && grep -q -i -e "$pat" "$tmp/err"; then
        ok "error: $name"
    else
        bad "error: $name (exit $rc, want $code; stdout $(wc -c <"$tmp/out") bytes; stderr pattern '$pat')"
    fi
}
expect_error "missing model dir" 1 "$tmp/no-such-model" "$T" run -m "$tmp/no-such-model" -p Hi
mkdir "$tmp/notok"
for f in "$M"/*; do
    case "$f" in */tokenizer.json) ;; *) ln -s "$(cd "$M" && pwd)/$(basename "$f")" "$tmp/notok/" ;; esac
done
expect_error "model dir without tokenizer.json" 1 "tokenizer" "$T" run -m "$tmp/notok" -p Hi
expect_error "bad option" 2 "--bogus" "$T" run -m "$M" --bogus -p Hi
expect_error "bad number" 2 "max-new-tokens\|-n" "$T" run -m "$M" -p Hi -n lots
expect_error "unknown command" 2 "frobnicate" "$T" frobnicate
expect_error "no prompt on a non-tty stdin (empty)" 1 "empty" "$T" run -m "$M"
expect_error "unknown language" 1 "klingon" "$T" translate -m "$M" --to klingon -p Hi
grep -q "German" "$tmp/err" && ok "unknown language: lists the valid ones" || bad "unknown language: lists the valid ones"
expect_error "prompt longer than the context" 1 "context" "$T" run -m "$M" --ctx 8 -p "Hello!"
expect_error "dump: prompt longer than the context" 1 "context" \
    "$T" dump -m "$M" --ctx 8 --prompt-file "$tmp/text_hello.txt" -o "$tmp/ctx.safetensors"
check "dump: no file left after an error" test ! -e "$tmp/ctx.safetensors"
expect_error "dump: missing model" 1 "no-such-model" \
    "$T" dump -m "$tmp/no-such-model" --prompt-file "$tmp/text_hello.txt" -o "$tmp/nomodel.safetensors"
check "dump: no file after a missing model" test ! -e "$tmp/nomodel.safetensors"
expect_error "dump: missing prompt file" 1 "no-such-prompt" \
    "$T" dump -m "$M" --prompt-file "$tmp/no-such-prompt" -o "$tmp/noprompt.safetensors"
check "dump: no file after a missing prompt file" test ! -e "$tmp/noprompt.safetensors"
expect_error "dump: unwritable output" 1 "no-such-dir" \
    "$T" dump -m "$M" --prompt-file "$tmp/text_hello.txt" -o "$tmp/no-such-dir/out.safetensors"
leftovers=$(ls -A "$tmp" | grep -c '\.tmp\.' || true)
check "dump: no temporary files left" test "$leftovers" -eq 0

# ---- chat: two turns on piped stdin, the second reuses the KV cache -----------------------------
printf 'Hello!\nTell me more.\n' | "$T" chat -m "$M" -n 6 -v >"$tmp/chat.out" 2>"$tmp/chat.err"
rc=$?
check "chat: two piped turns, exit 0" test $rc -eq 0
check "chat: one reply line per turn" test "$(wc -l <"$tmp/chat.out")" -eq 2
r1=$(sed -n 's/.*(reused \([0-9]*\),.*/\1/p' "$tmp/chat.err" | sed -n 1p)
r2=$(sed -n 's/.*(reused \([0-9]*\),.*/\1/p' "$tmp/chat.err" | sed -n 2p)
check "chat: turn 1 reuses nothing, turn 2 reuses the cache (reused ${r1:-?}, ${r2:-?})" \
    sh -c '[ "$0" = 0 ] && [ "${1:-0}" -gt 10 ]' "${r1:-x}" "${r2:-0}"
first=$(head -n 1 "$tmp/chat.out")
"$T" run -m "$M" -p "Hello!" -n 6 >"$tmp/run6.out" 2>/dev/null
check "chat: first reply = run's reply" test "$first" = "$(cat "$tmp/run6.out")"
printf '/help\n/system Be brief.\nHello!\n/reset\nHello!\n/exit\nignored\n' |
    "$T" chat -m "$M" -n 4 -v >"$tmp/chat.out" 2>"$tmp/chat.err"
rc=$?
check "chat: /help /system /reset /exit" sh -c '[ "$0" -eq 0 ] && grep -q "^/reset" "$1" && [ "$(grep -c "reused" "$2")" -eq 2 ]' \
    "$rc" "$tmp/chat.out" "$tmp/chat.err"

# ---- images: the options exist everywhere they should (tests/cli_image_test.sh runs them) -------
for c in run translate dump chat; do
    check "$c --help documents --image" sh -c '"$0" "$1" --help 2>"$2" | grep -q -- "--image SRC"' "$T" "$c" "$tmp/err"
done
printf '/help\n' | "$T" chat -m "$M" >"$tmp/chat.out" 2>"$tmp/err"
check "chat /help lists /image" grep -q '^/image PATH' "$tmp/chat.out"
expect_error "tokenize --image: unknown option" 2 "unknown option" "$T" tokenize -m "$M" --image x.png -p hi
# a text prompt on a vision model still needs no image, and an image-free dump keeps its tensors
"$T" run -m "$M" -p "Hello!" -n 16 --print-ids -v >"$tmp/got" 2>"$tmp/err"
check "run without --image: no image lines in -v" sh -c '! grep -q "^\[image" "$0"' "$tmp/err"

# the kernel path and matmul mode as explicit configuration (tw_model_params.kernels / .matmul)
check "run --kernels ref --matmul f32: runs" sh -c '"$0" run -m "$1" --kernels ref --matmul f32 -p Hi -n 2 >/dev/null 2>&1' "$T" "$M"
expect_error "run --kernels foo: names the field" 1 'kernels is "foo": not ref, avx2, avx512 or amx' \
    "$T" run -m "$M" --kernels foo -p Hi -n 2
expect_error "run --matmul f16: usage error" 2 "option --matmul: expected f32 or bf16" "$T" run -m "$M" --matmul f16 -p Hi

finish
