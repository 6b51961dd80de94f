/*
** safetensors.c — reading and writing the safetensors format.
**
** A file is: u64 little-endian N, N bytes of JSON header, then the data area. The header maps
** tensor names to {"dtype", "shape", "data_offsets": [begin, end]} with offsets relative to the
** start of the data area; "__metadata__" holds free-form strings and is ignored here.
**
** Files are mapped read-only (MAP_PRIVATE) and tensors point straight into the mapping, so a 9B
** checkpoint costs page cache, not heap. Because every later stage trusts tw_tensor blindly, the
** header is validated hard when opened: sizes, offsets, overlap, dtype x shape, duplicates. A
** sharded checkpoint (model.safetensors.index.json) opens each distinct shard once and every
** tensor goes into one hash table so lookups by name are O(1).
*/
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A header larger than this is surely not a real checkpoint (the 9B's is ~100 KB). */
#define ST_MAX_HEADER (100u * 1024u * 1024u)

typedef struct st_file {
    char    *path;     /* as opened; tensors' ->file points here */
    void    *map;      /* [size] read-only mapping               */
    size_t   size;
} st_file;

struct tw_st_set {
    st_file   *files;     /* [n_files]                                     */
    size_t     n_files;
    tw_tensor *tensors;   /* [n]; names are malloc'ed and owned here       */
    size_t     n, cap;
    uint32_t  *slots;     /* [n_slots] open addressing: tensor index + 1, 0 = empty */
    size_t     n_slots;   /* power of two, >= 2n                           */
};

/* ---- hashing ------------------------------------------------------------------------------- */

static uint64_t st_hash(const char *s) {   /* FNV-1a */
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Builds the name index once all shards are in; a duplicate name across shards is an error. */
static tw_status st_build_index(tw_st_set *s) {
    size_t n_slots = 16;
    while (n_slots < 2 * s->n) n_slots *= 2;
    free(s->slots);
    s->slots = tw_calloc(n_slots, sizeof *s->slots);
    if (!s->slots) return TW_E_NOMEM;
    s->n_slots = n_slots;
    for (size_t i = 0; i < s->n; i++) {
        size_t k = st_hash(s->tensors[i].name) & (n_slots - 1);
        while (s->slots[k]) {
            const tw_tensor *o = &s->tensors[s->slots[k] - 1];
            if (strcmp(o->name, s->tensors[i].name) == 0)
                return tw_err(TW_E_FORMAT, "%s: tensor \"%s\" is also in %s", s->tensors[i].file,
                              s->tensors[i].name, o->file);
            k = (k + 1) & (n_slots - 1);
        }
        s->slots[k] = (uint32_t)(i + 1);
    }
    return TW_OK;
}

const tw_tensor *tw_st_get(const tw_st_set *s, const char *name) {
    if (!s || !s->slots || !name) return NULL;
    size_t k = st_hash(name) & (s->n_slots - 1);
    while (s->slots[k]) {
        const tw_tensor *t = &s->tensors[s->slots[k] - 1];
        if (strcmp(t->name, name) == 0) return t;
        k = (k + 1) & (s->n_slots - 1);
    }
    return NULL;
}

size_t tw_st_count(const tw_st_set *s) { return s ? s->n : 0; }

const tw_tensor *tw_st_at(const tw_st_set *s, size_t i) { return s && i < s->n ? &s->tensors[i] : NULL; }

uint64_t tw_st_bytes(const tw_st_set *s) {
    uint64_t b = 0;
    for (size_t i = 0; s && i < s->n_files; i++) b += s->files[i].size;
    return b;
}

void tw_st_close(tw_st_set *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) free((char *)s->tensors[i].name);
    for (size_t i = 0; i < s->n_files; i++) {
        if (s->files[i].map) munmap(s->files[i].map, s->files[i].size);
        free(s->files[i].path);
    }
    free(s->files);
    free(s->tensors);
    free(s->slots);
    free(s);
}

/* ---- parsing one file ---------------------------------------------------------------------- */

/* Byte range of one tensor, for the overlap check. */
typedef struct st_range { uint64_t begin, end; size_t idx; } st_range;

static int st_range_cmp(const void *a, const void *b) {
    const st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static tw_status st_push(tw_st_set *s, tw_tensor *t) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        tw_tensor *p = tw_realloc(s->tensors, cap * sizeof *p);
        if (!p) return TW_E_NOMEM;
        s->tensors = p;
        s->cap = cap;
    }
    s->tensors[s->n++] = *t;
    return TW_OK;
}

