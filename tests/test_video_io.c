/*
** test_video_io.c — video decoding, frame sampling and frame preprocessing against the TowerVideo
** fixtures (fixtures/expected-video/<case>/tensors.safetensors, clips in media/videos).
**
** Decoding is compared with the stored PyAV frames (video_frames_rgb); the resize and normalise
** steps start from those stored frames, so a level of swscale difference cannot leak into them.
** Without FFmpeg in the build the decoding checks are skipped (they print a note) and the rest runs.
*/
#include "safetensors.h"
#include "testhelp.h"
#include "video.h"

#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- synthetic clips (bench/tool_videobench.c includes this file for them) ------------------ */

#ifdef TW_HAVE_FFMPEG
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>

/* Frame i shows its number as 16 blocks, 8 per row, of 8x18 pixels: block b is bright when bit b
** of i is set. The blocks survive any sane quantiser, so a decoded frame tells its own number. */
#define GEN_W 64
#define GEN_H 36

static void gen_draw(AVFrame *f, int64_t i) {
    for (int y = 0; y < GEN_H; y++)
        for (int x = 0; x < GEN_W; x++) {
            int b = (y / 18) * 8 + x / 8;
            f->data[0][y * f->linesize[0] + x] = (uint8_t)((i >> b) & 1 ? 200 : 40);
        }
    for (int y = 0; y < GEN_H / 2; y++) {
        memset(f->data[1] + y * f->linesize[1], 128, GEN_W / 2);
        memset(f->data[2] + y * f->linesize[2], 128, GEN_W / 2);
    }
}

/* The frame number drawn on a decoded rgb24 frame of GEN_W x GEN_H (-1: not such a frame). */
static int64_t gen_read(const uint8_t *rgb, int32_t h, int32_t w) {
    if (h != GEN_H || w != GEN_W) return -1;
    int64_t i = 0;
    for (int b = 0; b < 16; b++) {
        int x = (b % 8) * 8 + 4, y = (b / 8) * 18 + 9;
        if (rgb[((size_t)y * w + x) * 3 + 1] > 120) i |= (int64_t)1 << b;
    }
    return i;
}

static int gen_write(AVFormatContext *oc, AVCodecContext *enc, AVStream *st, AVFrame *f, AVPacket *pkt) {
    int r = avcodec_send_frame(enc, f);
    while (r >= 0) {
        r = avcodec_receive_packet(enc, pkt);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return 0;
        if (r < 0) break;
        av_packet_rescale_ts(pkt, enc->time_base, st->time_base);
        pkt->stream_index = st->index;
        r = av_interleaved_write_frame(oc, pkt);
    }
    return r;
}

/* Writes an MP4 of n frames at fps frames per second with a keyframe every gop frames and up to
** bframes B-frames, with the encoder `codec` ("libx264", "mpeg4"). 0 on success, -1 when this
** FFmpeg lacks the encoder or writing failed. */
static int gen_clip(const char *path, const char *codec, int64_t n, int fps, int gop, int bframes) {
    const AVCodec *c = avcodec_find_encoder_by_name(codec);
    if (!c) return -1;
    AVFormatContext *oc = NULL;
    AVCodecContext *enc = NULL;
    AVFrame *f = av_frame_alloc();
    AVPacket *pkt = av_packet_alloc();
    int r = -1;
    if (!f || !pkt || avformat_alloc_output_context2(&oc, NULL, "mp4", path) < 0) goto out;
    AVStream *st = avformat_new_stream(oc, NULL);
    if (!st || !(enc = avcodec_alloc_context3(c))) goto out;
    enc->width = GEN_W, enc->height = GEN_H, enc->pix_fmt = AV_PIX_FMT_YUV420P;
    enc->time_base = (AVRational){ 1, fps }, enc->framerate = (AVRational){ fps, 1 };
    enc->gop_size = gop, enc->keyint_min = gop, enc->max_b_frames = bframes;
    enc->thread_count = 1;
    if (oc->oformat->flags & AVFMT_GLOBALHEADER) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if (strcmp(codec, "libx264") == 0) {
        char params[128];
        snprintf(params, sizeof params, "keyint=%d:min-keyint=%d:scenecut=0:bframes=%d:open-gop=0", gop, gop, bframes);
        av_opt_set(enc->priv_data, "preset", "veryfast", 0);
        av_opt_set(enc->priv_data, "x264-params", params, 0);
        av_opt_set(enc->priv_data, "qp", "12", 0);
    } else {
        enc->flags |= AV_CODEC_FLAG_QSCALE;
        enc->global_quality = FF_QP2LAMBDA * 2;
    }
    if (avcodec_open2(enc, c, NULL) < 0 || avcodec_parameters_from_context(st->codecpar, enc) < 0) goto out;
    st->time_base = enc->time_base;
    st->avg_frame_rate = enc->framerate;
    if (avio_open(&oc->pb, path, AVIO_FLAG_WRITE) < 0 || avformat_write_header(oc, NULL) < 0) goto out;
    f->format = enc->pix_fmt, f->width = GEN_W, f->height = GEN_H;
    if (av_frame_get_buffer(f, 0) < 0) goto out;
    for (int64_t i = 0; i < n; i++) {
        if (av_frame_make_writable(f) < 0) goto out;
        gen_draw(f, i);
        f->pts = i;
        if (gen_write(oc, enc, st, f, pkt) < 0) goto out;
    }
    if (gen_write(oc, enc, st, NULL, pkt) < 0 || av_write_trailer(oc) < 0) goto out;
    r = 0;
out:
    if (oc && oc->pb) avio_closep(&oc->pb);
    avformat_free_context(oc);
    avcodec_free_context(&enc);
    av_frame_free(&f);
    av_packet_free(&pkt);
    return r;
}

/* Same sampled indices, same frame count, same pixels. */
static bool same_video(const tw_video *a, const tw_video *b) {
    if (!a || !b || a->n_frames != b->n_frames || a->height != b->height || a->width != b->width ||
        a->total_frames != b->total_frames)
        return false;
    return memcmp(a->indices, b->indices, (size_t)a->n_frames * sizeof *a->indices) == 0 &&
           memcmp(a->rgb, b->rgb, (size_t)a->n_frames * a->height * a->width * 3) == 0;
}

/* Every kept frame shows the number it was sampled as. */
static bool frames_show_indices(const tw_video *v) {
    if (!v) return false;
    for (int32_t i = 0; i < v->n_frames; i++)
        if (gen_read(v->rgb + (size_t)i * v->height * v->width * 3, v->height, v->width) != v->indices[i]) return false;
    return true;
}

