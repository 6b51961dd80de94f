/*
** jinja.c — a small Jinja2 interpreter for Hugging Face chat templates.
**
** Checkpoints ship their prompt format as a Jinja template that transformers renders with
** jinja2's ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) plus the
** loopcontrols extension, raise_exception() and strftime_now(). This file reproduces that
** subset so a checkpoint's own template gives byte-identical prompts (docs/chat-templates.md).
**
** Pipeline: the lexer turns the source into tokens and applies the whitespace rules (they are
** lexical in jinja2 too), the parser builds a tree once per template, and the renderer walks
** that tree per call. Values are jansson json_t (strings keep an explicit length, so U+0000
** survives); NULL stands for jinja2's Undefined. Every limit that hostile input could push
** (loop iterations, output size, nesting and call depth) is capped and reported as an error.
*/
#include "jinja.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define JJ_MAX_ITER   (1L << 17)           /* loop iterations per render (131072)           */
#define JJ_MAX_OUT    ((size_t)64 << 20)   /* bytes of output, and of any one string value  */
#define JJ_MAX_DEPTH  100                  /* parser nesting, macro calls, value nesting    */
#define JJ_MAX_ARGS   16

/* ------------------------------------------------------------------------------------------ */
/* Tokens                                                                                       */

typedef enum {
    T_DATA, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END,
    T_COMMENT, T_RAW_BEGIN, T_RAW_END,   /* whole tags: only matter for whitespace control */
    T_NAME, T_STRING, T_INT, T_FLOAT, T_OP, T_EOF
} tok_type;

typedef struct tok {
    tok_type type;
    int      line, col;
    char     strip, strip_r;   /* '-' / '+' markers: left (or only) side, right side of whole tags */
    bool     line_start;       /* T_DATA: starts at the beginning of a line                        */
    const char *p;             /* T_NAME, T_OP: source text                                        */
    size_t   n;
    char    *s;                /* T_DATA, T_STRING: owned text                                     */
    size_t   slen;
    int64_t  i;
    double   f;
} tok;

typedef struct lexer {
    const char *src;
    size_t n, pos;
    int    line, col;
    tok   *t;
    size_t nt, cap;
} lexer;

static tw_status lx_fail(int line, int col, const char *what) {
    return tw_err(TW_E_TEMPLATE, "chat template:%d:%d: %s", line, col, what);
}

static void lx_adv(lexer *L, size_t k) {
    while (k-- && L->pos < L->n) {
        unsigned char c = (unsigned char)L->src[L->pos++];
        if (c == '\n') { L->line++; L->col = 1; }
        else if ((c & 0xC0) != 0x80) L->col++;
    }
}

static tok *lx_push(lexer *L, tok_type type) {
    if (L->nt == L->cap) {
        size_t nc = L->cap ? L->cap * 2 : 256;
        tok *nt = tw_realloc(L->t, nc * sizeof *nt);
        if (!nt) return NULL;
        L->t = nt; L->cap = nc;
    }
    tok *k = &L->t[L->nt++];
    memset(k, 0, sizeof *k);
    k->type = type; k->line = L->line; k->col = L->col;
    return k;
}

static bool lx_at(const lexer *L, size_t pos, const char *s) {
    size_t k = strlen(s);
    return pos + k <= L->n && memcmp(L->src + pos, s, k) == 0;
}

