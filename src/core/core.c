/*
** core.c — errors, memory, buffers, files, JSON field access, number formats, time.
*/
#include "tw_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- errors ------------------------------------------------------------------------------- */

static _Thread_local char tw_errbuf[2048];

/* TW_ASSERT's failure: a bug in the library, not an input error; defined in every build so that
** objects built with and without TW_DEBUG link together. */
void tw_assert_fail(const char *cond, const char *file, int line, const char *func) {
    fprintf(stderr, "%s:%d: %s: internal check failed: %s\n", file, line, func, cond);
    fflush(stderr);
    abort();
}

tw_status tw_err(tw_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tw_errbuf, sizeof tw_errbuf, fmt, ap);
    va_end(ap);
    return s;
}

tw_status tw_err_prefix(tw_status s, const char *fmt, ...) {
    char old[sizeof tw_errbuf], pre[512];
    memcpy(old, tw_errbuf, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    /* "pre: old", cut at the buffer's end (the file and field come first) */
    size_t np = strlen(pre), no = strlen(old), cap = sizeof tw_errbuf - 1;
    memcpy(tw_errbuf, pre, np);
    size_t n = np;
    if (n + 2 <= cap) memcpy(tw_errbuf + n, ": ", 2), n += 2;
    if (no > cap - n) no = cap - n;
    memcpy(tw_errbuf + n, old, no);
    tw_errbuf[n + no] = 0;
    return s;
}

const char *tw_last_error(void) { return tw_errbuf[0] ? tw_errbuf : "no error"; }

const char *tw_status_name(tw_status s) {
    static const char *names[] = {
        "TW_OK", "TW_E_ARG", "TW_E_IO", "TW_E_FORMAT", "TW_E_CONFIG", "TW_E_WEIGHTS", "TW_E_NOMEM",
        "TW_E_TEMPLATE", "TW_E_CONTEXT", "TW_E_NETWORK", "TW_E_AUTH", "TW_E_NOT_FOUND",
        "TW_E_UNSUPPORTED", "TW_E_CANCELLED", "TW_E_INTERNAL",
    };
    if ((unsigned)s < sizeof names / sizeof names[0]) return names[s];
    return "TW_E_UNKNOWN";
}

void tw_free(void *p) { free(p); }

/* ---- memory --------------------------------------------------------------------------------- */

bool tw_mul_overflow(size_t a, size_t b, size_t *out) { return __builtin_mul_overflow(a, b, out); }

void *tw_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) tw_err(TW_E_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *tw_calloc(size_t n, size_t sz) {
    size_t tot;
    if (tw_mul_overflow(n, sz, &tot)) {
        tw_err(TW_E_NOMEM, "allocation size overflow (%zu x %zu)", n, sz);
        return NULL;
    }
    void *p = calloc(tot ? n : 1, tot ? sz : 1);
    if (!p) tw_err(TW_E_NOMEM, "out of memory allocating %zu bytes", tot);
    return p;
}

void *tw_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) tw_err(TW_E_NOMEM, "out of memory allocating %zu bytes", n);
    return q;
}

void *tw_aligned_alloc(size_t n) {
    void *p = NULL;
    size_t sz = (n + 63) & ~(size_t)63;
    if (sz < n || posix_memalign(&p, 64, sz ? sz : 64) != 0) {
        tw_err(TW_E_NOMEM, "out of memory allocating %zu bytes", n);
        return NULL;
    }
    memset(p, 0, sz);
    return p;
}

void tw_aligned_free(void *p) { free(p); }

char *tw_strndup(const char *s, size_t n) {
    char *p = tw_malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *tw_strdup(const char *s) { return s ? tw_strndup(s, strlen(s)) : NULL; }

char *tw_asprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *p = NULL;
    int r = vasprintf(&p, fmt, ap);
    va_end(ap);
    if (r < 0) {
        tw_err(TW_E_NOMEM, "out of memory formatting a string");
        return NULL;
    }
    return p;
}

tw_status tw_arena_init(tw_arena *a, size_t cap) {
    a->base = tw_aligned_alloc(cap);
    a->used = 0;
    a->cap = a->base ? cap : 0;
    return a->base ? TW_OK : TW_E_NOMEM;
}

void *tw_arena_push(tw_arena *a, size_t n) {
    size_t start = (a->used + 63) & ~(size_t)63;
    if (start > a->cap || n > a->cap - start) return NULL;
    a->used = start + n;
    return a->base + start;
}

void tw_arena_reset(tw_arena *a) { a->used = 0; }

void tw_arena_free(tw_arena *a) {
    tw_aligned_free(a->base);
    memset(a, 0, sizeof *a);
}

tw_status tw_buf_append(tw_buf *b, const void *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = tw_realloc(b->data, cap);
        if (!d) return TW_E_NOMEM;
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return TW_OK;
}

