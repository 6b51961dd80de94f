/*
** media.h — the command line's images and videos and the generation helpers of run, chat and
** translate (tools/media.c), on top of the library's multimodal prompt (tower.h: tw_prompt).
*/
#ifndef TOWER_MEDIA_H
#define TOWER_MEDIA_H

#include "cli.h"

/* One image or video given on the command line (or by /image, /video in chat): decoded once. */
typedef struct cli_media {
    tw_media_kind kind;
    char         *src;     /* as given: path, "-", directory, URL; a frame list: "a.png ... b.png (N files)" */
    tw_image     *im;      /* TW_MEDIA_IMAGE */
    tw_video     *vid;     /* TW_MEDIA_VIDEO: the sampled frames */
} cli_media;

extern const char *const k_kind_name[2];   /* "image", "video" by tw_media_kind */

/* A short name for messages: data: URLs are cut after their media type (buf: room for it). */
const char *media_label(const char *src, char *buf, size_t cap);

size_t n_cli_videos(void);
size_t n_cli_media(void);
/* Opens the command line's media: the --image list, then the --video list, then the video given
** by --video-frame(s). -v: what each video's sampling took. */
int  open_cli_media(const tw_model *m, cli_media **out);
void close_media(cli_media *items, size_t n);
/* Opens one image or video (frames: a --video-frame(s) list of n_paths files instead of src). */
int  media_open(const tw_model *m, tw_media_kind kind, const char *src, const char *const *frames, size_t n_paths,
                cli_media *ci);
void media_close(cli_media *ci);
/* The tw_media list of items (malloc'ed; NULL after printing an error). */
tw_media *media_list(const cli_media *items, size_t n);

/* The prompt of one user turn: [--system] + user text with items placed (--raw: as is). */
int  make_prompt(tw_model *m, const char *user, int raw, const cli_media *items, size_t n, tw_prompt **out);
/* --image-tokens and -v: one line per medium of p: tokens, size, source. */
void print_media_tokens(FILE *f, const tw_prompt *p, const cli_media *items, size_t n);

/* ---- generation ---- */

tw_gen_params gen_params(int32_t default_max);
/* Generates from p on seq, reusing what seq holds and what cache has encoded; output streams to
** stdout (unless print == 0), stop strings never shown; Ctrl-C stops the reply. -v: each medium's
** encode time. *reused = prompt tokens found in the KV cache. */
int  generate_prompt(tw_seq *seq, tw_prompt *p, tw_media_cache *cache, const cli_media *items, size_t n_items,
                     const tw_gen_params *gp, int print, int newline_safe, tw_gen_result *res, size_t *reused);
void print_ids_line(const int32_t *ids, size_t n);
void report_timing(size_t n_prompt, size_t reused, const tw_gen_result *r);

/* ---- run and translate ---- */

/* Renders, generates and prints the reply (or its ids) and a newline for one user text. */
int  one_shot(tw_model *m, tw_seq *seq, tw_media_cache *cache, const char *user, int raw, int newline_safe,
              const cli_media *items, size_t n);
/* --show-prompt: the rendered prompt, the media's placeholders placed, nothing decoded. */
int  show_prompt(tw_model *m, const char *user, int raw, size_t n_images, size_t n_videos);
void check_image_usage(void);
int  image_tokens_only(void);

#endif
