/*
** test_serve_media.c — the server's media loader (tools/serve_media.c) against hostile input:
** data: URLs (good images and videos, invalid base64, wrong media types, over the byte cap),
** file:// URLs inside and outside --media-dir (.., %2e%2e, symbolic links out, a FIFO, /dev/zero,
** directories), decompression bombs refused from the header, and http(s) downloads from a
** loopback server in this process (normal, 404, redirects to file://, a server that drips bytes
** past the timeout, bodies over the cap with and without Content-Length), videos and lists of
** frames. Every failure must give one line naming the field and the right HTTP status, quickly.
**
** Built by the Makefile with tools/serve_media.c, both with include/ only (like the CLI).
*/
#include "tower.h"
#include "serve_media.h"
#include "testhelp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const char *media(const char *rel) {
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/../media/%s", th_fixtures(), rel);
    return b;
}

static uint8_t *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc(n > 0 ? (size_t)n : 1);
    if (d && fread(d, 1, (size_t)n, f) != (size_t)n) {
        free(d);
        d = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return d;
}

static bool write_all(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

/* "data:<type>;base64," + base64(data) (malloc'ed). */
static char *data_url(const char *type, const uint8_t *d, size_t n) {
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t hl = strlen(type) + 13;
    char *u = malloc(hl + (n + 2) / 3 * 4 + 1);
    if (!u) return NULL;
    char *o = u + sprintf(u, "data:%s;base64,", type);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        *o++ = al[v >> 18 & 63];
        *o++ = al[v >> 12 & 63];
        *o++ = i + 1 < n ? al[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? al[v & 63] : '=';
    }
    *o = 0;
    return u;
}

static char *file_data_url(const char *type, const char *path) {
    size_t n = 0;
    uint8_t *d = read_all(path, &n);
    char *u = d ? data_url(type, d, n) : NULL;
    free(d);
    return u;
}

static bool same_image(const tw_image *a, const tw_image *b) {
    return a && b && tw_image_width(a) == tw_image_width(b) && tw_image_height(a) == tw_image_height(b) &&
           memcmp(tw_image_rgb(a), tw_image_rgb(b), (size_t)tw_image_width(a) * tw_image_height(a) * 3) == 0;
}

static bool same_video(const tw_video *a, const tw_video *b) {
    int32_t n = tw_video_n_frames(a);
    return a && b && n == tw_video_n_frames(b) && tw_video_width(a) == tw_video_width(b) &&
           tw_video_height(a) == tw_video_height(b) &&
           memcmp(tw_video_frame_indices(a), tw_video_frame_indices(b), (size_t)n * sizeof(int64_t)) == 0 &&
           memcmp(tw_video_rgb(a), tw_video_rgb(b), (size_t)n * tw_video_width(a) * tw_video_height(a) * 3) == 0;
}

/* ---- one call and what it must give ------------------------------------------------------------ */

static char last_err[512];
static int last_status;

/* The message is one line, starts with the field, and contains want (if any). */
static void check_msg(const char *what, const char *field, const char *want) {
    CHECK(strchr(last_err, '\n') == NULL && strchr(last_err, '\r') == NULL, "%s: message is one line", what);
    CHECK(strncmp(last_err, field, strlen(field)) == 0 && last_err[strlen(field)] == ':',
          "%s: message names %s: %s", what, field, last_err);
    if (want) CHECK(strstr(last_err, want) != NULL, "%s: message \"%s\" lacks \"%s\"", what, last_err, want);
}

/* An image URL that must fail with status (and a message with want). */
static void image_fails(const char *what, const char *url, const sm_limits *lim, int status, const char *want) {
    tw_image *im = (tw_image *)1;
    double t0 = now_ms();
    int rc = sm_load_image(url, lim, &im, &last_status, last_err, sizeof last_err);
    double dt = now_ms() - t0;
    CHECK(rc != 0 && rc == last_status && im == NULL, "%s: refused (rc %d)", what, rc);
    CHECK(last_status == status, "%s: HTTP %d, expected %d: %s", what, last_status, status, last_err);
    check_msg(what, "image_url", want);
    printf("  %-34s %d %s (%.0f ms)\n", what, last_status, last_err, dt);
}

static tw_image *image_ok(const char *what, const char *url, const sm_limits *lim) {
    tw_image *im = NULL;
    int rc = sm_load_image(url, lim, &im, &last_status, last_err, sizeof last_err);
    CHECK(rc == 0 && im && last_status == 200 && last_err[0] == 0, "%s: %d %s", what, last_status, last_err);
    return im;
}

static void video_fails(const char *what, const char *url, const sm_limits *lim, int status, const char *want) {
    tw_video *v = (tw_video *)1;
    int rc = sm_load_video(url, lim, &v, &last_status, last_err, sizeof last_err);
    CHECK(rc != 0 && rc == last_status && v == NULL, "%s: refused (rc %d)", what, rc);
    CHECK(last_status == status, "%s: HTTP %d, expected %d: %s", what, last_status, status, last_err);
    check_msg(what, "video_url", want);
    printf("  %-34s %d %s\n", what, last_status, last_err);
}

/* ---- a loopback HTTP server in a thread -------------------------------------------------------- */

static int srv_fd = -1, srv_port;
static volatile int srv_stop;
static pthread_t srv_thread;
static uint8_t *png_data, *mp4_data;
static size_t png_len, mp4_len;

static bool send_all(int c, const void *p, size_t n) {
    const char *s = p;
    while (n) {
        ssize_t k = send(c, s, n, MSG_NOSIGNAL);
        if (k <= 0) return false;
        s += k, n -= (size_t)k;
    }
    return true;
}

static void sleep_ms(int ms) {
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static void send_body(int c, const char *type, const uint8_t *d, size_t n) {
    char h[256];
    snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", type, n);
    if (send_all(c, h, strlen(h))) send_all(c, d, n);
}

static void serve_one(int c) {
    char req[4096];
    size_t n = 0;
    struct pollfd p = { .fd = c, .events = POLLIN };
    while (n < sizeof req - 1 && poll(&p, 1, 2000) == 1) {
        ssize_t k = recv(c, req + n, sizeof req - 1 - n, 0);
        if (k <= 0) break;
        n += (size_t)k;
        req[n] = 0;
        if (strstr(req, "\r\n\r\n")) break;
    }
    req[n] = 0;
    char path[256] = "";
    if (sscanf(req, "GET %255s", path) != 1) return;
    static uint8_t chunk[65536];
    if (!strcmp(path, "/png")) {
        send_body(c, "image/png", png_data, png_len);
    } else if (!strcmp(path, "/mp4")) {
        send_body(c, "video/mp4", mp4_data, mp4_len);
    } else if (!strcmp(path, "/slowpng")) {
        /* the whole image, in 5 parts 150 ms apart (about 600 ms) */
        char h[160];
        snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", png_len);
        if (!send_all(c, h, strlen(h))) return;
        for (size_t i = 0, part = png_len / 5 + 1; i < png_len && !srv_stop; i += part) {
            if (i) sleep_ms(150);
            if (!send_all(c, png_data + i, i + part < png_len ? part : png_len - i)) return;
        }
    } else if (!strcmp(path, "/drip")) {
        /* one byte every 100 ms of a 100000-byte body: never done within any test's timeout */
        static const char h[] = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n";
        if (!send_all(c, h, sizeof h - 1)) return;
        for (int i = 0; i < 100000 && !srv_stop; i++) {
            if (!send_all(c, png_data + (i % png_len), 1)) return;
            sleep_ms(100);
        }
    } else if (!strcmp(path, "/endless")) {
        /* no Content-Length: only the cap stops it (at most 256 MiB here) */
        static const char h[] = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
        if (!send_all(c, h, sizeof h - 1)) return;
        for (int i = 0; i < 4096 && !srv_stop; i++)
            if (!send_all(c, chunk, sizeof chunk)) return;
    } else if (!strcmp(path, "/huge")) {
        static const char h[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\nConnection: close\r\n\r\n";
        if (!send_all(c, h, sizeof h - 1)) return;
        for (int i = 0; i < 64 && !srv_stop; i++)
            if (!send_all(c, chunk, sizeof chunk)) return;
    } else if (!strcmp(path, "/to-file")) {
        static const char h[] = "HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\nContent-Length: 0\r\n\r\n";
        send_all(c, h, sizeof h - 1);
    } else if (!strcmp(path, "/to-png")) {
        static const char h[] = "HTTP/1.1 302 Found\r\nLocation: /png\r\nContent-Length: 0\r\n\r\n";
        send_all(c, h, sizeof h - 1);
    } else {
        static const char h[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found";
        send_all(c, h, sizeof h - 1);
    }
}

static void *srv_main(void *arg) {
    (void)arg;
    while (!srv_stop) {
        struct pollfd p = { .fd = srv_fd, .events = POLLIN };
        if (poll(&p, 1, 100) != 1) continue;
        int c = accept(srv_fd, NULL, NULL);
        if (c < 0) continue;
        serve_one(c);
        close(c);
    }
    return NULL;
}

static bool srv_start(void) {
    srv_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (srv_fd < 0 || bind(srv_fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(srv_fd, 16) != 0 ||
        getsockname(srv_fd, (struct sockaddr *)&sa, &sl) != 0)
        return false;
    srv_port = ntohs(sa.sin_port);
    return pthread_create(&srv_thread, NULL, srv_main, NULL) == 0;
}

static void srv_end(void) {
    srv_stop = 1;
    pthread_join(srv_thread, NULL);
    close(srv_fd);
}

static const char *http(const char *path) {
    static char buf[4][256];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "http://127.0.0.1:%d%s", srv_port, path);
    return b;
}

/* ---- crafted files ------------------------------------------------------------------------------- */

static uint32_t crc32_of(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c >> 1 ^ (0xedb88320u & -(c & 1));
    }
    return ~c;
}

static void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24, p[1] = v >> 16 & 255, p[2] = v >> 8 & 255, p[3] = v & 255; }

/* A PNG signature and an IHDR chunk (valid CRC) claiming w x h RGB, then a tiny IDAT and IEND:
** the header is all a decoder needs to know it must not allocate. */
static size_t bomb_png(uint8_t *b, uint32_t w, uint32_t h) {
    static const uint8_t sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    memcpy(b, sig, 8);
    put32(b + 8, 13);
    memcpy(b + 12, "IHDR", 4);
    put32(b + 16, w);
    put32(b + 20, h);
    b[24] = 8, b[25] = 2, b[26] = 0, b[27] = 0, b[28] = 0;
    put32(b + 29, crc32_of(b + 12, 17));
    size_t n = 33;
    static const uint8_t idat[] = { 0, 0, 0, 2, 'I', 'D', 'A', 'T', 0x78, 0x9c };
    memcpy(b + n, idat, sizeof idat);
    put32(b + n + 10, crc32_of(b + n + 4, 6));
    n += 14;
    put32(b + n, 0);
    memcpy(b + n + 4, "IEND", 4);
    put32(b + n + 8, crc32_of(b + n + 4, 4));
    return n + 12;
}

/* A 24-bit BMP of w x h, every pixel (v, 255 - v, 7); *n gets its size. */
static uint8_t *bmp(int w, int h, uint8_t v, size_t *n) {
    int row = (w * 3 + 3) & ~3;
    *n = 54 + (size_t)row * h;
    uint8_t *b = calloc(1, *n);
    if (!b) return NULL;
    b[0] = 'B', b[1] = 'M';
    uint32_t f[][2] = { { 2, (uint32_t)*n }, { 10, 54 }, { 14, 40 }, { 18, (uint32_t)w }, { 22, (uint32_t)h },
                        { 34, (uint32_t)(row * h) } };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        for (int k = 0; k < 4; k++) b[f[i][0] + k] = (uint8_t)(f[i][1] >> (8 * k));
    b[26] = 1, b[28] = 24;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = b + 54 + (size_t)y * row + 3 * x;
            p[0] = 7, p[1] = (uint8_t)(255 - v), p[2] = v;   /* BGR */
        }
    return b;
}

/* ---- the tests ------------------------------------------------------------------------------------ */

static char dir[200], outside[256];   /* the media dir, and a directory next to it */
static bool have_curl;

static void test_data_images(void) {
    sm_limits lim = { 0 };
    tw_image *ref = NULL, *im;
    CHECK_OK(tw_image_load(media("images/png/pillow_hopper.png"), NULL, &ref), "reference png");
    char *u = file_data_url("image/png", media("images/png/pillow_hopper.png"));
    im = image_ok("data:image/png", u, &lim);
    CHECK(same_image(ref, im), "data:image/png: the file's pixels");
    tw_image_free(im);
    /* the media type is not trusted, the bytes are: a PNG declared as JPEG decodes as PNG */
    char *lie = file_data_url("image/jpeg", media("images/png/pillow_hopper.png"));
    im = image_ok("PNG sent as image/jpeg", lie, &lim);
    CHECK(same_image(ref, im), "PNG sent as image/jpeg: the file's pixels");
    tw_image_free(im);
    free(lie);
    tw_image *jref = NULL;
    CHECK_OK(tw_image_load(media("images/jpeg/gen_testorig_444.jpg"), NULL, &jref), "reference jpeg");
    char *ju = file_data_url("image/jpeg", media("images/jpeg/gen_testorig_444.jpg"));
    im = image_ok("data:image/jpeg", ju, &lim);
    CHECK(same_image(jref, im), "data:image/jpeg: the file's pixels");
    tw_image_free(im);
    tw_image_free(jref);
    free(ju);
    char *upper = file_data_url("IMAGE/PNG", media("images/png/pillow_hopper.png"));
    memcpy(upper, "DATA", 4);
    memcpy(strchr(upper, ';') + 1, "BASE64", 6);
    im = image_ok("DATA:IMAGE/PNG;BASE64", upper, &lim);
    tw_image_free(im);
    free(upper);

    /* invalid base64: the byte offset in the URL, and the character */
    size_t at = strlen(u) / 2;
    char *bad = strdup(u);
    bad[at] = '!';
    char want[128];
    snprintf(want, sizeof want, "invalid base64 at byte %zu of the URL ('!')", at);
    image_fails("invalid base64 character", bad, &lim, 400, want);
    bad[at] = '\n';
    snprintf(want, sizeof want, "invalid base64 at byte %zu of the URL (byte 0x0a)", at);
    image_fails("a line break in base64", bad, &lim, 400, want);
    bad[at] = '=';
    snprintf(want, sizeof want, "invalid base64 at byte %zu", at);
    image_fails("'=' inside base64", bad, &lim, 400, want);
    bad[at] = '-';
    image_fails("URL-safe alphabet", bad, &lim, 400, "('-')");
    free(bad);
    image_fails("base64 of a bad length", "data:image/png;base64,iVBORw0KG", &lim, 400, "do not make whole bytes");
    image_fails("padding of a bad length", "data:image/png;base64,iVBOR===", &lim, 400, NULL);
    image_fails("no data", "data:image/png;base64,", &lim, 400, "no data");
    image_fails("not base64", "data:image/png,%89PNG", &lim, 400, "not base64");
    image_fails("no comma", "data:image/png;base64", &lim, 400, "without a ','");
    image_fails("text/plain", "data:text/plain;base64,aGVsbG8=", &lim, 415, "type \"text/plain\"; expected image/png");
    image_fails("no media type", "data:;base64,aGVsbG8=", &lim, 415, "without a media type");
    image_fails("video for an image", "data:video/mp4;base64,aGVsbG8=", &lim, 415, "type \"video/mp4\"");
    image_fails("image/ without subtype", "data:image/;base64,aGVsbG8=", &lim, 415, NULL);
    image_fails("text as an image", "data:image/png;base64,aGVsbG8gd29ybGQ=", &lim, 400, "not a recognised image");
    char *avif = file_data_url("image/avif", media("images/other/pillow_hopper.avif"));
    image_fails("AVIF", avif, &lim, 415, "AVIF");
    free(avif);
    char *trunc = file_data_url("image/png", media("images/corrupt/gen_basn2c08_truncated_in_idat.png"));
    image_fails("truncated PNG", trunc, &lim, 400, NULL);
    free(trunc);

    /* the byte cap, from the length alone (no decoding: quick even for a huge URL) */
    sm_limits small = { .max_bytes = 1000 };
    image_fails("over max_bytes", u, &small, 413, "more than the limit of 1000");
    size_t big = 48u << 20;   /* 48 MiB of base64: 36 MiB of "data" */
    char *huge = malloc(big + 32);
    strcpy(huge, "data:image/png;base64,");
    memset(huge + 22, 'A', big);
    huge[22 + big] = 0;
    huge[22 + big / 2] = '*';   /* never looked at: the size is refused first */
    sm_limits cap = { .max_bytes = 16u << 20 };
    image_fails("48 MiB data: URL, cap 16 MiB", huge, &cap, 413, "37748736 bytes, more than the limit of 16777216");
    free(huge);
    free(u);

    /* pixels: decompression bombs refused from the header, quickly */
    uint8_t b[128];
    size_t bn = bomb_png(b, 20000, 20000);
    char *bu = data_url("image/png", b, bn);
    sm_limits px = { .max_pixels = 4096 * 4096 };
    double t0 = now_ms();
    image_fails("20000x20000 PNG header", bu, &px, 413, "20000x20000");
    CHECK(now_ms() - t0 < 2000, "the bomb was refused quickly");
    CHECK(!strstr(last_err, "tw_image_load_opts"), "no library advice for the client: %s", last_err);
    image_fails("20000x20000, default limit", bu, &lim, 413, "above the limit");
    free(bu);
    char *g = file_data_url("image/png", media("images/corrupt/gen_basn2c08_ihdr_100000x100000_validcrc.png"));
    image_fails("100000x100000 PNG", g, &lim, 413, "100000x100000");
    free(g);
    char *j = file_data_url("image/jpeg", media("images/corrupt/gen_testorig_sof_60000x60000.jpg"));
    image_fails("60000x60000 JPEG", j, &lim, 413, "60000x60000");
    free(j);
    char *hop = file_data_url("image/png", media("images/png/pillow_hopper.png"));
    sm_limits tiny = { .max_pixels = 100 };
    image_fails("hopper over max_pixels 100", hop, &tiny, 413, "above the limit of 100");
    free(hop);
    tw_image_free(ref);
}

static void test_schemes(void) {
    sm_limits lim = { .media_dir = dir };
    char p[512];
    snprintf(p, sizeof p, "%s/hopper.png", dir);
    image_fails("a bare path", p, &lim, 400, "unsupported URL");
    image_fails("ftp://", "ftp://example.com/a.png", &lim, 400, "unsupported URL");
    image_fails("empty", "", &lim, 400, "missing url");
    image_fails("NULL", NULL, &lim, 400, "missing url");
    image_fails("file: without //", "file:/etc/passwd", &lim, 400, "unsupported URL");
    tw_image *im = NULL;
    int st = 0;
    CHECK(sm_load_image("data:x", &lim, &im, NULL, NULL, 0) == 400, "NULL status and message pointers");
    CHECK(sm_load_image("data:x", &lim, NULL, &st, last_err, sizeof last_err) == 500 && st == 500, "NULL out");
    char shortbuf[12];
    CHECK(sm_load_image("data:x", &lim, &im, &st, shortbuf, sizeof shortbuf) == 400 && strlen(shortbuf) == 11,
          "a short message buffer is filled and terminated: %s", shortbuf);
}

static void test_files(void) {
    sm_limits lim = { .media_dir = dir };
    char u[1024];
    tw_image *ref = NULL, *im;
    CHECK_OK(tw_image_load(media("images/png/pillow_hopper.png"), NULL, &ref), "reference png");

    snprintf(u, sizeof u, "file://%s/hopper.png", dir);
    im = image_ok("file:// inside", u, &lim);
    CHECK(same_image(ref, im), "file:// inside: the pixels");
    tw_image_free(im);
    snprintf(u, sizeof u, "file://localhost%s/hopper.png", dir);
    tw_image_free(image_ok("file://localhost", u, &lim));
    snprintf(u, sizeof u, "file://%s/sub/../hopper.png", dir);
    tw_image_free(image_ok(".. staying inside", u, &lim));
    snprintf(u, sizeof u, "file://%s/a%%20b%%2Epng", dir);
    tw_image_free(image_ok("percent escapes", u, &lim));
    snprintf(u, sizeof u, "file://%s/inner-link.png", dir);
    tw_image_free(image_ok("a symlink to a file inside", u, &lim));
    char slash[300];
    snprintf(slash, sizeof slash, "%s/", dir);
    sm_limits lim2 = { .media_dir = slash };
    snprintf(u, sizeof u, "file://%s/hopper.png", dir);
    tw_image_free(image_ok("--media-dir with a trailing /", u, &lim2));
    char dlink[300];
    snprintf(dlink, sizeof dlink, "%s-link", dir);
    sm_limits lim3 = { .media_dir = dlink };
    snprintf(u, sizeof u, "file://%s/hopper.png", dlink);
    tw_image_free(image_ok("--media-dir is a symlink, URL through it", u, &lim3));
    snprintf(u, sizeof u, "file://%s/hopper.png", dir);
    tw_image_free(image_ok("--media-dir is a symlink, real URL", u, &lim3));

    sm_limits none = { 0 };
    image_fails("file:// without --media-dir", u, &none, 403, "no --media-dir");
    image_fails("/etc/passwd", "file:///etc/passwd", &lim, 403, "file:///etc/passwd is outside --media-dir");
    image_fails("a missing file outside", "file:///etc/no-such-file-here", &lim, 403, "outside --media-dir");
    snprintf(u, sizeof u, "file://%s/../%s/hopper.png", dir, strrchr(outside, '/') + 1);
    image_fails(".. out of --media-dir", u, &lim, 403, "outside --media-dir");
    snprintf(u, sizeof u, "file://%s/%%2e%%2e/%s/hopper.png", dir, strrchr(outside, '/') + 1);
    image_fails("%2e%2e out of --media-dir", u, &lim, 403, "outside --media-dir");
    snprintf(u, sizeof u, "file://%s/%%2E%%2E%%2F%%2E%%2E%%2Fetc%%2Fpasswd", dir);
    image_fails("%2E%2E%2F encoded slashes", u, &lim, 403, "outside --media-dir");
    snprintf(u, sizeof u, "file://%s/../../../../../../../../etc/passwd", dir);
    image_fails("many ..", u, &lim, 403, "outside --media-dir");
    snprintf(u, sizeof u, "file://%s/out-link.png", dir);
    image_fails("a symlink out", u, &lim, 403, "resolves (through a symbolic link) outside --media-dir");
    snprintf(u, sizeof u, "file://%s/dir-link/hopper.png", dir);
    image_fails("a directory symlink out", u, &lim, 403, "outside --media-dir");
    snprintf(u, sizeof u, "file://%s-evil/hopper.png", dir);
    image_fails("a sibling with the same prefix", u, &lim, 403, "outside --media-dir");
    snprintf(u, sizeof u, "file://%s/fifo", dir);
    double t0 = now_ms();
    image_fails("a FIFO", u, &lim, 400, "not a regular file");
    CHECK(now_ms() - t0 < 2000, "the FIFO did not block");
    snprintf(u, sizeof u, "file://%s/zero-link", dir);
    image_fails("a symlink to /dev/zero", u, &lim, 403, "outside --media-dir");
    sm_limits dev = { .media_dir = "/dev" };
    t0 = now_ms();
    image_fails("/dev/zero with --media-dir /dev", "file:///dev/zero", &dev, 400, "not a regular file");
    CHECK(now_ms() - t0 < 2000, "/dev/zero did not block");
    snprintf(u, sizeof u, "file://%s/sub", dir);
    image_fails("a directory", u, &lim, 400, "not a regular file");
    snprintf(u, sizeof u, "file://%s/missing.png", dir);
    image_fails("a missing file inside", u, &lim, 400, "no such file in --media-dir");
    image_fails("a host", "file://example.com/etc/passwd", &lim, 400, "with a host (\"example.com\")");
    snprintf(u, sizeof u, "file://%s/hopper.png?x=1", dir);
    image_fails("a query", u, &lim, 400, "query or fragment");
    snprintf(u, sizeof u, "file://%s/%%zz.png", dir);
    image_fails("a bad escape", u, &lim, 400, "bad percent escape");
    snprintf(u, sizeof u, "file://%s/hopper.png%%00.txt", dir);
    image_fails("%00", u, &lim, 400, "%00");
    snprintf(u, sizeof u, "file://%s/notes.png", dir);
    image_fails("text named .png", u, &lim, 400, "not a recognised image format");
    sm_limits small = { .media_dir = dir, .max_bytes = 1000 };
    snprintf(u, sizeof u, "file://%s/hopper.png", dir);
    image_fails("a file over max_bytes", u, &small, 413, "more than the limit of 1000");
    snprintf(u, sizeof u, "file://%s/bomb.png", dir);
    image_fails("a 20000x20000 PNG file", u, &lim, 413, "20000x20000");
    sm_limits gone = { .media_dir = "/nonexistent-media-dir" };
    image_fails("--media-dir missing", "file:///nonexistent-media-dir/a.png", &gone, 500, "--media-dir");
    tw_image_free(ref);
}

static void test_http(void) {
    sm_limits lim = { .timeout_ms = 5000 };
    tw_image *ref = NULL, *im;
    CHECK_OK(tw_image_load(media("images/png/pillow_hopper.png"), NULL, &ref), "reference png");
    im = image_ok("http", http("/png"), &lim);
    CHECK(same_image(ref, im), "http: the file's pixels");
    tw_image_free(im);
    im = image_ok("http redirect", http("/to-png"), &lim);
    CHECK(same_image(ref, im), "http redirect: the file's pixels");
    tw_image_free(im);
    image_fails("HTTP 404", http("/nothing.png"), &lim, 400, "answered HTTP 404");
    image_fails("redirect to file://", http("/to-file"), &lim, 400, "cannot download");
    sm_limits cap = { .timeout_ms = 5000, .max_bytes = 1 << 20 };
    double t0 = now_ms();
    image_fails("endless body over the cap", http("/endless"), &cap, 413, "larger than the limit of 1048576");
    CHECK(now_ms() - t0 < 3000, "the cap stopped the endless body (%.0f ms)", now_ms() - t0);
    t0 = now_ms();
    image_fails("Content-Length over the cap", http("/huge"), &cap, 413, "larger than the limit");
    CHECK(now_ms() - t0 < 3000, "refused at the header (%.0f ms)", now_ms() - t0);
    sm_limits fast = { .timeout_ms = 500 };
    t0 = now_ms();
    image_fails("a server that drips", http("/drip"), &fast, 400, "did not download within 500 ms");
    double dt = now_ms() - t0;
    CHECK(dt >= 450 && dt < 3000, "the timeout took %.0f ms", dt);
    im = image_ok("a slow but complete answer", http("/slowpng"), &lim);
    CHECK(same_image(ref, im), "slow answer: the pixels");
    tw_image_free(im);
    /* nobody listening */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    char u[128];
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && getsockname(fd, (struct sockaddr *)&sa, &sl) == 0) {
        snprintf(u, sizeof u, "http://127.0.0.1:%d/png", ntohs(sa.sin_port));   /* bound, not listening */
        image_fails("connection refused", u, &lim, 400, "cannot download");
    }
    if (fd >= 0) close(fd);
    tw_image_free(ref);
}

