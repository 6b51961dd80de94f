/*
** translate_dataset.c — `tower translate --dataset FILE --to LANG[,LANG...]`: the VisionBlocks
** recipe of the TowerVision paper, which built its multilingual training data by translating
** English instruction data. The input is a dataset in the LLaVA conversation format (a JSON array
** or JSON lines of {"id", "image" | "video", "conversations": [{"from", "value"}, ...]}) or JSON
** lines with a text field; every human and model turn is translated with the paper's prompt
** (the one `tower translate` sends), text only, the <image> / <video> markers and everything else
** in the item kept as they are. One output file per language, in the input's format.
**
** The work, in order:
**   1. read the file and find its items (a JSON array is split into its elements by a scanner
**      that follows strings and brackets, so that every item has a line number), check every
**      item and count the work: bad data is reported as FILE:LINE before the model is loaded;
**   2. per language, find where an earlier run stopped (the journal, OUT.partial);
**   3. translate: every piece of text between markers is one prompt; tools/gen_batch.c runs
**      --batch of them together; an item is written to the journal when its last piece is done
**      (flushed: a run killed at any point loses only the items in flight);
**   4. when a language has every item, write OUT in input order (to a temporary name, renamed),
**      its provenance beside it (OUT.meta.json), and remove the journal.
** docs/cli.md ("Translating datasets") is the user's view; docs/eval.md says how it fits the
** paper's recipe.
*/
#include "media.h"   /* gen_params */
#include "gen_batch.h"
#include "translate.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ============================================================================================ */
/* Flags: what a translation is marked with instead of being kept silently                      */

enum {
    FL_EMPTY = 1,       /* a piece translated to nothing                                        */
    FL_MARKERS = 2,     /* a turn's <image> / <video> markers differ from the source's           */
    FL_TOO_LONG = 4,    /* a piece's output passed 3x the source's characters + 10 (generation cut) */
    FL_MAX_TOKENS = 8,  /* generation stopped at -n tokens or at the end of the context          */
};
#define N_FLAGS 4
static const char *const k_flag_names[N_FLAGS] = {"empty", "marker_count", "too_long", "max_tokens"};

/* The length limit: more characters than this is flagged too_long, and generation stops there. */
#define TOO_LONG_RATIO 3
#define TOO_LONG_SLACK 10

static const char *const k_markers[2] = {"<image>", "<video>"};
#define MARKER_LEN 7

/* ============================================================================================ */
/* Reading the dataset: where each item is                                                      */

typedef struct span {
    size_t off, len;   /* the item's text in the file   */
    size_t line;       /* where it starts (1-based)      */
} span;

typedef struct dataset {
    const char *path;
    char       *data;
    size_t      size;
    int         array;      /* a JSON array, else JSON lines */
    span       *items;
    size_t      n, cap;
    uint64_t    hash;       /* FNV-1a of the bytes: an edited file is another dataset */
} dataset;

static int add_span(dataset *ds, size_t off, size_t len, size_t line) {
    if (ds->n == ds->cap) {
        size_t cap = ds->cap ? 2 * ds->cap : 256;
        span *n = realloc(ds->items, cap * sizeof *n);
        if (!n) return fail("out of memory");
        ds->items = n;
        ds->cap = cap;
    }
    ds->items[ds->n++] = (span){ off, len, line };
    return 0;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* JSON lines: every line that is not blank is an item. */
static int index_lines(dataset *ds, size_t i) {
    size_t line = 1;
    while (i < ds->size) {
        size_t e = i;
        while (e < ds->size && ds->data[e] != '\n') e++;
        size_t a = i, b = e;
        while (a < b && is_ws(ds->data[a])) a++;
        while (b > a && is_ws(ds->data[b - 1])) b--;
        if (b > a && add_span(ds, a, b - a, line)) return 1;
        i = e + 1;
        line++;
    }
    return 0;
}

/* A JSON array: the elements are found by following strings and brackets (the elements
** themselves are parsed one at a time later, so each keeps its line number). */
static int index_array(dataset *ds, size_t i) {
    const char *d = ds->data;
    size_t n = ds->size, line = 1;
    for (size_t k = 0; k < i; k++) line += d[k] == '\n';
    i++;   /* '[' */
    for (int first = 1;; first = 0) {
        while (i < n && is_ws(d[i])) line += d[i++] == '\n';
        if (i >= n) return fail("%s:%zu: the JSON array is not closed", ds->path, line);
        if (first && d[i] == ']') { i++; break; }
        size_t start = i, start_line = line;
        int depth = 0, in_str = 0;
        for (; i < n; i++) {
            char c = d[i];
            if (c == '\n') line++;
            if (in_str) {
                if (c == '\\' && i + 1 < n) { i++; line += d[i] == '\n'; }
                else if (c == '"') in_str = 0;
                continue;
            }
            if (c == '"') in_str = 1;
            else if (c == '{' || c == '[') depth++;
            else if (c == '}' || c == ']') { if (depth == 0) break; depth--; }
            else if (c == ',' && depth == 0) break;
        }
        if (i >= n && (depth || in_str))
            return fail("%s:%zu: the item at line %zu is not closed (a %s runs to the end of the file)", ds->path, line,
                        start_line, in_str ? "string" : "bracket");
        if (i >= n) return fail("%s:%zu: the JSON array is not closed (no ']' at the end)", ds->path, line);
        size_t end = i;
        while (end > start && is_ws(d[end - 1])) end--;
        if (end == start) return fail("%s:%zu: an empty item in the JSON array (a comma too many?)", ds->path, line);
        if (d[i] == '}') return fail("%s:%zu: a '}' that closes nothing", ds->path, line);
        if (add_span(ds, start, end - start, start_line)) return 1;
        if (d[i++] == ']') break;
    }
    while (i < n && is_ws(d[i])) line += d[i++] == '\n';
    if (i < n) return fail("%s:%zu: text after the end of the JSON array", ds->path, line);
    return 0;
}

static int dataset_open(const char *path, dataset *ds) {
    memset(ds, 0, sizeof *ds);
    ds->path = path;
    if (read_path(path, &ds->data, &ds->size)) return 1;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t k = 0; k < ds->size; k++) h = (h ^ (unsigned char)ds->data[k]) * 0x100000001b3ull;
    ds->hash = h;
    size_t i = 0;
    if (ds->size >= 3 && !memcmp(ds->data, "\xEF\xBB\xBF", 3)) i = 3;   /* a UTF-8 byte order mark */
    size_t j = i;
    while (j < ds->size && is_ws(ds->data[j])) j++;
    ds->array = j < ds->size && ds->data[j] == '[';
    if (ds->array) return index_array(ds, j);
    if (index_lines(ds, i)) return 1;
    /* one pretty-printed object is neither an array of items nor JSON lines: say so, not "line 1" */
    json_t *first = ds->n ? json_loadb(ds->data + ds->items[0].off, ds->items[0].len, 0, NULL) : NULL;
    json_t *whole = ds->n > 1 && !first ? json_loadb(ds->data + i, ds->size - i, 0, NULL) : NULL;
    int one = json_is_object(whole);
    json_decref(first);
    json_decref(whole);
    if (one) return fail("%s: one JSON object: a dataset is a JSON array of items, or JSON lines (one item a line)", path);
    return 0;
}