/* Validates one header entry and appends the tensor. f: the file (path, mapping). */
static tw_status st_parse_tensor(tw_st_set *s, const st_file *f, const char *name, const json_t *v,
                                 const uint8_t *data, uint64_t data_len) {
    const char *path = f->path;
    if (!json_is_object(v))
        return tw_err(TW_E_FORMAT, "%s: tensor \"%s\": header entry is not an object", path, name);
    const json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
                 *jo = json_object_get(v, "data_offsets");
    tw_tensor t = {0};
    if (!json_is_string(jd))
        return tw_err(TW_E_FORMAT, "%s: tensor \"%s\": \"dtype\" missing or not a string", path, name);
    if (!tw_dtype_parse(json_string_value(jd), &t.type))
        return tw_err(TW_E_FORMAT, "%s: tensor \"%s\": unknown dtype \"%s\"", path, name, json_string_value(jd));
    if (!json_is_array(js))
        return tw_err(TW_E_FORMAT, "%s: tensor \"%s\": \"shape\" missing or not an array", path, name);
    if (json_array_size(js) > TW_MAX_DIMS)
        return tw_err(TW_E_FORMAT, "%s: tensor \"%s\": %zu dimensions (at most %d supported)", path, name,
                      json_array_size(js), TW_MAX_DIMS);
    t.ndim = (int)json_array_size(js);
    uint64_t nelem = 1;
    bool overflow = false;
    for (int i = 0; i < t.ndim; i++) {
        const json_t *d = json_array_get(js, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return tw_err(TW_E_FORMAT, "%s: tensor \"%s\": shape[%d] is not a non-negative integer", path, name, i);
        t.shape[i] = json_integer_value(d);
        uint64_t dim = (uint64_t)t.shape[i];
        if (dim && nelem > UINT64_MAX / dim) overflow = true;
        else nelem *= dim;
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return tw_err(TW_E_FORMAT, "%s: tensor \"%s\": \"data_offsets\" is not [begin, end] integers", path, name);
    json_int_t b = json_integer_value(json_array_get(jo, 0)), e = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || e < b)
        return tw_err(TW_E_FORMAT, "%s: tensor \"%s\": data_offsets [%lld, %lld] are not 0 <= begin <= end", path,
                      name, (long long)b, (long long)e);
    size_t esz = tw_dtype_size(t.type);
    if (overflow || nelem > UINT64_MAX / esz)
        return tw_err(TW_E_FORMAT, "%s: tensor \"%s\": shape is too large (byte size overflows)", path, name);
    uint64_t want = nelem * esz;
    if ((uint64_t)(e - b) != want)
        return tw_err(TW_E_FORMAT, "%s: tensor \"%s\": data_offsets [%lld, %lld] hold %llu bytes, dtype %s x shape "
                      "needs %llu", path, name, (long long)b, (long long)e, (unsigned long long)(e - b),
                      tw_dtype_name(t.type), (unsigned long long)want);
    if ((uint64_t)e > data_len)
        return tw_err(TW_E_FORMAT, "%s: tensor \"%s\": data_offsets end %lld is past the data area (%llu bytes; "
                      "file truncated?)", path, name, (long long)e, (unsigned long long)data_len);
    t.data = data + b;
    t.nbytes = (size_t)want;
    t.file = path;
    t.name = tw_strdup(name);
    if (!t.name) return TW_E_NOMEM;
    tw_status st = st_push(s, &t);
    if (st) free((char *)t.name);
    return st;
}

/* Maps path and appends its tensors to s. */
static tw_status st_add_file(tw_st_set *s, const char *path) {
    st_file *files = tw_realloc(s->files, (s->n_files + 1) * sizeof *files);
    if (!files) return TW_E_NOMEM;
    s->files = files;
    st_file *f = &s->files[s->n_files];
    memset(f, 0, sizeof *f);
    f->path = tw_strdup(path);
    if (!f->path) return TW_E_NOMEM;
    s->n_files++;   /* from here tw_st_close releases f */

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tw_err(errno == ENOENT ? TW_E_NOT_FOUND : TW_E_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return tw_err(TW_E_IO, "%s: %s", path, strerror(e));
    }
    if (sb.st_size < 8) {
        close(fd);
        return tw_err(TW_E_FORMAT, "%s: %lld bytes, too short for a safetensors file (truncated?)", path,
                      (long long)sb.st_size);
    }
    f->size = (size_t)sb.st_size;
    void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);   /* the mapping keeps the file alive */
    if (map == MAP_FAILED) return tw_err(TW_E_IO, "%s: mmap: %s", path, strerror(e));
    f->map = map;

    const uint8_t *p = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > f->size - 8)
        return tw_err(TW_E_FORMAT, "%s: header length %llu is larger than the file (%zu bytes; truncated or not "
                      "a safetensors file)", path, (unsigned long long)hlen, f->size);
    if (hlen > ST_MAX_HEADER)
        return tw_err(TW_E_FORMAT, "%s: header length %llu is implausibly large", path, (unsigned long long)hlen);

    json_error_t je;
    json_t *h = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!h) return tw_err(TW_E_FORMAT, "%s: header JSON: %s (column %d)", path, je.text, je.column);
    tw_status st = TW_OK;
    if (!json_is_object(h)) {
        json_decref(h);
        return tw_err(TW_E_FORMAT, "%s: header is not a JSON object", path);
    }
    const uint8_t *data = p + 8 + hlen;
    uint64_t data_len = f->size - 8 - hlen;
    size_t first = s->n;
    const char *name;
    json_t *v;
    json_object_foreach(h, name, v) {
        if (strcmp(name, "__metadata__") == 0) continue;
        st = st_parse_tensor(s, f, name, v, data, data_len);
        if (st) break;
    }
    json_decref(h);
    if (st) return st;

    /* Overlap: sort this file's ranges by begin; each must start at or after the previous end.
    ** Empty tensors occupy no bytes and may sit anywhere. */
    size_t n = s->n - first, m = 0;
    if (n == 0) return TW_OK;
    st_range *r = tw_malloc(n * sizeof *r);
    if (!r) return TW_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        const tw_tensor *t = &s->tensors[first + i];
        if (t->nbytes == 0) continue;
        uint64_t b = (uint64_t)((const uint8_t *)t->data - data);
        r[m++] = (st_range){ b, b + t->nbytes, first + i };
    }
    qsort(r, m, sizeof *r, st_range_cmp);
    for (size_t i = 1; i < m; i++)
        if (r[i].begin < r[i - 1].end) {
            st = tw_err(TW_E_FORMAT, "%s: tensor \"%s\" (bytes %llu..%llu) overlaps tensor \"%s\" (bytes %llu..%llu)",
                        path, s->tensors[r[i].idx].name, (unsigned long long)r[i].begin,
                        (unsigned long long)r[i].end, s->tensors[r[i - 1].idx].name,
                        (unsigned long long)r[i - 1].begin, (unsigned long long)r[i - 1].end);
            break;
        }
    free(r);
    return st;
}