static void utf8_put(tw_buf *b, uint32_t cp) {
    char c[4]; size_t k;
    if (cp < 0x80) { c[0] = (char)cp; k = 1; }
    else if (cp < 0x800) { c[0] = (char)(0xC0 | cp >> 6); c[1] = (char)(0x80 | (cp & 63)); k = 2; }
    else if (cp < 0x10000) { c[0] = (char)(0xE0 | cp >> 12); c[1] = (char)(0x80 | (cp >> 6 & 63));
                             c[2] = (char)(0x80 | (cp & 63)); k = 3; }
    else { c[0] = (char)(0xF0 | cp >> 18); c[1] = (char)(0x80 | (cp >> 12 & 63));
           c[2] = (char)(0x80 | (cp >> 6 & 63)); c[3] = (char)(0x80 | (cp & 63)); k = 4; }
    tw_buf_append(b, c, k);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A string literal, decoded the way jinja2 does it (Python's unicode-escape rules). */
static tw_status lx_string(lexer *L) {
    int line = L->line, col = L->col;
    char q = L->src[L->pos];
    size_t i = L->pos + 1;
    tw_buf b = {0};
    while (i < L->n && L->src[i] != q) {
        char c = L->src[i];
        if (c != '\\' || i + 1 >= L->n) { tw_buf_putc(&b, c); i++; continue; }
        char e = L->src[i + 1];
        i += 2;
        switch (e) {
        case '\n': break;
        case '\\': case '\'': case '"': tw_buf_putc(&b, e); break;
        case 'n': tw_buf_putc(&b, '\n'); break;
        case 't': tw_buf_putc(&b, '\t'); break;
        case 'r': tw_buf_putc(&b, '\r'); break;
        case 'b': tw_buf_putc(&b, '\b'); break;
        case 'f': tw_buf_putc(&b, '\f'); break;
        case 'v': tw_buf_putc(&b, '\v'); break;
        case 'a': tw_buf_putc(&b, '\a'); break;
        case 'x': case 'u': case 'U': {
            int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int d = 0; d < nd; d++) {
                int h = i + (size_t)d < L->n ? hexval(L->src[i + (size_t)d]) : -1;
                if (h < 0) { tw_buf_free(&b); return lx_fail(line, col, "truncated \\x/\\u escape in string"); }
                cp = cp * 16 + (uint32_t)h;
            }
            i += (size_t)nd;
            if (cp > 0x10FFFF) { tw_buf_free(&b); return lx_fail(line, col, "escape out of Unicode range"); }
            utf8_put(&b, cp);
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                uint32_t cp = (uint32_t)(e - '0');
                for (int d = 0; d < 2 && i < L->n && L->src[i] >= '0' && L->src[i] <= '7'; d++)
                    cp = cp * 8 + (uint32_t)(L->src[i++] - '0');
                utf8_put(&b, cp);
            } else {   /* unknown escapes stay as written */
                tw_buf_putc(&b, '\\');
                i--;
            }
        }
    }
    if (i >= L->n) { tw_buf_free(&b); return lx_fail(line, col, "unterminated string literal"); }
    tok *k = lx_push(L, T_STRING);
    if (!k) { tw_buf_free(&b); return TW_E_NOMEM; }
    k->line = line; k->col = col;
    k->s = tw_buf_detach(&b, &k->slen);
    if (!k->s) return TW_E_NOMEM;
    lx_adv(L, i + 1 - L->pos);
    return TW_OK;
}

/* Tokens of one {{ }} or {% %} tag, up to and including its end marker. */
static tw_status lx_tag(lexer *L, bool block) {
    int depth = 0;
    for (;;) {
        while (L->pos < L->n && strchr(" \t\n\r", L->src[L->pos])) lx_adv(L, 1);
        if (L->pos >= L->n)
            return lx_fail(L->line, L->col, block ? "unexpected end of template, expected '%}'"
                                                  : "unexpected end of template, expected '}}'");
        const char *end = block ? "%}" : "}}";
        if (depth == 0) {
            char m = L->src[L->pos];
            size_t skip = (m == '-' || m == '+') ? 1 : 0;
            if (lx_at(L, L->pos + skip, end)) {
                tok *k = lx_push(L, block ? T_BLOCK_END : T_VAR_END);
                if (!k) return TW_E_NOMEM;
                k->strip = skip ? m : 0;
                lx_adv(L, skip + 2);
                return TW_OK;
            }
        }
        char c = L->src[L->pos];
        size_t st = L->pos;
        if (isalpha((unsigned char)c) || c == '_') {
            size_t e = st;
            while (e < L->n && (isalnum((unsigned char)L->src[e]) || L->src[e] == '_')) e++;
            tok *k = lx_push(L, T_NAME);
            if (!k) return TW_E_NOMEM;
            k->p = L->src + st; k->n = e - st;
            lx_adv(L, e - st);
        } else if (isdigit((unsigned char)c)) {
            size_t e = st;
            bool isf = false;
            while (e < L->n && (isdigit((unsigned char)L->src[e]) || L->src[e] == '_')) e++;
            if (e + 1 < L->n && L->src[e] == '.' && isdigit((unsigned char)L->src[e + 1])) {
                isf = true; e++;
                while (e < L->n && (isdigit((unsigned char)L->src[e]) || L->src[e] == '_')) e++;
            }
            if (e < L->n && (L->src[e] == 'e' || L->src[e] == 'E')) {
                size_t x = e + 1;
                if (x < L->n && (L->src[x] == '+' || L->src[x] == '-')) x++;
                if (x < L->n && isdigit((unsigned char)L->src[x])) {
                    isf = true; e = x;
                    while (e < L->n && isdigit((unsigned char)L->src[e])) e++;
                }
            }
            char num[64]; size_t k = 0;
            for (size_t j = st; j < e && k < sizeof num - 1; j++) if (L->src[j] != '_') num[k++] = L->src[j];
            num[k] = 0;
            tok *t = lx_push(L, isf ? T_FLOAT : T_INT);
            if (!t) return TW_E_NOMEM;
            if (isf) t->f = strtod(num, NULL);
            else {
                errno = 0;
                t->i = strtoll(num, NULL, 10);
                if (errno) return lx_fail(t->line, t->col, "integer literal too large");
            }
            lx_adv(L, e - st);
        } else if (c == '\'' || c == '"') {
            TW_TRY(lx_string(L));
        } else {
            static const char *const two[] = { "**", "//", "==", "!=", "<=", ">=" };
            size_t len = 0;
            for (size_t j = 0; j < sizeof two / sizeof two[0]; j++) if (lx_at(L, st, two[j])) len = 2;
            if (!len && strchr("+-*/%~<>=()[]{},.:|", c)) len = 1;
            if (!len) {
                char msg[64];
                snprintf(msg, sizeof msg, "unexpected character '%c'", isprint((unsigned char)c) ? c : '?');
                return lx_fail(L->line, L->col, msg);
            }
            if (len == 1 && strchr("([{", c)) depth++;
            if (len == 1 && strchr(")]}", c) && depth > 0) depth--;
            tok *k = lx_push(L, T_OP);
            if (!k) return TW_E_NOMEM;
            k->p = L->src + st; k->n = len;
            lx_adv(L, len);
        }
    }
}

/* {% raw %} (with optional -/+ markers): returns the position after "%}", or 0 if not raw. */
static size_t lx_word_tag(const lexer *L, size_t pos, const char *word, char *left, char *right) {
    if (!lx_at(L, pos, "{%")) return 0;
    size_t i = pos + 2;
    *left = (i < L->n && (L->src[i] == '-' || L->src[i] == '+')) ? L->src[i++] : 0;
    while (i < L->n && strchr(" \t\n\r", L->src[i])) i++;
    if (!lx_at(L, i, word)) return 0;
    i += strlen(word);
    while (i < L->n && strchr(" \t\n\r", L->src[i])) i++;
    *right = (i < L->n && (L->src[i] == '-' || L->src[i] == '+')) ? L->src[i++] : 0;
    return lx_at(L, i, "%}") ? i + 2 : 0;
}

static bool is_space_nonl(char c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r'; }
static bool is_space(char c) { return is_space_nonl(c) || c == '\n'; }

/* Applies jinja2's whitespace control to the data tokens, then drops the whole-tag tokens:
** "-" strips all whitespace on that side; trim_blocks removes the first newline after a block
** or comment tag; lstrip_blocks removes spaces and tabs between the start of a line and a block
** or comment tag ("+" turns either off for that tag). */
static void lx_whitespace(lexer *L) {
    for (size_t i = 0; i < L->nt; i++) {
        tok *d = &L->t[i];
        if (d->type != T_DATA) continue;
        d->line_start = (i == 0);
        if (i > 0) {
            tok *p = &L->t[i - 1];
            bool whole = p->type == T_COMMENT || p->type == T_RAW_BEGIN || p->type == T_RAW_END;
            char m = whole ? p->strip_r : p->strip;
            size_t k = 0;
            if (m == '-') {
                while (k < d->slen && is_space(d->s[k])) k++;
            } else if (p->type != T_VAR_END && p->type != T_RAW_BEGIN && m != '+' && d->slen && d->s[0] == '\n') {
                /* (jinja2 keeps the newline right after {% raw %}) */
                k = 1;
            }
            d->line_start = k > 0 && d->s[k - 1] == '\n';
            memmove(d->s, d->s + k, d->slen - k);
            d->slen -= k;
        }
        if (i + 1 < L->nt) {
            tok *nx = &L->t[i + 1];
            if (nx->type == T_EOF) continue;
            if (nx->strip == '-') {
                while (d->slen && is_space(d->s[d->slen - 1])) d->slen--;
            } else if (nx->type != T_VAR_BEGIN && nx->strip != '+') {
                size_t l = d->slen;
                while (l > 0 && d->s[l - 1] != '\n') l--;
                bool blank = l < d->slen;
                for (size_t j = l; j < d->slen; j++) if (!is_space_nonl(d->s[j])) blank = false;
                if (blank && (l > 0 || d->line_start)) d->slen = l;
            }
        }
        d->s[d->slen] = 0;
    }
    size_t w = 0;
    for (size_t i = 0; i < L->nt; i++) {
        tok_type ty = L->t[i].type;
        if (ty == T_COMMENT || ty == T_RAW_BEGIN || ty == T_RAW_END) continue;
        L->t[w++] = L->t[i];
    }
    L->nt = w;
}

static tw_status lx_data(lexer *L, size_t end) {
    tok *k = lx_push(L, T_DATA);
    if (!k) return TW_E_NOMEM;
    k->s = tw_strndup(L->src + L->pos, end - L->pos);
    if (!k->s) return TW_E_NOMEM;
    k->slen = end - L->pos;
    lx_adv(L, end - L->pos);
    return TW_OK;
}

static tw_status lx_run(lexer *L) {
    while (L->pos < L->n) {
        size_t q = L->pos;
        while (q + 1 < L->n && !(L->src[q] == '{' && strchr("{%#", L->src[q + 1]))) q++;
        if (q + 1 >= L->n) q = L->n;
        if (q > L->pos) TW_TRY(lx_data(L, q));
        if (q >= L->n) break;
        char c = L->src[q + 1], left, right;
        size_t after;
        if (c == '#') {
            size_t e = q + 2;
            while (e + 1 < L->n && !(L->src[e] == '#' && L->src[e + 1] == '}')) e++;
            if (e + 1 >= L->n) return lx_fail(L->line, L->col, "unterminated comment, expected '#}'");
            tok *k = lx_push(L, T_COMMENT);
            if (!k) return TW_E_NOMEM;
            k->strip = (L->src[q + 2] == '-' || L->src[q + 2] == '+') ? L->src[q + 2] : 0;
            k->strip_r = (e > q + 2 && L->src[e - 1] == '-') ? '-' : 0;
            lx_adv(L, e + 2 - L->pos);
        } else if (c == '%' && (after = lx_word_tag(L, q, "raw", &left, &right)) != 0) {
            tok *k = lx_push(L, T_RAW_BEGIN);
            if (!k) return TW_E_NOMEM;
            k->strip = left; k->strip_r = right;
            lx_adv(L, after - L->pos);
            size_t e = L->pos, end_after = 0;
            for (; e < L->n; e++)
                if ((end_after = lx_word_tag(L, e, "endraw", &left, &right)) != 0) break;
            if (e >= L->n) return lx_fail(k->line, k->col, "missing {% endraw %}");
            TW_TRY(lx_data(L, e));
            k = lx_push(L, T_RAW_END);
            if (!k) return TW_E_NOMEM;
            k->strip = left; k->strip_r = right;
            lx_adv(L, end_after - L->pos);
        } else {
            bool block = c == '%';
            tok *k = lx_push(L, block ? T_BLOCK_BEGIN : T_VAR_BEGIN);
            if (!k) return TW_E_NOMEM;
            lx_adv(L, 2);
            if (L->pos < L->n && (L->src[L->pos] == '-' || L->src[L->pos] == '+')) {
                k->strip = L->src[L->pos];
                lx_adv(L, 1);
            }
            TW_TRY(lx_tag(L, block));
        }
    }
    if (!lx_push(L, T_EOF)) return TW_E_NOMEM;
    lx_whitespace(L);
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Syntax tree                                                                                  */

typedef enum {
    N_BODY, N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_CALLBLOCK, N_FILTERBLOCK,
    N_BREAK, N_CONTINUE,
    N_LIT, N_NAME, N_LIST, N_DICT, N_ATTR, N_ITEM, N_SLICE, N_CALL, N_FILTER, N_TEST,
    N_BIN, N_NEG, N_POS, N_NOT, N_AND, N_OR, N_CMP, N_COND
} nkind;

typedef struct node node;
struct node {
    nkind  k;
    int    line, col;
    node  *a, *b, *c, *d;   /* operands / sub-bodies, per kind (see the parser)              */
    node **v;               /* children: statements, items, call arguments, dict pairs       */
    int    nv, capv;
    char  *name;            /* identifier (variable, attribute, filter, test, macro, ...)    */
    char  *kw;              /* as a call argument: the keyword name, or NULL                 */
    char **names;           /* for-loop targets, macro parameters, set targets               */
    int    nnames;
    int   *ops;             /* N_CMP: one operator per operand in v                          */
    int    op;              /* N_BIN operator; N_TEST: negated                               */
    json_t *lit;            /* N_LIT, N_TEXT                                                 */
};

struct tw_template {
    node  *root;
    node **all;             /* every node, for freeing */
    size_t nall, cap;
};

typedef struct parser {
    tw_template *t;
    tok   *k;
    size_t i, n;
    int    depth;
} parser;

enum { OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT,
       OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN };

static void node_free(node *n) {
    free(n->v);
    free(n->name);
    free(n->kw);
    for (int i = 0; i < n->nnames; i++) free(n->names[i]);
    free(n->names);
    free(n->ops);
    if (n->lit) json_decref(n->lit);
    free(n);
}

static node *nd(parser *P, nkind k, const tok *at) {
    tw_template *t = P->t;
    if (t->nall == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 64;
        node **na = tw_realloc(t->all, nc * sizeof *na);
        if (!na) return NULL;
        t->all = na; t->cap = nc;
    }
    node *n = tw_calloc(1, sizeof *n);
    if (!n) return NULL;
    n->k = k; n->line = at->line; n->col = at->col;
    t->all[t->nall++] = n;
    return n;
}

static bool nd_add(node *n, node *kid) {
    if (n->nv == n->capv) {
        int nc = n->capv ? n->capv * 2 : 4;
        node **nv = tw_realloc(n->v, (size_t)nc * sizeof *nv);
        if (!nv) return false;
        n->v = nv; n->capv = nc;
    }
    n->v[n->nv++] = kid;
    return true;
}

static bool nd_name(node *n, const char *s, size_t len) {
    char **nn = tw_realloc(n->names, (size_t)(n->nnames + 1) * sizeof *nn);
    if (!nn) return false;
    n->names = nn;
    if (!(nn[n->nnames] = tw_strndup(s, len))) return false;
    n->nnames++;
    return true;
}

static const char *tok_desc(const tok *k, char *buf, size_t cap) {
    switch (k->type) {
    case T_DATA: return "template text";
    case T_VAR_BEGIN: return "'{{'";
    case T_VAR_END: return "'}}'";
    case T_BLOCK_BEGIN: return "'{%'";
    case T_BLOCK_END: return "'%}'";
    case T_EOF: return "end of template";
    case T_STRING: return "a string";
    case T_INT: case T_FLOAT: return "a number";
    default: snprintf(buf, cap, "'%.*s'", (int)TW_MIN(k->n, 40), k->p); return buf;
    }
}

static node *p_fail(parser *P, const char *expected) {
    char buf[64];
    const tok *k = &P->k[P->i];
    tw_err(TW_E_TEMPLATE, "chat template:%d:%d: expected %s, got %s", k->line, k->col, expected,
           tok_desc(k, buf, sizeof buf));
    return NULL;
}

static tok *cur(parser *P) { return &P->k[P->i]; }
static bool is_op(const tok *k, const char *op) {
    return k->type == T_OP && k->n == strlen(op) && memcmp(k->p, op, k->n) == 0;
}
static bool is_kw(const tok *k, const char *w) {
    return k->type == T_NAME && k->n == strlen(w) && memcmp(k->p, w, k->n) == 0;
}
static bool skip_op(parser *P, const char *op) {
    if (!is_op(cur(P), op)) return false;
    P->i++;
    return true;
}
static bool skip_kw(parser *P, const char *w) {
    if (!is_kw(cur(P), w)) return false;
    P->i++;
    return true;
}
static bool expect_op(parser *P, const char *op) {
    if (skip_op(P, op)) return true;
    char e[16];
    snprintf(e, sizeof e, "'%s'", op);
    p_fail(P, e);
    return false;
}
static bool expect_end(parser *P) {
    if (cur(P)->type == T_BLOCK_END) { P->i++; return true; }
    p_fail(P, "'%}'");
    return false;
}

static node *p_expr(parser *P);
static node *p_or(parser *P);
static node *p_unary(parser *P, bool with_filter);
static node *p_primary(parser *P);
static node *p_postfix(parser *P, node *n);

/* Call arguments after '(' up to ')': positional ones, then name=value ones. */
static bool p_args(parser *P, node *call) {
    while (!skip_op(P, ")")) {
        if (call->nv && !expect_op(P, ",")) return false;
        if (skip_op(P, ")")) break;
        char *kw = NULL;
        if (cur(P)->type == T_NAME && is_op(&P->k[P->i + 1], "=")) {
            if (!(kw = tw_strndup(cur(P)->p, cur(P)->n))) return false;
            P->i += 2;
        }
        node *a = p_expr(P);
        if (!a) { free(kw); return false; }
        a->kw = kw;
        if (!nd_add(call, a)) return false;
    }
    return true;
}

static node *p_filter(parser *P, node *base) {
    tok *at = cur(P);
    if (at->type != T_NAME) return p_fail(P, "a filter name");
    node *f = nd(P, N_FILTER, at);
    if (!f || !(f->name = tw_strndup(at->p, at->n))) return NULL;
    P->i++;
    f->a = base;
    if (skip_op(P, "(") && !p_args(P, f)) return NULL;
    return f;
}

static node *p_filter_expr(parser *P, node *n) {
    for (;;) {
        tok *at = cur(P);
        if (skip_op(P, "|")) {
            if (!(n = p_filter(P, n))) return NULL;
        } else if (is_kw(at, "is")) {
            P->i++;
            node *t = nd(P, N_TEST, at);
            if (!t) return NULL;
            t->op = skip_kw(P, "not");
            tok *nm = cur(P);
            if (nm->type != T_NAME) return p_fail(P, "a test name");
            if (!(t->name = tw_strndup(nm->p, nm->n))) return NULL;
            P->i++;
            t->a = n;
            tok *c = cur(P);
            if (skip_op(P, "(")) {
                if (!p_args(P, t)) return NULL;
            } else if ((c->type == T_NAME || c->type == T_STRING || c->type == T_INT ||
                        c->type == T_FLOAT || is_op(c, "[") || is_op(c, "{")) &&
                       !is_kw(c, "else") && !is_kw(c, "or") && !is_kw(c, "and") && !is_kw(c, "is")) {
                node *arg = p_primary(P);
                if (!arg || !(arg = p_postfix(P, arg)) || !nd_add(t, arg)) return NULL;
            }
            n = t;
        } else if (is_op(at, "(")) {
            P->i++;
            node *c = nd(P, N_CALL, at);
            if (!c) return NULL;
            c->a = n;
            if (!p_args(P, c)) return NULL;
            n = c;
        } else {
            return n;
        }
    }
}

static node *p_postfix(parser *P, node *n) {
    for (;;) {
        tok *at = cur(P);
        if (skip_op(P, ".")) {
            tok *nm = cur(P);
            if (nm->type == T_NAME) {
                node *a = nd(P, N_ATTR, at);
                if (!a || !(a->name = tw_strndup(nm->p, nm->n))) return NULL;
                a->a = n; n = a;
            } else if (nm->type == T_INT) {
                node *a = nd(P, N_ITEM, at), *l = nd(P, N_LIT, nm);
                if (!a || !l || !(l->lit = json_integer(nm->i))) return NULL;
                a->a = n; a->b = l; n = a;
            } else {
                return p_fail(P, "an attribute name");
            }
            P->i++;
        } else if (skip_op(P, "[")) {
            node *lo = NULL, *hi = NULL, *step = NULL;
            bool slice = false;
            if (!is_op(cur(P), ":") && !(lo = p_expr(P))) return NULL;
            if (skip_op(P, ":")) {
                slice = true;
                if (!is_op(cur(P), ":") && !is_op(cur(P), "]") && !(hi = p_expr(P))) return NULL;
                if (skip_op(P, ":") && !is_op(cur(P), "]") && !(step = p_expr(P))) return NULL;
            }
            if (!expect_op(P, "]")) return NULL;
            node *s = nd(P, slice ? N_SLICE : N_ITEM, at);
            if (!s) return NULL;
            s->a = n; s->b = lo; s->c = hi; s->d = step;
            n = s;
        } else if (skip_op(P, "(")) {
            node *c = nd(P, N_CALL, at);
            if (!c) return NULL;
            c->a = n;
            if (!p_args(P, c)) return NULL;
            n = c;
        } else {
            return n;
        }
    }
}

/* Expressions inside ( ) or [ ]: a single expression, or a tuple (kept as a list). */
static node *p_seq(parser *P, const char *close, bool *is_tuple, node *list) {
    *is_tuple = false;
    while (!skip_op(P, close)) {
        if (list->nv) {
            if (!expect_op(P, ",")) return NULL;
            *is_tuple = true;
            if (skip_op(P, close)) break;
        }
        node *e = p_expr(P);
        if (!e || !nd_add(list, e)) return NULL;
    }
    return list;
}

static node *p_primary(parser *P) {
    tok *at = cur(P);
    if (++P->depth > JJ_MAX_DEPTH) {
        tw_err(TW_E_TEMPLATE, "chat template:%d:%d: expression nested too deeply", at->line, at->col);
        return NULL;
    }
    node *n = NULL;
    if (at->type == T_NAME) {
        n = nd(P, N_LIT, at);
        if (!n) return NULL;
        if (is_kw(at, "true") || is_kw(at, "True")) n->lit = json_true();
        else if (is_kw(at, "false") || is_kw(at, "False")) n->lit = json_false();
        else if (is_kw(at, "none") || is_kw(at, "None")) n->lit = json_null();
        else {
            n->k = N_NAME;
            if (!(n->name = tw_strndup(at->p, at->n))) return NULL;
        }
        P->i++;
    } else if (at->type == T_STRING) {
        tw_buf b = {0};
        while (cur(P)->type == T_STRING) {   /* adjacent literals concatenate, as in Python */
            tw_buf_append(&b, cur(P)->s, cur(P)->slen);
            P->i++;
        }
        if (!(n = nd(P, N_LIT, at))) { tw_buf_free(&b); return NULL; }
        n->lit = json_stringn_nocheck(b.data ? b.data : "", b.len);
        tw_buf_free(&b);
    } else if (at->type == T_INT || at->type == T_FLOAT) {
        if (!(n = nd(P, N_LIT, at))) return NULL;
        n->lit = at->type == T_INT ? json_integer(at->i) : json_real(at->f);
        P->i++;
    } else if (skip_op(P, "(")) {
        bool tuple;
        node *l = nd(P, N_LIST, at);
        if (!l || !p_seq(P, ")", &tuple, l)) return NULL;
        n = (tuple || l->nv != 1) ? l : l->v[0];
    } else if (skip_op(P, "[")) {
        bool tuple;
        if (!(n = nd(P, N_LIST, at)) || !p_seq(P, "]", &tuple, n)) return NULL;
    } else if (skip_op(P, "{")) {
        if (!(n = nd(P, N_DICT, at))) return NULL;
        while (!skip_op(P, "}")) {
            if (n->nv && !expect_op(P, ",")) return NULL;
            if (skip_op(P, "}")) break;
            node *k = p_expr(P), *v;
            if (!k || !expect_op(P, ":") || !(v = p_expr(P))) return NULL;
            if (!nd_add(n, k) || !nd_add(n, v)) return NULL;
        }
    } else {
        return p_fail(P, "an expression");
    }
    P->depth--;
    return n;
}

static node *p_unary(parser *P, bool with_filter) {
    tok *at = cur(P);
    node *n;
    if (is_op(at, "-") || is_op(at, "+")) {
        P->i++;
        if (++P->depth > JJ_MAX_DEPTH) return p_fail(P, "a shallower expression");
        node *x = p_unary(P, false);
        P->depth--;
        if (!x || !(n = nd(P, is_op(at, "-") ? N_NEG : N_POS, at))) return NULL;
        n->a = x;
    } else if (!(n = p_primary(P))) {
        return NULL;
    }
    if (!(n = p_postfix(P, n))) return NULL;
    return with_filter ? p_filter_expr(P, n) : n;
}

static node *p_bin(parser *P, nkind k, int op, node *l, node *r, const tok *at) {
    node *n = nd(P, k, at);
    if (!n) return NULL;
    n->op = op; n->a = l; n->b = r;
    return n;
}

static node *p_pow(parser *P) {
    node *l = p_unary(P, true);
    while (l && is_op(cur(P), "**")) {
        tok *at = cur(P); P->i++;
        node *r = p_unary(P, true);
        l = r ? p_bin(P, N_BIN, OP_POW, l, r, at) : NULL;
    }
    return l;
}

static node *p_math2(parser *P) {
    node *l = p_pow(P);
    for (;;) {
        tok *at = cur(P);
        int op = is_op(at, "*") ? OP_MUL : is_op(at, "/") ? OP_DIV : is_op(at, "//") ? OP_FLOORDIV
               : is_op(at, "%") ? OP_MOD : 0;
        if (!l || !op) return l;
        P->i++;
        node *r = p_pow(P);
        l = r ? p_bin(P, N_BIN, op, l, r, at) : NULL;
    }
}

static node *p_concat(parser *P) {
    node *l = p_math2(P);
    while (l && is_op(cur(P), "~")) {
        tok *at = cur(P); P->i++;
        node *r = p_math2(P);
        l = r ? p_bin(P, N_BIN, OP_CONCAT, l, r, at) : NULL;
    }
    return l;
}

static node *p_math1(parser *P) {
    node *l = p_concat(P);
    for (;;) {
        tok *at = cur(P);
        int op = is_op(at, "+") ? OP_ADD : is_op(at, "-") ? OP_SUB : 0;
        if (!l || !op) return l;
        P->i++;
        node *r = p_concat(P);
        l = r ? p_bin(P, N_BIN, op, l, r, at) : NULL;
    }
}

static node *p_compare(parser *P) {
    node *l = p_math1(P);
    if (!l) return NULL;
    node *cmp = NULL;
    for (;;) {
        tok *at = cur(P);
        int op = is_op(at, "==") ? OP_EQ : is_op(at, "!=") ? OP_NE : is_op(at, "<") ? OP_LT
               : is_op(at, "<=") ? OP_LE : is_op(at, ">") ? OP_GT : is_op(at, ">=") ? OP_GE
               : is_kw(at, "in") ? OP_IN : 0;
        if (!op && is_kw(at, "not") && is_kw(&P->k[P->i + 1], "in")) { op = OP_NOTIN; P->i++; }
        if (!op) return cmp ? cmp : l;
        P->i++;
        if (!cmp) {
            if (!(cmp = nd(P, N_CMP, at))) return NULL;
            cmp->a = l;
        }
        node *r = p_math1(P);
        if (!r) return NULL;
        int *ops = tw_realloc(cmp->ops, (size_t)(cmp->nv + 1) * sizeof *ops);
        if (!ops) return NULL;
        cmp->ops = ops;
        ops[cmp->nv] = op;
        if (!nd_add(cmp, r)) return NULL;
    }
}

static node *p_not(parser *P) {
    tok *at = cur(P);
    if (skip_kw(P, "not")) {
        if (++P->depth > JJ_MAX_DEPTH) return p_fail(P, "a shallower expression");
        node *x = p_not(P), *n;
        P->depth--;
        if (!x || !(n = nd(P, N_NOT, at))) return NULL;
        n->a = x;
        return n;
    }
    return p_compare(P);
}

static node *p_and(parser *P) {
    node *l = p_not(P);
    while (l && is_kw(cur(P), "and")) {
        tok *at = cur(P); P->i++;
        node *r = p_not(P);
        l = r ? p_bin(P, N_AND, 0, l, r, at) : NULL;
    }
    return l;
}

static node *p_or(parser *P) {
    node *l = p_and(P);
    while (l && is_kw(cur(P), "or")) {
        tok *at = cur(P); P->i++;
        node *r = p_and(P);
        l = r ? p_bin(P, N_OR, 0, l, r, at) : NULL;
    }
    return l;
}

/* x if cond [else y]; a missing else gives Undefined, as in jinja2. */
static node *p_expr(parser *P) {
    if (++P->depth > JJ_MAX_DEPTH) return p_fail(P, "a shallower expression");
    node *n = p_or(P);
    while (n && is_kw(cur(P), "if")) {
        tok *at = cur(P); P->i++;
        node *c = nd(P, N_COND, at);
        if (!c || !(c->b = p_or(P))) return NULL;
        c->a = n;
        if (skip_kw(P, "else") && !(c->c = p_expr(P))) return NULL;
        n = c;
    }
    P->depth--;
    return n;
}

/* An expression list without parentheses, as after "for x in" or "set x =": a, b -> a tuple. */
static node *p_tuple(parser *P, bool with_cond) {
    tok *at = cur(P);
    node *e = with_cond ? p_expr(P) : p_or(P);
    if (!e || !is_op(cur(P), ",")) return e;
    node *l = nd(P, N_LIST, at);
    if (!l || !nd_add(l, e)) return NULL;
    while (skip_op(P, ",")) {
        if (cur(P)->type == T_BLOCK_END || is_kw(cur(P), "if")) break;
        if (!(e = with_cond ? p_expr(P) : p_or(P)) || !nd_add(l, e)) return NULL;
    }
    return l;
}

/* ---- statements ---- */

static node *p_body(parser *P, const char *const *ends, int *which);

static node *p_stmt(parser *P);

/* Parses "name (, name)*" targets into n->names. */
static bool p_targets(parser *P, node *n) {
    bool paren = skip_op(P, "(");
    do {
        tok *k = cur(P);
        if (k->type != T_NAME) { p_fail(P, "a variable name"); return false; }
        if (!nd_name(n, k->p, k->n)) return false;
        P->i++;
    } while (skip_op(P, ","));
    return !paren || expect_op(P, ")");
}

/* Expects the closing {% end... %} (at its name token) and consumes it. */
static bool p_close(parser *P) {
    P->i++;
    if (cur(P)->type == T_NAME) P->i++;   /* {% endmacro name %} */
    return expect_end(P);
}

static node *p_if(parser *P, const tok *at) {
    static const char *const ends[] = { "elif", "else", "endif", NULL };
    static const char *const endif[] = { "endif", NULL };
    node *n = nd(P, N_IF, at);
    int which;
    if (!n || !(n->a = p_expr(P)) || !expect_end(P) || !(n->b = p_body(P, ends, &which))) return NULL;
    if (which == 0) {
        tok *e = cur(P); P->i++;
        return (n->c = p_if(P, e)) ? n : NULL;
    }
    if (which == 1) {
        P->i++;
        if (!expect_end(P) || !(n->c = p_body(P, endif, &which))) return NULL;
    }
    P->i++;
    return expect_end(P) ? n : NULL;
}

static node *p_stmt(parser *P) {
    tok *at = cur(P);
    static const char *const for_ends[] = { "else", "endfor", NULL };
    int which;
    if (skip_kw(P, "if")) return p_if(P, at);
    if (skip_kw(P, "for")) {
        node *n = nd(P, N_FOR, at);
        if (!n || !p_targets(P, n)) return NULL;
        if (!skip_kw(P, "in")) return p_fail(P, "'in'");
        if (!(n->a = p_tuple(P, false))) return NULL;
        if (skip_kw(P, "if") && !(n->b = p_expr(P))) return NULL;
        if (skip_kw(P, "recursive")) n->op = 1;
        if (!expect_end(P) || !(n->c = p_body(P, for_ends, &which))) return NULL;
        if (which == 0) {
            static const char *const endfor[] = { "endfor", NULL };
            P->i++;
            if (!expect_end(P) || !(n->d = p_body(P, endfor, &which))) return NULL;
        }
        P->i++;
        return expect_end(P) ? n : NULL;
    }
    if (skip_kw(P, "set")) {
        node *n = nd(P, N_SET, at);
        if (!n) return NULL;
        tok *k = cur(P);
        if (k->type != T_NAME) return p_fail(P, "a variable name");
        if (is_op(&P->k[P->i + 1], ".")) {           /* {% set ns.attr = value %} */
            if (!nd_name(n, k->p, k->n)) return NULL;
            P->i += 2;
            tok *a = cur(P);
            if (a->type != T_NAME) return p_fail(P, "an attribute name");
            if (!(n->name = tw_strndup(a->p, a->n))) return NULL;
            P->i++;
        } else if (!p_targets(P, n)) {
            return NULL;
        }
        if (skip_op(P, "=")) {
            if (!(n->a = p_tuple(P, true))) return NULL;
            return expect_end(P) ? n : NULL;
        }
        if (n->name || n->nnames != 1) return p_fail(P, "'='");
        static const char *const endset[] = { "endset", NULL };
        n->k = N_SETBLOCK;
        if (!expect_end(P) || !(n->a = p_body(P, endset, &which))) return NULL;
        P->i++;
        return expect_end(P) ? n : NULL;
    }
    if (skip_kw(P, "macro") || is_kw(at, "call")) {
        bool call = is_kw(at, "call");
        if (call) P->i++;
        node *n = nd(P, call ? N_CALLBLOCK : N_MACRO, at);
        if (!n) return NULL;
        if (call && is_op(cur(P), "(")) {
            /* caller parameters */
        } else if (!call) {
            tok *k = cur(P);
            if (k->type != T_NAME) return p_fail(P, "a macro name");
            if (!(n->name = tw_strndup(k->p, k->n))) return NULL;
            P->i++;
        }
        if (!call || is_op(cur(P), "(")) {     /* parameters with optional defaults */
            if (!expect_op(P, "(")) return NULL;
            while (!skip_op(P, ")")) {
                if (n->nnames && !expect_op(P, ",")) return NULL;
                tok *k = cur(P);
                if (k->type != T_NAME) return p_fail(P, "a parameter name");
                if (!nd_name(n, k->p, k->n)) return NULL;
                P->i++;
                node *def = NULL;
                if (skip_op(P, "=") && !(def = p_expr(P))) return NULL;
                if (!nd_add(n, def)) return NULL;
            }
        }
        if (call) {
            if (!(n->b = p_expr(P))) return NULL;
            if (n->b->k != N_CALL) return p_fail(P, "a macro call");
        }
        static const char *const endm[] = { "endmacro", NULL }, *const endc[] = { "endcall", NULL };
        if (!expect_end(P) || !(n->a = p_body(P, call ? endc : endm, &which))) return NULL;
        return p_close(P) ? n : NULL;
    }
    if (skip_kw(P, "filter")) {
        node *n = nd(P, N_FILTERBLOCK, at), *base = nd(P, N_LIT, at);
        if (!n || !base || !(base->lit = json_string(""))) return NULL;
        base->k = N_NAME;
        if (!(base->name = tw_strdup("\x01body"))) return NULL;
        node *f = p_filter(P, base);
        while (f && skip_op(P, "|")) f = p_filter(P, f);
        static const char *const endf[] = { "endfilter", NULL };
        if (!f || !expect_end(P) || !(n->a = p_body(P, endf, &which))) return NULL;
        n->b = f;
        return p_close(P) ? n : NULL;
    }
    if (skip_kw(P, "generation")) {   /* transformers' AssistantTracker: renders its body */
        static const char *const endg[] = { "endgeneration", NULL };
        node *n;
        if (!expect_end(P) || !(n = p_body(P, endg, &which))) return NULL;
        return p_close(P) ? n : NULL;
    }
    if (skip_kw(P, "break") || skip_kw(P, "continue")) {
        node *n = nd(P, is_kw(at, "break") ? N_BREAK : N_CONTINUE, at);
        return n && expect_end(P) ? n : NULL;
    }
    char buf[64];
    tw_err(TW_E_TEMPLATE, "chat template:%d:%d: unknown tag %s", at->line, at->col,
           tok_desc(at, buf, sizeof buf));
    return NULL;
}

/* Statements until EOF (ends == NULL) or until "{% <one of ends>": *which is its index and the
** parser stops at that name token. */
static node *p_body(parser *P, const char *const *ends, int *which) {
    node *body = nd(P, N_BODY, cur(P));
    if (!body) return NULL;
    if (++P->depth > JJ_MAX_DEPTH) return p_fail(P, "fewer nested blocks");
    for (;;) {
        tok *k = cur(P);
        if (k->type == T_EOF) {
            if (!ends) { P->depth--; return body; }
            char e[64];
            int last = 0;
            while (ends[last + 1]) last++;
            snprintf(e, sizeof e, "'{%% %s %%}'", ends[last]);
            return p_fail(P, e);
        }
        if (k->type == T_DATA) {
            P->i++;
            if (!k->slen) continue;
            node *t = nd(P, N_TEXT, k);
            if (!t || !(t->lit = json_stringn_nocheck(k->s, k->slen)) || !nd_add(body, t)) return NULL;
        } else if (k->type == T_VAR_BEGIN) {
            P->i++;
            node *o = nd(P, N_OUT, k);
            if (!o || !(o->a = p_expr(P))) return NULL;
            if (cur(P)->type != T_VAR_END) return p_fail(P, "'}}'");
            P->i++;
            if (!nd_add(body, o)) return NULL;
        } else if (k->type == T_BLOCK_BEGIN) {
            P->i++;
            tok *nm = cur(P);
            if (nm->type != T_NAME) return p_fail(P, "a statement name");
            if (ends)
                for (int j = 0; ends[j]; j++)
                    if (is_kw(nm, ends[j])) { *which = j; P->depth--; return body; }
            node *s = p_stmt(P);
            if (!s || !nd_add(body, s)) return NULL;
        } else {
            return p_fail(P, "'{{' or '{%'");
        }
    }
}

static void lx_free(lexer *L) {
    for (size_t i = 0; i < L->nt; i++) free(L->t[i].s);
    free(L->t);
}

void tw_template_free(tw_template *t) {
    if (!t) return;
    for (size_t i = 0; i < t->nall; i++) node_free(t->all[i]);
    free(t->all);
    free(t);
}

tw_status tw_template_new(const char *source, size_t len, tw_template **out) {
    if (!out || (!source && len)) return tw_err(TW_E_ARG, "tw_template_new: NULL argument");
    *out = NULL;
    /* jinja2 normalises newlines to "\n" and drops one trailing newline of the source
    ** (keep_trailing_newline=False). */
    char *src = tw_malloc(len + 1);
    if (!src) return TW_E_NOMEM;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (source[i] == '\r') {
            src[n++] = '\n';
            if (i + 1 < len && source[i + 1] == '\n') i++;
        } else {
            src[n++] = source[i];
        }
    }
    if (n && src[n - 1] == '\n') n--;
    src[n] = 0;
    lexer L = { .src = src, .n = n, .line = 1, .col = 1 };
    tw_status s = lx_run(&L);
    tw_template *t = NULL;
    if (s == TW_OK && !(t = tw_calloc(1, sizeof *t))) s = TW_E_NOMEM;
    if (s == TW_OK) {
        parser P = { .t = t, .k = L.t, .n = L.nt };
        t->root = p_body(&P, NULL, NULL);
        if (!t->root) s = TW_E_TEMPLATE;
    }
    lx_free(&L);
    free(src);
    if (s != TW_OK) {
        tw_template_free(t);
        return s;
    }
    *out = t;
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Values                                                                                       */
/*
** json_t values with NULL for Undefined. Every function returning json_t* returns a new
** reference. Callables (macros, caller) and namespaces are JSON objects registered in the
** render state, so data coming from the caller can never pose as one.
*/

typedef struct frame {
    json_t       *vars;
    struct frame *parent;
} frame;

typedef enum { REG_MACRO, REG_CALLER, REG_NS } reg_kind;
typedef struct reg {
    reg_kind kind;
    json_t  *obj;      /* owned reference */
    node    *n;        /* macro or call block */
    frame   *f;        /* caller: the call site's scope, NULL once the call block ended */
} reg;

typedef struct R {
    const json_t *ctx;
    frame   *f, *root;
    tw_buf  *out;
    tw_status st;
    long     iters;
    int      depth;
    int      brk;      /* 1: break, 2: continue pending */
    reg     *reg;
    size_t   nreg, capreg;
} R;

typedef struct args {
    int     n;
    json_t *v[JJ_MAX_ARGS];
    const char *kw[JJ_MAX_ARGS];
} args;

static json_t *fail(R *r, const node *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static json_t *fail(R *r, const node *n, const char *fmt, ...) {
    if (r->st != TW_OK) return NULL;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->st = tw_err(TW_E_TEMPLATE, "chat template:%d:%d: %s", n ? n->line : 0, n ? n->col : 0, msg);
    return NULL;
}

static json_t *mkstr(const char *s, size_t n) { return json_stringn_nocheck(s ? s : "", n); }
static json_t *buf_str(tw_buf *b) {
    json_t *v = mkstr(b->data, b->len);
    tw_buf_free(b);
    return v;
}

static bool is_num(const json_t *v) { return v && (json_is_integer(v) || json_is_real(v) || json_is_boolean(v)); }
static double num(const json_t *v) {
    return json_is_integer(v) ? (double)json_integer_value(v) : json_is_real(v) ? json_real_value(v)
         : json_is_true(v) ? 1.0 : 0.0;
}
static bool is_intlike(const json_t *v) { return v && (json_is_integer(v) || json_is_boolean(v)); }
static int64_t ival(const json_t *v) { return json_is_integer(v) ? json_integer_value(v) : json_is_true(v); }

static reg *reg_find(const R *r, const json_t *v) {
    if (!json_is_object(v)) return NULL;
    for (size_t i = 0; i < r->nreg; i++) if (r->reg[i].obj == v) return &r->reg[i];
    return NULL;
}

static json_t *reg_add(R *r, reg_kind kind, node *n, frame *f) {
    if (r->nreg == r->capreg) {
        size_t nc = r->capreg ? r->capreg * 2 : 8;
        reg *nr = tw_realloc(r->reg, nc * sizeof *nr);
        if (!nr) { r->st = TW_E_NOMEM; return NULL; }
        r->reg = nr; r->capreg = nc;
    }
    json_t *o = json_object();
    if (!o) { r->st = tw_err(TW_E_NOMEM, "out of memory"); return NULL; }
    r->reg[r->nreg++] = (reg){ kind, o, n, f };
    return json_incref(o);
}

static bool truthy(const R *r, const json_t *v) {
    if (!v) return false;
    switch (json_typeof(v)) {
    case JSON_NULL: case JSON_FALSE: return false;
    case JSON_TRUE: return true;
    case JSON_INTEGER: return json_integer_value(v) != 0;
    case JSON_REAL: return json_real_value(v) != 0.0;
    case JSON_STRING: return json_string_length(v) > 0;
    case JSON_ARRAY: return json_array_size(v) > 0;
    case JSON_OBJECT: return reg_find(r, v) != NULL || json_object_size(v) > 0;
    }
    return false;
}

/* ---- UTF-8 ---- */

static size_t u8_next(const char *s, size_t n, size_t i, uint32_t *cp) {
    unsigned char c = (unsigned char)s[i];
    size_t k = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (c >= 0x80 && c < 0xC0) k = 1;
    if (i + k > n) k = n - i;
    uint32_t v = k == 1 ? c : k == 2 ? (c & 31u) : k == 3 ? (c & 15u) : (c & 7u);
    for (size_t j = 1; j < k; j++) v = v << 6 | ((unsigned char)s[i + j] & 63u);
    if (cp) *cp = v;
    return k;
}
static size_t u8_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i += u8_next(s, n, i, NULL)) c++;
    return c;
}
/* Byte offset of code point k (clamped to n). */
static size_t u8_offset(const char *s, size_t n, size_t k) {
    size_t i = 0;
    while (k-- && i < n) i += u8_next(s, n, i, NULL);
    return i;
}

/* Python's str.isspace() set. */
static bool u_space(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/* Simple case mappings: ASCII, Latin-1, Greek and Cyrillic (enough for chat roles and
** prompts; full Unicode casing is not needed by any known chat template). */
static uint32_t u_upper(uint32_t c) {
    if (c >= 'a' && c <= 'z') return c - 32;
    if ((c >= 0xE0 && c <= 0xFE && c != 0xF7) || (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) ||
        (c >= 0x430 && c <= 0x44F)) return c - 32;
    if (c >= 0x450 && c <= 0x45F) return c - 80;
    return c;
}
static uint32_t u_lower(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if ((c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) ||
        (c >= 0x410 && c <= 0x42F)) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    return c;
}
static bool u_cased(uint32_t c) { return u_upper(c) != c || u_lower(c) != c; }

/* mode: 'u' upper, 'l' lower, 't' Python str.title(), 'c' capitalize, 'j' jinja2's title filter */
static json_t *str_case(const json_t *v, char mode) {
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    tw_buf b = {0};
    bool start = true;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t k = u8_next(s, n, i, &c);
        uint32_t o = c;
        switch (mode) {
        case 'u': o = u_upper(c); break;
        case 'l': o = u_lower(c); break;
        case 'c': o = i == 0 ? u_upper(c) : u_lower(c); break;
        case 't': o = start ? u_upper(c) : u_lower(c); start = !u_cased(c); break;
        case 'j': o = start ? u_upper(c) : u_lower(c);
                  start = u_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<'; break;
        }
        if (o == c) tw_buf_append(&b, s + i, k); else utf8_put(&b, o);
        i += k;
    }
    return buf_str(&b);
}

/* Python str.strip/lstrip/rstrip; chars == NULL strips whitespace. */
static json_t *str_strip(const json_t *v, const json_t *chars, bool left, bool right) {
    const char *s = json_string_value(v), *cs = chars ? json_string_value(chars) : NULL;
    size_t n = json_string_length(v), cn = cs ? json_string_length(chars) : 0;
    size_t a = 0, e = n;
    for (;;) {
        if (!left || a >= e) break;
        uint32_t c;
        size_t k = u8_next(s, n, a, &c);
        bool in = false;
        if (cs) { for (size_t j = 0; j < cn;) { uint32_t d; j += u8_next(cs, cn, j, &d); if (d == c) in = true; } }
        else in = u_space(c);
        if (!in) break;
        a += k;
    }
    while (right && e > a) {
        size_t st = e - 1;
        while (st > a && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
        uint32_t c;
        u8_next(s, n, st, &c);
        bool in = false;
        if (cs) { for (size_t j = 0; j < cn;) { uint32_t d; j += u8_next(cs, cn, j, &d); if (d == c) in = true; } }
        else in = u_space(c);
        if (!in) break;
        e = st;
    }
    return mkstr(s + a, e - a);
}

/* ---- printing: Python str() / repr() and json.dumps ---- */

static void fmt_float(tw_buf *b, double d, bool json) {
    if (isnan(d)) { tw_buf_appendf(b, json ? "NaN" : "nan"); return; }
    if (isinf(d)) { tw_buf_appendf(b, d > 0 ? (json ? "Infinity" : "inf") : (json ? "-Infinity" : "-inf")); return; }
    char s[40];
    int p;
    for (p = 1; p < 17; p++) {   /* shortest representation that reads back exactly (repr) */
        snprintf(s, sizeof s, "%.*e", p - 1, d);
        if (strtod(s, NULL) == d) break;
    }
    snprintf(s, sizeof s, "%.*e", p - 1, d);
    char *e = strchr(s, 'e');
    int exp = atoi(e + 1);
    *e = 0;
    char digits[24]; int nd = 0;
    bool neg = s[0] == '-';
    for (char *c = s; *c; c++) if (isdigit((unsigned char)*c)) digits[nd++] = *c;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    if (neg) tw_buf_putc(b, '-');
    if (exp < -4 || exp >= 16) {
        tw_buf_putc(b, digits[0]);
        if (nd > 1) { tw_buf_putc(b, '.'); tw_buf_append(b, digits + 1, (size_t)nd - 1); }
        tw_buf_appendf(b, "e%c%02d", exp < 0 ? '-' : '+', abs(exp));
    } else if (exp < 0) {
        tw_buf_appendf(b, "0.");
        for (int i = -1; i > exp; i--) tw_buf_putc(b, '0');
        tw_buf_append(b, digits, (size_t)nd);
    } else {
        for (int i = 0; i <= exp; i++) tw_buf_putc(b, i < nd ? digits[i] : '0');
        tw_buf_putc(b, '.');
        if (nd > exp + 1) tw_buf_append(b, digits + exp + 1, (size_t)(nd - exp - 1));
        else tw_buf_putc(b, '0');
    }
}

static void repr_str(tw_buf *b, const char *s, size_t n) {
    bool sq = memchr(s, '\'', n) != NULL, dq = memchr(s, '"', n) != NULL;
    char q = (sq && !dq) ? '"' : '\'';
    tw_buf_putc(b, q);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == (unsigned char)q || c == '\\') { tw_buf_putc(b, '\\'); tw_buf_putc(b, (char)c); }
        else if (c == '\n') tw_buf_appendf(b, "\\n");
        else if (c == '\r') tw_buf_appendf(b, "\\r");
        else if (c == '\t') tw_buf_appendf(b, "\\t");
        else if (c < 0x20 || c == 0x7F) tw_buf_appendf(b, "\\x%02x", c);
        else tw_buf_putc(b, (char)c);
    }
    tw_buf_putc(b, q);
}

static bool hidden_key(const char *k) { return k[0] == '\x01'; }

static void to_str(const R *r, tw_buf *b, const json_t *v, bool repr, int depth) {
    if (!v) return;
    if (depth > JJ_MAX_DEPTH) { tw_buf_appendf(b, "..."); return; }
    switch (json_typeof(v)) {
    case JSON_NULL: tw_buf_appendf(b, "None"); break;
    case JSON_TRUE: tw_buf_appendf(b, "True"); break;
    case JSON_FALSE: tw_buf_appendf(b, "False"); break;
    case JSON_INTEGER: tw_buf_appendf(b, "%" PRId64, (int64_t)json_integer_value(v)); break;
    case JSON_REAL: fmt_float(b, json_real_value(v), false); break;
    case JSON_STRING:
        if (repr) repr_str(b, json_string_value(v), json_string_length(v));
        else tw_buf_append(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_ARRAY: {
        tw_buf_putc(b, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) tw_buf_appendf(b, ", ");
            to_str(r, b, json_array_get(v, i), true, depth + 1);
        }
        tw_buf_putc(b, ']');
        break;
    }
    case JSON_OBJECT: {
        reg *g = reg_find(r, v);
        if (g && g->kind != REG_NS) { tw_buf_appendf(b, "<macro>"); break; }
        if (g) tw_buf_appendf(b, "<Namespace ");
        tw_buf_putc(b, '{');
        const char *k; json_t *x; bool first = true;
        json_object_foreach((json_t *)v, k, x) {
            if (hidden_key(k)) continue;
            if (!first) tw_buf_appendf(b, ", ");
            first = false;
            repr_str(b, k, strlen(k));
            tw_buf_appendf(b, ": ");
            to_str(r, b, x, true, depth + 1);
        }
        tw_buf_putc(b, '}');
        if (g) tw_buf_putc(b, '>');
        break;
    }
    }
}

static void json_str(tw_buf *b, const char *s, size_t n) {
    tw_buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': tw_buf_appendf(b, "\\\""); break;
        case '\\': tw_buf_appendf(b, "\\\\"); break;
        case '\n': tw_buf_appendf(b, "\\n"); break;
        case '\r': tw_buf_appendf(b, "\\r"); break;
        case '\t': tw_buf_appendf(b, "\\t"); break;
        case '\b': tw_buf_appendf(b, "\\b"); break;
        case '\f': tw_buf_appendf(b, "\\f"); break;
        default:
            if (c < 0x20) tw_buf_appendf(b, "\\u%04x", c);
            else tw_buf_putc(b, (char)c);   /* ensure_ascii=False: UTF-8 as is */
        }
    }
    tw_buf_putc(b, '"');
}

