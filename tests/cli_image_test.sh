#!/bin/sh
# cli_image_test.sh — images end to end in the `tower` program on the tiny fixture checkpoint:
# `dump --image` matches every image case's reference tensors (pixel_values, SigLIP hidden states,
# projector, packing, text side), `run --image` generates the reference's greedy tokens (file,
# data: URL, stdin, placeholders written or implied), `--image-tokens` gives the processor's
# counts, translate and chat take images, and bad images / counts / contexts fail cleanly
# (exit 1, a message naming the problem, nothing on stdout).
# Environment (set by tests/run.sh): TOWER_BIN, TOWER_FIXTURES. Last line: "N passed, N failed".

T=${TOWER_BIN:-build/tower}
FX=${TOWER_FIXTURES:-../shared/fixtures}
M=$FX/tiny-towervision
EXP=$FX/expected
CORRUPT=$FX/../media/images/corrupt
. "$(dirname "$0")/clihelp.sh"

# Fixture fields (case.json is pretty-printed).
n_tokens() { sed -n 's/^ *"num_image_tokens": \([0-9]*\)$/\1/p' "$EXP/$1/case.json"; }
# The case's templated prompt ("prompt" in case.json), byte for byte: user_text's \n are real newlines.
write_prompt() { printf '<bos><start_of_turn>user\n%b<end_of_turn>\n<start_of_turn>model\n' "$(user_text "$1")" >"$2"; }
# The --image arguments of a case, in prompt order.
images() {
    if [ -e "$EXP/$1/image.png" ]; then echo "--image $EXP/$1/image.png"
    else echo "--image $EXP/$1/image0.png --image $EXP/$1/image1.png"; fi
}

if [ ! -x "$T" ]; then echo "tower binary not found at $T"; echo "0 passed, 1 failed"; exit 1; fi
if [ ! -d "$M" ]; then echo "fixture checkpoint not found at $M"; echo "0 passed, 1 failed"; exit 1; fi

CASES="img_60x60 img_50x80 img_200x100 img_300x170 img_13x400 two_images"

# ---- dump: every image case against the reference tensors --------------------------------------
for c in $CASES; do
    write_prompt $c "$tmp/$c.txt"
    # shellcheck disable=SC2046
    "$T" dump -m "$M" --prompt-file "$tmp/$c.txt" $(images $c) -n 16 \
        --check-against "$EXP/$c/tensors.safetensors" -o "$tmp/$c.safetensors" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    n_ok=$(grep -c ': ok$' "$tmp/err")
    if [ $rc -eq 0 ] && ! grep -q MISMATCH "$tmp/err" && grep -q '^check pixel_values: .*ok$' "$tmp/err" &&
        grep -q '^check packed.*ok$' "$tmp/err" && grep -q '^check vision_hidden_states.*ok$' "$tmp/err" &&
        grep -q '^check generated_ids (16): ok$' "$tmp/err"; then
        ok "dump $c: $n_ok checks against the reference"
    else
        bad "dump $c: exit $rc"
    fi
    hdr=$(head -c 4096 "$tmp/$c.safetensors" 2>/dev/null | tr -d '\0')
    missing=
    for name in input_ids logits text_hidden_states generated_ids pixel_values image_sizes num_image_tokens \
        vision_hidden_states vision_selected projected packed; do
        case "$hdr" in *"\"$name"*) ;; *) missing="$missing $name" ;; esac
    done
    check "dump $c -o: every tensor written${missing:+ (missing:$missing)}" test -z "$missing"
done
hdr=$(head -c 4096 "$tmp/two_images.safetensors" | tr -d '\0')
case "$hdr" in *'"packed_1"'*'"pixel_values"'* | *'"pixel_values"'*'"packed_1"'*) r=0 ;; *) r=1 ;; esac
check "dump two_images: per-image tensors carry _j suffixes" test $r -eq 0
case "$(head -c 4096 "$tmp/img_60x60.safetensors" | tr -d '\0')" in *'"packed_0"'*) r=1 ;; *) r=0 ;; esac
check "dump img_60x60: no _j suffix for a single image" test $r -eq 0

