/*
** test_hub.c — models by name: tw_hub_resolve against tests/tool_hubserver (a loopback stand-in
** for the hub) with a temporary Hugging Face cache. Checks the cache layout, reuse without
** requests, offline mode, revisions, authentication, 404s, resumption after a dropped connection,
** sha256 verification, shards, and that a local directory is returned unchanged.
** Bounded in time: the server exits by itself after 120 s and an alarm ends this test.
*/
#include "hub.h"
#include "testhelp.h"
#include "loopback_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define COMMIT_MAIN "1111111111111111111111111111111111111111"
#define COMMIT_V1   "2222222222222222222222222222222222222222"

static char  tmp_root[256];

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "test_hub: timed out\n";
    if (write(2, msg, sizeof msg - 1) < 0) {}
    if (server_pid > 0) kill(server_pid, SIGKILL);
    _exit(2);
}

#ifdef TW_HAVE_CURL
/* GET /stats over a plain socket (the test must not depend on libcurl) and pick one counter. */
static long stat_of(const char *key) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)server_port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = { 5, 0 };
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    long v = -1;
    char buf[4096];
    size_t n = 0;
    if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) {
        const char *req = "GET /stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if (write(s, req, strlen(req)) == (ssize_t)strlen(req)) {
            ssize_t r;
            while (n < sizeof buf - 1 && (r = read(s, buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)r;
        }
    }
    close(s);
    buf[n] = 0;
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(buf, pat);
    if (p) v = strtol(p + strlen(pat), NULL, 10);
    return v;
}

#endif

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

static bool has(const char *msg, const char *part) { return msg && strstr(msg, part) != NULL; }

/* a + b; freed at the end of the test (so paths can be built inline). */
static char *cat_kept[64];
static int   n_cat_kept;
static char *cat(const char *a, const char *b) {
    char *s = tw_asprintf("%s%s", a, b);
    if (!s || n_cat_kept == 64) abort();
    return cat_kept[n_cat_kept++] = s;
}

#ifdef TW_HAVE_CURL   /* helpers for the online tests */
static bool same_file(const char *a, const char *b) {
    char *da = NULL, *db = NULL;
    size_t la = 0, lb = 0;
    bool same = tw_read_file(a, &da, &la) == TW_OK && tw_read_file(b, &db, &lb) == TW_OK && la == lb &&
                memcmp(da, db, la) == 0;
    free(da);
    free(db);
    return same;
}

static void write_text(const char *path, const char *text, size_t len) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(text, 1, len, f);
        fclose(f);
    }
}

static char *read_text(const char *path) {
    char *d = NULL;
    size_t n = 0;
    return tw_read_file(path, &d, &n) == TW_OK ? d : NULL;
}

static const char *fixture_files[] = {
    "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
    "chat_template.jinja", "special_tokens_map.json", "preprocessor_config.json", "processor_config.json",
};
#define N_FIXTURE_FILES (sizeof fixture_files / sizeof fixture_files[0])