typedef struct dumpopt { int indent; const char *isep, *ksep; bool sort; } dumpopt;

static int key_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void dump_nl(tw_buf *b, const dumpopt *o, int level) {
    tw_buf_putc(b, '\n');
    for (int i = 0; i < o->indent * level; i++) tw_buf_putc(b, ' ');
}

/* json.dumps(v, ensure_ascii=False, indent, separators, sort_keys), as transformers' tojson. */
static bool dump(const R *r, tw_buf *b, const json_t *v, const dumpopt *o, int level) {
    if (!v || level > JJ_MAX_DEPTH) return false;
    switch (json_typeof(v)) {
    case JSON_NULL: tw_buf_appendf(b, "null"); return true;
    case JSON_TRUE: tw_buf_appendf(b, "true"); return true;
    case JSON_FALSE: tw_buf_appendf(b, "false"); return true;
    case JSON_INTEGER: tw_buf_appendf(b, "%" PRId64, (int64_t)json_integer_value(v)); return true;
    case JSON_REAL: fmt_float(b, json_real_value(v), true); return true;
    case JSON_STRING: json_str(b, json_string_value(v), json_string_length(v)); return true;
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        tw_buf_putc(b, '[');
        for (size_t i = 0; i < n; i++) {
            if (i) tw_buf_appendf(b, "%s", o->isep);
            if (o->indent >= 0) dump_nl(b, o, level + 1);
            if (!dump(r, b, json_array_get(v, i), o, level + 1)) return false;
        }
        if (n && o->indent >= 0) dump_nl(b, o, level);
        tw_buf_putc(b, ']');
        return true;
    }
    case JSON_OBJECT: {
        if (reg_find(r, v)) return false;
        size_t n = json_object_size(v), m = 0;
        const char **keys = tw_calloc(n ? n : 1, sizeof *keys);
        if (!keys) return false;
        const char *k; json_t *x;
        json_object_foreach((json_t *)v, k, x) if (!hidden_key(k)) keys[m++] = k;
        if (o->sort) qsort(keys, m, sizeof *keys, key_cmp);
        tw_buf_putc(b, '{');
        bool ok = true;
        for (size_t i = 0; i < m && ok; i++) {
            if (i) tw_buf_appendf(b, "%s", o->isep);
            if (o->indent >= 0) dump_nl(b, o, level + 1);
            json_str(b, keys[i], strlen(keys[i]));
            tw_buf_appendf(b, "%s", o->ksep);
            ok = dump(r, b, json_object_get(v, keys[i]), o, level + 1);
        }
        free(keys);
        if (!ok) return false;
        if (m && o->indent >= 0) dump_nl(b, o, level);
        tw_buf_putc(b, '}');
        return true;
    }
    }
    return false;
}