/* Where generated clips go: $TMPDIR, else /dev/shm, else /tmp. */
static void gen_path(char *buf, size_t n, const char *tag) {
    const char *dir = getenv("TMPDIR");
    struct stat sb;
    if (!dir || !*dir) dir = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(buf, n, "%s/tw_video_%s_%d.mp4", dir, tag, (int)getpid());
}
#endif /* TW_HAVE_FFMPEG */

#ifndef TW_VIDEO_TEST_NO_MAIN

static const char *media(const char *name) {
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/../media/videos/%s", th_fixtures(), name);
    return b;
}

static const tw_tensor *need(const tw_st_set *st, const char *name, tw_dtype type) {
    const tw_tensor *t = tw_st_get(st, name);
    CHECK(t && t->type == type, "tensor %s missing or wrong dtype", name);
    return t && t->type == type ? t : NULL;
}

/* Max abs difference and the fraction of differing bytes of two uint8 buffers. */
static int u8_diff(const uint8_t *a, const uint8_t *b, size_t n, double *frac) {
    int mx = 0;
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d) nd++;
        if (d > mx) mx = d;
    }
    *frac = n ? (double)nd / (double)n : 0;
    return mx;
}

/* The torch AA bicubic value of one output sample computed in double (the exact formula), to
** tell whether a 1-level difference sits on a rounding boundary (x.5 within float noise). */
static void taps_d(int32_t in, int32_t out, int32_t o, int64_t *lo, int32_t *n, double w[64]) {
    double scale = (double)in / out, fs = scale > 1 ? scale : 1, support = 2 * fs;
    double center = (o + 0.5) * scale, total = 0;
    int64_t a = (int64_t)(center - support + 0.5), b = (int64_t)(center + support + 0.5);
    if (a < 0) a = 0;
    if (b > in) b = in;
    *lo = a, *n = (int32_t)(b - a);
    for (int32_t j = 0; j < *n && j < 64; j++) {
        double x = fabs((j + a - center + 0.5) / fs);
        w[j] = x < 1 ? (1.5 * x - 2.5) * x * x + 1 : x < 2 ? ((-0.5 * x + 2.5) * x - 4) * x + 2 : 0;
        total += w[j];
    }
    for (int32_t j = 0; j < *n && j < 64; j++) w[j] /= total;
}

static double ref_value(const uint8_t *src, int32_t sh, int32_t sw, int32_t dh, int32_t dw, int32_t y, int32_t x,
                        int c) {
    int64_t ly, lx;
    int32_t ny, nx;
    double wy[64], wx[64], v = 0;
    taps_d(sh, dh, y, &ly, &ny, wy);
    taps_d(sw, dw, x, &lx, &nx, wx);
    for (int32_t i = 0; i < ny; i++) {
        double row = 0;
        for (int32_t j = 0; j < nx; j++) row += wx[j] * src[((size_t)(ly + i) * sw + (size_t)(lx + j)) * 3 + c];
        v += wy[i] * row;
    }
    return v;
}

/* Resize + normalise from the fixture's own decoded frames. */
static void check_prep(const char *name, const tw_st_set *st, const tw_video_preproc *pp) {
    const tw_tensor *rgb = need(st, "video_frames_rgb", TW_DT_U8);
    const tw_tensor *rs = need(st, "video_frames_resized", TW_DT_U8);
    const tw_tensor *pv = need(st, "pixel_values_videos", TW_DT_F32);
    if (!rgb || !rs || !pv) return;
    tw_video *v = NULL;
    CHECK_OK(tw_video_from_rgb(rgb->data, (int32_t)rgb->shape[0], (int32_t)rgb->shape[1], (int32_t)rgb->shape[2], &v),
             name);
    if (!v) return;
    uint8_t *out = NULL;
    int32_t oh = 0, ow = 0;
    CHECK_OK(tw_video_resize(pp, v, &out, &oh, &ow), name);
    CHECK(oh == rs->shape[1] && ow == rs->shape[2], "%s: resized to %dx%d", name, ow, oh);
    if (out && oh == rs->shape[1] && ow == rs->shape[2]) {
        double frac;
        int mx = u8_diff(out, rs->data, rs->nbytes, &frac);
        printf("  %-20s resize %dx%d -> %dx%d vs video_frames_resized: max %d, %.6f%% differ\n", name, v->width,
               v->height, ow, oh, mx, 100 * frac);
        CHECK(mx <= 1 && frac < 1e-3, "%s: resize differs by %d levels on %.4f%%", name, mx, 100 * frac);
        /* Every differing value must be a rounding tie in exact arithmetic: within 1e-3 of x.5. */
        const uint8_t *e = rs->data;
        double worst = 0;
        size_t fsz = (size_t)oh * ow * 3;
        for (size_t i = 0; i < rs->nbytes; i++) {
            if (out[i] == e[i]) continue;
            size_t f = i / fsz, r = i % fsz;
            double ref = ref_value(v->rgb + f * (size_t)v->height * v->width * 3, v->height, v->width, oh, ow,
                                   (int32_t)(r / 3 / ow), (int32_t)(r / 3 % ow), (int)(r % 3));
            double off = fabs(ref - floor(ref) - 0.5);
            if (off > worst) worst = off;
        }
        if (mx) printf("  %-20s   differing values lie within %.2g of x.5 (exact double computation)\n", name, worst);
        CHECK(worst < 1e-3, "%s: a differing resized value is %g away from a rounding tie", name, worst);
    }
    /* Normalise from the fixture's resized frames: isolates the formula from the resize. */
    size_t n = (size_t)tw_tensor_nelem(pv);
    float *px = malloc(n * sizeof *px);
    CHECK_OK(tw_video_normalize(pp, rs->data, (int32_t)rs->shape[0], (int32_t)rs->shape[1], (int32_t)rs->shape[2], px),
             name);
    double md = 0;
    for (size_t i = 0; i < n; i++) md = fmax(md, fabs((double)px[i] - ((const float *)pv->data)[i]));
    printf("  %-20s pixel_values_videos (from fixture resized frames): max abs diff %.3g\n", name, md);
    CHECK(md <= 1e-6, "%s: pixel_values_videos differ by %g", name, md);
    free(px);
    /* And the whole chain from the decoded frames. */
    float *all = NULL;
    CHECK_OK(tw_video_preprocess(pp, v, &all, &oh, &ow), name);
    if (all) {
        md = 0;
        for (size_t i = 0; i < n; i++) md = fmax(md, fabs((double)all[i] - ((const float *)pv->data)[i]));
        printf("  %-20s pixel_values_videos (full chain): max abs diff %.3g\n", name, md);
        CHECK(md <= 2.0 / 127.5 + 1e-6, "%s: full chain differs by %g", name, md);
    }
    free(all);
    free(out);
    tw_video_free(v);
}

