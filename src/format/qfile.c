/*
** qfile.c — the single-file quantized checkpoint that `tower quantize` writes (docs/quantization.md,
** "File"): a valid safetensors file whose quantized matrices are U8 blobs described by
** "tower.quant.<name>" metadata, plus the checkpoint directory's JSON and Jinja files embedded as
** "__file__/<name>" tensors. Here: writing it (tw_qfile_write, streaming, quantized on the pool by
** the codec the caller hands in), retyping its blobs when it is opened (tw_quant_apply) and serving
** its embedded files from the mapping (tw_quant_src). This file knows the layout of the file and
** the sizes of the blocks (dtype.c), never how a block is computed: that is src/cpu/quant.c's.
*/
#include "qfile.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- names of the quantized types -------------------------------------------------------------- */

size_t tw_quant_block_bytes(tw_dtype t) { return tw_dtype_is_quant(t) ? tw_dtype_row_bytes(t, TW_QBLOCK) : 0; }

int64_t tw_quant_blocks(int64_t K) { return (K + TW_QBLOCK - 1) / TW_QBLOCK; }

size_t tw_quant_row_bytes(tw_dtype t, int64_t K) { return (size_t)tw_quant_blocks(K) * tw_quant_block_bytes(t); }

const char *tw_quant_name(tw_dtype t) { return t == TW_DT_Q8_0 ? "q8_0" : t == TW_DT_Q4_0 ? "q4_0" : "?"; }

bool tw_quant_parse(const char *s, tw_dtype *t) {
    if (!s) return false;
    if (strcmp(s, "q8") == 0 || strcmp(s, "q8_0") == 0 || strcmp(s, "Q8_0") == 0) *t = TW_DT_Q8_0;
    else if (strcmp(s, "q4") == 0 || strcmp(s, "q4_0") == 0 || strcmp(s, "Q4_0") == 0) *t = TW_DT_Q4_0;
    else return false;
    return true;
}

/* ---- reading a quantized file's metadata ------------------------------------------------------ */

/* The JSON header of one safetensors file (validated already by tw_st_open_*). */
static tw_status read_header(const char *path, json_t **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return tw_err(TW_E_IO, "%s: %s", path, strerror(errno));
    uint8_t l8[8];
    uint64_t hlen = 0;
    tw_status st = TW_OK;
    char *h = NULL;
    if (fread(l8, 1, 8, f) != 8) st = tw_err(TW_E_FORMAT, "%s: too short for a safetensors file", path);
    for (int i = 7; i >= 0 && !st; i--) hlen = hlen << 8 | l8[i];
    if (!st && hlen > 100u * 1024u * 1024u) st = tw_err(TW_E_FORMAT, "%s: header length %llu is implausible", path,
                                                      (unsigned long long)hlen);
    if (!st && !(h = tw_malloc((size_t)hlen + 1))) st = TW_E_NOMEM;
    if (!st && fread(h, 1, (size_t)hlen, f) != hlen) st = tw_err(TW_E_FORMAT, "%s: header truncated", path);
    fclose(f);
    if (!st) {
        json_error_t je;
        *out = json_loadb(h, (size_t)hlen, 0, &je);
        if (!*out) st = tw_err(TW_E_FORMAT, "%s: header JSON: %s", path, je.text);
    }
    free(h);
    return st;
}

/* "q4_0:32:[N,K]" */
static bool parse_spec(const char *s, tw_dtype *t, int64_t *N, int64_t *K) {
    char ty[16];
    int blk;
    long long n, k;
    char end;
    if (sscanf(s, "%15[^:]:%d:[%lld,%lld%c", ty, &blk, &n, &k, &end) != 5 || end != ']') return false;
    return tw_quant_parse(ty, t) && blk == TW_QBLOCK && n > 0 && k > 0 && (*N = n, *K = k, true);
}