tw_status tw_st_open_file(const char *path, tw_st_set **out) {
    *out = NULL;
    tw_st_set *s = tw_calloc(1, sizeof *s);
    if (!s) return TW_E_NOMEM;
    tw_status st = st_add_file(s, path);
    if (!st) st = st_build_index(s);
    if (st) {
        tw_st_close(s);
        return st;
    }
    *out = s;
    return TW_OK;
}

/* Sharded: the index's "weight_map" names, for every tensor, the shard that holds it. */
static tw_status st_open_index(tw_st_set *s, const char *dir, const char *index_path) {
    json_t *idx = NULL;
    tw_status st = tw_json_load(index_path, &idx);
    if (st) return tw_err_prefix(st == TW_E_NOT_FOUND ? TW_E_NOT_FOUND : TW_E_FORMAT, "weights index");
    const json_t *wm = json_object_get(idx, "weight_map");
    if (!json_is_object(idx) || !json_is_object(wm)) {
        json_decref(idx);
        return tw_err(TW_E_FORMAT, "%s: \"weight_map\" missing or not an object", index_path);
    }
    /* Open each distinct shard once, in order of first mention (deterministic). */
    json_t *opened = json_object();
    if (!opened) {
        json_decref(idx);
        return tw_err(TW_E_NOMEM, "out of memory");
    }
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)wm, name, v) {
        if (!json_is_string(v) || !*json_string_value(v)) {
            st = tw_err(TW_E_FORMAT, "%s: weight_map[\"%s\"] is not a file name", index_path, name);
            break;
        }
        const char *shard = json_string_value(v);
        if (strchr(shard, '/') || strcmp(shard, "..") == 0) {
            st = tw_err(TW_E_FORMAT, "%s: weight_map[\"%s\"] = \"%s\": shard must be a plain file name", index_path,
                        name, shard);
            break;
        }
        if (json_object_get(opened, shard)) continue;
        char *p = tw_path_join(dir, shard);
        if (!p) { st = TW_E_NOMEM; break; }
        st = st_add_file(s, p);
        if (st == TW_E_NOT_FOUND)
            st = tw_err(TW_E_NOT_FOUND, "%s: shard \"%s\" named by %s is missing", p, shard, index_path);
        free(p);
        if (st) break;
        json_object_set_new(opened, shard, json_true());
    }
    json_decref(opened);
    if (!st) st = st_build_index(s);
    if (!st)
        json_object_foreach((json_t *)wm, name, v) {
            const tw_tensor *t = tw_st_get(s, name);
            const char *shard = json_string_value(v);
            size_t sl = strlen(shard), fl = t ? strlen(t->file) : 0;
            if (!t) {
                st = tw_err(TW_E_FORMAT, "%s: tensor \"%s\" is listed in weight_map but missing from shard %s",
                            index_path, name, shard);
                break;
            }
            if (fl < sl || strcmp(t->file + fl - sl, shard) != 0) {
                st = tw_err(TW_E_FORMAT, "%s: tensor \"%s\" is listed in shard %s but found in %s", index_path, name,
                            shard, t->file);
                break;
            }
        }
    json_decref(idx);
    return st;
}

