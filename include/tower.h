/*
** tower.h — the public C API of towervision, an engine for the TowerVision / TowerVideo
** multilingual vision-language models (Hugging Face LlavaNext / LlavaOnevision checkpoints
** with a Gemma2 text model) and the Tower+ text models (Gemma2ForCausalLM).
**
** How it fits together:
**
**   tw_model_load("utter-project/TowerVision-2B", &params, &model);   // dir or hub repo id
**   const tw_tokenizer *tok = tw_model_tokenizer(model);
**   tw_chat_render(model, msgs, n, 1, &prompt);                      // checkpoint's template
**   tw_tokenize(tok, prompt, strlen(prompt), 0, &ids, &n_ids);         // template wrote <bos>
**   tw_seq_new(model, 0, &seq);                                       // KV cache, one per conversation
**   tw_generate(seq, ids, n_ids, &gen, on_token, user_data, &out, &n_out);
**
** Conventions:
** - Every fallible function returns a tw_status; on failure tw_last_error() gives a readable
**   message naming the file and the field (thread-local, valid until the next failing call on
**   the same thread). The library never prints and never exits.
** - Memory handed to the caller (ids, strings) is malloc'ed; release it with tw_free().
** - A tw_model is read-only after loading and may be shared by threads; each tw_seq (KV cache,
**   position, token history) belongs to one thread at a time. Several sequences of one model can
**   run concurrently.
*/
#ifndef TOWER_H
#define TOWER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TW_API __attribute__((visibility("default")))
#else
#define TW_API
#endif

#define TW_VERSION "0.1.0"

/* ------------------------------------------------------------------------------------------ */
/* Status codes                                                                                 */

typedef enum tw_status {
    TW_OK = 0,
    TW_E_ARG,          /* invalid argument passed by the caller                                 */
    TW_E_IO,           /* a file is missing, unreadable or could not be written                 */
    TW_E_FORMAT,       /* a file is malformed (JSON syntax, safetensors header, ...)            */
    TW_E_CONFIG,       /* a config field is missing, has the wrong type or an unsupported value */
    TW_E_WEIGHTS,      /* a tensor is missing or has the wrong dtype / shape                    */
    TW_E_NOMEM,        /* out of memory                                                         */
    TW_E_TEMPLATE,     /* chat template syntax error, or the template raised an exception       */
    TW_E_CONTEXT,      /* the prompt does not fit in the context window                         */
    TW_E_NETWORK,      /* download failed (connection, HTTP error, checksum)                    */
    TW_E_AUTH,         /* the hub refused access (401/403): set HF_TOKEN                         */
    TW_E_NOT_FOUND,    /* model / file not found (404, or not in the cache while offline)       */
    TW_E_UNSUPPORTED,  /* a valid input this build does not handle                              */
    TW_E_CANCELLED,    /* a callback asked to stop                                              */
    TW_E_INTERNAL      /* a bug: please report it                                               */
} tw_status;

TW_API const char *tw_status_name(tw_status s);   /* "TW_E_CONFIG", ...                      */
TW_API const char *tw_last_error(void);           /* message of the last failure on this thread */
TW_API void        tw_free(void *p);              /* frees memory returned by the library     */
TW_API const char *tw_build_info(void);           /* compiler, enabled features, kernel paths  */

/* ------------------------------------------------------------------------------------------ */
/* Tokenizer (Hugging Face tokenizer.json: BPE with byte fallback, added tokens)                */

typedef struct tw_tokenizer tw_tokenizer;

/* path: a tokenizer.json file, or a directory holding tokenizer.json (+ tokenizer_config.json). */
TW_API tw_status tw_tokenizer_load(const char *path, tw_tokenizer **out);
/* The same from tokenizer.json's text held in memory (len bytes, need not be NUL-terminated;
** not kept after the call). name says where the text came from, in messages only (NULL:
** "tokenizer.json"). No tokenizer_config.json is read: the post-processor in the JSON decides
** whether <bos> is added, as tw_tokenizer_load of a tokenizer.json file path does. */
TW_API tw_status tw_tokenizer_load_mem(const char *json, size_t len, const char *name, tw_tokenizer **out);
TW_API void      tw_tokenizer_free(tw_tokenizer *tok);

/* Encodes len bytes of UTF-8 text (may contain NUL). add_special: prepend <bos> as the
** tokenizer's post-processor does. *ids is malloc'ed. */
TW_API tw_status tw_tokenize(const tw_tokenizer *tok, const char *text, size_t len, int add_special,
                             int32_t **ids, size_t *n_ids);
/* Decodes ids to UTF-8 as HF's decoder does (byte runs, U+FFFD for invalid runs). */
TW_API tw_status tw_detokenize(const tw_tokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                               char **text, size_t *len);
TW_API int32_t     tw_tokenizer_vocab_size(const tw_tokenizer *tok);
/* The token's string as stored in the vocabulary ("▁world", "<0x0A>"); NULL for a bad id. */
TW_API const char *tw_token_piece(const tw_tokenizer *tok, int32_t id, size_t *len);
/* Id of an exact vocabulary / added-token string, or -1. */
TW_API int32_t     tw_token_id(const tw_tokenizer *tok, const char *piece, size_t len);
TW_API int         tw_token_is_special(const tw_tokenizer *tok, int32_t id);
TW_API int32_t     tw_tokenizer_bos(const tw_tokenizer *tok);   /* -1 when none */

/* Streaming detokenizer: feeds one id at a time and returns the text that is complete so far.
** An unfinished UTF-8 byte run is held back until it completes (or until flush). */
typedef struct tw_detok tw_detok;
TW_API tw_status tw_detok_new(const tw_tokenizer *tok, int skip_special, tw_detok **out);
/* *text points into the stream's buffer, valid until the next call; *len may be 0. */
TW_API tw_status tw_detok_push(tw_detok *d, int32_t id, const char **text, size_t *len);
TW_API tw_status tw_detok_flush(tw_detok *d, const char **text, size_t *len);
TW_API void      tw_detok_free(tw_detok *d);

/* ------------------------------------------------------------------------------------------ */
/* Chat templates (a Jinja subset interpreter: see docs/chat-templates.md)                      */

typedef struct tw_message {
    const char *role;      /* "system", "user", "assistant" (others are passed to the template) */
    const char *content;   /* UTF-8; images are written as "<image>" placeholders               */
} tw_message;

typedef struct tw_template tw_template;

/* Compiles Jinja source. Syntax errors are reported with line and column. */
TW_API tw_status tw_template_new(const char *source, size_t len, tw_template **out);
TW_API void      tw_template_free(tw_template *t);
/* Renders {messages, add_generation_prompt, bos_token, eos_token} into *out (malloc'ed).
** A raise_exception() in the template returns TW_E_TEMPLATE with its message. */
TW_API tw_status tw_template_render(const tw_template *t, const tw_message *msgs, size_t n_msgs,
                                    int add_generation_prompt, const char *bos_token,
                                    const char *eos_token, char **out);

