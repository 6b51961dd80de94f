/*
** video_io.c — opening a video, counting its frames, sampling N of them and decoding those to RGB.
**
** What the reference (transformers' read_video_pyav on PyAV 10 / FFmpeg 5.1) does and we copy:
**   - the first video stream by type (an MP4's audio stream is skipped; attached cover pictures
**     are not video and are skipped too);
**   - frames numbered 0, 1, 2, ... in decoder output order (enumerate(container.decode(video=0))),
**     never from timestamps (the seeking pass derives ranks from pts only where it can check them);
**   - RGB from libswscale with PyAV's defaults: SWS_BILINEAR to rgb24, no colorspace override
**     (so untagged / tagged yuv420p is BT.601 limited range, yuvj* full range), into a 16-byte
**     aligned buffer as PyAV's VideoFrame allocates it;
**   - the display matrix is NOT applied (reported in tw_video.rotation only);
**   - decoder threads: PyAV's default, slice threading (frame threading would move where errors
**     of a damaged stream are reported).
** Where we differ on purpose: a packet the decoder rejects is skipped and decoding goes on
** (tolerant decoding, what the fixtures' oracle does) instead of aborting the whole clip, unless
** opts->strict.
**
** Counting and sampling with bounded memory: the sampler needs T (the number of decodable frames)
** before it can pick indices, but only the picked frames are ever stored. We take a guess for T
** from the container (nb_frames, else duration x average frame rate), decode once keeping the
** frames the guess samples, and count. If the count equals the guess we are done in one pass; if
** not (WebM without a count, truncated or damaged files) we know the true T and decode a second
** time keeping the right frames. Without any guess the first pass only counts.
**
** Long clips: when the container counts and indexes every frame of a constant-rate stream, the
** rank of a frame follows from its pts, so a seeking pass jumps to the keyframe before each
** sampled frame instead of decoding everything ("seeking" below, docs/video.md). It checks every
** frame it decodes against that rule and hands over to the sequential passes on any surprise.
*/
#include "video.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#ifdef TW_HAVE_FFMPEG
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
#include <pthread.h>
#endif

#define DEFAULT_MAX_PIXELS  (8192LL * 8192LL)
#define DEFAULT_MAX_SIDE    16384
#define DEFAULT_MAX_BYTES   (4LL << 30)
#define DEFAULT_MAX_FRAMES  4096

/* ---- tw_video basics ---------------------------------------------------------------------- */

void tw_video_free(tw_video *v) {
    if (!v) return;
    free(v->rgb);
    free(v->indices);
    free(v);
}

static void opts_resolve(const tw_video_opts *in, tw_video_opts *o) {
    memset(o, 0, sizeof *o);
    if (in) *o = *in;
    if (o->max_pixels <= 0) o->max_pixels = DEFAULT_MAX_PIXELS;
    if (o->max_side <= 0) o->max_side = DEFAULT_MAX_SIDE;
    if (o->max_bytes <= 0) o->max_bytes = DEFAULT_MAX_BYTES;
    if (o->max_frames <= 0) o->max_frames = DEFAULT_MAX_FRAMES;
}

/* Checks one frame size and the whole buffer of n frames against the limits. */
static tw_status check_limits(const char *src, int32_t n, int32_t h, int32_t w, const tw_video_opts *o) {
    if (h <= 0 || w <= 0)
        return tw_err(TW_E_FORMAT, "%s: frame size %dx%d is invalid", src, w, h);
    if (h > o->max_side || w > o->max_side || (int64_t)h * w > o->max_pixels)
        return tw_err(TW_E_ARG, "%s: frames of %dx%d exceed the limit (%d per side, %lld pixels)", src, w, h,
                      o->max_side, (long long)o->max_pixels);
    if (n > o->max_frames)
        return tw_err(TW_E_ARG, "%s: %d frames requested, more than the limit of %d", src, n, o->max_frames);
    if ((int64_t)h * w * 3 * n > o->max_bytes)
        return tw_err(TW_E_ARG, "%s: %d frames of %dx%d need %lld bytes, more than the limit of %lld", src, n, w,
                      h, (long long)h * w * 3 * n, (long long)o->max_bytes);
    return TW_OK;
}

static tw_video *video_new(int32_t n, int32_t h, int32_t w) {
    tw_video *v = tw_calloc(1, sizeof *v);
    if (!v) return NULL;
    v->n_frames = n, v->height = h, v->width = w;
    v->rgb = tw_malloc((size_t)n * h * w * 3 + 1);
    v->indices = tw_calloc((size_t)n + 1, sizeof *v->indices);
    if (!v->rgb || !v->indices) {
        tw_video_free(v);
        return NULL;
    }
    return v;
}

tw_status tw_video_from_rgb(const uint8_t *rgb, int32_t n, int32_t height, int32_t width, tw_video **out) {
    if (!out) return tw_err(TW_E_ARG, "tw_video_from_rgb: NULL out");
    *out = NULL;
    if (!rgb || n <= 0 || height <= 0 || width <= 0)
        return tw_err(TW_E_ARG, "tw_video_from_rgb: expected n, height, width > 0 and pixels (got %d, %d, %d)",
                      n, height, width);
    tw_video_opts o;
    opts_resolve(NULL, &o);
    TW_TRY(check_limits("in-memory video", n, height, width, &o));
    tw_video *v = video_new(n, height, width);
    if (!v) return TW_E_NOMEM;
    memcpy(v->rgb, rgb, (size_t)n * height * width * 3);
    for (int32_t i = 0; i < n; i++) v->indices[i] = i;
    v->total_frames = n;
    snprintf(v->codec, sizeof v->codec, "rgb");
    *out = v;
    return TW_OK;
}

/* ---- sampling ----------------------------------------------------------------------------- */

