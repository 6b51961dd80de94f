/*
** hub.c — resolving a model name to a local directory: an existing directory as is, or a
** Hugging Face repo id "org/name[@revision]" found in (or downloaded into) the Hugging Face cache.
**
** The cache layout is exactly the one huggingface_hub uses, so files downloaded by Python tools
** are reused and what we download is usable by them:
**
**   <cache>/models--org--name/refs/<revision>          the commit hash the revision pointed at
**   <cache>/models--org--name/snapshots/<commit>/<f>   relative symlink to ../../blobs/<etag>
**   <cache>/models--org--name/blobs/<etag>             the bytes (etag = sha256 for LFS files,
**                                                      the git blob sha1 for small files)
**   <cache>/.locks/models--org--name/<etag>.lock       flock()ed while a blob is downloaded
**
** Online, the hub's API tells the commit and the file list; each missing file is asked for with
** HEAD (to learn its etag and size without following the redirect to the LFS storage host) and
** then downloaded into blobs/<etag>.incomplete, resuming with Range requests, verified (size, and
** sha256 for LFS files) and renamed into place. A complete cached snapshot is used without any
** request, so a model that was downloaded once loads with the network off.
**
** Without libcurl (TW_HAVE_CURL undefined) only the cache is available.
*/
#include "hub.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef TW_HAVE_CURL
#include <curl/curl.h>
#include <pthread.h>
#endif

#define HUB_DEFAULT_ENDPOINT "https://huggingface.co"


/* ============================== SHA-256 (FIPS 180-4) ====================================== */

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror32(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) + ((e & f) ^ (~e & g)) + sha256_k[i] + w[i];
        uint32_t t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

void tw_sha256_init(tw_sha256 *s) {
    static const uint32_t h0[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    memcpy(s->h, h0, sizeof h0);
    s->len = 0;
    s->n = 0;
}

void tw_sha256_update(tw_sha256 *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->len += n;
    if (s->n) {                                   /* top up a partial block first */
        size_t take = TW_MIN(n, 64 - s->n);
        memcpy(s->buf + s->n, p, take);
        s->n += take; p += take; n -= take;
        if (s->n < 64) return;
        sha256_block(s->h, s->buf);
        s->n = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha256_block(s->h, p);
    memcpy(s->buf, p, n);
    s->n = n;
}

void tw_sha256_final_hex(tw_sha256 *s, char hex[65]) {
    uint64_t bits = s->len * 8;
    uint8_t pad[72] = { 0x80 };
    size_t npad = (s->n < 56 ? 56 : 120) - s->n;   /* to 8 bytes short of a block boundary */
    for (int i = 0; i < 8; i++) pad[npad + i] = (uint8_t)(bits >> (56 - 8 * i));
    uint64_t len = s->len;
    tw_sha256_update(s, pad, npad + 8);
    s->len = len;
    for (int i = 0; i < 8; i++) snprintf(hex + 8 * i, 9, "%08x", s->h[i]);
    hex[64] = 0;
}

/* Hashes the first `limit` bytes of an open file (all of it with UINT64_MAX). */
static tw_status sha256_fd(int fd, const char *path, uint64_t limit, tw_sha256 *s) {
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = tw_malloc(CHUNK);
    if (!buf) return TW_E_NOMEM;
    uint64_t off = 0;
    while (off < limit) {
        ssize_t r = pread(fd, buf, (size_t)TW_MIN((uint64_t)CHUNK, limit - off), (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            free(buf);
            return tw_err(TW_E_IO, "%s: read failed: %s", path, strerror(errno));
        }
        if (r == 0) break;
        tw_sha256_update(s, buf, (size_t)r);
        off += (uint64_t)r;
    }
    free(buf);
    return TW_OK;
}

tw_status tw_sha256_file(const char *path, char hex[65]) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tw_err(errno == ENOENT ? TW_E_NOT_FOUND : TW_E_IO, "%s: %s", path, strerror(errno));
    tw_sha256 s;
    tw_sha256_init(&s);
    tw_status st = sha256_fd(fd, path, UINT64_MAX, &s);
    close(fd);
    if (st == TW_OK) tw_sha256_final_hex(&s, hex);
    return st;
}

/* ============================== names, paths, environment ================================= */

static bool repo_part_ok(const char *s, size_t n) {
    if (n == 0 || n > 96 || s[0] == '.' || s[0] == '-') return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.') return false;
    return !(n >= 2 && memmem(s, n, "..", 2));
}

/* A revision is a branch, tag or commit; branches may contain '/' ("refs/pr/1"), which become
** subdirectories of refs/ as in huggingface_hub, so no "." or ".." segment may appear. */
static bool revision_ok(const char *r) {
    size_t n = strlen(r);
    if (n == 0 || n > 255 || r[0] == '/' || r[n - 1] == '/') return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)r[i] <= ' ' || r[i] == '\\' || r[i] == 0x7f) return false;
    for (const char *seg = r; seg; seg = strchr(seg, '/') ? strchr(seg, '/') + 1 : NULL) {
        size_t len = strcspn(seg, "/");
        if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.') || len == 0) return false;
    }
    return true;
}