tw_status tw_st_open_dir(const char *dir, tw_st_set **out) {
    *out = NULL;
    char *index = tw_path_join(dir, "model.safetensors.index.json");
    char *single = tw_path_join(dir, "model.safetensors");
    tw_st_set *s = tw_calloc(1, sizeof *s);
    tw_status st = TW_OK;
    if (!index || !single || !s) st = TW_E_NOMEM;
    else if (tw_file_exists(index)) st = st_open_index(s, dir, index);
    else if (tw_file_exists(single)) {
        st = st_add_file(s, single);
        if (!st) st = st_build_index(s);
    } else
        st = tw_err(TW_E_NOT_FOUND, "%s: no model.safetensors or model.safetensors.index.json", dir);
    free(index);
    free(single);
    if (st) {
        tw_st_close(s);
        return st;
    }
    *out = s;
    return TW_OK;
}

/* ---- writer -------------------------------------------------------------------------------- */

typedef struct st_wentry {
    char    *name;
    tw_dtype type;
    int      ndim;
    int64_t  shape[TW_MAX_DIMS];
    void    *data;     /* [nbytes] copy */
    size_t   nbytes;
} st_wentry;

struct tw_st_writer {
    st_wentry *e;     /* [n] */
    size_t     n, cap;
};

tw_st_writer *tw_st_writer_new(void) { return tw_calloc(1, sizeof(tw_st_writer)); }

void tw_st_writer_free(tw_st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->e[i].name);
        free(w->e[i].data);
    }
    free(w->e);
    free(w);
}

tw_status tw_st_writer_add(tw_st_writer *w, const char *name, tw_dtype type, int ndim, const int64_t *shape,
                           const void *data) {
    if (!w || !name || !*name || (unsigned)type >= TW_DT_COUNT || ndim < 0 || ndim > TW_MAX_DIMS ||
        strcmp(name, "__metadata__") == 0)
        return tw_err(TW_E_ARG, "safetensors writer: invalid tensor \"%s\"", name ? name : "(null)");
    size_t nbytes = tw_dtype_size(type);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || tw_mul_overflow(nbytes, (size_t)shape[i], &nbytes))
            return tw_err(TW_E_ARG, "safetensors writer: tensor \"%s\": bad shape", name);
    }
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0)
            return tw_err(TW_E_ARG, "safetensors writer: tensor \"%s\" added twice", name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 32;
        st_wentry *p = tw_realloc(w->e, cap * sizeof *p);
        if (!p) return TW_E_NOMEM;
        w->e = p;
        w->cap = cap;
    }
    st_wentry e = { .type = type, .ndim = ndim, .nbytes = nbytes };
    if (ndim) memcpy(e.shape, shape, (size_t)ndim * sizeof *shape);
    e.name = tw_strdup(name);
    e.data = tw_malloc(nbytes ? nbytes : 1);
    if (!e.name || !e.data) {
        free(e.name);
        free(e.data);
        return TW_E_NOMEM;
    }
    if (nbytes) memcpy(e.data, data, nbytes);
    w->e[w->n++] = e;
    return TW_OK;
}

