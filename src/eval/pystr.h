/*
** pystr.h — the few behaviours of CPython's str (and of its re module on str patterns) that the
** benchmarks' scoring scripts depend on, for the metric files of src/eval: UTF-8 to code points
** and back, str.lower() (full mapping, Final_Sigma), str.isspace() (= re's \s), re's \d,
** str.strip() and str.split(). The tables come from CPython itself (pystr_tables.h, made by
** tests/reference/make_pystr_tables.py). Internal to the eval layer.
*/
#ifndef TOWER_PYSTR_H
#define TOWER_PYSTR_H

#include "tw_internal.h"

/* A growable array of code points: what a Python str holds. */
typedef struct tw_u32s {
    uint32_t *v;
    size_t    n, cap;
} tw_u32s;

tw_status tw_u32s_push(tw_u32s *s, uint32_t c);
tw_status tw_u32s_append(tw_u32s *s, const uint32_t *v, size_t n);
void      tw_u32s_free(tw_u32s *s);

/* Appends the code points of len bytes of UTF-8 (NUL bytes included). Bytes that are no UTF-8
** read as U+FFFD, one per maximal ill-formed subsequence (what bytes.decode(errors="replace")
** gives); surrogates encoded in UTF-8 are ill-formed too. */
tw_status tw_py_decode(const char *s, size_t len, tw_u32s *out);
/* The UTF-8 of n code points, malloc'ed and NUL-terminated; *len (may be NULL) its length. */
tw_status tw_py_encode(const uint32_t *v, size_t n, char **out, size_t *len);

bool tw_py_isspace(uint32_t c);     /* str.isspace(), re's \s                                  */
bool tw_py_isdecimal(uint32_t c);   /* str.isdecimal(), re's \d (Unicode category Nd)          */

/* Appends str.lower() of v[0..n): the full lowercase mapping (U+0130 becomes two code points)
** and capital sigma lowered to final sigma where CPython's Final_Sigma test says so. */
tw_status tw_py_lower(const uint32_t *v, size_t n, tw_u32s *out);

/* str.strip() with no argument: [*b, *e) is v without its leading and trailing whitespace. */
void tw_py_strip(const uint32_t *v, size_t n, size_t *b, size_t *e);

/* str.split() with no argument: calls fn(ctx, word, len) for each run of non-whitespace, in
** order; stops at the first status that is not TW_OK and returns it. */
tw_status tw_py_split(const uint32_t *v, size_t n,
                      tw_status (*fn)(void *ctx, const uint32_t *w, size_t len), void *ctx);

/* Code point strings equal (Python's ==). */
static inline bool tw_u32_eq(const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

#endif