static bool is_hex(const char *s, size_t n) {
    if (strlen(s) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return false;
    return true;
}

bool tw_hub_is_repo_id(const char *name) {
    if (!name || !*name) return false;
    struct stat st;
    if (stat(name, &st) == 0) return false;
    const char *slash = strchr(name, '/');
    if (!slash) return false;
    const char *at = strchr(slash + 1, '@');
    size_t name_len = at ? (size_t)(at - slash - 1) : strlen(slash + 1);
    if (!repo_part_ok(name, (size_t)(slash - name)) || !repo_part_ok(slash + 1, name_len)) return false;
    return !at || revision_ok(at + 1);
}

static bool env_truthy(const char *name) {
    const char *v = getenv(name);
    if (!v) return false;
    return !strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on");
}

static const char *env_nonempty(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface (huggingface_hub's order). */
static char *hf_home(void) {
    const char *v;
    if ((v = env_nonempty("HF_HOME"))) return tw_strdup(v);
    if ((v = env_nonempty("XDG_CACHE_HOME"))) return tw_asprintf("%s/huggingface", v);
    if ((v = env_nonempty("HOME"))) return tw_asprintf("%s/.cache/huggingface", v);
    return NULL;
}

tw_status tw_hub_cache_dir(const tw_hub_opts *opts, char **dir) {
    const char *v;
    *dir = NULL;
    if (opts && opts->cache_dir && *opts->cache_dir) *dir = tw_strdup(opts->cache_dir);
    else if ((v = env_nonempty("HF_HUB_CACHE")) || (v = env_nonempty("HUGGINGFACE_HUB_CACHE"))) *dir = tw_strdup(v);
    else {
        char *home = hf_home();
        if (!home)
            return tw_err(TW_E_ARG, "cannot find the Hugging Face cache: set HF_HUB_CACHE or HF_HOME (HOME is not set)");
        *dir = tw_asprintf("%s/hub", home);
        free(home);
    }
    return *dir ? TW_OK : TW_E_NOMEM;
}

/* A file name from the repo (or from an index's weight_map) must stay inside the snapshot. */
static bool repo_file_ok(const char *f) {
    return f && *f && f[0] != '/' && revision_ok(f);
}

/* Everything one resolution needs; freed by req_free. */
typedef struct hub_req {
    const tw_hub_opts *opts;
    char  *repo;        /* "org/name"                                  */
    char  *rev;         /* "main" unless given                         */
    char  *cache;       /* cache root                                  */
    char  *repo_dir;    /* <cache>/models--org--name                   */
    char  *folder;      /* "models--org--name"                         */
} hub_req;

static void req_free(hub_req *r) {
    free(r->repo); free(r->rev); free(r->cache); free(r->repo_dir); free(r->folder);
}

/* Reads refs/<rev>: the commit a branch or tag pointed at when it was last resolved. */
static char *read_ref(const hub_req *r) {
    char *path = tw_asprintf("%s/refs/%s", r->repo_dir, r->rev);
    if (!path) return NULL;
    char *data = NULL;
    size_t len = 0;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || tw_read_file(path, &data, &len) != TW_OK) {
        free(path);
        return NULL;
    }
    free(path);
    while (len && isspace((unsigned char)data[len - 1])) data[--len] = 0;
    if (!is_hex(data, 40)) {
        free(data);
        return NULL;
    }
    return data;
}

/* ============================== the cache ================================================= */

/* Checks that snapshot `snap` holds config.json, tokenizer.json and the weights (with every shard
** of an index). Returns true when complete; otherwise *missing names the first missing file
** (malloc'ed). A dangling symlink counts as missing. */
static bool snapshot_complete(const char *snap, char **missing) {
    *missing = NULL;
    const char *required[] = { "config.json", "tokenizer.json" };
    for (size_t i = 0; i < 2; i++) {
        char *p = tw_path_join(snap, required[i]);
        bool ok = p && tw_file_exists(p);
        free(p);
        if (!ok) {
            *missing = tw_strdup(required[i]);
            return false;
        }
    }
    char *single = tw_path_join(snap, "model.safetensors");
    bool have_single = single && tw_file_exists(single);
    free(single);
    if (have_single) return true;
    char *index = tw_path_join(snap, "model.safetensors.index.json");
    json_t *j = NULL;
    if (!index || !tw_file_exists(index) || tw_json_load(index, &j) != TW_OK) {
        free(index);
        *missing = tw_strdup("model.safetensors");
        return false;
    }
    free(index);
    bool ok = true;
    const json_t *map = json_object_get(j, "weight_map");
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)map, key, val) {
        const char *shard = json_string_value(val);
        char *p = shard && repo_file_ok(shard) ? tw_path_join(snap, shard) : NULL;
        bool have = p && tw_file_exists(p);
        free(p);
        if (!have) {
            *missing = tw_strdup(shard ? shard : "model.safetensors.index.json");
            ok = false;
            break;
        }
    }
    if (ok && !json_is_object(map)) {
        *missing = tw_strdup("model.safetensors.index.json (no weight_map)");
        ok = false;
    }
    json_decref(j);
    return ok;
}

/* Looks for a complete snapshot of r->rev in the cache. On success *snap is its directory.
** Otherwise *why says what is missing (malloc'ed, a phrase for an error message). */
static bool cache_lookup(const hub_req *r, char **snap, char **why) {
    *snap = NULL;
    *why = NULL;
    char *commit = read_ref(r);
    if (!commit && is_hex(r->rev, 40)) commit = tw_strdup(r->rev);   /* a commit needs no ref */
    if (!commit) {
        *why = tw_asprintf("the cache has no copy of it (%s/refs/%s does not exist)", r->repo_dir, r->rev);
        return false;
    }
    char *dir = tw_asprintf("%s/snapshots/%s", r->repo_dir, commit);
    free(commit);
    char *missing = NULL;
    if (dir && tw_dir_exists(dir) && snapshot_complete(dir, &missing)) {
        *snap = dir;
        return true;
    }
    if (dir && !tw_dir_exists(dir))
        *why = tw_asprintf("the cache has no copy of it (%s does not exist)", dir);
    else
        *why = tw_asprintf("the cache has no copy of %s (looked in %s)", missing ? missing : "?", dir ? dir : "?");
    free(missing);
    free(dir);
    return false;
}

#ifdef TW_HAVE_CURL
/* The configs a model may come with; whichever the repo has is downloaded. */
static const char *const hub_optional_files[] = {
    "tokenizer_config.json", "generation_config.json", "chat_template.jinja",
    "special_tokens_map.json", "preprocessor_config.json", "processor_config.json",
    "video_preprocessor_config.json",
};
#define HUB_N_OPTIONAL (sizeof hub_optional_files / sizeof hub_optional_files[0])