static void test_videos(void) {
    const char *clip = media("videos/testsrc2_h264_640x360_30fps_5s.mp4");
    sm_limits lim = { .media_dir = dir, .n_frames = 8, .timeout_ms = 10000 };
    tw_video *ref = NULL, *v = NULL;
    CHECK_OK(tw_video_open(clip, 8, &ref), clip);
    char *u = file_data_url("video/mp4", clip);
    CHECK(sm_load_video(u, &lim, &v, &last_status, last_err, sizeof last_err) == 0 && last_status == 200,
          "data:video/mp4: %s", last_err);
    CHECK(same_video(ref, v), "data:video/mp4: the file's frames and indices");
    tw_video_free(v), v = NULL;
    char fu[512];
    snprintf(fu, sizeof fu, "file://%s/clip.mp4", dir);
    CHECK(sm_load_video(fu, &lim, &v, &last_status, last_err, sizeof last_err) == 0, "file:// video: %s", last_err);
    CHECK(same_video(ref, v), "file:// video: the file's frames");
    tw_video_free(v), v = NULL;
    if (have_curl) {
        CHECK(sm_load_video(http("/mp4"), &lim, &v, &last_status, last_err, sizeof last_err) == 0, "http video: %s",
              last_err);
        CHECK(same_video(ref, v), "http video: the file's frames");
        tw_video_free(v), v = NULL;
    }
    char *w = file_data_url("video/webm", media("videos/testsrc_vp9_320x240_25fps_4s.webm"));
    CHECK(sm_load_video(w, &lim, &v, &last_status, last_err, sizeof last_err) == 0 && tw_video_n_frames(v) == 8,
          "data:video/webm: %s", last_err);
    tw_video_free(v), v = NULL;
    free(w);

    sm_limits small = { .n_frames = 8, .max_bytes = 100000 };
    video_fails("video over max_bytes", u, &small, 413, "more than the limit of 100000");
    sm_limits px = { .n_frames = 8, .max_pixels = 320 * 240 };
    video_fails("frames over max_pixels", u, &px, 413, "640x360");
    video_fails("data:image/png for a video", "data:image/png;base64,aGVsbG8=", &lim, 415, "expected video/mp4");
    video_fails("text as a video", "data:video/mp4;base64,aGVsbG8gd29ybGQ=", &lim, 400, "cannot open as a video");
    char *nm = file_data_url("video/mp4", media("videos/corrupt_truncated_no_moov.mp4"));
    video_fails("no moov atom", nm, &lim, 400, "moov atom not found");
    free(nm);
    char *gm = file_data_url("video/mp4", media("videos/corrupt_garbled_mdat_h264.mp4"));
    CHECK(sm_load_video(gm, &lim, &v, &last_status, last_err, sizeof last_err) == 0 && tw_video_n_frames(v) == 8,
          "garbled mdat decodes tolerantly: %s", last_err);
    tw_video_free(v), v = NULL;
    free(gm);
    /* truncated copies of a good clip: refused cleanly or decoded, never a crash or a hang */
    size_t len = 0;
    uint8_t *d = read_all(clip, &len);
    int fails = 0, oks = 0;
    for (int k = 1; d && k <= 9; k += 2) {
        char *t = data_url("video/mp4", d, len * (size_t)k / 10);
        int rc = sm_load_video(t, &lim, &v, &last_status, last_err, sizeof last_err);
        if (rc) {
            fails++;
            CHECK(rc == 400 && !strchr(last_err, '\n') && !strncmp(last_err, "video_url: ", 11),
                  "truncated to %d0%%: %d %s", k, rc, last_err);
        } else {
            oks++;
        }
        tw_video_free(v), v = NULL;
        free(t);
    }
    printf("  truncated data:video/mp4 copies: %d refused, %d decoded\n", fails, oks);
    free(d);
    char pl[512];
    snprintf(pl, sizeof pl, "#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXTINF:5.0,\nfile:%s\n#EXT-X-ENDLIST\n", clip);
    char *plu = data_url("video/mp4", (const uint8_t *)pl, strlen(pl));
    video_fails("an HLS playlist naming a file", plu, &lim, 400, "self-contained");
    free(plu);
    snprintf(fu, sizeof fu, "file://%s/../%s/clip.mp4", dir, strrchr(outside, '/') + 1);
    video_fails("file:// video outside", fu, &lim, 403, "outside --media-dir");
    tw_video_free(ref);
    free(u);
}

