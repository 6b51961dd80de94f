/*
** prompt.c — the multimodal prompt (tower.h's tw_prompt) and the media cache.
**
** A prompt is built in one go: the messages' text with one "<image>" / "<video>" placeholder per
** medium (placed as the model cards put them when the text names none), the checkpoint's chat
** template, the tokens with every placeholder expanded to its medium's token count, and each
** medium's content hash. All of that is known before anything is encoded, so a caller can count
** tokens, refuse a prompt that does not fit, or bill for it first.
**
** Encoding goes through the vision pipeline (src/model/vision.c) once per distinct medium: rows
** are shared, reference-counted blocks, held by the prompts that use them and by the media cache
** (keyed by content hash, bounded in bytes, least recently used out first, locked for servers).
**
** Evaluation into a tw_seq reuses the longest prefix the sequence already holds: the same token
** ids and, for media tokens, the same medium (the sequence tags every cached position with the
** hash of the medium whose row it holds, 0 for text), so a conversation's earlier turns and
** images are never run twice, and a different image with the same token count never passes for
** the cached one. tw_prompt_eval is the three steps a scheduler can also take one at a time:
** tw_prompt_reuse (the shared prefix), tw_prompt_encode_from (the media after it) and
** tw_prompt_chunk (ids, rows and tags of any range, which tw_seq_eval records for the next reuse).
*/
#include "vision.h"

#include <assert.h>
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>

/* ---- content hash ------------------------------------------------------------------------------ */

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* The final avalanche of splitmix64 (Steele, Lea, Flood 2014): every input bit moves every
** output bit. */
static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* 64-bit hash of n bytes, four independent multiply-rotate lanes over 32-byte blocks (several
** GB/s: a 32-frame 1080p clip is ~200 MB). Not meant to resist a chosen collision: a server
** that mixes untrusted users' media in one cache should key it per user as well. */
static uint64_t hash_bytes(uint64_t seed, const uint8_t *p, size_t n) {
    const uint64_t K1 = 0x9e3779b97f4a7c15ULL, K2 = 0xc2b2ae3d27d4eb4fULL;
    uint64_t a = seed ^ K1, b = seed + K2, c = rotl64(seed, 17) ^ n, d = ~seed;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, 32);
        a = rotl64(a ^ (w[0] * K2), 31) * K1;
        b = rotl64(b ^ (w[1] * K2), 31) * K1;
        c = rotl64(c ^ (w[2] * K2), 31) * K1;
        d = rotl64(d ^ (w[3] * K2), 31) * K1;
    }
    uint64_t h = rotl64(a, 1) + rotl64(b, 7) + rotl64(c, 12) + rotl64(d, 18);
    for (; i < n; i++) h = (h ^ p[i]) * K1;
    return mix64(h ^ n);
}

/* What the rows of one medium depend on: its pixels and size, and how it is encoded. Never 0
** (text) nor TW_SEQ_TAG_UNKNOWN. */
static uint64_t media_hash(tw_media_kind kind, const tw_image *im, const tw_video *v, bool single_tile) {
    uint64_t h;
    if (kind == TW_MEDIA_IMAGE) {
        uint64_t hdr[3] = { 1u + (uint64_t)single_tile, (uint64_t)im->w, (uint64_t)im->h };
        h = hash_bytes(hash_bytes(0, (const uint8_t *)hdr, sizeof hdr), im->rgb, (size_t)im->w * im->h * 3);
    } else {
        uint64_t hdr[4] = { 7, (uint64_t)v->n_frames, (uint64_t)v->width, (uint64_t)v->height };
        h = hash_bytes(hash_bytes(0, (const uint8_t *)hdr, sizeof hdr), v->rgb,
                       (size_t)v->n_frames * v->width * v->height * 3);
    }
    if (h == 0 || h == TW_SEQ_TAG_UNKNOWN) h = 1;
    return h;
}

/* ---- encoded rows ------------------------------------------------------------------------------ */

typedef struct media_rows {
    int      refs;        /* atomic: the prompts and the cache holding it                */
    uint64_t key;
    int32_t  n;           /* rows                                                        */
    size_t   bytes;
    float   *data;        /* [n][H]                                                      */
} media_rows;

static media_rows *rows_ref(media_rows *r) {
    __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
    return r;
}

static void rows_unref(media_rows *r) {
    if (r && __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        free(r->data);
        free(r);
    }
}

/* ---- the media cache --------------------------------------------------------------------------- */

typedef struct centry {
    media_rows *r;
    uint64_t used;        /* clock of the last hit or insertion                          */
} centry;

struct tw_media_cache {
    const tw_model      *m;
    pthread_mutex_t      mu;
    size_t               max_bytes, bytes;
    centry              *e;
    size_t               n, cap;
    uint64_t             clock;
    tw_media_cache_stats st;
};

tw_status tw_media_cache_new(const tw_model *m, size_t max_bytes, tw_media_cache **out) {
    if (!m || !out) return tw_err(TW_E_ARG, "tw_media_cache_new: NULL argument");
    *out = NULL;
    tw_media_cache *c = tw_calloc(1, sizeof *c);
    if (!c) return TW_E_NOMEM;
    c->m = m;
    c->max_bytes = max_bytes ? max_bytes : (size_t)2 << 30;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return TW_OK;
}

