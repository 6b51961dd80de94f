#!/bin/sh
# cli_video_test.sh — video (and image + video) end to end in the `tower` program on the tiny
# TowerVideo checkpoint: `dump --video` matches the fixtures' tensors (sampled indices, decoded
# frames, pixel_values_videos, SigLIP per frame, projector, pooling, features, text side),
# `run --video` generates the reference's greedy tokens, --frames changes the token count as
# F * 9 + 1, frame lists / directories work, chat takes /video, and videos on a model without a
# <video> token, corrupt / missing / non-video files and too long prompts fail cleanly (exit 1,
# a message naming the problem, nothing on stdout).
# Environment (set by tests/run.sh): TOWER_BIN, TOWER_BUILD, TOWER_FIXTURES. Last line: "N passed, N failed".

T=${TOWER_BIN:-build/tower}
B=${TOWER_BUILD:-build}
FX=${TOWER_FIXTURES:-../shared/fixtures}
M=$FX/tiny-towervideo
EXP=$FX/expected-video
VID=$FX/../media/videos
RGB2BMP=$B/tests/tool_rgb2bmp
. "$(dirname "$0")/clihelp.sh"

# The case's templated prompt ("prompt" in case.json), byte for byte: its \n are real newlines.
write_prompt() { printf '%b' "$(sed -n 's/^  "prompt": "\(.*\)",$/\1/p' "$EXP/$1/case.json")" >"$2"; }

if [ ! -x "$T" ]; then echo "tower binary not found at $T"; echo "0 passed, 1 failed"; exit 1; fi
if [ ! -d "$M" ] || [ ! -d "$EXP" ]; then echo "TowerVideo fixtures not found under $FX"; echo "0 passed, 1 failed"; exit 1; fi
if [ ! -x "$RGB2BMP" ]; then echo "helper not found at $RGB2BMP"; echo "0 passed, 1 failed"; exit 1; fi
if "$T" info -m "$M" 2>/dev/null | grep -q 'video:OFF'; then
    echo "skip: this build decodes no video files (no FFmpeg)"
    echo "0 passed, 0 failed"
    exit 0
fi

# The images the cases use exist only as image_rgb tensors: written losslessly as BMP.
"$RGB2BMP" "$EXP/image_and_video/tensors.safetensors" image_rgb "$tmp/img300.bmp" 2>"$tmp/err"
check "image_and_video: image_rgb written as BMP" test -s "$tmp/img300.bmp"
"$RGB2BMP" "$EXP/image_ov_200x100/tensors.safetensors" image_rgb "$tmp/img200x100.bmp" 2>"$tmp/err"
check "image_ov_200x100: image_rgb written as BMP" test -s "$tmp/img200x100.bmp"

# case -> media arguments ("video clip frames" and images)
media() {
    case $1 in
    video_mp4_h264_8f) echo "--video $VID/testsrc2_h264_640x360_30fps_5s.mp4 --frames 8" ;;
    video_webm_vp9_4f) echo "--video $VID/testsrc_vp9_320x240_25fps_4s.webm --frames 4" ;;
    image_and_video) echo "--image $tmp/img300.bmp --video $VID/testsrc2_h264_480x270_rot90_24fps_3s.mp4 --frames 4" ;;
    image_ov_200x100) echo "--image $tmp/img200x100.bmp" ;;
    esac
}

