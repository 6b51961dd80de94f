/*
** cmd_serve.c — `tower serve`: options, loading, and a clean stop (docs/server.md).
**
** The HTTP daemon starts first, so that /health answers 503 while the model loads; the model
** loads in a thread of its own; the main thread waits for SIGINT / SIGTERM. On a signal the
** scheduler ends every running and queued job with an error event, the daemon waits for its
** connections to finish their last bytes, and everything is freed.
*/
#include "commands.h"
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void tower_help_serve(void) {
    printf("usage: tower serve -m MODEL [options]\n\n"
           "An OpenAI-compatible HTTP server: /v1/chat/completions (text, images, video, streaming,\n"
           "logprobs), /v1/completions (echo + logprobs of the prompt, also for chats with images),\n"
           "/v1/models, /health, /metrics, /tokenize, /detokenize, /apply-template. docs/server.md\n"
           "describes every route and field.\n\n"
           "listening:\n"
           "  --host ADDR          address to bind (default 127.0.0.1; 0.0.0.0 for every interface)\n"
           "  --port N             port (default 8080; 0 picks a free one, printed at start)\n"
           "  --api-key KEY        require 'Authorization: Bearer KEY' (also TOWER_API_KEY)\n"
           "  --cors ORIGIN        send Access-Control-Allow-Origin: ORIGIN (browsers)\n"
           "  --media-dir DIR      allow file:// image and video URLs under DIR (default: refused)\n\n"
           "scheduling and memory:\n"
           "  --parallel N         requests generating at once, batched together (default 4)\n"
           "  --ctx N              context per request in tokens (default: the model's)\n"
           "  --cache-mb N         KV memory of all sequences, running and kept for prefix reuse\n"
           "                       (default 4096; idle ones leave least recently used first)\n"
           "  --cache-seqs N       idle sequences kept for prefix reuse (default: --parallel)\n"
           "  --media-cache-mb N   encoded images and videos kept for reuse (default 1024)\n"
           "  --prefill-chunk N    prompt tokens per step while others generate (default 64)\n"
           "  --kv-type T          f32 (default), f16 or bf16 KV cache\n"
           "  -t, --threads N      compute threads (default: all cores)\n\n"
           "limits (each refusal is a 4xx with the reason; the server keeps serving):\n"
           "  --max-body-kb N      request body (default 65536 KiB)\n"
           "  --max-tokens N       generated tokens per request, and chat's default (default 4096)\n"
           "  --max-media N        images + videos per request (default 16)\n"
           "  --max-media-mb N     one fetched or decoded medium (default 64)\n"
           "  --max-pixels N       pixels of one image (default 178956970, Pillow's bomb limit)\n"
           "  --max-queue N        requests waiting before 429 (default 64)\n"
           "  --max-connections N  open connections (default 64)\n"
           "  --timeout S          idle seconds before a connection is closed (default 30)\n"
           "  --fetch-timeout S    http(s) media downloads (default 30)\n\n"
           "model: --chat-template FILE, --tokenizer DIR, --frames N (video, default 32), --kernels,\n"
           "       --matmul, --no-final-softcap / --final-softcap, --offline, -v (log each request)\n"
           "       -m random:2b[:q8|q4] --tokenizer DIR: random weights of TowerVision-2B's shapes (benchmarks)\n\n"
           "examples:\n"
           "  tower serve -m ./TowerVision-2B --port 8080\n"
           "  tower serve -m random:2b --tokenizer ./TowerVision-2B --parallel 8   # bench/serve_bench.py\n"
           "  curl localhost:8080/v1/chat/completions -H 'Content-Type: application/json' \\\n"
           "    -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}],\"max_tokens\":32}'\n");
}

#ifndef TW_HAVE_HTTPD
int tower_cmd_serve(int argc, char **argv) {
    parse_options(argc, argv, C_SERVE, tower_help_serve);
    return fail("this build has no HTTP server: install libmicrohttpd-dev and rebuild (make clean && make)");
}
#else
#include "serve.h"

typedef struct loader {
    sv_server *sv;
    sv_config *cfg;
    int        rc;
} loader;