static tw_status apply_file(tw_st_set *s, const char *path) {
    json_t *h = NULL;
    TW_TRY(read_header(path, &h));
    tw_status st = TW_OK;
    const json_t *md = json_object_get(h, "__metadata__");
    const char *key;
    json_t *v;
    static const char pre[] = "tower.quant.";
    if (json_is_object(md))
        json_object_foreach((json_t *)md, key, v) {
            if (strncmp(key, pre, sizeof pre - 1) != 0) continue;
            const char *name = key + sizeof pre - 1;
            tw_dtype t;
            int64_t N, K;
            if (!json_is_string(v) || !parse_spec(json_string_value(v), &t, &N, &K)) {
                st = tw_err(TW_E_FORMAT, "%s: metadata \"%s\" is not \"q8_0|q4_0:32:[N,K]\"", path, key);
                break;
            }
            /* The set owns its tw_tensor array (heap); const is only the lookup's promise to
            ** readers. Retyping in place keeps every tw_st_get pointer valid. */
            tw_tensor *x = (tw_tensor *)tw_st_get(s, name);
            if (!x || strcmp(x->file, path) != 0) {
                st = tw_err(TW_E_FORMAT, "%s: metadata \"%s\" names a tensor the file does not have", path, key);
                break;
            }
            size_t rb = tw_quant_row_bytes(t, K);
            if (x->type != TW_DT_U8 || x->ndim != 2 || x->shape[0] != N || (size_t)x->shape[1] != rb) {
                st = tw_err(TW_E_FORMAT, "%s: tensor \"%s\": %s needs U8 [%lld, %zu] for %s [%lld, %lld]", path, name,
                            json_string_value(v), (long long)N, rb, tw_quant_name(t), (long long)N, (long long)K);
                break;
            }
            x->type = t;
            x->shape[1] = K;
        }
    json_decref(h);
    return st;
}

tw_status tw_quant_apply(tw_st_set *s) {
    const char *done = NULL;   /* shards: each tensor's file, each distinct file once */
    for (size_t i = 0; i < tw_st_count(s); i++) {
        const char *f = tw_st_at(s, i)->file;
        if (f == done) continue;
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++) seen = tw_st_at(s, k)->file == f;
        if (!seen) TW_TRY(apply_file(s, f));
        done = f;
    }
    return TW_OK;
}

/* ---- packed checkpoints: embedded files --------------------------------------------------------- */

static const char FILE_PREFIX[] = "__file__/";

bool tw_quant_is_packed(const char *path) {
    if (!path || !tw_file_exists(path) || tw_dir_exists(path)) return false;
    json_t *h = NULL;
    if (read_header(path, &h)) return false;
    bool yes = json_object_get(h, "__file__/config.json") != NULL;
    json_decref(h);
    return yes;
}

/* an embedded file's name must be a plain file name (the writer takes nothing else) */
static bool plain_name(const char *n) {
    return *n && !strchr(n, '/') && strcmp(n, ".") && strcmp(n, "..") && strcmp(n, "model.safetensors") &&
           strcmp(n, "model.safetensors.index.json");
}

tw_status tw_quant_src(const tw_st_set *s, const char *path, tw_src *out) {
    *out = (tw_src){ .root = path, .packed = true };
    size_t n = 0;
    for (size_t i = 0; i < tw_st_count(s); i++) n += strncmp(tw_st_at(s, i)->name, FILE_PREFIX, sizeof FILE_PREFIX - 1) == 0;
    if (!n) return tw_err(TW_E_FORMAT, "%s: no embedded files (\"__file__/config.json\", ...): not a packed checkpoint",
                          path);
    if (!(out->files = tw_calloc(n, sizeof *out->files))) return TW_E_NOMEM;
    for (size_t i = 0; i < tw_st_count(s); i++) {
        const tw_tensor *t = tw_st_at(s, i);
        if (strncmp(t->name, FILE_PREFIX, sizeof FILE_PREFIX - 1) != 0) continue;
        const char *nm = t->name + sizeof FILE_PREFIX - 1;
        if (!plain_name(nm) || t->type != TW_DT_U8) {
            tw_src_free(out);
            return tw_err(TW_E_FORMAT, "%s: embedded file \"%s\" is not a plain file name with U8 data", path, t->name);
        }
        out->files[out->n_files++] = (tw_src_file){ nm, t->data, t->nbytes };
    }
    return TW_OK;
}

/* ---- writing a quantized checkpoint -------------------------------------------------------------- */

typedef enum { E_COPY, E_QUANT, E_FILE } ent_kind;

typedef struct qent {
    const char      *name;     /* output tensor name (owned for files)   */
    ent_kind         kind;
    const tw_tensor *src;      /* E_COPY, E_QUANT                        */
    char            *fdata;    /* E_FILE contents                        */
    tw_dtype         type;     /* output dtype                           */
    tw_dtype         qtype;    /* E_QUANT: Q8_0 / Q4_0                   */
    int              ndim;
    int64_t          shape[TW_MAX_DIMS];
    size_t           nbytes;
    uint64_t         off;
    double           rel_rms;  /* E_QUANT                                */
} qent;