static void dataset_close(dataset *ds) {
    free(ds->data);
    free(ds->items);
    memset(ds, 0, sizeof *ds);
}

/* Item i parsed: an object, or NULL with the reason in err ("FILE:LINE: ..."). */
static json_t *dataset_item(const dataset *ds, size_t i, char *err, size_t cap) {
    const span *s = &ds->items[i];
    json_error_t je;
    json_t *j = json_loadb(ds->data + s->off, s->len, 0, &je);
    if (!j) {
        /* jansson saw one item: its "end of file" is the end of the line (or of the array element) */
        char *eof = strstr(je.text, "end of file");
        if (eof) snprintf(eof, sizeof je.text - (size_t)(eof - je.text), "the end of the %s", ds->array ? "item" : "line");
        snprintf(err, cap, "%s:%zu: %s (column %d)", ds->path, s->line + (size_t)(je.line > 0 ? je.line - 1 : 0), je.text,
                 je.column);
        return NULL;
    }
    if (!json_is_object(j)) {
        snprintf(err, cap, "%s:%zu: expected an object {...}, got %s", ds->path, s->line,
                 json_is_array(j) ? "an array" : json_is_string(j) ? "a string" : "a number, true, false or null");
        json_decref(j);
        return NULL;
    }
    return j;
}

/* ============================================================================================ */
/* Items: the turns, the pieces of text between markers, the score                              */

enum { FMT_LLAVA, FMT_TEXT };

/* One piece of a turn to translate: value[lo, hi) of turn `turn`, between markers and without
** the white space around it (which stays as it is, with the markers). */
typedef struct piece {
    size_t          turn, lo, hi;
    char           *out;          /* the translation, white space around it trimmed          */
    unsigned        flags;
    struct open_item *item;
} piece;

/* The string of turn t of an item (LLaVA: conversations[t].value; text: the field). */
static json_t *turn_value(json_t *it, int fmt, const char *field, size_t t) {
    if (fmt == FMT_TEXT) return json_object_get(it, field);
    return json_object_get(json_array_get(json_object_get(it, "conversations"), t), "value");
}

/* Where the next marker starts in s[from, n), or n. */
static size_t next_marker(const char *s, size_t from, size_t n, size_t *which) {
    for (size_t i = from; i + MARKER_LEN <= n; i++) {
        if (s[i] != '<') continue;
        for (size_t k = 0; k < 2; k++)
            if (!memcmp(s + i, k_markers[k], MARKER_LEN)) { if (which) *which = k; return i; }
    }
    return n;
}

/* Adds the pieces of string s (turn t): the text between markers, white space around it
** trimmed. pieces may be NULL (count only). */
static size_t split_pieces(const char *s, size_t n, size_t t, piece *pieces, size_t k) {
    for (size_t a = 0;;) {
        size_t m = next_marker(s, a, n, NULL);
        size_t lo = a, hi = m;
        while (lo < hi && is_ws(s[lo])) lo++;
        while (hi > lo && is_ws(s[hi - 1])) hi--;
        if (hi > lo) {
            if (pieces) pieces[k] = (piece){ .turn = t, .lo = lo, .hi = hi };
            k++;
        }
        if (m >= n) return k;
        a = m + MARKER_LEN;
    }
}

typedef struct item_rules {
    const char *path;
    int         fmt;
    const char *text_field;
    int         min_score_set;
    double      min_score;
    const char *score_field;
} item_rules;

/* Checks an item and, with pieces != NULL, lists its pieces (*pieces malloc'ed). Returns 0 and
** sets *below when the score is under --min-score; 1 with err ("FILE:LINE: ...") for bad data. */
static int plan_item(const item_rules *r, json_t *it, size_t line, piece **pieces, size_t *n_pieces, size_t *n_turns,
                     int *below, char *err, size_t cap) {
    *below = 0;
    size_t nt = 1;
    if (r->fmt == FMT_LLAVA) {
        json_t *conv = json_object_get(it, "conversations");
        if (!conv) { snprintf(err, cap, "%s:%zu: no field \"conversations\"", r->path, line); return 1; }
        if (!json_is_array(conv)) { snprintf(err, cap, "%s:%zu: \"conversations\" is not an array", r->path, line); return 1; }
        nt = json_array_size(conv);
        for (size_t t = 0; t < nt; t++) {
            json_t *turn = json_array_get(conv, t), *from = json_object_get(turn, "from"), *v = json_object_get(turn, "value");
            const char *what = !json_is_object(turn) ? "is not an object {\"from\", \"value\"}"
                             : !from ? "has no field \"from\""
                             : !json_is_string(from) ? "has a \"from\" that is not a string"
                             : !v ? "has no field \"value\""
                             : !json_is_string(v) ? "has a \"value\" that is not a string" : NULL;
            if (what) { snprintf(err, cap, "%s:%zu: conversations[%zu] %s", r->path, line, t, what); return 1; }
        }
    } else {
        json_t *v = json_object_get(it, r->text_field);
        if (!v) { snprintf(err, cap, "%s:%zu: no field \"%s\" (--text-field)", r->path, line, r->text_field); return 1; }
        if (!json_is_string(v)) { snprintf(err, cap, "%s:%zu: \"%s\" is not a string", r->path, line, r->text_field); return 1; }
    }
    if (r->min_score_set) {
        json_t *sc = json_object_get(it, r->score_field);
        if (!sc) { snprintf(err, cap, "%s:%zu: no field \"%s\" (--min-score)", r->path, line, r->score_field); return 1; }
        if (!json_is_number(sc)) { snprintf(err, cap, "%s:%zu: \"%s\" is not a number", r->path, line, r->score_field); return 1; }
        *below = json_number_value(sc) < r->min_score;
    }
    if (n_turns) *n_turns = nt;
    if (!pieces) return 0;
    size_t np = 0;
    for (size_t t = 0; t < nt; t++) {
        json_t *v = turn_value(it, r->fmt, r->text_field, t);
        np = split_pieces(json_string_value(v), json_string_length(v), t, NULL, np);
    }
    *pieces = calloc(np ? np : 1, sizeof **pieces);
    if (!*pieces) { snprintf(err, cap, "out of memory"); return 1; }
    np = 0;
    for (size_t t = 0; t < nt; t++) {
        json_t *v = turn_value(it, r->fmt, r->text_field, t);
        np = split_pieces(json_string_value(v), json_string_length(v), t, *pieces, np);
    }
    *n_pieces = np;
    return 0;
}

/* ============================================================================================ */
/* JSON out: compact, numbers as they were                                                      */