/* 12 BMP frames as data: URLs, frame i filled with 20 * i. */
static void test_frames(void) {
    char *urls[12];
    for (int i = 0; i < 12; i++) {
        size_t n = 0;
        uint8_t *b = bmp(6, 4, (uint8_t)(20 * i), &n);
        urls[i] = data_url("image/bmp", b, n);
        free(b);
    }
    sm_limits lim = { .n_frames = 4, .media_dir = dir, .timeout_ms = 5000 };
    tw_video *v = NULL;
    CHECK(sm_load_video_frames((const char *const *)urls, 12, &lim, &v, &last_status, last_err, sizeof last_err) == 0,
          "12 frames: %s", last_err);
    if (v) {
        const int64_t *ix = tw_video_frame_indices(v);
        CHECK(tw_video_n_frames(v) == 4 && ix[0] == 0 && ix[1] == 3 && ix[2] == 6 && ix[3] == 9, "frames 0 3 6 9");
        CHECK(tw_video_rgb(v)[3 * 6 * 4 * 3] == 180 && tw_video_width(v) == 6 && tw_video_height(v) == 4,
              "frame 9's colour (R=%d)", tw_video_rgb(v)[3 * 6 * 4 * 3]);
        tw_video_info vi;
        tw_video_get_info(v, &vi);
        CHECK(vi.total_frames == 12, "sampled from 12");
        tw_video_free(v), v = NULL;
    }
    /* only the sampled URLs are fetched: a broken frame 5 does not matter, a broken frame 6 does */
    char *keep5 = urls[5], *keep6 = urls[6];
    urls[5] = (char *)"data:image/bmp;base64,!!!!";
    CHECK(sm_load_video_frames((const char *const *)urls, 12, &lim, &v, &last_status, last_err, sizeof last_err) == 0,
          "an unsampled broken frame is not read: %s", last_err);
    tw_video_free(v), v = NULL;
    urls[6] = (char *)"data:image/bmp;base64,!!!!";
    int rc = sm_load_video_frames((const char *const *)urls, 12, &lim, &v, &last_status, last_err, sizeof last_err);
    CHECK(rc == 400 && !v && strstr(last_err, "video_url[6]: invalid base64 at byte 22"), "sampled broken frame: %s",
          last_err);
    printf("  %-34s %d %s\n", "a broken sampled frame", last_status, last_err);
    urls[5] = keep5, urls[6] = keep6;
    /* another size */
    size_t n = 0;
    uint8_t *b = bmp(5, 4, 1, &n);
    char *odd = data_url("image/bmp", b, n);
    free(b);
    free(urls[3]);
    urls[3] = odd;
    rc = sm_load_video_frames((const char *const *)urls, 12, &lim, &v, &last_status, last_err, sizeof last_err);
    CHECK(rc == 400 && !v && strstr(last_err, "video_url: video frame 3: frame image is 5x4"), "size: %s", last_err);
    printf("  %-34s %d %s\n", "a frame of another size", last_status, last_err);
    free(odd);
    size_t m = 0;
    b = bmp(6, 4, 60, &m);
    urls[3] = data_url("image/bmp", b, m);
    free(b);
    /* frames from every source: data:, file://, http */
    char fu[512];
    snprintf(fu, sizeof fu, "file://%s/hopper.png", dir);
    const char *mixed[3] = { have_curl ? http("/png") : fu, fu, have_curl ? http("/to-png") : fu };
    lim.n_frames = 0;
    CHECK(sm_load_video_frames(mixed, 3, &lim, &v, &last_status, last_err, sizeof last_err) == 0 &&
              tw_video_n_frames(v) == 3, "mixed sources: %s", last_err);
    tw_video_free(v), v = NULL;
    rc = sm_load_video_frames((const char *const *)urls, 0, &lim, &v, &last_status, last_err, sizeof last_err);
    CHECK(rc == 400 && strstr(last_err, "video_url: an empty list"), "empty list: %s", last_err);
    /* more frames than a video may keep: refused before any is fetched (all would be the broken one) */
    const char **many = malloc(5000 * sizeof *many);
    for (int i = 0; i < 5000; i++) many[i] = "data:image/bmp;base64,!!!!";
    rc = sm_load_video_frames(many, 5000, &lim, &v, &last_status, last_err, sizeof last_err);
    CHECK(rc == 413 && strstr(last_err, "video_url: 5000 frames, more than the limit"), "5000 frames: %s", last_err);
    lim.n_frames = 4;
    rc = sm_load_video_frames(many, 5000, &lim, &v, &last_status, last_err, sizeof last_err);
    CHECK(rc == 400 && strstr(last_err, "video_url[0]: invalid base64"), "5000 frames, 4 sampled: %s", last_err);
    lim.n_frames = 0;
    free(many);
    const char *outs[2] = { fu, "file:///etc/passwd" };
    rc = sm_load_video_frames(outs, 2, &lim, &v, &last_status, last_err, sizeof last_err);
    CHECK(rc == 403 && strstr(last_err, "video_url[1]: file:///etc/passwd is outside"), "frame outside: %s", last_err);
    if (!have_curl) {
        for (int i = 0; i < 12; i++) free(urls[i]);
        return;
    }
    /* one timeout for the whole list: three slow frames of about 600 ms each, 1000 ms in all */
    const char *slow[3] = { http("/slowpng"), http("/slowpng"), http("/slowpng") };
    sm_limits quick = { .timeout_ms = 1000 };
    double t0 = now_ms();
    rc = sm_load_video_frames(slow, 3, &quick, &v, &last_status, last_err, sizeof last_err);
    double dt = now_ms() - t0;
    CHECK(rc == 400 && !v && (strstr(last_err, "did not download") || strstr(last_err, "no time left")),
          "slow frames: %d %s", rc, last_err);
    CHECK(dt < 2500, "one deadline for all frames: %.0f ms", dt);
    printf("  %-34s %d %s (%.0f ms)\n", "three slow frames, 1 s in all", last_status, last_err, dt);
    for (int i = 0; i < 12; i++) free(urls[i]);
}