/* ------------------------------------------------------------------------------------------ */
/* Models                                                                                       */

typedef struct tw_model tw_model;

typedef void (*tw_progress_fn)(void *user_data, const char *what, uint64_t done, uint64_t total);

/* How matrix products treat their f32 activations (docs/kernels.md, "bf16 activations"). */
typedef enum tw_matmul_mode {
    TW_MATMUL_DEFAULT = 0,   /* leave the process's mode as it is (f32 unless set before)          */
    TW_MATMUL_F32,           /* f32 activations: every path within the f32 tolerances              */
    TW_MATMUL_BF16,          /* BF16 weights x activations rounded to bf16 (AVX512-BF16 / AMX
                             ** only; elsewhere accepted and f32 is used): faster, not within the
                             ** f32 tolerances                                                     */
} tw_matmul_mode;

typedef struct tw_model_params {
    int         n_threads;          /* 0: every core                                              */
    /* The kernels are one choice per process: tw_model_load applies these two fields before it
    ** reads anything, and they stay for every model of the process. The environment overrides
    ** them: TOWER_KERNELS, when set, decides the path (an unknown or unsupported name there
    ** falls back to the best path, with the reason in `tower info`), TOWER_MATMUL=bf16|f32 the
    ** mode. Without either, the fields decide; left at NULL / TW_MATMUL_DEFAULT, nothing changes
    ** (the best path the CPU runs, amx excepted, and f32 activations). */
    const char *kernels;            /* "ref", "avx2", "avx512" or "amx"; NULL or "": as it is. An
                                    ** unknown name, or a path this CPU cannot run, fails the load
                                    ** with TW_E_ARG / TW_E_UNSUPPORTED naming this field          */
    tw_matmul_mode matmul;          /* TW_MATMUL_DEFAULT: as it is; out of range: TW_E_ARG        */
    int         final_softcap;      /* -1: as config.json says (as trained), 0: off (HF >= 4.52), 1: on */
    const char *chat_template_file; /* overrides the checkpoint's template; NULL: the checkpoint's */
    int         offline;            /* never touch the network (also HF_HUB_OFFLINE=1)             */
    tw_progress_fn progress;        /* download / load progress; NULL for none                    */
    void       *progress_user_data;
} tw_model_params;

TW_API tw_model_params tw_model_default_params(void);

/* name: a local directory, a single-file checkpoint written by `tower quantize` (loaded from its
** one mapping, embedded config and tokenizer files included: nothing is written to disk), or a
** Hugging Face repo id "org/name[@revision]" found in the HF cache (HF_HUB_CACHE, HF_HOME) or
** downloaded from HF_ENDPOINT (HF_TOKEN) unless offline. */
TW_API tw_status tw_model_load(const char *name, const tw_model_params *params, tw_model **out);
TW_API void      tw_model_free(tw_model *m);

/* Sharing one model's threads between a latency-bound loop and background work (a server's token
** steps and its media encodes, on other threads): work started by a thread marked background waits
** before each of its parallel jobs while the model is claimed, so a claimer waits for at most one
** background job, not for a whole encode. Claims count (claim / release in pairs). */
TW_API void      tw_model_claim(const tw_model *m);
TW_API void      tw_model_release(const tw_model *m);
TW_API void      tw_thread_set_background(int on);   /* the calling thread's model work yields to claims */

/* Resolves a model name to a local directory (downloading what is missing) without loading it.
** *dir is malloc'ed. */
TW_API tw_status tw_model_resolve(const char *name, const tw_model_params *params, char **dir);

TW_API const tw_tokenizer *tw_model_tokenizer(const tw_model *m);
TW_API const char *tw_model_dir(const tw_model *m);         /* the directory, or the single file */
TW_API const char *tw_model_arch(const tw_model *m);        /* "llava_next", "gemma2", ...       */
TW_API int32_t     tw_model_n_vocab(const tw_model *m);
TW_API int32_t     tw_model_n_embd(const tw_model *m);
TW_API int32_t     tw_model_n_layer(const tw_model *m);
TW_API int32_t     tw_model_n_ctx_train(const tw_model *m);   /* max_position_embeddings         */
TW_API int32_t     tw_model_image_token(const tw_model *m);   /* -1 for text-only models         */
TW_API int32_t     tw_model_video_token(const tw_model *m);   /* -1 when the model takes no video */
/* Stop token ids from generation_config.json (eos_token_id, int or list). */
TW_API size_t      tw_model_stop_ids(const tw_model *m, const int32_t **ids);
/* Renders a conversation with the model's chat template (or the override). */
TW_API tw_status   tw_chat_render(const tw_model *m, const tw_message *msgs, size_t n_msgs,
                                  int add_generation_prompt, char **out);

/* ------------------------------------------------------------------------------------------ */
/* Images                                                                                       */

typedef struct tw_image tw_image;   /* a decoded 8-bit RGB image */

typedef struct tw_image_load_opts {
    uint64_t max_pixels;     /* refuse larger images before allocating (decompression bombs);
                             ** 0: 178956970, Pillow's DecompressionBombError threshold          */
    uint64_t max_bytes;      /* largest encoded file / download; 0: 256 MiB                       */
    long     timeout_ms;     /* http(s) downloads; 0: 30 s                                        */
} tw_image_load_opts;

/* src: a file path, "-" for stdin, a data: URL (base64), or an http(s) URL. Decodes JPEG, PNG,
** WebP, GIF (first frame) and BMP; applies the EXIF orientation; converts to RGB as Pillow's
** convert("RGB") does (alpha dropped). opts may be NULL. */
TW_API tw_status tw_image_load(const char *src, const tw_image_load_opts *opts, tw_image **out);
/* Decodes an encoded image held in memory; name is used in messages only. */
TW_API tw_status tw_image_decode(const void *data, size_t len, const char *name, const tw_image_load_opts *opts,
                                 tw_image **out);
/* Wraps (copies) raw RGB8 pixels [height][width][3]. */
TW_API tw_status tw_image_from_rgb(const uint8_t *rgb, int32_t width, int32_t height, tw_image **out);
TW_API int32_t   tw_image_width(const tw_image *im);
TW_API int32_t   tw_image_height(const tw_image *im);
TW_API const uint8_t *tw_image_rgb(const tw_image *im);   /* [height][width][3] */
TW_API void      tw_image_free(tw_image *im);

