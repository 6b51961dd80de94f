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
TW_API int32_t   tw_video_n_frames(const tw_video *v);
TW_API const int64_t *tw_video_frame_indices(const tw_video *v);   /* [n_frames] */
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
TW_API tw_status tw_seq_new(tw_model *m, int32_t n_ctx, tw_seq **out);

/* Element type of a sequence's KV cache. Keys and values are rounded once (to nearest even) when
** written; attention widens them to f32 as it reads. f32 reproduces the float32 reference; f16 /
** bf16 halve the cache and the bytes each decode step reads (docs/attention.md: numerics). */
typedef enum tw_kv_type { TW_KV_F32 = 0, TW_KV_F16, TW_KV_BF16 } tw_kv_type;

typedef struct tw_seq_params {
    tw_kv_type kv_type;   /* TW_KV_F32 (the default) */
} tw_seq_params;

/* tw_seq_new with options; params NULL: the defaults (== tw_seq_new). */
TW_API tw_status  tw_seq_new_ex(tw_model *m, int32_t n_ctx, const tw_seq_params *params, tw_seq **out);
TW_API tw_kv_type tw_seq_kv_type(const tw_seq *s);
TW_API const char *tw_kv_type_name(tw_kv_type t);                  /* "f32", "f16", "bf16"     */
TW_API tw_status  tw_kv_type_parse(const char *name, tw_kv_type *out);   /* the same names; TW_E_ARG */
TW_API void      tw_seq_free(tw_seq *s);
TW_API int32_t   tw_seq_pos(const tw_seq *s);        /* tokens in the cache                        */
TW_API int32_t   tw_seq_n_ctx(const tw_seq *s);
TW_API const int32_t *tw_seq_tokens(const tw_seq *s); /* the tw_seq_pos() tokens in the cache    */
/* Drops cached positions >= pos (to edit or re-run the tail of a conversation). */
TW_API tw_status tw_seq_rewind(tw_seq *s, int32_t pos);

typedef struct tw_eval_opts {
    const float *embd;     /* NULL, or [n_embd_rows, n_embd] f32 rows that replace, in order, the
                           ** positions whose id is the model's image (or video) token            */
    size_t       n_embd_rows;
    float       *logits;   /* NULL, or [n, n_vocab]: logits at every new position                 */
    float       *hidden;   /* NULL, or [n_layer + 2, n, n_embd]: scaled embeddings, every layer's
                           ** output, and the final norm's output                                 */
} tw_eval_opts;

/* Appends n tokens to the sequence and runs them through the model. The logits of the last
** position are kept and returned by tw_seq_logits(). */
TW_API tw_status   tw_seq_eval(tw_seq *s, const int32_t *ids, size_t n, const tw_eval_opts *opts);
TW_API const float *tw_seq_logits(const tw_seq *s);  /* [n_vocab], after the softcap setting   */

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

typedef struct tw_gen_result {
    int32_t *ids;          /* generated ids (malloc'ed): a stop token is not included, the token
                           ** completing a stop string is                                        */
    size_t   n_ids;
    char    *text;         /* generated text (malloc'ed), cut before a stop string             */
    size_t   text_len;
    int      stop_reason;  /* 0 max tokens, 1 stop id, 2 stop string, 3 context full, 4 callback */
    double   prefill_ms, decode_ms;
} tw_gen_result;

/* Evaluates the prompt (appended to what the sequence holds) and generates. The stop token is
** evaluated into the cache too, so a chat can continue after it. */
TW_API tw_status tw_generate(tw_seq *s, const int32_t *prompt, size_t n_prompt, const tw_eval_opts *prompt_opts,
                             const tw_gen_params *p, tw_token_fn on_token, void *user_data,
                             tw_gen_result *out);
TW_API void      tw_gen_result_free(tw_gen_result *r);

#ifdef __cplusplus
}
#endif
#endif /* TOWER_H */