/* ============================== HTTP (libcurl) ============================================ */

typedef struct hub_dl hub_dl;

/* One HTTP response: the headers we care about and, for small answers, the body. */
typedef struct hub_resp {
    long     status;
    char    *etag, *linked_etag, *location, *commit, *error_code, *error_message, *content_range;
    int64_t  linked_size, length;        /* -1 when absent */
    tw_buf   body;                       /* JSON answers, error pages (capped)  */
    hub_dl  *dl;                         /* when the body goes to a file          */
    char     curl_err[CURL_ERROR_SIZE];
    CURL    *curl;                       /* to ask the status from the body callback */
    CURLcode cc;                         /* the transfer's result              */
} hub_resp;

/* A download into blobs/<etag>.incomplete. */
struct hub_dl {
    int        fd;
    const char *path;
    const char *name;                    /* file name for progress              */
    tw_sha256  sha;
    uint64_t   done, total;              /* total 0: unknown                    */
    bool       started;                  /* first body byte of this response seen */
    bool       failed;                   /* write error or bad Content-Range    */
    char       why[256];
    const tw_hub_opts *opts;
    double     last_progress_ms;
};

typedef struct hub_ctx {
    CURL       *curl;
    hub_req    *req;
    const char *endpoint;
    char       *token;                   /* NULL: anonymous */
} hub_ctx;

static void resp_reset(hub_resp *r) {
    free(r->etag); free(r->linked_etag); free(r->location); free(r->commit);
    free(r->error_code); free(r->error_message); free(r->content_range);
    tw_buf_free(&r->body);
    hub_dl *dl = r->dl;
    CURL *curl = r->curl;
    memset(r, 0, sizeof *r);
    r->dl = dl;
    r->curl = curl;
    r->linked_size = r->length = -1;
}

static void resp_free(hub_resp *r) {
    r->dl = NULL;
    resp_reset(r);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    hub_resp *r = ud;
    size_t len = size * n;
    const char *colon = memchr(p, ':', len);
    if (!colon) return len;
    size_t klen = (size_t)(colon - p);
    const char *v = colon + 1, *end = p + len;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
    struct { const char *name; char **dst; } fields[] = {
        { "etag", &r->etag }, { "x-linked-etag", &r->linked_etag }, { "location", &r->location },
        { "x-repo-commit", &r->commit }, { "x-error-code", &r->error_code },
        { "x-error-message", &r->error_message }, { "content-range", &r->content_range },
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (strlen(fields[i].name) == klen && !strncasecmp(p, fields[i].name, klen)) {
            free(*fields[i].dst);
            *fields[i].dst = tw_strndup(v, (size_t)(end - v));
        }
    }
    if (klen == 13 && !strncasecmp(p, "x-linked-size", 13)) r->linked_size = strtoll(v, NULL, 10);
    if (klen == 14 && !strncasecmp(p, "content-length", 14)) r->length = strtoll(v, NULL, 10);
    return len;
}

static void dl_fail(hub_dl *dl, const char *fmt, const char *arg) {
    dl->failed = true;
    snprintf(dl->why, sizeof dl->why, fmt, arg);
}


/* mkdir -p */
static tw_status make_dirs(const char *path) {
    char *p = tw_strdup(path);
    if (!p) return TW_E_NOMEM;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                tw_status st = tw_err(TW_E_IO, "%s: cannot create directory: %s", p, strerror(errno));
                free(p);
                return st;
            }
            *s = c;
            if (!c) break;
        }
    }
    free(p);
    return TW_OK;
}

static tw_status make_parent_dirs(const char *path) {
    char *p = tw_strdup(path);
    if (!p) return TW_E_NOMEM;
    char *slash = strrchr(p, '/');
    tw_status st = TW_OK;
    if (slash && slash != p) {
        *slash = 0;
        st = make_dirs(p);
    }
    free(p);
    return st;
}

/* Body bytes: a successful download goes to the .incomplete file (and the hash); anything else
** (JSON answers, error pages, redirect bodies) is kept in memory, capped so that a misbehaving
** server cannot exhaust it. Returning less than len makes curl abort the transfer. */
static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    hub_resp *r = ud;
    size_t len = size * n;
    long code = 0;
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &code);
    hub_dl *dl = r->dl;
    if (dl && (code == 200 || code == 206)) {
        if (!dl->started) {
            dl->started = true;
            if (code == 200 && dl->done > 0) {
                /* The server ignored our Range header and sends everything: start over. */
                if (ftruncate(dl->fd, 0) != 0) {
                    dl_fail(dl, "cannot truncate: %s", strerror(errno));
                    return 0;
                }
                dl->done = 0;
                tw_sha256_init(&dl->sha);
            } else if (code == 206) {
                unsigned long long from = 0;
                if (!r->content_range || sscanf(r->content_range, "bytes %llu-", &from) != 1 || from != dl->done) {
                    dl_fail(dl, "the server answered a range request with \"%s\", not the range asked for",
                            r->content_range ? r->content_range : "no Content-Range");
                    return 0;
                }
            }
        }
        if (dl->total && dl->done + len > dl->total) {
            dl_fail(dl, "the server sent more bytes than the announced size%s", "");
            return 0;
        }
        for (size_t off = 0; off < len;) {
            ssize_t w = pwrite(dl->fd, p + off, len - off, (off_t)(dl->done + off));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                dl_fail(dl, "write failed: %s", strerror(errno));
                return 0;
            }
            off += (size_t)w;
        }
        tw_sha256_update(&dl->sha, p, len);
        dl->done += len;
        /* At most ~20 calls a second, and always the last one: the CLI redraws a bar on each. */
        double now = tw_time_ms();
        if (dl->opts->progress && (now - dl->last_progress_ms >= 50 || dl->done == dl->total)) {
            dl->last_progress_ms = now;
            dl->opts->progress(dl->opts->progress_user_data, dl->name, dl->done, dl->total);
        }
        return len;
    }
    if (r->body.len + len > (dl ? (size_t)65536 : (size_t)64 << 20)) return 0;
    return tw_buf_append(&r->body, p, len) == TW_OK ? len : 0;
}