/* The fewest significant digits that give v back (Python's repr writes scores so). */
static int real_digits(double v) {
    char b[40];
    for (int p = 1; p < 17; p++) {
        snprintf(b, sizeof b, "%.*g", p, v);
        if (strtod(b, NULL) == v) return p;
    }
    return 17;
}

/* The most digits any real number in j needs: the precision to dump j with. */
static int max_digits(json_t *j) {
    int best = 0;
    if (json_is_real(j)) return real_digits(json_real_value(j));
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) { int d = max_digits(v); if (d > best) best = d; }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) { int d = max_digits(v); if (d > best) best = d; }
    }
    return best;
}

static char *dump_item(json_t *j) {
    int d = max_digits(j);
    return json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(d ? d : 17));
}

/* ============================================================================================ */
/* Output files: names, the journal of a run, resuming, the finished file                       */

typedef struct lang_run {
    const language *to;
    char          *path, *jpath, *mpath;   /* OUT, OUT.partial (the journal), OUT.meta.json */
    FILE          *jf;
    json_t        *header;                 /* what the journal's first line says            */
    unsigned char *done;                   /* [n items]: in the journal                     */
    size_t         n_resumed;              /* items the journal held when this run started  */
    size_t         n_new, n_failed, n_flagged, n_dropped, flag_count[N_FLAGS];
    size_t         n_todo;                 /* items left when this run started              */
    size_t         cursor;                 /* next item to open                             */
    size_t         n_open;                 /* items opened and not finished                 */
    double         t0, t1;                 /* first item opened, last finished (ms)         */
    int            finished_before;        /* OUT was already written by an equal run       */
    int            written;                /* OUT written by this run                       */
} lang_run;

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

static int ends_with_ci(const char *s, size_t n, const char *suf) {
    size_t k = strlen(suf);
    return n >= k && !strncasecmp(s + n - k, suf, k);
}

/* OUT for language to: DIR/STEM.CODE.EXT, where STEM is the input's name without .json / .jsonl
** and without a last ".FROM" ("data.en.jsonl" -> "data.de.jsonl"), EXT the input's (.jsonl for
** JSON lines, .json for an array when the name has neither), DIR --out-dir or the input's. */
static char *output_path(const dataset *ds, const language *from, const language *to) {
    const char *base = strrchr(ds->path, '/');
    base = base ? base + 1 : ds->path;
    size_t n = strlen(base);
    const char *ext = ds->array ? ".json" : ".jsonl";
    if (ends_with_ci(base, n, ".jsonl")) { ext = ".jsonl"; n -= 6; }
    else if (ends_with_ci(base, n, ".json")) { ext = ".json"; n -= 5; }
    char fromsuf[32];
    snprintf(fromsuf, sizeof fromsuf, ".%s", from->code);
    if (ends_with_ci(base, n, fromsuf) && n > strlen(fromsuf)) n -= strlen(fromsuf);
    if (g.out_dir) return xprintf("%s/%.*s.%s%s", g.out_dir, (int)n, base, to->code, ext);
    if (base == ds->path) return xprintf("%.*s.%s%s", (int)n, base, to->code, ext);
    return xprintf("%.*s%.*s.%s%s", (int)(base - ds->path), ds->path, (int)n, base, to->code, ext);
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The first field of want that have lacks or holds otherwise; NULL when they agree ("source", the
** path the dataset was read from, may differ: its hash says whether it is the same data). */
static const char *header_diff(const json_t *want, const json_t *have, char *msg, size_t cap) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)want, k, v) {
        if (!strcmp(k, "source")) continue;
        json_t *h = json_object_get(have, k);
        if (h && json_equal(v, h)) continue;
        char *a = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT), *b = h ? json_dumps(h, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        snprintf(msg, cap, "its \"%s\" is %s, this run's is %s", k, b ? b : "missing", a ? a : "?");
        free(a);
        free(b);
        return k;
    }
    return NULL;
}

/* Reads the journal of an unfinished run: checks its header against this run's, marks its items
** done, counts their flags, and cuts a last line the killed run did not finish. */
static int journal_load(lang_run *lr, const dataset *ds) {
    char *data = NULL;
    size_t len = 0;
    if (read_path(lr->jpath, &data, &len)) return 1;
    int rc = 0;
    size_t lineno = 0, i = 0, good_end = 0;
    while (!rc && i < len) {
        char *nl = memchr(data + i, '\n', len - i);
        if (!nl) break;   /* the last line was cut: dropped below */
        size_t e = (size_t)(nl - data);
        lineno++;
        json_error_t je;
        json_t *j = json_loadb(data + i, e - i, 0, &je);
        if (!j) {
            rc = fail("%s:%zu: %s: not a journal of `tower translate --dataset` (--force starts over)", lr->jpath, lineno, je.text);
            break;
        }
        if (lineno == 1) {
            char msg[512];
            if (!json_object_get(j, "tower_translate"))
                rc = fail("%s: not a journal of `tower translate --dataset` (--force starts over)", lr->jpath);
            else if (header_diff(lr->header, j, msg, sizeof msg))
                rc = fail("%s: an unfinished run of another translation: %s (--force starts over)", lr->jpath, msg);
        } else {
            json_t *ji = json_object_get(j, "i"), *item = json_object_get(j, "item");
            json_int_t k = json_is_integer(ji) ? json_integer_value(ji) : -1;
            if (k < 0 || (size_t)k >= ds->n || !json_is_object(item))
                rc = fail("%s:%zu: not an item record of this dataset (--force starts over)", lr->jpath, lineno);
            else if (!lr->done[k]) {
                lr->done[k] = 1;
                lr->n_resumed++;
                json_t *fl = json_object_get(item, "translation_flags");
                if (json_array_size(fl)) lr->n_flagged++;
                for (size_t f = 0; f < N_FLAGS; f++) {
                    size_t x;
                    json_t *v;
                    json_array_foreach(fl, x, v) if (json_is_string(v) && !strcmp(json_string_value(v), k_flag_names[f])) lr->flag_count[f]++;
                }
            }
        }
        json_decref(j);
        i = e + 1;
        good_end = i;
    }
    free(data);
    if (!rc && lineno == 0) rc = fail("%s: empty: not a journal (--force starts over)", lr->jpath);
    if (!rc && good_end < len && truncate(lr->jpath, (off_t)good_end) != 0)
        rc = fail("cannot cut the unfinished last line of %s: %s", lr->jpath, strerror(errno));
    return rc;
}

