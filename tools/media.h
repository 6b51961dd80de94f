/*
** media.h — images and videos of a prompt, and the generation helpers (tools/media.c). To be
** replaced by the library's multimodal prompt API.
*/
#ifndef TOWER_MEDIA_H
#define TOWER_MEDIA_H

#include "cli.h"

typedef enum media_kind { MEDIA_IMAGE, MEDIA_VIDEO } media_kind;

/* One image or video of a prompt: decoded once, counted before anything runs, encoded at most
** once. An image is counted again when the prompt's set of images changes: on LlavaOnevision
** checkpoints several images in one prompt are single tiles, one image is tiled (anyres). */
typedef struct cli_media {
    media_kind kind;
    char      *src;        /* as given: path, "-", directory, URL; a frame list: "a.png ... (N files)" */
    tw_image  *im;         /* MEDIA_IMAGE                                            */
    tw_video  *vid;        /* MEDIA_VIDEO: the sampled frames                        */
    int32_t    n_tokens;   /* placeholder tokens it takes in the prompt              */
    float     *embd;       /* [n_tokens][n_embd] once encoded, else NULL             */
    int32_t    serial;     /* tells media apart in the KV-cache bookkeeping          */
} cli_media;

extern const char *const k_kind_name[2];   /* "image", "video" by media_kind */

size_t n_cli_videos(void);
size_t n_cli_media(void);
/* Opens the command line's media: the --image list, then the --video list, then the video
** given by --video-frame(s). Not yet in prompt order (order_media) nor counted together
** (media_count). */
int  open_cli_media(const tw_model *m, cli_media **out);
void close_media(cli_media *items, size_t n);
int  media_count(const tw_model *m, cli_media *items, size_t n);
int  media_encode(const tw_model *m, cli_media *items, size_t n);
void print_media_tokens(FILE *f, const cli_media *items, size_t n);
char *place_media(const char *text, size_t n_images, size_t n_videos, int prepend);
int  order_media(const char *text, cli_media *items, size_t n);

/* What a tokenized prompt's media tokens stand for: the media's embeddings concatenated in
** placeholder order, and per token the serial of its image or video (-1 for text), so the KV
** cache is reused across media only when it holds that very image or video. */
typedef struct prompt_media {
    float   *embd;      /* [n_rows][n_embd] or NULL                */
    size_t   n_rows;
    int32_t *tags;      /* [n_ids] or NULL (text only)             */
} prompt_media;

void media_free(prompt_media *pm);
int  media_build(const tw_model *m, const int32_t *ids, size_t n_ids, const cli_media *items, size_t n,
                 prompt_media *pm);
int  tokenize_with_media(const tw_model *m, const char *prompt, const cli_media *items, size_t n, int32_t **ids,
                         size_t *n_ids);
int  check_fits(const tw_seq *seq, size_t n, const cli_media *items, size_t n_items);

/* ---- generation ---- */

tw_gen_params gen_params(int32_t default_max);
int  generate_turn(tw_seq *seq, const int32_t *ids, size_t n, const prompt_media *pm, size_t n_embd,
                   const tw_gen_params *gp, int print, int newline_safe, tw_gen_result *res, size_t *reused);
void print_ids_line(const int32_t *ids, size_t n);
void report_timing(size_t n_prompt, size_t reused, const tw_gen_result *r);

/* ---- run and translate ---- */

int  build_prompt(tw_model *m, const char *user, int raw, const cli_media *imgs, size_t n_imgs, char **prompt,
                  int32_t **ids, size_t *n_ids);
int  one_shot(tw_model *m, tw_seq *seq, const char *user, int raw, int newline_safe, cli_media *imgs, size_t n_imgs);
void check_image_usage(void);
int  image_tokens_only(void);

/* ---- chat ---- */

/* The images and videos of a conversation, in prompt order; the last n_pending are attached (by
** /image, /video, --image or --video) to the next user message. Earlier media keep their
** features, so a re-rendered conversation gives the same prefix and its KV cache is reused; only
** new media are encoded (and, on OneVision, images whose count changes with the image set). */
typedef struct chat_media {
    cli_media *v;
    size_t     n, cap, n_pending;
} chat_media;

int  chat_attach(const tw_model *m, chat_media *ci, media_kind kind, const char *src, const char *const *frames,
                 size_t n_paths, int tty);
void chat_drop_media(chat_media *ci, size_t keep);

/* ---- dump: every intermediate of the image and video paths (needs the vision internals) ---- */

#ifdef TOWER_MEDIA_INTERNALS
#include "video.h"       /* struct tw_video (frames, indices); frame preprocessing */
#include "vision.h"      /* SigLIP hidden states, projector, packing, pooling (struct tw_model) */

/* What dump computed for one image, kept for writing and checking (packed = the cli_media's
** embd, what the text model receives). */
typedef struct dump_image {
    tw_anyres_plan plan;
    float *pixels;      /* [n_tiles][3][S][S]            */
    float *hidden;      /* [L_v + 1][n_tiles][G*G][C]    */
    float *selected;    /* [n_tiles][G*G][C]             */
    float *projected;   /* [n_tiles][G*G][H]             */
} dump_image;

/* What dump computed for one video (video_features = the cli_media's embd; video_pooled = its
** rows before the final image_newline). */
typedef struct dump_video {
    int32_t  S;         /* frame side after resizing                */
    uint8_t *resized;   /* [F][S][S][3]                             */
    float   *pixels;    /* [F][3][S][S]  pixel_values_videos         */
    float   *hidden;    /* [L_v + 1][F][G*G][C]                     */
    float   *selected;  /* [F][G*G][C]                              */
    float   *projected; /* [F][G*G][H]                              */
} dump_video;

void dump_image_free(dump_image *d);
int  dump_vision(const tw_model *m, cli_media *ci, size_t index, dump_image *d);
void dump_video_free(dump_video *d);
int  dump_video_run(const tw_model *m, cli_media *ci, size_t index, dump_video *d);
#endif

#endif
