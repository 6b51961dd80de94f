/*
** tool_hubserver.c — a loopback stand-in for the Hugging Face hub, for tests/test_hub.c.
**
**   tool_hubserver [model-dir]      (default: $TOWER_FIXTURES/tiny-towervision)
**
** Listens on 127.0.0.1 at a port chosen by the OS, prints "PORT <n>" on stdout once listening,
** and exits on SIGTERM/SIGINT or after 120 s, so a test that dies cannot leave it behind for long.
** It serves the model directory in the hub's URL layout under several repo names:
**
**   test/tiny     normal. Revisions "main" and "v1.0" (two different commits) and both commits.
**                 LFS-like files (*.safetensors, tokenizer.json) answer a 302 to /cdn/... on a
**                 second port (another origin, like the hub's storage host, which must never
**                 see the token) with X-Linked-Etag = sha256 and X-Linked-Size; small files are
**                 served directly with a stable 40-hex ETag (a stand-in for the git blob sha1).
**   test/private  like tiny, but 401 without "Authorization: Bearer secret-token".
**   test/flaky    the first GET of model.safetensors from the CDN drops the connection after
**                 1 MiB; later requests are served normally (Range honoured).
**   test/corrupt  the CDN serves model.safetensors with one byte flipped (sha256 mismatch).
**   test/sharded  model.safetensors split into two shards plus model.safetensors.index.json.
**   anything else 404 with X-Error-Code as the hub sends it.
**
** GET /stats answers {"requests": n, "cdn_requests": n, "cdn_bytes": n, "drops": n,
** "cdn_auth": n} (the /stats requests themselves are not counted) so a test can prove that
** offline mode made no request and that no token reached the CDN origin.
*/
#include "hub.h"

#include <dirent.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#define MAX_FILES 64
#define COMMIT_MAIN "1111111111111111111111111111111111111111"
#define COMMIT_V1   "2222222222222222222222222222222222222222"
#define TOKEN       "secret-token"
#define DROP_AFTER  (1u << 20)

typedef struct hfile {
    char    *name;
    uint8_t *data;
    size_t   len;
    char     sha256[65];
    bool     lfs;
} hfile;

enum { REPO_TINY, REPO_PRIVATE, REPO_FLAKY, REPO_CORRUPT, REPO_SHARDED, N_REPOS };
static const char *const repo_names[N_REPOS] = { "tiny", "private", "flaky", "corrupt", "sharded" };

typedef struct repo {
    hfile files[MAX_FILES];
    int   n;
} repo;

static repo repos[N_REPOS];
static uint8_t *corrupt_copy;          /* model.safetensors with one byte flipped */
static atomic_long n_requests, n_cdn, cdn_bytes, n_drops, flaky_gets, cdn_auth;
static unsigned cdn_port;              /* the second daemon, serving only /cdn/ */
static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

/* ---- the model files ------------------------------------------------------------------------- */

static bool is_lfs(const char *name) {
    size_t n = strlen(name);
    return (n > 12 && !strcmp(name + n - 12, ".safetensors")) || !strcmp(name, "tokenizer.json");
}

static void add_file(repo *r, const char *name, uint8_t *data, size_t len) {
    if (r->n == MAX_FILES) return;
    hfile *f = &r->files[r->n++];
    f->name = strdup(name);
    f->data = data;
    f->len = len;
    f->lfs = is_lfs(name);
    tw_sha256 s;
    tw_sha256_init(&s);
    tw_sha256_update(&s, data, len);
    tw_sha256_final_hex(&s, f->sha256);
}

static hfile *find_file(repo *r, const char *name) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->files[i].name, name)) return &r->files[i];
    return NULL;
}