/* True when URLs a and b have the same scheme, host and port. */
static bool same_origin(const char *a, const char *b) {
    CURLU *ua = curl_url(), *ub = curl_url();
    bool same = false;
    if (ua && ub && curl_url_set(ua, CURLUPART_URL, a, 0) == CURLUE_OK &&
        curl_url_set(ub, CURLUPART_URL, b, 0) == CURLUE_OK) {
        same = true;
        CURLUPart parts[] = { CURLUPART_SCHEME, CURLUPART_HOST, CURLUPART_PORT };
        for (int i = 0; i < 3 && same; i++) {
            char *pa = NULL, *pb = NULL;
            curl_url_get(ua, parts[i], &pa, CURLU_DEFAULT_PORT);
            curl_url_get(ub, parts[i], &pb, CURLU_DEFAULT_PORT);
            same = pa && pb && !strcasecmp(pa, pb);
            curl_free(pa);
            curl_free(pb);
        }
    }
    curl_url_cleanup(ua);
    curl_url_cleanup(ub);
    return same;
}

static bool transient(const hub_resp *r, tw_status st) {
    if (st == TW_OK) return r->status >= 500 || r->status == 429;
    switch (r->cc) {
    case CURLE_COULDNT_CONNECT: case CURLE_OPERATION_TIMEDOUT: case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR: case CURLE_SEND_ERROR: case CURLE_GOT_NOTHING: case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: case CURLE_SSL_CONNECT_ERROR:
        return true;
    default:
        return false;
    }
}

static void backoff(int attempt) {   /* 0.25 s, 0.5 s, 1 s, 2 s, 2 s ... */
    long ms = 250L << TW_MIN(attempt - 1, 3);
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* One request, redirects not followed. TW_OK when an HTTP answer arrived (whatever its status);
** TW_E_NETWORK naming the URL and curl's reason otherwise. */
static tw_status hub_request(hub_ctx *c, const char *url, bool head, bool with_token, uint64_t from,
                             hub_resp *r) {
    r->curl = c->curl;
    resp_reset(r);
    if (r->dl) r->dl->started = false;
    CURL *h = c->curl;
    curl_easy_reset(h);
    struct curl_slist *hdrs = NULL;
    char *auth = NULL;
    if (with_token && c->token) {
        auth = tw_asprintf("Authorization: Bearer %s", c->token);
        if (!auth) return TW_E_NOMEM;
        hdrs = curl_slist_append(hdrs, auth);
    }
    char range[48];
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "towervision/" TW_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    /* Nothing may hang: bounded connect, and a transfer that stalls for 30 s is dropped (and
    ** resumed by the caller). Small answers also get an overall limit. */
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 30L);
    if (!r->dl || head) curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->curl_err);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    if (head) curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    if (from) {
        snprintf(range, sizeof range, "%llu-", (unsigned long long)from);
        curl_easy_setopt(h, CURLOPT_RANGE, range);
    }
    if (hdrs) curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    r->curl_err[0] = 0;
    r->cc = curl_easy_perform(h);
    curl_slist_free_all(hdrs);
    free(auth);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->cc == CURLE_OK) return TW_OK;
    if (r->dl && r->dl->failed) return tw_err(TW_E_IO, "%s: %s: %s", r->dl->path, url, r->dl->why);
    return tw_err(TW_E_NETWORK, "%s: %s%s%s%s", url, curl_easy_strerror(r->cc), r->curl_err[0] ? " (" : "",
                  r->curl_err, r->curl_err[0] ? ")" : "");
}

/* GET or HEAD following redirects by hand, so that the token goes only to the endpoint's own
** origin: the hub redirects LFS files to a storage host that must not see it. A HEAD stops at a
** redirect carrying X-Linked-Etag, whose headers are what we wanted. */
static tw_status hub_fetch(hub_ctx *c, const char *url0, bool head, uint64_t from, hub_resp *r) {
    char *url = tw_strdup(url0);
    if (!url) return TW_E_NOMEM;
    tw_status st;
    for (int hops = 0;; hops++) {
        st = hub_request(c, url, head, same_origin(url, c->endpoint), from, r);
        if (st != TW_OK) break;
        long s = r->status;
        bool redirect = s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
        if (!redirect || (head && r->linked_etag)) break;
        char *next = NULL;
        curl_easy_getinfo(c->curl, CURLINFO_REDIRECT_URL, &next);
        if (!next || hops >= 10) {
            st = tw_err(TW_E_NETWORK, "%s: %s", url, next ? "too many redirects" : "redirect without a Location");
            break;
        }
        char *copy = tw_strdup(next);
        free(url);
        if (!(url = copy)) return TW_E_NOMEM;
    }
    free(url);
    return st;
}

/* hub_fetch for small requests, retried a few times on transient failures. */
static tw_status hub_fetch_retry(hub_ctx *c, const char *url, bool head, hub_resp *r) {
    tw_status st = TW_OK;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (attempt) backoff(attempt);
        st = hub_fetch(c, url, head, 0, r);
        if (!transient(r, st)) break;
    }
    return st;
}