/* Decoding: sampled indices and frames against the fixture, in every reading mode: trusting the
** container's count or counting first, and seeking automatically, never or whenever possible. */
static void check_decode(const char *name, const tw_st_set *st, const char *clip, int32_t n_frames,
                         int64_t total, int32_t h, int32_t w) {
    const tw_tensor *idx = need(st, "video_frame_indices", TW_DT_I64);
    const tw_tensor *rgb = need(st, "video_frames_rgb", TW_DT_U8);
    if (!idx || !rgb) return;
    static const tw_seek_mode modes[] = { TW_SEEK_AUTO, TW_SEEK_NEVER, TW_SEEK_ALWAYS };
    static const char *const mode_names[] = { "auto", "never", "always" };
    for (int pass = 0; pass < 6; pass++) {
        /* pass & 1: always count first; pass / 2: the seek mode. */
        tw_video_opts o = {0};
        o.count_by_decoding = pass & 1;
        o.seek_mode = modes[pass / 2];
        tw_video *v = NULL;
        CHECK_OK(tw_video_load(media(clip), n_frames, &o, &v), clip);
        if (!v) continue;
        CHECK(v->n_frames == idx->shape[0], "%s: %d frames", name, v->n_frames);
        CHECK(v->total_frames == total, "%s: T = %lld, expected %lld", name, (long long)v->total_frames,
              (long long)total);
        CHECK(v->height == h && v->width == w, "%s: frames %dx%d, expected %dx%d", name, v->width, v->height, w, h);
        bool same = v->n_frames == idx->shape[0];
        for (int32_t i = 0; same && i < v->n_frames; i++) same = v->indices[i] == ((const int64_t *)idx->data)[i];
        CHECK(same, "%s: sampled indices differ from video_frame_indices (seek %s)", name, mode_names[pass / 2]);
        if (same && v->height == rgb->shape[1] && v->width == rgb->shape[2]) {
            double frac;
            int mx = u8_diff(v->rgb, rgb->data, rgb->nbytes, &frac);
            if (pass == 0)
                printf("  %-20s decode %s: T=%lld codec %s rot %d fps %.3f dur %.3f; vs video_frames_rgb: max %d, "
                       "%.4f%% differ\n", name, clip, (long long)v->total_frames, v->codec, v->rotation, v->fps,
                       v->duration_s, mx, 100 * frac);
            if (!o.count_by_decoding)
                printf("  %-20s   seek %-6s: %lld frames decoded, %s\n", name, mode_names[pass / 2],
                       (long long)v->frames_decoded, v->access);
            /* Measured 0 in every mode; test_seek_fixtures requires the modes to agree bit for bit. */
            CHECK(mx <= 2, "%s: decoded frames differ by %d levels (%.4f%%, seek %s)", name, mx, 100 * frac,
                  mode_names[pass / 2]);
        }
        /* The fixture clips are short: AUTO never seeks them; ALWAYS seeks the indexed MP4s. */
        if (o.seek_mode != TW_SEEK_ALWAYS || o.count_by_decoding)
            CHECK(v->seeks == 0, "%s: %d seeks in mode %s", name, v->seeks, mode_names[pass / 2]);
        else if (strstr(clip, ".mp4"))
            CHECK(v->seeks > 0, "%s: no seek in mode always (%s)", name, v->access);
        tw_video_free(v);
    }
}

static void test_cases(void) {
    tw_video_preproc pp;
    char *dir = th_path("tiny-towervideo");
    CHECK_OK(tw_video_preproc_load(dir, &pp), "video_preprocessor_config.json");
    CHECK(pp.height == 74 && pp.width == 74 && pp.resample == TW_RESAMPLE_BICUBIC && pp.mean[0] == 0.5 &&
          pp.std[2] == 0.5 && pp.do_rescale && pp.do_normalize, "preprocessor config fields");

    static const struct {
        const char *name, *clip;
        int32_t n;
        int64_t total;
        int32_t h, w;
    } cases[] = {
        { "video_synthetic_8f", NULL, 8, 8, 84, 112 },
        { "video_mp4_h264_8f", "testsrc2_h264_640x360_30fps_5s.mp4", 8, 150, 360, 640 },
        { "video_webm_vp9_4f", "testsrc_vp9_320x240_25fps_4s.webm", 4, 100, 240, 320 },
        { "image_and_video", "testsrc2_h264_480x270_rot90_24fps_3s.mp4", 4, 72, 270, 480 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "expected-video/%s/tensors.safetensors", cases[i].name);
        tw_st_set *st = NULL;
        CHECK_OK(tw_st_open_file(th_path(rel), &st), rel);
        if (!st) continue;
        check_prep(cases[i].name, st, &pp);
#ifdef TW_HAVE_FFMPEG
        if (cases[i].clip)
            check_decode(cases[i].name, st, cases[i].clip, cases[i].n, cases[i].total, cases[i].h, cases[i].w);
#endif
        tw_st_close(st);
    }
#ifndef TW_HAVE_FFMPEG
    printf("  (built without FFmpeg: decoding checks skipped)\n");
#endif
}

/* Sampling formula: torch.arange(0, T, T/N).int(). */
static void test_sampling(void) {
    int64_t out[64];
    int32_t n = 0;
    CHECK_OK(tw_video_sample_indices(150, 8, out, &n), "sample 150/8");
    static const int64_t e1[] = { 0, 18, 37, 56, 75, 93, 112, 131 };
    CHECK(n == 8 && memcmp(out, e1, sizeof e1) == 0, "150/8 indices");
    CHECK_OK(tw_video_sample_indices(100, 4, out, &n), "sample 100/4");
    CHECK(n == 4 && out[0] == 0 && out[1] == 25 && out[2] == 50 && out[3] == 75, "100/4 indices");
    /* The N+1 quirk: arange(0, 150, 150/7) has 8 elements; we keep the first 7. */
    CHECK_OK(tw_video_sample_indices(150, 7, out, &n), "sample 150/7");
    CHECK(n == 7 && out[0] == 0 && out[1] == 21 && out[6] == 128, "150/7: n=%d last %lld", n, (long long)out[n - 1]);
    /* float32 rounding: 3 * (100/3) = 99.99999999999999 in double is 100.0f -> 100, not 99. */
    CHECK_OK(tw_video_sample_indices(300, 9, out, &n), "sample 300/9");
    CHECK(n == 9 && out[3] == 100 && out[6] == 200, "300/9: %lld %lld", (long long)out[3], (long long)out[6]);
    /* More frames asked than exist: every frame once. */
    CHECK_OK(tw_video_sample_indices(3, 8, out, &n), "sample 3/8");
    CHECK(n == 3 && out[0] == 0 && out[2] == 2, "3/8 -> all frames");
    CHECK(tw_video_sample_indices(0, 8, out, &n) == TW_E_ARG, "T = 0 refused");
}

