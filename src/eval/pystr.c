/*
** pystr.c — CPython's str semantics for the metric code (see pystr.h). The benchmarks' scoring
** scripts lowercase, strip and split Python strings; doing the same on code points with CPython's
** own tables (pystr_tables.h) is what makes the C scores equal the reference ones on any text,
** not only on ASCII: a Russian or Greek transcription in CC-OCR, a non-breaking space in a VQA
** answer, an Arabic-Indic digit after a period.
*/
#include "pystr.h"

#include "pystr_tables.h"

/* ---- code point arrays ----------------------------------------------------------------------- */

static tw_status u32s_reserve(tw_u32s *s, size_t extra) {
    if (s->n + extra <= s->cap) return TW_OK;
    size_t cap = s->cap ? s->cap : 16;
    while (cap < s->n + extra) {
        if (cap > SIZE_MAX / 2 / sizeof *s->v) return tw_err(TW_E_NOMEM, "text too long");
        cap *= 2;
    }
    uint32_t *v = tw_realloc(s->v, cap * sizeof *v);
    if (!v) return TW_E_NOMEM;
    s->v = v;
    s->cap = cap;
    return TW_OK;
}

tw_status tw_u32s_push(tw_u32s *s, uint32_t c) {
    TW_TRY(u32s_reserve(s, 1));
    s->v[s->n++] = c;
    return TW_OK;
}

tw_status tw_u32s_append(tw_u32s *s, const uint32_t *v, size_t n) {
    if (n == 0) return TW_OK;
    TW_TRY(u32s_reserve(s, n));
    memcpy(s->v + s->n, v, n * sizeof *v);
    s->n += n;
    return TW_OK;
}

void tw_u32s_free(tw_u32s *s) {
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* ---- UTF-8 ----------------------------------------------------------------------------------- */

tw_status tw_py_decode(const char *str, size_t len, tw_u32s *out) {
    const uint8_t *s = (const uint8_t *)str;
    TW_TRY(u32s_reserve(out, len));          /* never more code points than bytes */
    size_t i = 0;
    while (i < len) {
        uint8_t b = s[i];
        if (b < 0x80) { out->v[out->n++] = b; i++; continue; }
        /* The lead byte fixes the length and the range of the first continuation byte (which
        ** excludes overlongs, surrogates and values past U+10FFFF); the rest are 80..BF. */
        int need;
        uint8_t lo = 0x80, hi = 0xBF;
        uint32_t c;
        if (b >= 0xC2 && b <= 0xDF)      { need = 1; c = b & 0x1F; }
        else if (b >= 0xE0 && b <= 0xEF) { need = 2; c = b & 0x0F; if (b == 0xE0) lo = 0xA0; if (b == 0xED) hi = 0x9F; }
        else if (b >= 0xF0 && b <= 0xF4) { need = 3; c = b & 0x07; if (b == 0xF0) lo = 0x90; if (b == 0xF4) hi = 0x8F; }
        else { out->v[out->n++] = 0xFFFD; i++; continue; }
        size_t j = i + 1;
        int k = 0;
        for (; k < need && j < len; k++, j++) {
            uint8_t cb = s[j];
            if (cb < lo || cb > hi) break;
            c = (c << 6) | (cb & 0x3F);
            lo = 0x80; hi = 0xBF;
        }
        if (k == need) out->v[out->n++] = c;
        else out->v[out->n++] = 0xFFFD;     /* the maximal subpart s[i..j) is one U+FFFD */
        i = j;
    }
    return TW_OK;
}

tw_status tw_py_encode(const uint32_t *v, size_t n, char **out, size_t *len) {
    size_t cap;
    if (tw_mul_overflow(n, 4, &cap) || cap == SIZE_MAX) return tw_err(TW_E_NOMEM, "text too long");
    uint8_t *p = tw_malloc(cap + 1), *o = p;
    if (!p) return TW_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = v[i];
        if (c < 0x80) *o++ = (uint8_t)c;
        else if (c < 0x800) { *o++ = (uint8_t)(0xC0 | c >> 6); *o++ = (uint8_t)(0x80 | (c & 0x3F)); }
        else if (c < 0x10000) {
            *o++ = (uint8_t)(0xE0 | c >> 12); *o++ = (uint8_t)(0x80 | (c >> 6 & 0x3F));
            *o++ = (uint8_t)(0x80 | (c & 0x3F));
        } else {
            *o++ = (uint8_t)(0xF0 | c >> 18); *o++ = (uint8_t)(0x80 | (c >> 12 & 0x3F));
            *o++ = (uint8_t)(0x80 | (c >> 6 & 0x3F)); *o++ = (uint8_t)(0x80 | (c & 0x3F));
        }
    }
    *o = 0;
    if (len) *len = (size_t)(o - p);
    *out = (char *)p;
    return TW_OK;
}