tw_status tw_buf_putc(tw_buf *b, char c) { return tw_buf_append(b, &c, 1); }

tw_status tw_buf_appendf(tw_buf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return tw_err(TW_E_INTERNAL, "formatting failed");
    if ((size_t)n < sizeof small) return tw_buf_append(b, small, (size_t)n);
    char *big = tw_malloc((size_t)n + 1);
    if (!big) return TW_E_NOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    tw_status s = tw_buf_append(b, big, (size_t)n);
    free(big);
    return s;
}

char *tw_buf_detach(tw_buf *b, size_t *len) {
    if (!b->data && tw_buf_append(b, "", 0) != TW_OK) return NULL;
    char *d = b->data;
    if (len) *len = b->len;
    memset(b, 0, sizeof *b);
    return d;
}

void tw_buf_free(tw_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- files ---------------------------------------------------------------------------------- */

char *tw_path_join(const char *dir, const char *name) {
    size_t n = strlen(dir);
    if (n && dir[n - 1] == '/') return tw_asprintf("%s%s", dir, name);
    return tw_asprintf("%s/%s", dir, name);
}

bool tw_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool tw_dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

tw_status tw_read_file(const char *path, char **data, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tw_err(errno == ENOENT ? TW_E_NOT_FOUND : TW_E_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return tw_err(TW_E_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    char *buf = tw_malloc(n + 1);
    if (!buf) {
        close(fd);
        return TW_E_NOMEM;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(buf);
            close(fd);
            return tw_err(TW_E_IO, "%s: read failed after %zu of %zu bytes", path, got, n);
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *data = buf;
    if (len) *len = n;
    return TW_OK;
}

tw_status tw_write_file_atomic(const char *path, const void *data, size_t len) {
    char *tmp = tw_asprintf("%s.tmp.%ld", path, (long)getpid());
    if (!tmp) return TW_E_NOMEM;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        tw_status s = tw_err(TW_E_IO, "%s: cannot create: %s", path, strerror(errno));
        free(tmp);
        return s;
    }
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            tw_status s = tw_err(TW_E_IO, "%s: write failed: %s", path, strerror(errno));
            close(fd);
            unlink(tmp);
            free(tmp);
            return s;
        }
        p += w;
        left -= (size_t)w;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        tw_status s = tw_err(TW_E_IO, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return s;
    }
    free(tmp);
    return TW_OK;
}

/* ---- JSON ------------------------------------------------------------------------------------ */

tw_status tw_json_load(const char *path, json_t **out) {
    if (!tw_file_exists(path)) return tw_err(TW_E_NOT_FOUND, "%s: file not found", path);
    json_error_t e;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL | JSON_DECODE_ANY, &e);
    /* Hugging Face configs hold integers beyond 64 bits (tokenizer_config.json's model_max_length
    ** is 1e30): jansson refuses them as integers, so such a file is read with every integer as a
    ** double (tw_json_int accepts whole doubles). */
    if (!j && json_error_code(&e) == json_error_numeric_overflow)
        j = json_load_file(path, JSON_ALLOW_NUL | JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &e);
    if (!j) return tw_err(TW_E_FORMAT, "%s:%d:%d: invalid JSON: %s", path, e.line, e.column, e.text);
    *out = j;
    return TW_OK;
}

tw_status tw_json_loadb(const char *data, size_t len, const char *name, json_t **out) {
    json_error_t e;
    json_t *j = json_loadb(data, len, JSON_ALLOW_NUL | JSON_DECODE_ANY, &e);
    if (!j && json_error_code(&e) == json_error_numeric_overflow)   /* as tw_json_load */
        j = json_loadb(data, len, JSON_ALLOW_NUL | JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &e);
    if (!j) return tw_err(TW_E_FORMAT, "%s:%d:%d: invalid JSON: %s", name, e.line, e.column, e.text);
    *out = j;
    return TW_OK;
}

const json_t *tw_json_path(const json_t *o, const char *key) {
    char part[128];
    const char *p = key;
    while (o && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof part || !json_is_object(o)) return NULL;
        memcpy(part, p, n);
        part[n] = 0;
        o = json_object_get(o, part);
        p += n + (dot ? 1 : 0);
    }
    return o;
}

static tw_status json_missing(const char *file, const char *key, const char *want) {
    return tw_err(TW_E_CONFIG, "%s: field \"%s\" is missing (expected %s)", file, key, want);
}

static tw_status json_wrong(const char *file, const char *key, const char *want) {
    return tw_err(TW_E_CONFIG, "%s: field \"%s\" has the wrong type (expected %s)", file, key, want);
}