/* ---- comparison ---- */

static bool equal(const json_t *a, const json_t *b, int depth) {
    if (!a || !b) return a == b;
    if (depth > JJ_MAX_DEPTH) return false;
    if (is_num(a) && is_num(b)) return num(a) == num(b) && (!is_intlike(a) || !is_intlike(b) || ival(a) == ival(b));
    if (json_typeof(a) != json_typeof(b)) return false;
    if (json_is_string(a))
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b)) return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!equal(json_array_get(a, i), json_array_get(b, i), depth + 1)) return false;
        return true;
    }
    if (json_is_object(a)) {
        if (a == b) return true;
        if (json_object_size(a) != json_object_size(b)) return false;
        const char *k; json_t *x;
        json_object_foreach((json_t *)a, k, x) if (!equal(x, json_object_get(b, k), depth + 1)) return false;
        return true;
    }
    return true;   /* null */
}

/* Ordering for <, sort, min, max: numbers with numbers, strings with strings (code point order,
** which is UTF-8 byte order), lists element-wise. Returns 2 when the types do not compare. */
static int order(const json_t *a, const json_t *b, bool fold) {
    if (is_num(a) && is_num(b)) { double x = num(a), y = num(b); return x < y ? -1 : x > y; }
    if (json_is_string(a) && json_is_string(b)) {
        const char *s = json_string_value(a), *t = json_string_value(b);
        size_t n = json_string_length(a), m = json_string_length(b), i = 0, j = 0;
        while (i < n && j < m) {
            uint32_t c, d;
            i += u8_next(s, n, i, &c);
            j += u8_next(t, m, j, &d);
            if (fold) { c = u_lower(c); d = u_lower(d); }
            if (c != d) return c < d ? -1 : 1;
        }
        return (i < n) - (j < m);
    }
    if (json_is_array(a) && json_is_array(b)) {
        for (size_t i = 0; i < json_array_size(a) && i < json_array_size(b); i++) {
            int c = order(json_array_get(a, i), json_array_get(b, i), fold);
            if (c) return c;
        }
        size_t x = json_array_size(a), y = json_array_size(b);
        return x < y ? -1 : x > y;
    }
    return 2;
}

static const char *type_name(const json_t *v) {
    if (!v) return "Undefined";
    switch (json_typeof(v)) {
    case JSON_NULL: return "NoneType";
    case JSON_TRUE: case JSON_FALSE: return "bool";
    case JSON_INTEGER: return "int";
    case JSON_REAL: return "float";
    case JSON_STRING: return "str";
    case JSON_ARRAY: return "list";
    case JSON_OBJECT: return "dict";
    }
    return "?";
}

/* ------------------------------------------------------------------------------------------ */
/* Evaluation                                                                                   */

static json_t *eval(R *r, node *n);
static void exec_body(R *r, node *body);

static json_t *lookup(R *r, const char *name) {
    for (frame *f = r->f; f; f = f->parent) {
        json_t *v = json_object_get(f->vars, name);
        if (v) return json_incref(v);
    }
    json_t *v = json_object_get(r->ctx, name);
    return v ? json_incref(v) : NULL;
}

static void set_var(R *r, const char *name, json_t *v) {   /* takes v */
    if (!v) { json_object_del(r->f->vars, name); return; }
    if (json_object_set_new(r->f->vars, name, v)) r->st = tw_err(TW_E_NOMEM, "out of memory");
}