/* How many <image> tokens an image of this size takes in the prompt (known before encoding). */
TW_API tw_status tw_image_n_tokens(const tw_model *m, int32_t width, int32_t height, int32_t *n_tokens);
/* The processor's pixel_values for one image: *pixels (malloc'ed) [n_tiles][3][S][S], the base
** thumbnail first. */
TW_API tw_status tw_image_preprocess(const tw_model *m, const tw_image *im, float **pixels, int32_t *n_tiles);
/* Image -> embeddings ready to merge: *embd (malloc'ed) [n_tokens][n_embd]. Cache them to reuse
** an image across prompts; pass them to tw_seq_eval / tw_generate as tw_eval_opts.embd. */
TW_API tw_status tw_image_encode(const tw_model *m, const tw_image *im, float **embd, int32_t *n_tokens);

/* All images of ONE prompt, in prompt order. The same as tw_image_encode for each image, except
** on LlavaOnevision (TowerVideo) checkpoints, which tile only a prompt's single image: with
** several, each is padded to a grey square and encoded as one tile (+ one newline), as
** transformers does. n_tokens[i] (caller's array of n_images) receives each image's count;
** *embd (malloc'ed) holds all rows, image after image. */
TW_API tw_status tw_images_encode(const tw_model *m, const tw_image *const *images, size_t n_images, float **embd,
                                  int32_t *n_tokens);
/* The counts tw_images_encode will produce, without encoding. */
TW_API tw_status tw_images_n_tokens(const tw_model *m, const tw_image *const *images, size_t n_images,
                                    int32_t *n_tokens);

/* ------------------------------------------------------------------------------------------ */
/* Video (LlavaOnevision / TowerVideo checkpoints)                                              */

typedef struct tw_video tw_video;   /* sampled RGB frames of one clip */

/* src: a video file (FFmpeg: H.264, H.265, VP8/9, AV1 where Debian's build decodes it, MPEG-4),
** or a directory of frame images. n_frames frames are sampled as transformers does
** (torch.arange(0, T, T/N)); n_frames <= 0 keeps every frame. */
TW_API tw_status tw_video_open(const char *src, int32_t n_frames, tw_video **out);
/* A video given as a list of frame image files (paths or URLs), sampled the same way. */
TW_API tw_status tw_video_open_frames(const char *const *frames, int32_t n_paths, int32_t n_frames, tw_video **out);
/* A video file held in memory (FFmpeg reads it through a custom I/O context: no temporary file);
** name is used in messages only. Frames are decoded one at a time (memory: the sampled frames).
** The frames, indices and counts are those tw_video_open gives for the same bytes in a file
** (with a name of the same extension: it is the format prober's hint, as a path is). A clip
** that needs other files (HLS / DASH playlists, concat lists, MP4 data references) is refused. */
TW_API tw_status tw_video_decode(const void *data, size_t len, const char *name, int32_t n_frames, tw_video **out);
/* Limits on what decoding may allocate (untrusted input: a server). 0: the defaults. */
typedef struct tw_video_limits {
    uint64_t max_pixels;   /* per frame, width x height; 0: 8192 x 8192                          */
    uint64_t max_bytes;    /* all sampled frames' RGB together; 0: 4 GiB                          */
} tw_video_limits;
/* tw_video_decode under limits (lim may be NULL): a frame over them is TW_E_ARG, before the
** frames are allocated. */
TW_API tw_status tw_video_decode_ex(const void *data, size_t len, const char *name, int32_t n_frames,
                                    const tw_video_limits *lim, tw_video **out);
/* The frame numbers sampled from a clip of total frames, as transformers' sample_frames picks
** them (torch.arange(0, T, T/N) in float32, truncated); n_frames <= 0 or >= total: all of them.
** out must hold min(n_frames, total) entries (total when n_frames <= 0); *n_out gets the count. */
TW_API tw_status tw_video_sample_indices(int64_t total, int32_t n_frames, int64_t *out, int32_t *n_out);
/* A video of n frame images already decoded (copied), sampled as tw_video_open_frames samples a
** list of files: frames[i] may be NULL where i is not among tw_video_sample_indices(n, n_frames),
** so a caller need decode only those. Every sampled frame must have the first one's size
** (TW_E_FORMAT otherwise, as for a list of files). */
TW_API tw_status tw_video_from_images(const tw_image *const *frames, size_t n, int32_t n_frames, tw_video **out);
TW_API int32_t   tw_video_n_frames(const tw_video *v);
TW_API const int64_t *tw_video_frame_indices(const tw_video *v);   /* [n_frames] */
TW_API int32_t   tw_video_width(const tw_video *v);
TW_API int32_t   tw_video_height(const tw_video *v);
TW_API const uint8_t *tw_video_rgb(const tw_video *v);   /* [n_frames][height][width][3] */
/* What the container and decoder said about a clip (for logs; every field may be 0/empty). */
typedef struct tw_video_info {
    int64_t     total_frames;     /* frames the sampler chose from                         */
    int32_t     decode_errors;    /* packets skipped as undecodable                        */
    double      fps;              /* 0 if unknown                                          */
    const char *codec;            /* "h264", "vp9", "images", ...                          */
    const char *access;           /* how the frames were reached: "seek (...)", "sequential (...)" */
} tw_video_info;
TW_API void      tw_video_get_info(const tw_video *v, tw_video_info *out);
TW_API void      tw_video_free(tw_video *v);
/* frames * ceil(G/2)^2 + 1 (G = vision grid side): 6273 for 32 frames on TowerVideo */
TW_API tw_status tw_video_n_tokens(const tw_model *m, int32_t n_frames, int32_t *n_tokens);
/* Video -> embeddings [n_tokens][n_embd] (malloc'ed): per frame SigLIP + projector, 2x2 bilinear
** pooling, frames in order, one image_newline at the end. */
TW_API tw_status tw_video_encode(const tw_model *m, const tw_video *v, float **embd, int32_t *n_tokens);

/* Tokenizes a rendered prompt (no specials added) whose i-th media placeholder ("<image>" or
** "<video>", in order of appearance) stands for n_tokens[i] tokens, and expands each placeholder
** to that many copies of its token, as the Hugging Face processor does. The number of
** placeholders must equal n_media. Pass the media's embeddings in the same order. */
TW_API tw_status tw_tokenize_prompt(const tw_model *m, const char *prompt, size_t len, const int32_t *n_tokens,
                                    size_t n_media, int32_t **ids, size_t *n_ids);

/* ------------------------------------------------------------------------------------------ */
/* Sequences: one KV cache + position + token history                                           */

typedef struct tw_seq tw_seq;

/* n_ctx 0: the model's max_position_embeddings. The KV cache grows as needed up to n_ctx. */
TW_API tw_status tw_seq_new(const tw_model *m, int32_t n_ctx, tw_seq **out);

/* Element type of a sequence's KV cache. Keys and values are rounded once (to nearest even) when
** written; attention widens them to f32 as it reads. f32 reproduces the float32 reference; f16 /
** bf16 halve the cache and the bytes each decode step reads (docs/attention.md: numerics). */
typedef enum tw_kv_type { TW_KV_F32 = 0, TW_KV_F16, TW_KV_BF16 } tw_kv_type;

