/*
** serve_media.c — fetching and decoding the media of a chat request under the server's limits
** (serve_media.h says what is accepted and which HTTP status each failure gets).
**
** The bytes are always brought into memory here first — from the data: URL, the download or the
** file under --media-dir — with the byte cap checked before or while they arrive, and only then
** decoded from memory (tw_image_decode, tw_video_decode_ex), so every source meets the same limits
** and nothing the client names is ever opened by the library's path-taking loaders. For http(s)
** images tw_image_load would enforce the byte cap and the timeout too, but it reports which limit
** was hit only in its message and takes plain paths as well; one downloader for images and videos
** gives the server one policy and exact statuses (413 vs 400).
*/
#include "serve_media.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef TW_HAVE_CURL
#include <curl/curl.h>
#include <pthread.h>
#endif

#define SM_MAX_BYTES  (64ull << 20)   /* default for sm_limits.max_bytes  */
#define SM_TIMEOUT_MS 30000L          /* default for sm_limits.timeout_ms */
#define SM_MAX_FRAMES 4096            /* the library's limit on a video's kept frames (docs/video.md) */

/* ---- messages ------------------------------------------------------------------------------ */

/* What went wrong, for the client: "<field>: <what>", one line, and the HTTP status. */
typedef struct sm_err {
    const char *field;    /* "image_url", "video_url", "video_url[3]" */
    int         status;
    char        msg[512];
} sm_err;

static void one_line(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = ' ';
}

static int fail(sm_err *e, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(sm_err *e, int status, const char *fmt, ...) {
    int k = snprintf(e->msg, sizeof e->msg, "%s: ", e->field);
    if (k < 0 || (size_t)k >= sizeof e->msg) k = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg + k, sizeof e->msg - (size_t)k, fmt, ap);
    va_end(ap);
    one_line(e->msg);
    e->status = status;
    return status;
}

/* A library failure (tw_last_error() names the field: it was passed as the source's name). */
static int fail_lib(sm_err *e, tw_status s, const char *what) {
    if (s == TW_E_NOMEM) return fail(e, 500, "out of memory decoding the %s", what);
    const char *m = tw_last_error();
    size_t fl = strlen(e->field);
    if (strncmp(m, e->field, fl) == 0 && m[fl] == ':') m += fl + 1 + (m[fl + 1] == ' ');
    /* The library's advice is for programs ("raise tw_image_load_opts.max_pixels"): not for a client. */
    const char *raise = strstr(m, "; raise ");
    int cut = raise ? (int)(raise - m) : (int)strlen(m);
    int status = 400;
    if (s == TW_E_ARG) status = 413;   /* the only caller errors left are the limits */
    else if (s == TW_E_UNSUPPORTED) status = strstr(m, "above the limit") ? 413 : strstr(m, "needs FFmpeg") ? 501 : 415;
    else if (s == TW_E_INTERNAL) status = 500;
    return fail(e, status, "%.*s", cut, m);
}

/* The client's URL for a message: at most 96 bytes, unprintable bytes as '?'; a data: URL only up
** to its comma. */
static const char *show(const char *url, char *buf, size_t cap) {
    size_t lim = cap - 4, n = 0;
    if (strncasecmp(url, "data:", 5) == 0) {
        size_t c = strcspn(url, ",");
        if (c < lim) lim = c;
    }
    if (lim > 96) lim = 96;
    for (; url[n] && n < lim; n++) buf[n] = (unsigned char)url[n] < 0x20 || url[n] == 0x7f ? '?' : url[n];
    buf[n] = 0;
    if (url[n]) strcat(buf, url[n] == ',' ? ",..." : "...");
    return buf;
}

/* ---- data: URLs ---------------------------------------------------------------------------- */