void tw_media_cache_free(tw_media_cache *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) rows_unref(c->e[i].r);
    free(c->e);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void tw_media_cache_get_stats(const tw_media_cache *c, tw_media_cache_stats *out) {
    memset(out, 0, sizeof *out);
    if (!c) return;
    pthread_mutex_t *mu = (pthread_mutex_t *)&c->mu;   /* taking the lock does not change the cache */
    pthread_mutex_lock(mu);
    *out = c->st;
    out->entries = c->n;
    out->bytes = c->bytes;
    pthread_mutex_unlock(mu);
}

/* A reference to the cached rows of key, or NULL. */
static media_rows *cache_find(tw_media_cache *c, uint64_t key) {
    media_rows *r = NULL;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n && !r; i++)
        if (c->e[i].r->key == key) {
            r = rows_ref(c->e[i].r);
            c->e[i].used = ++c->clock;
        }
    if (r) c->st.hits++;
    else c->st.misses++;
    pthread_mutex_unlock(&c->mu);
    return r;
}

/* Keeps r (unless another thread put the same key first, or it alone exceeds the budget),
** dropping the least recently used entries to make room. Out of memory only means not cached. */
static void cache_put(tw_media_cache *c, media_rows *r, tw_media_kind kind, double ms) {
    pthread_mutex_lock(&c->mu);
    if (kind == TW_MEDIA_IMAGE) c->st.images_encoded++, c->st.image_encode_ms += ms;
    else c->st.videos_encoded++, c->st.video_encode_ms += ms;
    bool have = false;
    for (size_t i = 0; i < c->n && !have; i++) have = c->e[i].r->key == r->key;
    if (!have && r->bytes <= c->max_bytes) {
        while (c->n && c->bytes + r->bytes > c->max_bytes) {
            size_t old = 0;
            for (size_t i = 1; i < c->n; i++)
                if (c->e[i].used < c->e[old].used) old = i;
            c->bytes -= c->e[old].r->bytes;
            rows_unref(c->e[old].r);
            c->e[old] = c->e[--c->n];
        }
        if (c->n == c->cap) {
            size_t cap = c->cap ? 2 * c->cap : 16;
            centry *e = realloc(c->e, cap * sizeof *e);
            if (e) c->e = e, c->cap = cap;
        }
        if (c->n < c->cap) {
            c->e[c->n++] = (centry){ rows_ref(r), ++c->clock };
            c->bytes += r->bytes;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

/* ---- the prompt -------------------------------------------------------------------------------- */

typedef struct pmedia {
    tw_media_kind   kind;
    const tw_image *im;
    const tw_video *vid;
    int32_t         index;        /* among the media of its kind                       */
    int32_t         n_tokens;
    size_t          first;        /* its first token                                  */
    bool            single_tile;
    uint64_t        hash;
    media_rows     *r;            /* encoded rows, or NULL                            */
    bool            from_cache;
    double          encode_ms;
} pmedia;

struct tw_prompt {
    const tw_model *m;
    char           *text;         /* rendered                                         */
    int32_t        *ids;          /* [n_ids] placeholders expanded                    */
    uint64_t       *tags;         /* [n_ids] 0 for text, the medium's hash otherwise  */
    size_t          n_ids;
    pmedia         *media;        /* [n_media] in prompt order                        */
    size_t          n_media;
    float          *embd;         /* [n_rows][H] all media rows, built on demand      */
    size_t          n_rows;
    float          *chunk;        /* [chunk_cap][H] a chunk's rows when they come from
                                  ** several media (tw_prompt_chunk), else NULL        */
    size_t          chunk_cap;
};

static const char *const k_placeholder[2] = { "<image>", "<video>" };
static const char *const k_kind_name[2] = { "image", "video" };

/* The model's placeholder token of each kind (-1: the model has none, so the text is text). */
static int32_t media_token(const tw_model *m, tw_media_kind k) {
    if (!m->has_vision) return -1;
    return k == TW_MEDIA_IMAGE ? m->image_token_id : m->video_token_id;
}

static size_t count_str(const char *s, const char *needle) {
    size_t n = 0, l = strlen(needle);
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += l) n++;
    return n;
}

/* Appends text to b with want[k] placeholders of each kind: as written when the text has that
** many, else (none written and prepend) one "<image>\n" per image then one "<video>\n" per
** video before it. where: prefix of messages ("message 2: ", or ""). */
static tw_status place_media(const tw_model *m, const char *text, const size_t want[2], bool prepend,
                             const char *where, tw_buf *b) {
    size_t add[2] = { 0, 0 };
    for (int k = 0; k < 2; k++) {
        if (media_token(m, (tw_media_kind)k) < 0) {   /* the model takes no such media: plain text */
            if (want[k]) {
                TW_TRY(k == TW_MEDIA_IMAGE ? tw_vision_check_image(m) : tw_vision_check_video(m));
                return tw_err(TW_E_ARG, "%s: this model takes no %ss", m->dir, k_kind_name[k]);
            }
            continue;
        }
        size_t have = count_str(text, k_placeholder[k]);
        if (have == want[k]) continue;
        if (have == 0 && prepend) {
            add[k] = want[k];
            continue;
        }
        return tw_err(TW_E_ARG, "%sthe prompt has %zu %s placeholder(s) but %zu %s(s) were given: write one %s where "
                      "each %s goes%s", where, have, k_placeholder[k], want[k], k_kind_name[k], k_placeholder[k],
                      k_kind_name[k], prepend ? ", or none to put them first" : "");
    }
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < add[k]; i++) TW_TRY(tw_buf_appendf(b, "%s\n", k_placeholder[k]));
    return tw_buf_append(b, text, strlen(text));
}

void tw_prompt_free(tw_prompt *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_media; i++) rows_unref(p->media[i].r);
    free(p->media);
    free(p->text);
    free(p->ids);
    free(p->tags);
    free(p->embd);
    free(p->chunk);
    free(p);
}