typedef struct tw_seq_params {
    tw_kv_type kv_type;   /* TW_KV_F32 (the default) */
} tw_seq_params;

/* tw_seq_new with options; params NULL: the defaults (== tw_seq_new). */
TW_API tw_status  tw_seq_new_ex(const tw_model *m, int32_t n_ctx, const tw_seq_params *params, tw_seq **out);
TW_API tw_kv_type tw_seq_kv_type(const tw_seq *s);
TW_API const char *tw_kv_type_name(tw_kv_type t);                  /* "f32", "f16", "bf16"     */
TW_API tw_status  tw_kv_type_parse(const char *name, tw_kv_type *out);   /* the same names; TW_E_ARG */
TW_API void      tw_seq_free(tw_seq *s);
TW_API int32_t   tw_seq_pos(const tw_seq *s);        /* tokens in the cache                        */
TW_API int32_t   tw_seq_n_ctx(const tw_seq *s);
TW_API const int32_t *tw_seq_tokens(const tw_seq *s); /* the tw_seq_pos() tokens in the cache    */
/* Drops cached positions >= pos (to edit or re-run the tail of a conversation). */
TW_API tw_status tw_seq_rewind(tw_seq *s, int32_t pos);
/* Bytes the sequence holds (its KV cache as allocated, tokens, tags, logits). */
TW_API size_t    tw_seq_bytes(const tw_seq *s);

typedef struct tw_eval_opts {
    const float *embd;     /* NULL, or [n_embd_rows, n_embd] f32 rows that replace, in order, the
                           ** positions whose id is the model's image (or video) token            */
    size_t       n_embd_rows;
    float       *logits;   /* NULL, or [n, n_vocab]: logits at every new position                 */
    float       *hidden;   /* NULL, or [n_layer + 2, n, n_embd]: scaled embeddings, every layer's
                           ** output, and the final norm's output (a batch of one item only)      */
    /* Scoring (likelihoods of given tokens, prompt logprobs), without [n, n_vocab] logits held: */
    float       *logprobs; /* NULL, or [n]: log P(ids[i] | everything before it), the log-softmax of
                           ** the logits (after the softcap setting) of the position before. i = 0
                           ** reads the sequence's last logits: NAN when it has none (empty, or
                           ** rewound since its last evaluation)                                  */
    int32_t      n_top;    /* 0..TW_MAX_TOP alternatives per position for top_ids / top_logprobs  */
    int32_t     *top_ids;  /* NULL, or [n, n_top]: the most likely ids at each position (the
                           ** distribution logprobs[i] is read from), best first; -1 where NAN    */
    float       *top_logprobs; /* NULL, or [n, n_top]                                             */
    const uint64_t *tags;  /* NULL, or [n]: what each new position holds, 0 for text, else the
                           ** content hash of its medium (tw_prompt_media_info.hash), so that
                           ** tw_prompt_reuse can keep it. NULL: media positions are marked
                           ** unknown and never reused                                           */
} tw_eval_opts;

enum { TW_MAX_TOP = 20 };   /* OpenAI's top_logprobs limit */

/* Appends n tokens to the sequence and runs them through the model. The logits of the last
** position are kept and returned by tw_seq_logits(). */
TW_API tw_status   tw_seq_eval(tw_seq *s, const int32_t *ids, size_t n, const tw_eval_opts *opts);
TW_API const float *tw_seq_logits(const tw_seq *s);  /* [n_vocab], after the softcap setting   */

/* Several sequences evaluated in one forward pass: each item is what tw_seq_eval(seq, ids, n,
** opts) would do, and gets the same logits within the fixtures' tolerance (docs/batching.md: which
** figures are bit-identical and why the others are not). The rows of all items go through every
** weight matrix together, so a decode step of k sequences reads the weights once: decode is
** bound by memory, and k streams cost little more than one (where the matrix-product kernels
** keep up: docs/batching.md, measured). Sequences must be distinct and of one model; hidden is
** for a batch of one item; items with n = 0 are skipped. Every item is checked before anything
** runs: on error (naming the item) no sequence has changed. */
typedef struct tw_batch_item {
    tw_seq             *seq;
    const int32_t      *ids;
    size_t              n;
    const tw_eval_opts *opts;   /* NULL, or as for tw_seq_eval */
} tw_batch_item;
TW_API tw_status tw_seq_eval_batch(const tw_batch_item *items, size_t n_items);

/* log P(id) under logits [n_vocab] (log-softmax in double precision sums); n_top best ids and
** their log-probabilities into top_ids / top_lp when n_top > 0 (ties: lower id first; either
** array may be NULL; entries past TW_MAX_TOP or n_vocab get -1 / NAN). NAN for an id outside
** [0, n_vocab) (then only the alternatives are wanted). The scores of tw_eval_opts are this. */
TW_API float tw_logprob(const float *logits, int32_t n_vocab, int32_t id, int32_t n_top, int32_t *top_ids,
                        float *top_lp);

/* ------------------------------------------------------------------------------------------ */
/* Sampling and generation                                                                      */

typedef struct tw_sampler_params {
    float    temperature;        /* <= 0: greedy (first index of the maximum)                     */
    int32_t  top_k;              /* <= 0: off                                                     */
    float    top_p;              /* >= 1: off                                                     */
    float    min_p;              /* <= 0: off                                                     */
    float    repetition_penalty; /* 1: off (HF semantics: divide positive logits, multiply negative) */
    float    presence_penalty;   /* 0: off (OpenAI semantics)                                     */
    float    frequency_penalty;  /* 0: off                                                        */
    int32_t  penalty_last_n;     /* tokens of history the penalties look at; -1: all             */
    uint64_t seed;
} tw_sampler_params;

TW_API tw_sampler_params tw_sampler_default_params(void);   /* greedy */

typedef struct tw_sampler tw_sampler;
TW_API tw_status tw_sampler_new(const tw_sampler_params *p, int32_t n_vocab, tw_sampler **out);
TW_API void      tw_sampler_free(tw_sampler *s);
/* Picks the next token from logits [n_vocab]; history = tokens the penalties apply to. */
TW_API int32_t   tw_sampler_sample(tw_sampler *s, const float *logits, const int32_t *history, size_t n_hist);

/* Called for every generated token with the text it completes (possibly empty while a UTF-8
** sequence is incomplete, or while the text might be the start of a stop string). Text still
** held when generation ends is passed in one last call with id -1 (its return value is ignored).
** The texts of all calls concatenated equal tw_gen_result.text; stop tokens are never passed.
** Return non-zero to stop. */
typedef int (*tw_token_fn)(void *user_data, int32_t id, const char *text, size_t len);

typedef struct tw_gen_params {
    int32_t            max_new_tokens;   /* <= 0: until a stop or the context is full          */
    tw_sampler_params  sampling;
    const char *const *stop_strings;     /* generation stops when the text contains one       */
    size_t             n_stop_strings;
    const int32_t     *stop_ids;         /* extra stop ids                                    */
    size_t             n_stop_ids;
    int                ignore_model_stops; /* 1: do not stop on generation_config's eos ids   */
} tw_gen_params;

