/*
** video.h — video input for TowerVideo (LlavaOnevision): open a clip, count its frames, sample N
** of them the way Hugging Face does, decode them to RGB, then resize and normalise them into the
** video processor's pixel_values_videos. The model side (SigLIP per frame, pooling, packing) takes
** the tw_video / float pixels produced here.
**
** Decoding goes through FFmpeg (libavformat / libavcodec / libswscale) when the build defines
** TW_HAVE_FFMPEG; without it tw_video_load on a video file returns TW_E_UNSUPPORTED, while
** directories / lists of frame images and in-memory frames still work. docs/video.md describes
** the conventions (frame numbering, sampling, colour conversion) and the measured tolerances.
*/
#ifndef TW_VIDEO_H
#define TW_VIDEO_H

#include "tw_internal.h"
#include "image.h"   /* tw_resample */

/* Sampled frames of one video plus what the container said about it. */
typedef struct tw_video {
    int32_t  n_frames;          /* frames kept (= the sampled indices)                       */
    int32_t  height, width;     /* every frame has this size (stored size, rotation ignored)  */
    uint8_t *rgb;               /* [n_frames][height][width][3]                               */
    int64_t *indices;           /* [n_frames] 0-based frame numbers in decoder output order   */
    int64_t  total_frames;      /* T: frames that decoded (what the sampler used)             */
    int64_t  container_frames;  /* the stream's nb_frames as the container reports it; 0 = n/a */
    int32_t  decode_errors;     /* packets the decoder rejected (skipped, tolerant decoding)  */
    int32_t  rotation;          /* display-matrix rotation in degrees (reported, NOT applied) */
    double   fps;               /* average frame rate, 0 if unknown                           */
    double   duration_s;        /* container / stream duration, 0 if unknown                  */
    char     codec[32];         /* decoder name ("h264", "vp9", "images", "rgb")              */
    int64_t  frames_decoded;    /* frames that came out of the decoder, over every pass        */
    int32_t  seeks;             /* seeks made by the pass that produced the frames; 0: none    */
    char     access[96];        /* how the frames were reached, for logs and benchmarks:
                                ** "seek (...)" or "sequential (<why not seeking>)"           */
} tw_video;

/* How a video file is read (tw_video_opts.seek_mode). Every mode gives the same frames on an
** intact file; docs/video.md says when AUTO seeks. */
typedef enum tw_seek_mode {
    TW_SEEK_AUTO = 0,           /* seek when the container allows it and the sampled frames lie
                                ** more than 2 GOPs apart; decode sequentially otherwise        */
    TW_SEEK_NEVER,              /* always decode the whole stream (the reference's own reading) */
    TW_SEEK_ALWAYS,             /* seek to every sampled frame after the first whenever the
                                ** container allows it (tests); sequential when it does not   */
} tw_seek_mode;

typedef struct tw_video_opts {
    int64_t max_pixels;         /* per frame (w*h); 0: 8192*8192                              */
    int32_t max_side;           /* largest width or height; 0: 16384                          */
    int64_t max_bytes;          /* all kept RGB frames together; 0: 4 GiB                     */
    int32_t max_frames;         /* largest n_frames (also for n_frames <= 0 = "all"); 0: 4096  */
    int     allow_network;      /* let FFmpeg open http(s):// URLs itself; 0 refuses them      */
    int     strict;             /* stop at the first decode error, as a plain PyAV loop (and
                                ** transformers' read_video_pyav) would; 0: skip bad packets   */
    int     count_by_decoding;  /* never trust the container's frame count: always count in a
                                ** first pass (what the fixtures' oracle does); costs a pass;
                                ** implies no seeking                                         */
    tw_seek_mode seek_mode;     /* AUTO (0), NEVER, ALWAYS                                     */
} tw_video_opts;

/* Frame indices transformers' BaseVideoProcessor.sample_frames picks: torch.arange(0, T, T/N)
** in float32, truncated to int. n > total is not sampled (HF raises): all frames 0..T-1 are
** returned instead (*n_out = T). When arange yields N+1 elements (a float rounding quirk, e.g.
** T=150, N=7) the first N are kept. n <= 0: all frames. out must hold
** (n > 0 ? min(n, total) : total) entries. */
tw_status tw_video_sample_indices(int64_t total, int32_t n, int64_t *out, int32_t *n_out);