/* Decides, before anything is translated, what this run does with language lr: start, continue
** the journal (--resume), skip it (finished by an equal run, --resume), or refuse. */
static int lang_prepare(lang_run *lr, const dataset *ds) {
    char msg[512];
    if (same_file(lr->path, ds->path)) return fail("%s: the output would overwrite the input (--out-dir DIR or -o FILE)", lr->path);
    if (file_exists(lr->jpath)) {
        if (g.force) {
            if (unlink(lr->jpath) != 0) return fail("cannot remove %s: %s", lr->jpath, strerror(errno));
        } else if (g.resume) {
            if (journal_load(lr, ds)) return 1;
        } else {
            return fail("%s holds an unfinished run: --resume continues it, --force starts over", lr->jpath);
        }
    } else if (file_exists(lr->path) && !g.force) {
        if (!g.resume) return fail("%s exists: --force translates again and overwrites it (--resume: done if the same run wrote it)", lr->path);
        json_error_t je;
        json_t *meta = json_load_file(lr->mpath, 0, &je);
        const char *d = meta ? header_diff(lr->header, json_object_get(meta, "run"), msg, sizeof msg) : NULL;
        if (!meta) {
            return fail("%s exists and %s does not say which run wrote it: --force translates again", lr->path, lr->mpath);
        } else if (d) {
            json_decref(meta);
            return fail("%s was written by another translation: %s (--force translates again)", lr->path, msg);
        }
        lr->n_resumed = (size_t)json_integer_value(json_object_get(meta, "items"));
        lr->n_flagged = (size_t)json_integer_value(json_object_get(meta, "flagged"));
        json_decref(meta);
        lr->finished_before = 1;
        return 0;
    }
    FILE *f = fopen(lr->jpath, "a");
    if (!f) return fail("cannot write %s: %s", lr->jpath, strerror(errno));
    if (fseek(f, 0, SEEK_END) == 0 && ftell(f) == 0) {
        char *h = json_dumps(lr->header, JSON_COMPACT);
        int bad = !h || fprintf(f, "%s\n", h) < 0 || fflush(f) != 0;
        free(h);
        if (bad) { fclose(f); return fail("cannot write %s: %s", lr->jpath, strerror(errno)); }
    }
    lr->jf = f;
    return 0;
}

/* Writes items (the journal's, in input order; flagged ones left out with --drop-flagged) as the
** input's format to path, through a temporary file renamed over it. *n_written, *n_dropped. */
typedef struct item_list {
    json_t **items;     /* [n], NULL where absent */
    size_t   n;
} item_list;

static int write_items(const char *path, int array, const item_list *L, int drop_flagged, size_t *n_written,
                       size_t *n_dropped) {
    char *tmp = xprintf("%s.tmp%ld", path, (long)getpid());
    if (!tmp) return fail("out of memory");
    FILE *f = fopen(tmp, "w");
    if (!f) { int e = errno; free(tmp); return fail("cannot write %s: %s", path, strerror(e)); }
    int bad = array && fputs("[\n", f) < 0;
    size_t nw = 0, nd = 0;
    for (size_t i = 0; i < L->n && !bad; i++) {
        json_t *it = L->items[i];
        if (!it) continue;
        if (drop_flagged && json_array_size(json_object_get(it, "translation_flags"))) { nd++; continue; }
        char *s = dump_item(it);
        if (!s) { bad = 1; break; }
        bad = fprintf(f, array ? "%s%s" : "%s%s\n", array && nw ? ",\n" : "", s) < 0;
        free(s);
        nw++;
    }
    if (array && !bad) bad = fputs(nw ? "\n]\n" : "]\n", f) < 0;
    int e = errno;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) { bad = 1; e = errno; }
    fclose(f);
    if (!bad && rename(tmp, path) != 0) { bad = 1; e = errno; }
    if (bad) unlink(tmp);
    free(tmp);
    if (bad) return fail("cannot write %s: %s", path, strerror(e));
    if (n_written) *n_written = nw;
    if (n_dropped) *n_dropped = nd;
    return 0;
}

/* The language is done: OUT from the journal, OUT.meta.json, the journal removed. */
static int lang_finish(lang_run *lr, const dataset *ds, json_t *summary) {
    if (lr->jf && fclose(lr->jf) != 0) { lr->jf = NULL; return fail("cannot write %s: %s", lr->jpath, strerror(errno)); }
    lr->jf = NULL;
    char *data = NULL;
    size_t len = 0;
    if (read_path(lr->jpath, &data, &len)) return 1;
    item_list L = { calloc(ds->n ? ds->n : 1, sizeof(json_t *)), ds->n };
    int rc = L.items ? 0 : fail("out of memory");
    for (size_t i = 0, lineno = 1; !rc && i < len; lineno++) {
        char *nl = memchr(data + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - data) : len;
        if (lineno > 1) {
            json_t *j = json_loadb(data + i, e - i, 0, NULL);
            json_int_t k = json_integer_value(json_object_get(j, "i"));
            json_t *item = json_object_get(j, "item");
            if (!j || k < 0 || (size_t)k >= ds->n || !json_is_object(item)) rc = fail("%s:%zu: a damaged record", lr->jpath, lineno);
            else if (!L.items[k]) L.items[k] = json_incref(item);
            json_decref(j);
        }
        i = e + 1;
    }
    free(data);
    size_t nw = 0;
    if (!rc) rc = write_items(lr->path, ds->array, &L, g.drop_flagged, &nw, &lr->n_dropped);
    for (size_t i = 0; L.items && i < L.n; i++) json_decref(L.items[i]);
    free(L.items);
    if (rc) return rc;
    json_t *meta = json_object();
    json_object_set(meta, "run", lr->header);
    json_object_set_new(meta, "items", json_integer((json_int_t)nw));
    json_object_set_new(meta, "flagged", json_integer((json_int_t)lr->n_flagged));
    json_object_set_new(meta, "dropped_flagged", json_integer((json_int_t)lr->n_dropped));
    json_t *fc = json_object();
    for (size_t f = 0; f < N_FLAGS; f++) json_object_set_new(fc, k_flag_names[f], json_integer((json_int_t)lr->flag_count[f]));
    json_object_set_new(meta, "flags", fc);
    json_object_update(meta, summary);
    char *tmp = xprintf("%s.tmp%ld", lr->mpath, (long)getpid());
    if (!tmp || json_dump_file(meta, tmp, JSON_INDENT(2)) != 0 || rename(tmp, lr->mpath) != 0) {
        if (tmp) unlink(tmp);
        rc = fail("cannot write %s", lr->mpath);
    }
    free(tmp);
    json_decref(meta);
    if (!rc && unlink(lr->jpath) != 0) rc = fail("cannot remove %s: %s", lr->jpath, strerror(errno));
    lr->written = !rc;
    return rc;
}

/* ============================================================================================ */
/* The run: items opened in order, their pieces as jobs of the batch, items finished            */

typedef struct open_item {
    struct lang_run *lr;
    size_t   idx;
    json_t  *obj;
    piece   *pieces;
    size_t   n_pieces, issued, pending, n_turns;
    char    *error;       /* a piece could not run: why                     */
    int      cancelled;   /* the run stopped before it finished             */
} open_item;

enum { ST_OK = 0, ST_BAD, ST_BELOW };