static void test_resize_edge(void) {
    /* Same size: untouched. Upscale 2x2 -> 5x3 stays within [0, 255]. */
    uint8_t src[2 * 2 * 3] = { 0, 255, 10, 255, 0, 20, 128, 64, 30, 1, 2, 3 }, dst[5 * 3 * 3], same[12];
    CHECK_OK(tw_video_resize_frame(src, 2, 2, same, 2, 2, TW_RESAMPLE_BICUBIC), "same size");
    CHECK(memcmp(src, same, sizeof src) == 0, "same size is a copy");
    CHECK_OK(tw_video_resize_frame(src, 2, 2, dst, 3, 5, TW_RESAMPLE_BICUBIC), "upscale");
    CHECK_OK(tw_video_resize_frame(src, 2, 2, dst, 3, 5, TW_RESAMPLE_BILINEAR), "upscale bilinear");
    CHECK(tw_video_resize_frame(src, 2, 2, dst, 3, 5, TW_RESAMPLE_LANCZOS) == TW_E_UNSUPPORTED, "lanczos refused");
    /* shortest_edge sizing. */
    tw_video_preproc p = { .shortest_edge = 74, .do_resize = true };
    int32_t oh, ow;
    CHECK_OK(tw_video_preproc_out_size(&p, 360, 640, &oh, &ow), "shortest_edge");
    CHECK(oh == 74 && ow == 131, "shortest_edge 360x640 -> %dx%d", oh, ow);
}

#ifdef TW_HAVE_FFMPEG
static void test_corrupt(void) {
    tw_video *v = NULL;
    tw_status s;
    /* Garbled mdat: 3 packets rejected, 147 frames decode; the container says 150. */
    CHECK_OK(tw_video_load(media("corrupt_garbled_mdat_h264.mp4"), 8, NULL, &v), "garbled mp4");
    if (v) {
        printf("  garbled mp4: T=%lld (container %lld), %d decode errors, indices %lld..%lld\n",
               (long long)v->total_frames, (long long)v->container_frames, v->decode_errors, (long long)v->indices[0],
               (long long)v->indices[v->n_frames - 1]);
        CHECK(v->total_frames == 147 && v->container_frames == 150 && v->n_frames == 8, "garbled: T=%lld",
              (long long)v->total_frames);
        CHECK(v->decode_errors == 3, "garbled: %d errors", v->decode_errors);
        int64_t e[8];
        int32_t n;
        tw_video_sample_indices(147, 8, e, &n);
        CHECK(memcmp(e, v->indices, sizeof e) == 0, "garbled: sampled from 147");
        tw_video_free(v), v = NULL;
    }
    /* Strict mode stops at the first error, as a plain PyAV loop does. */
    tw_video_opts strict = { .strict = 1 };
    s = tw_video_load(media("corrupt_garbled_mdat_h264.mp4"), 8, &strict, &v);
    CHECK(s == TW_E_FORMAT && !v, "garbled strict: %s", tw_status_name(s));
    printf("  garbled strict: %s\n", tw_last_error());
    /* Truncated WebM: 25 frames decode, the header claims 4 s at 25 fps. */
    CHECK_OK(tw_video_load(media("corrupt_truncated_30pct_vp9.webm"), 4, NULL, &v), "truncated webm");
    if (v) {
        CHECK(v->total_frames == 25 && v->n_frames == 4 && v->indices[1] == 6 && v->indices[3] == 18,
              "truncated webm: T=%lld", (long long)v->total_frames);
        CHECK(v->width == 320 && v->height == 240, "truncated webm size");
        tw_video_free(v), v = NULL;
    }
    /* No moov atom: a clean TW_E_FORMAT naming the file and FFmpeg's reason. */
    s = tw_video_load(media("corrupt_truncated_no_moov.mp4"), 8, NULL, &v);
    CHECK(s == TW_E_FORMAT && !v, "no moov: %s", tw_status_name(s));
    CHECK(strstr(tw_last_error(), "corrupt_truncated_no_moov.mp4") != NULL, "no moov message: %s", tw_last_error());
    CHECK(strstr(tw_last_error(), "moov atom not found") != NULL, "no moov reason: %s", tw_last_error());
    printf("  no moov: %s\n", tw_last_error());
    /* A text file named .mp4. */
    char txt[128];
    snprintf(txt, sizeof txt, "/tmp/tw_test_not_a_video_%d.mp4", (int)getpid());
    FILE *f = fopen(txt, "w");
    if (f) {
        fputs("this is not a video, just some text\n", f);
        fclose(f);
        s = tw_video_load(txt, 8, NULL, &v);
        CHECK(s == TW_E_FORMAT && !v, "text .mp4: %s", tw_status_name(s));
        CHECK(strstr(tw_last_error(), txt) != NULL, "text .mp4 message: %s", tw_last_error());
        printf("  text .mp4: %s\n", tw_last_error());
        remove(txt);
    }
    /* All frames of a short clip, and more frames than exist. */
    CHECK_OK(tw_video_load(media("testsrc2_h264_480x270_rot90_24fps_3s.mp4"), 100, NULL, &v), "rot90 100 frames");
    if (v) {
        CHECK(v->n_frames == 72 && v->indices[71] == 71 && v->rotation != 0, "rot90 all: %d frames, rotation %d",
              v->n_frames, v->rotation);
        tw_video_free(v), v = NULL;
    }
    /* Limits. */
    tw_video_opts small = { .max_pixels = 1000 };
    s = tw_video_load(media("testsrc_vp9_320x240_25fps_4s.webm"), 4, &small, &v);
    CHECK(s == TW_E_ARG && !v, "max_pixels: %s", tw_status_name(s));
    s = tw_video_load("https://example.com/v.mp4", 4, NULL, &v);
    CHECK(s == TW_E_ARG && !v, "URL without allow_network: %s", tw_status_name(s));
}
#endif

#ifdef TW_HAVE_FFMPEG
/* Loads clip with n frames in a seek mode; NULL (and a failed check) on error. */
static tw_video *load_mode(const char *clip, int32_t n, tw_seek_mode mode) {
    tw_video_opts o = { .seek_mode = mode };
    tw_video *v = NULL;
    CHECK_OK(tw_video_load(clip, n, &o, &v), clip);
    return v;
}