static bool is_vision(const char *n) { return strstr(n, "vision_tower") || strstr(n, "multi_modal_projector"); }

/* Which tensors get quantized: 2-D float matrices used as matmul weights or token embeddings. */
static bool want_quant(const tw_tensor *t, const tw_quant_opts *o) {
    size_t l = strlen(t->name);
    if (t->ndim != 2 || t->shape[0] < 2 || t->shape[1] < 2) return false;
    if (t->type != TW_DT_F32 && t->type != TW_DT_F16 && t->type != TW_DT_BF16) return false;
    if (l < 7 || strcmp(t->name + l - 7, ".weight") != 0 || strstr(t->name, "position_embedding")) return false;
    if (o->keep_vision && is_vision(t->name)) return false;
    if (o->keep_embed && strstr(t->name, "embed_tokens")) return false;
    return true;
}

static int ent_data_cmp(const void *a, const void *b) {   /* wider elements first: natural alignment */
    const qent *x = *(const qent *const *)a, *y = *(const qent *const *)b;
    size_t sx = tw_dtype_size(x->type), sy = tw_dtype_size(y->type);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Quantizing rows [r0, r0 + n) of one tensor in parallel; each task keeps its error sums. */
typedef struct qwork {
    const tw_qfile_codec *codec;
    const tw_tensor *src;
    tw_dtype type;
    int64_t K, r0, n;
    size_t rb;
    uint8_t *out;        /* [n * rb] */
    double (*err)[2];    /* [tasks] sum (w - w')^2, sum w^2 */
} qwork;

enum { QW_ROWS = 16 };

static void quant_task(void *ctx, int64_t i, int tid) {
    qwork *q = ctx;
    float *w = malloc(sizeof(float) * 2 * (size_t)q->K);
    if (!w) return;   /* the caller checks every task ran (err[i][1] set below) */
    float *back = w + q->K;
    double e = 0, s = 0;
    for (int64_t r = i * QW_ROWS; r < TW_MIN((i + 1) * QW_ROWS, q->n); r++) {
        uint8_t *o = q->out + (size_t)r * q->rb;
        tw_dtype_widen(q->src->type, (const uint8_t *)q->src->data + (size_t)(q->r0 + r) * tw_dtype_row_bytes(q->src->type, q->K),
                       w, q->K);   /* want_quant: F32, F16 or BF16 */
        q->codec->quantize_row(q->type, w, q->K, o);
        q->codec->dequantize_row(q->type, o, q->K, back);
        for (int64_t k = 0; k < q->K; k++) {
            double d = (double)w[k] - back[k];
            e += d * d;
            s += (double)w[k] * w[k];
        }
    }
    q->err[i][0] = e;
    q->err[i][1] = s;
    free(w);
}

static tw_status write_all(FILE *f, const char *path, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, f) != n) return tw_err(TW_E_IO, "%s: write: %s", path, strerror(errno));
    return TW_OK;
}

static tw_status write_quant(FILE *f, const char *path, qent *e, tw_pool *pool, const tw_qfile_codec *c) {
    const int64_t N = e->src->shape[0], K = e->src->shape[1], CH = 4096;
    size_t rb = tw_quant_row_bytes(e->qtype, K);
    uint8_t *buf = tw_malloc((size_t)TW_MIN(CH, N) * rb);
    double (*err)[2] = tw_calloc((size_t)(CH + QW_ROWS - 1) / QW_ROWS, sizeof *err);
    tw_status st = buf && err ? TW_OK : TW_E_NOMEM;
    double se = 0, ss = 0;
    for (int64_t r0 = 0; r0 < N && !st; r0 += CH) {
        qwork q = { c, e->src, e->qtype, K, r0, TW_MIN(CH, N - r0), rb, buf, err };
        int64_t tasks = (q.n + QW_ROWS - 1) / QW_ROWS;
        for (int64_t i = 0; i < tasks; i++) err[i][1] = -1;
        tw_pool_run(pool, tasks, quant_task, &q);
        for (int64_t i = 0; i < tasks; i++) {
            if (err[i][1] < 0) st = TW_E_NOMEM;
            se += err[i][0];
            ss += err[i][1];
        }
        if (!st) st = write_all(f, path, buf, (size_t)q.n * rb);
    }
    e->rel_rms = ss > 0 ? sqrt(se / ss) : 0;
    free(buf);
    free(err);
    return st;
}