/* Loads every regular file of dir into repos tiny/private/flaky/corrupt (sharing the bytes), and
** builds the sharded variant. Data buffers are owned by the tiny repo (and the sharded extras). */
static int load_model(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "tool_hubserver: cannot open %s\n", dir);
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *path = tw_path_join(dir, e->d_name);
        char *data = NULL;
        size_t len = 0;
        struct stat st;
        if (path && stat(path, &st) == 0 && S_ISREG(st.st_mode) && tw_read_file(path, &data, &len) == TW_OK)
            add_file(&repos[REPO_TINY], e->d_name, (uint8_t *)data, len);
        free(path);
    }
    closedir(d);
    repo *t = &repos[REPO_TINY];
    for (int k = REPO_PRIVATE; k <= REPO_CORRUPT; k++) {
        repos[k].n = t->n;
        for (int i = 0; i < t->n; i++) {
            repos[k].files[i] = t->files[i];
            repos[k].files[i].name = strdup(t->files[i].name);
        }
    }
    hfile *w = find_file(t, "model.safetensors");
    if (!w || w->len < 2) return 0;
    corrupt_copy = malloc(w->len);
    memcpy(corrupt_copy, w->data, w->len);
    corrupt_copy[w->len / 2] ^= 0x40;
    find_file(&repos[REPO_CORRUPT], "model.safetensors")->data = corrupt_copy;   /* etag stays */

    repo *s = &repos[REPO_SHARDED];
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->files[i].name, "model.safetensors") != 0) {
            s->files[s->n] = t->files[i];
            s->files[s->n++].name = strdup(t->files[i].name);
        }
    size_t half = w->len / 2;
    add_file(s, "model-00001-of-00002.safetensors", w->data, half);
    add_file(s, "model-00002-of-00002.safetensors", w->data + half, w->len - half);
    char *index = NULL;
    if (asprintf(&index, "{\"metadata\": {\"total_size\": %zu}, \"weight_map\": {"
                 "\"a.weight\": \"model-00001-of-00002.safetensors\", "
                 "\"b.weight\": \"model-00002-of-00002.safetensors\", "
                 "\"c.weight\": \"model-00002-of-00002.safetensors\"}}\n", w->len) < 0)
        return -1;
    add_file(s, "model.safetensors.index.json", (uint8_t *)index, strlen(index));
    return 0;
}

static void free_model(void) {
    repo *t = &repos[REPO_TINY], *s = &repos[REPO_SHARDED];
    for (int i = 0; i < t->n; i++) free(t->files[i].data);
    free(find_file(s, "model.safetensors.index.json") ? find_file(s, "model.safetensors.index.json")->data : NULL);
    for (int k = 0; k < N_REPOS; k++)
        for (int i = 0; i < repos[k].n; i++) free(repos[k].files[i].name);
    free(corrupt_copy);
}

/* ---- HTTP ------------------------------------------------------------------------------------ */

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned code, const char *error_code, const char *msg) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(msg), (void *)msg, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "text/plain");
    if (error_code) MHD_add_response_header(r, "X-Error-Code", error_code);
    MHD_add_response_header(r, "X-Error-Message", msg);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

/* Streams bytes for the flaky repo, failing the connection once DROP_AFTER bytes went out. */
typedef struct dropper {
    const uint8_t *data;
    size_t len, drop_at;
} dropper;

static ssize_t drop_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    dropper *d = cls;
    if (pos >= d->drop_at) {
        atomic_fetch_add(&n_drops, 1);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = max;
    if (n > d->drop_at - pos) n = d->drop_at - pos;
    memcpy(buf, d->data + pos, n);
    return (ssize_t)n;
}

/* Serves data honouring "Range: bytes=a-[b]". drop: fail the connection part way. */
static enum MHD_Result send_bytes(struct MHD_Connection *c, const uint8_t *data, size_t len, const char *etag,
                                  const char *commit, bool drop) {
    const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
    size_t from = 0, to = len ? len - 1 : 0;
    unsigned code = MHD_HTTP_OK;
    if (range) {
        unsigned long long a = 0, b = 0;
        int n = sscanf(range, "bytes=%llu-%llu", &a, &b);
        if (n < 1 || a >= len || (n == 2 && b < a)) {
            char cr[64];
            snprintf(cr, sizeof cr, "bytes */%zu", len);
            struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
            MHD_add_response_header(r, "Content-Range", cr);
            enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_RANGE_NOT_SATISFIABLE, r);
            MHD_destroy_response(r);
            return ret;
        }
        from = (size_t)a;
        if (n == 2 && b < to) to = (size_t)b;
        code = MHD_HTTP_PARTIAL_CONTENT;
    }
    size_t n = len ? to - from + 1 : 0;
    struct MHD_Response *r;
    dropper *d = NULL;
    if (drop && n > DROP_AFTER) {
        d = malloc(sizeof *d);
        *d = (dropper){ data + from, n, DROP_AFTER };
        r = MHD_create_response_from_callback(n, 64 * 1024, drop_reader, d, free);
    } else {
        r = MHD_create_response_from_buffer(n, (void *)(data + from), MHD_RESPMEM_PERSISTENT);
    }
    if (code == MHD_HTTP_PARTIAL_CONTENT) {
        char cr[96];
        snprintf(cr, sizeof cr, "bytes %zu-%zu/%zu", from, to, len);
        MHD_add_response_header(r, "Content-Range", cr);
    }
    MHD_add_response_header(r, "Accept-Ranges", "bytes");
    if (etag) MHD_add_response_header(r, "ETag", etag);
    if (commit) MHD_add_response_header(r, "X-Repo-Commit", commit);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static int find_repo(const char *name, size_t n) {
    for (int k = 0; k < N_REPOS; k++)
        if (strlen(repo_names[k]) == n && !strncmp(repo_names[k], name, n)) return k;
    return -1;
}

