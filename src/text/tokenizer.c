/*
** tokenizer.c — Hugging Face tokenizer.json: BPE with byte fallback and added tokens, as used by
** Gemma-family models (Gemma 2, Tower+, TowerVision). Encoding, decoding and a streaming decoder.
**
** The pipeline (docs/tokenizer.md has the full rules, fixtures/tokenizer/README.md the evidence):
**   encode: added tokens matched leftmost-longest on the raw text -> normalizer on each stretch
**           between them -> pre-tokenizer split -> BPE per word (lowest merge rank first, leftmost
**           on ties, byte fallback <0xNN>) -> post-processor template (<bos>).
**   decode: Replace('▁' -> ' ') per token -> ByteFallback (a run of <0xNN> tokens that is not
**           valid UTF-8 becomes one U+FFFD per byte token) -> Fuse (concatenate).
**
** Speed. The 11 MB tokenizer.json is mostly model.vocab (256k entries) and model.merges (580k).
** jansson alone needs 0.3-0.6 s to build its tree for that and 0.1 s to free it, so this file has
** its own small JSON scanner: it reads vocab and merges straight into flat open-addressing hash
** tables, and hands every other (small) field to jansson. A stretch of text between added tokens
** is one BPE word (a 20 KB paragraph can be a single word), so BPE uses a binary heap of candidate
** merges over a linked list of symbols: O(n log n).
*/
#include "tw_internal.h"

#include <ctype.h>
#include <stdlib.h>

/* ---- small helpers -------------------------------------------------------------------------- */

typedef struct tw_ivec {
    int32_t *v;
    size_t   n, cap;
} tw_ivec;

static tw_status ivec_push(tw_ivec *a, int32_t x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = tw_realloc(a->v, cap * sizeof *v);
        if (!v) return TW_E_NOMEM;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return TW_OK;
}

/* Bytes hash for the vocabulary table: 8 bytes at a time, murmur-style finaliser. */
static uint64_t hash_bytes(const void *data, size_t n) {
    const uint8_t *p = data;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, n);
    h = (h ^ v) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 29;
    return h;
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* Length of the valid UTF-8 character at s (strict: no overlongs, surrogates or > U+10FFFF),
** or 0 when the bytes there are not one. *cp receives the code point. */
static size_t utf8_char(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    uint32_t v = c & (0xFF >> (len + 1));
    for (size_t i = 1; i < len; i++) v = (v << 6) | (s[i] & 0x3F);
    *cp = v;
    return len;
}

/* What the bytes so far are: 0 = a complete character, 1 = a valid start of one, -1 = invalid. */
static int utf8_prefix_state(const uint8_t *s, size_t n) {
    uint32_t cp;
    if (utf8_char(s, n, &cp) == n) return 0;
    /* A prefix is valid when padding it with the smallest continuation bytes gives a character. */
    uint8_t t[4] = { 0 };
    memcpy(t, s, n);
    for (size_t fill = n; fill < 4; fill++) {
        t[fill] = (fill == 1 && t[0] == 0xF0) ? 0x90 : (fill == 1 && t[0] == 0xE0) ? 0xA0 : 0x80;
        if (utf8_char(t, fill + 1, &cp) == fill + 1) return 1;
    }
    return -1;
}

static bool utf8_valid(const uint8_t *s, size_t n) {
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_char(s + i, n - i, &cp);
        if (!k) return false;
        i += k;
    }
    return true;
}

/* "<0xNN>" -> NN, else -1. */
static int byte_token_value(const char *s, size_t n) {
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* ---- string rewriting steps (normalizer Replace/Prepend, decoder Replace) -------------------- */

enum { OP_REPLACE, OP_PREPEND };
typedef struct tw_strop {
    int    kind;
    char  *pat, *with;
    size_t pat_len, with_len;
} tw_strop;

typedef struct tw_strops {
    tw_strop *op;
    size_t    n;
} tw_strops;

static void strops_free(tw_strops *s) {
    for (size_t i = 0; i < s->n; i++) {
        free(s->op[i].pat);
        free(s->op[i].with);
    }
    free(s->op);
    s->op = NULL;
    s->n = 0;
}

static tw_status strop_apply_one(const tw_strop *op, const char *s, size_t n, tw_buf *out) {
    out->len = 0;
    if (op->kind == OP_PREPEND) {
        if (n) TW_TRY(tw_buf_append(out, op->with, op->with_len));
        return tw_buf_append(out, s, n);
    }
    size_t i = 0, start = 0;
    while (i + op->pat_len <= n) {
        if (s[i] == op->pat[0] && memcmp(s + i, op->pat, op->pat_len) == 0) {
            TW_TRY(tw_buf_append(out, s + start, i - start));
            TW_TRY(tw_buf_append(out, op->with, op->with_len));
            i += op->pat_len;
            start = i;
        } else {
            i++;
        }
    }
    return tw_buf_append(out, s + start, n - start);
}

/* Applies every step in order; the result is either (s, n) itself (nothing to do) or one of the
** two scratch buffers. */
static tw_status strops_apply(const tw_strops *ops, const char *s, size_t n, tw_buf tmp[2],
                              const char **out, size_t *out_len) {
    for (size_t k = 0; k < ops->n; k++) {
        const tw_strop *op = &ops->op[k];
        if (op->kind == OP_REPLACE && !memmem(s, n, op->pat, op->pat_len)) continue;
        tw_buf *dst = (s == tmp[0].data) ? &tmp[1] : &tmp[0];
        TW_TRY(strop_apply_one(op, s, n, dst));
        s = dst->data ? dst->data : "";
        n = dst->len;
    }
    *out = s;
    *out_len = n;
    return TW_OK;
}

/* ---- added-token trie ----------------------------------------------------------------------- */

typedef struct tw_trie_node {
    int32_t child, sibling, token;
    uint8_t byte;
} tw_trie_node;

typedef struct tw_trie {
    tw_trie_node *node;   /* node[0] is the root */
    size_t        n, cap;
    int32_t       root[256];
    size_t        n_tokens;
} tw_trie;

static tw_status trie_init(tw_trie *t) {
    memset(t, 0, sizeof *t);
    for (int i = 0; i < 256; i++) t->root[i] = -1;
    return TW_OK;
}

static int32_t trie_child(const tw_trie *t, int32_t node, uint8_t b) {
    if (node == 0) return t->root[b];
    for (int32_t c = t->node[node].child; c >= 0; c = t->node[c].sibling)
        if (t->node[c].byte == b) return c;
    return -1;
}

static tw_status trie_add(tw_trie *t, const char *s, size_t n, int32_t token) {
    if (!n) return TW_OK;
    if (!t->node) {
        t->cap = 256;
        t->node = tw_malloc(t->cap * sizeof *t->node);
        if (!t->node) return TW_E_NOMEM;
        t->node[0] = (tw_trie_node){ -1, -1, -1, 0 };
        t->n = 1;
    }
    int32_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = trie_child(t, cur, b);
        if (c < 0) {
            if (t->n == t->cap) {
                tw_trie_node *nn = tw_realloc(t->node, t->cap * 2 * sizeof *nn);
                if (!nn) return TW_E_NOMEM;
                t->node = nn;
                t->cap *= 2;
            }
            c = (int32_t)t->n++;
            t->node[c] = (tw_trie_node){ -1, -1, -1, b };
            if (cur == 0) {
                t->root[b] = c;
            } else {
                t->node[c].sibling = t->node[cur].child;
                t->node[cur].child = c;
            }
        }
        cur = c;
    }
    t->node[cur].token = token;
    t->n_tokens++;
    return TW_OK;
}

/* Longest token starting at s[0]; returns its length (0 = none) and sets *token. */
static size_t trie_match(const tw_trie *t, const uint8_t *s, size_t n, int32_t *token) {
    size_t best = 0;
    int32_t node = t->root[s[0]];
    for (size_t k = 1; node >= 0; k++) {
        if (t->node[node].token >= 0) {
            best = k;
            *token = t->node[node].token;
        }
        if (k >= n) break;
        node = trie_child(t, node, s[k]);
    }
    return best;
}

/* ---- the tokenizer -------------------------------------------------------------------------- */

enum { FLAG_ADDED = 1, FLAG_SPECIAL = 2 };
enum { SPLIT_NONE, SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_PREV, SPLIT_NEXT };