/* The seeking path against the sequential one on the fixture clips, for many sample counts:
** every target lands on another spot of the GOP (B-frames reordered around it). */
static void test_seek_fixtures(void) {
    static const struct { const char *clip; int32_t n[5]; } cases[] = {
        { "testsrc2_h264_640x360_30fps_5s.mp4", { 3, 7, 8, 32, 149 } },
        { "testsrc2_h264_480x270_rot90_24fps_3s.mp4", { 2, 4, 9, 13, 71 } },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int n_same = 0, n_runs = 0, seeks = 0;
        for (int j = 0; j < 5; j++) {
            int32_t n = cases[c].n[j];
            tw_video *seq = load_mode(media(cases[c].clip), n, TW_SEEK_NEVER);
            tw_video *sk = load_mode(media(cases[c].clip), n, TW_SEEK_ALWAYS);
            n_runs++;
            if (same_video(seq, sk)) n_same++;
            else CHECK(0, "%s, %d frames: seeking differs from sequential decoding", cases[c].clip, n);
            if (sk) {
                CHECK(sk->seeks > 0 && seq->seeks == 0, "%s, %d frames: %s", cases[c].clip, n, sk->access);
                seeks += sk->seeks;
            }
            tw_video_free(seq);
            tw_video_free(sk);
        }
        printf("  seek always == never: %s, %d of %d sample counts identical (%d seeks)\n", cases[c].clip, n_same,
               n_runs, seeks);
    }
    /* Damaged files: the seeking pass notices the decode errors near its targets and gives up, and
    ** the sequential behaviour (T = 147 decodable frames) stands. WebM has no count: no seek. */
    static const struct { const char *clip; int32_t n; } bad[] = {
        { "corrupt_garbled_mdat_h264.mp4", 8 }, { "corrupt_truncated_30pct_vp9.webm", 4 },
        { "testsrc_vp9_320x240_25fps_4s.webm", 4 },
    };
    for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
        tw_video *seq = load_mode(media(bad[c].clip), bad[c].n, TW_SEEK_NEVER);
        tw_video *sk = load_mode(media(bad[c].clip), bad[c].n, TW_SEEK_ALWAYS);
        CHECK(same_video(seq, sk), "%s: seek always differs from never", bad[c].clip);
        if (sk) printf("  %s, seek always: T=%lld, %s\n", bad[c].clip, (long long)sk->total_frames, sk->access);
        tw_video_free(seq);
        tw_video_free(sk);
    }
}

/* Generated clips (B-frames, several encoders and GOPs): seeking == sequential, frame by frame. */
static void test_seek_generated(void) {
    static const struct { const char *codec; int64_t n; int fps, gop, bframes; } clips[] = {
        { "libx264", 600, 30, 30, 3 }, { "mpeg4", 600, 25, 25, 2 }, { "libx264", 500, 24, 7, 0 },
    };
    static const int32_t counts[] = { 2, 7, 32, 100, 499 };
    for (size_t c = 0; c < sizeof clips / sizeof clips[0]; c++) {
        char path[256];
        gen_path(path, sizeof path, clips[c].codec);
        if (gen_clip(path, clips[c].codec, clips[c].n, clips[c].fps, clips[c].gop, clips[c].bframes) != 0) {
            printf("  (no %s encoder in this FFmpeg: clip skipped)\n", clips[c].codec);
            remove(path);
            continue;
        }
        int ok = 0, shown = 0, seeks = 0;
        for (size_t j = 0; j < sizeof counts / sizeof counts[0]; j++) {
            tw_video *seq = load_mode(path, counts[j], TW_SEEK_NEVER);
            tw_video *sk = load_mode(path, counts[j], TW_SEEK_ALWAYS);
            ok += same_video(seq, sk);
            shown += frames_show_indices(sk);
            CHECK(same_video(seq, sk), "%s: %d frames: seeking differs from sequential", clips[c].codec, counts[j]);
            CHECK(frames_show_indices(seq) && frames_show_indices(sk), "%s: %d frames: a frame shows another number",
                  clips[c].codec, counts[j]);
            if (sk) {
                CHECK(sk->seeks > 0 && sk->total_frames == clips[c].n, "%s: %s", clips[c].codec, sk->access);
                seeks += sk->seeks;
            }
            tw_video_free(seq);
            tw_video_free(sk);
        }
        printf("  generated %s %lld frames GOP %d, %d B-frames: %d of %zu sample counts identical, %d show their "
               "numbers (%d seeks)\n", clips[c].codec, (long long)clips[c].n, clips[c].gop, clips[c].bframes, ok,
               sizeof counts / sizeof counts[0], shown, seeks);
        remove(path);
    }
}

/* A "2-hour" clip: 7200 frames at 1 fps (64x36), a keyframe every 12 frames, 2 B-frames. AUTO
** sampling 32 frames must seek and decode a small part of it; the frames must be the right ones
** (each shows its number) and equal to a full sequential decode. */
static void test_long_clip(void) {
    char path[256];
    gen_path(path, sizeof path, "2h");
    double t0 = (tw_time_ms() / 1000);
    int r = gen_clip(path, "libx264", 7200, 1, 12, 2);
    if (r != 0) r = gen_clip(path, "mpeg4", 7200, 1, 12, 2);
    if (r != 0) {
        printf("  (no H.264 / MPEG-4 encoder in this FFmpeg: long-clip test skipped)\n");
        remove(path);
        return;
    }
    double t1 = (tw_time_ms() / 1000);
    tw_video *sk = load_mode(path, 32, TW_SEEK_AUTO);
    double t2 = (tw_time_ms() / 1000);
    tw_video *seq = load_mode(path, 32, TW_SEEK_NEVER);
    double t3 = (tw_time_ms() / 1000);
    if (sk && seq) {
        printf("  2-hour clip (7200 frames): written in %.2f s; 32 frames: seeking %.3f s, %lld frames decoded, %s; "
               "sequential %.3f s, %lld decoded\n", t1 - t0, t2 - t1, (long long)sk->frames_decoded, sk->access,
               t3 - t2, (long long)seq->frames_decoded);
        CHECK(sk->total_frames == 7200 && sk->n_frames == 32 && sk->indices[1] == 225 && sk->indices[31] == 6975,
              "2-hour clip: T=%lld, indices %lld %lld", (long long)sk->total_frames, (long long)sk->indices[1],
              (long long)sk->indices[31]);
        CHECK(sk->seeks >= 31 && sk->frames_decoded < 7200 / 10, "2-hour clip: %d seeks, %lld frames decoded",
              sk->seeks, (long long)sk->frames_decoded);
        CHECK(seq->seeks == 0 && seq->frames_decoded == 7200, "sequential: %lld frames decoded",
              (long long)seq->frames_decoded);
        CHECK(frames_show_indices(sk), "2-hour clip: a seeked frame shows another number");
        CHECK(same_video(sk, seq), "2-hour clip: seeking differs from sequential decoding");
    }
    tw_video_free(sk);
    tw_video_free(seq);
    remove(path);
}
#endif