typedef struct run {
    const tw_model *m;
    dataset         ds;
    item_rules      rules;
    const language *from;
    unsigned char  *state;        /* [n items]: ST_*                          */
    size_t          n_ok, n_bad, n_below;
    lang_run       *langs;
    size_t          n_langs, lang_cursor;
    open_item      *cur;          /* the item whose pieces are being handed out */
    size_t          opened;       /* items opened by this run (--limit)       */
    size_t          total, done;  /* items of this run, and finished          */
    size_t          n_turns, n_pieces;
    int             failed;       /* stop: an item failed (--on-error stop) or a write did */
    cli_progress    bar;
    gb_stats        st;
} run;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { g_stop = sig; }

/* The progress line: the language being opened, items, items/s, tokens/s, ETA, items flagged. */
static void progress(run *r, int force) {
    size_t flagged = 0;
    for (size_t i = 0; i < r->n_langs; i++) flagged += r->langs[i].n_flagged;
    char extra[48];
    snprintf(extra, sizeof extra, "flagged %zu", flagged);
    size_t l = r->lang_cursor < r->n_langs ? r->lang_cursor : r->n_langs - 1;   /* the last one's items finish */
    const char *lang = r->n_langs ? r->langs[l].to->code : "";
    progress_draw(&r->bar, force, lang, r->done, r->total, (double)r->st.gen_tokens, extra);
}

static void warn_item(run *r, const char *msg) {
    progress_clear(&r->bar);
    fprintf(stderr, "tower: warning: %s: item skipped (--on-error skip)\n", msg);
}

static void item_free(open_item *it) {
    for (size_t i = 0; i < it->n_pieces; i++) free(it->pieces[i].out);
    free(it->pieces);
    free(it->error);
    json_decref(it->obj);
    free(it);
}

static size_t count_markers(const char *s, size_t n, size_t k) {
    size_t c = 0, which = 0;
    for (size_t i = next_marker(s, 0, n, &which); i < n; i = next_marker(s, i + MARKER_LEN, n, &which)) c += which == k;
    return c;
}

/* The item's turns with their pieces translated, its flags, into the journal. Returns non-zero
** to stop the run (a write failed, or the item failed with --on-error stop). */
static int item_done(run *r, open_item *it) {
    lang_run *lr = it->lr;
    if (r->cur == it) r->cur = NULL;
    lr->n_open--;
    lr->t1 = now_ms();
    if (it->cancelled) { item_free(it); return 0; }
    r->done++;
    if (it->error) {
        lr->n_failed++;
        char msg[1024];
        snprintf(msg, sizeof msg, "%s:%zu: to %s: %s", r->ds.path, r->ds.items[it->idx].line, lr->to->code, it->error);
        item_free(it);
        if (g.on_error_skip) { warn_item(r, msg); return 0; }
        progress_clear(&r->bar);
        fail("%s", msg);
        r->failed = 1;
        return 1;
    }
    unsigned flags = 0;
    size_t p = 0;
    for (size_t t = 0; t < it->n_turns; t++) {
        json_t *v = turn_value(it->obj, r->rules.fmt, r->rules.text_field, t);
        const char *s = json_string_value(v);
        size_t n = json_string_length(v), q = p;
        while (q < it->n_pieces && it->pieces[q].turn == t) q++;
        if (q == p) continue;   /* nothing to translate: kept as it is */
        size_t cap = n + 1;
        for (size_t k = p; k < q; k++) cap += strlen(it->pieces[k].out);
        char *o = malloc(cap), *w = o;
        if (!o) { progress_clear(&r->bar); fail("out of memory"); r->failed = 1; item_free(it); return 1; }
        size_t at = 0;
        for (size_t k = p; k < q; k++) {
            const piece *pc = &it->pieces[k];
            memcpy(w, s + at, pc->lo - at);
            w += pc->lo - at;
            size_t ol = strlen(pc->out);
            memcpy(w, pc->out, ol);
            w += ol;
            at = pc->hi;
            flags |= pc->flags;
        }
        memcpy(w, s + at, n - at);
        w += n - at;
        *w = 0;
        for (size_t k = 0; k < 2; k++)
            if (count_markers(s, n, k) != count_markers(o, (size_t)(w - o), k)) flags |= FL_MARKERS;
        json_string_setn(v, o, (size_t)(w - o));
        free(o);
        p = q;
    }
    json_object_del(it->obj, "translation_flags");
    if (flags) {
        json_t *a = json_array();
        for (size_t f = 0; f < N_FLAGS; f++)
            if (flags & (1u << f)) { json_array_append_new(a, json_string(k_flag_names[f])); lr->flag_count[f]++; }
        json_object_set_new(it->obj, "translation_flags", a);
        lr->n_flagged++;
    }
    char *s = dump_item(it->obj);
    int bad = !s || fprintf(lr->jf, "{\"i\":%zu,\"item\":%s}\n", it->idx, s) < 0 || fflush(lr->jf) != 0;
    free(s);
    if (bad) {
        progress_clear(&r->bar);
        fail("cannot write %s: %s", lr->jpath, strerror(errno));
        r->failed = 1;
        item_free(it);
        return 1;
    }
    lr->done[it->idx] = 1;
    lr->n_new++;
    item_free(it);
    progress(r, 0);
    return 0;
}

/* Opens the next item to translate (language after language, items in order): NULL when none
** is left, or --limit items were opened, or the run is stopping. */
static open_item *open_next(run *r) {
    if (r->failed || g_stop || (g.limit && r->opened >= (size_t)g.limit)) return NULL;
    for (; r->lang_cursor < r->n_langs; r->lang_cursor++) {
        lang_run *lr = &r->langs[r->lang_cursor];
        if (lr->finished_before) continue;
        while (lr->cursor < r->ds.n && (r->state[lr->cursor] != ST_OK || lr->done[lr->cursor])) lr->cursor++;
        if (lr->cursor == r->ds.n) continue;
        open_item *it = calloc(1, sizeof *it);
        char err[1024];
        if (!it) { fail("out of memory"); r->failed = 1; return NULL; }
        it->lr = lr;
        it->idx = lr->cursor++;
        it->obj = dataset_item(&r->ds, it->idx, err, sizeof err);
        int below = 0;
        if (!it->obj || plan_item(&r->rules, it->obj, r->ds.items[it->idx].line, &it->pieces, &it->n_pieces, &it->n_turns,
                                  &below, err, sizeof err)) {
            fail("%s (the file changed while it was read?)", err);   /* it was checked before */
            r->failed = 1;
            item_free(it);
            return NULL;
        }
        for (size_t k = 0; k < it->n_pieces; k++) it->pieces[k].item = it;
        r->opened++;
        lr->n_open++;
        if (!lr->t0) lr->t0 = now_ms();
        r->n_turns += it->n_turns;
        r->n_pieces += it->n_pieces;
        return it;
    }
    return NULL;
}