/* Expands the placeholders of a tokenized prompt: the i-th media token (either kind) stands for
** counts[i] tokens. Shared with tw_tokenize_prompt. */
static tw_status expand(const tw_model *m, const int32_t *ids, size_t n, const int32_t *counts, size_t n_media,
                        int32_t **out_ids, size_t *n_out) {
    int32_t img = media_token(m, TW_MEDIA_IMAGE), vid = media_token(m, TW_MEDIA_VIDEO);
#define IS_MEDIA(id) (((id) == img && img >= 0) || ((id) == vid && vid >= 0))
    size_t n_ph = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!IS_MEDIA(ids[i])) total++;
        else total += n_ph < n_media ? (size_t)TW_MAX(counts[n_ph], 0) : 0, n_ph++;
    }
    if (n_ph != n_media)
        return tw_err(TW_E_ARG, "the prompt has %zu <image>/<video> placeholder(s) but %zu image(s)/video(s) were given",
                      n_ph, n_media);
    int32_t *o = tw_malloc(sizeof(int32_t) * (total ? total : 1));
    if (!o) return TW_E_NOMEM;
    size_t k = 0, ph = 0;
    for (size_t i = 0; i < n; i++) {
        if (!IS_MEDIA(ids[i])) {
            o[k++] = ids[i];
            continue;
        }
        for (int32_t r = 0; r < counts[ph]; r++) o[k++] = ids[i];
        ph++;
    }
#undef IS_MEDIA
    assert(k == total);
    *out_ids = o;
    *n_out = k;
    return TW_OK;
}

tw_status tw_tokenize_prompt(const tw_model *m, const char *prompt, size_t len, const int32_t *n_tokens,
                             size_t n_media, int32_t **ids_out, size_t *n_out) {
    *ids_out = NULL;
    *n_out = 0;
    int32_t *ids = NULL;
    size_t n = 0;
    TW_TRY(tw_tokenize(m->tok, prompt, len, 0, &ids, &n));
    /* <image> and <video> are added tokens, matched atomically, so expanding the id after
    ** tokenizing gives the same ids as the processor's expanding the string before. */
    tw_status s = expand(m, ids, n, n_tokens, n_media, ids_out, n_out);
    free(ids);
    return s;
}

/* The rendered text (taken) with its images and videos (each list in the order of its kind's
** placeholders) -> tokens, media in prompt order, counts, hashes. */
static tw_status finish(tw_prompt *p, const tw_image *const *imgs, size_t n_img, const tw_video *const *vids,
                        size_t n_vid) {
    const tw_model *m = p->m;
    int32_t tok[2] = { media_token(m, TW_MEDIA_IMAGE), media_token(m, TW_MEDIA_VIDEO) };
    int32_t *raw = NULL, *counts = NULL;
    size_t n_raw = 0, n_media = n_img + n_vid;
    TW_TRY(tw_tokenize(m->tok, p->text, strlen(p->text), 0, &raw, &n_raw));
    tw_status s = TW_OK;
    p->media = tw_calloc(n_media ? n_media : 1, sizeof *p->media);
    counts = tw_malloc(sizeof(int32_t) * (n_media ? n_media : 1));
    if (!p->media || !counts) s = TW_E_NOMEM;
    /* the i-th placeholder of a kind in the text is the i-th medium of that kind */
    size_t seen[2] = { 0, 0 }, want[2] = { n_img, n_vid };
    bool single = tw_vision_single_tile(m, n_img);
    for (size_t i = 0; s == TW_OK && i < n_raw; i++) {
        int k = raw[i] == tok[0] && tok[0] >= 0 ? 0 : raw[i] == tok[1] && tok[1] >= 0 ? 1 : -1;
        if (k < 0) continue;
        if (seen[k] < want[k]) {
            pmedia *pm = &p->media[p->n_media++];
            pm->kind = (tw_media_kind)k;
            pm->index = (int32_t)seen[k];
            if (k == TW_MEDIA_IMAGE) {
                pm->im = imgs[seen[k]];
                pm->single_tile = single;
                s = tw_vision_image_tokens(m, pm->im->w, pm->im->h, single, &pm->n_tokens);
            } else {
                pm->vid = vids[seen[k]];
                s = tw_vision_video_tokens(m, pm->vid->n_frames, &pm->n_tokens);
            }
            if (s == TW_OK) pm->hash = media_hash(pm->kind, pm->im, pm->vid, pm->single_tile);
            if (s != TW_OK && n_media > 1) s = tw_err_prefix(s, "%s %zu", k_kind_name[k], seen[k] + 1);
            counts[p->n_media - 1] = pm->n_tokens;
        }
        seen[k]++;
    }
    for (int k = 0; s == TW_OK && k < 2; k++)
        if (seen[k] != want[k])   /* the template dropped or repeated a placeholder */
            s = tw_err(TW_E_ARG, "the rendered prompt has %zu %s placeholder(s) but %zu %s(s) were given", seen[k],
                       k_placeholder[k], want[k], k_kind_name[k]);
    if (s == TW_OK) s = expand(m, raw, n_raw, counts, p->n_media, &p->ids, &p->n_ids);
    if (s == TW_OK && !(p->tags = tw_calloc(p->n_ids ? p->n_ids : 1, sizeof *p->tags))) s = TW_E_NOMEM;
    for (size_t i = 0, k = 0, pos = 0; s == TW_OK && i < n_raw; i++) {   /* first tokens and tags */
        bool media = (raw[i] == tok[0] && tok[0] >= 0) || (raw[i] == tok[1] && tok[1] >= 0);
        if (!media) {
            pos++;
            continue;
        }
        pmedia *pm = &p->media[k++];
        pm->first = pos;
        for (int32_t r = 0; r < pm->n_tokens; r++) p->tags[pos++] = pm->hash;
    }
    free(raw);
    free(counts);
    return s;
}