/* ---- character classes ---------------------------------------------------------------------- */

static bool in_ranges(const uint32_t (*r)[2], size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < r[mid][0]) hi = mid;
        else if (c > r[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}
#define IN(table, c) in_ranges(table, sizeof table / sizeof table[0], c)

bool tw_py_isspace(uint32_t c) {
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
    return IN(py_space_ranges, c);
}

bool tw_py_isdecimal(uint32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    return IN(py_decimal_ranges, c);
}

/* ---- str.lower ------------------------------------------------------------------------------ */

static uint32_t lower1(uint32_t c) {
    if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
    size_t lo = 0, hi = sizeof py_lower_pairs / sizeof py_lower_pairs[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < py_lower_pairs[mid][0]) hi = mid;
        else if (c > py_lower_pairs[mid][0]) lo = mid + 1;
        else return py_lower_pairs[mid][1];
    }
    return c;
}

static bool case_ignorable(uint32_t c) { return IN(py_case_ignorable_ranges, c); }
static bool cased(uint32_t c)          { return IN(py_cased_ranges, c); }

/* CPython's rule for U+03A3 at v[i]: final sigma when the nearest code point before it that is
** not case-ignorable is cased, and the nearest one after it that is not case-ignorable is not
** cased (or there is none). */
static bool final_sigma(const uint32_t *v, size_t n, size_t i) {
    size_t j = i;
    while (j > 0 && case_ignorable(v[j - 1])) j--;
    if (j == 0 || !cased(v[j - 1])) return false;
    for (j = i + 1; j < n && case_ignorable(v[j]); j++) {}
    return j == n || !cased(v[j]);
}

tw_status tw_py_lower(const uint32_t *v, size_t n, tw_u32s *out) {
    TW_TRY(u32s_reserve(out, n));
    for (size_t i = 0; i < n; i++) {
        uint32_t c = v[i];
        if (c == 0x130) {                            /* İ -> i + combining dot above */
            TW_TRY(tw_u32s_push(out, 'i'));
            TW_TRY(tw_u32s_push(out, 0x307));
        } else if (c == 0x3A3) {
            TW_TRY(tw_u32s_push(out, final_sigma(v, n, i) ? 0x3C2 : 0x3C3));
        } else {
            TW_TRY(tw_u32s_push(out, lower1(c)));
        }
    }
    return TW_OK;
}

/* ---- strip, split ----------------------------------------------------------------------------- */

void tw_py_strip(const uint32_t *v, size_t n, size_t *b, size_t *e) {
    size_t i = 0, j = n;
    while (i < j && tw_py_isspace(v[i])) i++;
    while (j > i && tw_py_isspace(v[j - 1])) j--;
    *b = i;
    *e = j;
}

tw_status tw_py_split(const uint32_t *v, size_t n,
                      tw_status (*fn)(void *ctx, const uint32_t *w, size_t len), void *ctx) {
    size_t i = 0;
    while (i < n) {
        while (i < n && tw_py_isspace(v[i])) i++;
        size_t s = i;
        while (i < n && !tw_py_isspace(v[i])) i++;
        if (i > s) TW_TRY(fn(ctx, v + s, i - s));
    }
    return TW_OK;
}