/* Turns an HTTP error status into a status and a message; `what` names what was asked for. */
static tw_status http_error(hub_ctx *c, const hub_resp *r, const char *what) {
    const char *hub_msg = r->error_message ? r->error_message : "";
    const char *sep = *hub_msg ? ": " : "";
    if (r->status == 401 || r->status == 403) {
        if (c->token)
            return tw_err(TW_E_AUTH, "%s: the hub rejected the token (HTTP %ld%s%s): check HF_TOKEN, and that "
                          "this account has access to %s (gated models need their terms accepted)",
                          what, r->status, sep, hub_msg, c->req->repo);
        return tw_err(TW_E_AUTH, "%s requires authentication (HTTP %ld%s%s): set HF_TOKEN to a hub access "
                      "token (or store it in $HF_HOME/token); also check that the repository name is right",
                      what, r->status, sep, hub_msg);
    }
    if (r->status == 404)
        return tw_err(TW_E_NOT_FOUND, "%s: not found at %s (HTTP 404%s%s)", what, c->endpoint, sep, hub_msg);
    return tw_err(TW_E_NETWORK, "%s: HTTP %ld from %s%s%s", what, r->status, c->endpoint, sep, hub_msg);
}

/* Appends s percent-encoded; '/' is kept when keep_slash (file paths), escaped otherwise
** (a revision such as "refs/pr/1" is one path segment). */
static tw_status url_escape(tw_buf *b, const char *s, bool keep_slash) {
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~' || (keep_slash && ch == '/'))
            TW_TRY(tw_buf_putc(b, (char)ch));
        else
            TW_TRY(tw_buf_appendf(b, "%%%02X", ch));
    }
    return TW_OK;
}

/* The revision's commit and the repo's file list, from {endpoint}/api/models/{repo}/revision/{rev}. */
static tw_status api_info(hub_ctx *c, char **commit, json_t **info) {
    *commit = NULL;
    *info = NULL;
    tw_buf u = { 0 };
    tw_status st = tw_buf_appendf(&u, "%s/api/models/%s/revision/", c->endpoint, c->req->repo);
    if (st == TW_OK) st = url_escape(&u, c->req->rev, false);
    char *url = tw_buf_detach(&u, NULL);
    if (st != TW_OK || !url) {
        free(url);
        return st != TW_OK ? st : TW_E_NOMEM;
    }
    hub_resp r = { 0 };
    r.linked_size = r.length = -1;
    st = hub_fetch_retry(c, url, false, &r);
    if (st == TW_E_NETWORK) tw_err_prefix(st, "%s@%s: cannot reach the hub", c->req->repo, c->req->rev);
    if (st == TW_OK && r.status != 200) {
        char what[512];
        if (r.status == 404 && r.error_code && !strcmp(r.error_code, "RevisionNotFound"))
            snprintf(what, sizeof what, "%s: revision \"%s\"", c->req->repo, c->req->rev);
        else if (r.status == 404)
            snprintf(what, sizeof what, "repository %s (or its revision \"%s\")", c->req->repo, c->req->rev);
        else
            snprintf(what, sizeof what, "repository %s", c->req->repo);
        st = http_error(c, &r, what);
    } else if (st == TW_OK) {
        json_error_t je;
        json_t *j = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, &je);
        const char *sha = json_string_value(json_object_get(j, "sha"));
        if (!j || !sha || !is_hex(sha, 40) || !json_is_array(json_object_get(j, "siblings"))) {
            st = tw_err(TW_E_NETWORK, "%s: unexpected answer (expected JSON with \"sha\" and \"siblings\")", url);
            json_decref(j);
        } else {
            *commit = tw_strdup(sha);
            *info = j;
            for (char *p = *commit; p && *p; p++) *p = (char)tolower((unsigned char)*p);
            if (!*commit) {
                json_decref(j);
                *info = NULL;
                st = TW_E_NOMEM;
            }
        }
    }
    resp_free(&r);
    free(url);
    return st;
}

static bool has_sibling(const json_t *info, const char *file) {
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(info, "siblings"), i, s) {
        const char *f = json_string_value(json_object_get(s, "rfilename"));
        if (f && !strcmp(f, file)) return true;
    }
    return false;
}

/* Waits for the blob's lock. Another process (Python or another of ours) may be downloading the
** same blob; we wait while its .incomplete file grows and give up when it has not grown for two
** minutes. (The kernel releases the lock of a process that dies, so a crash cannot block us.) */
static tw_status lock_wait(int lfd, const char *lock_path, const char *incomplete) {
    long long last = -2;
    double since = tw_time_ms();
    for (;;) {
        if (flock(lfd, LOCK_EX | LOCK_NB) == 0) return TW_OK;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return tw_err(TW_E_IO, "%s: cannot lock: %s", lock_path, strerror(errno));
        struct stat st;
        long long size = stat(incomplete, &st) == 0 ? (long long)st.st_size : -1;
        double now = tw_time_ms();
        if (size != last) {
            last = size;
            since = now;
        } else if (now - since > 120000) {
            return tw_err(TW_E_NETWORK, "%s: another process holds the download lock %s and has made no progress "
                          "for two minutes", incomplete, lock_path);
        }
        struct timespec ts = { 0, 100000000L };
        nanosleep(&ts, NULL);
    }
}