static int b64_value(int ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

static const char *expected_types(const char *kind) {
    return strcmp(kind, "image") == 0 ? "image/png, image/jpeg, image/webp, image/gif or image/bmp"
                                      : "video/mp4, video/webm or another video/* type";
}

/* data:<kind>/<subtype>[;<parameter>]*;base64,<data>. The size follows from the length and is
** checked before anything is allocated; every character must be of the standard base64
** alphabet, '=' only as the final padding. The subtype is not trusted: the decoder sniffs. */
static int from_data_url(sm_err *e, const char *url, const char *kind, uint64_t max, uint8_t **out, size_t *len) {
    const char *hdr = url + 5, *comma = strchr(hdr, ',');
    if (!comma) return fail(e, 400, "data: URL without a ',' (expected data:%s/<type>;base64,<data>)", kind);
    size_t tl = strcspn(hdr, ";,"), kl = strlen(kind);
    if (tl == 0) return fail(e, 415, "data: URL without a media type; expected %s", expected_types(kind));
    if (!(tl > kl + 1 && strncasecmp(hdr, kind, kl) == 0 && hdr[kl] == '/'))
        return fail(e, 415, "data: URL of type \"%.*s\"; expected %s", (int)(tl < 64 ? tl : 64), hdr,
                    expected_types(kind));
    const char *last = NULL;
    for (const char *p = hdr + tl; p < comma; p++)
        if (*p == ';') last = p;
    if (!last || comma - last != 7 || strncasecmp(last + 1, "base64", 6) != 0)
        return fail(e, 400, "data: URL that is not base64 (expected data:%s/<type>;base64,<data>)", kind);

    const char *b = comma + 1;
    size_t n = strlen(b), pad = 0;
    while (pad < 2 && n > pad && b[n - 1 - pad] == '=') pad++;
    size_t m = n - pad;   /* data characters */
    if (m == 0) return fail(e, 400, "the data: URL holds no data");
    uint64_t size = (uint64_t)(m / 4) * 3 + (m % 4 ? m % 4 - 1 : 0);
    if (size > max)
        return fail(e, 413, "the data: URL holds %llu bytes, more than the limit of %llu", (unsigned long long)size,
                    (unsigned long long)max);
    size_t at = (size_t)(b - url);
    for (size_t i = 0; i < m; i++) {
        int ch = (unsigned char)b[i];
        if (b64_value(ch) >= 0) continue;
        if (ch > ' ' && ch < 0x7f)
            return fail(e, 400, "invalid base64 at byte %zu of the URL ('%c'); expected A-Z a-z 0-9 + / and '=' "
                        "padding", at + i, ch);
        return fail(e, 400, "invalid base64 at byte %zu of the URL (byte 0x%02x); expected A-Z a-z 0-9 + / and '=' "
                    "padding", at + i, ch);
    }
    if (m % 4 == 1 || (pad && n % 4 != 0))
        return fail(e, 400, "invalid base64: %zu characters%s do not make whole bytes", n, pad ? " with padding" : "");
    uint8_t *buf = malloc(size ? (size_t)size : 1);
    if (!buf) return fail(e, 500, "out of memory for %llu bytes", (unsigned long long)size);
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < m; i++) {
        acc = acc << 6 | (uint32_t)b64_value((unsigned char)b[i]);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (uint8_t)(acc >> bits);
        }
    }
    *out = buf;
    *len = o;
    return 0;
}

/* ---- file:// URLs under --media-dir ------------------------------------------------------------ */

/* "/a/./b/../c" -> "/a/c" in place, without the file system (p is absolute). */
static void normalize(char *p) {
    const char *s = p;
    size_t o = 0;
    while (*s) {
        while (*s == '/') s++;
        if (!*s) break;
        const char *seg = s;
        while (*s && *s != '/') s++;
        size_t sl = (size_t)(s - seg);
        if (sl == 1 && seg[0] == '.') continue;
        if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
            while (o > 0 && p[o - 1] != '/') o--;
            if (o > 0) o--;
            continue;
        }
        p[o++] = '/';
        memmove(p + o, seg, sl);
        o += sl;
    }
    if (o == 0) p[o++] = '/';
    p[o] = 0;
}

