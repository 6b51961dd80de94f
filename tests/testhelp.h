/*
** testhelp.h — tiny test macros (in the spirit of sds' testhelp.h). Each test program counts its
** checks and ends with the line "N passed, N failed", which tests/run.sh adds up.
*/
#ifndef TW_TESTHELP_H
#define TW_TESTHELP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int th_passed, th_failed;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) {                                                             \
            th_passed++;                                                        \
        } else {                                                                \
            th_failed++;                                                        \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

/* Checks a tw_status is TW_OK and prints tw_last_error() otherwise. */
#define CHECK_OK(expr, what)                                                    \
    do {                                                                        \
        tw_status th__s = (expr);                                               \
        CHECK(th__s == TW_OK, "%s: %s: %s", what, tw_status_name(th__s), tw_last_error()); \
    } while (0)

static inline int th_report(void) {
    printf("%d passed, %d failed\n", th_passed, th_failed);
    return th_failed ? 1 : 0;
}

/* TOWER_LONG=1 (make check-long): the exhaustive sweeps run as well. Without it each test keeps a
** representative of every kernel path, tail class, type and fixture case, and says next to each
** sweep which ones and why they suffice. */
static inline int th_long(void) {
    const char *e = getenv("TOWER_LONG");
    return e && *e && strcmp(e, "0") != 0;
}

/* Where the shared fixtures live: $TOWER_FIXTURES, else ../shared/fixtures (tests run from the
** repository root). */
static inline const char *th_fixtures(void) {
    const char *e = getenv("TOWER_FIXTURES");
    return e && *e ? e : "../shared/fixtures";
}

static inline char *th_path(const char *rel) {
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", th_fixtures(), rel);
    return b;
}

#endif