/* The media dir: hopper.png, "a b.png", clip.mp4, bomb.png, notes.png (text), sub/, a FIFO, and
** symbolic links in (inner-link.png) and out (out-link.png, dir-link, zero-link); next to it
** "<dir>-out" with its own hopper.png and clip.mp4, "<dir>-evil" (a sibling sharing the prefix)
** and "<dir>-link" -> dir. */
static bool make_dirs(void) {
    snprintf(dir, sizeof dir, "/tmp/tw_test_serve_media_%d", (int)getpid());
    snprintf(outside, sizeof outside, "%s-out", dir);
    char p[512], q[600];
    if (mkdir(dir, 0700) != 0 || mkdir(outside, 0700) != 0) return false;
    size_t n = 0;
    uint8_t *png = read_all(media("images/png/pillow_hopper.png"), &n), *mp4 = NULL;
    size_t mn = 0;
    mp4 = read_all(media("videos/testsrc2_h264_640x360_30fps_5s.mp4"), &mn);
    if (!png || !mp4) return false;
    bool ok = true;
    const char *files[] = { "hopper.png", "a b.png" };
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        ok &= write_all(p, png, n);
    }
    snprintf(p, sizeof p, "%s/hopper.png", outside);
    ok &= write_all(p, png, n);
    snprintf(p, sizeof p, "%s/clip.mp4", dir);
    ok &= write_all(p, mp4, mn);
    snprintf(p, sizeof p, "%s/clip.mp4", outside);
    ok &= write_all(p, mp4, mn);
    uint8_t b[128];
    size_t bn = bomb_png(b, 20000, 20000);
    snprintf(p, sizeof p, "%s/bomb.png", dir);
    ok &= write_all(p, b, bn);
    snprintf(p, sizeof p, "%s/notes.png", dir);
    ok &= write_all(p, "just text\n", 10);
    snprintf(p, sizeof p, "%s/sub", dir);
    ok &= mkdir(p, 0700) == 0;
    snprintf(p, sizeof p, "%s/fifo", dir);
    ok &= mkfifo(p, 0600) == 0;
    snprintf(p, sizeof p, "%s/inner-link.png", dir);
    ok &= symlink("hopper.png", p) == 0;
    snprintf(p, sizeof p, "%s/out-link.png", dir);
    snprintf(q, sizeof q, "%s/hopper.png", outside);
    ok &= symlink(q, p) == 0;
    snprintf(p, sizeof p, "%s/dir-link", dir);
    ok &= symlink(outside, p) == 0;
    snprintf(p, sizeof p, "%s/zero-link", dir);
    ok &= symlink("/dev/zero", p) == 0;
    snprintf(p, sizeof p, "%s-evil", dir);
    ok &= mkdir(p, 0700) == 0;
    snprintf(q, sizeof q, "%s/hopper.png", p);
    ok &= write_all(q, png, n);
    snprintf(p, sizeof p, "%s-link", dir);
    ok &= symlink(dir, p) == 0;
    free(png);
    free(mp4);
    return ok;
}