/* src: a video file, an http(s) URL (opts->allow_network), or a directory of frame images (file
** names sorted in natural order, "f2.png" before "f10.png"). n_frames <= 0 keeps every frame
** (bounded by max_frames). opts may be NULL. Errors: TW_E_NOT_FOUND (no such file), TW_E_FORMAT
** (not a video, no video stream, no decodable frame; with FFmpeg's reason), TW_E_UNSUPPORTED
** (no decoder / no FFmpeg in this build), TW_E_ARG (over a limit). */
tw_status tw_video_load(const char *src, int32_t n_frames, const tw_video_opts *opts, tw_video **out);

/* A video file held in memory (tw_video_decode): read through the same pipeline as a file. */
tw_status tw_video_load_mem(const void *data, size_t len, const char *name, int32_t n_frames,
                            const tw_video_opts *opts, tw_video **out);

/* A video given as a list of frame image files, in order (decoded with tw_image_load; all must
** have the same size). Only the sampled files are decoded. */
tw_status tw_video_load_images(const char *const *paths, int32_t n_paths, int32_t n_frames,
                               const tw_video_opts *opts, tw_video **out);

/* Wraps (copies) frames already in memory, [n][h][w][3]; indices are 0..n-1, no sampling. */
tw_status tw_video_from_rgb(const uint8_t *rgb, int32_t n, int32_t height, int32_t width, tw_video **out);

void tw_video_free(tw_video *v);

/* ---- frame preprocessing (video_prep.c) ------------------------------------------------------ */

/* What video_preprocessor_config.json (or, as transformers falls back, preprocessor_config.json)
** asks of the LlavaOnevisionVideoProcessor. */
typedef struct tw_video_preproc {
    int32_t     height, width;     /* size {height, width}; 0 when shortest_edge is used        */
    int32_t     shortest_edge;     /* size {shortest_edge}: aspect kept (default_to_square false) */
    tw_resample resample;          /* BICUBIC (3) or BILINEAR (2)                                */
    bool        do_resize, do_rescale, do_normalize, do_convert_rgb;
    double      rescale_factor;    /* 1/255                                                      */
    double      mean[3], std[3];
} tw_video_preproc;

/* Reads <dir>/video_preprocessor_config.json, else <dir>/preprocessor_config.json. Missing
** fields take LlavaOnevisionVideoProcessor's class defaults (384x384, bicubic, CLIP mean/std). */
tw_status tw_video_preproc_load(const char *model_dir, tw_video_preproc *out);
/* The same from a source (a directory or a packed checkpoint). */
tw_status tw_video_preproc_load_src(const tw_src *src, tw_video_preproc *out);

/* Output size of a h x w frame under p (shortest_edge: short side = S, long side truncated). */
tw_status tw_video_preproc_out_size(const tw_video_preproc *p, int32_t h, int32_t w, int32_t *oh, int32_t *ow);

/* torch F.interpolate(mode=bicubic|bilinear, align_corners=False, antialias=True) on the float
** path, then clamp [0,255] and round half to even back to uint8, as torchvision's resize of a
** uint8 tensor does. src [sh][sw][3] -> dst [dh][dw][3]. Same size: plain copy. */
tw_status tw_video_resize_frame(const uint8_t *src, int32_t sh, int32_t sw, uint8_t *dst, int32_t dh, int32_t dw,
                                tw_resample filter);

/* All frames resized (as above): *out malloc'ed [n][*oh][*ow][3]. */
tw_status tw_video_resize(const tw_video_preproc *p, const tw_video *v, uint8_t **out, int32_t *oh, int32_t *ow);

/* Resize + fused rescale/normalise, (x - mean/rescale) / (std/rescale) in float32:
** *pixels malloc'ed [n_frames][3][*oh][*ow] (pixel_values_videos without the batch axis). */
tw_status tw_video_preprocess(const tw_video_preproc *p, const tw_video *v, float **pixels, int32_t *oh, int32_t *ow);

/* Same, from already resized frames [n][h][w][3]. */
tw_status tw_video_normalize(const tw_video_preproc *p, const uint8_t *rgb, int32_t n, int32_t h, int32_t w,
                             float *pixels);

#endif /* TW_VIDEO_H */