# ---- dump: every case against the reference tensors --------------------------------------------
CASES="video_mp4_h264_8f video_webm_vp9_4f image_and_video image_ov_200x100"
for c in $CASES; do
    write_prompt $c "$tmp/$c.txt"
    # shellcheck disable=SC2046
    "$T" dump -m "$M" --prompt-file "$tmp/$c.txt" $(media $c) -n 16 \
        --check-against "$EXP/$c/tensors.safetensors" -o "$tmp/$c.safetensors" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    n_ok=$(grep -c ': ok$' "$tmp/err")
    want_video=1
    case $c in image_ov_*) want_video=0 ;; esac
    if [ $rc -eq 0 ] && [ ! -s "$tmp/out" ] && ! grep -q MISMATCH "$tmp/err" &&
        grep -q '^check generated_ids (16): ok$' "$tmp/err" && grep -q '^check logits_argmax .*ok$' "$tmp/err" &&
        { [ $want_video -eq 0 ] || { grep -q '^check video_frame_indices .*ok$' "$tmp/err" &&
            grep -q '^check num_video_tokens .*ok$' "$tmp/err" &&
            grep -q '^check video_frames_rgb: max |diff| [012] level.*ok$' "$tmp/err" &&
            grep -q '^check pixel_values_videos' "$tmp/err" && grep -q '^check video_features' "$tmp/err"; }; }; then
        ok "dump $c: $n_ok checks against the reference"
    else
        bad "dump $c: exit $rc"
    fi
    # the decoded frames resize exactly for the MP4 case: everything compared at 1e-4
    if [ $c = video_mp4_h264_8f ]; then
        check "dump $c: pixel_values_videos exact, features compared (not only reported)" sh -c \
            'grep -q "^check pixel_values_videos: .*(exact;" "$0" && grep -q "^check video_features: .*(limit" "$0" &&
             ! grep -q "reported, not compared" "$0"' "$tmp/err"
    fi
    hdr=$(head -c 8192 "$tmp/$c.safetensors" 2>/dev/null | tr -d '\0')
    missing=
    names="input_ids logits text_hidden_states generated_ids"
    [ $want_video -eq 1 ] && names="$names video_frame_indices video_frames_rgb video_frames_resized pixel_values_videos
        video_vision_hidden_states video_vision_selected video_projected video_pooled video_features num_video_tokens"
    case $c in image_*) names="$names pixel_values image_sizes image_rgb vision_hidden_states projected packed" ;; esac
    for name in $names; do
        case "$hdr" in *"\"$name\""*) ;; *) missing="$missing $name" ;; esac
    done
    check "dump $c -o: every tensor written${missing:+ (missing:$missing)}" test -z "$missing"
done

# ---- run --video: greedy ids equal the reference -------------------------------------------------
for c in video_mp4_h264_8f video_webm_vp9_4f image_and_video; do
    want=$(gen_ids $c)
    # shellcheck disable=SC2046
    got=$("$T" run -m "$M" $(media $c) -p "$(printf '%b' "$(user_text $c)")" -n 16 --ignore-eos --print-ids 2>"$tmp/err")
    if [ "$got" = "$want" ]; then ok "run $c: 16 greedy ids"; else bad "run $c: got [$got] want [$want]"; fi
done
# no placeholders in the text: "<image>\n" then "<video>\n" go first (TowerVideo's format)
# shellcheck disable=SC2046
got=$("$T" run -m "$M" $(media image_and_video) -p "Does the video show the picture?" -n 16 --ignore-eos \
    --print-ids 2>"$tmp/err")
check "run --image --video: placeholders implied (image first)" test "$got" = "$(gen_ids image_and_video)"
printf '<bos><start_of_turn>user\n<image>\n<video>\nQ?<end_of_turn>\n<start_of_turn>model\n' >"$tmp/want"
"$T" run -m "$M" --video "$VID/testsrc_vp9_320x240_25fps_4s.webm" --image "$tmp/img300.bmp" -p "Q?" --show-prompt \
    >"$tmp/got" 2>"$tmp/err"
check "run --video --image --show-prompt: <image> then <video> before the text" cmp -s "$tmp/got" "$tmp/want"
# placeholders written in the other order: media follow the text, not the command line
"$T" run -m "$M" --image "$tmp/img300.bmp" --video "$VID/testsrc2_h264_480x270_rot90_24fps_3s.mp4" --frames 4 \
    -p "<video>
<image>
Does the video show the picture?" -n 4 --ignore-eos --print-ids >"$tmp/out" 2>"$tmp/err"
check "run: <video> before <image> in the text" test -s "$tmp/out"

