/*
** serve_http.c — the HTTP side of `tower serve`, on libmicrohttpd with one thread per connection.
**
** A connection's thread reads the body (refusing it with 413 as soon as it passes --max-body),
** checks the API key (constant-time), hands the body to serve_api.c, and then either answers at
** once or waits for its job: a stream is sent event by event as the scheduler queues them, a plain
** request when the job is done. While it waits the thread watches its socket, so a client that
** hangs up cancels its job within 0.1 s and frees its sequence for others.
**
** Bounds against hostile clients: --max-connections at once, --timeout seconds of idleness per
** connection (slow headers or bodies), 32 KiB of headers (libmicrohttpd's memory limit),
** --max-body bytes of body.
*/
#ifdef TW_HAVE_HTTPD
#include "serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#if MHD_VERSION < 0x00097002
typedef int mhd_result;
#else
typedef enum MHD_Result mhd_result;
#endif

double now_ms(void);

enum { R_NONE = 0, R_HEALTH, R_MODELS, R_METRICS, R_CHAT, R_COMPLETION, R_TOKENIZE, R_DETOKENIZE, R_TEMPLATE, R_OPTIONS };

typedef struct conn {
    int     route;
    char   *body;
    size_t  len, cap;
    bool    refused;        /* a reply was queued before the body ended                         */
} conn;

/* ---- small helpers -------------------------------------------------------------------------------- */

/* The client closed its end (or reset): nothing more will be read from or sent to it. */
static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return true;
    if (p.revents & POLLIN) {
        char b;
        ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        return n == 0;
    }
    return false;
}

static int conn_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* Compares in time independent of where the strings differ (API keys). */
static bool same_secret(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = (unsigned char)(la != lb);
    for (size_t i = 0; i < lb; i++) d |= (unsigned char)(a[i % (la ? la : 1)] ^ b[i]);
    return d == 0 && la == lb;
}

static void add_common_headers(sv_server *sv, struct MHD_Response *resp, const char *type) {
    if (type) MHD_add_response_header(resp, "Content-Type", type);
    if (sv->cfg->cors) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", sv->cfg->cors);
        MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    }
}