# OneVision (tiny-towervideo): an image with anyres_max_9 packing, same checks
OV=$FX/expected-video/image_ov_200x100
if [ -d "$OV" ] && [ -d "$FX/tiny-towervideo" ]; then
    printf '<bos><start_of_turn>user\n<image>\nDescribe the image.<end_of_turn>\n<start_of_turn>model\n' >"$tmp/ov.txt"
    "$T" dump -m "$FX/tiny-towervideo" --prompt-file "$tmp/ov.txt" --image "$EXP/img_200x100/image.png" -n 16 \
        --check-against "$OV/tensors.safetensors" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    check "dump OneVision image_ov_200x100 (the same 200x100 PNG)" sh -c \
        '[ "$0" -eq 0 ] && grep -q "^check packed: .*ok$" "$1" && grep -q "^check image_rgb (60000): ok$" "$1"' "$rc" "$tmp/err"
fi

# the checks bite: one image's tensors against another case fail
write_prompt img_60x60 "$tmp/p60.txt"
expect_error "dump: wrong reference -> mismatch, exit 1" 1 "check(s) against" \
    "$T" dump -m "$M" --prompt-file "$tmp/p60.txt" --image "$EXP/img_50x80/image.png" \
    --check-against "$EXP/img_60x60/tensors.safetensors"
check "dump: the mismatch is reported per tensor" grep -q 'MISMATCH' "$tmp/err"
expect_error "dump: two images, one placeholder" 1 "placeholder" \
    "$T" dump -m "$M" --prompt-file "$tmp/p60.txt" --image "$EXP/img_60x60/image.png" \
    --image "$EXP/img_50x80/image.png" -o "$tmp/x.safetensors"
check "dump: no file after an error" test ! -e "$tmp/x.safetensors"

# ---- run --image: greedy ids equal the reference ------------------------------------------------
for c in $CASES; do
    want=$(gen_ids $c)
    # shellcheck disable=SC2046
    got=$("$T" run -m "$M" $(images $c) -p "$(printf '%b' "$(user_text $c)")" -n 16 --print-ids 2>"$tmp/err")
    if [ "$got" = "$want" ]; then ok "run --image $c: 16 greedy ids"; else bad "run --image $c: got [$got] want [$want]"; fi
done
# no placeholder in the text: one "<image>\n" per image goes first (the model card's format)
got=$("$T" run -m "$M" --image "$EXP/img_200x100/image.png" -p "Describe the image." -n 16 --print-ids 2>"$tmp/err")
check "run --image: placeholder implied when the text has none" test "$got" = "$(gen_ids img_200x100)"
got=$("$T" run -m "$M" --image "$EXP/two_images/image0.png" --image "$EXP/two_images/image1.png" \
    -p "What is different between these two images?" -n 16 --print-ids 2>"$tmp/err")
check "run --image x2: placeholders implied, in order" test "$got" = "$(gen_ids two_images)"
printf '<bos><start_of_turn>user\n<image>\n<image>\nWhat is different between these two images?<end_of_turn>\n<start_of_turn>model\n' >"$tmp/want"
"$T" run -m "$M" --image "$EXP/two_images/image0.png" --image "$EXP/two_images/image1.png" \
    -p "What is different between these two images?" --show-prompt >"$tmp/got" 2>"$tmp/err"
check "run --image --show-prompt: placeholders before the text" cmp -s "$tmp/got" "$tmp/want"

# a data: URL and stdin give the same image
url="data:image/png;base64,$(base64 -w0 "$EXP/img_50x80/image.png")"
got=$("$T" run -m "$M" --image "$url" -p "Describe the image." -n 16 --print-ids 2>"$tmp/err")
check "run --image data:URL" test "$got" = "$(gen_ids img_50x80)"
got=$("$T" run -m "$M" --image - -p "Describe the image." -n 16 --print-ids <"$EXP/img_13x400/image.png" 2>"$tmp/err")
check "run --image - (stdin)" test "$got" = "$(gen_ids img_13x400)"
expect_error "run --image - without -p: usage error" 2 "stdin" \
    "$T" run -m "$M" --image - <"$EXP/img_13x400/image.png"