tw_status tw_json_int(const json_t *o, const char *file, const char *key, bool required, int64_t *out) {
    const json_t *v = tw_json_path(o, key);
    if (!v || json_is_null(v)) return required ? json_missing(file, key, "an integer") : TW_OK;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return TW_OK;
    }
    if (json_is_real(v)) {   /* 4096.0 is an integer too; 0.5 is not */
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) < 9e15) {
            *out = (int64_t)d;
            return TW_OK;
        }
    }
    return json_wrong(file, key, "an integer");
}

tw_status tw_json_num(const json_t *o, const char *file, const char *key, bool required, double *out) {
    const json_t *v = tw_json_path(o, key);
    if (!v || json_is_null(v)) return required ? json_missing(file, key, "a number") : TW_OK;
    if (!json_is_number(v)) return json_wrong(file, key, "a number");
    *out = json_number_value(v);
    return TW_OK;
}

tw_status tw_json_bool(const json_t *o, const char *file, const char *key, bool required, bool *out) {
    const json_t *v = tw_json_path(o, key);
    if (!v || json_is_null(v)) return required ? json_missing(file, key, "true or false") : TW_OK;
    if (!json_is_boolean(v)) return json_wrong(file, key, "true or false");
    *out = json_is_true(v);
    return TW_OK;
}

tw_status tw_json_str(const json_t *o, const char *file, const char *key, bool required, const char **out) {
    const json_t *v = tw_json_path(o, key);
    if (!v || json_is_null(v)) return required ? json_missing(file, key, "a string") : TW_OK;
    if (!json_is_string(v)) return json_wrong(file, key, "a string");
    *out = json_string_value(v);
    return TW_OK;
}

/* ---- file sources ----------------------------------------------------------------------------- */

/* A directory source reads through the same calls (and so gives the same messages) as the
** loaders did before sources existed: tw_read_file, tw_json_load. */

tw_src tw_src_dir(const char *dir) { return (tw_src){ .root = dir }; }

void tw_src_free(tw_src *s) {
    if (!s) return;
    free(s->files);
    s->files = NULL;
    s->n_files = 0;
}

static const tw_src_file *src_find(const tw_src *s, const char *name) {
    for (size_t i = 0; i < s->n_files; i++)
        if (strcmp(s->files[i].name, name) == 0) return &s->files[i];
    return NULL;
}

char *tw_src_name(const tw_src *s, const char *name) {
    return s->packed ? tw_asprintf("%s:%s", s->root, name) : tw_path_join(s->root, name);
}

bool tw_src_exists(const tw_src *s, const char *name) {
    if (s->packed) return src_find(s, name) != NULL;
    char *p = tw_path_join(s->root, name);
    bool yes = p && tw_file_exists(p);
    free(p);
    return yes;
}

tw_status tw_src_read(const tw_src *s, const char *name, char **data, size_t *len) {
    *data = NULL;
    if (!s->packed) {
        char *p = tw_path_join(s->root, name);
        tw_status st = p ? tw_read_file(p, data, len) : TW_E_NOMEM;
        free(p);
        return st;
    }
    const tw_src_file *f = src_find(s, name);
    if (!f) return tw_err(TW_E_NOT_FOUND, "%s: the packed checkpoint has no embedded %s", s->root, name);
    if (!(*data = tw_strndup(f->data, f->len))) return TW_E_NOMEM;
    if (len) *len = f->len;
    return TW_OK;
}

tw_status tw_src_json(const tw_src *s, const char *name, json_t **out) {
    *out = NULL;
    if (!s->packed) {
        char *p = tw_path_join(s->root, name);
        tw_status st = p ? tw_json_load(p, out) : TW_E_NOMEM;
        free(p);
        return st;
    }
    const tw_src_file *f = src_find(s, name);
    if (!f) return tw_err(TW_E_NOT_FOUND, "%s: the packed checkpoint has no embedded %s", s->root, name);
    char *what = tw_src_name(s, name);
    tw_status st = what ? tw_json_loadb(f->data, f->len, what, out) : TW_E_NOMEM;
    free(what);
    return st;
}

/* ---- number formats -------------------------------------------------------------------------- */

float tw_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else {   /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            u = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    union { uint32_t u; float f; } v = { u };
    return v.f;
}

uint16_t tw_f32_to_f16(float f) {
    union { float f; uint32_t u; } v = { f };
    uint32_t sign = (v.u >> 16) & 0x8000, x = v.u & 0x7fffffffu;
    if (x > 0x7f800000u) return (uint16_t)(sign | 0x7e00);             /* NaN */
    if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);            /* overflow -> inf */
    if (x < 0x38800000u) {                                             /* subnormal or zero */
        if (x < 0x33000000u) return (uint16_t)sign;
        uint32_t e = x >> 23, m = (x & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;                                      /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = x - 0x38000000u;                                      /* rebias 127 -> 15 */
    uint32_t out = r >> 13, rem = r & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (out & 1))) out++;
    return (uint16_t)(sign | out);
}

/* ---- time ------------------------------------------------------------------------------------ */

double tw_time_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