/* a.b and a[b]: dict keys, list / string indices (negative from the end); else Undefined. */
static json_t *getitem(const json_t *o, const json_t *k) {
    if (!o || !k) return NULL;
    if (json_is_object(o)) {
        if (!json_is_string(k)) return NULL;
        json_t *v = json_object_get(o, json_string_value(k));
        return v ? json_incref(v) : NULL;
    }
    if (!is_intlike(k) || json_is_boolean(k)) return NULL;
    int64_t i = ival(k);
    if (json_is_array(o)) {
        int64_t n = (int64_t)json_array_size(o);
        if (i < 0) i += n;
        if (i < 0 || i >= n) return NULL;
        return json_incref(json_array_get(o, (size_t)i));
    }
    if (json_is_string(o)) {
        const char *s = json_string_value(o);
        size_t len = json_string_length(o);
        int64_t n = (int64_t)u8_count(s, len);
        if (i < 0) i += n;
        if (i < 0 || i >= n) return NULL;
        size_t a = u8_offset(s, len, (size_t)i);
        return mkstr(s + a, u8_next(s, len, a, NULL));
    }
    return NULL;
}

static json_t *getattr(const json_t *o, const char *name) {
    if (!json_is_object(o) || hidden_key(name)) return NULL;
    json_t *v = json_object_get(o, name);
    return v ? json_incref(v) : NULL;
}

/* Python slicing of lists and strings. */
static json_t *slice(R *r, node *n, const json_t *o, const json_t *lo, const json_t *hi, const json_t *st) {
    int64_t step = st && !json_is_null(st) ? ival(st) : 1;
    if (step == 0) return fail(r, n, "slice step cannot be zero");
    bool isstr = json_is_string(o);
    if (!isstr && !json_is_array(o)) return fail(r, n, "cannot slice a %s", type_name(o));
    const char *s = isstr ? json_string_value(o) : NULL;
    size_t len = isstr ? json_string_length(o) : 0;
    int64_t cnt = isstr ? (int64_t)u8_count(s, len) : (int64_t)json_array_size(o);
    int64_t a, b;
    if (!lo || json_is_null(lo)) a = step > 0 ? 0 : cnt - 1;
    else { a = ival(lo); if (a < 0) a += cnt; a = step > 0 ? TW_MAX(0, TW_MIN(a, cnt)) : TW_MAX(-1, TW_MIN(a, cnt - 1)); }
    if (!hi || json_is_null(hi)) b = step > 0 ? cnt : -1;
    else { b = ival(hi); if (b < 0) b += cnt; b = step > 0 ? TW_MAX(0, TW_MIN(b, cnt)) : TW_MAX(-1, TW_MIN(b, cnt - 1)); }
    size_t *off = NULL;
    if (isstr) {   /* code point offsets, so slicing stays O(n) */
        if (!(off = tw_malloc(((size_t)cnt + 1) * sizeof *off))) { r->st = TW_E_NOMEM; return NULL; }
        size_t i = 0, k = 0;
        for (; i < len; i += u8_next(s, len, i, NULL)) off[k++] = i;
        off[k] = len;
    }
    tw_buf buf = {0};
    json_t *res = isstr ? NULL : json_array();
    for (int64_t i = a; step > 0 ? i < b : i > b; i += step) {
        if (isstr) tw_buf_append(&buf, s + off[i], off[i + 1] - off[i]);
        else json_array_append(res, json_array_get(o, (size_t)i));
    }
    free(off);
    return isstr ? buf_str(&buf) : res;
}

static void args_free(args *a) {
    for (int i = 0; i < a->n; i++) if (a->v[i]) json_decref(a->v[i]);
    a->n = 0;
}

static bool eval_args(R *r, node *call, args *a) {
    a->n = 0;
    if (call->nv > JJ_MAX_ARGS) { fail(r, call, "too many arguments"); return false; }
    for (int i = 0; i < call->nv; i++) {
        a->v[i] = eval(r, call->v[i]);
        a->kw[i] = call->v[i]->kw;
        a->n = i + 1;
        if (r->st) { args_free(a); return false; }
    }
    return true;
}

/* Argument by keyword, else the pos-th positional one; borrowed; NULL if absent. */
static json_t *arg(const args *a, int pos, const char *kw) {
    int p = 0;
    for (int i = 0; i < a->n; i++) {
        if (a->kw[i]) { if (kw && strcmp(a->kw[i], kw) == 0) return a->v[i]; }
        else if (p++ == pos) return a->v[i];
    }
    return NULL;
}
/* Turns any iterable into a new list: lists as is, strings into characters, dicts into keys. */
static json_t *to_list(R *r, node *n, const json_t *v) {
    if (!v) return json_array();
    if (json_is_array(v)) return json_incref((json_t *)v);
    json_t *l = json_array();
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        for (size_t i = 0; i < len;) {
            size_t k = u8_next(s, len, i, NULL);
            json_array_append_new(l, mkstr(s + i, k));
            i += k;
        }
        return l;
    }
    if (json_is_object(v) && !reg_find(r, v)) {
        const char *k; json_t *x;
        json_object_foreach((json_t *)v, k, x) if (!hidden_key(k)) json_array_append_new(l, json_string(k));
        return l;
    }
    json_decref(l);
    return fail(r, n, "'%s' object is not iterable", type_name(v));
}

static json_t *call_value(R *r, node *n, json_t *fn, args *a);
static bool run_test(R *r, node *n, const char *name, const json_t *v, args *a, bool *res);
static json_t *run_filter(R *r, node *n, const char *name, json_t *v, args *a);

static json_t *str_split(const json_t *s, const json_t *sep, int64_t maxsplit) {
    const char *p = json_string_value(s);
    size_t n = json_string_length(s);
    json_t *l = json_array();
    if (sep && json_is_string(sep) && json_string_length(sep)) {
        const char *q = json_string_value(sep);
        size_t m = json_string_length(sep), st = 0;
        for (size_t i = 0; i + m <= n;) {
            if (maxsplit >= 0 && (int64_t)json_array_size(l) >= maxsplit) break;
            if (memcmp(p + i, q, m) == 0) { json_array_append_new(l, mkstr(p + st, i - st)); i += m; st = i; }
            else i++;
        }
        json_array_append_new(l, mkstr(p + st, n - st));
        return l;
    }
    size_t i = 0;
    for (;;) {   /* split on runs of whitespace, no empty strings */
        uint32_t c;
        while (i < n) { size_t k = u8_next(p, n, i, &c); if (!u_space(c)) break; i += k; }
        if (i >= n) break;
        if (maxsplit >= 0 && (int64_t)json_array_size(l) >= maxsplit) {
            size_t e = n;
            while (e > i) { size_t st = e - 1; while (st > i && ((unsigned char)p[st] & 0xC0) == 0x80) st--;
                            u8_next(p, n, st, &c); if (!u_space(c)) break; e = st; }
            json_array_append_new(l, mkstr(p + i, e - i));
            break;
        }
        size_t st = i;
        while (i < n) { size_t k = u8_next(p, n, i, &c); if (u_space(c)) break; i += k; }
        json_array_append_new(l, mkstr(p + st, i - st));
    }
    return l;
}

static json_t *str_replace(R *r, node *n, const json_t *s, const json_t *old, const json_t *new_, int64_t count) {
    if (!json_is_string(old) || !json_is_string(new_)) return fail(r, n, "replace() arguments must be strings");
    const char *p = json_string_value(s), *o = json_string_value(old), *w = json_string_value(new_);
    size_t len = json_string_length(s), on = json_string_length(old), wn = json_string_length(new_);
    tw_buf b = {0};
    size_t i = 0;
    int64_t done = 0;
    if (on == 0) {   /* Python inserts the replacement around every character */
        while (i <= len) {
            if (count >= 0 && done >= count) break;
            tw_buf_append(&b, w, wn); done++;
            if (i == len) { i++; break; }
            size_t k = u8_next(p, len, i, NULL);
            tw_buf_append(&b, p + i, k); i += k;
        }
        if (i < len) tw_buf_append(&b, p + i, len - i);
    } else {
        while (i < len) {
            if ((count < 0 || done < count) && i + on <= len && memcmp(p + i, o, on) == 0) {
                tw_buf_append(&b, w, wn); i += on; done++;
            } else tw_buf_putc(&b, p[i++]);
        }
    }
    if (b.len > JJ_MAX_OUT) { tw_buf_free(&b); return fail(r, n, "string too long"); }
    return buf_str(&b);
}

static size_t str_find(const json_t *s, const json_t *sub) {
    const char *p = json_string_value(s), *q = json_string_value(sub);
    size_t n = json_string_length(s), m = json_string_length(sub);
    for (size_t i = 0; i + m <= n; i++) if (memcmp(p + i, q, m) == 0) return i;
    return (size_t)-1;
}

static bool str_affix(const json_t *s, const json_t *x, bool start) {
    size_t n = json_string_length(s), m = json_string_length(x);
    if (m > n) return false;
    return memcmp(json_string_value(s) + (start ? 0 : n - m), json_string_value(x), m) == 0;
}

/* obj.name(args) for the str and dict methods chat templates use. found=false: not a method. */
static json_t *call_method(R *r, node *n, json_t *o, const char *m, args *a, bool *found) {
    *found = true;
    json_t *a0 = arg(a, 0, NULL), *a1 = arg(a, 1, NULL);
    if (json_is_string(o)) {
        if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
            if (a0 && !json_is_null(a0) && !json_is_string(a0)) return fail(r, n, "%s arg must be None or str", m);
            return str_strip(o, a0 && !json_is_null(a0) ? a0 : NULL, m[0] != 'r', m[0] != 'l');
        }
        if (!strcmp(m, "upper")) return str_case(o, 'u');
        if (!strcmp(m, "lower")) return str_case(o, 'l');
        if (!strcmp(m, "title")) return str_case(o, 't');
        if (!strcmp(m, "capitalize")) return str_case(o, 'c');
        if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
            bool st = m[0] == 's', ok = false;
            if (json_is_string(a0)) ok = str_affix(o, a0, st);
            else if (json_is_array(a0)) {
                for (size_t i = 0; i < json_array_size(a0); i++)
                    if (json_is_string(json_array_get(a0, i)) && str_affix(o, json_array_get(a0, i), st)) ok = true;
            } else return fail(r, n, "%s first arg must be str or a tuple of str", m);
            return json_boolean(ok);
        }
        if (!strcmp(m, "split")) {
            json_t *sep = arg(a, 0, "sep"), *mx = arg(a, 1, "maxsplit");
            return str_split(o, sep && json_is_null(sep) ? NULL : sep, mx ? ival(mx) : -1);
        }
        if (!strcmp(m, "replace")) {
            json_t *c = arg(a, 2, "count");
            if (!a0 || !a1) return fail(r, n, "replace() takes at least 2 arguments");
            return str_replace(r, n, o, a0, a1, c ? ival(c) : -1);
        }
        if (!strcmp(m, "find") || !strcmp(m, "count") || !strcmp(m, "index")) {
            if (!json_is_string(a0)) return fail(r, n, "%s() argument must be str", m);
            if (m[0] == 'c') {
                size_t k = json_string_length(a0), cnt = 0, len = json_string_length(o);
                const char *p = json_string_value(o);
                if (!k) return json_integer((json_int_t)u8_count(p, len) + 1);
                for (size_t i = 0; i + k <= len;) {
                    if (memcmp(p + i, json_string_value(a0), k) == 0) { cnt++; i += k; } else i++;
                }
                return json_integer((json_int_t)cnt);
            }
            size_t at = str_find(o, a0);
            if (at == (size_t)-1) return m[0] == 'i' ? fail(r, n, "substring not found") : json_integer(-1);
            return json_integer((json_int_t)u8_count(json_string_value(o), at));
        }
        if (!strcmp(m, "join")) {
            json_t *l = to_list(r, n, a0);
            if (!l) return NULL;
            tw_buf b = {0};
            for (size_t i = 0; i < json_array_size(l); i++) {
                if (i) tw_buf_append(&b, json_string_value(o), json_string_length(o));
                to_str(r, &b, json_array_get(l, i), false, 0);
            }
            json_decref(l);
            return buf_str(&b);
        }
        if (!strcmp(m, "isdigit") || !strcmp(m, "isalpha") || !strcmp(m, "isspace")) {
            const char *p = json_string_value(o);
            size_t len = json_string_length(o);
            bool ok = len > 0;
            for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)p[i];
                if (m[2] == 'd' ? !isdigit(c) : m[2] == 'a' ? !isalpha(c) : !isspace(c)) ok = false;
            }
            return json_boolean(ok);
        }
        if (!strcmp(m, "format")) {   /* "{}" and "{0}" placeholders with positional arguments */
            const char *p = json_string_value(o);
            size_t len = json_string_length(o);
            tw_buf b = {0};
            int next = 0;
            for (size_t i = 0; i < len; i++) {
                if (p[i] == '{' && i + 1 < len && p[i + 1] == '{') { tw_buf_putc(&b, '{'); i++; continue; }
                if (p[i] == '}' && i + 1 < len && p[i + 1] == '}') { tw_buf_putc(&b, '}'); i++; continue; }
                if (p[i] != '{') { tw_buf_putc(&b, p[i]); continue; }
                size_t e = i + 1;
                while (e < len && p[e] != '}') e++;
                if (e >= len) { tw_buf_free(&b); return fail(r, n, "format(): single '{' in format string"); }
                int idx = next++;
                if (e > i + 1) idx = atoi(p + i + 1);
                json_t *v = arg(a, idx, NULL);
                if (!v) { tw_buf_free(&b); return fail(r, n, "format(): replacement index %d out of range", idx); }
                to_str(r, &b, v, false, 0);
                i = e;
            }
            return buf_str(&b);
        }
    } else if (json_is_object(o) && !reg_find(r, o)) {
        if (!strcmp(m, "items") || !strcmp(m, "keys") || !strcmp(m, "values")) {
            json_t *l = json_array();
            const char *k; json_t *x;
            json_object_foreach(o, k, x) {
                if (hidden_key(k)) continue;
                if (m[0] == 'k') json_array_append_new(l, json_string(k));
                else if (m[0] == 'v') json_array_append(l, x);
                else json_array_append_new(l, json_pack("[sO]", k, x));
            }
            return l;
        }
        if (!strcmp(m, "get")) {
            json_t *v = json_is_string(a0) ? json_object_get(o, json_string_value(a0)) : NULL;
            if (v) return json_incref(v);
            return a1 ? json_incref(a1) : json_null();
        }
        if (!strcmp(m, "cycle") && json_object_get(o, "\x01loop")) {
            int cnt = 0;
            for (int i = 0; i < a->n; i++) if (!a->kw[i]) cnt++;
            if (!cnt) return fail(r, n, "no items for cycling given");
            json_t *v = arg(a, (int)(json_integer_value(json_object_get(o, "index0")) % cnt), NULL);
            return v ? json_incref(v) : NULL;
        }
    }
    *found = false;
    return NULL;
}