typedef struct tw_merge_slot {
    uint64_t key;    /* (left id << 32) | right id; UINT64_MAX = empty */
    int32_t  rank;
    int32_t  id;     /* the merged token */
} tw_merge_slot;

/* One struct rather than two arrays: a vocabulary lookup then costs one cache miss less. */
typedef struct tw_piece {
    uint32_t off, len;
} tw_piece;

struct tw_tokenizer {
    /* Token strings: all pieces live in one arena; id -> (offset, length). */
    char     *text;
    size_t    text_len;
    tw_piece *piece;       /* off == UINT32_MAX: no token has this id */
    uint8_t  *flags;
    int32_t   n_ids;

    /* string -> id: slot = (hash high 32 bits << 32) | (id + 1); 0 = empty */
    uint64_t *vslot;
    size_t    vmask;

    tw_merge_slot *mslot;
    size_t         mmask;
    int            mshift;

    int32_t *bmp_id;       /* code point < 0x10000 -> id of that single-character token, or -1 */
    int32_t  byte_id[256]; /* <0xNN> tokens, -1 if absent */
    bool     byte_fallback, fuse_unk, ignore_merges;
    int32_t  unk_id;

    tw_trie   added_raw;   /* added tokens with normalized:false, matched on the raw text */
    tw_trie   added_norm;  /* normalized:true, matched on the normalized text           */
    tw_strops norm;
    int       split_kind;
    char     *split_pat;
    size_t    split_len;

    tw_ivec prefix, suffix; /* post-processor template around the sequence */
    int32_t bos;

    tw_strops dec_pre, dec_post;   /* decoder Replace steps before / after ByteFallback */
    bool      dec_bytes;
};

static int32_t vocab_find_h(const tw_tokenizer *t, const char *s, size_t n, uint64_t h) {
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = h & t->vmask;; i = (i + 1) & t->vmask) {
        uint64_t v = t->vslot[i];
        if (!v) return -1;
        if ((uint32_t)(v >> 32) == tag) {
            int32_t id = (int32_t)(uint32_t)v - 1;
            if (t->piece[id].len == n && memcmp(t->text + t->piece[id].off, s, n) == 0) return id;
        }
    }
}

static int32_t vocab_find(const tw_tokenizer *t, const char *s, size_t n) {
    if (!t->vslot) return -1;
    return vocab_find_h(t, s, n, hash_bytes(s, n));
}

/* Inserts id under its current piece; an existing entry with the same string is replaced. */
static void vocab_insert(tw_tokenizer *t, int32_t id) {
    const char *s = t->text + t->piece[id].off;
    size_t n = t->piece[id].len;
    uint64_t h = hash_bytes(s, n);
    uint32_t tag = (uint32_t)(h >> 32);
    uint64_t nv = ((uint64_t)tag << 32) | (uint32_t)(id + 1);
    for (size_t i = h & t->vmask;; i = (i + 1) & t->vmask) {
        uint64_t v = t->vslot[i];
        if (!v) { t->vslot[i] = nv; return; }
        if ((uint32_t)(v >> 32) == tag) {
            int32_t o = (int32_t)(uint32_t)v - 1;
            if (t->piece[o].len == n && memcmp(t->text + t->piece[o].off, s, n) == 0) {
                t->vslot[i] = nv;
                return;
            }
        }
    }
}

static inline size_t merge_slot_of(const tw_tokenizer *t, uint64_t key) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> t->mshift);
}

static inline const tw_merge_slot *merge_find(const tw_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (size_t i = merge_slot_of(t, key);; i = (i + 1) & t->mmask) {
        const tw_merge_slot *s = &t->mslot[i];
        if (s->key == key) return s;
        if (s->key == UINT64_MAX) return NULL;
    }
}

void tw_tokenizer_free(tw_tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->piece);
    free(t->flags);
    free(t->vslot);
    free(t->mslot);
    free(t->bmp_id);
    free(t->added_raw.node);
    free(t->added_norm.node);
    strops_free(&t->norm);
    strops_free(&t->dec_pre);
    strops_free(&t->dec_post);
    free(t->split_pat);
    free(t->prefix.v);
    free(t->suffix.v);
    free(t);
}

/* ---- a small JSON scanner for the big fields ------------------------------------------------ */

typedef struct tw_jscan {
    const char *p, *end, *base;
    const char *file;
} tw_jscan;

static tw_status js_fail(const tw_jscan *j, const char *at, const char *what) {
    int line = 1, col = 1;
    for (const char *q = j->base; q < at && q < j->end; q++) {
        if (*q == '\n') { line++; col = 1; } else col++;
    }
    return tw_err(TW_E_FORMAT, "%s:%d:%d: invalid JSON: %s", j->file, line, col, what);
}

static inline void js_ws(tw_jscan *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) j->p++;
}

static tw_status js_expect(tw_jscan *j, char c) {
    js_ws(j);
    if (j->p >= j->end || *j->p != c) {
        char msg[32];
        snprintf(msg, sizeof msg, "expected '%c'", c);
        return js_fail(j, j->p, msg);
    }
    j->p++;
    return TW_OK;
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static tw_status js_hex4(tw_jscan *j, uint32_t *v) {
    if (j->end - j->p < 4) return js_fail(j, j->p, "truncated \\u escape");
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) {
        int d = hexval(j->p[i]);
        if (d < 0) return js_fail(j, j->p, "bad \\u escape");
        x = x * 16 + (uint32_t)d;
    }
    j->p += 4;
    *v = x;
    return TW_OK;
}

/* Reads a string (j->p at the opening quote) and appends its unescaped bytes to out. */
static tw_status js_string(tw_jscan *j, tw_buf *out) {
    js_ws(j);
    if (j->p >= j->end || *j->p != '"') return js_fail(j, j->p, "expected a string");
    j->p++;
    for (;;) {
        const char *s = j->p;
        while (j->p < j->end && *j->p != '"' && *j->p != '\\' && (uint8_t)*j->p >= 0x20) j->p++;
        if (j->p > s) TW_TRY(tw_buf_append(out, s, (size_t)(j->p - s)));
        if (j->p >= j->end) return js_fail(j, s, "unterminated string");
        char c = *j->p++;
        if (c == '"') return TW_OK;
        if (c != '\\') return js_fail(j, j->p - 1, "control character in a string");
        if (j->p >= j->end) return js_fail(j, j->p, "unterminated string");
        char e = *j->p++;
        char ch;
        switch (e) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            uint32_t cp;
            TW_TRY(js_hex4(j, &cp));
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u')
                    return js_fail(j, j->p, "lone surrogate in \\u escape");
                j->p += 2;
                TW_TRY(js_hex4(j, &lo));
                if (lo < 0xDC00 || lo > 0xDFFF) return js_fail(j, j->p, "bad surrogate pair");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return js_fail(j, j->p, "lone surrogate in \\u escape");
            }
            char u[4];
            size_t n;
            if (cp < 0x80) { u[0] = (char)cp; n = 1; }
            else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
            else if (cp < 0x10000) {
                u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                u[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
            } else {
                u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
                u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
            }
            TW_TRY(tw_buf_append(out, u, n));
            continue;
        }
        default: return js_fail(j, j->p - 1, "bad escape in a string");
        }
        TW_TRY(tw_buf_putc(out, ch));
    }
}

/* Skips a string without unescaping it. */
static tw_status js_skip_string(tw_jscan *j) {
    const char *s = j->p++;
    while (j->p < j->end) {
        char c = *j->p++;
        if (c == '"') return TW_OK;
        if (c == '\\') j->p++;
    }
    return js_fail(j, s, "unterminated string");
}