# -v: per-image token count and encode time on stderr
"$T" run -m "$M" --image "$EXP/img_300x170/image.png" -p "Hi" -n 2 -v >"$tmp/out" 2>"$tmp/err"
check "run -v: image tokens and encode time" sh -c 'grep -q "^\[image tokens: 94" "$0" && grep -q "encoded in" "$0"' "$tmp/err"

# ---- --image-tokens ------------------------------------------------------------------------------
for c in $CASES; do
    want=$(n_tokens $c | tr '\n' ' ')
    # shellcheck disable=SC2046
    got=$("$T" run -m "$M" $(images $c) --image-tokens 2>"$tmp/err" | cut -f1 | tr '\n' ' ')
    if [ "$got" = "$want" ]; then ok "--image-tokens $c: $want"; else bad "--image-tokens $c: got [$got] want [$want]"; fi
done
expect_error "--image-tokens without --image: usage error" 2 "needs at least one --image" \
    "$T" run -m "$M" --image-tokens

# ---- translate --image ---------------------------------------------------------------------------
printf '<bos><start_of_turn>user\n<image>\nTranslate the following source text from English to German:\nThe cat sleeps.<end_of_turn>\n<start_of_turn>model\n' >"$tmp/want"
"$T" translate -m "$M" --to de --image "$EXP/img_60x60/image.png" -p "The cat sleeps." --show-prompt >"$tmp/got" 2>"$tmp/err"
check "translate --image --show-prompt: the paper's prompt, image first" cmp -s "$tmp/got" "$tmp/want"
"$T" translate -m "$M" --to de --image "$EXP/img_60x60/image.png" -p "The cat sleeps." -n 8 --print-ids >"$tmp/got" 2>"$tmp/err"
rc=$?
printf '<image>\nTranslate the following source text from English to German:\nThe cat sleeps.' >"$tmp/req"
"$T" run -m "$M" --image "$EXP/img_60x60/image.png" -f "$tmp/req" -n 8 --print-ids >"$tmp/want" 2>/dev/null
check "translate --image = run with the same request" sh -c '[ "$0" -eq 0 ] && [ -s "$1" ] && cmp -s "$1" "$2"' \
    "$rc" "$tmp/got" "$tmp/want"
printf 'The cat sleeps.\nThe dog barks.\n' | "$T" translate -m "$M" --to de --lines -n 4 -v \
    --image "$EXP/img_60x60/image.png" >"$tmp/got" 2>"$tmp/err"
check "translate --image --lines: one line each, image encoded once" sh -c \
    '[ "$(wc -l <"$0")" -eq 2 ] && [ "$(grep -c "encoded in" "$1")" -eq 1 ]' "$tmp/got" "$tmp/err"

# ---- chat /image ---------------------------------------------------------------------------------
printf '/image %s\nDescribe the image.\nTell me more.\n/image %s\nAnd this one?\n' \
    "$EXP/img_60x60/image.png" "$EXP/img_50x80/image.png" | "$T" chat -m "$M" -n 16 -v >"$tmp/chat.out" 2>"$tmp/chat.err"
rc=$?
check "chat /image: three turns, exit 0" sh -c '[ "$0" -eq 0 ] && [ "$(wc -l <"$1")" -eq 3 ]' "$rc" "$tmp/chat.out"
"$T" run -m "$M" --image "$EXP/img_60x60/image.png" -p "Describe the image." -n 16 >"$tmp/run.out" 2>/dev/null
check "chat /image: first reply = run --image's reply" test "$(head -n 1 "$tmp/chat.out")" = "$(cat "$tmp/run.out")"
r2=$(sed -n 's/.*(reused \([0-9]*\),.*/\1/p' "$tmp/chat.err" | sed -n 2p)
r3=$(sed -n 's/.*(reused \([0-9]*\),.*/\1/p' "$tmp/chat.err" | sed -n 3p)
check "chat /image: later turns reuse the image's KV (reused ${r2:-?}, ${r3:-?})" \
    sh -c '[ "${0:-0}" -gt 40 ] && [ "${1:-0}" -gt "${0:-0}" ]' "$r2" "$r3"