/* range(), namespace(), dict(), raise_exception(), strftime_now(): the globals chat templates use. */
static json_t *call_global(R *r, node *n, const char *name, args *a, bool *found) {
    *found = true;
    if (!strcmp(name, "raise_exception")) {
        tw_buf b = {0};
        to_str(r, &b, arg(a, 0, NULL), false, 0);
        /* The message is the template's own text, as transformers reports it. */
        r->st = tw_err(TW_E_TEMPLATE, "%.*s", (int)b.len, b.data ? b.data : "");
        tw_buf_free(&b);
        return NULL;
    }
    if (!strcmp(name, "range")) {
        int64_t v[3] = { 0, 0, 1 };
        int pos = 0;
        for (int i = 0; i < a->n; i++) {
            if (a->kw[i] || !is_intlike(a->v[i]) || pos == 3) return fail(r, n, "range() takes 1 to 3 integers");
            v[pos++] = ival(a->v[i]);
        }
        if (pos == 0) return fail(r, n, "range expected at least 1 argument");
        if (pos == 1) { v[1] = v[0]; v[0] = 0; }
        if (v[2] == 0) return fail(r, n, "range() arg 3 must not be zero");
        json_t *l = json_array();
        for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2]) {
            if (json_array_size(l) >= (size_t)JJ_MAX_ITER) { json_decref(l); return fail(r, n, "range() too large"); }
            json_array_append_new(l, json_integer(i));
        }
        return l;
    }
    if (!strcmp(name, "namespace") || !strcmp(name, "dict")) {
        json_t *o = name[0] == 'n' ? reg_add(r, REG_NS, NULL, NULL) : json_object();
        if (!o) return NULL;
        json_t *init = arg(a, 0, NULL);
        if (json_is_object(init) && !reg_find(r, init)) json_object_update(o, init);
        for (int i = 0; i < a->n; i++) if (a->kw[i]) json_object_set(o, a->kw[i], a->v[i]);
        return o;
    }
    if (!strcmp(name, "strftime_now")) {
        json_t *f = arg(a, 0, NULL);
        if (!json_is_string(f)) return fail(r, n, "strftime_now() needs a format string");
        char out[256];
        time_t now = time(NULL);
        struct tm tmv;
        localtime_r(&now, &tmv);
        size_t k = strftime(out, sizeof out, json_string_value(f), &tmv);
        return mkstr(out, k);
    }
    *found = false;
    return NULL;
}

static json_t *eval_call(R *r, node *n) {
    args a;
    node *callee = n->a;
    json_t *res = NULL;
    if (callee->k == N_ATTR) {
        json_t *o = eval(r, callee->a);
        if (r->st) return NULL;
        if (!eval_args(r, n, &a)) { if (o) json_decref(o); return NULL; }
        bool found = false;
        if (o) res = call_method(r, n, o, callee->name, &a, &found);
        if (!found && !r->st) {
            json_t *fn = getattr(o, callee->name);
            res = call_value(r, n, fn, &a);
            if (fn) json_decref(fn);
        }
        if (o) json_decref(o);
        args_free(&a);
        return res;
    }
    json_t *fn = eval(r, callee);
    if (r->st) return NULL;
    if (!eval_args(r, n, &a)) { if (fn) json_decref(fn); return NULL; }
    if (!fn && callee->k == N_NAME) {
        bool found;
        res = call_global(r, n, callee->name, &a, &found);
        if (!found) fail(r, n, "'%s' is undefined", callee->name);
    } else {
        res = call_value(r, n, fn, &a);
    }
    if (fn) json_decref(fn);
    args_free(&a);
    return res;
}

/* Calls a macro (or caller()): a fresh scope over the template's top level, parameters bound
** from positional, then keyword arguments, then defaults; returns the rendered body. */
static json_t *call_value(R *r, node *n, json_t *fn, args *a) {
    reg *g = reg_find(r, fn);
    if (!g || g->kind == REG_NS) return fail(r, n, "'%s' object is not callable", type_name(fn));
    if (g->kind == REG_CALLER && !g->f) return fail(r, n, "caller() used outside its call block");
    if (r->depth >= JJ_MAX_DEPTH) return fail(r, n, "macro calls nested too deeply (limit %d)", JJ_MAX_DEPTH);
    node *m = g->n;
    frame fr = { json_object(), g->kind == REG_CALLER ? g->f : r->root };
    frame *saved_f = r->f;
    tw_buf *saved_out = r->out, out = {0};
    /* caller() reaches the macro as an implicit argument set by {% call %} */
    json_t *caller = saved_f ? json_object_get(saved_f->vars, "caller") : NULL;
    if (caller && g->kind == REG_MACRO) json_object_set(fr.vars, "caller", caller);
    r->f = &fr;
    int pos = 0;
    for (int i = 0; i < a->n; i++) {
        if (a->kw[i]) continue;
        if (pos < m->nnames) json_object_set(fr.vars, m->names[pos], a->v[i]);
        pos++;
    }
    for (int i = 0; i < a->n; i++) {
        if (!a->kw[i]) continue;
        bool known = false;
        for (int j = 0; j < m->nnames; j++) if (!strcmp(m->names[j], a->kw[i])) known = true;
        if (!known) { fail(r, n, "macro got an unexpected keyword argument '%s'", a->kw[i]); break; }
        json_object_set(fr.vars, a->kw[i], a->v[i]);
    }
    for (int j = 0; j < m->nnames && !r->st; j++) {
        if (json_object_get(fr.vars, m->names[j]) || !m->v[j]) continue;
        json_t *d = eval(r, m->v[j]);
        if (d) json_object_set_new(fr.vars, m->names[j], d);
    }
    r->depth++;
    r->out = &out;
    if (!r->st) exec_body(r, m->a);
    r->brk = 0;
    r->depth--;
    r->out = saved_out;
    r->f = saved_f;
    json_decref(fr.vars);
    if (r->st) { tw_buf_free(&out); return NULL; }
    return buf_str(&out);
}

static json_t *arith(R *r, node *n, int op, json_t *x, json_t *y) {
    if (op == OP_CONCAT) {
        tw_buf b = {0};
        to_str(r, &b, x, false, 0);
        to_str(r, &b, y, false, 0);
        if (b.len > JJ_MAX_OUT) { tw_buf_free(&b); return fail(r, n, "string too long"); }
        return buf_str(&b);
    }
    if (!x || !y) return fail(r, n, "'%s' is undefined", n->a->k == N_NAME && !x ? n->a->name
                                  : n->b->k == N_NAME && !y ? n->b->name : "value");
    if (op == OP_ADD && json_is_string(x) && json_is_string(y)) {
        tw_buf b = {0};
        tw_buf_append(&b, json_string_value(x), json_string_length(x));
        tw_buf_append(&b, json_string_value(y), json_string_length(y));
        if (b.len > JJ_MAX_OUT) { tw_buf_free(&b); return fail(r, n, "string too long"); }
        return buf_str(&b);
    }
    if (op == OP_ADD && json_is_array(x) && json_is_array(y)) {
        json_t *l = json_copy(x);
        json_array_extend(l, y);
        return l;
    }
    if (op == OP_MUL && (json_is_string(x) || json_is_array(x)) && is_intlike(y)) {
        int64_t k = ival(y);
        size_t unit = json_is_string(x) ? json_string_length(x) : json_array_size(x);
        if (k > 0 && unit && (uint64_t)k > JJ_MAX_OUT / unit) return fail(r, n, "repetition too large");
        if (json_is_string(x)) {
            tw_buf b = {0};
            for (int64_t i = 0; i < k; i++) tw_buf_append(&b, json_string_value(x), unit);
            return buf_str(&b);
        }
        json_t *l = json_array();
        for (int64_t i = 0; i < k; i++) json_array_extend(l, x);
        return l;
    }
    if (!is_num(x) || !is_num(y))
        return fail(r, n, "unsupported operand types: '%s' and '%s'", type_name(x), type_name(y));
    bool ints = is_intlike(x) && is_intlike(y);
    if (ints && op != OP_DIV && !(op == OP_POW && ival(y) < 0)) {
        int64_t a = ival(x), b = ival(y), v = 0;
        switch (op) {
        case OP_ADD: if (__builtin_add_overflow(a, b, &v)) return fail(r, n, "integer overflow"); break;
        case OP_SUB: if (__builtin_sub_overflow(a, b, &v)) return fail(r, n, "integer overflow"); break;
        case OP_MUL: if (__builtin_mul_overflow(a, b, &v)) return fail(r, n, "integer overflow"); break;
        case OP_FLOORDIV: case OP_MOD:
            if (b == 0) return fail(r, n, "integer division or modulo by zero");
            if (a == INT64_MIN && b == -1) return fail(r, n, "integer overflow");
            v = op == OP_FLOORDIV ? a / b : a % b;
            if (op == OP_FLOORDIV && (a % b != 0) && ((a < 0) != (b < 0))) v--;
            if (op == OP_MOD && v != 0 && ((v < 0) != (b < 0))) v += b;
            break;
        case OP_POW:
            v = 1;
            for (int64_t i = 0; i < b; i++)
                if (__builtin_mul_overflow(v, a, &v)) return fail(r, n, "integer overflow");
            break;
        }
        return json_integer(v);
    }
    double a = num(x), b = num(y), v = 0;
    switch (op) {
    case OP_ADD: v = a + b; break;
    case OP_SUB: v = a - b; break;
    case OP_MUL: v = a * b; break;
    case OP_DIV: if (b == 0) return fail(r, n, "division by zero"); v = a / b; break;
    case OP_FLOORDIV: if (b == 0) return fail(r, n, "float floor division by zero"); v = floor(a / b); break;
    case OP_MOD: if (b == 0) return fail(r, n, "float modulo"); v = fmod(a, b); if (v != 0 && ((v < 0) != (b < 0))) v += b; break;
    case OP_POW: v = pow(a, b); break;
    }
    return json_real(v);
}

static bool contains(R *r, node *n, const json_t *item, const json_t *coll) {
    if (json_is_string(coll)) {
        if (!json_is_string(item)) { fail(r, n, "'in <string>' requires string as left operand"); return false; }
        return str_find(coll, item) != (size_t)-1;
    }
    if (json_is_array(coll)) {
        for (size_t i = 0; i < json_array_size(coll); i++) if (equal(item, json_array_get(coll, i), 0)) return true;
        return false;
    }
    if (json_is_object(coll)) return json_is_string(item) && !hidden_key(json_string_value(item)) &&
                                      json_object_get(coll, json_string_value(item)) != NULL;
    if (!coll) return false;
    fail(r, n, "argument of type '%s' is not iterable", type_name(coll));
    return false;
}

static bool compare(R *r, node *n, int op, const json_t *x, const json_t *y) {
    switch (op) {
    case OP_EQ: return equal(x, y, 0);
    case OP_NE: return !equal(x, y, 0);
    case OP_IN: return contains(r, n, x, y);
    case OP_NOTIN: return !contains(r, n, x, y) && !r->st;
    }
    int c = (x && y) ? order(x, y, false) : 2;
    if (c == 2) { fail(r, n, "'%s' not supported between '%s' and '%s'",
                       op == OP_LT ? "<" : op == OP_LE ? "<=" : op == OP_GT ? ">" : ">=", type_name(x), type_name(y));
                  return false; }
    return op == OP_LT ? c < 0 : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0;
}