# -v: sampled indices, decode and encode times, token count
"$T" run -m "$M" --video "$VID/testsrc2_h264_640x360_30fps_5s.mp4" --frames 8 -p "Hi" -n 2 -v >"$tmp/out" 2>"$tmp/err"
check "run -v: sampled frame indices, decode time, tokens" \
    grep -q '^\[video .*: 8 of 150 frames .*indices 0 18 37 56 75 93 112 131; decoded in .* ms; 73 tokens\]' "$tmp/err"
check "run -v: video encode time" grep -q '^\[video .*: 8 frames encoded in .* ms, 73 tokens\]' "$tmp/err"

# ---- --frames and --image-tokens: F * 9 + 1 tokens -------------------------------------------------
for f in 1 4 8 32; do
    got=$("$T" run -m "$M" --video "$VID/testsrc2_h264_640x360_30fps_5s.mp4" --frames $f --image-tokens 2>"$tmp/err" | cut -f1)
    check "--frames $f --image-tokens: $((f * 9 + 1)) tokens" test "$got" = "$((f * 9 + 1))"
done
got=$("$T" run -m "$M" --video "$VID/testsrc_vp9_320x240_25fps_4s.webm" --image-tokens 2>"$tmp/err")
check "--frames defaults to 32 (289 tokens)" sh -c 'printf "%s\n" "$0" | grep -q "^289	32 frames of 320x240	"' "$got"
got=$("$T" run -m "$M" --image "$tmp/img300.bmp" --video "$VID/testsrc2_h264_480x270_rot90_24fps_3s.mp4" --frames 4 \
    --image-tokens 2>"$tmp/err" | cut -f1 | tr '\n' ' ')
check "--image-tokens with an image and a video: 235 37" test "$got" = "235 37 "
got=$("$T" run -m "$M" --image "$tmp/img300.bmp" --image "$tmp/img200x100.bmp" --image-tokens 2>"$tmp/err" |
    cut -f1 | tr '\n' ' ')
check "--image-tokens, two OneVision images: one tile each (26 26)" test "$got" = "26 26 "

# ---- frames given as images: a list, a directory ----------------------------------------------------
SYN=$EXP/video_synthetic_8f
mkdir "$tmp/frames"
list=
for i in 0 1 2 3 4 5 6 7; do
    "$RGB2BMP" "$SYN/tensors.safetensors" video_frames_rgb "$tmp/frames/f$i.bmp" $i 2>"$tmp/err"
    list="$list${list:+,}$tmp/frames/f$i.bmp"
done
write_prompt video_synthetic_8f "$tmp/syn.txt"
"$T" dump -m "$M" --prompt-file "$tmp/syn.txt" --video-frames "$list" --frames 8 -n 16 \
    --check-against "$SYN/tensors.safetensors" >"$tmp/out" 2>"$tmp/err"
check "dump --video-frames (8 BMPs of video_synthetic_8f): every check passes" \
    sh -c '[ $0 -eq 0 ] && ! grep -q MISMATCH "$1" && grep -q "^check video_features: .*ok$" "$1"' $? "$tmp/err"
"$T" dump -m "$M" --prompt-file "$tmp/syn.txt" --video "$tmp/frames" --frames 8 -n 16 \
    --check-against "$SYN/tensors.safetensors" >"$tmp/out" 2>"$tmp/err"
check "dump --video DIR (frames in natural order): every check passes" \
    sh -c '[ $0 -eq 0 ] && ! grep -q MISMATCH "$1" && grep -q "^check generated_ids (16): ok$" "$1"' $? "$tmp/err"
got=$("$T" run -m "$M" --video-frame "$tmp/frames/f0.bmp" --video-frame "$tmp/frames/f1.bmp" --image-tokens 2>"$tmp/err" | cut -f1)
check "--video-frame x2: 2 frames, 19 tokens" test "$got" = "19"