check "chat /image: each image encoded once" sh -c \
    '[ "$(grep -c "encoded in" "$0")" -eq 2 ] && grep -q "^\[image 2 .*50x80" "$0"' "$tmp/chat.err"
printf '/image %s/no-such.png\nHello!\n' "$tmp" | "$T" chat -m "$M" -n 4 >"$tmp/chat.out" 2>"$tmp/chat.err"
rc=$?
check "chat /image missing file: error named, chat goes on, exit 1" sh -c \
    '[ "$0" -eq 1 ] && grep -q "no-such.png" "$1" && [ "$(wc -l <"$2")" -eq 1 ]' "$rc" "$tmp/chat.err" "$tmp/chat.out"

# ---- errors --------------------------------------------------------------------------------------
head -c 300 "$EXP/img_200x100/image.png" >"$tmp/truncated.png"
expect_error "run: truncated PNG named, exit 1" 1 "truncated.png" \
    "$T" run -m "$M" --image "$tmp/truncated.png" -p "Describe the image."
expect_error "run: missing image file named" 1 "no-such-image.png" \
    "$T" run -m "$M" --image "$tmp/no-such-image.png" -p "Describe the image."
if [ -d "$CORRUPT" ]; then
    for f in pillow_broken.png gen_testorig_truncated_50pct.jpg gen_empty.jpg; do
        [ -e "$CORRUPT/$f" ] || continue
        expect_error "run: corrupt $f named, exit 1" 1 "$f" "$T" run -m "$M" --image "$CORRUPT/$f" -p "x"
    done
fi
expect_error "run: 2 placeholders, 1 image" 1 "2 <image> placeholder(s) but 1 image(s)" \
    "$T" run -m "$M" --image "$EXP/img_60x60/image.png" -p "<image> and <image>?"
expect_error "run --raw: placeholders required" 1 "0 <image> placeholder(s) but 1 image(s)" \
    "$T" run -m "$M" --raw --image "$EXP/img_60x60/image.png" -p "<bos>hi"
expect_error "run: prompt + image tokens exceed the context" 1 "for 1 image(s)) but the context holds 40" \
    "$T" run -m "$M" --ctx 40 --image "$EXP/img_60x60/image.png" -p "Describe the image."
expect_error "chat --image -: usage error" 2 "stdin" "$T" chat -m "$M" --image -

# a text-only model (the fixture's Gemma2 weights as Gemma2ForCausalLM), when python3 can write it
if command -v python3 >/dev/null 2>&1; then
    mkdir "$tmp/textonly"
    Mabs=$(cd "$M" && pwd)   # symlink targets must not be relative to $tmp
    for f in tokenizer.json tokenizer_config.json special_tokens_map.json generation_config.json chat_template.jinja; do
        [ -e "$Mabs/$f" ] && ln -s "$Mabs/$f" "$tmp/textonly/$f"
    done
    python3 - "$M" "$tmp/textonly" <<'EOF'
import json, struct, sys
src, dst = sys.argv[1], sys.argv[2]
c = json.load(open(src + "/config.json"))["text_config"]
c["model_type"], c["architectures"] = "gemma2", ["Gemma2ForCausalLM"]
c.setdefault("tie_word_embeddings", True)
json.dump(c, open(dst + "/config.json", "w"))
f = open(src + "/model.safetensors", "rb")
n = struct.unpack("<Q", f.read(8))[0]
h = json.loads(f.read(n))
p = "model.language_model."
h = {("model." + k[len(p):] if k.startswith(p) else k): v for k, v in h.items()}
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
with open(dst + "/model.safetensors", "wb") as o:
    o.write(struct.pack("<Q", len(hb)) + hb)
    o.write(f.read())
EOF
    expect_error "run --image on a text-only model" 1 "text-only model" \
        "$T" run -m "$tmp/textonly" --image "$EXP/img_60x60/image.png" -p "Describe the image."
    expect_error "dump --image on a text-only model" 1 "text-only model" \
        "$T" dump -m "$tmp/textonly" --prompt-file "$tmp/p60.txt" --image "$EXP/img_60x60/image.png" -o "$tmp/t.st"
else
    echo "skip text-only model checks (no python3 to write the checkpoint)"
fi

finish