/* Every fixture file is in dir, byte-identical, as a relative symlink into ../../blobs/. */
static void check_snapshot(const char *dir, const char *what) {
    for (size_t i = 0; i < N_FIXTURE_FILES; i++) {
        char *p = tw_path_join(dir, fixture_files[i]);
        char target[512];
        ssize_t n = readlink(p, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
        CHECK(n > 0 && !strncmp(target, "../../blobs/", 12), "%s: %s is not a relative symlink into blobs (%s)",
              what, fixture_files[i], target);
        char *fx = th_path("tiny-towervision");
        char *ref = tw_path_join(fx, fixture_files[i]);
        CHECK(same_file(p, ref), "%s: %s differs from the fixture", what, fixture_files[i]);
        free(ref);
        free(p);
    }
}

typedef struct progress_log {
    int      calls;
    uint64_t last_done, last_total;
} progress_log;

static void on_progress(void *ud, const char *what, uint64_t done, uint64_t total) {
    progress_log *l = ud;
    if (strcmp(what, "model.safetensors") != 0) return;
    l->calls++;
    l->last_done = done;
    l->last_total = total;
}

/* Two threads resolving the same repo into one empty cache (the blob locks at work). */
typedef struct resolver {
    tw_hub_opts opts;
    tw_status   st;
    char       *dir;
    char        err[512];
} resolver;

static void *resolve_thread(void *arg) {
    resolver *r = arg;
    r->st = tw_hub_resolve("test/tiny", &r->opts, &r->dir);
    snprintf(r->err, sizeof r->err, "%s", tw_last_error());
    return NULL;
}
#endif

static void test_offline_units(void) {
    /* SHA-256 known answers (FIPS 180-2 examples). */
    char hex[65];
    tw_sha256 s;
    tw_sha256_init(&s);
    tw_sha256_final_hex(&s, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "sha256(\"\") = %s", hex);
    tw_sha256_init(&s);
    tw_sha256_update(&s, "abc", 3);
    tw_sha256_final_hex(&s, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "sha256(abc) = %s", hex);
    tw_sha256_init(&s);
    char a[1001];
    memset(a, 'a', sizeof a);
    for (int i = 0; i < 1000; i++) tw_sha256_update(&s, a, i % 2 ? 999 : 1001);   /* odd chunking */
    tw_sha256_final_hex(&s, hex);
    CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "sha256(1M a) = %s", hex);

    CHECK(tw_hub_is_repo_id("utter-project/TowerVision-2B"), "plain repo id");
    CHECK(tw_hub_is_repo_id("org/name@v1.0"), "repo id with a revision");
    CHECK(tw_hub_is_repo_id("org/name@refs/pr/1"), "repo id with a PR revision");
    CHECK(!tw_hub_is_repo_id("name"), "no org");
    CHECK(!tw_hub_is_repo_id("a/b/c"), "three parts");
    CHECK(!tw_hub_is_repo_id("../x"), "dot-dot org");
    CHECK(!tw_hub_is_repo_id("org/name@../../x"), "dot-dot revision");
    CHECK(!tw_hub_is_repo_id("org/name@"), "empty revision");
    CHECK(!tw_hub_is_repo_id(""), "empty");
    CHECK(!tw_hub_is_repo_id(th_path("tiny-towervision")), "an existing path is not a repo id");

    /* Cache root: HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub, else ~/.cache/... */
    char *saved[4];
    const char *vars[4] = { "HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HOME" };
    for (int i = 0; i < 4; i++) saved[i] = getenv(vars[i]) ? tw_strdup(getenv(vars[i])) : NULL;
    setenv("HF_HUB_CACHE", "/c1", 1); setenv("HF_HOME", "/h1", 1);
    setenv("XDG_CACHE_HOME", "/x1", 1); setenv("HOME", "/home1", 1);
    const char *want[4] = { "/c1", "/h1/hub", "/x1/huggingface/hub", "/home1/.cache/huggingface/hub" };
    for (int i = 0; i < 4; i++) {
        char *d = NULL;
        CHECK_OK(tw_hub_cache_dir(NULL, &d), "cache dir");
        CHECK(d && !strcmp(d, want[i]), "cache dir with %s unset first: %s, expected %s", vars[i], d, want[i]);
        free(d);
        unsetenv(vars[i]);
    }
    tw_hub_opts o = { .cache_dir = "/explicit" };
    char *d = NULL;
    CHECK_OK(tw_hub_cache_dir(&o, &d), "cache dir from opts");
    CHECK(d && !strcmp(d, "/explicit"), "opts.cache_dir wins");
    free(d);
    for (int i = 0; i < 4; i++) {
        if (saved[i]) setenv(vars[i], saved[i], 1);
        free(saved[i]);
    }

    /* A local directory is returned as is; a file or an unknown name is an error. */
    char *fx = th_path("tiny-towervision");
    d = NULL;
    CHECK_OK(tw_hub_resolve(fx, NULL, &d), "local directory");
    CHECK(d && !strcmp(d, fx), "local directory returned unchanged: %s", d);
    free(d);
    d = NULL;
    CHECK(tw_hub_resolve(th_path("tiny-towervision/config.json"), NULL, &d) == TW_E_ARG && !d, "a file is refused");
    CHECK(tw_hub_resolve("no_such_directory", NULL, &d) == TW_E_NOT_FOUND, "unknown name: %s", tw_last_error());
}