static tw_prompt *prompt_new(const tw_model *m) {
    tw_prompt *p = tw_calloc(1, sizeof *p);
    if (p) p->m = m;
    return p;
}

/* Splits media into its images and its videos, each in order. */
static tw_status split_media(const tw_media *media, size_t n, const tw_image ***imgs, size_t *n_img,
                             const tw_video ***vids, size_t *n_vid) {
    *imgs = tw_malloc(sizeof **imgs * (n ? n : 1));
    *vids = tw_malloc(sizeof **vids * (n ? n : 1));
    *n_img = *n_vid = 0;
    if (!*imgs || !*vids) return TW_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (media[i].kind == TW_MEDIA_IMAGE && media[i].image) (*imgs)[(*n_img)++] = media[i].image;
        else if (media[i].kind == TW_MEDIA_VIDEO && media[i].video) (*vids)[(*n_vid)++] = media[i].video;
        else return tw_err(TW_E_ARG, "medium %zu: no %s given", i + 1, media[i].kind == TW_MEDIA_VIDEO ? "video" : "image");
    }
    return TW_OK;
}

/* The user text with its placeholders placed, rendered as [system?, user] (or as is: raw). */
static tw_status render_text(const tw_model *m, const char *system, const char *text, size_t len, size_t n_img,
                             size_t n_vid, unsigned flags, char **out) {
    *out = NULL;
    bool raw = flags & TW_PROMPT_RAW;
    if (raw && system) return tw_err(TW_E_ARG, "tw_prompt_from_text: a raw prompt takes no system message");
    if (memchr(text, 0, len)) return tw_err(TW_E_ARG, "the prompt contains a NUL byte");
    tw_buf b = { 0 };
    char *user = tw_strndup(text, len), *placed = NULL;
    tw_status s = user ? place_media(m, user, (size_t[2]){ n_img, n_vid }, !raw && !(flags & TW_PROMPT_NO_PREPEND), "", &b)
                       : TW_E_NOMEM;
    if (s == TW_OK && !(placed = tw_buf_detach(&b, NULL))) s = TW_E_NOMEM;
    if (s == TW_OK && raw) {
        *out = placed;
        placed = NULL;
    } else if (s == TW_OK) {
        tw_message msgs[2];
        size_t n = 0;
        if (system) msgs[n++] = (tw_message){ "system", system };
        msgs[n++] = (tw_message){ "user", placed };
        s = tw_chat_render(m, msgs, n, 1, out);
    }
    tw_buf_free(&b);
    free(user), free(placed);
    return s;
}

tw_status tw_prompt_render(const tw_model *m, const char *system, const char *text, size_t len, size_t n_images,
                           size_t n_videos, unsigned flags, char **out) {
    if (!m || !text || !out) return tw_err(TW_E_ARG, "tw_prompt_render: NULL argument");
    return render_text(m, system, text, len, n_images, n_videos, flags, out);
}

tw_status tw_prompt_from_text(const tw_model *m, const char *system, const char *text, size_t len,
                              const tw_media *media, size_t n_media, unsigned flags, tw_prompt **out) {
    if (!m || !text || !out || (n_media && !media)) return tw_err(TW_E_ARG, "tw_prompt_from_text: NULL argument");
    *out = NULL;
    const tw_image **imgs = NULL;
    const tw_video **vids = NULL;
    size_t n_img = 0, n_vid = 0;
    tw_prompt *p = prompt_new(m);
    tw_status s = p ? split_media(media, n_media, &imgs, &n_img, &vids, &n_vid) : TW_E_NOMEM;
    if (s == TW_OK) s = render_text(m, system, text, len, n_img, n_vid, flags, &p->text);
    if (s == TW_OK) s = finish(p, imgs, n_img, vids, n_vid);
    free(imgs), free(vids);
    if (s != TW_OK) {
        tw_prompt_free(p);
        return s;
    }
    *out = p;
    return TW_OK;
}

/* TW_PROMPT_CONTINUE_FINAL: cuts the rendering right after the last message's text (the template
** may trim it: the trimmed text is looked for), so that what follows continues it. */
static tw_status cut_after_final(char *text, const char *last) {
    if (!last) return tw_err(TW_E_ARG, "continue the final message: there is no message");
    const char *b = last, *e = last + strlen(last);
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    size_t n = (size_t)(e - b);
    if (n == 0) return tw_err(TW_E_ARG, "continue the final message: its text is empty");
    char *hit = NULL;
    for (char *q = text; (q = memmem(q, strlen(q), b, n)) != NULL; q++) hit = q;
    if (!hit) return tw_err(TW_E_TEMPLATE, "continue the final message: the chat template does not write its text as given");
    hit[n] = '\0';
    return TW_OK;
}

