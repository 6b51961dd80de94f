/*
** ckpt_variants.h — test helper (header only, static functions): rewrites a checkpoint directory
** into a variant in a fresh temporary directory, with identical values, so tests can check that
** every layout the loader accepts gives the same model, and that corruptions are caught.
**
**   cv_opts o = cv_default();  o.legacy = 1;  o.n_shards = 3;
**   char *dir = cv_make(th_path("tiny-towervision"), &o);   // NULL on failure (message on stderr)
**   ... tw_model_load_dir(dir, ...) ...
**   cv_remove(dir);                                          // deletes the directory, frees dir
**
** Variants (combinable):
**   legacy      legacy names: language_model.model.*, language_model.lm_head.weight,
**               vision_tower.*, multi_modal_projector.*, image_newline
**   n_shards    N > 1: model-0000i-of-0000N.safetensors + model.safetensors.index.json
**   dtype       CV_F32: every float tensor widened to F32 (BF16 -> F32 is exact);
**               CV_F16: a tensor is converted to F16 only when every value is exactly
**               representable in F16 (round trip checked), otherwise it stays as it was;
**               CV_MIX: tensor i (in sorted name order) becomes F32, F16 (if exact), or stays BF16
**               for i % 3 == 0, 1, 2 — so one file mixes all three.
**   untie       adds lm_head.weight = copy of embed_tokens; sets tie_word_embeddings false
**               (top level and text_config)
**   text_only   Gemma2ForCausalLM: model.* + lm_head.weight (when untied), config = text_config
**               at top level with model_type "gemma2", architectures ["Gemma2ForCausalLM"]
** Corruptions:
**   drop        tensor (final name) left out of the weights
**   reshape     tensor (final name) stored with a wrong shape (dims swapped, or [1, n] for
**               square / 1-D tensors); the bytes are unchanged
**   set_key / set_json   config.json field (dotted path) replaced by a JSON value ("32", "\"x\"")
**   del_key     config.json field (dotted path) removed
**   bad_json    config.json cut in half (syntax error)
**   truncate    the (first) weights file cut to 2/3 of its size
** Every other file of the source directory (tokenizer, templates, generation config, ...) is
** copied byte for byte, except tokenizer.json when no_tokenizer is set and the files named in
** omit[].
*/
#ifndef TW_CKPT_VARIANTS_H
#define TW_CKPT_VARIANTS_H

#include "safetensors.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

enum { CV_KEEP = 0, CV_F32, CV_F16, CV_MIX };

typedef struct cv_opts {
    int         legacy, n_shards, dtype, untie, text_only, no_tokenizer;
    const char *drop, *reshape;
    const char *set_key, *set_json, *del_key;
    int         bad_json, truncate;
    const char *omit[4];   /* other files of the source directory to leave out (NULL-padded) */
} cv_opts;

static inline cv_opts cv_default(void) {
    cv_opts o;
    memset(&o, 0, sizeof o);
    return o;
}

/* ---- small file helpers -------------------------------------------------------------------- */

static inline int cv_fail(const char *what, const char *detail) {
    fprintf(stderr, "ckpt_variants: %s: %s\n", what, detail ? detail : "");
    return -1;
}

static inline int cv_copy_file(const char *from, const char *to) {
    char *d = NULL;
    size_t n = 0;
    if (tw_read_file(from, &d, &n) != TW_OK) return cv_fail(from, tw_last_error());
    int rc = tw_write_file_atomic(to, d, n) == TW_OK ? 0 : cv_fail(to, tw_last_error());
    free(d);
    return rc;
}

static inline void cv_remove(char *dir) {
    if (!dir) return;
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                char *p = tw_path_join(dir, e->d_name);
                if (p) unlink(p);
                free(p);
            }
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

/* ---- names --------------------------------------------------------------------------------- */

static inline int cv_starts(const char *s, const char *pre) { return strncmp(s, pre, strlen(pre)) == 0; }