static mhd_result send_reply(sv_server *sv, struct MHD_Connection *c, sv_reply *r) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(r->len, r->body ? r->body : (char *)"", MHD_RESPMEM_MUST_COPY);
    free(r->body);
    r->body = NULL;
    if (!resp) return MHD_NO;
    add_common_headers(sv, resp, r->type ? r->type : "application/json");
    if (r->status == 405) MHD_add_response_header(resp, "Allow", "GET, POST, OPTIONS");
    if (r->status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    if (r->status == 429 || r->status == 503) MHD_add_response_header(resp, "Retry-After", "1");
    if (r->status >= 400) atomic_fetch_add(&sv->n_http_errors, 1);
    mhd_result ok = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static mhd_result send_error(sv_server *sv, struct MHD_Connection *c, int status, const char *param, const char *msg) {
    sv_reply r = { 0 };
    sv_error(&r, status, param, "%s", msg);
    return send_reply(sv, c, &r);
}

/* ---- streams ---------------------------------------------------------------------------------------- */

typedef struct stream {
    sv_server *sv;
    sv_job    *job;
    int        fd;
    sv_event  *cur;         /* the event being sent                                              */
    size_t     off;
} stream;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *st = cls;
    sv_job *j = st->job;
    (void)pos;
    while (!st->cur) {
        pthread_mutex_lock(&j->mu);
        for (;;) {
            if (j->head) {
                st->cur = j->head;
                j->head = j->head->next;
                if (!j->head) j->tail = NULL;
                break;
            }
            if (j->done) {
                pthread_mutex_unlock(&j->mu);
                return MHD_CONTENT_READER_END_OF_STREAM;
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
            pthread_cond_timedwait(&j->cv, &j->mu, &ts);
            if (!j->head && !j->done && client_gone(st->fd)) {
                atomic_store(&j->cancelled, true);
                pthread_mutex_unlock(&j->mu);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
        }
        pthread_mutex_unlock(&j->mu);
        st->off = 0;
    }
    size_t n = st->cur->len - st->off;
    if (n > max) n = max;
    memcpy(buf, st->cur->data + st->off, n);
    st->off += n;
    if (st->off == st->cur->len) {
        free(st->cur->data);
        free(st->cur);
        st->cur = NULL;
    }
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream *st = cls;
    pthread_mutex_lock(&st->job->mu);
    bool done = st->job->done;
    pthread_mutex_unlock(&st->job->mu);
    if (!done) atomic_store(&st->job->cancelled, true);   /* the client went away mid-stream */
    if (st->cur) {
        free(st->cur->data);
        free(st->cur);
    }
    sv_job_unref(st->job);
    atomic_fetch_sub(&st->sv->n_streams, 1);
    free(st);
}

static mhd_result start_stream(sv_server *sv, struct MHD_Connection *c, sv_job *j) {
    stream *st = calloc(1, sizeof *st);
    if (!st) {
        sv_job_unref(j);
        return send_error(sv, c, 500, NULL, "out of memory");
    }
    st->sv = sv;
    st->job = j;
    st->fd = conn_fd(c);
    atomic_fetch_add(&sv->n_streams, 1);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return MHD_NO;
    }
    add_common_headers(sv, resp, "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    mhd_result ok = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    return ok;
}

/* Waits for a non-stream job, watching the client; then its reply. */
static mhd_result finish_job(sv_server *sv, struct MHD_Connection *c, sv_job *j) {
    int fd = conn_fd(c);
    pthread_mutex_lock(&j->mu);
    while (!j->done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
        if (!j->done && client_gone(fd)) {
            atomic_store(&j->cancelled, true);
            pthread_mutex_unlock(&j->mu);
            sv_job_unref(j);
            return MHD_NO;   /* nobody to answer: close */
        }
    }
    pthread_mutex_unlock(&j->mu);
    sv_reply r = { 0 };
    sv_api_job_reply(sv, j, &r);
    sv_job_unref(j);
    return send_reply(sv, c, &r);
}

/* ---- the handler ------------------------------------------------------------------------------------- */

static int route_of(const char *url, const char *method, int *status) {
    static const struct { const char *path; const char *method; int route; } routes[] = {
        { "/health", "GET", R_HEALTH },           { "/v1/health", "GET", R_HEALTH },
        { "/v1/models", "GET", R_MODELS },        { "/metrics", "GET", R_METRICS },
        { "/v1/chat/completions", "POST", R_CHAT }, { "/v1/completions", "POST", R_COMPLETION },
        { "/tokenize", "POST", R_TOKENIZE },      { "/detokenize", "POST", R_DETOKENIZE },
        { "/apply-template", "POST", R_TEMPLATE },
    };
    bool path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(url, routes[i].path) != 0) continue;
        path_known = true;
        if (!strcmp(method, "OPTIONS")) return R_OPTIONS;
        if (!strcmp(method, routes[i].method) || (!strcmp(method, "HEAD") && !strcmp(routes[i].method, "GET"))) return routes[i].route;
    }
    *status = path_known ? 405 : 404;
    return R_NONE;
}