/* Skips one value, checking only bracket structure; jansson checks the details of what it gets. */
static tw_status js_skip_value(tw_jscan *j) {
    js_ws(j);
    if (j->p >= j->end) return js_fail(j, j->p, "unexpected end of file");
    char stack[256];
    int depth = 0;
    for (;;) {
        js_ws(j);
        if (j->p >= j->end) return js_fail(j, j->p, "unexpected end of file");
        char c = *j->p;
        if (c == '"') {
            TW_TRY(js_skip_string(j));
        } else if (c == '{' || c == '[') {
            if (depth == (int)sizeof stack) return js_fail(j, j->p, "nested too deeply");
            stack[depth++] = c == '{' ? '}' : ']';
            j->p++;
            continue;
        } else if (c == '}' || c == ']') {
            if (!depth || stack[depth - 1] != c) return js_fail(j, j->p, "mismatched bracket");
            depth--;
            j->p++;
        } else if (c == ',' || c == ':') {
            if (!depth) return js_fail(j, j->p, "unexpected separator");
            j->p++;
            continue;
        } else {
            const char *s = j->p;
            while (j->p < j->end && (isalnum((unsigned char)*j->p) || *j->p == '-' || *j->p == '+' || *j->p == '.')) j->p++;
            if (j->p == s) return js_fail(j, s, "unexpected character");
        }
        if (!depth) return TW_OK;
    }
}