tw_status tw_video_sample_indices(int64_t total, int32_t n, int64_t *out, int32_t *n_out) {
    if (!out || !n_out) return tw_err(TW_E_ARG, "tw_video_sample_indices: NULL argument");
    *n_out = 0;
    if (total <= 0) return tw_err(TW_E_ARG, "cannot sample frames from a video of %lld frames", (long long)total);
    if (n <= 0 || n >= total) {
        /* All frames. For n > T, HF's sample_frames raises; arange(0, T, T/N) with a step below
        ** 1 would repeat frames. Taking each frame once is the useful reading (docs/video.md). */
        for (int64_t i = 0; i < total; i++) out[i] = i;
        *n_out = (int32_t)total;
        return TW_OK;
    }
    /* torch.arange(0, T, T/N) with the default float32 dtype: the step is the Python float T/N,
    ** the length ceil(T / step) in double, and element i is computed in double (CPU accumulate
    ** type) and stored as float32; .int() truncates. The float32 rounding matters: i*T/N just
    ** below an integer in double becomes that integer. */
    double step = (double)total / (double)n;
    int64_t len = (int64_t)ceil((double)total / step);
    if (len > n) len = n;   /* the N+1 quirk (T=150, N=7): keep the first N */
    for (int64_t i = 0; i < len; i++) {
        float v = (float)((double)i * step);
        int64_t k = (int64_t)v;
        if (k >= total) k = total - 1;   /* cannot happen for i < N; keeps indices valid */
        out[i] = k;
    }
    *n_out = (int32_t)len;
    return TW_OK;
}

/* ---- frame images ------------------------------------------------------------------------- */

/* Copies image im (frame number `index` of the source) into slot i of *v, allocating *v (n
** slots of the first frame's size) at the first frame; every frame must have that size. */
static tw_status put_frame(tw_video **v, int32_t n, int32_t i, int64_t index, const tw_image *im, const char *name,
                           const tw_video_opts *o) {
    int32_t w = tw_image_width(im), h = tw_image_height(im);
    if (!*v) {
        TW_TRY(check_limits(name, n, h, w, o));
        if (!(*v = video_new(n, h, w))) return TW_E_NOMEM;
    } else if (w != (*v)->width || h != (*v)->height) {
        return tw_err(TW_E_FORMAT, "%s: frame image is %dx%d, but the first frame is %dx%d (all frames of a "
                      "video must have the same size)", name, w, h, (*v)->width, (*v)->height);
    }
    memcpy((*v)->rgb + (size_t)i * h * w * 3, tw_image_rgb(im), (size_t)h * w * 3);
    (*v)->indices[i] = index;
    return TW_OK;
}

tw_status tw_video_load_images(const char *const *paths, int32_t n_paths, int32_t n_frames,
                               const tw_video_opts *opts, tw_video **out) {
    if (!out) return tw_err(TW_E_ARG, "tw_video_load_images: NULL out");
    *out = NULL;
    if (!paths || n_paths <= 0) return tw_err(TW_E_ARG, "tw_video_load_images: expected at least one image path");
    tw_video_opts o;
    opts_resolve(opts, &o);
    int64_t *idx = tw_calloc((size_t)n_paths, sizeof *idx);
    if (!idx) return TW_E_NOMEM;
    int32_t n = 0;
    tw_status s = tw_video_sample_indices(n_paths, n_frames, idx, &n);
    if (s == TW_OK && n > o.max_frames)
        s = tw_err(TW_E_ARG, "%d frame images, more than the limit of %d frames", n, o.max_frames);
    tw_video *v = NULL;
    for (int32_t i = 0; s == TW_OK && i < n; i++) {
        const char *p = paths[idx[i]];
        tw_image *im = NULL;
        s = tw_image_load(p, NULL, &im);
        if (s != TW_OK) {
            tw_err_prefix(s, "video frame %d (%s)", (int)idx[i], p ? p : "(null)");
            break;
        }
        s = put_frame(&v, n, i, idx[i], im, p, &o);
        tw_image_free(im);
    }
    free(idx);
    if (s != TW_OK) {
        tw_video_free(v);
        return s;
    }
    v->total_frames = n_paths;
    snprintf(v->codec, sizeof v->codec, "images");
    *out = v;
    return TW_OK;
}

tw_status tw_video_from_images(const tw_image *const *frames, size_t n, int32_t n_frames, tw_video **out) {
    if (!out) return tw_err(TW_E_ARG, "tw_video_from_images: NULL out");
    *out = NULL;
    if (!frames || n == 0) return tw_err(TW_E_ARG, "tw_video_from_images: expected at least one frame image");
    tw_video_opts o;
    opts_resolve(NULL, &o);
    if (n > (size_t)INT32_MAX) return tw_err(TW_E_ARG, "%zu frame images: too many", n);
    int64_t keep = n_frames > 0 ? TW_MIN((int64_t)n_frames, (int64_t)n) : (int64_t)n;
    if (keep > o.max_frames)
        return tw_err(TW_E_ARG, "%zu frame images: keeping %lld frames is more than the limit of %d", n,
                      (long long)keep, o.max_frames);
    int64_t *idx = tw_calloc((size_t)keep, sizeof *idx);
    if (!idx) return TW_E_NOMEM;
    int32_t k = 0;
    tw_status s = tw_video_sample_indices((int64_t)n, n_frames, idx, &k);
    tw_video *v = NULL;
    for (int32_t i = 0; s == TW_OK && i < k; i++) {
        char name[48];
        snprintf(name, sizeof name, "video frame %lld", (long long)idx[i]);
        const tw_image *im = frames[idx[i]];
        if (!im) s = tw_err(TW_E_ARG, "%s: sampled, but the image is NULL", name);
        else s = put_frame(&v, k, i, idx[i], im, name, &o);
    }
    free(idx);
    if (s != TW_OK) {
        tw_video_free(v);
        return s;
    }
    v->total_frames = (int64_t)n;
    snprintf(v->codec, sizeof v->codec, "images");
    *out = v;
    return TW_OK;
}

static bool is_image_name(const char *name) {
    static const char *const exts[] = { ".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif" };
    size_t n = strlen(name);
    if (name[0] == '.') return false;   /* hidden files, "." and ".." */
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        size_t e = strlen(exts[i]);
        if (n > e && strcasecmp(name + n - e, exts[i]) == 0) return true;
    }
    return false;
}

static int cmp_natural(const void *a, const void *b) {
    return strverscmp(*(const char *const *)a, *(const char *const *)b);
}

/* A directory of frame images: the image files sorted in natural order ("2" before "10"). */
static tw_status load_dir(const char *dir, int32_t n_frames, const tw_video_opts *opts, tw_video **out) {
    DIR *d = opendir(dir);
    if (!d) return tw_err(TW_E_IO, "%s: cannot list the directory: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    tw_status s = TW_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_image_name(e->d_name)) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = tw_realloc(names, cap * sizeof *names);
            if (!nn) { s = TW_E_NOMEM; break; }
            names = nn;
        }
        if (!(names[n] = tw_path_join(dir, e->d_name))) { s = TW_E_NOMEM; break; }
        n++;
    }
    closedir(d);
    if (s == TW_OK && n == 0)
        s = tw_err(TW_E_FORMAT, "%s: the directory holds no frame images (.jpg, .jpeg, .png, .webp, .bmp, .gif)",
                   dir);
    if (s == TW_OK && n > INT32_MAX) s = tw_err(TW_E_ARG, "%s: too many frame images", dir);
    if (s == TW_OK) {
        qsort(names, n, sizeof *names, cmp_natural);
        s = tw_video_load_images((const char *const *)names, (int32_t)n, n_frames, opts, out);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return s;
}