tw_status tw_prompt_from_chat(const tw_model *m, const tw_chat_message *msgs, size_t n_msgs, int add_generation_prompt,
                              tw_prompt **out) {
    if (!m || !out || (n_msgs && !msgs)) return tw_err(TW_E_ARG, "tw_prompt_from_chat: NULL argument");
    *out = NULL;
    size_t n_parts = 0;
    for (size_t i = 0; i < n_msgs; i++) n_parts += msgs[i].n_parts;
    tw_prompt *p = prompt_new(m);
    const tw_image **imgs = tw_malloc(sizeof *imgs * (n_parts ? n_parts : 1));
    const tw_video **vids = tw_malloc(sizeof *vids * (n_parts ? n_parts : 1));
    tw_message *tm = tw_calloc(n_msgs ? n_msgs : 1, sizeof *tm);
    char **contents = tw_calloc(n_msgs ? n_msgs : 1, sizeof *contents);
    size_t n_img = 0, n_vid = 0;
    tw_status s = p && imgs && vids && tm && contents ? TW_OK : TW_E_NOMEM;
    for (size_t i = 0; s == TW_OK && i < n_msgs; i++) {
        const tw_chat_message *cm = &msgs[i];
        tw_buf text = { 0 }, placed = { 0 };
        size_t want[2] = { 0, 0 };
        char where[32];
        snprintf(where, sizeof where, "message %zu: ", i + 1);
        if (!cm->role || (cm->n_parts && !cm->parts)) s = tw_err(TW_E_ARG, "message %zu: no role or no parts", i + 1);
        for (size_t j = 0; s == TW_OK && j < cm->n_parts; j++) {
            const tw_part *pt = &cm->parts[j];
            if (pt->type == TW_PART_TEXT && pt->text) s = tw_buf_append(&text, pt->text, strlen(pt->text));
            else if (pt->type == TW_PART_IMAGE && pt->image) imgs[n_img++] = pt->image, want[0]++;
            else if (pt->type == TW_PART_VIDEO && pt->video) vids[n_vid++] = pt->video, want[1]++;
            else s = tw_err(TW_E_ARG, "message %zu, part %zu: type %d without its text, image or video", i + 1, j + 1,
                            (int)pt->type);
        }
        if (s == TW_OK) s = tw_buf_putc(&text, 0);   /* NUL-terminated, even when empty */
        if (s == TW_OK) s = place_media(m, text.data, want, true, n_msgs > 1 ? where : "", &placed);
        if (s == TW_OK && !(contents[i] = tw_buf_detach(&placed, NULL))) s = TW_E_NOMEM;
        tm[i] = (tw_message){ cm->role, contents[i] };
        tw_buf_free(&text), tw_buf_free(&placed);
    }
    bool cont = add_generation_prompt == TW_PROMPT_CONTINUE_FINAL;
    if (s == TW_OK) s = tw_chat_render(m, tm, n_msgs, cont ? 0 : add_generation_prompt, &p->text);
    if (s == TW_OK && cont) s = cut_after_final(p->text, n_msgs ? contents[n_msgs - 1] : NULL);
    if (s == TW_OK) s = finish(p, imgs, n_img, vids, n_vid);
    for (size_t i = 0; contents && i < n_msgs; i++) free(contents[i]);
    free(contents), free(tm), free(imgs), free(vids);
    if (s != TW_OK) {
        tw_prompt_free(p);
        return s;
    }
    *out = p;
    return TW_OK;
}

tw_status tw_prompt_from_ids(const tw_model *m, const int32_t *ids, size_t n, tw_prompt **out) {
    if (!m || !out || (n && !ids)) return tw_err(TW_E_ARG, "tw_prompt_from_ids: NULL argument");
    *out = NULL;
    if (n == 0) return tw_err(TW_E_ARG, "tw_prompt_from_ids: no tokens");
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= m->text.n_vocab)
            return tw_err(TW_E_ARG, "token id %d at index %zu is outside the vocabulary [0, %d)", (int)ids[i], i, (int)m->text.n_vocab);
        if (tw_is_media_token(m, ids[i]))
            return tw_err(TW_E_ARG, "token %zu is the image / video placeholder %d: give media as messages, not ids", i, (int)ids[i]);
    }
    tw_prompt *p = prompt_new(m);
    if (!p) return TW_E_NOMEM;
    p->ids = tw_malloc(n * sizeof *p->ids);
    p->tags = tw_calloc(n, sizeof *p->tags);
    tw_status s = p->ids && p->tags ? TW_OK : TW_E_NOMEM;
    if (s == TW_OK) {
        memcpy(p->ids, ids, n * sizeof *ids);
        p->n_ids = n;
        const tw_tokenizer *tok = tw_model_tokenizer(m);
        size_t len = 0;
        if (tok) s = tw_detokenize(tok, ids, n, 0, &p->text, &len);
        else if (!(p->text = tw_calloc(1, 1))) s = TW_E_NOMEM;
    }
    if (s != TW_OK) {
        tw_prompt_free(p);
        return s;
    }
    *out = p;
    return TW_OK;
}