static tw_status js_int(tw_jscan *j, int64_t *out) {
    js_ws(j);
    const char *s = j->p;
    bool neg = j->p < j->end && *j->p == '-';
    if (neg) j->p++;
    int64_t v = 0;
    const char *d = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9' && v < ((int64_t)1 << 40)) v = v * 10 + (*j->p++ - '0');
    if (j->p == d || (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E' || isdigit((unsigned char)*j->p))))
        return js_fail(j, s, "expected an integer id");
    *out = neg ? -v : v;
    return TW_OK;
}

/* Returns true and consumes c when the next non-blank character is c. */
static bool js_peek(tw_jscan *j, char c) {
    js_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}

/* Parses an object whose values are ordinary JSON into a jansson object, except for the keys in
** `raw`, whose value spans are returned instead (raw_at[i] = start, NULL when absent). */
static tw_status js_object_split(tw_jscan *j, const char *const *raw, size_t n_raw,
                                 const char **raw_at, const char **raw_end, json_t **out) {
    for (size_t i = 0; i < n_raw; i++) raw_at[i] = raw_end[i] = NULL;
    TW_TRY(js_expect(j, '{'));
    json_t *obj = json_object();
    if (!obj) return tw_err(TW_E_NOMEM, "out of memory");
    tw_buf key = { 0 };
    tw_status st = TW_OK;
    if (!js_peek(j, '}')) {
        for (;;) {
            key.len = 0;
            if ((st = js_string(j, &key)) || (st = tw_buf_putc(&key, 0)) || (st = js_expect(j, ':'))) break;
            size_t klen = key.len - 1;
            js_ws(j);
            const char *vs = j->p;
            if ((st = js_skip_value(j))) break;
            size_t r = 0;
            while (r < n_raw && !(strlen(raw[r]) == klen && memcmp(raw[r], key.data, klen) == 0)) r++;
            if (r < n_raw) {
                raw_at[r] = vs;
                raw_end[r] = j->p;
            } else {
                json_error_t e;
                json_t *v = json_loadb(vs, (size_t)(j->p - vs), JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
                if (!v) { st = js_fail(j, vs + (e.position > 0 ? e.position : 0), e.text); break; }
                if (json_object_setn_new(obj, key.data, klen, v)) { st = tw_err(TW_E_NOMEM, "out of memory"); break; }
            }
            if (js_peek(j, ',')) continue;
            st = js_expect(j, '}');
            break;
        }
    }
    tw_buf_free(&key);
    if (st) {
        json_decref(obj);
        return st;
    }
    *out = obj;
    return TW_OK;
}

/* ---- loading -------------------------------------------------------------------------------- */

typedef struct tw_vocab_entry {
    uint32_t off, len;
    int32_t  id;
} tw_vocab_entry;

typedef struct tw_loader {
    tw_tokenizer *t;
    const char   *file;      /* tokenizer.json path, for messages */
    tw_buf        arena;     /* becomes t->text */
    tw_vocab_entry *ve;
    size_t        n_ve;
} tw_loader;

static tw_status load_vocab(tw_loader *L, tw_jscan *j) {
    size_t cap = 1024;
    L->ve = tw_malloc(cap * sizeof *L->ve);
    if (!L->ve) return TW_E_NOMEM;
    TW_TRY(js_expect(j, '{'));
    if (js_peek(j, '}')) return TW_OK;
    for (;;) {
        size_t off = L->arena.len;
        TW_TRY(js_string(j, &L->arena));
        TW_TRY(js_expect(j, ':'));
        int64_t id = 0;
        const char *at = j->p;
        TW_TRY(js_int(j, &id));
        if (id < 0 || id >= INT32_MAX / 2) return js_fail(j, at, "model.vocab: id out of range");
        if (L->n_ve == cap) {
            cap *= 2;
            tw_vocab_entry *nv = tw_realloc(L->ve, cap * sizeof *nv);
            if (!nv) return TW_E_NOMEM;
            L->ve = nv;
        }
        if (L->arena.len > UINT32_MAX) return tw_err(TW_E_UNSUPPORTED, "%s: model.vocab is too large", L->file);
        L->ve[L->n_ve++] = (tw_vocab_entry){ (uint32_t)off, (uint32_t)(L->arena.len - off), (int32_t)id };
        if (js_peek(j, ',')) continue;
        return js_expect(j, '}');
    }
}

typedef struct tw_merge_rec {
    int32_t a, b, id;
} tw_merge_rec;

static tw_status merge_missing(tw_loader *L, size_t i, const char *s, size_t n) {
    return tw_err(TW_E_FORMAT, "%s: model.merges[%zu]: token \"%.*s\" is not in model.vocab", L->file, i,
                  (int)TW_MIN(n, 200), s);
}

/* Looks up many strings at once. Each lookup is a chain of cache misses (hash slot, piece entry,
** token text); going through a batch stage by stage and prefetching the next link for every
** string overlaps those misses, which makes loading the 580k merges about twice as fast. */
typedef struct tw_lookup {
    const char *s;
    size_t      n;
    uint64_t    h;
    int32_t     id;
} tw_lookup;

static void vocab_find_batch(const tw_tokenizer *t, tw_lookup *q, size_t nq) {
    for (size_t k = 0; k < nq; k++) {
        q[k].h = hash_bytes(q[k].s, q[k].n);
        __builtin_prefetch(&t->vslot[q[k].h & t->vmask]);
    }
    for (size_t k = 0; k < nq; k++) {
        uint64_t v = t->vslot[q[k].h & t->vmask];
        q[k].id = v ? (int32_t)(uint32_t)v - 1 : -1;
        if (v) __builtin_prefetch(&t->piece[q[k].id]);
    }
    for (size_t k = 0; k < nq; k++)
        if (q[k].id >= 0) __builtin_prefetch(t->text + t->piece[q[k].id].off);
    for (size_t k = 0; k < nq; k++) q[k].id = vocab_find_h(t, q[k].s, q[k].n, q[k].h);
}

typedef struct tw_merge_str {
    uint32_t off, alen, blen;   /* a and b stored back to back at off */
} tw_merge_str;

static tw_status load_merges(tw_loader *L, tw_jscan *j) {
    tw_tokenizer *t = L->t;
    tw_merge_rec *rec = NULL;
    tw_merge_str *ms = NULL;
    size_t n = 0, cap = 0;
    tw_buf s = { 0 };
    /* First read every merge as text: strings a and b back to back (a+b is the merged token). */
    tw_status st = js_expect(j, '[');
    if (!st && !js_peek(j, ']')) {
        for (size_t i = 0;; i++) {
            size_t off = s.len, alen, blen;
            js_ws(j);
            if (js_peek(j, '[')) {   /* ["a", "b"] */
                if ((st = js_string(j, &s)) || (st = js_expect(j, ','))) break;
                alen = s.len - off;
                if ((st = js_string(j, &s)) || (st = js_expect(j, ']'))) break;
                blen = s.len - off - alen;
            } else {                  /* "a b" */
                if ((st = js_string(j, &s))) break;
                char *sp = memchr(s.data + off, ' ', s.len - off);
                if (!sp) { st = tw_err(TW_E_FORMAT, "%s: model.merges[%zu]: expected \"a b\"", L->file, i); break; }
                alen = (size_t)(sp - (s.data + off));
                blen = s.len - off - alen - 1;
                memmove(sp, sp + 1, blen);
                s.len--;
            }
            if (s.len > UINT32_MAX) { st = tw_err(TW_E_UNSUPPORTED, "%s: model.merges is too large", L->file); break; }
            if (n == cap) {
                cap = cap ? cap * 2 : 65536;
                tw_merge_str *nm = tw_realloc(ms, cap * sizeof *nm);
                if (!nm) { st = TW_E_NOMEM; break; }
                ms = nm;
            }
            ms[n++] = (tw_merge_str){ (uint32_t)off, (uint32_t)alen, (uint32_t)blen };
            if (js_peek(j, ',')) continue;
            st = js_expect(j, ']');
            break;
        }
    }
    /* Then resolve a, b and a+b to ids, a batch at a time. */
    if (!st && n) {
        rec = tw_malloc(n * sizeof *rec);
        if (!rec) st = TW_E_NOMEM;
    }
    enum { BATCH = 16 };
    for (size_t i0 = 0; !st && i0 < n; i0 += BATCH) {
        tw_lookup q[3 * BATCH];
        size_t nb = TW_MIN((size_t)BATCH, n - i0);
        for (size_t k = 0; k < nb; k++) {
            const tw_merge_str *m = &ms[i0 + k];
            const char *a = s.data + m->off;
            q[3 * k] = (tw_lookup){ a, m->alen, 0, -1 };
            q[3 * k + 1] = (tw_lookup){ a + m->alen, m->blen, 0, -1 };
            q[3 * k + 2] = (tw_lookup){ a, (size_t)m->alen + m->blen, 0, -1 };
        }
        vocab_find_batch(t, q, 3 * nb);
        for (size_t k = 0; k < nb; k++) {
            for (int c = 0; c < 3 && !st; c++)
                if (q[3 * k + c].id < 0) st = merge_missing(L, i0 + k, q[3 * k + c].s, q[3 * k + c].n);
            if (st) break;
            rec[i0 + k] = (tw_merge_rec){ q[3 * k].id, q[3 * k + 1].id, q[3 * k + 2].id };
        }
    }
    free(ms);
    tw_buf_free(&s);
    if (!st) {
        /* Load factor <= 2/3 keeps linear probing short. A pair listed twice keeps its last rank. */
        size_t slots = pow2_at_least(n + n / 2 + 1);
        t->mmask = slots - 1;
        t->mshift = 64;
        for (size_t c = slots; c > 1; c >>= 1) t->mshift--;
        t->mslot = tw_malloc(slots * sizeof *t->mslot);
        if (!t->mslot) st = TW_E_NOMEM;
        else {
            for (size_t i = 0; i < slots; i++) t->mslot[i].key = UINT64_MAX;
            for (size_t r = 0; r < n; r++) {
                uint64_t key = ((uint64_t)(uint32_t)rec[r].a << 32) | (uint32_t)rec[r].b;
                size_t i = merge_slot_of(t, key);
                while (t->mslot[i].key != UINT64_MAX && t->mslot[i].key != key) i = (i + 1) & t->mmask;
                t->mslot[i] = (tw_merge_slot){ key, (int32_t)r, rec[r].id };
            }
        }
    }
    free(rec);
    return st;
}

static tw_status unsupported(const char *file, const char *field, const json_t *v) {
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (s) return tw_err(TW_E_UNSUPPORTED, "%s: %s \"%s\" is not supported", file, field, s);
    return tw_err(TW_E_UNSUPPORTED, "%s: %s is not supported", file, field);
}

/* A {"String": "..."} pattern; regex patterns are not supported. */
static tw_status string_pattern(const char *file, const char *field, const json_t *o, char **out, size_t *n) {
    const json_t *p = json_object_get(o, "pattern");
    const json_t *s = json_is_object(p) ? json_object_get(p, "String") : NULL;
    if (!json_is_string(s) || !json_string_length(s)) {
        char f[96];
        snprintf(f, sizeof f, "%s.pattern (only a non-empty {\"String\": ...})", field);
        return unsupported(file, f, NULL);
    }
    *n = json_string_length(s);
    *out = tw_strndup(json_string_value(s), *n);
    return *out ? TW_OK : TW_E_NOMEM;
}

static tw_status strops_add(tw_strops *ops, const char *file, const char *field, const json_t *o, int kind) {
    tw_strop *no = tw_realloc(ops->op, (ops->n + 1) * sizeof *no);
    if (!no) return TW_E_NOMEM;
    ops->op = no;
    tw_strop *op = &ops->op[ops->n];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    const json_t *with = json_object_get(o, kind == OP_REPLACE ? "content" : "prepend");
    if (!json_is_string(with)) return tw_err(TW_E_CONFIG, "%s: %s: expected a string content", file, field);
    op->with_len = json_string_length(with);
    op->with = tw_strndup(json_string_value(with), op->with_len);
    if (!op->with) return TW_E_NOMEM;
    ops->n++;   /* from here the op is owned by ops, so strops_free releases it on error */
    if (kind == OP_REPLACE) TW_TRY(string_pattern(file, field, o, &op->pat, &op->pat_len));
    return TW_OK;
}

static tw_status load_normalizer(tw_tokenizer *t, const char *file, const json_t *n, const char *field) {
    if (!n || json_is_null(n)) return TW_OK;
    const json_t *type = json_object_get(n, "type");
    const char *ty = json_string_value(type);
    char f[96];
    snprintf(f, sizeof f, "%s.type", field);
    if (!ty) return tw_err(TW_E_CONFIG, "%s: %s is missing", file, f);
    if (!strcmp(ty, "Replace")) return strops_add(&t->norm, file, field, n, OP_REPLACE);
    if (!strcmp(ty, "Prepend")) return strops_add(&t->norm, file, field, n, OP_PREPEND);
    if (!strcmp(ty, "Sequence")) {
        const json_t *list = json_object_get(n, "normalizers");
        if (!json_is_array(list)) return tw_err(TW_E_CONFIG, "%s: %s.normalizers: expected a list", file, field);
        for (size_t i = 0; i < json_array_size(list); i++) {
            snprintf(f, sizeof f, "%s.normalizers[%zu]", field, i);
            TW_TRY(load_normalizer(t, file, json_array_get(list, i), f));
        }
        return TW_OK;
    }
    return unsupported(file, f, type);
}

static tw_status load_pre_tokenizer(tw_tokenizer *t, const char *file, const json_t *p) {
    if (!p || json_is_null(p)) return TW_OK;
    const json_t *type = json_object_get(p, "type");
    if (!json_is_string(type) || strcmp(json_string_value(type), "Split"))
        return unsupported(file, "pre_tokenizer.type", type);
    const json_t *inv = json_object_get(p, "invert");
    if (json_is_true(inv)) return unsupported(file, "pre_tokenizer.invert true", NULL);
    const json_t *beh = json_object_get(p, "behavior");
    const char *b = json_string_value(beh);
    if (!b) return tw_err(TW_E_CONFIG, "%s: pre_tokenizer.behavior is missing", file);
    if (!strcmp(b, "Removed")) t->split_kind = SPLIT_REMOVED;
    else if (!strcmp(b, "Isolated")) t->split_kind = SPLIT_ISOLATED;
    else if (!strcmp(b, "MergedWithPrevious")) t->split_kind = SPLIT_PREV;
    else if (!strcmp(b, "MergedWithNext")) t->split_kind = SPLIT_NEXT;
    else return unsupported(file, "pre_tokenizer.behavior", beh);
    return string_pattern(file, "pre_tokenizer", p, &t->split_pat, &t->split_len);
}

static tw_status load_decoder_step(tw_tokenizer *t, const char *file, const json_t *d, const char *field) {
    const json_t *type = json_object_get(d, "type");
    const char *ty = json_string_value(type);
    char f[96];
    snprintf(f, sizeof f, "%s.type", field);
    if (!ty) return tw_err(TW_E_CONFIG, "%s: %s is missing", file, f);
    if (!strcmp(ty, "Replace")) return strops_add(t->dec_bytes ? &t->dec_post : &t->dec_pre, file, field, d, OP_REPLACE);
    if (!strcmp(ty, "ByteFallback")) { t->dec_bytes = true; return TW_OK; }
    if (!strcmp(ty, "Fuse")) return TW_OK;   /* decode concatenates anyway */
    if (!strcmp(ty, "Sequence")) {
        const json_t *list = json_object_get(d, "decoders");
        if (!json_is_array(list)) return tw_err(TW_E_CONFIG, "%s: %s.decoders: expected a list", file, field);
        for (size_t i = 0; i < json_array_size(list); i++) {
            snprintf(f, sizeof f, "%s.decoders[%zu]", field, i);
            TW_TRY(load_decoder_step(t, file, json_array_get(list, i), f));
        }
        return TW_OK;
    }
    return unsupported(file, f, type);
}

/* Called once before the vocabulary is read (to fail early on an unsupported model) and once after
** (with_vocab), when unk_token can be looked up. */
static tw_status load_model_fields(tw_tokenizer *t, const char *file, const json_t *m, bool with_vocab) {
    const json_t *type = json_object_get(m, "type");
    if (!json_is_string(type) || strcmp(json_string_value(type), "BPE"))
        return unsupported(file, "model.type", type ? type : NULL);
    const json_t *v;
    if ((v = json_object_get(m, "dropout")) && !json_is_null(v) && !(json_is_number(v) && json_number_value(v) == 0))
        return unsupported(file, "model.dropout (other than null)", NULL);
    if ((v = json_object_get(m, "continuing_subword_prefix")) && !json_is_null(v) && json_string_length(v))
        return unsupported(file, "model.continuing_subword_prefix", v);
    if ((v = json_object_get(m, "end_of_word_suffix")) && !json_is_null(v) && json_string_length(v))
        return unsupported(file, "model.end_of_word_suffix", v);
    t->byte_fallback = json_is_true(json_object_get(m, "byte_fallback"));
    t->fuse_unk = json_is_true(json_object_get(m, "fuse_unk"));
    t->ignore_merges = json_is_true(json_object_get(m, "ignore_merges"));
    t->unk_id = -1;
    if (with_vocab && (v = json_object_get(m, "unk_token")) && json_is_string(v)) {
        t->unk_id = vocab_find(t, json_string_value(v), json_string_length(v));
        if (t->unk_id < 0) return tw_err(TW_E_FORMAT, "%s: model.unk_token \"%s\" is not in model.vocab", file, json_string_value(v));
    }
    return TW_OK;
}

static tw_status template_ids(tw_tokenizer *t, const char *file, const json_t *specials, const json_t *item, tw_ivec *dst) {
    const json_t *st = json_object_get(item, "SpecialToken");
    const json_t *name = json_object_get(st, "id");
    const json_t *ent = json_object_get(specials, json_string_value(name) ? json_string_value(name) : "");
    const json_t *ids = json_object_get(ent, "ids");
    if (!json_is_array(ids))
        return tw_err(TW_E_CONFIG, "%s: post_processor.special_tokens: no ids for \"%s\"", file,
                      json_string_value(name) ? json_string_value(name) : "?");
    for (size_t i = 0; i < json_array_size(ids); i++) {
        const json_t *x = json_array_get(ids, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= t->n_ids)
            return tw_err(TW_E_CONFIG, "%s: post_processor.special_tokens.%s.ids: bad id", file, json_string_value(name));
        TW_TRY(ivec_push(dst, (int32_t)json_integer_value(x)));
    }
    return TW_OK;
}

static tw_status load_post_processor(tw_tokenizer *t, const char *file, const json_t *p) {
    if (!p || json_is_null(p)) return TW_OK;
    const json_t *type = json_object_get(p, "type");
    if (!json_is_string(type) || strcmp(json_string_value(type), "TemplateProcessing"))
        return unsupported(file, "post_processor.type", type);
    const json_t *single = json_object_get(p, "single"), *specials = json_object_get(p, "special_tokens");
    if (!json_is_array(single)) return tw_err(TW_E_CONFIG, "%s: post_processor.single: expected a list", file);
    bool seen_a = false;
    for (size_t i = 0; i < json_array_size(single); i++) {
        const json_t *item = json_array_get(single, i);
        if (json_object_get(item, "Sequence")) {
            if (seen_a) return unsupported(file, "post_processor.single with two sequences", NULL);
            seen_a = true;
        } else if (json_object_get(item, "SpecialToken")) {
            TW_TRY(template_ids(t, file, specials, item, seen_a ? &t->suffix : &t->prefix));
        } else {
            return unsupported(file, "post_processor.single item", NULL);
        }
    }
    return TW_OK;
}

static tw_status load_added_tokens(tw_tokenizer *t, const char *file, const json_t *list) {
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *a = json_array_get(list, i);
        const json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
        if (!json_is_integer(id) || !json_is_string(content) || json_integer_value(id) < 0 || json_integer_value(id) >= t->n_ids)
            return tw_err(TW_E_CONFIG, "%s: added_tokens[%zu]: expected an id and a content", file, i);
        static const char *const unsup[] = { "lstrip", "rstrip", "single_word" };
        for (size_t k = 0; k < 3; k++)
            if (json_is_true(json_object_get(a, unsup[k]))) {
                char f[64];
                snprintf(f, sizeof f, "added_tokens[%zu].%s true", i, unsup[k]);
                return unsupported(file, f, NULL);
            }
        int32_t tid = (int32_t)json_integer_value(id);
        bool special = json_is_true(json_object_get(a, "special"));
        const json_t *nz = json_object_get(a, "normalized");
        bool normalized = nz ? json_is_true(nz) : !special;
        const char *s = json_string_value(content);
        size_t n = json_string_length(content);
        t->flags[tid] |= FLAG_ADDED | (special ? FLAG_SPECIAL : 0);
        /* The id keeps its vocab string when that is the same text; otherwise the content becomes
        ** its piece (e.g. <image>, which is not in the base vocabulary). */
        if (t->piece[tid].off == UINT32_MAX || t->piece[tid].len != n || memcmp(t->text + t->piece[tid].off, s, n)) {
            t->piece[tid].off = (uint32_t)t->text_len;
            t->piece[tid].len = (uint32_t)n;
            memcpy(t->text + t->text_len, s, n);
            t->text_len += n;
            vocab_insert(t, tid);
        }
        TW_TRY(trie_add(normalized ? &t->added_norm : &t->added_raw, s, n, tid));
    }
    return TW_OK;
}

/* tokenizer_config.json: Gemma/Llama fast tokenizers rebuild the post-processor from
** add_bos_token / add_eos_token, and bos_token names the BOS. */
static tw_status load_config(tw_tokenizer *t, const char *data, size_t len, const char *cfg_name) {
    /* Not tw_json_loadb's first try: Gemma configs hold model_max_length = 1e30 written as an
    ** integer, which jansson rejects as "too big integer" unless integers may be read as reals. */
    json_error_t e;
    json_t *c = json_loadb(data, len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &e);
    if (!c) return tw_err(TW_E_FORMAT, "%s:%d:%d: invalid JSON: %s", cfg_name, e.line, e.column, e.text);
    int32_t ids[2] = { -1, -1 };
    static const char *const names[2] = { "bos_token", "eos_token" };
    for (int k = 0; k < 2; k++) {
        const json_t *v = json_object_get(c, names[k]);
        if (json_is_object(v)) v = json_object_get(v, "content");
        if (json_is_string(v)) ids[k] = vocab_find(t, json_string_value(v), json_string_length(v));
    }
    if (ids[0] >= 0) t->bos = ids[0];
    const char *cls = json_string_value(json_object_get(c, "tokenizer_class"));
    const json_t *ab = json_object_get(c, "add_bos_token"), *ae = json_object_get(c, "add_eos_token");
    tw_status st = TW_OK;
    if (cls && (strstr(cls, "Gemma") || strstr(cls, "Llama")) && (json_is_boolean(ab) || json_is_boolean(ae))) {
        t->prefix.n = t->suffix.n = 0;
        if (json_is_true(ab) && ids[0] >= 0) st = ivec_push(&t->prefix, ids[0]);
        if (!st && json_is_true(ae) && ids[1] >= 0) st = ivec_push(&t->suffix, ids[1]);
    }
    json_decref(c);
    return st;
}

/* tokenizer.json's text (len bytes, need not be NUL-terminated); file names it in messages. */
static tw_status load_json(tw_tokenizer *t, const char *data, size_t len, const char *file) {
    tw_loader L = { .t = t, .file = file };
    tw_jscan j = { data, data + len, data, file };
    json_t *root = NULL, *model = NULL;
    static const char *const root_raw[] = { "model" };
    static const char *const model_raw[] = { "vocab", "merges" };
    const char *ms[1], *me[1], *vs[2], *ve[2];
    tw_status st = js_object_split(&j, root_raw, 1, ms, me, &root);
    if (!st) {
        js_ws(&j);
        if (j.p != j.end) st = js_fail(&j, j.p, "extra data after the top-level object");
    }
    if (!st && !ms[0]) st = tw_err(TW_E_CONFIG, "%s: field \"model\" is missing", file);
    if (!st) {
        tw_jscan mj = { ms[0], me[0], data, file };
        st = js_object_split(&mj, model_raw, 2, vs, ve, &model);
    }
    if (!st) st = load_model_fields(t, file, model, false);   /* checks model.type before the big parts */
    if (!st && (!vs[0] || !vs[1])) st = tw_err(TW_E_CONFIG, "%s: field \"model.%s\" is missing", file, vs[0] ? "merges" : "vocab");

    const json_t *added = NULL;
    size_t added_bytes = 0;
    if (!st) {
        added = json_object_get(root, "added_tokens");
        if (added && !json_is_array(added)) st = tw_err(TW_E_CONFIG, "%s: field \"added_tokens\": expected a list", file);
        for (size_t i = 0; !st && i < json_array_size(added); i++)
            added_bytes += json_string_length(json_object_get(json_array_get(added, i), "content"));
    }
    if (!st) {
        /* Unescaped strings are never longer than their JSON text, so this never moves. */
        L.arena.cap = (size_t)(ve[0] - vs[0]) + added_bytes + 16;
        L.arena.data = tw_malloc(L.arena.cap);
        if (!L.arena.data) st = TW_E_NOMEM;
    }
    if (!st) {
        tw_jscan vj = { vs[0], ve[0], data, file };
        st = load_vocab(&L, &vj);
    }
    if (!st) {
        int32_t max_id = -1;
        for (size_t i = 0; i < L.n_ve; i++) max_id = TW_MAX(max_id, L.ve[i].id);
        for (size_t i = 0; i < json_array_size(added); i++) {
            const json_t *id = json_object_get(json_array_get(added, i), "id");
            if (json_is_integer(id) && json_integer_value(id) < INT32_MAX / 2)
                max_id = TW_MAX(max_id, (int32_t)json_integer_value(id));
        }
        t->n_ids = max_id + 1;
        size_t n = (size_t)t->n_ids + 1;
        t->piece = tw_malloc(n * sizeof *t->piece);
        t->flags = tw_calloc(n, 1);
        size_t slots = pow2_at_least((L.n_ve + json_array_size(added)) * 3 / 2 + 1);
        t->vslot = tw_calloc(slots, sizeof *t->vslot);
        t->vmask = slots - 1;
        if (!t->piece || !t->flags || !t->vslot) st = TW_E_NOMEM;
    }
    if (!st) {
        for (int32_t i = 0; i <= t->n_ids; i++) t->piece[i] = (tw_piece){ UINT32_MAX, 0 };
        t->text = L.arena.data;
        t->text_len = L.arena.len;
        L.arena.data = NULL;
        for (size_t i = 0; i < L.n_ve; i++) {
            int32_t id = L.ve[i].id;
            t->piece[id].off = L.ve[i].off;
            t->piece[id].len = L.ve[i].len;
            vocab_insert(t, id);
        }
        st = load_added_tokens(t, file, added);
    }
    if (!st) {
        tw_jscan mj = { vs[1], ve[1], data, file };
        st = load_merges(&L, &mj);
    }
    if (!st) st = load_model_fields(t, file, model, true);   /* again, now that unk_token can be looked up */
    if (!st) st = load_normalizer(t, file, json_object_get(root, "normalizer"), "normalizer");
    if (!st) st = load_pre_tokenizer(t, file, json_object_get(root, "pre_tokenizer"));
    if (!st) st = load_post_processor(t, file, json_object_get(root, "post_processor"));
    if (!st) {
        const json_t *d = json_object_get(root, "decoder");
        if (d && !json_is_null(d)) st = load_decoder_step(t, file, d, "decoder");
    }
    if (!st) {
        const json_t *tr = json_object_get(root, "truncation"), *pad = json_object_get(root, "padding");
        if (tr && !json_is_null(tr)) st = unsupported(file, "truncation (other than null)", NULL);
        else if (pad && !json_is_null(pad)) st = unsupported(file, "padding (other than null)", NULL);
    }
    tw_buf_free(&L.arena);
    free(L.ve);
    json_decref(root);
    json_decref(model);
    return st;
}

static tw_status build_lookups(tw_tokenizer *t) {
    t->bmp_id = tw_malloc(0x10000 * sizeof *t->bmp_id);
    if (!t->bmp_id) return TW_E_NOMEM;
    memset(t->bmp_id, 0xFF, 0x10000 * sizeof *t->bmp_id);
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    for (int32_t id = 0; id < t->n_ids; id++) {
        if (t->piece[id].off == UINT32_MAX || (t->flags[id] & FLAG_ADDED)) continue;
        const uint8_t *s = (const uint8_t *)t->text + t->piece[id].off;
        size_t n = t->piece[id].len;
        uint32_t cp;
        if (n && n <= 3 && utf8_char(s, n, &cp) == n && vocab_find(t, (const char *)s, n) == id) t->bmp_id[cp] = id;
        int b = byte_token_value((const char *)s, n);
        if (b >= 0 && vocab_find(t, (const char *)s, n) == id) t->byte_id[b] = id;
    }
    if (t->bos < 0 && t->prefix.n) t->bos = t->prefix.v[0];
    return TW_OK;
}

/* Builds a tokenizer from tokenizer.json's text and, when cfg is not NULL, tokenizer_config.json's. */
static tw_status load_parts(const char *json, size_t len, const char *name, const char *cfg, size_t cfg_len,
                            const char *cfg_name, tw_tokenizer **out) {
    tw_tokenizer *t = tw_calloc(1, sizeof *t);
    if (!t) return TW_E_NOMEM;
    trie_init(&t->added_raw);
    trie_init(&t->added_norm);
    t->bos = -1;
    t->unk_id = -1;
    tw_status st = load_json(t, json, len, name);
    if (!st && cfg) st = load_config(t, cfg, cfg_len, cfg_name);
    if (!st) st = build_lookups(t);
    if (st) {
        tw_tokenizer_free(t);
        return st;
    }
    *out = t;
    return TW_OK;
}

tw_status tw_tokenizer_load_mem(const char *json, size_t len, const char *name, tw_tokenizer **out) {
    if (!out) return tw_err(TW_E_ARG, "tw_tokenizer_load_mem: out is NULL");
    *out = NULL;
    if (!json) return tw_err(TW_E_ARG, "tw_tokenizer_load_mem: json is NULL");
    return load_parts(json, len, name ? name : "tokenizer.json", NULL, 0, NULL, out);
}

tw_status tw_tokenizer_load_src(const tw_src *s, tw_tokenizer **out) {
    *out = NULL;
    char *json = NULL, *cfg = NULL, *name = tw_src_name(s, "tokenizer.json"),
         *cfg_name = tw_src_name(s, "tokenizer_config.json");
    size_t len = 0, cfg_len = 0;
    tw_status st = name && cfg_name ? TW_OK : TW_E_NOMEM;
    if (!st && !tw_src_exists(s, "tokenizer.json")) st = tw_err(TW_E_NOT_FOUND, "%s: file not found", name);
    if (!st) st = tw_src_read(s, "tokenizer.json", &json, &len);
    if (!st && tw_src_exists(s, "tokenizer_config.json")) st = tw_src_read(s, "tokenizer_config.json", &cfg, &cfg_len);
    if (!st) st = load_parts(json, len, name, cfg, cfg_len, cfg_name, out);
    free(json);
    free(cfg);
    free(name);
    free(cfg_name);
    return st;
}

tw_status tw_tokenizer_load(const char *path, tw_tokenizer **out) {
    if (!path || !out) return tw_err(TW_E_ARG, "tw_tokenizer_load: NULL argument");
    *out = NULL;
    if (tw_dir_exists(path)) {
        tw_src s = tw_src_dir(path);
        return tw_tokenizer_load_src(&s, out);
    }
    if (!tw_file_exists(path)) return tw_err(TW_E_NOT_FOUND, "%s: file not found", path);
    char *json = NULL;
    size_t len = 0;
    TW_TRY(tw_read_file(path, &json, &len));
    tw_status st = load_parts(json, len, path, NULL, 0, NULL, out);
    free(json);
    return st;
}

/* ---- encoding ------------------------------------------------------------------------------- */

typedef struct tw_bpe {
    int32_t  *id, *prev, *next;
    size_t    cap;
    uint64_t *heap;     /* (rank << 32) | position: lowest rank first, leftmost on ties */
    size_t    hn, hcap;
    tw_buf    tmp[2];
} tw_bpe;

static void bpe_free(tw_bpe *b) {
    free(b->id);
    free(b->prev);
    free(b->next);
    free(b->heap);
    tw_buf_free(&b->tmp[0]);
    tw_buf_free(&b->tmp[1]);
}

static inline void heap_push(tw_bpe *b, uint64_t x) {
    size_t i = b->hn++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (b->heap[p] <= x) break;
        b->heap[i] = b->heap[p];
        i = p;
    }
    b->heap[i] = x;
}

static inline uint64_t heap_pop(tw_bpe *b) {
    uint64_t top = b->heap[0], x = b->heap[--b->hn];
    size_t i = 0, n = b->hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && b->heap[c + 1] < b->heap[c]) c++;
        if (b->heap[c] >= x) break;
        b->heap[i] = b->heap[c];
        i = c;
    }
    if (n) b->heap[i] = x;
    return top;
}