TW_API tw_gen_params tw_gen_default_params(void);

/* Why generation ended (docs/generation.md "Stop conditions"). */
typedef enum tw_stop_reason {
    TW_STOP_MAX_TOKENS = 0,   /* max_new_tokens generated                                   */
    TW_STOP_ID,               /* a stop id was sampled (evaluated, not returned)            */
    TW_STOP_STRING,           /* the text contains a stop string                            */
    TW_STOP_CONTEXT_FULL,     /* no room for the next token: not an error                   */
    TW_STOP_CALLBACK          /* the tw_token_fn returned non-zero (cancelled)              */
} tw_stop_reason;
TW_API const char *tw_stop_reason_name(tw_stop_reason r);   /* "max tokens", "stop id", ... */

typedef struct tw_gen_result {
    int32_t *ids;          /* generated ids (malloc'ed): a stop token is not included, the token
                           ** completing a stop string is                                        */
    size_t   n_ids;
    char    *text;         /* generated text (malloc'ed), cut before a stop string             */
    size_t   text_len;
    tw_stop_reason stop_reason;
    double   prefill_ms, decode_ms;
} tw_gen_result;

/* Evaluates the prompt (appended to what the sequence holds) and generates. The stop token is
** evaluated into the cache too, so a chat can continue after it. */
TW_API tw_status tw_generate(tw_seq *s, const int32_t *prompt, size_t n_prompt, const tw_eval_opts *prompt_opts,
                             const tw_gen_params *p, tw_token_fn on_token, void *user_data,
                             tw_gen_result *out);
TW_API void      tw_gen_result_free(tw_gen_result *r);

/* Generation one token at a time, for callers that evaluate the tokens themselves (a server
** batching many sequences): tw_generate is this loop around tw_seq_eval, so both give the same
** tokens and texts.
**
**   tw_gen_new(model, &params, &g);
**   evaluate the prompt into seq;
**   for (;;) {
**       tw_gen_next(g, tw_seq_logits(seq), tw_seq_tokens(seq), tw_seq_pos(seq),
**                   tw_seq_n_ctx(seq) - tw_seq_pos(seq), &step);
**       stream step.text / step.len;
**       if (step.eval) tw_seq_eval(seq, &step.id, 1, NULL);   // or in a tw_seq_eval_batch
**       if (step.done) break;                                 // step.stop_reason says why
**   }
**   tw_gen_free(g);
**
** The step that samples the last token says done itself (max_new_tokens reached, no room left
** after it, a stop id, a stop string), with eval still to do; a step without a token (id -1) is
** done only when the context was already full. To stop early, call tw_gen_cancel instead of the
** next tw_gen_next and stream its text. tw_generate's callback receives a done step's text in two
** calls: the token's part with its id, then what the end released with id -1.
*/
typedef struct tw_gen tw_gen;
typedef struct tw_gen_step {
    int32_t        id;          /* the sampled token; -1 when none was (the end was reached first) */
    int            eval;        /* evaluate id into the sequence now (a stop id too: the cache then
                                ** holds it and a chat continues after it)                        */
    const char    *text;        /* text to stream now (never NULL; valid until the next call on
                                ** the generator); when done, it includes whatever was held back  */
    size_t         len;
    int            emitted;     /* id is part of the output (not a stop id)                        */
    int            done;        /* generation has ended                                            */
    tw_stop_reason stop_reason; /* when done                                                       */
} tw_gen_step;
/* p (NULL: tw_gen_default_params()) is copied, its stop strings and ids included. The model must
** outlive g (its tokenizer streams the text). */
TW_API tw_status tw_gen_new(const tw_model *m, const tw_gen_params *p, tw_gen **out);
/* One step from the logits of the sequence's last position. history: the sequence's tokens (the
** penalties read them); room: positions left in the sequence's context before this step's token.
** After done, further calls return done steps with no token and no text. After an error the
** generator can only be freed. */
TW_API tw_status tw_gen_next(tw_gen *g, const float *logits, const int32_t *history, size_t n_hist, int32_t room,
                             tw_gen_step *out);
/* Ends generation early (the caller cancelled): releases held-back text as a last step with
** done = 1, no token and stop_reason TW_STOP_CALLBACK (TW_STOP_STRING in the rare case the
** detokenizer's unfinished bytes, flushed, complete a stop string). After done it changes nothing. */
TW_API tw_status tw_gen_cancel(tw_gen *g, tw_gen_step *out);
TW_API const int32_t *tw_gen_ids(const tw_gen *g, size_t *n);    /* output ids so far          */
/* The text streamed so far (*len bytes; not NUL-terminated while held-back text follows it).
** When done, the whole output text, as tw_gen_result.text. */
TW_API const char    *tw_gen_text(const tw_gen *g, size_t *len);
TW_API void           tw_gen_free(tw_gen *g);

/* ------------------------------------------------------------------------------------------ */
/* Tensors: what the engine computes on the way, and safetensors files                          */

typedef enum tw_elem_type { TW_ELEM_F32 = 0, TW_ELEM_F16, TW_ELEM_BF16, TW_ELEM_I64, TW_ELEM_I32, TW_ELEM_U8 } tw_elem_type;

/* A named tensor, row-major, borrowed (valid during the call that hands it out). */
typedef struct tw_tensor_info {
    const char  *name;
    tw_elem_type type;
    int32_t      n_dims;
    int64_t      shape[6];
    const void  *data;
    int32_t      media;      /* for media tensors: index of the image / video among the prompt's
                             ** media of its kind (0-based); -1 otherwise                       */
} tw_tensor_info;

/* Called with every intermediate tensor a computation names (like ggml's eval callback); return
** non-zero to stop it (the call then fails with TW_E_CANCELLED). */
typedef int (*tw_tensor_fn)(void *user_data, const tw_tensor_info *t);

/* A safetensors file, mapped read-only. */
typedef struct tw_tensor_file tw_tensor_file;
TW_API tw_status tw_tensor_file_open(const char *path, tw_tensor_file **out);
/* TW_E_NOT_FOUND when the file has no tensor of that name (nothing recorded for tw_last_error). */
TW_API tw_status tw_tensor_file_get(const tw_tensor_file *f, const char *name, tw_tensor_info *out);
TW_API void      tw_tensor_file_close(tw_tensor_file *f);

/* Builds a safetensors file: tensors are copied when added; save writes atomically (a temporary
** file renamed over path). */
typedef struct tw_tensor_writer tw_tensor_writer;
TW_API tw_status tw_tensor_writer_new(tw_tensor_writer **out);
TW_API tw_status tw_tensor_writer_add(tw_tensor_writer *w, const char *name, tw_elem_type type, int32_t n_dims,
                                      const int64_t *shape, const void *data);