/* The commit a revision names in repo k, or NULL. Only tiny has a second revision. */
static const char *commit_of(int k, const char *rev) {
    if (!strcmp(rev, "main") || !strcmp(rev, COMMIT_MAIN)) return COMMIT_MAIN;
    if (k == REPO_TINY && (!strcmp(rev, "v1.0") || !strcmp(rev, COMMIT_V1))) return COMMIT_V1;
    return NULL;
}

static bool authorized(struct MHD_Connection *c, int k) {
    if (k != REPO_PRIVATE) return true;
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    return a && !strcmp(a, "Bearer " TOKEN);
}

static enum MHD_Result handle_api(struct MHD_Connection *c, const char *path) {
    /* path: test/<repo>/revision/<rev> */
    const char *slash = strchr(path, '/');
    if (strncmp(path, "test/", 5) != 0 || !slash) return send_text(c, 404, "RepoNotFound", "Repository not found");
    const char *name = path + 5, *rv = strstr(name, "/revision/");
    int k = rv ? find_repo(name, (size_t)(rv - name)) : -1;
    if (k < 0) return send_text(c, 404, "RepoNotFound", "Repository not found");
    if (!authorized(c, k)) return send_text(c, 401, NULL, "Invalid username or password.");
    const char *commit = commit_of(k, rv + 10);
    if (!commit) return send_text(c, 404, "RevisionNotFound", "Invalid rev id");
    json_t *j = json_object(), *sib = json_array();
    json_object_set_new(j, "id", json_sprintf("test/%s", repo_names[k]));
    json_object_set_new(j, "sha", json_string(commit));
    for (int i = 0; i < repos[k].n; i++) {
        json_t *f = json_object();
        json_object_set_new(f, "rfilename", json_string(repos[k].files[i].name));
        json_array_append_new(sib, f);
    }
    json_object_set_new(j, "siblings", sib);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle_resolve(struct MHD_Connection *c, const char *path) {
    /* path: test/<repo>/resolve/<rev>/<file> */
    if (strncmp(path, "test/", 5) != 0) return send_text(c, 404, "RepoNotFound", "Repository not found");
    const char *name = path + 5, *rs = strstr(name, "/resolve/");
    int k = rs ? find_repo(name, (size_t)(rs - name)) : -1;
    if (k < 0) return send_text(c, 404, "RepoNotFound", "Repository not found");
    if (!authorized(c, k)) return send_text(c, 401, NULL, "Invalid username or password.");
    const char *rev = rs + 9, *file = strchr(rev, '/');
    char revbuf[128];
    if (!file || (size_t)(file - rev) >= sizeof revbuf) return send_text(c, 404, "EntryNotFound", "Entry not found");
    memcpy(revbuf, rev, (size_t)(file - rev));
    revbuf[file - rev] = 0;
    const char *commit = commit_of(k, revbuf);
    if (!commit) return send_text(c, 404, "RevisionNotFound", "Invalid rev id");
    hfile *f = find_file(&repos[k], file + 1);
    if (!f) return send_text(c, 404, "EntryNotFound", "Entry not found");
    char etag[80];
    if (f->lfs) {
        char loc[512], size[32];
        snprintf(loc, sizeof loc, "http://127.0.0.1:%u/cdn/%s/%s", cdn_port, repo_names[k], f->name);
        snprintf(etag, sizeof etag, "\"%s\"", f->sha256);
        snprintf(size, sizeof size, "%zu", f->len);
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Location", loc);
        MHD_add_response_header(r, "X-Linked-Etag", etag);
        MHD_add_response_header(r, "X-Linked-Size", size);
        MHD_add_response_header(r, "X-Repo-Commit", commit);
        MHD_add_response_header(r, "ETag", etag);
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_FOUND, r);
        MHD_destroy_response(r);
        return ret;
    }
    snprintf(etag, sizeof etag, "\"%.40s\"", f->sha256);   /* stands in for the git blob sha1 */
    return send_bytes(c, f->data, f->len, etag, commit, false);
}