/* path is dir or lies below it (both normalized, absolute). */
static bool inside(const char *path, const char *dir) {
    size_t n = strlen(dir);
    if (n == 1 && dir[0] == '/') return path[0] == '/';
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == 0);
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads a regular file of at most max bytes from an open descriptor. */
static int read_fd(sm_err *e, int fd, const char *shown, uint64_t max, uint8_t **out, size_t *len) {
    struct stat sb;
    if (fstat(fd, &sb) != 0) return fail(e, 400, "%s: %s", shown, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return fail(e, 400, "%s is not a regular file", shown);
    if ((uint64_t)sb.st_size > max)
        return fail(e, 413, "%s is %lld bytes, more than the limit of %llu", shown, (long long)sb.st_size,
                    (unsigned long long)max);
    size_t size = (size_t)sb.st_size, got = 0;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return fail(e, 500, "out of memory for %zu bytes", size);
    while (got < size) {   /* a file that shrinks meanwhile ends early; one that grows is cut at size */
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int err = errno;
            free(buf);
            return fail(e, 400, "%s: read error: %s", shown, strerror(err));
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    *out = buf;
    *len = got;
    return 0;
}

/* file:///abs/path (or file://localhost/abs/path): percent escapes decoded, then the path must lie
** inside media_dir twice over: as written with "." and ".." resolved (so that a path outside is
** refused as outside whether it exists or not: no probing of the server's files), and once every
** symbolic link is resolved (realpath), which is the file that is opened. Only regular files:
** devices and FIFOs (/dev/zero, a pipe) are refused without reading, the open does not block. */
static int from_file_url(sm_err *e, const char *url, const char *media_dir, uint64_t max, uint8_t **out,
                         size_t *len) {
    char shown[128];
    show(url, shown, sizeof shown);
    if (!media_dir) return fail(e, 403, "file:// URLs are not accepted by this server (it has no --media-dir)");
    const char *host = url + 7, *path = strchr(host, '/');
    if (!path) return fail(e, 400, "%s: expected file:///absolute/path", shown);
    size_t hl = (size_t)(path - host);
    if (hl && !(hl == 9 && strncasecmp(host, "localhost", 9) == 0))
        return fail(e, 400, "file:// URL with a host (\"%.*s\"); expected file:///absolute/path", (int)(hl < 64 ? hl : 64),
                    host);
    if (strpbrk(path, "?#")) return fail(e, 400, "file:// URL with a query or fragment ('?' or '#'): percent-encode "
                                         "them in file names");
    char dec[PATH_MAX];
    size_t o = 0;
    for (const char *p = path; *p; p++) {
        int ch = (unsigned char)*p;
        if (ch == '%') {
            int hi = hexval((unsigned char)p[1]), lo = hi >= 0 ? hexval((unsigned char)p[2]) : -1;
            if (hi < 0 || lo < 0) return fail(e, 400, "bad percent escape at byte %zu of the URL", (size_t)(p - url));
            ch = hi * 16 + lo;
            if (ch == 0) return fail(e, 400, "%%00 in a file:// URL");
            p += 2;
        }
        if (o + 1 >= sizeof dec) return fail(e, 400, "file:// path too long");
        dec[o++] = (char)ch;
    }
    dec[o] = 0;

    char *md_real = realpath(media_dir, NULL);
    if (!md_real) return fail(e, 500, "the server's --media-dir cannot be opened");
    /* --media-dir as written (made absolute), for the first check; md_real for the second. */
    char md_lex[PATH_MAX], lex[PATH_MAX], cwd[PATH_MAX] = "";
    if (media_dir[0] != '/' && !getcwd(cwd, sizeof cwd)) cwd[0] = 0;
    int ml = snprintf(md_lex, sizeof md_lex, "%s/%s", cwd, media_dir);
    if (ml < 0 || (size_t)ml >= sizeof md_lex) snprintf(md_lex, sizeof md_lex, "%s", md_real);
    normalize(md_lex);
    memcpy(lex, dec, o + 1);
    normalize(lex);
    int rc = 0;
    char *real = NULL;
    int fd = -1;
    if (!inside(lex, md_real) && !inside(lex, md_lex)) {
        rc = fail(e, 403, "%s is outside --media-dir", shown);
    } else if (!(real = realpath(dec, NULL))) {
        if (errno == ENOENT || errno == ENOTDIR) rc = fail(e, 400, "%s: no such file in --media-dir", shown);
        else if (errno == EACCES) rc = fail(e, 403, "%s cannot be read (permission denied)", shown);
        else rc = fail(e, 400, "%s: %s", shown, strerror(errno));
    } else if (!inside(real, md_real)) {
        rc = fail(e, 403, "%s resolves (through a symbolic link) outside --media-dir", shown);
    } else if ((fd = open(real, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW)) < 0) {
        rc = fail(e, errno == EACCES ? 403 : 400, "%s cannot be opened: %s", shown, strerror(errno));
    } else {
        rc = read_fd(e, fd, shown, max, out, len);
    }
    if (fd >= 0) close(fd);
    free(real);
    free(md_real);
    return rc;
}

/* ---- http(s) ----------------------------------------------------------------------------------- */

#ifdef TW_HAVE_CURL
typedef struct sink {
    uint8_t *data;
    size_t   len, cap;
    uint64_t max;
    bool     too_big, nomem;
} sink;

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
    sink *s = ud;
    size_t k = sz * n;
    if ((uint64_t)s->len + k > s->max) {
        s->too_big = true;
        return 0;   /* aborts the transfer */
    }
    if (s->len + k > s->cap) {
        size_t cap = s->cap ? s->cap : 65536;
        while (cap < s->len + k) cap *= 2;
        if ((uint64_t)cap > s->max) cap = (size_t)s->max;
        uint8_t *d = realloc(s->data, cap);
        if (!d) {
            s->nomem = true;
            return 0;
        }
        s->data = d, s->cap = cap;
    }
    memcpy(s->data + s->len, p, k);
    s->len += k;
    return k;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

/* The body of a GET into memory: at most max bytes (a larger Content-Length is refused before the
** body comes), all of it within timeout_ms, redirects (at most 5) to http(s) only. */
static int from_http(sm_err *e, const char *url, uint64_t max, long timeout_ms, uint8_t **out, size_t *len) {
    char shown[128];
    show(url, shown, sizeof shown);
    if (timeout_ms <= 0) return fail(e, 400, "%s: no time left to download it (the request's timeout ran out)", shown);
    pthread_once(&curl_once, curl_init_once);
    CURL *h = curl_easy_init();
    if (!h) return fail(e, 500, "cannot start a download (curl_easy_init failed)");
    sink s = { .max = max };
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(h, CURLOPT_USERAGENT, "towervision/" TW_VERSION);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)(max > INT64_MAX ? INT64_MAX : max));
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    int r = 0;
    if (s.too_big || rc == CURLE_FILESIZE_EXCEEDED)
        r = fail(e, 413, "%s is larger than the limit of %llu bytes", shown, (unsigned long long)max);
    else if (s.nomem) r = fail(e, 500, "out of memory downloading %s", shown);
    else if (rc == CURLE_OPERATION_TIMEDOUT) r = fail(e, 400, "%s did not download within %ld ms", shown, timeout_ms);
    else if (rc != CURLE_OK) r = fail(e, 400, "cannot download %s: %s", shown, cerr[0] ? cerr : curl_easy_strerror(rc));
    else if (code < 200 || code > 299) r = fail(e, 400, "%s answered HTTP %ld", shown, code);
    if (r) {
        free(s.data);
        return r;
    }
    *out = s.data ? s.data : malloc(1);
    *len = s.len;
    return *out ? 0 : fail(e, 500, "out of memory");
}
#endif