static inline void bpe_candidate(const tw_tokenizer *t, tw_bpe *b, int32_t i) {
    if (i < 0) return;
    int32_t j = b->next[i];
    if (j < 0) return;
    const tw_merge_slot *m = merge_find(t, b->id[i], b->id[j]);
    if (m) heap_push(b, ((uint64_t)(uint32_t)m->rank << 32) | (uint32_t)i);
}

/* Splits one word into symbols and merges them; appends the ids to out. */
static tw_status bpe_word(const tw_tokenizer *t, tw_bpe *b, const char *w, size_t n, tw_ivec *out) {
    if (!n) return TW_OK;
    if (t->ignore_merges) {
        int32_t id = vocab_find(t, w, n);
        if (id >= 0) return ivec_push(out, id);
    }
    if (n > b->cap) {
        size_t cap = n + n / 2;
        int32_t *id = tw_realloc(b->id, cap * sizeof *id), *pr = id ? tw_realloc(b->prev, cap * sizeof *pr) : NULL;
        if (id) b->id = id;
        if (pr) b->prev = pr;
        int32_t *nx = pr ? tw_realloc(b->next, cap * sizeof *nx) : NULL;
        if (nx) b->next = nx;
        if (!nx) return TW_E_NOMEM;
        b->cap = cap;
    }
    /* Initial symbols: one per character in the vocabulary, else one per byte (<0xNN>), else unk. */
    const uint8_t *s = (const uint8_t *)w;
    int32_t ns = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        size_t k = utf8_char(s + i, n - i, &cp);
        int32_t id = -1;
        if (k) id = cp < 0x10000 ? t->bmp_id[cp] : vocab_find(t, w + i, k);
        else k = 1;   /* invalid UTF-8 in the input: that byte goes to byte fallback */
        if (id >= 0) {
            b->id[ns++] = id;
        } else {
            bool bytes = t->byte_fallback;
            for (size_t q = 0; bytes && q < k; q++) bytes = t->byte_id[s[i + q]] >= 0;
            if (bytes) {
                for (size_t q = 0; q < k; q++) b->id[ns++] = t->byte_id[s[i + q]];
            } else if (t->unk_id >= 0) {
                if (!(t->fuse_unk && ns && b->id[ns - 1] == t->unk_id)) b->id[ns++] = t->unk_id;
            } else {
                return tw_err(TW_E_UNSUPPORTED, "tokenize: \"%.*s\" is not in the vocabulary and there is no unk_token",
                              (int)k, w + i);
            }
        }
        i += k;
    }
    for (int32_t i = 0; i < ns; i++) {
        b->prev[i] = i - 1;
        b->next[i] = i + 1 < ns ? i + 1 : -1;
    }
    /* At most one live candidate per adjacent pair, plus stale ones: 2 per merge + initial pairs. */
    size_t need = 3 * (size_t)ns + 8;
    if (need > b->hcap) {
        uint64_t *h = tw_realloc(b->heap, need * sizeof *h);
        if (!h) return TW_E_NOMEM;
        b->heap = h;
        b->hcap = need;
    }
    b->hn = 0;
    for (int32_t i = 0; i + 1 < ns; i++) bpe_candidate(t, b, i);
    while (b->hn) {
        uint64_t top = heap_pop(b);
        int32_t i = (int32_t)(uint32_t)top, rank = (int32_t)(top >> 32);
        if (b->id[i] < 0) continue;            /* merged into its left neighbour meanwhile */
        int32_t j = b->next[i];
        if (j < 0) continue;
        const tw_merge_slot *m = merge_find(t, b->id[i], b->id[j]);
        if (!m || m->rank != rank) continue;   /* the pair changed since this was queued */
        b->id[i] = m->id;
        b->id[j] = -1;
        b->next[i] = b->next[j];
        if (b->next[j] >= 0) b->prev[b->next[j]] = i;
        bpe_candidate(t, b, b->prev[i]);
        bpe_candidate(t, b, i);
    }
    for (int32_t i = 0; i >= 0; i = b->next[i]) TW_TRY(ivec_push(out, b->id[i]));
    return TW_OK;
}