# ---- chat /video ------------------------------------------------------------------------------------
printf '/video %s\nDescribe what happens in the video.\nAnd then?\n' "$VID/testsrc2_h264_640x360_30fps_5s.mp4" |
    "$T" chat -m "$M" --frames 8 -n 3 -v >"$tmp/out" 2>"$tmp/err"
rc=$?
check "chat /video: two replies, the second reuses the video's cache" sh -c \
    '[ $0 -eq 0 ] && [ $(wc -l <"$1") -eq 2 ] && grep -q "reused 90" "$2"' $rc "$tmp/out" "$tmp/err"
printf '/video %s\nhi\n' /nonexistent/clip.mp4 | "$T" chat -m "$M" -n 2 >"$tmp/out" 2>"$tmp/err"
check "chat /video missing file: error names it, chat goes on" sh -c \
    'grep -q "clip.mp4" "$0" && [ $(wc -l <"$1") -eq 1 ]' "$tmp/err" "$tmp/out"

# ---- errors -------------------------------------------------------------------------------------------
expect_error "video on TowerVision (no <video> token)" 1 "no <video> token" \
    "$T" run -m "$FX/tiny-towervision" --video "$VID/testsrc_vp9_320x240_25fps_4s.webm" -p "Hi"
expect_error "dump --video on TowerVision" 1 "no <video> token" \
    "$T" dump -m "$FX/tiny-towervision" --prompt-file "$tmp/syn.txt" --video "$VID/testsrc_vp9_320x240_25fps_4s.webm" -o "$tmp/x.st"
check "dump error leaves no file" test ! -e "$tmp/x.st"
expect_error "truncated MP4 (no moov): names the file and FFmpeg's reason" 1 "corrupt_truncated_no_moov.mp4.*moov atom not found" \
    "$T" run -m "$M" --video "$VID/corrupt_truncated_no_moov.mp4" -p "Hi"
printf 'not a video at all\n' >"$tmp/text.mp4"
expect_error "a text file named .mp4" 1 "text.mp4: cannot open as a video" \
    "$T" run -m "$M" --video "$tmp/text.mp4" -p "Hi"
expect_error "missing video file" 1 "nope.mp4" "$T" run -m "$M" --video "$tmp/nope.mp4" -p "Hi"
expect_error "too many tokens for the context: says what the video takes, suggests --frames" 1 \
    "the video takes 73 (8 frames x 9 + 1); sample fewer frames (5 fit).*--frames N" \
    "$T" run -m "$M" --video "$VID/testsrc2_h264_640x360_30fps_5s.mp4" --frames 8 --ctx 60 -p "Hi"
expect_error "two <video> placeholders, one video" 1 "2 <video> placeholder(s) but 1 video(s)" \
    "$T" run -m "$M" --video "$VID/testsrc_vp9_320x240_25fps_4s.webm" --frames 1 -p "<video> and <video>"
expect_error "--frames out of range: usage error" 2 "option .-frames: expected an integer" \
    "$T" run -m "$M" --video "$VID/testsrc_vp9_320x240_25fps_4s.webm" --frames -3 -p "Hi"
expect_error "--video - : usage error" 2 "cannot read stdin" "$T" run -m "$M" --video - -p "Hi"
# damaged clips that still decode: the garbled MP4 (bad packets skipped), the cut WebM (25 frames)
got=$("$T" run -m "$M" --video "$VID/corrupt_garbled_mdat_h264.mp4" --frames 8 -p "Hi" -n 2 --print-ids -v 2>"$tmp/err")
check "garbled MP4: decodes (147 frames, packets skipped) and runs" sh -c \
    '[ -n "$0" ] && grep -q "of 147 frames.*packets skipped" "$1"' "$got" "$tmp/err"
got=$("$T" run -m "$M" --video "$VID/corrupt_truncated_30pct_vp9.webm" --image-tokens 2>"$tmp/err")
check "truncated WebM: the 25 frames that decode (25 * 9 + 1 = 226 tokens)" sh -c \
    'printf "%s\n" "$0" | grep -q "^226	25 frames of 320x240"' "$got"

finish