/* gen_batch's next(): the next piece of the current item, or of the next item. */
static int job_next(void *ud, gb_job *job) {
    run *r = ud;
    for (;;) {
        open_item *it = r->cur;
        if (it && it->issued < it->n_pieces && !it->error) {
            piece *pc = &it->pieces[it->issued++];
            json_t *v = turn_value(it->obj, r->rules.fmt, r->rules.text_field, pc->turn);
            const char *s = json_string_value(v) + pc->lo;
            size_t n = pc->hi - pc->lo;
            char *src = malloc(n + 1);
            if (!src) { fail("out of memory"); r->failed = 1; return -1; }
            memcpy(src, s, n);
            src[n] = 0;
            char *req = translation_request(r->from, it->lr->to, src, 0, 0);
            free(src);
            tw_prompt *p = NULL;
            tw_status st = req ? tw_prompt_from_text(r->m, g.system, req, strlen(req), NULL, 0, 0, &p) : TW_E_NOMEM;
            free(req);
            if (st != TW_OK) {   /* this piece cannot be asked: the item fails */
                it->error = xprintf("turn %zu: %s", pc->turn, tw_last_error());
                if (it->pending == 0) { r->cur = NULL; if (item_done(r, it)) return -1; }
                continue;
            }
            size_t chars = 0;
            for (size_t k = 0; k < n; k++) chars += ((unsigned char)s[k] & 0xC0) != 0x80;
            it->pending++;
            *job = (gb_job){ .prompt = p, .max_chars = TOO_LONG_RATIO * chars + TOO_LONG_SLACK, .ud = pc };
            return 1;
        }
        if (it) {
            r->cur = NULL;
            if (it->pending == 0 && item_done(r, it)) return -1;   /* nothing to translate, or failed */
        }
        r->cur = open_next(r);
        if (!r->cur) return r->failed ? -1 : 0;
    }
}

/* gen_batch's done(): a piece's translation. */
static int job_done(void *ud, const gb_job *job, const gb_result *res) {
    run *r = ud;
    piece *pc = job->ud;
    open_item *it = pc->item;
    tw_prompt_free(job->prompt);
    it->pending--;
    if (res->status == TW_E_CANCELLED) {
        it->cancelled = 1;
    } else if (res->status != TW_OK) {
        if (!it->error) it->error = xprintf("turn %zu: %s", pc->turn, res->msg ? res->msg : tw_status_name(res->status));
    } else {
        const char *t = res->text;
        size_t n = res->len;
        while (n && is_ws(*t)) { t++; n--; }
        while (n && is_ws(t[n - 1])) n--;
        pc->out = malloc(n + 1);
        if (!pc->out) { fail("out of memory"); r->failed = 1; return 1; }
        memcpy(pc->out, t, n);
        pc->out[n] = 0;
        if (res->too_long) pc->flags |= FL_TOO_LONG;
        else if (!n) pc->flags |= FL_EMPTY;
        if (res->stop_reason == TW_STOP_MAX_TOKENS || res->stop_reason == TW_STOP_CONTEXT_FULL) pc->flags |= FL_MAX_TOKENS;
    }
    if (it->pending > 0 || (it == r->cur && it->issued < it->n_pieces && !it->error && !it->cancelled)) return 0;
    return item_done(r, it);
}

static void job_tick(void *ud, const gb_stats *st) {
    run *r = ud;
    r->st = *st;
    progress(r, 0);
}

/* ============================================================================================ */
/* The header of a run: what must agree for a journal to be continued                          */

static json_t *run_header(const run *r, const lang_run *lr) {
    char *dir = realpath(tw_model_dir(r->m), NULL);
    char hash[24];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)r->ds.hash);
    json_t *h = json_object();
    json_object_set_new(h, "tower_translate", json_integer(1));
    json_object_set_new(h, "source", json_string(r->ds.path));
    json_object_set_new(h, "source_hash", json_string(hash));
    json_object_set_new(h, "source_items", json_integer((json_int_t)r->ds.n));
    json_object_set_new(h, "format", json_string(r->rules.fmt == FMT_LLAVA ? "llava" : "text"));
    if (r->rules.fmt == FMT_TEXT) json_object_set_new(h, "text_field", json_string(r->rules.text_field));
    json_object_set_new(h, "from", json_string(r->from->code));
    json_object_set_new(h, "to", json_string(lr->to->code));
    json_object_set_new(h, "model", json_string(dir ? dir : tw_model_dir(r->m)));
    free(dir);
    json_object_set_new(h, "system", g.system ? json_string(g.system) : json_null());
    tw_gen_params gp = gen_params(1024);
    json_object_set_new(h, "max_new_tokens", json_integer(gp.max_new_tokens));
    json_t *sp = json_object();
    json_object_set_new(sp, "temperature", json_real(g.sp.temperature));
    json_object_set_new(sp, "top_k", json_integer(g.sp.top_k));
    json_object_set_new(sp, "top_p", json_real(g.sp.top_p));
    json_object_set_new(sp, "min_p", json_real(g.sp.min_p));
    json_object_set_new(sp, "repetition_penalty", json_real(g.sp.repetition_penalty));
    json_object_set_new(sp, "presence_penalty", json_real(g.sp.presence_penalty));
    json_object_set_new(sp, "frequency_penalty", json_real(g.sp.frequency_penalty));
    json_object_set_new(sp, "penalty_last_n", json_integer(g.sp.penalty_last_n));
    json_object_set_new(sp, "seed", json_integer((json_int_t)g.sp.seed));
    json_object_set_new(h, "sampling", sp);
    json_t *stops = json_array();
    for (size_t i = 0; i < g.n_stops; i++) json_array_append_new(stops, json_string(g.stops[i]));
    json_object_set_new(h, "stop", stops);
    json_object_set_new(h, "ignore_eos", json_boolean(g.ignore_eos));
    json_object_set_new(h, "min_score", r->rules.min_score_set ? json_real(r->rules.min_score) : json_null());
    json_object_set_new(h, "score_field", r->rules.min_score_set ? json_string(r->rules.score_field) : json_null());
    return h;
}

/* ============================================================================================ */
/* Checking the whole file first                                                                */

/* Every item checked before the model is loaded: bad data is reported with its line, and stops
** the run (--on-error stop) or is skipped (--on-error skip). */
static int check_items(run *r) {
    r->state = calloc(r->ds.n ? r->ds.n : 1, 1);
    if (!r->state) return fail("out of memory");
    for (size_t i = 0; i < r->ds.n; i++) {
        char err[1024];
        json_t *it = dataset_item(&r->ds, i, err, sizeof err);
        int below = 0;
        if (it && !plan_item(&r->rules, it, r->ds.items[i].line, NULL, NULL, NULL, &below, err, sizeof err)) {
            r->state[i] = below ? ST_BELOW : ST_OK;
            if (below) r->n_below++;
            else r->n_ok++;
        } else {
            r->state[i] = ST_BAD;
            r->n_bad++;
            if (!g.on_error_skip) {
                json_decref(it);
                return fail("%s (--on-error skip goes on without such items)", err);
            }
            warn_item(r, err);
        }
        json_decref(it);
    }
    return 0;
}