/* ---- FFmpeg decoding ------------------------------------------------------------------------ */

#ifdef TW_HAVE_FFMPEG

/* The library never prints: FFmpeg's log goes to this callback, which keeps the last error-level
** message of the calling thread so failures can quote FFmpeg's reason ("moov atom not found"). */
static _Thread_local char vlog_last[256];
static pthread_once_t vlog_once = PTHREAD_ONCE_INIT;
/* The resource a demuxer asked for and was denied (a playlist's segment, a concat list's file),
** per thread: io_refuse below, or FFmpeg's protocol whitelist for nested avformat_open_input. */
static _Thread_local char vlog_refused[128];

static void vlog_store(void *avcl, int level, const char *fmt, va_list vl) {
    TW_UNUSED(avcl);
    if (level > AV_LOG_ERROR) return;
    char buf[sizeof vlog_last];
    vsnprintf(buf, sizeof buf, fmt, vl);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = 0;
    if (n) memcpy(vlog_last, buf, n + 1);
    char proto[32];
    if (!vlog_refused[0] && sscanf(buf, "Protocol '%31[^']' not on whitelist", proto) == 1)
        snprintf(vlog_refused, sizeof vlog_refused, "%s:", proto);
}

static void vlog_install(void) { av_log_set_callback(vlog_store); }

static const char *vlog_reason(int err, char *buf, size_t n) {
    if (vlog_refused[0]) {
        snprintf(buf, n, "it refers to another file or URL (\"%s\"), which is not opened: a video must be one "
                 "self-contained file", vlog_refused);
        return buf;
    }
    char e[128];
    av_strerror(err, e, sizeof e);
    if (vlog_last[0]) snprintf(buf, n, "%s (%s)", e, vlog_last);
    else snprintf(buf, n, "%s", e);
    return buf;
}

/* Where a clip's bytes come from: exactly one of path, url, data. */
typedef struct vsource {
    const char    *name;   /* for messages: the path, the URL, or the caller's name          */
    const char    *path;   /* a local regular file, read through our AVIO callbacks          */
    const char    *url;    /* an http(s) URL, opened by FFmpeg's own protocols               */
    const uint8_t *data;   /* bytes in memory, read through our AVIO callbacks (len > 0)     */
    size_t         len;
} vsource;

/* What the AVIO callbacks read: a file descriptor or a buffer, size bytes either way. */
typedef struct vio {
    int            fd;     /* -1 for memory                                                  */
    const uint8_t *mem;
    int64_t        size;   /* a file's size when it was opened (later growth is not read)    */
    int64_t        pos;
} vio;

typedef struct decoder {
    const char        *src;       /* for messages */
    AVFormatContext   *fmt;
    AVIOContext       *pb;        /* ours (AVFMT_FLAG_CUSTOM_IO) unless FFmpeg opened a URL */
    vio                io;
    AVCodecContext    *dec;
    int                stream;
    AVPacket          *pkt;
    AVFrame           *frame;
    struct SwsContext *sws;
    uint8_t           *rgb_data[4];   /* PyAV-like aligned rgb24 frame */
    int                rgb_linesize[4];
    int                rgb_w, rgb_h;
} decoder;

static void dec_close(decoder *d) {
    avcodec_free_context(&d->dec);
    avformat_close_input(&d->fmt);   /* leaves a custom pb alone */
    if (d->pb) {
        av_freep(&d->pb->buffer);    /* FFmpeg may have replaced the buffer we gave it */
        avio_context_free(&d->pb);
    }
    if (d->io.fd >= 0) close(d->io.fd);
    d->io.fd = -1;
    av_packet_free(&d->pkt);
    av_frame_free(&d->frame);
    sws_freeContext(d->sws);
    d->sws = NULL;
    if (d->rgb_data[0]) av_freep(&d->rgb_data[0]);
}

