/*
** tw_internal.h — what every file of the library shares: error reporting, small memory and file
** helpers, JSON field access with messages that name the file and the field, number formats,
** and the thread pool. Nothing here knows about models.
*/
#ifndef TW_INTERNAL_H
#define TW_INTERNAL_H

#include "tower.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#define TW_UNUSED(x) ((void)(x))
#define TW_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TW_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- errors ------------------------------------------------------------------------------- */

/* Records a message for tw_last_error() and returns s, so callers write
**     return tw_err(TW_E_CONFIG, "%s: field \"%s\": expected an integer", path, key);          */
tw_status tw_err(tw_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message ("loading X: <old message>") and returns s unchanged. */
tw_status tw_err_prefix(tw_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Invariants of internal code (kernel shapes, alignment, weight types): checked in debug and
** sanitizer builds (TW_DEBUG, set by `make asan`), compiled out otherwise so the hot paths pay
** nothing. A failed check names the condition and the place, then aborts. Inputs from users and
** files are never checked with this: they get a tw_status and a message. */
void tw_assert_fail(const char *cond, const char *file, int line, const char *func) __attribute__((noreturn));
#ifdef TW_DEBUG
#define TW_ASSERT(cond) ((cond) ? (void)0 : tw_assert_fail(#cond, __FILE__, __LINE__, __func__))
#else
#define TW_ASSERT(cond) ((void)0)
#endif

#define TW_TRY(expr) do { tw_status tw__s = (expr); if (tw__s != TW_OK) return tw__s; } while (0)

/* ---- memory --------------------------------------------------------------------------------- */

void *tw_malloc(size_t n);            /* NULL on failure, with TW_E_NOMEM recorded          */
void *tw_calloc(size_t n, size_t sz); /* overflow-checked                                   */
void *tw_realloc(void *p, size_t n);
void *tw_aligned_alloc(size_t n);     /* 64-byte aligned, zeroed; free with tw_aligned_free  */
void  tw_aligned_free(void *p);
char *tw_strdup(const char *s);
char *tw_strndup(const char *s, size_t n);
char *tw_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool  tw_mul_overflow(size_t a, size_t b, size_t *out);

/* Arena: bump allocation for buffers whose lifetime is one call (no malloc in hot loops). */
typedef struct tw_arena {
    uint8_t *base;
    size_t   used, cap;
} tw_arena;
tw_status tw_arena_init(tw_arena *a, size_t cap);
void     *tw_arena_push(tw_arena *a, size_t n);   /* 64-byte aligned; NULL when full */
void      tw_arena_reset(tw_arena *a);
void      tw_arena_free(tw_arena *a);

/* Growable byte buffer for building strings. */
typedef struct tw_buf {
    char  *data;
    size_t len, cap;
} tw_buf;
tw_status tw_buf_append(tw_buf *b, const void *p, size_t n);
tw_status tw_buf_appendf(tw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
tw_status tw_buf_putc(tw_buf *b, char c);
char     *tw_buf_detach(tw_buf *b, size_t *len);  /* NUL-terminated; resets b */
void      tw_buf_free(tw_buf *b);

/* ---- files ---------------------------------------------------------------------------------- */

char     *tw_path_join(const char *dir, const char *name);   /* malloc'ed */
bool      tw_file_exists(const char *path);
bool      tw_dir_exists(const char *path);
/* Reads a whole file (NUL-terminated for convenience). Errors name the path. */
tw_status tw_read_file(const char *path, char **data, size_t *len);
/* Writes via a temporary file in the same directory + rename, so a reader never sees half a file. */
tw_status tw_write_file_atomic(const char *path, const void *data, size_t len);

/* ---- JSON (jansson) ------------------------------------------------------------------------- */

/* Loads a JSON file; syntax errors give path:line:column. */
tw_status tw_json_load(const char *path, json_t **out);
/* The same for JSON text in memory; name (the file it came from) is used in messages only. */
tw_status tw_json_loadb(const char *data, size_t len, const char *name, json_t **out);
/* Field access: "file" is used in messages only. A missing optional field leaves *out unchanged
** and returns TW_OK; a present field of the wrong type is an error. "key" may be a dotted path
** ("text_config.hidden_size") into nested objects. */
tw_status tw_json_int(const json_t *o, const char *file, const char *key, bool required, int64_t *out);
tw_status tw_json_num(const json_t *o, const char *file, const char *key, bool required, double *out);
tw_status tw_json_bool(const json_t *o, const char *file, const char *key, bool required, bool *out);
tw_status tw_json_str(const json_t *o, const char *file, const char *key, bool required, const char **out);
const json_t *tw_json_path(const json_t *o, const char *key);   /* dotted lookup, NULL if absent */

/* ---- file sources ---------------------------------------------------------------------------- */

/* Where a checkpoint's small files (config.json, tokenizer.json, templates, ...) come from: a
** directory, or the table of files embedded in a packed single-file checkpoint (`tower quantize`
** output, src/cpu/quant.c), read straight from its mapping. Loaders ask for files by name and never
** build paths, so one code path serves both and a packed model loads without writing anything.
** Messages name a file as "dir/config.json" or "model.tower.safetensors:config.json". */
typedef struct tw_src_file {
    const char *name;        /* plain file name: "config.json"          */
    const char *data;        /* its bytes (not NUL-terminated)          */
    size_t      len;
} tw_src_file;

typedef struct tw_src {
    const char  *root;       /* the directory, or the packed file's path (borrowed)        */
    tw_src_file *files;      /* packed: the embedded files (the array is owned, the bytes
                             ** belong to the mapping, which must outlive the source);
                             ** NULL for a directory                                       */
    size_t       n_files;
    bool         packed;
} tw_src;

tw_src    tw_src_dir(const char *dir);                  /* a directory source (nothing to free) */
void      tw_src_free(tw_src *s);                       /* frees a packed source's table        */
bool      tw_src_exists(const tw_src *s, const char *name);
/* What messages call the file: "dir/name" or "root:name" (malloc'ed). */
char     *tw_src_name(const tw_src *s, const char *name);
/* The whole file, malloc'ed and NUL-terminated. Absent: TW_E_NOT_FOUND naming it. */
tw_status tw_src_read(const tw_src *s, const char *name, char **data, size_t *len);
/* Parses a JSON file of the source (as tw_json_load does, with its messages). */
tw_status tw_src_json(const tw_src *s, const char *name, json_t **out);
/* A source's tokenizer.json, with its tokenizer_config.json when present (tokenizer.c). */
tw_status tw_tokenizer_load_src(const tw_src *s, tw_tokenizer **out);

/* ---- number formats ------------------------------------------------------------------------- */

static inline float tw_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}
static inline uint16_t tw_f32_to_bf16(float f) {   /* round to nearest even, NaN kept quiet */
    union { float f; uint32_t u; } v = { f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1)) >> 16);
}
float    tw_f16_to_f32(uint16_t h);
uint16_t tw_f32_to_f16(float f);

/* ---- time ----------------------------------------------------------------------------------- */

double tw_time_ms(void);   /* monotonic */

/* ---- thread pool ---------------------------------------------------------------------------- */

/* A persistent pool of worker threads that sleep on a condition variable when idle (no spinning
** that would steal a core from another process). tw_pool_run(p, n, fn, ctx) calls fn(ctx, i, tid)
** for i in [0, n) spread over the workers and the calling thread, and returns when all are done.
** Calls from several threads are serialised. */
typedef struct tw_pool tw_pool;
typedef void (*tw_task_fn)(void *ctx, int64_t i, int tid);
tw_pool *tw_pool_new(int n_threads);          /* n_threads <= 0: every online core */
void     tw_pool_free(tw_pool *p);
int      tw_pool_size(const tw_pool *p);      /* threads including the caller      */
void     tw_pool_run(tw_pool *p, int64_t n, tw_task_fn fn, void *ctx);
/* Claims hold off the jobs of background threads (pool.c: sharing); claims nest and count. */
void     tw_pool_claim(tw_pool *p);
void     tw_pool_release(tw_pool *p);
void     tw_pool_set_background(bool on);   /* for the calling thread */
int      tw_cpu_count(void);

#endif /* TW_INTERNAL_H */