/* The format: --text-field says text; otherwise the first item that is an object decides
** (LLaVA when it has "conversations", else text in "text"). */
static void detect_format(run *r) {
    r->rules.fmt = FMT_LLAVA;
    r->rules.text_field = g.text_field ? g.text_field : "text";
    if (g.text_field) { r->rules.fmt = FMT_TEXT; return; }
    for (size_t i = 0; i < r->ds.n; i++) {
        char err[16];
        json_t *it = dataset_item(&r->ds, i, err, sizeof err);
        if (!it) continue;
        r->rules.fmt = json_object_get(it, "conversations") ? FMT_LLAVA : FMT_TEXT;
        json_decref(it);
        return;
    }
}

/* ============================================================================================ */
/* Filtering only: --min-score / --drop-flagged without --to                                    */

static int filter_only(run *r) {
    size_t kept = 0, n_flagged = 0;
    item_list L = { calloc(r->ds.n ? r->ds.n : 1, sizeof(json_t *)), r->ds.n };
    if (!L.items) return fail("out of memory");
    int rc = 0;
    for (size_t i = 0; i < r->ds.n && !rc; i++) {
        char err[1024];
        json_t *it = dataset_item(&r->ds, i, err, sizeof err);
        int below = 0;
        if (it && r->rules.min_score_set) {
            json_t *sc = json_object_get(it, r->rules.score_field);
            if (!sc) snprintf(err, sizeof err, "%s:%zu: no field \"%s\" (--min-score)", r->ds.path, r->ds.items[i].line, r->rules.score_field);
            else if (!json_is_number(sc)) snprintf(err, sizeof err, "%s:%zu: \"%s\" is not a number", r->ds.path, r->ds.items[i].line, r->rules.score_field);
            else below = json_number_value(sc) < r->rules.min_score;
            if (!sc || !json_is_number(sc)) { json_decref(it); it = NULL; }
        }
        if (!it) {
            r->n_bad++;
            if (!g.on_error_skip) rc = fail("%s (--on-error skip goes on without such items)", err);
            else warn_item(r, err);
            continue;
        }
        if (below) { r->n_below++; json_decref(it); continue; }
        n_flagged += json_array_size(json_object_get(it, "translation_flags")) > 0;
        L.items[i] = it;
    }
    size_t dropped = 0;
    if (!rc && g.out) {
        rc = write_items(g.out, r->ds.array, &L, g.drop_flagged, &kept, &dropped);
    } else if (!rc) {
        if (r->ds.array) fputs("[\n", stdout);
        for (size_t i = 0; i < L.n; i++) {
            if (!L.items[i]) continue;
            if (g.drop_flagged && json_array_size(json_object_get(L.items[i], "translation_flags"))) { dropped++; continue; }
            char *s = dump_item(L.items[i]);
            printf(r->ds.array ? "%s%s" : "%s%s\n", r->ds.array && kept ? ",\n" : "", s ? s : "{}");
            free(s);
            kept++;
        }
        if (r->ds.array) fputs(kept ? "\n]\n" : "]\n", stdout);
        if (fflush(stdout) != 0) rc = fail("cannot write the output: %s", strerror(errno));
    }
    for (size_t i = 0; i < L.n; i++) json_decref(L.items[i]);
    free(L.items);
    if (rc) return rc;
    fprintf(stderr, "%s: kept %zu of %zu items", r->ds.path, kept, r->ds.n);
    if (r->rules.min_score_set) fprintf(stderr, "; %zu below %s %g", r->n_below, r->rules.score_field, r->rules.min_score);
    if (g.drop_flagged) fprintf(stderr, "; %zu flagged dropped", dropped);
    if (r->n_bad) fprintf(stderr, "; %zu skipped (bad data)", r->n_bad);
    fprintf(stderr, "%s%s\n", g.out ? "; wrote " : "", g.out ? g.out : "");
    return 0;
}

/* ============================================================================================ */
/* Summary                                                                                      */

static void summary(run *r, int stopped, double secs) {
    progress_clear(&r->bar);
    char d[32];
    format_duration(d, sizeof d, secs);
    fprintf(stderr, "%s: %zu items (%s), %zu to translate", r->ds.path, r->ds.n,
            r->rules.fmt == FMT_LLAVA ? "LLaVA conversations" : "text", r->n_ok);
    if (r->n_bad) fprintf(stderr, ", %zu skipped (bad data)", r->n_bad);
    if (r->n_below) fprintf(stderr, ", %zu below %s %g", r->n_below, r->rules.score_field, r->rules.min_score);
    fprintf(stderr, "; from %s, batch %d, %s\n", r->from->code, g.n_batch, d);
    fprintf(stderr, "  %-8s %7s %7s %7s %7s %8s %8s  %s\n", "to", "items", "new", "flagged", "failed", "time", "items/s", "output");
    for (size_t i = 0; i < r->n_langs; i++) {
        lang_run *lr = &r->langs[i];
        size_t have = lr->n_resumed + lr->n_new;
        double t = lr->t1 > lr->t0 ? (lr->t1 - lr->t0) / 1e3 : 0;
        format_duration(d, sizeof d, t);
        char ips[32] = "-";
        if (t > 0 && lr->n_new) snprintf(ips, sizeof ips, "%.2f", lr->n_new / t);
        else snprintf(d, sizeof d, "-");
        const char *what = lr->finished_before ? "already written: " : lr->written ? "" : "unfinished: ";
        fprintf(stderr, "  %-8s %7zu %7zu %7zu %7zu %8s %8s  %s%s\n", lr->to->code, have, lr->n_new, lr->n_flagged,
                lr->n_failed, d, ips, what, lr->written || lr->finished_before ? lr->path : lr->jpath);
        if (lr->n_flagged && !lr->finished_before) {
            fprintf(stderr, "  %-8s flags:", "");
            for (size_t f = 0; f < N_FLAGS; f++) fprintf(stderr, " %s %zu%s", k_flag_names[f], lr->flag_count[f], f + 1 < N_FLAGS ? "," : "");
            if (lr->n_dropped) fprintf(stderr, "; %zu dropped (--drop-flagged)", lr->n_dropped);
            fputc('\n', stderr);
        }
    }
    const gb_stats *st = &r->st;
    fprintf(stderr, "  tokens: prompt %llu (+%llu reused), generated %llu, %.0f tok/s; %zu turns, %zu pieces\n",
            (unsigned long long)st->prompt_tokens, (unsigned long long)st->reused_tokens,
            (unsigned long long)st->gen_tokens, secs > 0 ? st->gen_tokens / secs : 0.0, r->n_turns, r->n_pieces);
    if (g.verbose)
        fprintf(stderr, "  [%llu batched steps, %.1f rows each, %.0f ms in tw_seq_eval_batch]\n", (unsigned long long)st->steps,
                st->steps ? (double)st->items / st->steps : 0.0, st->eval_ms);
    if (stopped) fprintf(stderr, "  stopped: run again with --resume to continue\n");
}