/* ---- sources ------------------------------------------------------------------------------------ */

static bool scheme(const char *url, const char *s) { return strncasecmp(url, s, strlen(s)) == 0; }

static uint64_t max_bytes(const sm_limits *lim) { return lim && lim->max_bytes ? lim->max_bytes : SM_MAX_BYTES; }

/* The bytes a URL names, into memory (*out malloc'ed), under the limits. */
static int fetch(sm_err *e, const char *url, const char *kind, const sm_limits *lim, long timeout_ms, uint8_t **out,
                 size_t *len) {
    *out = NULL, *len = 0;
    if (!url || !*url) return fail(e, 400, "missing url (expected data:%s/<type>;base64,..., http(s):// or file://)", kind);
    if (scheme(url, "data:")) return from_data_url(e, url, kind, max_bytes(lim), out, len);
    if (scheme(url, "http://") || scheme(url, "https://")) {
#ifdef TW_HAVE_CURL
        return from_http(e, url, max_bytes(lim), timeout_ms, out, len);
#else
        (void)timeout_ms;
        return fail(e, 501, "this server was built without libcurl: http(s) URLs are not available");
#endif
    }
    if (scheme(url, "file://")) return from_file_url(e, url, lim ? lim->media_dir : NULL, max_bytes(lim), out, len);
    char shown[128];
    return fail(e, 400, "unsupported URL \"%s\" (expected data:%s/<type>;base64,..., http(s):// or file://)",
                show(url, shown, sizeof shown), kind);
}

static long timeout_of(const sm_limits *lim) { return lim && lim->timeout_ms > 0 ? lim->timeout_ms : SM_TIMEOUT_MS; }