static json_t *eval(R *r, node *n) {
    if (r->st) return NULL;
    switch (n->k) {
    case N_LIT: return json_incref(n->lit);
    case N_NAME: return lookup(r, n->name);
    case N_LIST: {
        json_t *l = json_array();
        for (int i = 0; i < n->nv; i++) {
            json_t *v = eval(r, n->v[i]);
            if (r->st) { json_decref(l); return NULL; }
            json_array_append_new(l, v ? v : json_null());
        }
        return l;
    }
    case N_DICT: {
        json_t *o = json_object();
        for (int i = 0; i + 1 < n->nv; i += 2) {
            json_t *k = eval(r, n->v[i]), *v = r->st ? NULL : eval(r, n->v[i + 1]);
            if (!r->st && !json_is_string(k)) fail(r, n->v[i], "dict keys must be strings here");
            if (r->st) { if (k) json_decref(k); if (v) json_decref(v); json_decref(o); return NULL; }
            json_object_set_new(o, json_string_value(k), v ? v : json_null());
            json_decref(k);
        }
        return o;
    }
    case N_ATTR: {
        json_t *o = eval(r, n->a);
        json_t *v = getattr(o, n->name);
        if (o) json_decref(o);
        return v;
    }
    case N_ITEM: {
        json_t *o = eval(r, n->a), *k = eval(r, n->b);
        json_t *v = r->st ? NULL : getitem(o, k);
        if (o) json_decref(o);
        if (k) json_decref(k);
        return v;
    }
    case N_SLICE: {
        json_t *o = eval(r, n->a);
        json_t *lo = n->b ? eval(r, n->b) : NULL, *hi = n->c ? eval(r, n->c) : NULL, *st = n->d ? eval(r, n->d) : NULL;
        json_t *v = r->st || !o ? NULL : slice(r, n, o, lo, hi, st);
        if (o) json_decref(o);
        if (lo) json_decref(lo);
        if (hi) json_decref(hi);
        if (st) json_decref(st);
        return v;
    }
    case N_CALL: return eval_call(r, n);
    case N_FILTER: {
        json_t *v = eval(r, n->a);
        args a;
        if (r->st || !eval_args(r, n, &a)) { if (v) json_decref(v); return NULL; }
        json_t *res = run_filter(r, n, n->name, v, &a);
        if (v) json_decref(v);
        args_free(&a);
        return res;
    }
    case N_TEST: {
        json_t *v = eval(r, n->a);
        args a;
        if (r->st || !eval_args(r, n, &a)) { if (v) json_decref(v); return NULL; }
        bool res = false;
        bool ok = run_test(r, n, n->name, v, &a, &res);
        if (v) json_decref(v);
        args_free(&a);
        return ok ? json_boolean(res != (n->op != 0)) : NULL;
    }
    case N_BIN: {
        json_t *x = eval(r, n->a), *y = r->st ? NULL : eval(r, n->b);
        json_t *v = r->st ? NULL : arith(r, n, n->op, x, y);
        if (x) json_decref(x);
        if (y) json_decref(y);
        return v;
    }
    case N_NEG: case N_POS: {
        json_t *x = eval(r, n->a);
        json_t *v = NULL;
        if (!r->st && !is_num(x)) fail(r, n, "bad operand type for unary %c: '%s'", n->k == N_NEG ? '-' : '+', type_name(x));
        else if (!r->st) v = is_intlike(x) ? json_integer(n->k == N_NEG ? -ival(x) : ival(x))
                                           : json_real(n->k == N_NEG ? -num(x) : num(x));
        if (x) json_decref(x);
        return v;
    }
    case N_NOT: {
        json_t *x = eval(r, n->a);
        bool t = truthy(r, x);
        if (x) json_decref(x);
        return r->st ? NULL : json_boolean(!t);
    }
    case N_AND: case N_OR: {   /* Python semantics: the deciding operand is the result */
        json_t *x = eval(r, n->a);
        if (r->st) return NULL;
        if (truthy(r, x) == (n->k == N_OR)) return x;
        if (x) json_decref(x);
        return eval(r, n->b);
    }
    case N_CMP: {
        json_t *x = eval(r, n->a);
        bool res = true;
        for (int i = 0; i < n->nv && res && !r->st; i++) {
            json_t *y = eval(r, n->v[i]);
            if (!r->st) res = compare(r, n, n->ops[i], x, y);
            if (x) json_decref(x);
            x = y;
        }
        if (x) json_decref(x);
        return r->st ? NULL : json_boolean(res);
    }
    case N_COND: {
        json_t *c = eval(r, n->b);
        bool t = truthy(r, c);
        if (c) json_decref(c);
        if (r->st) return NULL;
        return t ? eval(r, n->a) : n->c ? eval(r, n->c) : NULL;
    }
    default:
        return fail(r, n, "internal error: not an expression");
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Tests and filters                                                                            */

static bool run_test(R *r, node *n, const char *t, const json_t *v, args *a, bool *res) {
    const json_t *x = arg(a, 0, NULL);
    if (!strcmp(t, "defined")) *res = v != NULL;
    else if (!strcmp(t, "undefined")) *res = v == NULL;
    else if (!strcmp(t, "none")) *res = v && json_is_null(v);
    else if (!strcmp(t, "string")) *res = json_is_string(v);
    else if (!strcmp(t, "number")) *res = v && (json_is_number(v));
    else if (!strcmp(t, "integer")) *res = json_is_integer(v);
    else if (!strcmp(t, "float")) *res = json_is_real(v);
    else if (!strcmp(t, "boolean")) *res = json_is_boolean(v);
    else if (!strcmp(t, "true")) *res = json_is_true(v);
    else if (!strcmp(t, "false")) *res = json_is_false(v);
    else if (!strcmp(t, "mapping")) *res = json_is_object(v) && !(reg_find(r, v) && reg_find(r, v)->kind != REG_NS);
    else if (!strcmp(t, "iterable")) *res = json_is_string(v) || json_is_array(v) || (json_is_object(v) && !reg_find(r, v));
    else if (!strcmp(t, "sequence")) *res = json_is_string(v) || json_is_array(v) || (json_is_object(v) && !reg_find(r, v));
    else if (!strcmp(t, "callable")) *res = reg_find(r, v) && reg_find(r, v)->kind != REG_NS;
    else if (!strcmp(t, "lower") || !strcmp(t, "upper")) {
        if (!json_is_string(v)) *res = false;
        else { json_t *c = str_case(v, t[0] == 'l' ? 'l' : 'u'); *res = equal(c, v, 0); json_decref(c); }
    }
    else if (!strcmp(t, "odd") || !strcmp(t, "even")) {
        if (!is_intlike(v)) { fail(r, n, "test '%s' needs an integer", t); return false; }
        *res = (ival(v) & 1) == (t[0] == 'o');
    }
    else if (!strcmp(t, "divisibleby")) {
        if (!is_intlike(v) || !is_intlike(x) || ival(x) == 0) { fail(r, n, "divisibleby needs a non-zero integer"); return false; }
        *res = ival(v) % ival(x) == 0;
    }
    else if (!strcmp(t, "equalto") || !strcmp(t, "eq") || !strcmp(t, "==") || !strcmp(t, "sameas")) *res = equal(v, x, 0);
    else if (!strcmp(t, "ne")) *res = !equal(v, x, 0);
    else if (!strcmp(t, "lt") || !strcmp(t, "le") || !strcmp(t, "gt") || !strcmp(t, "ge") ||
             !strcmp(t, "lessthan") || !strcmp(t, "greaterthan")) {
        int op = !strcmp(t, "lt") || !strcmp(t, "lessthan") ? OP_LT : !strcmp(t, "le") ? OP_LE
               : !strcmp(t, "ge") ? OP_GE : OP_GT;
        *res = compare(r, n, op, v, x);
        return !r->st;
    }
    else if (!strcmp(t, "in")) { *res = contains(r, n, v, x); return !r->st; }
    else { fail(r, n, "no test named '%s'", t); return false; }
    return true;
}

/* Attribute lookup for filters: "a.b" paths and integer parts, as jinja2's make_attrgetter. */
static json_t *attr_path(const json_t *v, const char *path) {
    json_t *cur = v ? json_incref((json_t *)v) : NULL;
    char part[256];
    while (cur && *path) {
        size_t k = strcspn(path, ".");
        if (k >= sizeof part) k = sizeof part - 1;
        memcpy(part, path, k); part[k] = 0;
        path += k + (path[k] == '.');
        json_t *next;
        char *end;
        long idx = strtol(part, &end, 10);
        if (*part && !*end && json_is_array(cur)) { json_t *ix = json_integer(idx); next = getitem(cur, ix); json_decref(ix); }
        else next = getattr(cur, part);
        json_decref(cur);
        cur = next;
    }
    return cur;
}

typedef struct sortctx { const char *attr; bool fold, by_value, rev; } sortctx;

/* Stable merge sort: jinja2's sort/dictsort are stable (Python's sorted). */
static void msort(json_t **v, json_t **tmp, size_t n, const sortctx *c, int *bad) {
    if (n < 2) return;
    size_t h = n / 2;
    msort(v, tmp, h, c, bad);
    msort(v + h, tmp, n - h, c, bad);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        json_t *x = v[i], *y = v[j];
        json_t *kx = c->attr ? attr_path(x, c->attr) : json_incref(x), *ky = c->attr ? attr_path(y, c->attr) : json_incref(y);
        int o = (kx && ky) ? order(kx, ky, c->fold) : 2;
        if (kx) json_decref(kx);
        if (ky) json_decref(ky);
        if (o == 2) { *bad = 1; o = 0; }
        if (c->rev) o = -o;
        tmp[k++] = o <= 0 ? v[i++] : v[j++];
    }
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
}

static json_t *sorted(R *r, node *n, const json_t *list, const sortctx *c) {
    size_t cnt = json_array_size(list);
    json_t **v = tw_calloc(cnt + 1, sizeof *v), **tmp = tw_calloc(cnt + 1, sizeof *tmp);
    if (!v || !tmp) { free(v); free(tmp); r->st = TW_E_NOMEM; return NULL; }
    for (size_t i = 0; i < cnt; i++) v[i] = json_array_get(list, i);
    int bad = 0;
    msort(v, tmp, cnt, c, &bad);
    json_t *out = json_array();
    for (size_t i = 0; i < cnt; i++) json_array_append(out, v[i]);
    free(v); free(tmp);
    if (bad) { json_decref(out); return fail(r, n, "sort: values of these types cannot be ordered"); }
    return out;
}

static bool is_filter_true(R *r, node *n, json_t *item, args *a, int first, bool *keep) {
    /* select/reject (first = 0) and selectattr/rejectattr (first = 1: args[0] is the attribute) */
    json_t *v = item ? json_incref(item) : NULL;
    if (first) {
        json_t *at = arg(a, 0, NULL);
        if (!json_is_string(at)) { if (v) json_decref(v); fail(r, n, "the attribute name must be a string"); return false; }
        json_t *x = attr_path(v, json_string_value(at));
        if (v) json_decref(v);
        v = x;
    }
    json_t *tn = arg(a, first, NULL);
    if (!tn) { *keep = truthy(r, v); if (v) json_decref(v); return true; }
    if (!json_is_string(tn)) { if (v) json_decref(v); fail(r, n, "the test name must be a string"); return false; }
    args ta = { 0 };
    int p = 0;
    for (int i = 0; i < a->n && ta.n < JJ_MAX_ARGS; i++) {
        if (a->kw[i]) continue;
        if (p++ > first) { ta.v[ta.n] = a->v[i]; ta.kw[ta.n++] = NULL; }
    }
    bool ok = run_test(r, n, json_string_value(tn), v, &ta, keep);
    if (v) json_decref(v);
    return ok;
}

static json_t *run_filter(R *r, node *n, const char *f, json_t *v, args *a) {
    json_t *a0 = arg(a, 0, NULL);
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        json_t *dv = arg(a, 0, "default_value"), *b = arg(a, 1, "boolean");
        bool use = !v || (b && truthy(r, b) && !truthy(r, v));
        if (use) return dv ? json_incref(dv) : json_string("");
        return json_incref(v);
    }
    if (!strcmp(f, "safe") || !strcmp(f, "string")) {
        if (json_is_string(v)) return json_incref(v);
        tw_buf b = {0};
        to_str(r, &b, v, false, 0);
        return buf_str(&b);
    }
    if (!strcmp(f, "length") || !strcmp(f, "count")) {
        if (!v) return json_integer(0);
        if (json_is_string(v)) return json_integer((json_int_t)u8_count(json_string_value(v), json_string_length(v)));
        if (json_is_array(v)) return json_integer((json_int_t)json_array_size(v));
        if (json_is_object(v)) {
            size_t k = 0; const char *key; json_t *x;
            json_object_foreach(v, key, x) if (!hidden_key(key)) k++;
            return json_integer((json_int_t)k);
        }
        return fail(r, n, "object of type '%s' has no len()", type_name(v));
    }
    if (!strcmp(f, "tojson")) {
        json_t *ind = arg(a, 0, "indent"), *sk = arg(a, 3, "sort_keys"), *sep = arg(a, 2, "separators");
        dumpopt o = { ind && !json_is_null(ind) ? (int)ival(ind) : -1, ", ", ": ", sk && truthy(r, sk) };
        if (o.indent >= 0) o.isep = ",";
        if (o.indent > 64) o.indent = 64;
        char isep[16], ksep[16];
        if (json_is_array(sep) && json_array_size(sep) == 2) {
            snprintf(isep, sizeof isep, "%s", json_string_value(json_array_get(sep, 0)) ? json_string_value(json_array_get(sep, 0)) : ",");
            snprintf(ksep, sizeof ksep, "%s", json_string_value(json_array_get(sep, 1)) ? json_string_value(json_array_get(sep, 1)) : ":");
            o.isep = isep; o.ksep = ksep;
        }
        tw_buf b = {0};
        if (!dump(r, &b, v, &o, 0)) { tw_buf_free(&b); return fail(r, n, "tojson: object of type '%s' is not JSON serializable", type_name(v)); }
        return buf_str(&b);
    }
    if (!strcmp(f, "items") || !strcmp(f, "dictsort")) {
        if (!v) return json_array();
        if (!json_is_object(v) || reg_find(r, v)) return fail(r, n, "%s: expected a mapping, got %s", f, type_name(v));
        bool found;
        json_t *l = call_method(r, n, v, "items", a, &found);
        if (f[0] == 'i' || !l) return l;
        json_t *cs = arg(a, 0, "case_sensitive"), *by = arg(a, 1, "by"), *rev = arg(a, 2, "reverse");
        sortctx c = { json_is_string(by) && !strcmp(json_string_value(by), "value") ? "1" : "0",
                      !(cs && truthy(r, cs)), false, rev && truthy(r, rev) };
        json_t *s = sorted(r, n, l, &c);
        json_decref(l);
        return s;
    }
    /* string filters: Undefined renders as "" */
    bool sv = !v || json_is_string(v);
    json_t *s = sv ? (v ? json_incref(v) : json_string("")) : NULL;
    json_t *res = NULL;
    bool done = true;
    if (!strcmp(f, "trim")) res = sv ? str_strip(s, a0 && !json_is_null(a0) ? a0 : NULL, true, true) : NULL;
    else if (!strcmp(f, "upper")) res = sv ? str_case(s, 'u') : NULL;
    else if (!strcmp(f, "lower")) res = sv ? str_case(s, 'l') : NULL;
    else if (!strcmp(f, "title")) res = sv ? str_case(s, 'j') : NULL;
    else if (!strcmp(f, "capitalize")) res = sv ? str_case(s, 'c') : NULL;
    else if (!strcmp(f, "replace")) {
        json_t *c = arg(a, 2, "count");
        res = sv && a0 && arg(a, 1, NULL) ? str_replace(r, n, s, a0, arg(a, 1, NULL), c && !json_is_null(c) ? ival(c) : -1) : NULL;
    }
    else if (!strcmp(f, "e") || !strcmp(f, "escape") || !strcmp(f, "forceescape")) {
        tw_buf in = {0}, b = {0};
        to_str(r, &in, v, false, 0);
        for (size_t i = 0; i < in.len; i++) {
            switch (in.data[i]) {
            case '&': tw_buf_appendf(&b, "&amp;"); break;
            case '<': tw_buf_appendf(&b, "&lt;"); break;
            case '>': tw_buf_appendf(&b, "&gt;"); break;
            case '"': tw_buf_appendf(&b, "&#34;"); break;
            case '\'': tw_buf_appendf(&b, "&#39;"); break;
            default: tw_buf_putc(&b, in.data[i]);
            }
        }
        tw_buf_free(&in);
        res = buf_str(&b);
        sv = true;
    }
    else if (!strcmp(f, "wordcount")) {
        size_t cnt = 0; bool in = false;
        const char *p = sv ? json_string_value(s) : "";
        size_t len = sv ? json_string_length(s) : 0;
        for (size_t i = 0; i < len;) {
            uint32_t c; i += u8_next(p, len, i, &c);
            bool w = c >= 0x80 || isalnum((int)c) || c == '_';
            if (w && !in) cnt++;
            in = w;
        }
        res = json_integer((json_int_t)cnt);
    }
    else if (!strcmp(f, "center")) {
        int64_t w = a0 ? ival(a0) : 80, len = sv ? (int64_t)u8_count(json_string_value(s), json_string_length(s)) : 0;
        if (w > (int64_t)JJ_MAX_OUT) w = (int64_t)JJ_MAX_OUT;
        tw_buf b = {0};
        int64_t pad = w - len, left = pad / 2 + (pad & w & 1);
        for (int64_t i = 0; i < left; i++) tw_buf_putc(&b, ' ');
        if (sv) tw_buf_append(&b, json_string_value(s), json_string_length(s));
        for (int64_t i = left; i < pad; i++) tw_buf_putc(&b, ' ');
        res = buf_str(&b);
    }
    else if (!strcmp(f, "indent")) {
        json_t *wd = arg(a, 0, "width"), *first = arg(a, 1, "first"), *blank = arg(a, 2, "blank");
        tw_buf pad = {0}, b = {0};
        if (json_is_string(wd)) tw_buf_append(&pad, json_string_value(wd), json_string_length(wd));
        else for (int64_t i = 0; i < (wd ? TW_MIN(ival(wd), 1024) : 4); i++) tw_buf_putc(&pad, ' ');
        const char *p = sv ? json_string_value(s) : "";
        size_t len = sv ? json_string_length(s) : 0;
        bool bl = blank && truthy(r, blank);
        for (size_t i = 0, line = 0; i <= len; line++) {
            size_t e = i;
            while (e < len && p[e] != '\n') e++;
            bool empty = e == i;
            if ((line > 0 || (first && truthy(r, first))) && (bl || !empty) && !(e == len && empty && line > 0 && !bl))
                tw_buf_append(&b, pad.data, pad.len);
            tw_buf_append(&b, p + i, e - i);
            if (e < len) tw_buf_putc(&b, '\n');
            i = e + 1;
        }
        tw_buf_free(&pad);
        res = buf_str(&b);
    }
    else done = false;
    if (s) json_decref(s);
    if (done) return res ? res : (r->st ? NULL : fail(r, n, "filter '%s' expects a string, got %s", f, type_name(v)));
    if (!strcmp(f, "int") || !strcmp(f, "float")) {
        bool isint = f[0] == 'i';
        json_t *dv = arg(a, 0, "default");
        double d = 0; bool ok = false;
        if (is_num(v)) { d = num(v); ok = true; }
        else if (json_is_string(v)) {
            char tmp[64]; size_t k = TW_MIN(json_string_length(v), sizeof tmp - 1);
            memcpy(tmp, json_string_value(v), k); tmp[k] = 0;
            char *e; d = strtod(tmp, &e);
            while (*e && isspace((unsigned char)*e)) e++;
            ok = e != tmp && !*e;
        }
        if (!ok) return dv ? json_incref(dv) : isint ? json_integer(0) : json_real(0);
        if (isint) return is_intlike(v) ? json_integer(ival(v)) : json_integer((json_int_t)d);
        return json_real(d);
    }
    if (!strcmp(f, "abs")) {
        if (!is_num(v)) return fail(r, n, "bad operand type for abs(): '%s'", type_name(v));
        return is_intlike(v) ? json_integer(llabs(ival(v))) : json_real(fabs(num(v)));
    }
    if (!strcmp(f, "round")) {
        if (!is_num(v)) return fail(r, n, "round: expected a number, got %s", type_name(v));
        json_t *pr = arg(a, 0, "precision"), *me = arg(a, 1, "method");
        double p = pow(10, pr ? (double)ival(pr) : 0), x = num(v) * p;
        const char *m = json_is_string(me) ? json_string_value(me) : "common";
        x = !strcmp(m, "ceil") ? ceil(x) : !strcmp(m, "floor") ? floor(x) : nearbyint(x);   /* Python's round(): half to even */
        return json_real(x / p);
    }
    /* list filters */
    json_t *l = to_list(r, n, v);
    if (!l) return NULL;
    res = NULL;
    size_t cnt = json_array_size(l);
    if (!strcmp(f, "list")) res = json_incref(l);
    else if (!strcmp(f, "first") || !strcmp(f, "last")) {
        res = cnt ? json_incref(json_array_get(l, f[0] == 'f' ? 0 : cnt - 1)) : NULL;
    }
    else if (!strcmp(f, "reverse")) {
        if (json_is_string(v)) {
            json_t *m1 = json_integer(-1);
            res = slice(r, n, v, NULL, NULL, m1);
            json_decref(m1);
        } else {
            res = json_array();
            for (size_t i = cnt; i-- > 0;) json_array_append(res, json_array_get(l, i));
        }
    }
    else if (!strcmp(f, "join")) {
        json_t *sep = arg(a, 0, "d"), *at = arg(a, 1, "attribute");
        tw_buf b = {0};
        for (size_t i = 0; i < cnt; i++) {
            if (i && sep) to_str(r, &b, sep, false, 0);
            json_t *x = at && json_is_string(at) ? attr_path(json_array_get(l, i), json_string_value(at)) : json_incref(json_array_get(l, i));
            to_str(r, &b, x, false, 0);
            if (x) json_decref(x);
        }
        res = buf_str(&b);
    }
    else if (!strcmp(f, "sort") || !strcmp(f, "min") || !strcmp(f, "max") || !strcmp(f, "unique")) {
        bool sortf = f[0] == 's';
        json_t *rev = sortf ? arg(a, 0, "reverse") : NULL, *cs = arg(a, sortf ? 1 : 0, "case_sensitive"),
               *at = arg(a, sortf ? 2 : 1, "attribute");
        sortctx c = { json_is_string(at) ? json_string_value(at) : NULL, !(cs && truthy(r, cs)), false, rev && truthy(r, rev) };
        if (f[0] == 'u') {
            res = json_array();
            for (size_t i = 0; i < cnt; i++) {
                json_t *x = json_array_get(l, i), *kx = c.attr ? attr_path(x, c.attr) : json_incref(x);
                bool seen = false;
                for (size_t j = 0; j < i && !seen; j++) {
                    json_t *y = json_array_get(l, j), *ky = c.attr ? attr_path(y, c.attr) : json_incref(y);
                    seen = c.fold && json_is_string(kx) && json_is_string(ky) ? order(kx, ky, true) == 0 : equal(kx, ky, 0);
                    if (ky) json_decref(ky);
                }
                if (kx) json_decref(kx);
                if (!seen) json_array_append(res, x);
            }
        } else {
            json_t *s2 = sorted(r, n, l, &c);
            if (s2 && !sortf) {
                size_t k = json_array_size(s2);
                res = k ? json_incref(json_array_get(s2, f[1] == 'i' ? 0 : k - 1)) : NULL;
                /* max picks the first maximal item like Python; stable sort gives the last */
                if (k && f[1] == 'a') {
                    size_t j = k - 1;
                    while (j > 0) {
                        json_t *x = json_array_get(s2, j - 1), *y = json_array_get(s2, k - 1);
                        json_t *kx = c.attr ? attr_path(x, c.attr) : json_incref(x), *ky = c.attr ? attr_path(y, c.attr) : json_incref(y);
                        int o = kx && ky ? order(kx, ky, c.fold) : 2;
                        if (kx) json_decref(kx);
                        if (ky) json_decref(ky);
                        if (o != 0) break;
                        j--;
                    }
                    json_decref(res);
                    res = json_incref(json_array_get(s2, j));
                }
                json_decref(s2);
            } else {
                res = s2;
            }
        }
    }
    else if (!strcmp(f, "sum")) {
        json_t *at = arg(a, 0, "attribute"), *st = arg(a, 1, "start");
        res = st ? json_incref(st) : json_integer(0);
        for (size_t i = 0; i < cnt && res; i++) {
            json_t *x = json_is_string(at) ? attr_path(json_array_get(l, i), json_string_value(at)) : json_incref(json_array_get(l, i));
            json_t *nx = arith(r, n, OP_ADD, res, x);
            if (x) json_decref(x);
            json_decref(res);
            res = nx;
        }
    }
    else if (!strcmp(f, "map")) {
        json_t *at = arg(a, -1, "attribute"), *dv = arg(a, -1, "default");
        res = json_array();
        for (size_t i = 0; i < cnt && !r->st; i++) {
            json_t *x;
            if (at) {
                x = json_is_string(at) ? attr_path(json_array_get(l, i), json_string_value(at)) : NULL;
                if (!x && dv) x = json_incref(dv);
            } else {
                if (!json_is_string(a0)) { fail(r, n, "map: expected a filter name or attribute="); break; }
                args fa = { 0 };
                int p = 0;
                for (int k = 0; k < a->n && fa.n < JJ_MAX_ARGS; k++) {
                    if (!a->kw[k] && p++ == 0) continue;
                    fa.v[fa.n] = a->v[k]; fa.kw[fa.n++] = a->kw[k];
                }
                x = run_filter(r, n, json_string_value(a0), json_array_get(l, i), &fa);
            }
            json_array_append_new(res, x ? x : json_null());
        }
    }
    else if (!strcmp(f, "select") || !strcmp(f, "reject") || !strcmp(f, "selectattr") || !strcmp(f, "rejectattr")) {
        bool want = f[0] == 's';
        int first = strstr(f, "attr") ? 1 : 0;
        res = json_array();
        for (size_t i = 0; i < cnt && !r->st; i++) {
            bool keep = false;
            if (is_filter_true(r, n, json_array_get(l, i), a, first, &keep) && keep == want)
                json_array_append(res, json_array_get(l, i));
        }
    }
    else if (!strcmp(f, "batch")) {
        int64_t k = a0 ? ival(a0) : 0;
        json_t *fill = arg(a, 1, "fill_with");
        if (k <= 0) { json_decref(l); return fail(r, n, "batch size must be positive"); }
        res = json_array();
        json_t *cur = NULL;
        for (size_t i = 0; i < cnt; i++) {
            if (!cur) cur = json_array();
            json_array_append(cur, json_array_get(l, i));
            if ((int64_t)json_array_size(cur) == k) { json_array_append_new(res, cur); cur = NULL; }
        }
        if (cur) {
            while (fill && !json_is_null(fill) && (int64_t)json_array_size(cur) < k) json_array_append(cur, fill);
            json_array_append_new(res, cur);
        }
    }
    else {
        json_decref(l);
        return fail(r, n, "no filter named '%s'", f);
    }
    json_decref(l);
    return res;
}