/* Pre-tokenizer split of one normalized stretch, then BPE on each word. */
static tw_status encode_words(const tw_tokenizer *t, tw_bpe *b, const char *s, size_t n, tw_ivec *out) {
    if (t->split_kind == SPLIT_NONE) return bpe_word(t, b, s, n, out);
    size_t start = 0, i = 0, pl = t->split_len;
    while (i + pl <= n) {
        if (memcmp(s + i, t->split_pat, pl) != 0) { i++; continue; }
        switch (t->split_kind) {
        case SPLIT_REMOVED: TW_TRY(bpe_word(t, b, s + start, i - start, out)); start = i + pl; break;
        case SPLIT_ISOLATED:
            TW_TRY(bpe_word(t, b, s + start, i - start, out));
            TW_TRY(bpe_word(t, b, s + i, pl, out));
            start = i + pl;
            break;
        case SPLIT_PREV: TW_TRY(bpe_word(t, b, s + start, i + pl - start, out)); start = i + pl; break;
        case SPLIT_NEXT: TW_TRY(bpe_word(t, b, s + start, i - start, out)); start = i; break;
        }
        i += pl;
    }
    return bpe_word(t, b, s + start, n - start, out);
}

/* A stretch of raw text between added tokens: normalize, match normalized added tokens, encode. */
static tw_status encode_stretch(const tw_tokenizer *t, tw_bpe *b, const char *s, size_t n, tw_ivec *out) {
    const char *ns;
    size_t nn;
    TW_TRY(strops_apply(&t->norm, s, n, b->tmp, &ns, &nn));
    if (!t->added_norm.n_tokens) return encode_words(t, b, ns, nn, out);
    /* The normalized text may live in b->tmp, which BPE does not touch. */
    size_t start = 0;
    for (size_t i = 0; i < nn;) {
        int32_t tok;
        size_t k = trie_match(&t->added_norm, (const uint8_t *)ns + i, nn - i, &tok);
        if (!k) { i++; continue; }
        TW_TRY(encode_words(t, b, ns + start, i - start, out));
        TW_TRY(ivec_push(out, tok));
        i += k;
        start = i;
    }
    return encode_words(t, b, ns + start, nn - start, out);
}