static void *load_main(void *arg) {
    loader *L = arg;
    sv_server *sv = L->sv;
    tw_model *m = NULL;
    double t0 = now_ms();
    /* tests/serve_test.py: a slow load, to see /health say 503 */
    const char *delay = getenv("TOWER_TEST_LOAD_DELAY_MS");
    if (delay) {
        struct timespec ts = { atol(delay) / 1000, (atol(delay) % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    if (load_model(&m) != 0) {
        L->rc = 1;
        kill(getpid(), SIGTERM);   /* wake the main thread: nothing to serve */
        return NULL;
    }
    sv_config *cfg = L->cfg;
    int32_t train = tw_model_n_ctx_train(m);
    if (cfg->n_ctx <= 0 || cfg->n_ctx > train) {
        if (cfg->n_ctx > train)
            fprintf(stderr, "tower serve: --ctx %d is more than the model's %d positions; using %d\n", (int)cfg->n_ctx, (int)train, (int)train);
        cfg->n_ctx = train;
    }
    if (cfg->max_tokens >= cfg->n_ctx) cfg->max_tokens = cfg->n_ctx - 1;
    if (tw_media_cache_new(m, cfg->media_cache_bytes, &sv->media_cache) != TW_OK || sv_sched_new(m, cfg, &sv->sched) != 0) {
        fprintf(stderr, "tower serve: error: %s\n", tw_last_error());
        tw_media_cache_free(sv->media_cache);
        sv->media_cache = NULL;
        tw_model_free(m);
        L->rc = 1;
        kill(getpid(), SIGTERM);
        return NULL;
    }
    sv->model = m;
    atomic_store(&sv->ready, true);
    fprintf(stderr, "tower serve: %s loaded in %.1f s (%s%s%s, context %d, %d parallel); ready\n", cfg->model_name,
            (now_ms() - t0) / 1000.0, tw_model_arch(m), tw_model_has_vision(m) ? ", images" : "",
            tw_model_has_video(m) ? ", video" : "", (int)cfg->n_ctx, cfg->parallel);
    return NULL;
}

int tower_cmd_serve(int argc, char **argv) {
    parse_options(argc, argv, C_SERVE, tower_help_serve);
    if (!g.model) usage_error("no model: give -m MODEL (a checkpoint directory, org/name or random:2b)");

    static sv_config cfg;
    cfg = (sv_config){
        .model_name = g.model, .host = g.host, .port = g.port, .parallel = g.parallel,
        .cache_seqs = g.cache_seqs >= 0 ? g.cache_seqs : g.parallel, .cache_bytes = (size_t)g.cache_mb << 20,
        .media_cache_bytes = (size_t)g.media_cache_mb << 20, .n_ctx = g.n_ctx, .kv_type = g.kv_type,
        .api_key = g.api_key && *g.api_key ? g.api_key : NULL, .media_dir = g.media_dir, .cors = g.cors,
        .max_body = (size_t)g.max_body_kb << 10, .max_pixels = g.max_pixels, .max_media_bytes = (size_t)g.max_media_mb << 20,
        .max_media = g.max_media, .max_tokens = g.max_tokens, .max_queue = g.max_queue, .max_connections = g.max_conn,
        .timeout_s = g.timeout_s, .n_frames = g.n_frames, .prefill_chunk = g.prefill_chunk,
        .fetch_timeout_ms = g.fetch_timeout_s * 1000, .verbose = g.verbose,
    };
    static sv_server sv;
    memset(&sv, 0, sizeof sv);
    sv.cfg = &cfg;
    pthread_mutex_init(&sv.encode_lock, NULL);

    /* Signals go to the main thread only: block them before any thread starts, wait below. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct MHD_Daemon *d = NULL;
    if (sv_http_start(&sv, &d) != 0) return 1;
    fprintf(stderr, "tower serve: listening on http://%s:%d (loading %s)\n", cfg.host, sv_http_port(d), cfg.model_name);

    loader L = { &sv, &cfg, 0 };
    pthread_t lt;
    if (pthread_create(&lt, NULL, load_main, &L) != 0) {
        sv_http_stop(d);
        return fail("cannot start the loading thread");
    }
    int sig = 0;
    sigwait(&set, &sig);
    atomic_store(&sv.stopping, true);
    if (!L.rc) fprintf(stderr, "tower serve: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    pthread_join(lt, NULL);   /* a load in progress finishes first */
    sv_http_quiesce(d);        /* no new connections */
    sv_sched_stop(sv.sched);   /* running and queued jobs end with an error event ... */
    sv_sched_join(sv.sched);
    /* ... which the open streams send before their connections close (5 s at most) */
    for (int i = 0; i < 500 && atomic_load(&sv.n_streams) > 0; i++) {
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep(&ts, NULL);
    }
    sv_http_stop(d);           /* waits for every connection thread */
    sv_sched_free(sv.sched);
    tw_media_cache_free(sv.media_cache);
    tw_model_free(sv.model);
    pthread_mutex_destroy(&sv.encode_lock);
    if (!L.rc) fprintf(stderr, "tower serve: stopped\n");
    return L.rc;
}
#endif