#ifdef TW_HAVE_FFMPEG
/* Same as same_video, plus what the passes reported (both read through the same pipeline). */
static bool same_reading(const tw_video *a, const tw_video *b) {
    return same_video(a, b) && a->decode_errors == b->decode_errors && a->rotation == b->rotation &&
           a->container_frames == b->container_frames && a->frames_decoded == b->frames_decoded &&
           a->seeks == b->seeks && strcmp(a->access, b->access) == 0 && strcmp(a->codec, b->codec) == 0;
}

static const char *base_name(const char *path) {
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

/* A scratch file holding the first n bytes of data; the path goes into buf. */
static bool write_prefix(char *buf, size_t cap, const char *tag, const char *data, size_t n) {
    snprintf(buf, cap, "/tmp/tw_test_mem_%d_%s", (int)getpid(), tag);
    FILE *f = fopen(buf, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* tw_video_decode: a clip in memory decodes exactly as the same file (frames, indices, T, what
** each pass did) in every seek mode; damaged and truncated clips fail the same way or give the
** same frames, never crash or hang; playlists cannot reach other files. */
static void test_memory(void) {
    char cwd[1024];
    if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
    static const char *const good[] = { "testsrc2_h264_640x360_30fps_5s.mp4", "testsrc_vp9_320x240_25fps_4s.webm",
                                        "testsrc2_h264_480x270_rot90_24fps_3s.mp4" };
    static const tw_seek_mode modes[] = { TW_SEEK_AUTO, TW_SEEK_NEVER, TW_SEEK_ALWAYS };
    static const int32_t counts[] = { 8, 0, 3 };
    int n_same = 0, n_runs = 0;
    for (size_t c = 0; c < sizeof good / sizeof good[0]; c++) {
        const char *path = media(good[c]);
        char *data = NULL;
        size_t len = 0;
        CHECK_OK(tw_read_file(path, &data, &len), path);
        if (!data) continue;
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            tw_video_opts o = { .seek_mode = modes[m] };
            int32_t n = counts[m];
            tw_video *f = NULL, *v = NULL;
            CHECK_OK(tw_video_load(path, n, &o, &f), path);
            CHECK_OK(tw_video_load_mem(data, len, base_name(path), n, &o, &v), "memory");
            n_runs++;
            if (same_reading(f, v)) n_same++;
            else CHECK(0, "%s, %d frames, mode %d: memory differs from the file", good[c], n, (int)modes[m]);
            tw_video_free(f);
            tw_video_free(v);
        }
        /* The public calls: tw_video_decode == tw_video_open. */
        tw_video *f = NULL, *v = NULL;
        CHECK_OK(tw_video_open(path, 8, &f), path);
        CHECK_OK(tw_video_decode(data, len, base_name(path), 8, &v), "tw_video_decode");
        CHECK(same_reading(f, v), "%s: tw_video_decode differs from tw_video_open", good[c]);
        CHECK(v && tw_video_n_frames(v) == 8 && tw_video_frame_indices(v)[0] == 0, "%s: 8 frames", good[c]);
        tw_video_free(v), v = NULL;
        /* Any name (no extension to hint at the format): the bytes decide, same frames. */
        CHECK_OK(tw_video_decode(data, len, "video_url", 8, &v), "tw_video_decode without an extension");
        CHECK(same_video(f, v), "%s: decoded without a name hint differs", good[c]);
        tw_video_free(v), v = NULL;
        /* Limits on what decoding allocates. */
        tw_video_limits lim = { .max_pixels = 1000 };
        tw_status s = tw_video_decode_ex(data, len, "clip", 8, &lim, &v);
        CHECK(s == TW_E_ARG && !v && strstr(tw_last_error(), "clip: frames of"), "max_pixels: %s: %s",
              tw_status_name(s), tw_last_error());
        lim = (tw_video_limits){ .max_bytes = (uint64_t)f->width * f->height * 3 * 8 - 1 };
        s = tw_video_decode_ex(data, len, "clip", 8, &lim, &v);
        CHECK(s == TW_E_ARG && !v, "max_bytes: %s: %s", tw_status_name(s), tw_last_error());
        lim.max_bytes++;
        CHECK_OK(tw_video_decode_ex(data, len, "clip", 8, &lim, &v), "max_bytes exactly");
        tw_video_free(v), v = NULL;
        tw_video_free(f);

        /* Truncated copies: memory and file agree (both fail, or give the same frames). Cuts inside
        ** the header, the index, and the frame data. */
        static const double cuts[] = { 0.0001, 0.02, 0.3, 0.6, 0.95 };
        int agree = 0, ok = 0, total = 0;
        for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
            size_t cut = (size_t)(cuts[k] * (double)len);
            if (cut == 0) cut = 1;
            char tmp[256], tag[32];
            snprintf(tag, sizeof tag, "%zu_%zu", c, k);
            if (!write_prefix(tmp, sizeof tmp, tag, data, cut)) continue;
            tw_video *a = NULL, *b = NULL;
            tw_status sa = tw_video_load(tmp, 8, NULL, &a);
            tw_status sb = tw_video_load_mem(data, cut, base_name(tmp), 8, NULL, &b);
            total++;
            if (sa == sb && (sa != TW_OK ? !a && !b : same_reading(a, b))) agree++;
            else CHECK(0, "%s cut at %zu bytes: file %s, memory %s", good[c], cut, tw_status_name(sa), tw_status_name(sb));
            if (sb == TW_OK) ok++;
            else CHECK(strstr(tw_last_error(), base_name(tmp)) != NULL, "%s cut: message names it: %s", good[c],
                       tw_last_error());
            tw_video_free(a);
            tw_video_free(b);
            remove(tmp);
        }
        printf("  memory == file: %s truncated %d ways: %d agree (%d still decode)\n", good[c], total, agree, ok);
        /* Garbled copies: 32 bytes overwritten at random (a fixed seed) past the first 1 KiB. */
        uint32_t seed = 12345u + (uint32_t)c;
        agree = ok = total = 0;
        for (int k = 0; k < 3 && len > 2048; k++) {
            char *g = malloc(len);
            if (!g) break;
            memcpy(g, data, len);
            for (int b = 0; b < 32; b++) {
                seed = seed * 1664525u + 1013904223u;
                g[1024 + seed % (uint32_t)(len - 1024)] = (char)(seed >> 24);
            }
            char tmp[256], tag[32];
            snprintf(tag, sizeof tag, "g%zu_%d", c, k);
            if (write_prefix(tmp, sizeof tmp, tag, g, len)) {
                tw_video *a = NULL, *b = NULL;
                tw_status sa = tw_video_load(tmp, 8, NULL, &a);
                tw_status sb = tw_video_load_mem(g, len, base_name(tmp), 8, NULL, &b);
                total++;
                if (sa == sb && (sa != TW_OK ? !a && !b : same_reading(a, b))) agree++;
                else CHECK(0, "%s garbled %d: file %s, memory %s", good[c], k, tw_status_name(sa), tw_status_name(sb));
                ok += sb == TW_OK;
                tw_video_free(a);
                tw_video_free(b);
                remove(tmp);
            }
            free(g);
        }
        printf("  memory == file: %s garbled %d ways: %d agree (%d still decode)\n", good[c], total, agree, ok);
        free(data);
    }
    printf("  memory == file: %d of %d readings of the fixture clips identical (frames, indices, passes)\n", n_same,
           n_runs);

    /* The damaged fixtures read from memory as from the file. */
    static const char *const bad[] = { "corrupt_garbled_mdat_h264.mp4", "corrupt_truncated_30pct_vp9.webm",
                                       "corrupt_truncated_no_moov.mp4" };
    for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
        const char *path = media(bad[c]);
        char *data = NULL;
        size_t len = 0;
        CHECK_OK(tw_read_file(path, &data, &len), path);
        if (!data) continue;
        tw_video *a = NULL, *b = NULL;
        tw_status sa = tw_video_open(path, 8, &a);
        tw_status sb = tw_video_decode(data, len, bad[c], 8, &b);
        CHECK(sa == sb && (sa != TW_OK || same_reading(a, b)), "%s: memory %s, file %s", bad[c], tw_status_name(sb),
              tw_status_name(sa));
        if (sb != TW_OK) {
            CHECK(sb == TW_E_FORMAT && strstr(tw_last_error(), bad[c]) && strstr(tw_last_error(), "moov atom not found"),
                  "%s: %s", bad[c], tw_last_error());
            printf("  memory: %s\n", tw_last_error());
        } else {
            printf("  memory: %s: T=%lld, %d decode errors\n", bad[c], (long long)b->total_frames, b->decode_errors);
        }
        tw_video_free(a);
        tw_video_free(b);
        free(data);
    }

    /* Not videos. */
    tw_video *v = NULL;
    static const char text[] = "this is not a video, just some text\n";
    tw_status s = tw_video_decode(text, sizeof text - 1, "notes.mp4", 8, &v);
    CHECK(s == TW_E_FORMAT && !v && strstr(tw_last_error(), "notes.mp4: cannot open as a video"), "text: %s: %s",
          tw_status_name(s), tw_last_error());
    uint8_t zeros[4096] = { 0 };
    s = tw_video_decode(zeros, sizeof zeros, "zeros", 8, &v);
    CHECK(s != TW_OK && !v, "zeros: %s: %s", tw_status_name(s), tw_last_error());
    s = tw_video_decode(zeros, 0, "empty", 8, &v);
    CHECK(s == TW_E_FORMAT && !v && strstr(tw_last_error(), "empty: not a video"), "empty: %s", tw_last_error());
    s = tw_video_decode(NULL, 10, "null", 8, &v);
    CHECK(s == TW_E_ARG && !v, "NULL data: %s", tw_status_name(s));
    s = tw_video_decode(zeros, 1, NULL, 8, &v);
    CHECK(s != TW_OK && !v && strncmp(tw_last_error(), "video: ", 7) == 0, "no name: %s", tw_last_error());

    /* A playlist (in memory or on disk) may not open what it names: not a file, not a URL. */
    char pl[1024];
    snprintf(pl, sizeof pl, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:5\n#EXTINF:5.0,\nfile:%s\n"
             "#EXT-X-ENDLIST\n", media(good[0]));
    s = tw_video_decode(pl, strlen(pl), "list.m3u8", 8, &v);
    CHECK(s == TW_E_FORMAT && !v && strstr(tw_last_error(), "self-contained"), "HLS playlist in memory refused: %s: %s",
          tw_status_name(s), tw_last_error());
    printf("  playlist: %s\n", tw_last_error());
    /* A concat list next to the clip it names (without the refusal it would decode that clip). */
    char dir[128], clip[256], list[256];
    snprintf(dir, sizeof dir, "/tmp/tw_test_concat_%d", (int)getpid());
    snprintf(clip, sizeof clip, "%s/clip.mp4", dir);
    snprintf(list, sizeof list, "%s/list.ffconcat", dir);
    static const char cl[] = "ffconcat version 1.0\nfile 'clip.mp4'\n";
    char *data = NULL;
    size_t len = 0;
    if (mkdir(dir, 0700) == 0 && tw_read_file(media(good[0]), &data, &len) == TW_OK) {
        FILE *f = fopen(clip, "wb"), *g = fopen(list, "wb");
        if (f) fwrite(data, 1, len, f), fclose(f);
        if (g) fputs(cl, g), fclose(g);
        s = tw_video_load(list, 8, NULL, &v);
        CHECK(s == TW_E_FORMAT && !v && strstr(tw_last_error(), "self-contained"), "concat list file refused: %s: %s",
              tw_status_name(s), tw_last_error());
        printf("  concat list: %s\n", tw_last_error());
        if (chdir(dir) == 0) {   /* in memory, a relative name would resolve against the working directory */
            s = tw_video_decode(cl, sizeof cl - 1, "list.ffconcat", 8, &v);
            CHECK(s == TW_E_FORMAT && !v && strstr(tw_last_error(), "self-contained"),
                  "concat list in memory refused: %s: %s", tw_status_name(s), tw_last_error());
            if (chdir(cwd) != 0) CHECK(0, "back to %s", cwd);
        }
    }
    free(data);
    remove(clip);
    remove(list);
    rmdir(dir);
}
#endif