/* ============================================================================================ */
/* Entry                                                                                        */

/* Splits --to into languages (comma-separated); prints the error and returns 0 when one is wrong. */
static size_t parse_targets(const language *from, const language ***out) {
    char *list = xstrdup(g.to);
    size_t n = 0, cap = 0;
    const language **v = NULL;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (is_ws(*tok)) tok++;
        for (char *e = tok + strlen(tok); e > tok && is_ws(e[-1]);) *--e = 0;
        if (!*tok) continue;
        const language *l = language_arg("--to", tok);
        if (!l) { free(v); free(list); return 0; }
        if (l == from) { fail("--to %s: that is the source language (--from)", tok); free(v); free(list); return 0; }
        for (size_t i = 0; i < n; i++)
            if (v[i] == l) usage_error("--to names %s twice", l->code);
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            const language **nv = realloc(v, cap * sizeof *nv);
            if (!nv) { free(v); free(list); fail("out of memory"); return 0; }
            v = nv;
        }
        v[n++] = l;
    }
    free(list);
    if (!n) usage_error("--to: no language given");
    *out = v;
    return n;
}

int translate_dataset(void) {
    run r = { 0 };
    progress_start(&r.bar);
    r.rules.path = g.dataset;
    r.rules.min_score_set = g.min_score_set;
    r.rules.min_score = g.min_score;
    r.rules.score_field = g.score_field ? g.score_field : "score";
    if (!g.n_batch) g.n_batch = 8;
    if (g.score_field && !g.min_score_set) usage_error("--score-field names the column --min-score reads: give --min-score X");
    int filter = !g.to;
    if (filter && !g.min_score_set && !g.drop_flagged)
        usage_error("missing --to LANG (or, to filter a translated dataset, --min-score X / --drop-flagged)");
    if (filter && (g.out_dir || g.resume || g.force || g.limit || g.text_field))
        usage_error("filtering (no --to) writes -o FILE or stdout: --out-dir, --resume, --force, --limit and --text-field need --to");
    const language *from = language_arg("--from", g.from ? g.from : "en");
    if (!from) return 1;
    r.from = from;
    const language **targets = NULL;
    size_t n_targets = 0;
    if (!filter) {
        if (!(n_targets = parse_targets(from, &targets))) return 1;
        if (g.out && n_targets > 1) usage_error("-o FILE names one output: with several --to languages use --out-dir DIR");
        if (g.out && g.out_dir) usage_error("give -o FILE or --out-dir DIR, not both");
    }
    if (dataset_open(g.dataset, &r.ds)) { free(targets); dataset_close(&r.ds); return 1; }
    if (filter) {
        int rc = filter_only(&r);
        dataset_close(&r.ds);
        return rc;
    }
    detect_format(&r);
    int rc = check_items(&r);
    if (!rc && g.out_dir) {
        struct stat st;
        if (stat(g.out_dir, &st) != 0 && mkdir(g.out_dir, 0777) != 0) rc = fail("cannot create %s: %s", g.out_dir, strerror(errno));
        else if (stat(g.out_dir, &st) == 0 && !S_ISDIR(st.st_mode)) rc = fail("--out-dir %s: not a directory", g.out_dir);
    }
    tw_model *m = NULL;
    if (!rc) rc = load_model(&m);
    r.m = m;
    r.langs = calloc(n_targets, sizeof *r.langs);
    if (!rc && !r.langs) rc = fail("out of memory");
    for (size_t i = 0; !rc && i < n_targets; i++) {
        lang_run *lr = &r.langs[i];
        r.n_langs++;
        lr->to = targets[i];
        lr->path = g.out ? xstrdup(g.out) : output_path(&r.ds, from, lr->to);
        lr->jpath = lr->path ? xprintf("%s.partial", lr->path) : NULL;
        lr->mpath = lr->path ? xprintf("%s.meta.json", lr->path) : NULL;
        lr->done = calloc(r.ds.n ? r.ds.n : 1, 1);
        lr->header = run_header(&r, lr);
        if (!lr->path || !lr->jpath || !lr->mpath || !lr->done || !lr->header) { rc = fail("out of memory"); break; }
        for (size_t k = 0; k < i; k++)
            if (!strcmp(r.langs[k].path, lr->path)) rc = fail("two languages would write %s", lr->path);
        if (!rc) rc = lang_prepare(lr, &r.ds);
        if (!rc && !lr->finished_before)
            for (size_t k = 0; k < r.ds.n; k++) lr->n_todo += r.state[k] == ST_OK && !lr->done[k];
        r.total += lr->finished_before ? 0 : lr->n_todo;
    }
    if (!rc && g.limit && r.total > (size_t)g.limit) r.total = (size_t)g.limit;

    int stopped = 0;
    double t0 = now_ms();
    if (!rc) {
        struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term;
        sigemptyset(&sa.sa_mask);
        g_stop = 0;
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        progress_start(&r.bar);
        progress(&r, 1);
        gb_params gp = {
            .n_seqs = g.n_batch, .n_ctx = g.n_ctx, .kv_type = g.kv_type, .gen = gen_params(1024),
            .next = job_next, .done = job_done, .tick = job_tick, .ud = &r, .stop = &g_stop,
        };
        int grc = gen_batch_run(m, &gp, &r.st);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        if (r.cur) { open_item *it = r.cur; r.cur = NULL; it->cancelled = 1; item_done(&r, it); }
        if (grc == GB_FAILED || r.failed) rc = 1;
        /* a language is finished when every item is in its journal (or failed, skipped, this run) */
        for (size_t i = 0; i < r.n_langs; i++) {
            lang_run *lr = &r.langs[i];
            if (lr->finished_before) continue;
            if (lr->n_new + lr->n_failed < lr->n_todo) { stopped = 1; continue; }
            json_t *sum = json_object();
            json_object_set_new(sum, "source_items", json_integer((json_int_t)r.ds.n));
            json_object_set_new(sum, "skipped_bad_data", json_integer((json_int_t)r.n_bad));
            json_object_set_new(sum, "below_min_score", json_integer((json_int_t)r.n_below));
            json_object_set_new(sum, "failed", json_integer((json_int_t)lr->n_failed));
            if (lang_finish(lr, &r.ds, sum)) rc = 1;
            json_decref(sum);
        }
        summary(&r, stopped && !r.failed, (now_ms() - t0) / 1e3);
    }
    for (size_t i = 0; i < r.n_langs; i++) {
        lang_run *lr = &r.langs[i];
        if (lr->jf) fclose(lr->jf);
        free(lr->path);
        free(lr->jpath);
        free(lr->mpath);
        free(lr->done);
        json_decref(lr->header);
    }
    free(r.langs);
    free(r.state);
    free(targets);
    tw_model_free(m);
    dataset_close(&r.ds);
    if (!rc && g_stop) return 128 + g_stop;   /* as a shell reports a process the signal ended */
    return rc;
}