/* ------------------------------------------------------------------------------------------ */
/* Statements                                                                                   */

static void emit(R *r, node *n, const char *s, size_t len) {
    if (r->out->len + len > JJ_MAX_OUT) { fail(r, n, "output exceeds %zu bytes", JJ_MAX_OUT); return; }
    if (tw_buf_append(r->out, s, len) != TW_OK) r->st = TW_E_NOMEM;
}

/* Binds loop / set targets: one name takes the value, several unpack a list. */
static void bind(R *r, node *n, char **names, int nn, json_t *v) {
    if (nn == 1) { set_var(r, names[0], v ? json_incref(v) : NULL); return; }
    if (!json_is_array(v) || (int)json_array_size(v) != nn) {
        fail(r, n, "cannot unpack %s into %d names", type_name(v), nn);
        return;
    }
    for (int i = 0; i < nn; i++) set_var(r, names[i], json_incref(json_array_get(v, (size_t)i)));
}

static void exec_for(R *r, node *n) {
    json_t *it = eval(r, n->a);
    if (r->st) return;
    if (it && json_is_null(it)) { json_decref(it); fail(r, n, "'NoneType' object is not iterable"); return; }
    json_t *all = to_list(r, n, it);
    if (it) json_decref(it);
    if (!all) return;
    json_t *items = all;
    if (n->b) {   /* "for x in xs if cond": filtered before the loop, so loop.length counts survivors */
        items = json_array();
        for (size_t i = 0; i < json_array_size(all) && !r->st; i++) {
            frame fr = { json_object(), r->f };
            r->f = &fr;
            bind(r, n, n->names, n->nnames, json_array_get(all, i));
            json_t *c = r->st ? NULL : eval(r, n->b);
            if (truthy(r, c)) json_array_append(items, json_array_get(all, i));
            if (c) json_decref(c);
            r->f = fr.parent;
            json_decref(fr.vars);
        }
        json_decref(all);
    }
    size_t cnt = json_array_size(items);
    for (size_t i = 0; i < cnt && !r->st; i++) {
        if (++r->iters > JJ_MAX_ITER) { fail(r, n, "more than %ld loop iterations", JJ_MAX_ITER); break; }
        frame fr = { json_object(), r->f };   /* each iteration is a fresh scope, as in jinja2 */
        r->f = &fr;
        json_t *loop = json_pack("{sI sI sI sI sb sb sI sI sI sb}", "index", (json_int_t)i + 1, "index0", (json_int_t)i,
                                 "revindex", (json_int_t)(cnt - i), "revindex0", (json_int_t)(cnt - i - 1),
                                 "first", i == 0, "last", i + 1 == cnt, "length", (json_int_t)cnt,
                                 "depth", (json_int_t)1, "depth0", (json_int_t)0, "\x01loop", 1);
        if (i > 0) json_object_set(loop, "previtem", json_array_get(items, i - 1));
        if (i + 1 < cnt) json_object_set(loop, "nextitem", json_array_get(items, i + 1));
        set_var(r, "loop", loop);
        bind(r, n, n->names, n->nnames, json_array_get(items, i));
        if (!r->st) exec_body(r, n->c);
        r->f = fr.parent;
        json_decref(fr.vars);
        int b = r->brk;
        r->brk = 0;
        if (b == 1) break;
    }
    json_decref(items);
    if (cnt == 0 && n->d && !r->st) exec_body(r, n->d);
}

static void exec_body(R *r, node *body) {
    for (int i = 0; i < body->nv && !r->st && !r->brk; i++) {
        node *n = body->v[i];
        switch (n->k) {
        case N_TEXT: emit(r, n, json_string_value(n->lit), json_string_length(n->lit)); break;
        case N_OUT: {
            json_t *v = eval(r, n->a);
            if (r->st) break;
            if (json_is_string(v)) emit(r, n, json_string_value(v), json_string_length(v));
            else if (v) { tw_buf b = {0}; to_str(r, &b, v, false, 0); emit(r, n, b.data ? b.data : "", b.len); tw_buf_free(&b); }
            if (v) json_decref(v);
            break;
        }
        case N_BODY: exec_body(r, n); break;
        case N_IF: {
            node *c = n;
            while (c && c->k == N_IF) {
                json_t *v = eval(r, c->a);
                bool t = truthy(r, v);
                if (v) json_decref(v);
                if (r->st) return;
                if (t) { exec_body(r, c->b); c = NULL; break; }
                c = c->c;
            }
            if (c) exec_body(r, c);
            break;
        }
        case N_FOR: exec_for(r, n); break;
        case N_SET: {
            json_t *v = eval(r, n->a);
            if (r->st) { if (v) json_decref(v); break; }
            if (n->name) {   /* ns.attr = v */
                json_t *ns = lookup(r, n->names[0]);
                reg *g = reg_find(r, ns);
                if (!g || g->kind != REG_NS) fail(r, n, "cannot assign attribute on non-namespace object");
                else json_object_set(ns, n->name, v ? v : json_null());
                if (ns) json_decref(ns);
                if (v) json_decref(v);
            } else {
                bind(r, n, n->names, n->nnames, v);
                if (v) json_decref(v);
            }
            break;
        }
        case N_SETBLOCK: case N_FILTERBLOCK: {
            tw_buf *saved = r->out, b = {0};
            r->out = &b;
            exec_body(r, n->a);
            r->out = saved;
            json_t *v = r->st ? NULL : buf_str(&b);
            if (r->st) { tw_buf_free(&b); break; }
            if (n->k == N_SETBLOCK) { set_var(r, n->names[0], v); break; }
            frame fr = { json_object(), r->f };
            json_object_set_new(fr.vars, "\x01body", v);
            r->f = &fr;
            json_t *o = eval(r, n->b);
            r->f = fr.parent;
            json_decref(fr.vars);
            if (o) {
                tw_buf s = {0};
                to_str(r, &s, o, false, 0);
                emit(r, n, s.data ? s.data : "", s.len);
                tw_buf_free(&s);
                json_decref(o);
            }
            break;
        }
        case N_MACRO: {
            json_t *m = reg_add(r, REG_MACRO, n, NULL);
            if (m) set_var(r, n->name, m);
            break;
        }
        case N_CALLBLOCK: {
            json_t *c = reg_add(r, REG_CALLER, n, r->f);
            if (!c) break;
            size_t idx = r->nreg - 1;
            frame fr = { json_object(), r->f };
            json_object_set_new(fr.vars, "caller", c);
            r->f = &fr;
            json_t *v = eval(r, n->b);
            r->f = fr.parent;
            json_decref(fr.vars);
            r->reg[idx].f = NULL;
            if (v) {
                tw_buf s = {0};
                to_str(r, &s, v, false, 0);
                emit(r, n, s.data ? s.data : "", s.len);
                tw_buf_free(&s);
                json_decref(v);
            }
            break;
        }
        case N_BREAK: r->brk = 1; break;
        case N_CONTINUE: r->brk = 2; break;
        default: fail(r, n, "internal error: not a statement"); break;
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Entry points                                                                                 */

tw_status tw_template_render_json(const tw_template *t, const json_t *context, char **out, size_t *len) {
    if (!t || !out) return tw_err(TW_E_ARG, "tw_template_render_json: NULL argument");
    *out = NULL;
    if (len) *len = 0;
    if (context && !json_is_object(context)) return tw_err(TW_E_ARG, "chat template context: expected a JSON object");
    json_t *empty = context ? NULL : json_object();
    tw_buf b = {0};
    frame root = { json_object(), NULL };
    R r = { .ctx = context ? context : empty, .f = &root, .root = &root, .out = &b };
    exec_body(&r, t->root);
    for (size_t i = 0; i < r.nreg; i++) json_decref(r.reg[i].obj);
    free(r.reg);
    json_decref(root.vars);
    if (empty) json_decref(empty);
    if (r.st != TW_OK) { tw_buf_free(&b); return r.st; }
    if (!b.data && tw_buf_append(&b, "", 0) != TW_OK) return TW_E_NOMEM;
    size_t n = 0;
    *out = tw_buf_detach(&b, &n);
    if (!*out) { *out = tw_strdup(""); n = 0; if (!*out) return TW_E_NOMEM; }
    if (len) *len = n;
    return TW_OK;
}

tw_status tw_template_render(const tw_template *t, const tw_message *msgs, size_t n_msgs,
                             int add_generation_prompt, const char *bos_token,
                             const char *eos_token, char **out) {
    if (!t || !out || (!msgs && n_msgs)) return tw_err(TW_E_ARG, "tw_template_render: NULL argument");
    *out = NULL;
    json_t *ctx = json_object(), *list = json_array();
    if (!ctx || !list) { json_decref(ctx); json_decref(list); return tw_err(TW_E_NOMEM, "out of memory"); }
    json_object_set_new(ctx, "messages", list);
    for (size_t i = 0; i < n_msgs; i++) {
        const char *role = msgs[i].role ? msgs[i].role : "", *content = msgs[i].content ? msgs[i].content : "";
        json_t *m = json_object();
        if (!m || json_array_append_new(list, m)) { json_decref(ctx); return tw_err(TW_E_NOMEM, "out of memory"); }
        json_object_set_new(m, "role", mkstr(role, strlen(role)));
        json_object_set_new(m, "content", mkstr(content, strlen(content)));
    }
    json_object_set_new(ctx, "add_generation_prompt", json_boolean(add_generation_prompt));
    if (bos_token) json_object_set_new(ctx, "bos_token", mkstr(bos_token, strlen(bos_token)));
    if (eos_token) json_object_set_new(ctx, "eos_token", mkstr(eos_token, strlen(eos_token)));
    tw_status s = tw_template_render_json(t, ctx, out, NULL);
    json_decref(ctx);
    return s;
}