const char *tw_prompt_text(const tw_prompt *p) { return p ? p->text : NULL; }
size_t tw_prompt_n_tokens(const tw_prompt *p) { return p ? p->n_ids : 0; }
const int32_t *tw_prompt_tokens(const tw_prompt *p) { return p ? p->ids : NULL; }
size_t tw_prompt_n_media(const tw_prompt *p) { return p ? p->n_media : 0; }

tw_status tw_prompt_media(const tw_prompt *p, size_t i, tw_prompt_media_info *out) {
    if (!p || !out || i >= p->n_media)
        return tw_err(TW_E_ARG, "tw_prompt_media: medium %zu of a prompt with %zu", i, p ? p->n_media : 0);
    const pmedia *pm = &p->media[i];
    *out = (tw_prompt_media_info){ .kind = pm->kind, .image = pm->im, .video = pm->vid, .index = pm->index,
                                   .n_tokens = pm->n_tokens, .first_token = pm->first,
                                   .single_tile = pm->single_tile, .hash = pm->hash, .encoded = pm->r != NULL,
                                   .from_cache = pm->from_cache, .encode_ms = pm->encode_ms };
    return TW_OK;
}

/* ---- encoding ------------------------------------------------------------------------------------ */

static tw_status encode_one(const tw_model *m, pmedia *pm, const tw_encode_opts *opts, media_rows **out, double *ms) {
    size_t H = (size_t)m->text.n_embd, bytes;
    if (tw_mul_overflow((size_t)pm->n_tokens * H, sizeof(float), &bytes)) return TW_E_NOMEM;
    media_rows *r = tw_calloc(1, sizeof *r);
    float *data = r ? tw_malloc(bytes) : NULL;
    if (!data) {
        free(r);
        return TW_E_NOMEM;
    }
    *r = (media_rows){ .refs = 1, .key = pm->hash, .n = pm->n_tokens, .bytes = bytes, .data = data };
    tw_vision_obs obs = { opts ? opts->on_tensor : NULL, opts ? opts->user_data : NULL, pm->index };
    double t0 = tw_time_ms();
    tw_status s = pm->kind == TW_MEDIA_IMAGE ? tw_vision_encode_image(m, pm->im, pm->single_tile, &obs, data)
                                             : tw_vision_encode_video(m, pm->vid, &obs, data);
    *ms = tw_time_ms() - t0;
    if (s != TW_OK) {
        rows_unref(r);
        return s;
    }
    *out = r;
    return TW_OK;
}

/* Encodes the media with tokens at positions >= from. */
static tw_status encode_from(tw_prompt *p, tw_media_cache *cache, const tw_encode_opts *opts, size_t from) {
    if (cache && cache->m != p->m) return tw_err(TW_E_ARG, "tw_prompt_encode: the media cache belongs to another model");
    size_t n_img = 0, n_vid = 0;
    for (size_t i = 0; i < p->n_media; i++) *(p->media[i].kind == TW_MEDIA_IMAGE ? &n_img : &n_vid) += 1;
    for (size_t i = 0; i < p->n_media; i++) {
        pmedia *pm = &p->media[i];
        if (pm->r || pm->first + (size_t)pm->n_tokens <= from) continue;
        if (cache && (pm->r = cache_find(cache, pm->hash))) {
            pm->from_cache = true;
            continue;
        }
        double ms = 0;
        tw_status s = encode_one(p->m, pm, opts, &pm->r, &ms);
        pm->encode_ms = ms;
        if (s != TW_OK) {
            size_t n = pm->kind == TW_MEDIA_IMAGE ? n_img : n_vid;
            return n > 1 ? tw_err_prefix(s, "%s %d of %zu", k_kind_name[pm->kind], pm->index + 1, n) : s;
        }
        if (cache) cache_put(cache, pm->r, pm->kind, ms);
    }
    return TW_OK;
}

tw_status tw_prompt_encode(tw_prompt *p, tw_media_cache *cache, const tw_encode_opts *opts) {
    if (!p) return tw_err(TW_E_ARG, "tw_prompt_encode: NULL prompt");
    return encode_from(p, cache, opts, 0);
}

tw_status tw_prompt_encode_from(tw_prompt *p, size_t from, tw_media_cache *cache, const tw_encode_opts *opts) {
    if (!p) return tw_err(TW_E_ARG, "tw_prompt_encode_from: NULL prompt");
    if (from > p->n_ids)
        return tw_err(TW_E_ARG, "tw_prompt_encode_from: position %zu is past the prompt's %zu tokens", from, p->n_ids);
    return encode_from(p, cache, opts, from);
}

tw_status tw_prompt_embd(tw_prompt *p, const float **out, size_t *n_rows) {
    /* the concatenation is built once, on first request */
    *out = NULL;
    *n_rows = 0;
    size_t H = (size_t)p->m->text.n_embd, total = 0;
    for (size_t i = 0; i < p->n_media; i++) {
        if (!p->media[i].r) return tw_err(TW_E_ARG, "tw_prompt_embd: the prompt's media are not encoded yet");
        total += (size_t)p->media[i].n_tokens;
    }
    if (!p->embd && total) {
        float *e = tw_malloc(sizeof(float) * total * H);
        if (!e) return TW_E_NOMEM;
        for (size_t i = 0, r = 0; i < p->n_media; r += (size_t)p->media[i].n_tokens, i++)
            memcpy(e + r * H, p->media[i].r->data, sizeof(float) * (size_t)p->media[i].n_tokens * H);
        p->embd = e;
        p->n_rows = total;
    }
    *out = p->embd;
    *n_rows = p->n_rows;
    return TW_OK;
}