int main(void) {
    signal(SIGALRM, on_alarm);
    alarm(110);   /* below the server's own 120 s life */
    test_offline_units();

    snprintf(tmp_root, sizeof tmp_root, "/tmp/tw-hub-test-XXXXXX");
    if (!mkdtemp(tmp_root)) {
        CHECK(0, "mkdtemp: %s", strerror(errno));
        return th_report();
    }
    char *cache = cat(tmp_root, "/cache"), *home = cat(tmp_root, "/home");
    mkdir(home, 0755);
    setenv("HF_HUB_CACHE", cache, 1);
    setenv("HF_HOME", home, 1);
    const char *clear[] = { "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_OFFLINE",
                            "TRANSFORMERS_OFFLINE", "HUGGINGFACE_HUB_CACHE" };
    for (size_t i = 0; i < sizeof clear / sizeof clear[0]; i++) unsetenv(clear[i]);

#ifndef TW_HAVE_CURL
    char *d0 = NULL;
    CHECK(tw_hub_resolve("test/tiny", NULL, &d0) == TW_E_UNSUPPORTED && has(tw_last_error(), "libcurl"),
          "without libcurl: %s", tw_last_error());
    goto done;
#else
    if (!start_server(NULL)) {
        CHECK(0, "hub test server did not start");
        goto done;
    }
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", server_port);
    setenv("HF_ENDPOINT", endpoint, 1);

    char *dir = NULL;
    char *repo_dir = cat(cache, "/models--test--tiny");
    char *snap_main = cat(repo_dir, "/snapshots/" COMMIT_MAIN);
    char model_sha[65] = "";
    CHECK_OK(tw_sha256_file(th_path("tiny-towervision/model.safetensors"), model_sha), "fixture sha256");

    /* ---- offline with an empty cache: a clear error and no request ---- */
    setenv("HF_HUB_OFFLINE", "1", 1);
    CHECK(tw_hub_resolve("test/tiny", NULL, &dir) == TW_E_NOT_FOUND, "offline, empty cache");
    CHECK(has(tw_last_error(), "test/tiny") && has(tw_last_error(), "offline") && has(tw_last_error(), "no copy"),
          "offline message: %s", tw_last_error());
    CHECK(stat_of("requests") == 0, "offline made requests");
    unsetenv("HF_HUB_OFFLINE");

    /* ---- first download ---- */
    progress_log plog = { 0 };
    tw_hub_opts po = { .progress = on_progress, .progress_user_data = &plog };
    CHECK_OK(tw_hub_resolve("test/tiny", &po, &dir), "download test/tiny");
    CHECK(dir && !strcmp(dir, snap_main), "snapshot dir %s, expected %s", dir, snap_main);
    free(dir);
    dir = NULL;
    check_snapshot(snap_main, "test/tiny");
    char *ref = read_text(cat(repo_dir, "/refs/main"));
    CHECK(ref && !strcmp(ref, COMMIT_MAIN), "refs/main holds %s", ref ? ref : "(nothing)");
    free(ref);
    char *link = tw_path_join(snap_main, "model.safetensors"), target[256] = "";
    ssize_t tn = readlink(link, target, sizeof target - 1);
    target[tn > 0 ? tn : 0] = 0;
    CHECK(!strncmp(target, "../../blobs/", 12) && !strcmp(target + 12, model_sha), "weights blob named by sha256: %s",
          target);
    free(link);
    char *blob = tw_asprintf("%s/blobs/%s", repo_dir, model_sha), *inc = cat(blob, ".incomplete");
    CHECK(tw_file_exists(blob) && !tw_file_exists(inc), "blob in place, no .incomplete left");
    CHECK(plog.calls > 0 && plog.last_done == 33181472 && plog.last_total == 33181472,
          "progress: %d calls, last %llu/%llu", plog.calls, (unsigned long long)plog.last_done,
          (unsigned long long)plog.last_total);

    /* ---- the cache is reused without any request, online and offline ---- */
    long before = stat_of("requests");
    CHECK_OK(tw_hub_resolve("test/tiny", NULL, &dir), "second resolve");
    CHECK(dir && !strcmp(dir, snap_main), "second resolve dir");
    free(dir);
    dir = NULL;
    CHECK(stat_of("requests") == before, "second resolve made requests");
    setenv("HF_HUB_OFFLINE", "true", 1);
    CHECK_OK(tw_hub_resolve("test/tiny", NULL, &dir), "offline resolve from the cache");
    CHECK(dir && !strcmp(dir, snap_main), "offline dir");
    free(dir);
    dir = NULL;
    CHECK(tw_hub_resolve("test/sharded", NULL, &dir) == TW_E_NOT_FOUND && has(tw_last_error(), "offline") &&
          has(tw_last_error(), "test/sharded"), "offline uncached repo: %s", tw_last_error());
    char *tok_link = tw_path_join(snap_main, "tokenizer.json");
    unlink(tok_link);
    CHECK(tw_hub_resolve("test/tiny", NULL, &dir) == TW_E_NOT_FOUND && has(tw_last_error(), "tokenizer.json") &&
          has(tw_last_error(), "offline"), "offline missing file: %s", tw_last_error());
    CHECK(stat_of("requests") == before, "offline made requests");
    unsetenv("HF_HUB_OFFLINE");
    long cdn_before = stat_of("cdn_requests");
    CHECK_OK(tw_hub_resolve("test/tiny", NULL, &dir), "online repairs a missing symlink");
    free(dir);
    dir = NULL;
    CHECK(tw_file_exists(tok_link) && stat_of("cdn_requests") == cdn_before, "the blob was reused, not downloaded");
    free(tok_link);

    /* ---- revisions ---- */
    CHECK_OK(tw_hub_resolve("test/tiny@v1.0", NULL, &dir), "test/tiny@v1.0");
    char *snap_v1 = cat(repo_dir, "/snapshots/" COMMIT_V1);
    CHECK(dir && !strcmp(dir, snap_v1), "v1.0 dir %s", dir);
    free(dir);
    dir = NULL;
    check_snapshot(snap_v1, "test/tiny@v1.0");
    ref = read_text(cat(repo_dir, "/refs/v1.0"));
    CHECK(ref && !strcmp(ref, COMMIT_V1), "refs/v1.0 holds %s", ref ? ref : "(nothing)");
    free(ref);
    CHECK(stat_of("cdn_requests") == cdn_before, "v1.0 shares the blobs of main");
    before = stat_of("requests");
    CHECK_OK(tw_hub_resolve("test/tiny@" COMMIT_MAIN, NULL, &dir), "test/tiny@<commit>");
    CHECK(dir && !strcmp(dir, snap_main), "commit dir %s", dir);
    free(dir);
    dir = NULL;
    CHECK(stat_of("requests") == before, "a cached commit needs no request");
    CHECK(tw_hub_resolve("test/tiny@nope", NULL, &dir) == TW_E_NOT_FOUND && has(tw_last_error(), "nope"),
          "unknown revision: %s", tw_last_error());

    /* ---- 404 ---- */
    CHECK(tw_hub_resolve("test/nothing", NULL, &dir) == TW_E_NOT_FOUND && has(tw_last_error(), "test/nothing"),
          "unknown repo: %s", tw_last_error());

    /* ---- authentication ---- */
    CHECK(tw_hub_resolve("test/private", NULL, &dir) == TW_E_AUTH && has(tw_last_error(), "HF_TOKEN"),
          "private without token: %s", tw_last_error());
    setenv("HF_TOKEN", "wrong-token", 1);
    CHECK(tw_hub_resolve("test/private", NULL, &dir) == TW_E_AUTH && has(tw_last_error(), "rejected"),
          "private with a wrong token: %s", tw_last_error());
    setenv("HF_TOKEN", "secret-token", 1);
    CHECK_OK(tw_hub_resolve("test/private", NULL, &dir), "private with HF_TOKEN");
    if (dir) check_snapshot(dir, "test/private");
    CHECK(stat_of("cdn_auth") == 0, "the token was sent to the storage origin (%ld times)", stat_of("cdn_auth"));
    free(dir);
    dir = NULL;
    unsetenv("HF_TOKEN");
    char *token_file = cat(home, "/token"), *cache2 = cat(tmp_root, "/cache2");
    write_text(token_file, "secret-token\n", 13);
    tw_hub_opts o2 = { .cache_dir = cache2 };
    CHECK_OK(tw_hub_resolve("test/private", &o2, &dir), "private with $HF_HOME/token");
    free(dir);
    dir = NULL;
    unlink(token_file);

    /* ---- a dropped connection is resumed and the result verified ---- */
    CHECK_OK(tw_hub_resolve("test/flaky", NULL, &dir), "flaky repo");
    CHECK(stat_of("drops") == 1, "the server dropped one connection (%ld)", stat_of("drops"));
    if (dir) check_snapshot(dir, "test/flaky");
    free(dir);
    dir = NULL;

    /* ---- damaged bytes are detected ---- */
    CHECK(tw_hub_resolve("test/corrupt", NULL, &dir) == TW_E_NETWORK && has(tw_last_error(), "sha256"),
          "corrupt transfer: %s", tw_last_error());
    char *cblob = tw_asprintf("%s/models--test--corrupt/blobs/%s", cache, model_sha), *cinc = cat(cblob, ".incomplete");
    CHECK(!tw_file_exists(cblob) && !tw_file_exists(cinc), "nothing of the corrupt download kept");
    free(cblob);

    char *cache3 = cat(tmp_root, "/cache3");
    tw_hub_opts o3 = { .cache_dir = cache3 };
    char *blobs3 = cat(cache3, "/models--test--tiny/blobs");
    char *inc3 = tw_asprintf("%s/%s.incomplete", blobs3, model_sha);
    mkdir(cache3, 0755);
    mkdir(cat(cache3, "/models--test--tiny"), 0755);
    mkdir(blobs3, 0755);
    char junk[4096];
    memset(junk, 'x', sizeof junk);
    write_text(inc3, junk, sizeof junk);
    CHECK(tw_hub_resolve("test/tiny", &o3, &dir) == TW_E_NETWORK && has(tw_last_error(), "sha256"),
          "corrupt .incomplete: %s", tw_last_error());
    CHECK(!tw_file_exists(inc3), "the corrupt .incomplete was deleted");
    CHECK_OK(tw_hub_resolve("test/tiny", &o3, &dir), "download after a corrupt .incomplete");
    if (dir) check_snapshot(dir, "test/tiny (cache3)");
    free(dir);
    dir = NULL;

    /* ---- a valid partial download is resumed with a Range request ---- */
    char *cache4 = cat(tmp_root, "/cache4");
    tw_hub_opts o4 = { .cache_dir = cache4 };
    char *blobs4 = cat(cache4, "/models--test--tiny/blobs");
    char *inc4 = tw_asprintf("%s/%s.incomplete", blobs4, model_sha);
    mkdir(cache4, 0755);
    mkdir(cat(cache4, "/models--test--tiny"), 0755);
    mkdir(blobs4, 0755);
    char *weights = NULL;
    size_t wlen = 0;
    CHECK_OK(tw_read_file(th_path("tiny-towervision/model.safetensors"), &weights, &wlen), "read weights");
    const size_t have = 5u << 20;
    if (weights && wlen > have) write_text(inc4, weights, have);
    free(weights);
    struct stat tst;
    stat(th_path("tiny-towervision/tokenizer.json"), &tst);
    long bytes_before = stat_of("cdn_bytes");
    CHECK_OK(tw_hub_resolve("test/tiny", &o4, &dir), "resume a partial download");
    long got = stat_of("cdn_bytes") - bytes_before;
    CHECK(got == (long)(wlen - have) + (long)tst.st_size, "resumed transfer sent %ld bytes, expected %ld", got,
          (long)(wlen - have) + (long)tst.st_size);
    if (dir) check_snapshot(dir, "test/tiny (resumed)");
    free(dir);
    dir = NULL;

    /* ---- shards named by the index ---- */
    CHECK_OK(tw_hub_resolve("test/sharded", NULL, &dir), "sharded repo");
    if (dir) {
        char *s1 = NULL, *s2 = NULL, *w = NULL;
        size_t l1 = 0, l2 = 0, lw = 0;
        char *p1 = tw_path_join(dir, "model-00001-of-00002.safetensors");
        char *p2 = tw_path_join(dir, "model-00002-of-00002.safetensors");
        char *pi = tw_path_join(dir, "model.safetensors.index.json");
        char *pm = tw_path_join(dir, "model.safetensors");
        bool ok = tw_read_file(p1, &s1, &l1) == TW_OK && tw_read_file(p2, &s2, &l2) == TW_OK &&
                  tw_read_file(th_path("tiny-towervision/model.safetensors"), &w, &lw) == TW_OK &&
                  l1 + l2 == lw && !memcmp(s1, w, l1) && !memcmp(s2, w + l1, l2);
        CHECK(ok, "the shards are the two halves of the weights");
        CHECK(tw_file_exists(pi) && !tw_file_exists(pm), "index present, no single weights file");
        free(s1); free(s2); free(w); free(p1); free(p2); free(pi); free(pm);
    }
    free(dir);
    dir = NULL;

    /* ---- concurrent resolutions share one download ---- */
    resolver rs[2];
    pthread_t th[2];
    bytes_before = stat_of("cdn_bytes");
    for (int i = 0; i < 2; i++) {
        rs[i] = (resolver){ .opts = { .cache_dir = cat(tmp_root, "/cache6") } };
        pthread_create(&th[i], NULL, resolve_thread, &rs[i]);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK(rs[i].st == TW_OK, "concurrent resolve %d: %s", i, rs[i].err);
        if (rs[i].dir) check_snapshot(rs[i].dir, "concurrent");
        free(rs[i].dir);
    }
    got = stat_of("cdn_bytes") - bytes_before;
    CHECK(got == (long)wlen + (long)tst.st_size, "two concurrent resolves transferred %ld bytes, expected one copy (%ld)",
          got, (long)wlen + (long)tst.st_size);

    /* ---- refresh asks the hub again, and falls back to the cache when it cannot be reached ---- */
    before = stat_of("requests");
    tw_hub_opts ro = { .refresh = 1 };
    CHECK_OK(tw_hub_resolve("test/tiny", &ro, &dir), "refresh");
    CHECK(dir && !strcmp(dir, snap_main), "refresh dir");
    free(dir);
    dir = NULL;
    CHECK(stat_of("requests") > before, "refresh asked the hub");
    ro.endpoint = "http://127.0.0.1:1";
    CHECK_OK(tw_hub_resolve("test/tiny", &ro, &dir), "refresh with the hub unreachable uses the cache");
    free(dir);
    dir = NULL;

    /* ---- connection failures name the URL ---- */
    tw_hub_opts o5 = { .endpoint = "http://127.0.0.1:1", .cache_dir = cat(tmp_root, "/cache5") };
    CHECK(tw_hub_resolve("test/tiny", &o5, &dir) == TW_E_NETWORK && has(tw_last_error(), "127.0.0.1:1"),
          "connection refused: %s", tw_last_error());
    free(blob);
    free(inc3);
    free(inc4);
#endif
done:
    stop_server();
    nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    for (int i = 0; i < n_cat_kept; i++) free(cat_kept[i]);
    return th_report();
}