/* Canonical (>= 4.52) name of a tensor whatever layout the source uses. */
static inline char *cv_canonical(const char *n) {
    static const char *map[][2] = {
        { "language_model.model.", "model.language_model." },
        { "language_model.lm_head.", "lm_head." },
        { "vision_tower.", "model.vision_tower." },
        { "multi_modal_projector.", "model.multi_modal_projector." },
        { "image_newline", "model.image_newline" },
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (cv_starts(n, map[i][0])) return tw_asprintf("%s%s", map[i][1], n + strlen(map[i][0]));
    return tw_strdup(n);
}

/* Name in the variant, or NULL when the variant leaves the tensor out (*skip = 1). */
static inline char *cv_rename(const char *canon, const cv_opts *o, int *skip) {
    *skip = 0;
    if (o->text_only) {
        if (cv_starts(canon, "model.language_model."))
            return tw_asprintf("model.%s", canon + strlen("model.language_model."));
        if (strcmp(canon, "lm_head.weight") == 0) return tw_strdup(canon);
        *skip = 1;
        return NULL;
    }
    if (!o->legacy) return tw_strdup(canon);
    static const char *map[][2] = {
        { "model.language_model.", "language_model.model." },
        { "lm_head.", "language_model.lm_head." },
        { "model.vision_tower.", "vision_tower." },
        { "model.multi_modal_projector.", "multi_modal_projector." },
        { "model.image_newline", "image_newline" },
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (cv_starts(canon, map[i][0])) return tw_asprintf("%s%s", map[i][1], canon + strlen(map[i][0]));
    return tw_strdup(canon);
}

/* ---- values -------------------------------------------------------------------------------- */

static inline float cv_get(const tw_tensor *t, int64_t i) {
    const uint8_t *p = (const uint8_t *)t->data;
    if (t->type == TW_DT_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return t->type == TW_DT_F16 ? tw_f16_to_f32(h) : tw_bf16_to_f32(h);
}

/* Converts t to type `to` into a malloc'ed buffer; NULL if a value would change (F16 range or
** precision), in which case the caller keeps the original. */
static inline void *cv_convert(const tw_tensor *t, tw_dtype to) {
    int64_t n = tw_tensor_nelem(t);
    void *out = malloc((size_t)n * tw_dtype_size(to) + 1);
    if (!out) return NULL;
    for (int64_t i = 0; i < n; i++) {
        float f = cv_get(t, i);
        if (to == TW_DT_F32) {
            memcpy((uint8_t *)out + 4 * i, &f, 4);
        } else {
            uint16_t h = to == TW_DT_F16 ? tw_f32_to_f16(f) : tw_f32_to_bf16(f);
            float back = to == TW_DT_F16 ? tw_f16_to_f32(h) : tw_bf16_to_f32(h);
            if (memcmp(&back, &f, 4) != 0) {
                free(out);
                return NULL;
            }
            memcpy((uint8_t *)out + 2 * i, &h, 2);
        }
    }
    return out;
}

/* ---- config -------------------------------------------------------------------------------- */

static inline json_t *cv_parent(json_t *root, const char *key, const char **last) {
    char part[128];
    const char *p = key;
    json_t *o = root;
    for (;;) {
        const char *dot = strchr(p, '.');
        if (!dot) {
            *last = p;
            return o;
        }
        size_t n = (size_t)(dot - p);
        if (n >= sizeof part) return NULL;
        memcpy(part, p, n);
        part[n] = 0;
        o = json_object_get(o, part);
        if (!json_is_object(o)) return NULL;
        p = dot + 1;
    }
}

static inline int cv_write_config(const char *src_dir, const char *dst_dir, const cv_opts *o) {
    char *from = tw_path_join(src_dir, "config.json"), *to = tw_path_join(dst_dir, "config.json");
    json_t *j = NULL;
    int rc = -1;
    if (tw_json_load(from, &j) != TW_OK) {
        cv_fail(from, tw_last_error());
        goto out;
    }
    if (o->text_only) {
        json_t *tc = json_object_get(j, "text_config");
        json_t *t = tc ? json_deep_copy(tc) : NULL;
        if (!t) {
            cv_fail(from, "no text_config");
            goto out;
        }
        json_decref(j);
        j = t;
        json_object_set_new(j, "model_type", json_string("gemma2"));
        json_t *ar = json_array();
        json_array_append_new(ar, json_string("Gemma2ForCausalLM"));
        json_object_set_new(j, "architectures", ar);
    }
    if (o->untie) {
        json_object_set_new(j, "tie_word_embeddings", json_false());
        json_t *tc = json_object_get(j, "text_config");
        if (tc) json_object_set_new(tc, "tie_word_embeddings", json_false());
    }
    if (o->set_key) {
        const char *last;
        json_t *parent = cv_parent(j, o->set_key, &last);
        json_t *v = json_loads(o->set_json, JSON_DECODE_ANY, NULL);
        if (!parent || !v) {
            json_decref(v);
            cv_fail(o->set_key, "cannot set");
            goto out;
        }
        json_object_set_new(parent, last, v);
    }
    if (o->del_key) {
        const char *last;
        json_t *parent = cv_parent(j, o->del_key, &last);
        if (!parent || json_object_del(parent, last) != 0) {
            cv_fail(o->del_key, "no such field");
            goto out;
        }
    }
    char *s = json_dumps(j, JSON_INDENT(2));
    if (!s) goto out;
    size_t len = strlen(s);
    if (o->bad_json) len /= 2;
    rc = tw_write_file_atomic(to, s, len) == TW_OK ? 0 : cv_fail(to, tw_last_error());
    free(s);
out:
    json_decref(j);
    free(from);
    free(to);
    return rc;
}

/* ---- weights ------------------------------------------------------------------------------- */

typedef struct cv_item {
    char       *name;    /* final name                     */
    tw_dtype    type;
    int         ndim;
    int64_t     shape[TW_MAX_DIMS];
    const void *data;    /* source bytes or conv           */
    void       *conv;    /* owned converted copy, or NULL  */
} cv_item;

static inline int cv_item_cmp(const void *a, const void *b) {
    return strcmp(((const cv_item *)a)->name, ((const cv_item *)b)->name);
}

static inline int cv_write_weights(const char *src_dir, const char *dst_dir, const cv_opts *o) {
    tw_st_set *s = NULL;
    if (tw_st_open_dir(src_dir, &s) != TW_OK) return cv_fail(src_dir, tw_last_error());
    size_t n = tw_st_count(s), m = 0;
    cv_item *it = calloc(n + 1, sizeof *it);
    int rc = -1;
    const tw_tensor *embed = NULL;
    if (!it) goto out;
    for (size_t i = 0; i < n; i++) {
        const tw_tensor *t = tw_st_at(s, i);
        char *canon = cv_canonical(t->name);
        int skip = 0;
        if (canon && strcmp(canon, "model.language_model.embed_tokens.weight") == 0) embed = t;
        char *nm = canon ? cv_rename(canon, o, &skip) : NULL;
        free(canon);
        if (skip) continue;
        if (!nm) goto out;
        if (o->drop && strcmp(nm, o->drop) == 0) {
            free(nm);
            continue;
        }
        cv_item *x = &it[m++];
        x->name = nm;
        x->type = t->type;
        x->ndim = t->ndim;
        memcpy(x->shape, t->shape, sizeof x->shape);
        x->data = t->data;
    }
    if (o->untie && embed) {
        int has = 0;
        for (size_t i = 0; i < m; i++) has |= cv_starts(it[i].name, "lm_head") || strstr(it[i].name, "lm_head.") != NULL;
        if (!has) {
            cv_item *x = &it[m++];
            x->name = tw_strdup(o->legacy && !o->text_only ? "language_model.lm_head.weight" : "lm_head.weight");
            x->type = embed->type;
            x->ndim = embed->ndim;
            memcpy(x->shape, embed->shape, sizeof x->shape);
            x->data = embed->data;
        }
    }
    qsort(it, m, sizeof *it, cv_item_cmp);
    /* dtype conversion and shape corruption, on the sorted list so CV_MIX is deterministic */
    for (size_t i = 0; i < m; i++) {
        cv_item *x = &it[i];
        bool isf = x->type == TW_DT_F32 || x->type == TW_DT_F16 || x->type == TW_DT_BF16;
        tw_dtype to = x->type;
        if (o->dtype == CV_F32) to = TW_DT_F32;
        else if (o->dtype == CV_F16) to = TW_DT_F16;
        else if (o->dtype == CV_MIX) to = i % 3 == 0 ? TW_DT_F32 : i % 3 == 1 ? TW_DT_F16 : x->type;
        if (isf && to != x->type) {
            tw_tensor t = { .name = x->name, .type = x->type, .ndim = x->ndim, .data = x->data };
            memcpy(t.shape, x->shape, sizeof t.shape);
            x->conv = cv_convert(&t, to);
            if (x->conv) {
                x->data = x->conv;
                x->type = to;
            }
        }
        if (o->reshape && strcmp(x->name, o->reshape) == 0) {
            if (x->ndim >= 2 && x->shape[0] != x->shape[1]) {
                int64_t a = x->shape[0];
                x->shape[0] = x->shape[1];
                x->shape[1] = a;
            } else {
                int64_t ne = 1;
                for (int d = 0; d < x->ndim; d++) ne *= x->shape[d];
                x->ndim = 2;
                x->shape[0] = 1;
                x->shape[1] = ne;
            }
        }
    }
    int shards = o->n_shards > 1 ? o->n_shards : 1;
    json_t *wm = json_object();
    uint64_t total = 0;
    char *first = NULL;
    for (int k = 0; k < shards; k++) {
        char fname[64];
        if (shards == 1) snprintf(fname, sizeof fname, "model.safetensors");
        else snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", k + 1, shards);
        tw_st_writer *w = tw_st_writer_new();
        size_t lo = m * (size_t)k / (size_t)shards, hi = m * (size_t)(k + 1) / (size_t)shards;
        int bad = !w;
        for (size_t i = lo; i < hi && !bad; i++) {
            bad = tw_st_writer_add(w, it[i].name, it[i].type, it[i].ndim, it[i].shape, it[i].data) != TW_OK;
            int64_t ne = 1;
            for (int d = 0; d < it[i].ndim; d++) ne *= it[i].shape[d];
            total += (uint64_t)ne * tw_dtype_size(it[i].type);
            json_object_set_new(wm, it[i].name, json_string(fname));
        }
        char *path = tw_path_join(dst_dir, fname);
        if (!bad) bad = tw_st_writer_save(w, path) != TW_OK;
        tw_st_writer_free(w);
        if (bad) {
            cv_fail(path, tw_last_error());
            free(path);
            json_decref(wm);
            goto out;
        }
        if (k == 0) first = path;
        else free(path);
    }
    rc = 0;
    if (shards > 1) {
        json_t *idx = json_pack("{s:{s:I}, s:O}", "metadata", "total_size", (json_int_t)total, "weight_map", wm);
        char *txt = idx ? json_dumps(idx, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
        char *path = tw_path_join(dst_dir, "model.safetensors.index.json");
        rc = txt && tw_write_file_atomic(path, txt, strlen(txt)) == TW_OK ? 0 : cv_fail(path, "cannot write");
        free(txt);
        free(path);
        json_decref(idx);
    }
    json_decref(wm);
    if (!rc && o->truncate && first) {
        struct stat sb;
        if (stat(first, &sb) != 0 || truncate(first, sb.st_size * 2 / 3) != 0) rc = cv_fail(first, "truncate");
    }
    free(first);
out:
    for (size_t i = 0; it && i < m; i++) {
        free(it[i].name);
        free(it[i].conv);
    }
    free(it);
    tw_st_close(s);
    return rc;
}

/* $TMPDIR, else /dev/shm when present (the writer fsyncs; on tmpfs that costs nothing, on a
** disk it made the variant tests 5x slower), else /tmp. */
static inline const char *cv_tmp_root(void) {
    const char *t = getenv("TMPDIR");
    if (t && *t) return t;
    return tw_dir_exists("/dev/shm") && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
}

/* ---- the variant --------------------------------------------------------------------------- */

static inline char *cv_make(const char *src_dir, const cv_opts *o) {
    char *dir = tw_asprintf("%s/twckpt-XXXXXX", cv_tmp_root());
    if (!dir || !mkdtemp(dir)) {
        cv_fail("mkdtemp", dir);
        free(dir);
        return NULL;
    }
    DIR *d = opendir(src_dir);
    int rc = d ? 0 : cv_fail(src_dir, "cannot open directory");
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        const char *nm = e->d_name;
        if (nm[0] == '.' || strcmp(nm, "config.json") == 0 || strstr(nm, ".safetensors")) continue;
        if (o->no_tokenizer && strcmp(nm, "tokenizer.json") == 0) continue;
        int skip = 0;
        for (int i = 0; i < 4; i++) skip |= o->omit[i] && strcmp(nm, o->omit[i]) == 0;
        if (skip) continue;
        char *from = tw_path_join(src_dir, nm), *to = tw_path_join(dir, nm);
        if (tw_file_exists(from)) rc = cv_copy_file(from, to);
        free(from);
        free(to);
    }
    if (d) closedir(d);
    if (!rc) rc = cv_write_config(src_dir, dir, o);
    if (!rc) rc = cv_write_weights(src_dir, dir, o);
    if (rc) {
        cv_remove(dir);
        return NULL;
    }
    return dir;
}

#endif