TW_API tw_status tw_tensor_writer_save(tw_tensor_writer *w, const char *path);
TW_API void      tw_tensor_writer_free(tw_tensor_writer *w);

/* ------------------------------------------------------------------------------------------ */
/* Multimodal prompts: messages with text, images and videos in; tokens, counts and a sequence  */
/* ready to generate from out                                                                   */
/*                                                                                              */
/*   tw_part parts[] = {{TW_PART_IMAGE, .image = im}, {TW_PART_TEXT, .text = "What is this?"}};  */
/*   tw_chat_message msg = {"user", parts, 2};                                                  */
/*   tw_prompt_from_chat(model, &msg, 1, 1, &p);        // template, placement, counts, tokens  */
/*   tw_prompt_n_tokens(p);                             // known before any encoding            */
/*   tw_prompt_generate(seq, p, cache, &gen, on_token, ud, &out, NULL);  // encode once, reuse KV */
/*                                                                                              */
/* Every model-specific rule lives here: where media go in the text, one "<image>" / "<video>"   */
/* placeholder each expanded to its token count, TowerVideo's single-tile encoding of images when */
/* a prompt has several, the context check. The images and videos are borrowed: they must stay */
/* valid until the prompt is freed.                                                             */

typedef enum tw_media_kind { TW_MEDIA_IMAGE = 0, TW_MEDIA_VIDEO = 1 } tw_media_kind;

typedef struct tw_media {
    tw_media_kind   kind;
    const tw_image *image;    /* TW_MEDIA_IMAGE */
    const tw_video *video;    /* TW_MEDIA_VIDEO */
} tw_media;

typedef enum tw_part_type { TW_PART_TEXT = 0, TW_PART_IMAGE, TW_PART_VIDEO } tw_part_type;

typedef struct tw_part {
    tw_part_type    type;
    const char     *text;     /* TW_PART_TEXT: UTF-8                                              */
    const tw_image *image;    /* TW_PART_IMAGE                                                    */
    const tw_video *video;    /* TW_PART_VIDEO                                                    */
} tw_part;

typedef struct tw_chat_message {
    const char    *role;      /* "system", "user", "assistant"                                    */
    const tw_part *parts;
    size_t         n_parts;
} tw_chat_message;

typedef struct tw_prompt tw_prompt;

/* A conversation rendered with the checkpoint's chat template. In each message the text parts
** are joined; its images and videos go where that text writes "<image>" / "<video>" (one per
** medium of the kind, in order) or, when the text has none of a kind, first: one "<image>\n" per
** image, then one "<video>\n" per video (the model cards' and the training data's layout, and
** vLLM's for such templates). Any other count of placeholders is an error naming the message. */
TW_API tw_status tw_prompt_from_chat(const tw_model *m, const tw_chat_message *msgs, size_t n_msgs,
                                     int add_generation_prompt, tw_prompt **out);

enum {
    TW_PROMPT_RAW = 1,           /* text is the whole prompt: no template (write <bos> yourself)   */
    TW_PROMPT_NO_PREPEND = 2,    /* a kind without placeholders is an error, not put first         */
};
/* One user turn of text (len bytes) with media (in order of kind: the i-th image for the i-th
** "<image>"), placed as tw_prompt_from_chat does; system may be NULL. flags: TW_PROMPT_*. With
** TW_PROMPT_RAW the text is not templated and system must be NULL. */
TW_API tw_status tw_prompt_from_text(const tw_model *m, const char *system, const char *text, size_t len,
                                     const tw_media *media, size_t n_media, unsigned flags, tw_prompt **out);
/* A text-only prompt given as token ids (copied; media placeholder ids are refused). */
TW_API tw_status tw_prompt_from_ids(const tw_model *m, const int32_t *ids, size_t n, tw_prompt **out);
enum {
    /* tw_prompt_from_chat's add_generation_prompt may instead be this: the last message (the
    ** assistant's) is left open, its text continued by generation or scored (vLLM's
    ** continue_final_message): the rendering is cut right after that message's text. */
    TW_PROMPT_CONTINUE_FINAL = 2,
};
TW_API void      tw_prompt_free(tw_prompt *p);
/* The text tw_prompt_from_text would render for n_images images and n_videos videos, without
** the media themselves (to show a prompt before decoding anything). *out is malloc'ed. */
TW_API tw_status tw_prompt_render(const tw_model *m, const char *system, const char *text, size_t len, size_t n_images,
                                  size_t n_videos, unsigned flags, char **out);

TW_API const char    *tw_prompt_text(const tw_prompt *p);       /* rendered, one placeholder per medium */
TW_API size_t         tw_prompt_n_tokens(const tw_prompt *p);   /* all tokens, media tokens included    */
TW_API const int32_t *tw_prompt_tokens(const tw_prompt *p);     /* [n_tokens], placeholders expanded    */
TW_API size_t         tw_prompt_n_media(const tw_prompt *p);

/* One medium of a prompt, in prompt order. */
typedef struct tw_prompt_media_info {
    tw_media_kind   kind;
    const tw_image *image;
    const tw_video *video;
    int32_t         index;        /* among the prompt's media of its kind                         */
    int32_t         n_tokens;     /* its tokens in the prompt                                     */
    size_t          first_token;  /* position of its first token in tw_prompt_tokens              */
    int             single_tile;  /* image encoded as one tile (TowerVideo, several images)       */
    uint64_t        hash;         /* content hash (pixels, size, frames, encoding mode)           */
    int             encoded;      /* its embedding rows are ready (tw_prompt_encode)              */
    int             from_cache;   /* they came from the media cache                               */
    double          encode_ms;    /* time this prompt spent encoding it (0 from the cache)        */
} tw_prompt_media_info;
TW_API tw_status tw_prompt_media(const tw_prompt *p, size_t i, tw_prompt_media_info *out);

/* Embeddings of encoded media, reused across prompts by content hash, shared by the threads of a
** server (it locks), bounded in bytes (least recently used entries leave first). One cache belongs
** to one model. */
typedef struct tw_media_cache tw_media_cache;
TW_API tw_status tw_media_cache_new(const tw_model *m, size_t max_bytes, tw_media_cache **out);   /* 0: 2 GiB */
TW_API void      tw_media_cache_free(tw_media_cache *c);
typedef struct tw_media_cache_stats {
    uint64_t hits, misses;        /* lookups by tw_prompt_encode                                  */
    uint64_t images_encoded, videos_encoded;
    double   image_encode_ms, video_encode_ms;
    size_t   entries, bytes;
} tw_media_cache_stats;
TW_API void      tw_media_cache_get_stats(const tw_media_cache *c, tw_media_cache_stats *out);