/* Entries for the embedded files: the directory's *.json and *.jinja files. */
static tw_status add_files(const char *dir, qent **ents, size_t *n) {
    DIR *d = opendir(dir);
    if (!d) return tw_err(TW_E_IO, "%s: %s", dir, strerror(errno));
    tw_status st = TW_OK;
    struct dirent *de;
    while (!st && (de = readdir(d))) {
        const char *nm = de->d_name;
        size_t l = strlen(nm);
        bool json = l > 5 && strcmp(nm + l - 5, ".json") == 0, jinja = l > 6 && strcmp(nm + l - 6, ".jinja") == 0;
        if ((!json && !jinja) || !plain_name(nm)) continue;
        char *p = tw_path_join(dir, nm);
        if (!p) { st = TW_E_NOMEM; break; }
        if (tw_dir_exists(p)) { free(p); continue; }
        qent e = { .kind = E_FILE, .type = TW_DT_U8, .ndim = 1 };
        st = tw_read_file(p, &e.fdata, &e.nbytes);
        free(p);
        if (st) break;
        e.shape[0] = (int64_t)e.nbytes;
        e.name = tw_asprintf("%s%s", FILE_PREFIX, nm);
        qent *g = tw_realloc(*ents, (*n + 1) * sizeof *g);
        if (!e.name || !g) {
            free((char *)e.name);
            free(e.fdata);
            if (g) *ents = g;
            st = TW_E_NOMEM;
            break;
        }
        *ents = g;
        (*ents)[(*n)++] = e;
    }
    closedir(d);
    return st;
}