static int st_wentry_cmp(const void *a, const void *b) {
    return strcmp(((const st_wentry *)a)->name, ((const st_wentry *)b)->name);
}

/* Data order: wider element types first, then by name. With the 8-aligned data start this puts
** every tensor at a multiple of its element size (what the Python library does too), so readers
** may load F32 values straight from the mapping. */
static int st_wentry_data_cmp(const void *a, const void *b) {
    const st_wentry *x = *(const st_wentry *const *)a, *y = *(const st_wentry *const *)b;
    size_t sx = tw_dtype_size(x->type), sy = tw_dtype_size(y->type);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

static tw_status st_write_all(int fd, const char *path, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        ssize_t k = write(fd, b, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return tw_err(TW_E_IO, "%s: write: %s", path, strerror(errno));
        b += k;
        n -= (size_t)k;
    }
    return TW_OK;
}

tw_status tw_st_writer_save(tw_st_writer *w, const char *path) {
    if (!w || !path) return tw_err(TW_E_ARG, "safetensors writer: no writer or path");
    /* Sorted names give a byte-identical file for the same tensors whatever the add order. */
    qsort(w->e, w->n, sizeof *w->e, st_wentry_cmp);
    st_wentry **order = tw_malloc((w->n + 1) * sizeof *order);   /* [n] data order */
    uint64_t *offs = tw_malloc((w->n + 1) * sizeof *offs);      /* [n] by name order */
    if (!order || !offs) {
        free(order);
        free(offs);
        return TW_E_NOMEM;
    }
    for (size_t i = 0; i < w->n; i++) order[i] = &w->e[i];
    qsort(order, w->n, sizeof *order, st_wentry_data_cmp);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        offs[order[i] - w->e] = off;
        off += order[i]->nbytes;
    }
    tw_buf hb = {0};
    tw_status st = tw_buf_putc(&hb, '{');
    for (size_t i = 0; i < w->n && !st; i++) {
        const st_wentry *e = &w->e[i];
        /* names are JSON-escaped through jansson to handle any byte safely */
        json_t *js = json_string(e->name);
        char *jn = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
        json_decref(js);
        if (!jn) { st = tw_err(TW_E_ARG, "safetensors writer: tensor name is not valid UTF-8"); break; }
        st = tw_buf_appendf(&hb, "%s%s:{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", jn, tw_dtype_name(e->type));
        free(jn);
        for (int d = 0; d < e->ndim && !st; d++) st = tw_buf_appendf(&hb, "%s%lld", d ? "," : "", (long long)e->shape[d]);
        if (!st) st = tw_buf_appendf(&hb, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offs[i],
                                     (unsigned long long)(offs[i] + e->nbytes));
    }
    free(offs);
    if (!st) st = tw_buf_putc(&hb, '}');
    while (!st && (8 + hb.len) % 8) st = tw_buf_putc(&hb, ' ');   /* the spec allows trailing spaces */
    if (st) {
        tw_buf_free(&hb);
        free(order);
        return st;
    }
    char *tmp = tw_asprintf("%s.tmp.%ld", path, (long)getpid());
    if (!tmp) {
        tw_buf_free(&hb);
        free(order);
        return TW_E_NOMEM;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = tw_err(TW_E_IO, "%s: %s", tmp, strerror(errno));
    } else {
        uint8_t len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hb.len >> (8 * i));
        st = st_write_all(fd, tmp, len8, 8);
        if (!st) st = st_write_all(fd, tmp, hb.data, hb.len);
        for (size_t i = 0; i < w->n && !st; i++) st = st_write_all(fd, tmp, order[i]->data, order[i]->nbytes);
        if (!st && fsync(fd) != 0) st = tw_err(TW_E_IO, "%s: fsync: %s", tmp, strerror(errno));
        if (close(fd) != 0 && !st) st = tw_err(TW_E_IO, "%s: close: %s", tmp, strerror(errno));
        if (!st && rename(tmp, path) != 0) st = tw_err(TW_E_IO, "%s: rename to %s: %s", tmp, path, strerror(errno));
        if (st) unlink(tmp);
    }
    free(tmp);
    free(order);
    tw_buf_free(&hb);
    return st;
}