typedef struct tw_encode_opts {
    tw_tensor_fn on_tensor;       /* NULL, or every intermediate of the vision pipeline, named as
                                  ** the reference's dump: pixel_values, vision_hidden_states,
                                  ** vision_selected, projected, packed (images); video_frames_resized,
                                  ** pixel_values_videos, video_vision_hidden_states,
                                  ** video_vision_selected, video_projected, video_pooled,
                                  ** video_features (videos). Media found in the cache are not
                                  ** recomputed and report nothing.                                */
    void        *user_data;
} tw_encode_opts;

/* Encodes the media that have no rows yet, through cache when given (may be NULL: the prompt
** keeps its rows). opts may be NULL. Calling it again does nothing. */
TW_API tw_status tw_prompt_encode(tw_prompt *p, tw_media_cache *cache, const tw_encode_opts *opts);
/* The embedding rows of all media tokens, in prompt order [n_rows][n_embd]; after encoding. */
TW_API tw_status tw_prompt_embd(tw_prompt *p, const float **rows, size_t *n_rows);

/* Brings seq to hold exactly the prompt: keeps the longest prefix seq already holds (the same
** tokens and, for media tokens, the same media), drops the rest and evaluates what is new
** (encoding first, through cache, the media that have tokens in the new part: a medium wholly
** in the kept prefix is not encoded at all). At least the last token is evaluated, so tw_seq_logits()
** is the prompt's. opts (may be NULL): logits / hidden / scoring of the evaluated positions,
** which start at *n_reused; its embd and tags must be NULL. n_reused (may be NULL): prompt tokens
** kept. A prompt that does not fit is TW_E_CONTEXT, with what takes the room (tw_prompt_generate
** also needs room for one generated token). On error the sequence is unchanged, unless the
** evaluation itself failed (then it holds the kept prefix). */
TW_API tw_status tw_prompt_eval(tw_seq *s, tw_prompt *p, tw_media_cache *cache, const tw_eval_opts *opts,
                                size_t *n_reused);
/* The same work a chunk at a time, for schedulers that prefill prompts between other sequences'
** decode steps in one tw_seq_eval_batch:
**
**   tw_prompt_reuse(seq, p, &pos);                 // keep what seq shares with p
**   tw_prompt_encode_from(p, pos, cache, NULL);    // media with tokens from pos on
**   while (pos < tw_prompt_n_tokens(p)) {
**       tw_prompt_chunk(p, pos, n, &ids, &opts);   // ids, media rows and tags of [pos, pos+n)
**       tw_seq_eval(seq, ids, n, &opts);           // or an item of tw_seq_eval_batch
**       pos += n;
**   }
*/
/* How many leading positions of s hold what p starts with (tokens, and for media tokens the same
** media): what tw_prompt_reuse would keep before its at-least-one-token rule. No change to s. */
TW_API size_t    tw_prompt_match(const tw_seq *s, const tw_prompt *p);
/* Rewinds s to the longest prefix it shares with p (the same tokens and, for media tokens, the
** same media: positions evaluated with tw_prompt_chunk's tags), keeping at least one prompt token
** to evaluate. No computation. TW_E_CONTEXT when the prompt does not fit (as tw_prompt_eval); s
** is then unchanged. n_reused (may be NULL): the kept prefix, where evaluation resumes. */
TW_API tw_status tw_prompt_reuse(tw_seq *s, const tw_prompt *p, size_t *n_reused);
/* tw_prompt_encode for the media that have tokens at positions >= from only (from <= the
** prompt's token count). */
TW_API tw_status tw_prompt_encode_from(tw_prompt *p, size_t from, tw_media_cache *cache, const tw_encode_opts *opts);
/* Tokens [from, from + n) of the prompt, and in *opts (the rest zeroed: set logits or scoring
** after the call) the embedding rows of its media tokens and the tags of its positions; those
** media must be encoded (TW_E_ARG naming the medium otherwise). Valid until the next call on p
** or until p is freed. */
TW_API tw_status tw_prompt_chunk(tw_prompt *p, size_t from, size_t n, const int32_t **ids, tw_eval_opts *opts);

/* tw_prompt_eval then tw_generate. */
TW_API tw_status tw_prompt_generate(tw_seq *s, tw_prompt *p, tw_media_cache *cache, const tw_gen_params *gp,
                                    tw_token_fn on_token, void *user_data, tw_gen_result *out, size_t *n_reused);

/* Whether the model takes images / videos at all (a vision tower and the placeholder token). */
TW_API int       tw_model_has_vision(const tw_model *m);
TW_API int       tw_model_has_video(const tw_model *m);

/* ------------------------------------------------------------------------------------------ */
/* Tools: quantized checkpoints and benchmarks (what `tower quantize` and `tower bench` run)    */

/* ---- quantization (docs/quantization.md) ---- */

/* Called once per tensor written: its name, how it was stored ("q8_0", "q4_0", or the kept type
** "bf16", ...), quantized (1) or kept as is (0), its shape [rows, cols] and, when quantized, the
** RMS relative error sqrt(sum (w - w')^2 / sum w^2) the quantization introduced. */
typedef void (*tw_quantize_report_fn)(void *user_data, const char *tensor, const char *stored_as, int quantized,
                                      int64_t rows, int64_t cols, double rel_rms_error);

typedef struct tw_quantize_params {
    const char *type;              /* "q8" (Q8_0) or "q4" (Q4_0); "q8_0" / "q4_0" too            */
    int         keep_vision_bf16;  /* vision tower and projector stay as stored                  */
    int         keep_embed_bf16;   /* the token embedding (and tied LM head) stays as stored     */
    int         n_threads;         /* 0: every core                                              */
    tw_quantize_report_fn report;  /* may be NULL                                                */
    void       *user_data;
} tw_quantize_params;

TW_API tw_quantize_params tw_quantize_default_params(void);   /* q8, nothing kept, every core */
/* Writes the checkpoint directory dir as one quantized .tower.safetensors file out_path (weights,
** config, tokenizer and chat template embedded; tw_model_load reads it directly). TW_E_ARG for an
** unknown type. The file is written atomically. */
TW_API tw_status tw_model_quantize(const char *dir, const char *out_path, const tw_quantize_params *p);

/* ---- what a checkpoint holds (tower info) ---- */

#define TW_CHECKPOINT_MAX_TYPES 16
typedef struct tw_checkpoint_info {
    int         packed;           /* a single `tower quantize` file (its small files embedded)      */
    int         weights_listed;   /* 0: the weights could not be opened: weights_error says why      */
    char        weights_error[256];
    size_t      n_tensors;
    uint64_t    n_params;
    uint64_t    file_bytes;       /* on disk, every shard                                           */
    size_t      n_types;          /* per stored type, in the library's type order                   */
    struct { const char *type; size_t n_tensors; uint64_t bytes; } types[TW_CHECKPOINT_MAX_TYPES];
    /* where the chat template comes from: "chat_template.jinja", "chat_template.json",
    ** "tokenizer_config.json (\"chat_template\")", or NULL when the checkpoint has none */
    const char *chat_template;
} tw_checkpoint_info;

