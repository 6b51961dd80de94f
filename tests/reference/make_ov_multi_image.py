#!/usr/bin/env python3
"""Expectations for LlavaOnevision (TowerVideo) prompts with SEVERAL images, which the shared
fixtures do not cover.

    python3 tests/reference/make_ov_multi_image.py [--shared DIR] [--out DIR]

Needs Debian's python3-torch, python3-numpy and python3-pil.  Imports the shared PyTorch reference
(../shared/reference: tvref.py, tvref_video.py, and the helpers of make_fixtures.py /
make_video_fixtures.py) and adds only what it lacks: the image processor's multi-image path.

transformers' LlavaOnevisionImageProcessor.preprocess (slow, PIL) tiles an image only when its
sample holds exactly one image (``need_patching = [n == 1 for n in batch_num_images ...]``).  With
several images in one sample each image instead goes through ``pad_to_square``:

  * ``background_color = tuple(int(x * 255) for x in self.image_mean)`` -- the processor's OWN
    image_mean (0.5 -> 127 per channel), truncated, not rounded;
  * a ``max(h, w)`` square of the image's dtype (uint8) filled with it channel by channel, the
    image pasted at ``start = (max_dim - short_side) // 2`` along the short axis only (the odd
    pixel goes to the bottom / right); a square image is returned unchanged;
  * then ``_preprocess`` of that ONE patch: ``resize`` to size (height, width) with the processor's
    resample (PIL, uint8 in/out: Image.resize with BICUBIC here), ``rescale`` (float64 multiply by
    rescale_factor, cast to float32), ``normalize`` ((x - mean) / std in float32), CHW.

The model (LlavaOnevisionModel.get_image_features + pack_image_features) then uses that single
tile: SigLIP -> projector -> its g*g features + ONE image_newline (tvref_video.image_features_ov with
batch_num_images, pack_image_features_ov); the processor counts ``num_image_tokens + 1`` per image
(tvref_video.num_image_tokens_ov(multi_image=True)).  Video features are not affected
(batch_num_images counts images only).

Cases (written to tests/data/ov_multi_image/<case>/{tensors.safetensors,case.json}):
  two_images        300x300 (image_rgb of expected-video/image_and_video) + 200x100
                    (image_ov_200x100) with "<image>\\n<image>\\nWhat differs between the two pictures?"
  two_images_video  the same two images + the 4 decoded frames of image_and_video
                    (video_frames_rgb), "<image>\\n<image>\\n<video>\\n..."
  tall_wide         synthetic gradients 13x400 (tall: padded left/right, odd split) and
                    400x61 (wide: padded top/bottom, odd split)
Deterministic (fixed inputs, single thread): two runs give byte-identical files.
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def _shared_dir(argv):
    for i, a in enumerate(argv):
        if a == "--shared" and i + 1 < len(argv):
            return os.path.abspath(argv[i + 1])
        if a.startswith("--shared="):
            return os.path.abspath(a.split("=", 1)[1])
    return os.environ.get("TOWER_SHARED") or os.path.normpath(os.path.join(REPO, "..", "shared"))


SHARED = _shared_dir(sys.argv)
sys.path.insert(0, os.path.join(SHARED, "reference"))
import tvref  # noqa: E402
import tvref_video as tvv  # noqa: E402
import make_fixtures as mf  # noqa: E402  (probe ids, dump_json, shapes_of; sets 1 torch thread)
import make_video_fixtures as mvf  # noqa: E402  (run_text: logits, probes, greedy, f32-vs-f64 stats)

torch.set_num_threads(1)
IMAGE_TOKEN_ID, VIDEO_TOKEN_ID = 256000, 256001
KEEP_TEXT = ["input_ids", "logits_last", "probe_ids", "logits_probe", "logits_topk_ids", "logits_topk_values",
             "logits_argmax", "logits_logsumexp", "generated_ids", "gen_logits_probe", "gen_topk_ids",
             "gen_topk_values", "gen_logsumexp"]


# ----------------------------------------------------------------------------------------------
# LlavaOnevisionImageProcessor, multi-image path (need_patching False)
# ----------------------------------------------------------------------------------------------
def pad_to_square(img, background_color):
    """Mirrors LlavaOnevisionImageProcessor.pad_to_square (channels-last uint8 [h, w, c]).
    Returns (square image, (top, left, bottom, right) padding)."""
    h, w, c = img.shape
    if h == w:
        return img, (0, 0, 0, 0)
    side = max(h, w)
    if len(background_color) != c:
        raise ValueError("background_color must have one value per channel")
    out = np.zeros((side, side, c), dtype=img.dtype)
    for i, col in enumerate(background_color):
        out[:, :, i] = col
    if w > h:
        start = (side - h) // 2
        out[start:start + h, :, :] = img
        return out, (start, 0, side - h - start, 0)
    start = (side - w) // 2
    out[:, start:start + w, :] = img
    return out, (0, start, 0, side - w - start)


def preprocess_single_tile(img, pp):
    """One image of a multi-image sample: pad_to_square with int(mean*255), then _preprocess of
    that single patch (PIL resize to size, rescale, normalize).  Returns dict(pixel_values
    [1,3,S,S] f32, tile_rgb [S,S,3] uint8 (after the resize), padding, fill, side)."""
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    fill = tuple(int(x * 255) for x in pp["image_mean"])
    sq, padding = pad_to_square(img, fill)
    S = (pp["size"]["height"], pp["size"]["width"])
    t = tvref.pil_resize_uint8(sq, S, pp.get("resample", 3)) if pp.get("do_resize", True) else sq
    x = t
    if pp.get("do_rescale", True):
        x = (x.astype(np.float64) * pp.get("rescale_factor", 1 / 255)).astype(np.float32)
    if pp.get("do_normalize", True):
        mean = np.array(pp["image_mean"], dtype=np.float32)
        std = np.array(pp["image_std"], dtype=np.float32)
        x = (x.astype(np.float32) - mean) / std
    pv = np.ascontiguousarray(x.transpose(2, 0, 1))[None].astype(np.float32)
    return {"pixel_values": pv, "tile_rgb": np.ascontiguousarray(t), "padding_tlbr": list(padding),
            "fill": list(fill), "side": int(sq.shape[0])}


# ----------------------------------------------------------------------------------------------
def gradient_image(w, h, phase):
    """Deterministic synthetic RGB gradient (no randomness): red along x, green along y, blue a
    diagonal ramp with a few bands, so both axes and the padding border carry signal."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3), np.float64)
    img[..., 0] = 255 * xx / max(w - 1, 1)
    img[..., 1] = 255 * (1 - yy / max(h - 1, 1))
    img[..., 2] = 127.5 + 120 * np.sin((xx + yy) * 2 * np.pi / 37.0 + phase)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def checksum(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def load_model(shared):
    mdir = os.path.join(shared, "fixtures", "tiny-towervideo")

    def rd(name):
        with open(os.path.join(mdir, name), encoding="utf-8") as f:
            return json.load(f)
    cfg, pp, vpp, proc = (rd("config.json"), rd("preprocessor_config.json"), rd("video_preprocessor_config.json"),
                          rd("processor_config.json"))
    W = {k: torch.from_numpy(v) for k, v in tvref.load_safetensors(os.path.join(mdir, "model.safetensors")).items()}
    W64 = {k: v.double() for k, v in W.items()}
    tok = tvref.GemmaTokenizer(os.path.join(mdir, "tokenizer.json"))
    return cfg, pp, vpp, proc, W, W64, tok


def run_case(out_dir, name, user_text, images, video, ctx):
    """images: list of (uint8 [h,w,3], source description); video: None or (frames [F,H,W,3],
    source description).  Media must appear in the prompt images first, then the video."""
    cfg, pp, vpp, proc, W, W64, tok = ctx
    nit = proc["num_image_tokens"]
    assert len(images) >= 2, "the multi-image path needs at least two images in the sample"
    t, imeta = {}, []
    pre = [preprocess_single_tile(img, pp) for img, _ in images]
    pvs = [torch.from_numpy(p["pixel_values"]) for p in pre]
    sizes = [tuple(img.shape[:2]) for img, _ in images]
    with torch.no_grad():
        packed, inter = tvv.image_features_ov(W, cfg, pvs, sizes, batch_num_images=[len(images)],
                                              keep_intermediates=True)
        packed64 = tvv.image_features_ov(W64, cfg, [p.double() for p in pvs], sizes, batch_num_images=[len(images)])
    assert inter["counts"] == [1] * len(images)
    n_img = [tvv.num_image_tokens_ov(h, w, pp, nit, multi_image=True) for h, w in sizes]
    for j, ((img, src), p) in enumerate(zip(images, pre)):
        assert packed[j].shape[0] == n_img[j] == nit + 1
        t["image_rgb_%d" % j] = torch.from_numpy(np.ascontiguousarray(img))
        t["tile_rgb_%d" % j] = torch.from_numpy(p["tile_rgb"])
        t["projected_%d" % j] = inter["projected"][j]
        t["packed_%d" % j] = packed[j]
        imeta.append({"source": src, "width": int(img.shape[1]), "height": int(img.shape[0]),
                      "square_side": p["side"], "padding_top_left_bottom_right": p["padding_tlbr"],
                      "fill_rgb": p["fill"], "num_image_tokens": n_img[j],
                      "max_abs_diff_packed_f32_vs_f64": float((packed[j].double() - packed64[j]).abs().max())})
    t["pixel_values"] = torch.cat([p[None] for p in pvs], dim=0)          # [N, 1, 3, S, S]
    t["image_sizes"] = torch.tensor(sizes, dtype=torch.long)
    t["num_image_tokens"] = torch.tensor(n_img, dtype=torch.long)
    img_feats = torch.cat(packed, dim=0)
    img_feats64 = torch.cat(packed64, dim=0)
    t["image_features"] = img_feats
    vid_feats = vid_feats64 = None
    vmeta, n_vid = None, []
    if video is not None:
        frames, vsrc = video
        vt, vid_feats, vid_feats64, vmeta = mvf.video_block(W, W64, cfg, frames, vpp)
        for k in ("video_frames_resized", "pixel_values_videos", "video_features", "num_video_tokens"):
            t[k] = vt[k]
        vmeta["source"] = vsrc
        vmeta["video_frames_rgb_sha256"] = checksum(frames)
        t["video_frames_rgb_checksum"] = torch.tensor(
            [int(frames.astype(np.int64).sum()), int((frames.reshape(-1).astype(np.int64)
                                                      * (np.arange(frames.size, dtype=np.int64) % 251 + 1)).sum())],
            dtype=torch.long)
        n_vid = [vmeta["num_video_tokens"]]
    prompt = tvref.chat_prompt(user_text)
    ids = tok.encode(tvv.expand_media_tokens(prompt, n_img, n_vid))
    assert ids.count(IMAGE_TOKEN_ID) == sum(n_img) and ids.count(VIDEO_TOKEN_ID) == sum(n_vid)
    tt, stats, gen = mvf.run_text(W, W64, cfg, ids, img_feats, img_feats64, vid_feats, vid_feats64)
    for k in KEEP_TEXT:
        t[k] = tt[k]
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    tvref.save_safetensors(os.path.join(d, "tensors.safetensors"), t)
    info = {
        "case": name, "user_text": user_text, "prompt": prompt,
        "tokenize": "expand each <image>/<video> to N copies (processor), then tokenizer.encode(text, "
                    "add_special_tokens=False)",
        "processor": "LlavaOnevisionImageProcessor with batch_num_images=[%d]: no tiling; pad_to_square with "
                     "int(image_mean*255), resize to %dx%d (PIL resample %d), rescale, normalize; the model uses "
                     "the base tile + one image_newline per image" % (len(images), pp["size"]["height"],
                                                                       pp["size"]["width"], pp["resample"]),
        "images": imeta, "video": vmeta, "num_image_tokens": n_img, "num_video_tokens": n_vid[0] if n_vid else None,
        "single_image_would_take_tokens": [tvv.num_image_tokens_ov(h, w, pp, nit) for h, w in sizes],
        "num_tokens": len(ids), "first_image_token_position": ids.index(IMAGE_TOKEN_ID),
        "first_video_token_position": ids.index(VIDEO_TOKEN_ID) if n_vid else None,
        "generated_ids": gen, "generated_text": tok.decode(gen), "stats": stats,
        "tensors": mf.shapes_of(t),
    }
    mf.dump_json(os.path.join(d, "case.json"), info)
    print(name, len(ids), n_img, n_vid, json.dumps(stats), flush=True)
    return info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=SHARED, help="the shared folder (reference/ and fixtures/)")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "ov_multi_image"))
    args = ap.parse_args()
    ctx = load_model(SHARED)
    ev = os.path.join(SHARED, "fixtures", "expected-video")
    iv = tvref.load_safetensors(os.path.join(ev, "image_and_video", "tensors.safetensors"))
    ov = tvref.load_safetensors(os.path.join(ev, "image_ov_200x100", "tensors.safetensors"))
    img300, img200, frames = iv["image_rgb"], ov["image_rgb"], iv["video_frames_rgb"]
    assert img300.shape == (300, 300, 3) and img200.shape == (100, 200, 3) and frames.shape[0] == 4
    src300 = "fixtures/expected-video/image_and_video: image_rgb (300x300)"
    src200 = "fixtures/expected-video/image_ov_200x100: image_rgb (200x100)"
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    cases = []
    cases.append(run_case(out, "two_images", "<image>\n<image>\nWhat differs between the two pictures?",
                          [(img300, src300), (img200, src200)], None, ctx))
    cases.append(run_case(out, "two_images_video",
                          "<image>\n<image>\n<video>\nWhich of the two pictures does the video show?",
                          [(img300, src300), (img200, src200)],
                          (frames, "fixtures/expected-video/image_and_video: video_frames_rgb [4,270,480,3] "
                                   "(frames [0,18,36,54] of testsrc2_h264_480x270_rot90_24fps_3s.mp4)"), ctx))
    cases.append(run_case(out, "tall_wide", "<image>\n<image>\nCompare the tall picture with the wide one.",
                          [(gradient_image(13, 400, 0.0), "gradient_image(13, 400, phase 0.0): tall, 13 wide"),
                           (gradient_image(400, 61, 1.0), "gradient_image(400, 61, phase 1.0): wide, 61 tall")],
                          None, ctx))
    mf.dump_json(os.path.join(out, "manifest.json"), {
        "generator": "tests/reference/make_ov_multi_image.py", "model": "fixtures/tiny-towervideo",
        "torch_version": torch.__version__, "numpy_version": np.__version__,
        "cases": [c["case"] for c in cases]})
    print("done")


if __name__ == "__main__":
    main()