/* ---- into a sequence ------------------------------------------------------------------------------ */

/* TW_E_CONTEXT saying what takes the room. room: tokens that must stay free after the prompt. */
static tw_status too_long(const tw_prompt *p, int32_t n_ctx, size_t room) {
    size_t n = p->n_ids, img_tok = 0, n_img = 0, vid_tok = 0, n_vid = 0, frames = 0;
    for (size_t i = 0; i < p->n_media; i++) {
        const pmedia *pm = &p->media[i];
        if (pm->kind == TW_MEDIA_IMAGE) img_tok += (size_t)pm->n_tokens, n_img++;
        else vid_tok += (size_t)pm->n_tokens, n_vid++, frames += (size_t)pm->vid->n_frames;
    }
    if (!p->n_media)
        return tw_err(TW_E_CONTEXT, "the prompt has %zu tokens but the context holds %d: shorten the prompt or use a "
                      "larger context", n, n_ctx);
    if (!n_vid)
        return tw_err(TW_E_CONTEXT, "the prompt has %zu tokens (%zu of them for %zu image(s)) but the context holds %d: "
                      "use fewer or smaller images, a shorter prompt, or a larger context", n, img_tok, n_img, n_ctx);
    /* tokens per frame; the rest of the prompt and one newline per video stay */
    size_t per = (vid_tok - n_vid) / (frames ? frames : 1), fixed = n - vid_tok + n_vid;
    long fit = fixed + room <= (size_t)n_ctx ? (long)(((size_t)n_ctx - room - fixed) / (per ? per : 1) / n_vid) : 0;
    char hint[64], imgs[64] = "";
    if (fit >= 1) snprintf(hint, sizeof hint, "sample fewer frames (%ld fit)", fit);
    else snprintf(hint, sizeof hint, "shorten the prompt");
    if (n_img) snprintf(imgs, sizeof imgs, ", the image(s) %zu", img_tok);
    return tw_err(TW_E_CONTEXT, "the prompt has %zu tokens but the context holds %d: the video%s take%s %zu (%zu frames x "
                  "%zu + %zu)%s; %s or use a larger context", n, n_ctx, n_vid > 1 ? "s" : "", n_vid > 1 ? "" : "s",
                  vid_tok, frames, per, n_vid, imgs, hint);
}

/* Checks that s and p go together and that p fits in s with `room` positions to spare. */
static tw_status check_fit(const tw_seq *s, const tw_prompt *p, size_t room, const char *who) {
    if (!s || !p) return tw_err(TW_E_ARG, "%s: NULL argument", who);
    if (s->m != p->m) return tw_err(TW_E_ARG, "%s: the sequence and the prompt belong to different models", who);
    if (p->n_ids == 0) return tw_err(TW_E_ARG, "the prompt is empty");
    if (p->n_ids + room > (size_t)s->n_ctx) return too_long(p, s->n_ctx, room);
    return TW_OK;
}

/* The longest prefix of p that s holds, the same ids and, for media tokens, the same medium (the
** hashes are known before encoding: the kept prefix needs no rows); at most all but the last
** token, so that something is evaluated and the logits are fresh. */
static size_t shared_prefix(const tw_seq *s, const tw_prompt *p) {
    const int32_t *ids = tw_seq_tokens(s);
    const uint64_t *tags = tw_seq_tags(s);
    size_t pos = (size_t)tw_seq_pos(s), n = p->n_ids, k = 0;
    while (k < n && k < pos && ids[k] == p->ids[k] && tags[k] == p->tags[k]) k++;
    return k == n ? k - 1 : k;
}

size_t tw_prompt_match(const tw_seq *s, const tw_prompt *p) {
    if (!s || !p) return 0;
    const int32_t *ids = tw_seq_tokens(s);
    const uint64_t *tags = tw_seq_tags(s);
    size_t pos = (size_t)tw_seq_pos(s), k = 0;
    while (k < p->n_ids && k < pos && ids[k] == p->ids[k] && tags[k] == p->tags[k]) k++;
    return k;
}

tw_status tw_prompt_reuse(tw_seq *s, const tw_prompt *p, size_t *n_reused) {
    if (n_reused) *n_reused = 0;
    TW_TRY(check_fit(s, p, 0, "tw_prompt_reuse"));
    size_t k = shared_prefix(s, p);
    TW_TRY(tw_seq_rewind(s, (int32_t)k));
    if (n_reused) *n_reused = k;
    return TW_OK;
}

/* Grows the chunk scratch to n rows. */
static tw_status chunk_reserve(tw_prompt *p, size_t n) {
    if (n <= p->chunk_cap) return TW_OK;
    size_t H = (size_t)p->m->text.n_embd, bytes;
    if (tw_mul_overflow(n * H, sizeof(float), &bytes)) return TW_E_NOMEM;
    float *c = tw_malloc(bytes);   /* nothing to keep: each chunk fills it anew */
    if (!c) return TW_E_NOMEM;
    free(p->chunk);
    p->chunk = c;
    p->chunk_cap = n;
    return TW_OK;
}

static void chunk_release(tw_prompt *p) {
    free(p->chunk);
    p->chunk = NULL;
    p->chunk_cap = 0;
}