/* Describes the checkpoint at path (a directory, or a packed file: tw_model_dir() of a loaded
** model). TW_OK even when the weights cannot be listed (weights_listed = 0). */
TW_API tw_status   tw_checkpoint_describe(const char *path, tw_checkpoint_info *out);
/* The kernel path this CPU runs ("ref", "avx2", "avx512"; "amx" when asked for) and the CPU
** features detected ("avx2 fma avx512f ..."). */
TW_API const char *tw_kernels_path_name(void);
TW_API const char *tw_cpu_feature_list(void);

/* ---- benchmarks (docs/bench.md) ---- */

/* The figures of one benchmarked model, in this order. */
enum {
    TW_BENCH_TILE,        /* ms: SigLIP + projector on one tile                                  */
    TW_BENCH_IMAGE,       /* ms: tw_image_encode of a 1152x768 image (7 tiles)                   */
    TW_BENCH_PP_SHORT,    /* tokens/s: prefill of 512 tokens (--quick: 32)                       */
    TW_BENCH_PP_LONG,     /* tokens/s: prefill of 5,000 tokens (--quick: 128)                    */
    TW_BENCH_TG_SHORT,    /* tokens/s: decode after 128 cached positions (--quick: 16)           */
    TW_BENCH_TG_LONG,     /* tokens/s: decode after 4,096 cached positions (--quick: 128)        */
    TW_BENCH_TTFT,        /* ms: image encode + prefill of the ~5,200-token prompt + first token */
    TW_BENCH_N_FIGURES
};

typedef struct tw_bench_figure {
    int    done;          /* measured; else skip says why not                                  */
    char   label[64];
    char   skip[96];
    int    is_time;       /* value in ms (lower is better), else tokens/s                      */
    double value;         /* best of the reps                                                  */
    double reps[16];
    int    n_reps;
    double work;          /* FLOPs (time and prefill figures) or bytes read per token (decode) */
    double limit;         /* best possible value on this machine (ms or tokens/s)              */
    double frac;          /* of the limit (f32 FMA peak or read bandwidth)                     */
    double frac_bf16;     /* of the vdpbf16ps peak, 0 when not applicable                      */
    double bw_gbs;        /* decode: read bandwidth measured right before and after its reps   */
    double ref;           /* llama.cpp figure quoted in the issue, 0 when none                 */
    char   ref_text[48];
    double speedup;       /* over ref                                                          */
} tw_bench_figure;

typedef struct tw_bench_result {
    char     name[96], source[256], type[16], note[160];
    double   build_s;               /* building or loading the model                           */
    uint64_t weight_bytes;          /* held in memory                                          */
    double   decode_weight_bytes;   /* weights read per decoded token                          */
    uint64_t peak_rss;              /* bytes, getrusage ru_maxrss after the run                */
    int      n_image_tokens, n_prompt;
    tw_bench_figure f[TW_BENCH_N_FIGURES];
} tw_bench_result;

/* This machine's limits, measured by small loops with the benchmark's thread count. */
typedef struct tw_bench_machine {
    int         threads;            /* of the measurements and the models                      */
    int         n_cpus;             /* cores the system has                                    */
    char        cpu[128];           /* /proc/cpuinfo model name                                */
    const char *kernels;            /* kernel path: "amx", "avx512", "avx2", "ref"             */
    const char *cpu_features;
    const char *fma_isa;            /* what the FMA peak ran: "avx512", "avx2", "scalar"       */
    int         bf16_activations;   /* matrix products round activations to bf16               */
    double      read_gbs;           /* read bandwidth, GB/s                                    */
    size_t      read_buffer_bytes;
    double      fma_gflops, bf16_gflops, int8_gops;
    double      load1;              /* 1-minute load average when the run started              */
} tw_bench_machine;

typedef struct tw_bench_params {
    const char *shape;       /* random weights of these shapes: "2b", "9b" (TowerVision-2B / -9B),
                             ** "tiny" (a few small layers, for tests); ignored with checkpoint  */
    const char *checkpoint;  /* a checkpoint instead: directory, .tower.safetensors file or repo id */
    int         offline;     /* loading checkpoint: never use the network                       */
    const char *type;        /* weight type of the random model: "bf16", "f16", "f32", "q8", "q4" */
    int         n_threads;   /* 0: every core                                                  */
    int         reps;        /* repetitions of the short measurements, the best counts (0: 2, quick 1; at most 16) */
    int         n_decode;    /* tokens per decode measurement (0: 16, quick 4)                  */
    int         n_batch;     /* sequences decoding together (tw_seq_eval_batch; 0 or 1: one),
                             ** at most 64; the decode figures are then their tokens/s in all    */
    int         n_distinct;  /* 9b: distinct text layers cycled over the 42 (0: all)            */
    int         quick;       /* small sizes (CI)                                                */
    int         skip_vision, skip_ttft;
    tw_kv_type  kv_type;
    /* progress lines ("building TowerVision-2B with random weights...", "  decode at 128: ...") */
    void      (*log)(void *user_data, const char *line);
    void       *user_data;
} tw_bench_params;

TW_API tw_bench_params tw_bench_default_params(void);   /* 2b, bf16, 2 reps, 4 distinct, f16 KV */
/* Whether this build can fill random weights of type ("bf16", "f16", "f32"; "q8", "q4" with the
** quant module). */
TW_API int       tw_bench_type_ok(const char *type);
/* Starts a machine description: CPU name, load average, kernel path; matmul NULL keeps the
** engine's setting, "f32" or "bf16" sets how matrix products treat activations (TW_E_ARG else). */
TW_API tw_status tw_bench_machine_init(tw_bench_machine *mc, int n_threads, const char *matmul);
/* Measures the limits, keeping the best of each over calls (other processes can only make a
** measurement lower): call it before and after the models. */
TW_API tw_status tw_bench_machine_measure(tw_bench_machine *mc, int quick);
/* Builds (or loads) one model, measures every figure it can and frees it. The fractions are
** final only after tw_bench_finish with the final machine limits. */
TW_API tw_status tw_bench_run(const tw_bench_params *p, const tw_bench_machine *mc, tw_bench_result *out);
TW_API void      tw_bench_finish(tw_bench_result *r, const tw_bench_machine *mc, int quick);

/* ------------------------------------------------------------------------------------------ */
/* Evaluation: metrics exact to their reference implementations (src/eval, docs/eval.md)        */

/* ---- sacreBLEU 2.x: BLEU, chrF, chrF++ (src/eval/sacrebleu.c) ---- */

/* ---- the benchmarks' own rules: VQA accuracy, OCRBench, CC-OCR, multiple choice (src/eval) ---- */

#ifdef __cplusplus
}
#endif
#endif /* TOWER_H */