/* Downloads url into blob (via blob.incomplete, resuming what an earlier attempt left), checks the
** size and, for an LFS file (64-hex etag), the sha256, and renames it into place. */
static tw_status download_blob(hub_ctx *c, const char *url, const char *file, const char *blob,
                               const char *etag, int64_t size) {
    hub_req *rq = c->req;
    char *lock_dir = tw_asprintf("%s/.locks/%s", rq->cache, rq->folder);
    char *lock_path = lock_dir ? tw_asprintf("%s/%s.lock", lock_dir, etag) : NULL;
    char *incomplete = tw_asprintf("%s.incomplete", blob);
    int lfd = -1, fd = -1;
    hub_resp r = { 0 };
    tw_status st = lock_dir && lock_path && incomplete ? TW_OK : TW_E_NOMEM;
    if (st == TW_OK) st = make_dirs(lock_dir);
    if (st == TW_OK) st = make_parent_dirs(blob);
    if (st == TW_OK && (lfd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
        st = tw_err(TW_E_IO, "%s: cannot create: %s", lock_path, strerror(errno));
    if (st == TW_OK) st = lock_wait(lfd, lock_path, incomplete);
    struct stat sb;
    if (st != TW_OK || (stat(blob, &sb) == 0 && (size < 0 || sb.st_size == size)))
        goto out;   /* failed, or someone else finished it while we waited */

    if ((fd = open(incomplete, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0 || fstat(fd, &sb) != 0) {
        st = tw_err(TW_E_IO, "%s: cannot open: %s", incomplete, strerror(errno));
        goto out;
    }
    hub_dl dl = { .fd = fd, .path = incomplete, .name = file, .opts = c->req->opts,
                  .done = (uint64_t)sb.st_size, .total = size > 0 ? (uint64_t)size : 0 };
    if (size >= 0 && dl.done > (uint64_t)size) {       /* longer than the file: not ours */
        if (ftruncate(fd, 0) != 0) {
            st = tw_err(TW_E_IO, "%s: cannot truncate: %s", incomplete, strerror(errno));
            goto out;
        }
        dl.done = 0;
    }
    /* Resuming: the bytes already there are hashed first, so the file is read only once. */
    tw_sha256_init(&dl.sha);
    if ((st = sha256_fd(fd, incomplete, dl.done, &dl.sha)) != TW_OK) goto out;
    if (dl.opts->progress) dl.opts->progress(dl.opts->progress_user_data, file, dl.done, dl.total);

    r.dl = &dl;
    r.linked_size = r.length = -1;
    const int max_attempts = 6;
    int attempt = 0;
    for (;; attempt++) {
        if (size >= 0 && dl.done == (uint64_t)size) {
            st = TW_OK;
            break;
        }
        if (attempt == max_attempts) {
            tw_err_prefix(TW_E_NETWORK, "%s: download stopped at %llu of %lld bytes after %d attempts (run again "
                          "to resume)", file, (unsigned long long)dl.done, (long long)size, attempt);
            st = TW_E_NETWORK;
            break;
        }
        if (attempt) backoff(attempt);
        dl.failed = false;
        st = hub_fetch(c, url, false, dl.done, &r);
        if (dl.failed) break;                               /* disk error, bogus range: final */
        if (st == TW_OK && (r.status == 200 || r.status == 206)) {
            if (size < 0) break;                            /* size unknown: the answer is all */
            if (dl.done != (uint64_t)size)
                tw_err(TW_E_NETWORK, "%s: the transfer ended early", url);
            continue;
        }
        if (st == TW_OK && r.status == 416) {               /* our partial file is not a prefix */
            if (ftruncate(fd, 0) != 0) {
                st = tw_err(TW_E_IO, "%s: cannot truncate: %s", incomplete, strerror(errno));
                break;
            }
            dl.done = 0;
            tw_sha256_init(&dl.sha);
            tw_err(TW_E_NETWORK, "%s: HTTP 416 (range not satisfiable)", url);
            continue;
        }
        if (st == TW_OK) {
            char what[512];
            snprintf(what, sizeof what, "%s@%s: %s", rq->repo, rq->rev, file);
            st = http_error(c, &r, what);
        }
        if (!transient(&r, st == TW_OK ? TW_E_NETWORK : st) && !(r.status >= 500 || r.status == 429)) break;
    }
    if (st != TW_OK) goto out;

    if (is_hex(etag, 64)) {
        char got[65];
        tw_sha256_final_hex(&dl.sha, got);
        if (strcasecmp(got, etag) != 0) {
            close(fd);
            fd = -1;
            unlink(incomplete);
            st = tw_err(TW_E_NETWORK, "%s@%s: %s: sha256 mismatch: expected %s, got %s (the partial download was "
                        "corrupt or the transfer was damaged; it was deleted, run again)",
                        rq->repo, rq->rev, file, etag, got);
            goto out;
        }
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        st = tw_err(TW_E_IO, "%s: cannot write: %s", incomplete, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(incomplete, blob) != 0)
        st = tw_err(TW_E_IO, "%s: cannot rename to %s: %s", incomplete, blob, strerror(errno));
out:
    if (fd >= 0) close(fd);
    if (lfd >= 0) close(lfd);   /* closing releases the flock */
    r.dl = NULL;
    resp_free(&r);
    free(lock_dir);
    free(lock_path);
    free(incomplete);
    return st;
}

/* snapshots/<commit>/<file> -> ../../blobs/<etag> (one more ../ per directory in file), created
** under a temporary name and renamed over whatever was there, as huggingface_hub does. */
static tw_status link_snapshot(const char *snap, const char *file, const char *etag) {
    char *link = tw_path_join(snap, file);
    if (!link) return TW_E_NOMEM;
    tw_status st = make_parent_dirs(link);
    tw_buf t = { 0 };
    if (st == TW_OK) st = tw_buf_appendf(&t, "../../");
    for (const char *p = file; st == TW_OK && *p; p++)
        if (*p == '/') st = tw_buf_appendf(&t, "../");
    if (st == TW_OK) st = tw_buf_appendf(&t, "blobs/%s", etag);
    char *target = tw_buf_detach(&t, NULL);
    char *tmp = tw_asprintf("%s.tmp.%ld", link, (long)getpid());
    if (st == TW_OK && (!target || !tmp)) st = TW_E_NOMEM;
    if (st == TW_OK) {
        unlink(tmp);
        if (symlink(target, tmp) != 0 || rename(tmp, link) != 0) {
            st = tw_err(TW_E_IO, "%s: cannot create symlink to %s: %s", link, target, strerror(errno));
            unlink(tmp);
        }
    }
    free(tmp);
    free(target);
    free(link);
    return st;
}

/* Makes sure snapshots/<commit>/<file> exists, downloading its blob if the cache lacks it. */
static tw_status ensure_file(hub_ctx *c, const char *commit, const char *snap, const char *file) {
    hub_req *rq = c->req;
    if (!repo_file_ok(file)) return tw_err(TW_E_FORMAT, "%s: unsafe file name \"%s\"", rq->repo, file);
    char *link = tw_path_join(snap, file);
    bool have = link && tw_file_exists(link);
    free(link);
    if (have) return TW_OK;

    tw_buf u = { 0 };
    tw_status st = tw_buf_appendf(&u, "%s/%s/resolve/%s/", c->endpoint, rq->repo, commit);
    if (st == TW_OK) st = url_escape(&u, file, true);
    char *url = tw_buf_detach(&u, NULL);
    if (st != TW_OK || !url) {
        free(url);
        return st != TW_OK ? st : TW_E_NOMEM;
    }
    char what[512];
    snprintf(what, sizeof what, "%s@%s: %s", rq->repo, rq->rev, file);
    /* HEAD first: the etag names the blob, so a blob another revision (or a Python tool) already
    ** downloaded is reused without transferring it again. */
    hub_resp r = { 0 };
    r.linked_size = r.length = -1;
    char *blob = NULL;
    st = hub_fetch_retry(c, url, true, &r);
    if (st == TW_OK && r.status != 200 && !(r.status >= 300 && r.status < 400 && r.linked_etag))
        st = http_error(c, &r, what);
    const char *raw = r.linked_etag ? r.linked_etag : r.etag;
    /* A redirect's own Content-Length is that of its (empty) body, so only X-Linked-Size counts. */
    int64_t size = r.linked_etag ? r.linked_size : r.length;
    char etag[130] = "";
    if (st == TW_OK) {
        if (raw && !strncmp(raw, "W/", 2)) raw += 2;
        size_t n = raw ? strlen(raw) : 0;
        if (n >= 2 && raw[0] == '"' && raw[n - 1] == '"') raw++, n -= 2;
        bool ok = n > 0 && n < sizeof etag;
        for (size_t i = 0; ok && i < n; i++) ok = isalnum((unsigned char)raw[i]) || raw[i] == '-' || raw[i] == '_';
        if (!ok) st = tw_err(TW_E_NETWORK, "%s: the hub gave no usable ETag for %s", url, file);
        else {
            memcpy(etag, raw, n);
            etag[n] = 0;
            if (n == 64) for (size_t i = 0; i < n; i++) etag[i] = (char)tolower((unsigned char)etag[i]);
        }
    }
    if (st == TW_OK && !(blob = tw_asprintf("%s/blobs/%s", rq->repo_dir, etag))) st = TW_E_NOMEM;
    struct stat sb;
    if (st == TW_OK && !(stat(blob, &sb) == 0 && (size < 0 || sb.st_size == size)))
        st = download_blob(c, url, file, blob, etag, size);
    if (st == TW_OK) st = link_snapshot(snap, file, etag);
    resp_free(&r);
    free(blob);
    free(url);
    return st;
}

static char *load_token(const tw_hub_opts *o) {
    const char *v;
    if (o->token && *o->token) return tw_strdup(o->token);
    if ((v = env_nonempty("HF_TOKEN")) || (v = env_nonempty("HUGGING_FACE_HUB_TOKEN"))) return tw_strdup(v);
    char *home = NULL, *path = NULL;
    if ((v = env_nonempty("HF_TOKEN_PATH"))) path = tw_strdup(v);
    else if ((home = hf_home())) path = tw_asprintf("%s/token", home);
    free(home);
    char *data = NULL;
    size_t len = 0;
    if (!path || !tw_file_exists(path) || tw_read_file(path, &data, &len) != TW_OK) data = NULL;
    free(path);
    if (data) {
        while (len && isspace((unsigned char)data[len - 1])) data[--len] = 0;
        if (!len) {
            free(data);
            data = NULL;
        }
    }
    return data;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static tw_status resolve_online(hub_req *rq, char **dir) {
    hub_ctx c = { .req = rq };
    char *endpoint = NULL, *commit = NULL, *snap = NULL, *index_path = NULL;
    json_t *info = NULL, *index = NULL;
    tw_status st = TW_OK;
    const char *e = rq->opts->endpoint && *rq->opts->endpoint ? rq->opts->endpoint : env_nonempty("HF_ENDPOINT");
    endpoint = tw_strdup(e ? e : HUB_DEFAULT_ENDPOINT);
    if (!endpoint) return TW_E_NOMEM;
    for (size_t n = strlen(endpoint); n && endpoint[n - 1] == '/'; n--) endpoint[n - 1] = 0;
    c.endpoint = endpoint;
    c.token = load_token(rq->opts);
    for (const char *p = c.token; p && *p; p++)
        if ((unsigned char)*p < ' ' || *p == 0x7f) {
            st = tw_err(TW_E_ARG, "the hub token (HF_TOKEN or the token file) contains a control character");
            goto out;
        }
    pthread_once(&curl_once, curl_init_once);
    if (!(c.curl = curl_easy_init())) {
        st = tw_err(TW_E_NOMEM, "curl_easy_init failed");
        goto out;
    }
    if ((st = api_info(&c, &commit, &info)) != TW_OK) goto out;
    if (!(snap = tw_asprintf("%s/snapshots/%s", rq->repo_dir, commit))) {
        st = TW_E_NOMEM;
        goto out;
    }
    if ((st = make_dirs(snap)) != TW_OK) goto out;

    const char *required[] = { "config.json", "tokenizer.json" };
    for (size_t i = 0; i < 2 && st == TW_OK; i++) {
        if (!has_sibling(info, required[i]))
            st = tw_err(TW_E_NOT_FOUND, "%s@%s has no %s: is it a model repository?", rq->repo, rq->rev, required[i]);
        else
            st = ensure_file(&c, commit, snap, required[i]);
    }
    for (size_t i = 0; i < HUB_N_OPTIONAL && st == TW_OK; i++)
        if (has_sibling(info, hub_optional_files[i])) st = ensure_file(&c, commit, snap, hub_optional_files[i]);
    if (st != TW_OK) goto out;

    if (has_sibling(info, "model.safetensors")) {
        st = ensure_file(&c, commit, snap, "model.safetensors");
    } else if (has_sibling(info, "model.safetensors.index.json")) {
        if ((st = ensure_file(&c, commit, snap, "model.safetensors.index.json")) != TW_OK) goto out;
        if (!(index_path = tw_path_join(snap, "model.safetensors.index.json"))) {
            st = TW_E_NOMEM;
            goto out;
        }
        if ((st = tw_json_load(index_path, &index)) != TW_OK) goto out;
        const json_t *map = json_object_get(index, "weight_map");
        if (!json_is_object(map)) {
            st = tw_err(TW_E_FORMAT, "%s: no \"weight_map\" object", index_path);
            goto out;
        }
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)map, key, val) {
            const char *shard = json_string_value(val);
            if (!shard) {
                st = tw_err(TW_E_FORMAT, "%s: weight_map.%s: expected a file name", index_path, key);
                break;
            }
            if ((st = ensure_file(&c, commit, snap, shard)) != TW_OK) break;   /* repeats are cached */
        }
    } else {
        st = tw_err(TW_E_NOT_FOUND, "%s@%s has neither model.safetensors nor model.safetensors.index.json",
                    rq->repo, rq->rev);
    }
    if (st != TW_OK) goto out;

    /* refs/<rev> records where a branch or tag pointed, for offline use; a commit needs none. */
    if (strcmp(rq->rev, commit) != 0) {
        char *ref = tw_asprintf("%s/refs/%s", rq->repo_dir, rq->rev);
        char *old = read_ref(rq);
        if (!ref) st = TW_E_NOMEM;
        else if (!old || strcmp(old, commit) != 0) {
            st = make_parent_dirs(ref);
            if (st == TW_OK) st = tw_write_file_atomic(ref, commit, strlen(commit));
        }
        free(old);
        free(ref);
    }
    if (st == TW_OK) {
        *dir = snap;
        snap = NULL;
    }
out:
    if (c.curl) curl_easy_cleanup(c.curl);
    json_decref(info);
    json_decref(index);
    free(index_path);
    free(snap);
    free(commit);
    free(c.token);
    free(endpoint);
    return st;
}
#endif /* TW_HAVE_CURL */

/* ============================== resolution ================================================ */

tw_status tw_hub_resolve(const char *name, const tw_hub_opts *opts, char **dir) {
    if (!dir) return tw_err(TW_E_ARG, "tw_hub_resolve: dir is NULL");
    *dir = NULL;
    if (!name || !*name) return tw_err(TW_E_ARG, "no model name given");
    static const tw_hub_opts defaults;
    if (!opts) opts = &defaults;
    if (tw_dir_exists(name)) {
        *dir = tw_strdup(name);
        return *dir ? TW_OK : TW_E_NOMEM;
    }
    struct stat sb;
    if (stat(name, &sb) == 0) return tw_err(TW_E_ARG, "%s: not a directory (a model is a directory or a repo id)", name);
    if (!tw_hub_is_repo_id(name))
        return tw_err(TW_E_NOT_FOUND, "%s: no such directory, and not a Hugging Face repo id (org/name or "
                      "org/name@revision)", name);

    hub_req r = { .opts = opts };
    const char *slash = strchr(name, '/'), *at = strchr(slash, '@');
    r.repo = at ? tw_strndup(name, (size_t)(at - name)) : tw_strdup(name);
    r.rev = tw_strdup(at ? at + 1 : "main");
    tw_status st = r.repo && r.rev ? tw_hub_cache_dir(opts, &r.cache) : TW_E_NOMEM;
    if (st != TW_OK) {
        req_free(&r);
        return st;
    }
    r.folder = tw_asprintf("models--%.*s--%s", (int)(strchr(r.repo, '/') - r.repo), r.repo, strchr(r.repo, '/') + 1);
    r.repo_dir = r.folder ? tw_path_join(r.cache, r.folder) : NULL;
    if (!r.repo_dir) {
        req_free(&r);
        return TW_E_NOMEM;
    }

    bool offline = opts->offline || env_truthy("HF_HUB_OFFLINE") || env_truthy("TRANSFORMERS_OFFLINE");
    char *snap = NULL, *why = NULL;
    bool cached = cache_lookup(&r, &snap, &why);
    /* A complete snapshot is used without asking the hub (a commit's snapshot never changes; a
    ** branch is re-checked only with opts->refresh), so cached models work with no network. */
    if (cached && (offline || !opts->refresh || is_hex(r.rev, 40))) {
        *dir = snap;
        free(why);
        req_free(&r);
        return TW_OK;
    }
    if (offline) {
        st = tw_err(TW_E_NOT_FOUND, "%s@%s: %s, and offline mode is on (HF_HUB_OFFLINE or --offline): run once "
                    "online to download it", r.repo, r.rev, why ? why : "not in the cache");
    } else {
#ifdef TW_HAVE_CURL
        st = resolve_online(&r, dir);
        if (st == TW_E_NETWORK && cached) {   /* refresh failed: the cached snapshot still works */
            *dir = snap;
            snap = NULL;
            st = TW_OK;
        }
#else
        st = tw_err(TW_E_UNSUPPORTED, "%s@%s: %s, and this build cannot download (it was built without libcurl: "
                    "install libcurl4-openssl-dev and rebuild, or download the model with another tool into %s)",
                    r.repo, r.rev, why ? why : "not in the cache", r.cache);
#endif
    }
    free(snap);
    free(why);
    req_free(&r);
    return st;
}