/* tw_video_from_images: frames already decoded, sampled as a list of files is. */
static void test_from_images(void) {
    tw_image *ims[12] = { 0 };
    for (int i = 0; i < 12; i++) {
        uint8_t px[5 * 3 * 3];
        for (int k = 0; k < 15; k++) px[3 * k] = (uint8_t)(10 * i), px[3 * k + 1] = 1, px[3 * k + 2] = 2;
        CHECK_OK(tw_image_from_rgb(px, 5, 3, &ims[i]), "frame image");
    }
    tw_video *v = NULL;
    CHECK_OK(tw_video_from_images((const tw_image *const *)ims, 12, 4, &v), "from images");
    if (v) {
        CHECK(v->n_frames == 4 && v->total_frames == 12 && v->width == 5 && v->height == 3 && v->indices[1] == 3 &&
                  v->rgb[1 * 15 * 3] == 30 && v->rgb[3 * 15 * 3] == 90 && !strcmp(v->codec, "images"),
              "from images: 4 of 12, frames 0 3 6 9");
        tw_video_free(v), v = NULL;
    }
    /* Only the sampled frames are read: the others may be NULL (a caller decodes only those). */
    const tw_image *sparse[12] = { 0 };
    int64_t idx[12];
    int32_t k = 0;
    CHECK_OK(tw_video_sample_indices(12, 4, idx, &k), "public sampler");
    for (int32_t i = 0; i < k; i++) sparse[idx[i]] = ims[idx[i]];
    CHECK_OK(tw_video_from_images(sparse, 12, 4, &v), "from sparse images");
    CHECK(v && v->n_frames == 4 && v->indices[3] == 9, "sparse: same frames");
    tw_video_free(v), v = NULL;
    tw_status s = tw_video_from_images(sparse, 12, 5, &v);
    CHECK(s == TW_E_ARG && !v, "a sampled NULL frame: %s: %s", tw_status_name(s), tw_last_error());
    /* All frames (n_frames 0), and a sampled frame of another size: refused as for files. */
    CHECK_OK(tw_video_from_images((const tw_image *const *)ims, 12, 0, &v), "all frames");
    CHECK(v && v->n_frames == 12, "all 12 frames");
    tw_video_free(v), v = NULL;
    tw_image *odd = NULL;
    uint8_t px4[4 * 3 * 3] = { 0 };
    CHECK_OK(tw_image_from_rgb(px4, 4, 3, &odd), "odd frame");
    tw_image *saved = ims[6];
    ims[6] = odd;
    s = tw_video_from_images((const tw_image *const *)ims, 12, 4, &v);
    CHECK(s == TW_E_FORMAT && !v && strstr(tw_last_error(), "video frame 6"), "different size: %s", tw_last_error());
    ims[6] = saved;
    tw_image *seventh = ims[7];
    ims[7] = NULL;   /* not sampled (0 3 6 9): fine */
    CHECK_OK(tw_video_from_images((const tw_image *const *)ims, 12, 4, &v), "unsampled NULL");
    tw_video_free(v), v = NULL;
    ims[7] = seventh;
    CHECK(tw_video_from_images(NULL, 3, 4, &v) == TW_E_ARG, "NULL list");
    CHECK(tw_video_from_images((const tw_image *const *)ims, 0, 4, &v) == TW_E_ARG, "empty list");
    for (int i = 0; i < 12; i++) tw_image_free(ims[i]);
    tw_image_free(odd);
}