tw_status tw_tokenize(const tw_tokenizer *t, const char *text, size_t len, int add_special,
                      int32_t **ids, size_t *n_ids) {
    if (!t || !ids || !n_ids || (!text && len)) return tw_err(TW_E_ARG, "tw_tokenize: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    tw_ivec out = { 0 };
    tw_bpe b = { 0 };
    tw_status st = TW_OK;
    out.cap = len / 3 + 16;
    out.v = tw_malloc(out.cap * sizeof *out.v);
    if (!out.v) return TW_E_NOMEM;
    for (size_t k = 0; !st && add_special && k < t->prefix.n; k++) st = ivec_push(&out, t->prefix.v[k]);
    const uint8_t *s = (const uint8_t *)text;
    size_t start = 0;
    for (size_t i = 0; !st && i < len;) {
        int32_t tok;
        size_t k = t->added_raw.root[s[i]] >= 0 ? trie_match(&t->added_raw, s + i, len - i, &tok) : 0;
        if (!k) { i++; continue; }
        if (start < i) st = encode_stretch(t, &b, text + start, i - start, &out);
        if (!st) st = ivec_push(&out, tok);
        i += k;
        start = i;
    }
    if (!st && start < len) st = encode_stretch(t, &b, text + start, len - start, &out);
    for (size_t k = 0; !st && add_special && k < t->suffix.n; k++) st = ivec_push(&out, t->suffix.v[k]);
    bpe_free(&b);
    if (st) {
        free(out.v);
        return st;
    }
    *ids = out.v;
    *n_ids = out.n;
    return TW_OK;
}

/* ---- queries -------------------------------------------------------------------------------- */

int32_t tw_tokenizer_vocab_size(const tw_tokenizer *t) { return t ? t->n_ids : 0; }

const char *tw_token_piece(const tw_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_ids || t->piece[id].off == UINT32_MAX) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->piece[id].len;
    return t->text + t->piece[id].off;
}