static mhd_result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
                          const char *upload, size_t *upload_size, void **con_cls) {
    sv_server *sv = cls;
    (void)version;
    conn *cn = *con_cls;
    if (!cn) {
        /* first call: headers only */
        atomic_fetch_add(&sv->n_http, 1);
        cn = calloc(1, sizeof *cn);
        if (!cn) return MHD_NO;
        *con_cls = cn;
        int status = 0;
        cn->route = route_of(url, method, &status);
        if (cn->route == R_NONE) {
            cn->refused = true;
            char msg[300];
            snprintf(msg, sizeof msg, status == 404 ? "no route %.200s" : "method %.20s is not allowed on %.200s",
                     status == 404 ? url : method, url);
            if (status == 404) return send_error(sv, c, 404, NULL, msg);
            sv_reply r = { 0 };
            sv_error(&r, 405, NULL, "%s", msg);
            return send_reply(sv, c, &r);
        }
        if (cn->route == R_OPTIONS) return MHD_YES;
        if (cn->route != R_HEALTH && sv->cfg->api_key) {
            const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
            bool ok = auth && !strncmp(auth, "Bearer ", 7) && same_secret(auth + 7, sv->cfg->api_key);
            if (!ok) {
                cn->refused = true;
                return send_error(sv, c, 401, NULL, auth ? "invalid API key" : "missing API key: send 'Authorization: Bearer KEY'");
            }
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > sv->cfg->max_body) {
            cn->refused = true;
            char msg[200];
            snprintf(msg, sizeof msg, "the body is %.30s bytes; this server takes at most %zu (--max-body)", cl, sv->cfg->max_body);
            return send_error(sv, c, 413, NULL, msg);
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!cn->refused) {
            if (cn->len + *upload_size > sv->cfg->max_body) {
                cn->refused = true;
                *upload_size = 0;
                char msg[200];
                snprintf(msg, sizeof msg, "the body is larger than %zu bytes (--max-body)", sv->cfg->max_body);
                return send_error(sv, c, 413, NULL, msg);
            }
            if (cn->len + *upload_size + 1 > cn->cap) {
                size_t cap = cn->cap ? cn->cap : 4096;
                while (cap < cn->len + *upload_size + 1) cap *= 2;
                char *b = realloc(cn->body, cap);
                if (!b) return MHD_NO;
                cn->body = b;
                cn->cap = cap;
            }
            memcpy(cn->body + cn->len, upload, *upload_size);
            cn->len += *upload_size;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cn->refused) return MHD_YES;

    /* the whole request is here */
    if (cn->route == R_OPTIONS) {
        sv_reply r = { .status = 204, .type = NULL };
        return send_reply(sv, c, &r);
    }
    if (cn->route == R_HEALTH) {
        bool up = atomic_load(&sv->ready) && !atomic_load(&sv->stopping);
        sv_reply r = { .status = up ? 200 : 503, .type = "application/json" };
        r.body = strdup(up ? "{\"status\":\"ok\"}" : atomic_load(&sv->stopping) ? "{\"status\":\"stopping\"}" : "{\"status\":\"loading\"}");
        r.len = r.body ? strlen(r.body) : 0;
        return send_reply(sv, c, &r);
    }
    if (!atomic_load(&sv->ready)) return send_error(sv, c, 503, NULL, "the model is loading; /health says when it is ready");
    if (atomic_load(&sv->stopping)) return send_error(sv, c, 503, NULL, "the server is shutting down");

    sv_reply r = { 0 };
    const char *body = cn->body ? cn->body : "";
    switch (cn->route) {
    case R_MODELS: sv_api_models(sv, &r); break;
    case R_METRICS: sv_api_metrics(sv, &r); break;
    case R_CHAT: sv_api_chat(sv, body, cn->len, &r); break;
    case R_COMPLETION: sv_api_completion(sv, body, cn->len, &r); break;
    case R_TOKENIZE: sv_api_tokenize(sv, body, cn->len, &r); break;
    case R_DETOKENIZE: sv_api_detokenize(sv, body, cn->len, &r); break;
    case R_TEMPLATE: sv_api_apply_template(sv, body, cn->len, &r); break;
    default: sv_error(&r, 404, NULL, "no route %s", url);
    }
    if (r.job) return r.job->stream ? start_stream(sv, c, r.job) : finish_job(sv, c, r.job);
    return send_reply(sv, c, &r);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    conn *cn = *con_cls;
    if (!cn) return;
    free(cn->body);
    free(cn);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    sv_server *sv = cls;
    if (!sv->cfg->verbose) return;
    fputs("tower serve: httpd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

/* ---- run ---------------------------------------------------------------------------------------------- */

int sv_http_start(sv_server *sv, struct MHD_Daemon **out) {
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    struct sockaddr *sa = NULL;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    const char *host = sv->cfg->host;
    if (!strcmp(host, "localhost")) host = "127.0.0.1";
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)sv->cfg->port);
        sa = (struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)sv->cfg->port);
        sa = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        fprintf(stderr, "tower serve: error: --host '%s' is not an IPv4 or IPv6 address (or localhost)\n", sv->cfg->host);
        return -1;
    }
#ifdef MHD_USE_POLL
    flags |= MHD_USE_POLL;
#endif
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)sv->cfg->port, NULL, NULL, handler, sv, MHD_OPTION_SOCK_ADDR, sa,
        MHD_OPTION_NOTIFY_COMPLETED, completed, sv, MHD_OPTION_CONNECTION_LIMIT, (unsigned)sv->cfg->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)sv->cfg->timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, sv, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "tower serve: error: cannot listen on %s:%d: %s\n", sv->cfg->host, sv->cfg->port,
                errno ? strerror(errno) : "libmicrohttpd failed to start");
        return -1;
    }
    *out = d;
    return 0;
}

int sv_http_port(struct MHD_Daemon *d) {
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    return di ? di->port : -1;
}

void sv_http_quiesce(struct MHD_Daemon *d) {
    if (d) MHD_quiesce_daemon(d);
}

void sv_http_stop(struct MHD_Daemon *d) {
    if (d) MHD_stop_daemon(d);
}
#endif /* TW_HAVE_HTTPD */