static bool is_url(const char *s) {
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

/* ---- AVIO over a file descriptor or a buffer ---- */

static int io_read(void *opaque, uint8_t *buf, int n) {
    vio *io = opaque;
    if (n <= 0) return 0;
    if (io->pos >= io->size) return AVERROR_EOF;
    size_t k = (size_t)TW_MIN((int64_t)n, io->size - io->pos);
    if (io->mem) {
        memcpy(buf, io->mem + io->pos, k);
    } else {
        ssize_t r;
        do r = pread(io->fd, buf, k, (off_t)io->pos);
        while (r < 0 && errno == EINTR);
        if (r < 0) return AVERROR(errno);
        if (r == 0) return AVERROR_EOF;   /* the file shrank since it was opened */
        k = (size_t)r;
    }
    io->pos += (int64_t)k;
    return (int)k;
}

/* Positions past the end are allowed (reads there give EOF), as lseek allows them. */
static int64_t io_seek(void *opaque, int64_t off, int whence) {
    vio *io = opaque;
    whence &= ~AVSEEK_FORCE;
    if (whence == AVSEEK_SIZE) return io->size;
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? io->pos : whence == SEEK_END ? io->size : -1;
    if (base < 0 || (off > 0 && off > INT64_MAX - base) || base + off < 0) return AVERROR(EINVAL);
    io->pos = base + off;
    return io->pos;
}

/* A demuxer that wants another resource (an HLS / DASH playlist's segments, a concat list, an MP4
** data reference) asks through io_open: our inputs are single files, so every such open is
** refused and a crafted playlist cannot make FFmpeg read other files or hosts. */
static int io_refuse(AVFormatContext *s, AVIOContext **pb, const char *url, int flags, AVDictionary **opts) {
    TW_UNUSED(s); TW_UNUSED(pb); TW_UNUSED(flags); TW_UNUSED(opts);
    if (!vlog_refused[0]) {
        snprintf(vlog_refused, sizeof vlog_refused, "%s", url ? url : "");
        if (strlen(vlog_refused) == sizeof vlog_refused - 1) memcpy(vlog_refused + sizeof vlog_refused - 4, "...", 4);
    }
    return AVERROR(EPERM);
}

#define IO_BUF_SIZE 32768   /* FFmpeg's own default for AVIO buffers */

/* Opens the container and the decoder of its first video stream. A file or a buffer is read
** through our callbacks (one path for both, so a clip in memory decodes exactly as the same
** file on disk); a URL through FFmpeg's http(s) protocols, nothing else whitelisted. */
static tw_status dec_open(decoder *d, const vsource *vs) {
    memset(d, 0, sizeof *d);
    d->src = vs->name;
    d->stream = -1;
    d->io.fd = -1;
    vlog_last[0] = 0;
    vlog_refused[0] = 0;
    char why[512];
    const char *src = vs->name;
    int r;
    if (vs->url) {
        AVDictionary *o = NULL;
        av_dict_set(&o, "protocol_whitelist", "http,https,tcp,tls", 0);
        r = avformat_open_input(&d->fmt, vs->url, NULL, &o);
        av_dict_free(&o);
    } else {
        if (vs->path) {
            /* O_NONBLOCK: a FIFO swapped in since the caller's stat must not block the open. */
            d->io.fd = open(vs->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
            if (d->io.fd < 0) {
                if (errno == ENOENT || errno == ENOTDIR) return tw_err(TW_E_NOT_FOUND, "%s: no such video file", src);
                return tw_err(TW_E_IO, "%s: %s", src, strerror(errno));
            }
            struct stat sb;
            if (fstat(d->io.fd, &sb) != 0) return tw_err(TW_E_IO, "%s: %s", src, strerror(errno));
            if (!S_ISREG(sb.st_mode)) return tw_err(TW_E_ARG, "%s: not a regular file", src);
            d->io.size = sb.st_size;
        } else {
            d->io.mem = vs->data;
            d->io.size = (int64_t)vs->len;
        }
        uint8_t *buf = av_malloc(IO_BUF_SIZE);
        if (!buf || !(d->pb = avio_alloc_context(buf, IO_BUF_SIZE, 0, &d->io, io_read, NULL, io_seek))) {
            av_free(buf);
            return tw_err(TW_E_NOMEM, "%s: out of memory opening the video", src);
        }
        if (!(d->fmt = avformat_alloc_context())) return tw_err(TW_E_NOMEM, "%s: out of memory opening the video", src);
        d->fmt->pb = d->pb;
        d->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
        d->fmt->io_open = io_refuse;
        /* Demuxers that open their parts with avformat_open_input (concat) inherit this list. */
        AVDictionary *o = NULL;
        av_dict_set(&o, "protocol_whitelist", "none", 0);
        /* The name is the prober's hint (an extension scores a format) as a path is for FFmpeg. */
        r = avformat_open_input(&d->fmt, vs->path ? vs->path : vs->name, NULL, &o);   /* frees fmt on failure */
        av_dict_free(&o);
    }
    if (r < 0)
        return tw_err(TW_E_FORMAT, "%s: cannot open as a video: %s", src, vlog_reason(r, why, sizeof why));
    if ((r = avformat_find_stream_info(d->fmt, NULL)) < 0)
        return tw_err(TW_E_FORMAT, "%s: cannot read the stream information: %s", src, vlog_reason(r, why, sizeof why));
    for (unsigned i = 0; i < d->fmt->nb_streams; i++) {
        AVStream *st = d->fmt->streams[i];
        if (d->stream < 0 && st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO &&
            !(st->disposition & AV_DISPOSITION_ATTACHED_PIC))
            d->stream = (int)i;
        else
            st->discard = AVDISCARD_ALL;   /* the demuxer may skip what we never decode */
    }
    if (d->stream < 0)
        return tw_err(TW_E_FORMAT, "%s: not a video: no video stream (format %s, %u streams)", src,
                      d->fmt->iformat->name, d->fmt->nb_streams);
    AVCodecParameters *par = d->fmt->streams[d->stream]->codecpar;
    const AVCodec *codec = avcodec_find_decoder(par->codec_id);
    if (!codec)
        return tw_err(TW_E_UNSUPPORTED, "%s: this FFmpeg build has no decoder for the video codec %s", src,
                      avcodec_get_name(par->codec_id));
    if (!(d->dec = avcodec_alloc_context3(codec)) || !(d->pkt = av_packet_alloc()) || !(d->frame = av_frame_alloc()))
        return tw_err(TW_E_NOMEM, "%s: out of memory opening the decoder", src);
    if ((r = avcodec_parameters_to_context(d->dec, par)) < 0)
        return tw_err(TW_E_FORMAT, "%s: bad codec parameters: %s", src, vlog_reason(r, why, sizeof why));
    d->dec->thread_count = 0;               /* PyAV's defaults: automatic count, slice threads */
    d->dec->thread_type = FF_THREAD_SLICE;
    if ((r = avcodec_open2(d->dec, codec, NULL)) < 0)
        return tw_err(TW_E_FORMAT, "%s: cannot open the %s decoder: %s", src, codec->name,
                      vlog_reason(r, why, sizeof why));
    return TW_OK;
}

/* Display-matrix rotation in degrees, counter-clockwise as ffprobe prints it, in [0, 360). */
static int32_t stream_rotation(const AVStream *st) {
    const uint8_t *m = NULL;
#if LIBAVCODEC_VERSION_INT >= AV_VERSION_INT(60, 29, 100)
    const AVPacketSideData *sd = av_packet_side_data_get(st->codecpar->coded_side_data,
                                                         st->codecpar->nb_coded_side_data, AV_PKT_DATA_DISPLAYMATRIX);
    if (sd && sd->size >= 9 * 4) m = sd->data;
#else
    size_t size = 0;
    m = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, &size);
    if (size < 9 * 4) m = NULL;
#endif
    if (!m) return 0;
    double deg = av_display_rotation_get((const int32_t *)m);
    if (isnan(deg)) return 0;
    long r = lround(deg) % 360;
    return (int32_t)(r < 0 ? r + 360 : r);
}

/* What one decoding pass keeps: the sorted wanted indices, and where their pixels go. */
typedef struct pass {
    const int64_t *want;      /* sorted ascending, may repeat; NULL: count only           */
    int32_t        n_want;
    int32_t        next;      /* first wanted entry not yet filled                         */
    const tw_video_opts *opts;
    tw_video      *v;         /* allocated at the first kept frame (its size is the video's) */
    int64_t        count;     /* frames that came out of the decoder                      */
    int32_t        errors;    /* packets / frames the decoder rejected                    */
    int64_t        decoded;   /* frames decoded, all passes together (tw_video.frames_decoded) */
} pass;

/* Converts the decoder's current frame to rgb24 at the video's size into the slot(s) wanted. */
static tw_status keep_frame(decoder *d, pass *p, int64_t index) {
    AVFrame *f = d->frame;
    if (!p->v) {
        TW_TRY(check_limits(d->src, p->n_want, f->height, f->width, p->opts));
        if (!(p->v = video_new(p->n_want, f->height, f->width))) return TW_E_NOMEM;
    }
    tw_video *v = p->v;
    if (!d->rgb_data[0]) {
        /* PyAV's VideoFrame: av_image_alloc with 16-byte alignment; swscale's fast paths depend
        ** on the destination alignment, so we convert into the same kind of buffer. */
        if (av_image_alloc(d->rgb_data, d->rgb_linesize, v->width, v->height, AV_PIX_FMT_RGB24, 16) < 0)
            return tw_err(TW_E_NOMEM, "%s: out of memory for an RGB frame", d->src);
    }
    /* A frame whose size differs from the first kept one (a mid-stream resolution change) is
    ** scaled to the video's size, with the same bilinear filter. */
    d->sws = sws_getCachedContext(d->sws, f->width, f->height, (enum AVPixelFormat)f->format, v->width, v->height,
                                  AV_PIX_FMT_RGB24, SWS_BILINEAR, NULL, NULL, NULL);
    if (!d->sws)
        return tw_err(TW_E_UNSUPPORTED, "%s: cannot convert frames of pixel format %s to RGB", d->src,
                      av_get_pix_fmt_name((enum AVPixelFormat)f->format));
    sws_scale(d->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, d->rgb_data, d->rgb_linesize);
    size_t row = (size_t)v->width * 3, fsz = row * v->height;
    while (p->next < p->n_want && p->want[p->next] == index) {
        uint8_t *dst = v->rgb + (size_t)p->next * fsz;
        for (int32_t y = 0; y < v->height; y++) memcpy(dst + y * row, d->rgb_data[0] + (size_t)y * d->rgb_linesize[0], row);
        v->indices[p->next] = index;
        p->next++;
    }
    return TW_OK;
}

/* Takes every frame the decoder has ready. */
static tw_status drain(decoder *d, pass *p) {
    for (;;) {
        int r = avcodec_receive_frame(d->dec, d->frame);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return TW_OK;
        if (r < 0) {
            p->errors++;
            if (p->opts->strict) {
                char why[512];
                return tw_err(TW_E_FORMAT, "%s: decoding failed after %lld frames: %s", d->src, (long long)p->count,
                              vlog_reason(r, why, sizeof why));
            }
            return TW_OK;
        }
        tw_status s = TW_OK;
        p->decoded++;
        if (p->want && p->next < p->n_want && p->want[p->next] == p->count) s = keep_frame(d, p, p->count);
        p->count++;
        av_frame_unref(d->frame);
        TW_TRY(s);
    }
}

/* One pass over the whole stream: decode everything, number the frames, keep the wanted ones. */
static tw_status decode_pass(decoder *d, pass *p) {
    char why[512];
    for (;;) {
        int r = av_read_frame(d->fmt, d->pkt);
        if (r < 0) {
            /* End of file, or a read error of a damaged file: either way what decoded so far
            ** counts (PyAV logs "File ended prematurely" for the truncated WebM and stops). */
            if (r != AVERROR_EOF && p->opts->strict)
                return tw_err(TW_E_FORMAT, "%s: reading failed after %lld frames: %s", d->src, (long long)p->count,
                              vlog_reason(r, why, sizeof why));
            break;
        }
        if (d->pkt->stream_index != d->stream) {
            av_packet_unref(d->pkt);
            continue;
        }
        r = avcodec_send_packet(d->dec, d->pkt);
        av_packet_unref(d->pkt);
        if (r < 0 && r != AVERROR(EAGAIN)) {
            /* A packet the decoder rejects (NAL errors of the garbled MP4): skip it. */
            p->errors++;
            if (p->opts->strict)
                return tw_err(TW_E_FORMAT, "%s: decoding failed after %lld frames: %s", d->src, (long long)p->count,
                              vlog_reason(r, why, sizeof why));
        }
        TW_TRY(drain(d, p));
    }
    avcodec_send_packet(d->dec, NULL);   /* flush the reordering delay (B-frames) */
    return drain(d, p);
}

/* ---- seeking ------------------------------------------------------------------------------ */

/* Frame numbers are decoder output ranks. After a seek the decoder no longer tells us the rank
** of what it outputs, so seeking is only done where the rank can be computed from the
** presentation time, and the computation is checked on every frame that comes out:
**
**   - the container counts the frames (nb_frames > 0) and indexes every one of them (MP4's sample
**     table, AVI's idx1: as many index entries as frames), so T is known without decoding;
**   - the stream is constant-rate: avg_frame_rate == r_frame_rate, one frame lasts a whole number
**     of time-base ticks, and the index timestamps (decode order) step by exactly that duration;
**     no entry is marked for discarding (edit lists that cut frames) and the first is a keyframe;
**   - the input is seekable.
**
** Then the frame of rank k is the one whose pts is pts0 + k x duration, where pts0 is the pts of
** the first frame decoded from the start (frame 0 is always sampled: arange starts at 0). Every
** frame decoded from the start must satisfy it (rank == count), and after a seek every frame
** must sit on that grid with consecutive ranks. To reach frame k: seek backward to the keyframe
** at or before its pts (AVSEEK_FLAG_BACKWARD; the MP4 index holds decode timestamps, so the
** keyframe found may come after frame k in presentation order: then seek again one GOP earlier),
** flush the decoder, decode forward and convert only frame k. Any surprise — a frame off the
** grid, a gap, a decode error, the end of the stream before frame k — abandons the seeking pass
** and the clip is read sequentially instead, so damaged files keep the sequential behaviour
** (docs/video.md lists what a seek cannot see). */

#define SEEK_GOPS 2          /* AUTO seeks when the next sampled frame is more than this many GOPs on */
#define SEEK_RETRIES 4       /* seeks one GOP further back when the keyframe found is past the target */

typedef struct seek_plan {
    int64_t total;       /* T: the container's frame count                              */
    int64_t dur;         /* one frame, in the stream's time base                        */
    int64_t gop;         /* largest distance between two keyframes (or the end), frames */
    int64_t first_ts;    /* first index timestamp (a decode timestamp)                  */
} seek_plan;

/* NULL when the stream can be sought frame-exactly (sp filled), else why not. */
static const char *seek_plan_make(const decoder *d, const AVStream *st, seek_plan *sp) {
    memset(sp, 0, sizeof *sp);
    if (!d->fmt->pb || !(d->fmt->pb->seekable & AVIO_SEEKABLE_NORMAL)) return "input not seekable";
    if (st->nb_frames <= 0) return "no frame count in the container";
    AVRational fr = st->avg_frame_rate, tb = st->time_base;
    if (fr.num <= 0 || fr.den <= 0 || tb.num <= 0 || tb.den <= 0) return "no frame rate";
    if (av_cmp_q(fr, st->r_frame_rate) != 0) return "variable frame rate (avg != r_frame_rate)";
    /* duration = (1 / fr) / tb = tb.den * fr.den / (tb.num * fr.num) ticks, whole or nothing */
    int64_t num = (int64_t)tb.den * fr.den, den = (int64_t)tb.num * fr.num;
    if (num % den != 0 || num / den <= 0) return "frame duration not a whole number of ticks";
    sp->dur = num / den;
    int n = avformat_index_get_entries_count(st);
    if (n != st->nb_frames) return "the index does not list every frame";
    int64_t last_key = -1;
    for (int i = 0; i < n; i++) {
        const AVIndexEntry *e = avformat_index_get_entry((AVStream *)st, i);
        if (!e) return "no index entry";
        if (e->flags & AVINDEX_DISCARD_FRAME) return "the index discards frames (edit list)";
        if (i == 0) sp->first_ts = e->timestamp;
        else if (e->timestamp - avformat_index_get_entry((AVStream *)st, i - 1)->timestamp != sp->dur)
            return "index timestamps not evenly spaced";
        if (e->flags & AVINDEX_KEYFRAME) {
            if (last_key < 0 && i != 0) return "the first frame is not a keyframe";
            if (last_key >= 0) sp->gop = TW_MAX(sp->gop, i - last_key);
            last_key = i;
        }
    }
    if (last_key < 0) return "no keyframe in the index";
    sp->gop = TW_MAX(sp->gop, n - last_key);
    sp->total = n;
    return NULL;
}

/* Whether to seek for wanted frame k when the last frame out of the decoder had rank `last`. */
static bool seek_wanted(const seek_plan *sp, tw_seek_mode mode, int64_t k, int64_t last) {
    if (mode == TW_SEEK_ALWAYS) return true;
    return k - last > SEEK_GOPS * sp->gop;
}

/* AUTO: seek only if some sampled frame lies more than SEEK_GOPS GOPs after the previous one. */
static bool seek_worth(const seek_plan *sp, const int64_t *want, int32_t n_want) {
    for (int32_t i = 1; i < n_want; i++)
        if (seek_wanted(sp, TW_SEEK_AUTO, want[i], want[i - 1])) return true;
    return false;
}

/* Positions the demuxer at the keyframe at or before frame `from` and empties the decoder. */
static bool seek_to(decoder *d, const seek_plan *sp, int64_t pts0, int64_t from) {
    int64_t ts = from > 0 ? pts0 + from * sp->dur : sp->first_ts;
    if (ts < sp->first_ts) ts = sp->first_ts;
    if (av_seek_frame(d->fmt, d->stream, ts, AVSEEK_FLAG_BACKWARD) < 0) return false;
    avcodec_flush_buffers(d->dec);
    return true;
}

/* The seeking pass: fills p like decode_pass but reaches the wanted frames by seeking. Returns
** TW_OK; or an error with *why NULL (memory, limits, an unconvertible pixel format); or
** TW_E_UNSUPPORTED with *why set when the pass gave up (nothing is reported through tw_err then:
** the caller falls back on sequential decoding). *why must be NULL on entry. */
static tw_status seek_pass(decoder *d, pass *p, const seek_plan *sp, tw_seek_mode mode, int32_t *seeks,
                           const char **why) {
    int64_t pts0 = AV_NOPTS_VALUE;   /* pts of frame 0                                          */
    int64_t last = -1;               /* rank of the last frame out of the decoder               */
    int64_t target = -1;             /* the frame the current seek aims at; -1: read from start */
    bool fresh = true;               /* no frame yet since the start or the last seek           */
    int retries = 0;
    bool eof = false;
    *seeks = 0;
#define GIVE_UP(reason) do { *why = (reason); return TW_E_UNSUPPORTED; } while (0)
    while (p->next < p->n_want) {
        int64_t k = p->want[p->next];
        if (pts0 != AV_NOPTS_VALUE && target != k && seek_wanted(sp, mode, k, last)) {
            if (!seek_to(d, sp, pts0, k)) GIVE_UP("av_seek_frame failed");
            (*seeks)++;
            target = k, fresh = true, retries = 0, eof = false;
        }
        int r = avcodec_receive_frame(d->dec, d->frame);
        if (r == AVERROR(EAGAIN)) {
            if (eof) GIVE_UP("the decoder wants input after the end");
            r = av_read_frame(d->fmt, d->pkt);
            if (r < 0) {
                if (r != AVERROR_EOF) GIVE_UP("read error");
                eof = true;
                avcodec_send_packet(d->dec, NULL);
                continue;
            }
            if (d->pkt->stream_index == d->stream) r = avcodec_send_packet(d->dec, d->pkt);
            av_packet_unref(d->pkt);
            if (r < 0 && r != AVERROR(EAGAIN)) GIVE_UP("decode error");
            continue;
        }
        if (r == AVERROR_EOF) GIVE_UP("the stream ended before a sampled frame");
        if (r < 0) GIVE_UP("decode error");
        p->decoded++;
        int64_t pts = d->frame->pts != AV_NOPTS_VALUE ? d->frame->pts : d->frame->best_effort_timestamp;
        if (pts == AV_NOPTS_VALUE) {
            av_frame_unref(d->frame);
            GIVE_UP("a frame without a timestamp");
        }
        if (pts0 == AV_NOPTS_VALUE) pts0 = pts;   /* the first frame from the start: rank 0 */
        int64_t off = pts - pts0, rank = off / sp->dur;
        if (off < 0 || off % sp->dur != 0 || rank >= sp->total) {
            av_frame_unref(d->frame);
            GIVE_UP("a timestamp off the frame grid");
        }
        if (fresh && target >= 0 && rank > target) {
            /* The keyframe found comes after frame k in presentation order: one GOP earlier. */
            av_frame_unref(d->frame);
            if (++retries > SEEK_RETRIES) GIVE_UP("no keyframe before a sampled frame");
            if (!seek_to(d, sp, pts0, target - retries * sp->gop)) GIVE_UP("av_seek_frame failed");
            (*seeks)++;
            eof = false;
            continue;
        }
        if (!fresh && rank != last + 1) {
            av_frame_unref(d->frame);
            GIVE_UP("frame timestamps not consecutive");
        }
        fresh = false;
        last = rank;
        tw_status s = TW_OK;
        if (rank == k) s = keep_frame(d, p, rank);
        av_frame_unref(d->frame);
        TW_TRY(s);
        if (rank > k) GIVE_UP("passed a sampled frame");
    }
#undef GIVE_UP
    p->count = sp->total;
    return TW_OK;
}

/* The whole load: a seeking pass when the container allows it and it pays off; else (or when it
** gives up) guess T, one sequential pass, and a second one if the guess was wrong. */
static tw_status ff_load(const vsource *vs, int32_t n_frames, const tw_video_opts *o, tw_video **out) {
    pthread_once(&vlog_once, vlog_install);
    const char *src = vs->name;
    decoder d;
    pass p;
    memset(&p, 0, sizeof p);
    p.opts = o;
    int64_t *want = NULL;
    int64_t decoded = 0;   /* frames decoded by passes that were thrown away */
    int32_t seeks = 0;
    char access[sizeof ((tw_video *)0)->access];
    tw_status s = dec_open(&d, vs);
    if (s != TW_OK) goto fail;

    AVStream *st = d.fmt->streams[d.stream];
    int64_t container_frames = st->nb_frames > 0 ? st->nb_frames : 0;
    double fps = st->avg_frame_rate.num > 0 && st->avg_frame_rate.den > 0 ? av_q2d(st->avg_frame_rate) : 0;
    double duration = 0;
    if (st->duration > 0 && st->time_base.num > 0) duration = (double)st->duration * av_q2d(st->time_base);
    else if (d.fmt->duration > 0) duration = (double)d.fmt->duration / AV_TIME_BASE;
    int64_t guess = 0;
    if (!o->count_by_decoding) {
        if (container_frames > 0) guess = container_frames;
        else if (duration > 0 && fps > 0) guess = llround(duration * fps);
    }
    if (guess > (int64_t)1 << 40) guess = 0;   /* absurd header values: count instead */

    /* Seeking: only for a sample (not "all frames") of a clip the container fully indexes. */
    seek_plan sp;
    const char *why = NULL;
    if (o->seek_mode == TW_SEEK_NEVER) why = "seek_mode never";
    else if (o->count_by_decoding) why = "count_by_decoding";
    else if (n_frames <= 0) why = "all frames wanted";
    else why = seek_plan_make(&d, st, &sp);
    if (!why && n_frames >= sp.total) why = "all frames wanted";
    int32_t n_want = 0;
    if (!why) {
        if (!(want = tw_calloc((size_t)n_frames, sizeof *want))) { s = TW_E_NOMEM; goto fail; }
        if ((s = tw_video_sample_indices(sp.total, n_frames, want, &n_want)) != TW_OK) goto fail;
        if (o->seek_mode == TW_SEEK_AUTO && !seek_worth(&sp, want, n_want)) why = "sampled frames within 2 GOPs";
    }
    if (!why) {
        p.want = want, p.n_want = n_want;
        s = seek_pass(&d, &p, &sp, o->seek_mode, &seeks, &why);
        if (s == TW_OK) {
            snprintf(access, sizeof access, "seek (%d seeks, GOP %lld)", seeks, (long long)sp.gop);
            goto done;
        }
        if (!why) goto fail;   /* a real error (memory, limits, pixel format), not a give-up */
        /* The seeking pass gave up: start over, sequentially. */
        snprintf(access, sizeof access, "sequential (a seek gave up: %s)", why);
        why = NULL;
        decoded += p.decoded;
        tw_video_free(p.v);
        free(want);
        want = NULL;
        memset(&p, 0, sizeof p);
        p.opts = o;
        seeks = 0;
        dec_close(&d);
        if ((s = dec_open(&d, vs)) != TW_OK) goto fail;
        st = d.fmt->streams[d.stream];
    }
    if (why) snprintf(access, sizeof access, "sequential (%s)", why);

    n_want = 0;
    free(want);
    want = NULL;
    if (guess > 0) {
        if (n_frames > 0 || guess <= o->max_frames) {
            int64_t cap = n_frames > 0 ? TW_MIN((int64_t)n_frames, guess) : guess;
            if (!(want = tw_calloc((size_t)cap, sizeof *want))) { s = TW_E_NOMEM; goto fail; }
            if ((s = tw_video_sample_indices(guess, n_frames, want, &n_want)) != TW_OK) goto fail;
        }
        /* else: "all frames" of a clip over the limit; counting tells whether it really is. */
    }
    p.want = want, p.n_want = n_want;
    if ((s = decode_pass(&d, &p)) != TW_OK) goto fail;

    int64_t total = p.count;
    if (total == 0) {
        char msg[512] = "";
        char reason[256];
        if (vlog_refused[0]) snprintf(msg, sizeof msg, ": %s", vlog_reason(0, reason, sizeof reason));
        else if (vlog_last[0]) snprintf(msg, sizeof msg, " (FFmpeg: %s)", vlog_last);
        s = tw_err(TW_E_FORMAT, "%s: no frame of the %s stream could be decoded (%d decode errors)%s", src,
                   avcodec_get_name(st->codecpar->codec_id), p.errors, msg);
        goto fail;
    }
    if (total != guess || !want) {
        /* Wrong or no guess: now T is known; decode again keeping the right frames. */
        free(want);
        want = NULL;
        tw_video_free(p.v);
        int32_t errors = p.errors;
        decoded += p.decoded;
        memset(&p, 0, sizeof p);
        p.opts = o;
        int64_t cap = n_frames > 0 ? TW_MIN((int64_t)n_frames, total) : total;
        if (cap > o->max_frames) {
            s = tw_err(TW_E_ARG, "%s: keeping %lld frames is over the limit of %d frames; ask for fewer", src,
                       (long long)cap, o->max_frames);
            goto fail;
        }
        if (!(want = tw_calloc((size_t)cap, sizeof *want))) { s = TW_E_NOMEM; goto fail; }
        if ((s = tw_video_sample_indices(total, n_frames, want, &n_want)) != TW_OK) goto fail;
        p.want = want, p.n_want = n_want;
        dec_close(&d);
        if ((s = dec_open(&d, vs)) != TW_OK) goto fail;
        st = d.fmt->streams[d.stream];
        if ((s = decode_pass(&d, &p)) != TW_OK) goto fail;
        if (p.count != total) {
            s = tw_err(TW_E_FORMAT, "%s: the second decoding pass gave %lld frames, the first %lld (unstable "
                       "decoding of a damaged file)", src, (long long)p.count, (long long)total);
            goto fail;
        }
        p.errors = TW_MAX(p.errors, errors);
    }
done:
    if (!p.v || p.next != p.n_want) {
        s = tw_err(TW_E_INTERNAL, "%s: %d of %d sampled frames were decoded", src, p.next, p.n_want);
        goto fail;
    }
    tw_video *v = p.v;
    v->total_frames = p.count;
    v->container_frames = container_frames;
    v->decode_errors = p.errors;
    v->rotation = stream_rotation(st);
    v->fps = fps;
    v->duration_s = duration;
    v->frames_decoded = decoded + p.decoded;
    v->seeks = seeks;
    snprintf(v->access, sizeof v->access, "%s", access);
    snprintf(v->codec, sizeof v->codec, "%s", avcodec_get_name(st->codecpar->codec_id));
    dec_close(&d);
    free(want);
    *out = v;
    return TW_OK;
fail:
    dec_close(&d);
    tw_video_free(p.v);
    free(want);
    return s;
}
#endif /* TW_HAVE_FFMPEG */

/* ---- entry point ---------------------------------------------------------------------------- */

tw_status tw_video_load(const char *src, int32_t n_frames, const tw_video_opts *opts, tw_video **out) {
    if (!out) return tw_err(TW_E_ARG, "tw_video_load: NULL out");
    *out = NULL;
    if (!src || !*src) return tw_err(TW_E_ARG, "tw_video_load: empty source");
    tw_video_opts o;
    opts_resolve(opts, &o);
    if (n_frames > o.max_frames)
        return tw_err(TW_E_ARG, "%s: %d frames requested, more than the limit of %d", src, n_frames, o.max_frames);

    bool url = false;
    if (strstr(src, "://")) {
#ifdef TW_HAVE_FFMPEG
        if (!is_url(src))
            return tw_err(TW_E_ARG, "%s: only local files and http(s) URLs are accepted as videos", src);
        if (!o.allow_network)
            return tw_err(TW_E_ARG, "%s: video URLs are disabled (tw_video_opts.allow_network)", src);
        url = true;
#else
        return tw_err(TW_E_UNSUPPORTED, "%s: video URLs need FFmpeg, which this build lacks", src);
#endif
    }
    if (!url) {
        struct stat sb;
        if (stat(src, &sb) != 0) {
            if (errno == ENOENT || errno == ENOTDIR) return tw_err(TW_E_NOT_FOUND, "%s: no such video file", src);
            return tw_err(TW_E_IO, "%s: %s", src, strerror(errno));
        }
        if (S_ISDIR(sb.st_mode)) return load_dir(src, n_frames, &o, out);
        if (!S_ISREG(sb.st_mode)) return tw_err(TW_E_ARG, "%s: not a regular file", src);
        if (sb.st_size == 0) return tw_err(TW_E_FORMAT, "%s: not a video: the file is empty", src);
    }
#ifdef TW_HAVE_FFMPEG
    vsource vs = { .name = src, .path = url ? NULL : src, .url = url ? src : NULL };
    return ff_load(&vs, n_frames, &o, out);
#else
    return tw_err(TW_E_UNSUPPORTED, "%s: decoding video files needs FFmpeg; this build has none (apt-get install "
                  "libavformat-dev libavcodec-dev libavutil-dev libswscale-dev, then rebuild)", src);
#endif
}

tw_status tw_video_load_mem(const void *data, size_t len, const char *name, int32_t n_frames,
                            const tw_video_opts *opts, tw_video **out) {
    if (!out) return tw_err(TW_E_ARG, "tw_video_decode: NULL out");
    *out = NULL;
    if (!name || !*name) name = "video";
    if (!data && len) return tw_err(TW_E_ARG, "%s: data is NULL", name);
    if (len == 0) return tw_err(TW_E_FORMAT, "%s: not a video: no data (0 bytes)", name);
    tw_video_opts o;
    opts_resolve(opts, &o);
    if (n_frames > o.max_frames)
        return tw_err(TW_E_ARG, "%s: %d frames requested, more than the limit of %d", name, n_frames, o.max_frames);
#ifdef TW_HAVE_FFMPEG
    vsource vs = { .name = name, .data = data, .len = len };
    return ff_load(&vs, n_frames, &o, out);
#else
    return tw_err(TW_E_UNSUPPORTED, "%s: decoding videos needs FFmpeg; this build has none (apt-get install "
                  "libavformat-dev libavcodec-dev libavutil-dev libswscale-dev, then rebuild)", name);
#endif
}

/* ---- the public tw_video calls (tower.h) ---------------------------------------------------- */

tw_status tw_video_open(const char *src, int32_t n_frames, tw_video **out) {
    return tw_video_load(src, n_frames, NULL, out);
}

tw_status tw_video_open_frames(const char *const *frames, int32_t n_paths, int32_t n_frames, tw_video **out) {
    return tw_video_load_images(frames, n_paths, n_frames, NULL, out);
}

tw_status tw_video_decode(const void *data, size_t len, const char *name, int32_t n_frames, tw_video **out) {
    return tw_video_load_mem(data, len, name, n_frames, NULL, out);
}

tw_status tw_video_decode_ex(const void *data, size_t len, const char *name, int32_t n_frames,
                             const tw_video_limits *lim, tw_video **out) {
    tw_video_opts o = { 0 };
    if (lim) {
        o.max_pixels = lim->max_pixels > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)lim->max_pixels;
        o.max_bytes = lim->max_bytes > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)lim->max_bytes;
    }
    return tw_video_load_mem(data, len, name, n_frames, &o, out);
}

int32_t tw_video_n_frames(const tw_video *v) { return v ? v->n_frames : 0; }
const int64_t *tw_video_frame_indices(const tw_video *v) { return v ? v->indices : NULL; }
int32_t tw_video_width(const tw_video *v) { return v ? v->width : 0; }
int32_t tw_video_height(const tw_video *v) { return v ? v->height : 0; }
const uint8_t *tw_video_rgb(const tw_video *v) { return v ? v->rgb : NULL; }

void tw_video_get_info(const tw_video *v, tw_video_info *out) {
    memset(out, 0, sizeof *out);
    if (!v) return;
    out->total_frames = v->total_frames;
    out->decode_errors = v->decode_errors;
    out->fps = v->fps;
    out->codec = v->codec;
    out->access = v->access;
}