int32_t tw_token_id(const tw_tokenizer *t, const char *piece, size_t len) {
    if (!t || (!piece && len)) return -1;
    return vocab_find(t, piece ? piece : "", len);
}

int tw_token_is_special(const tw_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_ids && (t->flags[id] & FLAG_SPECIAL);
}

int32_t tw_tokenizer_bos(const tw_tokenizer *t) { return t ? t->bos : -1; }

/* ---- decoding ------------------------------------------------------------------------------- */

static const char k_replacement[] = "\xEF\xBF\xBD";   /* U+FFFD */

/* Appends text that came out of ByteFallback (a token or a byte run) through the later steps. */
static tw_status emit_post(const tw_tokenizer *t, tw_buf tmp[2], const char *s, size_t n, tw_buf *out) {
    if (t->dec_post.n) TW_TRY(strops_apply(&t->dec_post, s, n, tmp, &s, &n));
    return tw_buf_append(out, s, n);
}

static tw_status emit_replacements(const tw_tokenizer *t, tw_buf tmp[2], size_t count, tw_buf *out) {
    for (size_t i = 0; i < count; i++) TW_TRY(emit_post(t, tmp, k_replacement, 3, out));
    return TW_OK;
}

/* The token's text after the decoder steps before ByteFallback; *byte is its byte value when it is
** a byte token (and ByteFallback is on), else -1. Returns false for ids to leave out. */
static tw_status token_text(const tw_tokenizer *t, tw_buf tmp[2], int32_t id, int skip_special,
                            const char **s, size_t *n, int *byte, bool *keep) {
    *keep = false;
    if (id < 0 || id >= t->n_ids || t->piece[id].off == UINT32_MAX) return TW_OK;   /* HF drops unknown ids */
    if (skip_special && (t->flags[id] & FLAG_SPECIAL)) return TW_OK;
    *keep = true;
    TW_TRY(strops_apply(&t->dec_pre, t->text + t->piece[id].off, t->piece[id].len, tmp, s, n));
    *byte = t->dec_bytes ? byte_token_value(*s, *n) : -1;
    return TW_OK;
}

tw_status tw_detokenize(const tw_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                        char **text, size_t *len) {
    if (!t || !text || (!ids && n)) return tw_err(TW_E_ARG, "tw_detokenize: NULL argument");
    *text = NULL;
    if (len) *len = 0;
    tw_buf out = { 0 }, tmp[2] = { { 0 } }, post[2] = { { 0 } }, run = { 0 };
    size_t run_tokens = 0;
    tw_status st = tw_buf_append(&out, "", 0);
    for (size_t i = 0; !st && i <= n; i++) {
        const char *s = NULL;
        size_t sn = 0;
        int byte = -1;
        bool keep = false;
        if (i < n) {
            st = token_text(t, tmp, ids[i], skip_special, &s, &sn, &byte, &keep);
            if (st || !keep) continue;
            if (byte >= 0) {
                st = tw_buf_putc(&run, (char)byte);
                run_tokens++;
                continue;
            }
        }
        /* A non-byte token (or the end) closes the current byte run. */
        if (run_tokens) {
            if (utf8_valid((const uint8_t *)run.data, run.len)) st = emit_post(t, post, run.data, run.len, &out);
            else st = emit_replacements(t, post, run_tokens, &out);
            run.len = 0;
            run_tokens = 0;
        }
        if (!st && keep) st = emit_post(t, post, s, sn, &out);
    }
    tw_buf_free(&tmp[0]);
    tw_buf_free(&tmp[1]);
    tw_buf_free(&post[0]);
    tw_buf_free(&post[1]);
    tw_buf_free(&run);
    if (st) {
        tw_buf_free(&out);
        return st;
    }
    *text = tw_buf_detach(&out, len);
    return TW_OK;
}

/* ---- streaming decoder ---------------------------------------------------------------------- */

struct tw_detok {
    const tw_tokenizer *t;
    int     skip_special;
    uint8_t pend[4];       /* bytes of a character that is not complete yet */
    size_t  n_pend;
    tw_buf  out, tmp[2], post[2];
};

tw_status tw_detok_new(const tw_tokenizer *t, int skip_special, tw_detok **out) {
    if (!t || !out) return tw_err(TW_E_ARG, "tw_detok_new: NULL argument");
    tw_detok *d = tw_calloc(1, sizeof *d);
    if (!d) return TW_E_NOMEM;
    d->t = t;
    d->skip_special = skip_special;
    *out = d;
    return TW_OK;
}

static tw_status detok_result(tw_detok *d, tw_status st, const char **text, size_t *len) {
    if (text) *text = d->out.data ? d->out.data : "";
    if (len) *len = st ? 0 : d->out.len;
    return st;
}

tw_status tw_detok_push(tw_detok *d, int32_t id, const char **text, size_t *len) {
    if (!d) return tw_err(TW_E_ARG, "tw_detok_push: NULL decoder");
    d->out.len = 0;
    const char *s;
    size_t n;
    int byte = -1;
    bool keep;
    tw_status st = token_text(d->t, d->tmp, id, d->skip_special, &s, &n, &byte, &keep);
    if (st || !keep) return detok_result(d, st, text, len);
    if (byte >= 0) {
        /* Emit a character as soon as its bytes are complete; hold back a valid prefix. */
        d->pend[d->n_pend++] = (uint8_t)byte;
        int state = utf8_prefix_state(d->pend, d->n_pend);
        if (state == 0) st = emit_post(d->t, d->post, (const char *)d->pend, d->n_pend, &d->out);
        else if (state < 0) st = emit_replacements(d->t, d->post, d->n_pend, &d->out);
        if (state <= 0) d->n_pend = 0;
        return detok_result(d, st, text, len);
    }
    if (d->n_pend) st = emit_replacements(d->t, d->post, d->n_pend, &d->out);
    d->n_pend = 0;
    if (!st) st = emit_post(d->t, d->post, s, n, &d->out);
    return detok_result(d, st, text, len);
}

tw_status tw_detok_flush(tw_detok *d, const char **text, size_t *len) {
    if (!d) return tw_err(TW_E_ARG, "tw_detok_flush: NULL decoder");
    d->out.len = 0;
    tw_status st = emit_replacements(d->t, d->post, d->n_pend, &d->out);
    d->n_pend = 0;
    return detok_result(d, st, text, len);
}

void tw_detok_free(tw_detok *d) {
    if (!d) return;
    tw_buf_free(&d->out);
    for (int i = 0; i < 2; i++) {
        tw_buf_free(&d->tmp[i]);
        tw_buf_free(&d->post[i]);
    }
    free(d);
}