static int load_image(sm_err *e, const char *url, const sm_limits *lim, long timeout_ms, tw_image **out) {
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = fetch(e, url, "image", lim, timeout_ms, &data, &len);
    if (rc) return rc;
    tw_image_load_opts o = { .max_pixels = lim ? lim->max_pixels : 0, .max_bytes = max_bytes(lim) };
    tw_status s = tw_image_decode(data, len, e->field, &o, out);
    free(data);
    return s == TW_OK ? 0 : fail_lib(e, s, "image");
}

/* The public calls: the result, and the message and status where the caller wants them. */
static int finish(const sm_err *e, int rc, int *http_status, char *err, size_t err_len) {
    if (http_status) *http_status = rc ? e->status : 200;
    if (err && err_len) snprintf(err, err_len, "%s", rc ? e->msg : "");
    return rc;
}

int sm_load_image(const char *url, const sm_limits *lim, tw_image **out, int *http_status, char *err,
                  size_t err_len) {
    sm_err e = { .field = "image_url" };
    int rc = out ? 0 : fail(&e, 500, "no place for the image (out is NULL)");
    if (out) *out = NULL;
    if (!rc) rc = load_image(&e, url, lim, timeout_of(lim), out);
    return finish(&e, rc, http_status, err, err_len);
}

int sm_load_video(const char *url, const sm_limits *lim, tw_video **out, int *http_status, char *err,
                  size_t err_len) {
    sm_err e = { .field = "video_url" };
    int rc = out ? 0 : fail(&e, 500, "no place for the video (out is NULL)");
    if (out) *out = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    if (!rc) rc = fetch(&e, url, "video", lim, timeout_of(lim), &data, &len);
    if (!rc) {
        tw_video_limits vl = { .max_pixels = lim ? lim->max_pixels : 0 };
        tw_status s = tw_video_decode_ex(data, len, e.field, lim ? lim->n_frames : 0, &vl, out);
        if (s != TW_OK) rc = fail_lib(&e, s, "video");
    }
    free(data);
    return finish(&e, rc, http_status, err, err_len);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int sm_load_video_frames(const char *const *urls, size_t n, const sm_limits *lim, tw_video **out, int *http_status,
                         char *err, size_t err_len) {
    sm_err e = { .field = "video_url" };
    if (out) *out = NULL;
    if (!out) return finish(&e, fail(&e, 500, "no place for the video (out is NULL)"), http_status, err, err_len);
    if (!urls || n == 0) return finish(&e, fail(&e, 400, "an empty list of frames"), http_status, err, err_len);
    if (n > INT32_MAX) return finish(&e, fail(&e, 413, "%zu frames: too many", n), http_status, err, err_len);
    int32_t nf = lim ? lim->n_frames : 0;
    size_t keep = nf > 0 && (size_t)nf < n ? (size_t)nf : n;
    if (keep > SM_MAX_FRAMES)   /* before fetching any: the library would refuse them after */
        return finish(&e, fail(&e, 413, "%zu frames, more than the limit of %d", keep, SM_MAX_FRAMES), http_status,
                      err, err_len);
    int64_t *idx = malloc(keep * sizeof *idx);
    tw_image **ims = calloc(n, sizeof *ims);
    int32_t k = 0;
    int rc = 0;
    if (!idx || !ims) rc = fail(&e, 500, "out of memory for a list of %zu frames", n);
    else if (tw_video_sample_indices((int64_t)n, nf, idx, &k) != TW_OK) rc = fail_lib(&e, TW_E_INTERNAL, "video");
    /* Only the sampled frames are fetched, within one timeout for them all. */
    double deadline = now_ms() + (double)timeout_of(lim);
    for (int32_t i = 0; !rc && i < k; i++) {
        char field[40];
        snprintf(field, sizeof field, "video_url[%lld]", (long long)idx[i]);
        sm_err fe = { .field = field };
        long left = (long)(deadline - now_ms());
        if ((rc = load_image(&fe, urls[idx[i]], lim, left > 0 ? left : 0, &ims[idx[i]])) != 0) {
            e.status = fe.status;
            memcpy(e.msg, fe.msg, sizeof e.msg);
        }
    }
    if (!rc) {
        tw_status s = tw_video_from_images((const tw_image *const *)ims, n, nf, out);
        if (s != TW_OK) rc = fail_lib(&e, s, "video");
    }
    for (size_t i = 0; ims && i < n; i++) tw_image_free(ims[i]);
    free(ims);
    free(idx);
    return finish(&e, rc, http_status, err, err_len);
}