static enum MHD_Result handle_cdn(struct MHD_Connection *c, const char *path, bool is_get) {
    const char *slash = strchr(path, '/');
    int k = slash ? find_repo(path, (size_t)(slash - path)) : -1;
    hfile *f = k >= 0 ? find_file(&repos[k], slash + 1) : NULL;
    if (!f) return send_text(c, 404, NULL, "Not found");
    atomic_fetch_add(&n_cdn, 1);
    if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization")) atomic_fetch_add(&cdn_auth, 1);
    bool drop = k == REPO_FLAKY && is_get && !strcmp(f->name, "model.safetensors") &&
                atomic_fetch_add(&flaky_gets, 1) == 0;
    const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
    unsigned long long from = 0;
    if (range) sscanf(range, "bytes=%llu-", &from);
    if (is_get && from < f->len) atomic_fetch_add(&cdn_bytes, (long)(f->len - from));
    return send_bytes(c, f->data, f->len, NULL, NULL, drop);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **state) {
    (void)version; (void)upload; (void)upload_size; (void)state;
    bool is_cdn = cls != NULL;
    bool is_get = !strcmp(method, "GET"), is_head = !strcmp(method, "HEAD");
    if (!is_cdn && !strcmp(url, "/stats")) {
        char buf[256];
        snprintf(buf, sizeof buf, "{\"requests\": %ld, \"cdn_requests\": %ld, \"cdn_bytes\": %ld, \"drops\": %ld, "
                 "\"cdn_auth\": %ld}\n", atomic_load(&n_requests), atomic_load(&n_cdn), atomic_load(&cdn_bytes),
                 atomic_load(&n_drops), atomic_load(&cdn_auth));
        return send_text(c, 200, NULL, buf);
    }
    atomic_fetch_add(&n_requests, 1);
    if (!is_get && !is_head) return send_text(c, 405, NULL, "Method not allowed");
    if (is_cdn) return strncmp(url, "/cdn/", 5) ? send_text(c, 404, NULL, "Not found") : handle_cdn(c, url + 5, is_get);
    if (!strncmp(url, "/api/models/", 12)) return handle_api(c, url + 12);
    if (strstr(url, "/resolve/")) return handle_resolve(c, url + 1);
    return send_text(c, 404, "RepoNotFound", "Repository not found");
}

int main(int argc, char **argv) {
    char def[1024];
    const char *dir = argc > 1 ? argv[1] : NULL;
    if (!dir) {
        const char *fx = getenv("TOWER_FIXTURES");
        snprintf(def, sizeof def, "%s/tiny-towervision", fx && *fx ? fx : "../shared/fixtures");
        dir = def;
    }
    if (load_model(dir) != 0) return 1;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static int cdn_marker;
    const unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
    struct MHD_Daemon *cdn = MHD_start_daemon(flags, 0, NULL, NULL, handler, &cdn_marker, MHD_OPTION_SOCK_ADDR, &sa,
                                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
    const union MHD_DaemonInfo *info = cdn ? MHD_get_daemon_info(cdn, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    cdn_port = info ? info->port : 0;
    struct MHD_Daemon *d = MHD_start_daemon(flags, 0, NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
    if (!d || !cdn_port) {
        fprintf(stderr, "tool_hubserver: cannot start the HTTP servers\n");
        if (d) MHD_stop_daemon(d);
        if (cdn) MHD_stop_daemon(cdn);
        free_model();
        return 1;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("PORT %u\n", info ? (unsigned)info->port : 0u);
    fflush(stdout);
    /* Bounded life: a test that crashed before killing us does not leave a server behind. */
    for (int ticks = 0; !stop && ticks < 120 * 20; ticks++) {
        struct timespec ts = { 0, 50000000L };
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(d);
    MHD_stop_daemon(cdn);
    free_model();
    return 0;
}