/* A 24-bit BMP of w x h whose pixels are all (v, 255 - v, 7). */
static void write_bmp(const char *path, int w, int h, uint8_t v) {
    int row = (w * 3 + 3) & ~3;
    uint32_t size = 54 + (uint32_t)(row * h);
    uint8_t hdr[54] = { 'B', 'M' };
    uint32_t fields[][2] = { { 2, size }, { 10, 54 }, { 14, 40 }, { 18, (uint32_t)w }, { 22, (uint32_t)h },
                             { 34, (uint32_t)(row * h) } };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        for (int b = 0; b < 4; b++) hdr[fields[i][0] + b] = (uint8_t)(fields[i][1] >> (8 * b));
    hdr[26] = 1, hdr[28] = 24;
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(hdr, 1, 54, f);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < row; x++) fputc(x < w * 3 ? (x % 3 == 0 ? 7 : x % 3 == 1 ? 255 - v : v) : 0, f);
    fclose(f);
}

/* A directory of frame images: natural order, sampling, only the sampled files decoded. */
static void test_frame_dir(void) {
    char dir[128], path[256];
    snprintf(dir, sizeof dir, "/tmp/tw_test_frames_%d", (int)getpid());
    if (mkdir(dir, 0700) != 0) return;
    static const int nums[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
    for (int i = 0; i < 12; i++) {
        snprintf(path, sizeof path, "%s/frame%d.bmp", dir, nums[i]);
        write_bmp(path, 5, 3, (uint8_t)(10 * nums[i]));
    }
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    FILE *f = fopen(path, "w");
    if (f) fputs("ignored\n", f), fclose(f);
    tw_video *v = NULL;
    CHECK_OK(tw_video_load(dir, 4, NULL, &v), "frame directory");
    if (v) {
        CHECK(v->n_frames == 4 && v->total_frames == 12 && v->width == 5 && v->height == 3, "frame dir: %d of %lld",
              v->n_frames, (long long)v->total_frames);
        /* arange(0, 12, 3) = 0, 3, 6, 9 -> frame1, frame4, frame7, frame10 (natural order). */
        CHECK(v->indices[3] == 9 && v->rgb[3 * 5 * 3 * 3 + 0] == 100 && v->rgb[3 * 5 * 3 * 3 + 1] == 155 &&
              v->rgb[3 * 5 * 3 * 3 + 2] == 7, "frame dir: 4th frame is frame10 (got R=%d)", v->rgb[3 * 5 * 3 * 3]);
        tw_video_free(v), v = NULL;
    }
    /* A frame of another size. */
    snprintf(path, sizeof path, "%s/frame13.bmp", dir);
    write_bmp(path, 4, 3, 0);
    tw_status s = tw_video_load(dir, 0, NULL, &v);
    CHECK(s == TW_E_FORMAT && !v, "frame dir with a different size: %s", tw_status_name(s));
    remove(path);
    for (int i = 0; i < 12; i++) {
        snprintf(path, sizeof path, "%s/frame%d.bmp", dir, nums[i]);
        remove(path);
    }
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    remove(path);
    rmdir(dir);
}

static void test_errors(void) {
    tw_video *v = NULL;
    tw_status s = tw_video_load(media("does_not_exist.mp4"), 8, NULL, &v);
    CHECK(s == TW_E_NOT_FOUND && !v, "missing file: %s", tw_status_name(s));
    CHECK(strstr(tw_last_error(), "does_not_exist.mp4") != NULL, "missing file message: %s", tw_last_error());
    s = tw_video_load(th_path("tiny-towervideo"), 8, NULL, &v);
    CHECK(s == TW_E_FORMAT && !v, "directory without images: %s", tw_status_name(s));
    CHECK(tw_video_load(NULL, 8, NULL, &v) == TW_E_ARG, "NULL source");
    tw_video_preproc pp;
    CHECK(tw_video_preproc_load("/nonexistent-dir", &pp) == TW_E_NOT_FOUND, "no preprocessor config");
}

int main(void) {
    test_sampling();
    test_resize_edge();
    test_cases();
#ifdef TW_HAVE_FFMPEG
    test_corrupt();
    test_seek_fixtures();
    test_seek_generated();
    test_long_clip();
    test_memory();
#endif
    test_from_images();
    test_frame_dir();
    test_errors();
    return th_report();
}
#endif /* TW_VIDEO_TEST_NO_MAIN */