tw_status tw_qfile_write(const char *dir, const char *out_path, const tw_quant_opts *o, const tw_qfile_codec *c) {
    if (!dir || !out_path || !o || !c || !tw_dtype_is_quant(o->type))
        return tw_err(TW_E_ARG, "tw_quantize_model: dir, out_path and a q8_0/q4_0 type are required");
    char *cfg = tw_path_join(dir, "config.json");
    bool has_cfg = cfg && tw_file_exists(cfg);
    free(cfg);
    if (!has_cfg) return tw_err(TW_E_NOT_FOUND, "%s: no config.json: not a checkpoint directory", dir);
    tw_st_set *s = NULL;
    TW_TRY(tw_st_open_dir(dir, &s));
    size_t nt = tw_st_count(s), n = 0;
    qent *ents = tw_calloc(nt + 1, sizeof *ents);
    qent **order = NULL;
    tw_pool *pool = NULL;
    json_t *h = NULL, *md = NULL;
    char *hs = NULL, *tmp = NULL;
    FILE *f = NULL;
    tw_status st = ents ? TW_OK : TW_E_NOMEM;
    for (size_t i = 0; i < nt && !st; i++) {
        const tw_tensor *t = tw_st_at(s, i);
        if (strncmp(t->name, FILE_PREFIX, sizeof FILE_PREFIX - 1) == 0) continue;   /* re-quantizing: files below */
        if (tw_dtype_is_quant(t->type)) {
            st = tw_err(TW_E_UNSUPPORTED, "%s: tensor \"%s\" is already quantized", dir, t->name);
            break;
        }
        qent e = { .name = t->name, .src = t, .type = t->type, .ndim = t->ndim, .nbytes = t->nbytes };
        memcpy(e.shape, t->shape, sizeof e.shape);
        if (want_quant(t, o)) {
            e.kind = E_QUANT;
            e.type = TW_DT_U8;
            e.qtype = o->type;
            e.shape[1] = (int64_t)tw_quant_row_bytes(o->type, t->shape[1]);
            e.nbytes = (size_t)t->shape[0] * (size_t)e.shape[1];
        }
        ents[n++] = e;
    }
    size_t n_tensors = n;
    if (!st) st = add_files(dir, &ents, &n);

    /* header: tensors in data order, offsets contiguous (the format allows no holes) */
    if (!st && !(order = tw_malloc((n + 1) * sizeof *order))) st = TW_E_NOMEM;
    if (!st) {
        for (size_t i = 0; i < n; i++) order[i] = &ents[i];
        qsort(order, n, sizeof *order, ent_data_cmp);
        uint64_t off = 0;
        for (size_t i = 0; i < n; i++) order[i]->off = off, off += order[i]->nbytes;
        h = json_object();
        md = json_object();
        if (!h || !md) st = TW_E_NOMEM;
        json_object_set_new(md, "format", json_string("pt"));
        json_object_set_new(md, "tower.format", json_string("towervision-quant/1"));
        json_object_set_new(md, "tower.quant_type", json_string(tw_quant_name(o->type)));
        for (size_t i = 0; i < n && !st; i++) {
            const qent *e = &ents[i];
            json_t *sh = json_array(), *t = json_object();
            for (int d = 0; d < e->ndim; d++) json_array_append_new(sh, json_integer(e->shape[d]));
            json_object_set_new(t, "dtype", json_string(tw_dtype_name(e->type)));
            json_object_set_new(t, "shape", sh);
            json_object_set_new(t, "data_offsets",
                                json_pack("[II]", (json_int_t)e->off, (json_int_t)(e->off + e->nbytes)));
            if (json_object_set_new(h, e->name, t)) st = tw_err(TW_E_ARG, "tensor name \"%s\" is not UTF-8", e->name);
            if (e->kind == E_QUANT) {
                char k[600], v[96];
                snprintf(k, sizeof k, "tower.quant.%s", e->name);
                snprintf(v, sizeof v, "%s:%d:[%lld,%lld]", tw_quant_name(o->type), TW_QBLOCK,
                         (long long)e->src->shape[0], (long long)e->src->shape[1]);
                json_object_set_new(md, k, json_string(v));
            }
        }
        json_object_set(h, "__metadata__", md);
        if (!st && !(hs = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS))) st = TW_E_NOMEM;
    }
    if (!st && !(pool = tw_pool_new(o->n_threads))) st = tw_err(TW_E_NOMEM, "could not start the thread pool");
    if (!st && !(tmp = tw_asprintf("%s.tmp.%ld", out_path, (long)getpid()))) st = TW_E_NOMEM;
    if (!st && !(f = fopen(tmp, "wb"))) st = tw_err(TW_E_IO, "%s: %s", tmp, strerror(errno));
    if (!st) {
        size_t hl = strlen(hs), pad = (64 - (8 + hl) % 64) % 64;   /* data starts 64-aligned */
        uint8_t l8[8];
        for (int i = 0; i < 8; i++) l8[i] = (uint8_t)((uint64_t)(hl + pad) >> (8 * i));
        st = write_all(f, tmp, l8, 8);
        if (!st) st = write_all(f, tmp, hs, hl);
        for (size_t i = 0; i < pad && !st; i++) st = write_all(f, tmp, " ", 1);
    }
    for (size_t i = 0; i < n && !st; i++) {
        qent *e = order[i];
        if (e->kind == E_COPY) st = write_all(f, tmp, e->src->data, e->nbytes);
        else if (e->kind == E_FILE) st = write_all(f, tmp, e->fdata, e->nbytes);
        else st = write_quant(f, tmp, e, pool, c);
    }
    if (f) {
        if (!st && (fflush(f) != 0 || fsync(fileno(f)) != 0)) st = tw_err(TW_E_IO, "%s: %s", tmp, strerror(errno));
        if (fclose(f) != 0 && !st) st = tw_err(TW_E_IO, "%s: close: %s", tmp, strerror(errno));
        if (!st && rename(tmp, out_path) != 0)
            st = tw_err(TW_E_IO, "%s: rename to %s: %s", tmp, out_path, strerror(errno));
        if (st) unlink(tmp);
    }
    if (!st && o->report)
        for (size_t i = 0; i < n_tensors; i++) {
            const qent *e = &ents[i];
            int nd = e->src->ndim;
            int64_t N = nd > 1 ? e->src->shape[0] : 1, K = nd > 0 ? e->src->shape[nd - 1] : 1;
            o->report(o->user, e->name, e->kind == E_QUANT ? tw_quant_name(o->type) : tw_dtype_name(e->type), N, K,
                      e->kind == E_QUANT ? e->rel_rms : 0);
        }
    for (size_t i = n_tensors; i < n; i++) {
        free((char *)ents[i].name);
        free(ents[i].fdata);
    }
    free(ents);
    free(order);
    free(hs);
    free(tmp);
    json_decref(md);
    json_decref(h);
    tw_pool_free(pool);
    tw_st_close(s);
    return st;
}