/* A chunk's rows come straight from its medium when it overlaps one (no copy: a video's 6,000
** rows are not duplicated), and are gathered in the prompt's scratch when it overlaps several. */
tw_status tw_prompt_chunk(tw_prompt *p, size_t from, size_t n, const int32_t **ids, tw_eval_opts *opts) {
    if (ids) *ids = NULL;
    if (opts) memset(opts, 0, sizeof *opts);
    if (!p || !ids || !opts) return tw_err(TW_E_ARG, "tw_prompt_chunk: NULL argument");
    if (from > p->n_ids || n > p->n_ids - from)
        return tw_err(TW_E_ARG, "tw_prompt_chunk: tokens [%zu, %zu) of a prompt of %zu", from, from + n, p->n_ids);
    size_t H = (size_t)p->m->text.n_embd, end = from + n, n_rows = 0, n_over = 0;
    const float *rows = NULL;
    for (size_t i = 0; i < p->n_media; i++) {   /* the media overlapping [from, end) */
        const pmedia *pm = &p->media[i];
        size_t lo = TW_MAX(pm->first, from), hi = TW_MIN(pm->first + (size_t)pm->n_tokens, end);
        if (lo >= hi) continue;
        if (!pm->r)
            return tw_err(TW_E_ARG, "tw_prompt_chunk: tokens [%zu, %zu) hold %s %d (tokens %zu to %zu), which is not "
                          "encoded: call tw_prompt_encode_from(p, %zu, ...) first", from, end, k_kind_name[pm->kind],
                          pm->index + 1, pm->first, pm->first + (size_t)pm->n_tokens - 1, from);
        rows = pm->r->data + (lo - pm->first) * H;
        n_rows += hi - lo;
        n_over++;
    }
    if (n_over > 1) {
        TW_TRY(chunk_reserve(p, n_rows));
        size_t r = 0;
        for (size_t i = 0; i < p->n_media; i++) {
            const pmedia *pm = &p->media[i];
            size_t lo = TW_MAX(pm->first, from), hi = TW_MIN(pm->first + (size_t)pm->n_tokens, end);
            if (lo >= hi) continue;
            memcpy(p->chunk + r * H, pm->r->data + (lo - pm->first) * H, sizeof(float) * (hi - lo) * H);
            r += hi - lo;
        }
        rows = p->chunk;
    }
    *ids = p->ids + from;
    opts->embd = rows;
    opts->n_embd_rows = n_rows;
    opts->tags = p->tags + from;
    return TW_OK;
}

/* tw_prompt_eval / tw_prompt_generate in one go: checks, keeps the shared prefix, encodes what
** the rest needs and gives *ids / *eo (the caller's scoring outputs plus the rows and tags) the
** rest, [*k_out, n). s is rewound only once all that succeeded: on error nothing has changed. */
static tw_status prepare(tw_seq *s, tw_prompt *p, tw_media_cache *cache, const tw_eval_opts *in, size_t room,
                         const char *who, const int32_t **ids, tw_eval_opts *eo, size_t *k_out) {
    TW_TRY(check_fit(s, p, room, who));
    if (in && (in->embd || in->n_embd_rows || in->tags))
        return tw_err(TW_E_ARG, "%s: opts->embd and opts->tags must be NULL (the prompt supplies its media rows and "
                      "tags)", who);
    size_t k = shared_prefix(s, p);
    TW_TRY(encode_from(p, cache, NULL, k));
    tw_eval_opts c;
    TW_TRY(tw_prompt_chunk(p, k, p->n_ids - k, ids, &c));
    TW_TRY(tw_seq_rewind(s, (int32_t)k));
    *eo = in ? *in : (tw_eval_opts){ 0 };
    eo->embd = c.embd;
    eo->n_embd_rows = c.n_embd_rows;
    eo->tags = c.tags;
    *k_out = k;
    return TW_OK;
}

tw_status tw_prompt_eval(tw_seq *s, tw_prompt *p, tw_media_cache *cache, const tw_eval_opts *opts, size_t *n_reused) {
    const int32_t *ids = NULL;
    tw_eval_opts eo;
    size_t k = 0;
    if (n_reused) *n_reused = 0;
    TW_TRY(prepare(s, p, cache, opts, 0, "tw_prompt_eval", &ids, &eo, &k));
    tw_status st = tw_seq_eval(s, ids, p->n_ids - k, &eo);
    chunk_release(p);   /* a whole prompt's gathered rows are not asked for twice */
    if (st != TW_OK) {
        tw_seq_rewind(s, (int32_t)k);
        return st;
    }
    if (n_reused) *n_reused = k;
    return TW_OK;
}

tw_status tw_prompt_generate(tw_seq *s, tw_prompt *p, tw_media_cache *cache, const tw_gen_params *gp,
                             tw_token_fn on_token, void *user_data, tw_gen_result *out, size_t *n_reused) {
    if (!out) return tw_err(TW_E_ARG, "tw_prompt_generate: out is NULL");
    memset(out, 0, sizeof *out);
    const int32_t *ids = NULL;
    tw_eval_opts eo;
    size_t k = 0;
    if (n_reused) *n_reused = 0;
    TW_TRY(prepare(s, p, cache, NULL, 1, "tw_prompt_generate", &ids, &eo, &k));
    tw_status st = tw_generate(s, ids, p->n_ids - k, &eo, gp, on_token, user_data, out);
    chunk_release(p);
    if (st != TW_OK) {
        tw_seq_rewind(s, (int32_t)k);   /* what the failed call left is not known */
        return st;
    }
    if (n_reused) *n_reused = k;
    return TW_OK;
}