static void remove_dirs(void) {
    static const char *const in[] = { "hopper.png", "a b.png", "clip.mp4", "bomb.png", "notes.png", "fifo",
                                      "inner-link.png", "out-link.png", "dir-link", "zero-link" };
    char p[512];
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, in[i]);
        remove(p);
    }
    snprintf(p, sizeof p, "%s/sub", dir), rmdir(p);
    rmdir(dir);
    snprintf(p, sizeof p, "%s/hopper.png", outside), remove(p);
    snprintf(p, sizeof p, "%s/clip.mp4", outside), remove(p);
    rmdir(outside);
    snprintf(p, sizeof p, "%s-evil/hopper.png", dir), remove(p);
    snprintf(p, sizeof p, "%s-evil", dir), rmdir(p);
    snprintf(p, sizeof p, "%s-link", dir), remove(p);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    bool dirs = make_dirs();
    CHECK(dirs, "scratch media directories in /tmp");
    png_data = read_all(media("images/png/pillow_hopper.png"), &png_len);
    mp4_data = read_all(media("videos/testsrc2_h264_640x360_30fps_5s.mp4"), &mp4_len);
    CHECK(png_data && mp4_data, "test media readable");
    bool srv = srv_start();
    CHECK(srv, "loopback server started");
    if (dirs && png_data && mp4_data && srv) {
        test_data_images();
        test_schemes();
        test_files();
        have_curl = strstr(tw_build_info(), "download:libcurl") != NULL;
        if (have_curl) test_http();
        else printf("  (built without libcurl: http checks skipped)\n");
        if (strstr(tw_build_info(), "video:ffmpeg")) test_videos();
        else printf("  (built without FFmpeg: video checks skipped)\n");
        test_frames();
    }
    if (srv) srv_end();
    remove_dirs();
    free(png_data);
    free(mp4_data);
    return th_report();
}
