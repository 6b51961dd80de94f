/*
** serve.h — `tower serve`: an OpenAI-compatible HTTP server (docs/server.md).
**
** Three parts, one file each:
**   serve_http.c   libmicrohttpd: routes, API key, CORS, body and connection limits, waiting for a
**                  job and streaming its Server-Sent Events, noticing clients that hang up
**   serve_api.c    OpenAI JSON in and out: a request body becomes a job (sv_job), a finished job
**                  becomes the response; every field we do not support is refused by name
**   serve_sched.c  the one thread that runs the model: continuous batching of all running jobs'
**                  decode steps with chunks of the prefilling ones (tw_seq_eval_batch), a prefix
**                  cache of sequences kept after their requests (tw_prompt_match), metrics
** Media are fetched and decoded by serve_media.c, and encoded (tw_prompt_encode) in the
** connection's own thread, one encode at a time: the scheduler keeps stepping the other streams
** meanwhile (the model's thread pool interleaves the two callers job by job).
*/
#ifndef TOWER_SERVE_H
#define TOWER_SERVE_H

#include "tower.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SV_MIN(a, b) ((a) < (b) ? (a) : (b))

/* ---- configuration (cmd_serve.c fills it from the command line) ---- */

typedef struct sv_config {
    const char *model_name;     /* as given to -m: what /v1/models lists                          */
    const char *host;
    int         port;
    int         parallel;       /* jobs running at once                                          */
    int         cache_seqs;     /* sequences kept for the prefix cache beyond the running ones   */
    size_t      cache_bytes;    /* KV memory of all sequences, running and kept                  */
    size_t      media_cache_bytes;
    int32_t     n_ctx;          /* per sequence                                                  */
    tw_kv_type  kv_type;
    const char *api_key;        /* NULL: no key needed                                           */
    const char *media_dir;      /* NULL: file:// refused                                         */
    const char *cors;           /* NULL: no CORS headers                                         */
    size_t      max_body;       /* bytes of a request body                                       */
    uint64_t    max_pixels;     /* of one image                                                  */
    size_t      max_media_bytes;/* of one fetched / decoded medium                               */
    int         max_media;      /* images + videos per request                                   */
    int32_t     max_tokens;     /* generated tokens per request (also the default)               */
    int         max_queue;      /* waiting jobs before 429                                       */
    int         max_connections;
    int         timeout_s;      /* idle connection timeout (slow clients)                        */
    int32_t     n_frames;       /* frames sampled per video                                      */
    int32_t     prefill_chunk;  /* prompt tokens per scheduler step while others decode          */
    long        fetch_timeout_ms;
    int         verbose;
} sv_config;

/* ---- a job: one request from parse to response ---- */

typedef enum { SV_CHAT = 0, SV_COMPLETION } sv_kind;

/* One emitted token's log-probabilities (OpenAI logprobs). */
typedef struct sv_lp {
    int32_t id;
    float   lp;                 /* NAN: none (the prompt's first token)                            */
    int32_t n_top;
    int32_t top_ids[TW_MAX_TOP];
    float   top_lp[TW_MAX_TOP];
} sv_lp;

/* A queued Server-Sent Event (data already formatted). */
typedef struct sv_event {
    char            *data;
    size_t           len;
    struct sv_event *next;
} sv_event;

typedef struct sv_job {
    /* ---- the request (written by the connection thread before submit, then read-only) ---- */
    sv_kind       kind;
    char          id[48];
    int64_t       created;
    tw_prompt    *prompt;
    tw_image    **images;
    size_t        n_images;
    tw_video    **videos;
    size_t        n_videos;
    tw_gen_params gp;
    char        **stops;
    size_t        n_stops;
    bool          stream, include_usage;
    int           logprobs;      /* -1: none; else top alternatives per generated token (0..20)      */
    int           prompt_lp;     /* -1: none; else top alternatives per prompt token (echo+logprobs) */
    bool          echo;          /* completions: the prompt text before the completion              */
    char         *echo_text;     /* what echo returns: the prompt as given (malloc'ed)              */
    size_t        echo_len;
    int32_t       max_tokens;

    /* ---- results (under mu) ---- */
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    sv_event     *head, *tail;   /* stream: events not yet sent                                 */
    bool          done;          /* the scheduler is finished with it                            */
    int           status;        /* 0 ok, else the HTTP status of a failure                      */
    char          err[512];
    char         *text;          /* generated text (malloc'ed), when done                        */
    size_t        text_len;
    sv_lp        *lps;           /* generated tokens' logprobs (non-stream)                      */
    size_t        n_lps, cap_lps;
    sv_lp        *plps;          /* prompt tokens' logprobs, [n_prompt]                          */
    const char   *finish_reason; /* "stop", "length"                                             */
    int32_t       n_prompt, n_completion, n_cached;
    double        t_submit, t_start, t_first, t_end;   /* ms                                    */

    /* ---- shared ---- */
    atomic_bool   cancelled;     /* the client went away                                          */
    atomic_int    refs;          /* connection + scheduler                                        */
} sv_job;

sv_job *sv_job_new(void);
void    sv_job_unref(sv_job *j);
/* Appends an SSE event (takes data) and wakes the connection. Under no lock. */
void    sv_job_push(sv_job *j, char *data, size_t len);

/* ---- the scheduler (serve_sched.c) ---- */

typedef struct sv_sched sv_sched;
typedef struct sv_metrics {
    uint64_t requests, requests_failed, prompt_tokens, completion_tokens, cached_tokens;
    uint64_t images, videos;
    double   image_encode_ms, video_encode_ms;
    double   decode_ms, prefill_ms;
    int      running, queued, seqs_kept;
    size_t   kv_bytes, kv_budget;
    uint64_t batches, batch_rows;
} sv_metrics;

int  sv_sched_new(const tw_model *m, const sv_config *cfg, sv_sched **out);
void sv_sched_free(sv_sched *s);         /* stops the thread; running jobs end with an error  */
/* Queues a job (takes a reference). 0, or 429 when the queue is full, 503 when stopping. */
int  sv_sched_submit(sv_sched *s, sv_job *j);
void sv_sched_metrics(sv_sched *s, sv_metrics *out);
/* Media encodes in progress (serve_api.c counts them): the scheduler leaves them turns. */
extern atomic_int sv_encodes_running;
void sv_sched_stop(sv_sched *s);         /* running and queued jobs end with an error event   */
void sv_sched_join(sv_sched *s);         /* after stop: waits until every job has ended       */

/* ---- the API layer (serve_api.c) ---- */

typedef struct sv_server sv_server;
struct sv_server {
    const sv_config *cfg;
    tw_model        *model;       /* NULL while loading                                        */
    atomic_bool      ready;
    atomic_bool      stopping;
    sv_sched        *sched;
    tw_media_cache  *media_cache;
    pthread_mutex_t  encode_lock; /* one media encode at a time                                */
    atomic_uint_least64_t n_http, n_http_errors;
    atomic_int       n_streams;   /* responses still being sent (a stop waits for them)          */
};

/* A response: status, body (malloc'ed JSON or text), content type. */
typedef struct sv_reply {
    int         status;
    char       *body;
    size_t      len;
    const char *type;
    sv_job     *job;             /* set when the reply is a job to wait for / stream           */
} sv_reply;

/* Handles one complete request (route already matched to a POST handler). */
void sv_api_chat(sv_server *sv, const char *body, size_t len, sv_reply *r);
void sv_api_completion(sv_server *sv, const char *body, size_t len, sv_reply *r);
void sv_api_tokenize(sv_server *sv, const char *body, size_t len, sv_reply *r);
void sv_api_detokenize(sv_server *sv, const char *body, size_t len, sv_reply *r);
void sv_api_apply_template(sv_server *sv, const char *body, size_t len, sv_reply *r);
void sv_api_models(sv_server *sv, sv_reply *r);
void sv_api_metrics(sv_server *sv, sv_reply *r);
/* The final JSON of a finished non-stream job. */
void sv_api_job_reply(sv_server *sv, sv_job *j, sv_reply *r);
/* OpenAI's error JSON: {"error": {"message", "type", "param", "code"}}. */
void sv_error(sv_reply *r, int status, const char *param, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Formats a stream chunk of job j: text delta (may be empty), the token's logprobs (may be NULL),
** finish (NULL while running). Returns malloc'ed "data: {...}\n\n". */
char *sv_api_chunk(const sv_config *cfg, const tw_model *m, sv_job *j, const char *text, size_t len,
                   const sv_lp *lp, size_t n_lp, const char *finish, size_t *out_len);
char *sv_api_usage_chunk(const sv_config *cfg, sv_job *j, size_t *out_len);
char *sv_api_error_event(int status, const char *msg, size_t *out_len);

/* ---- the HTTP layer (serve_http.c) ---- */

struct MHD_Daemon;
int  sv_http_start(sv_server *sv, struct MHD_Daemon **out);   /* listening; 0 or -1 (said why) */
int  sv_http_port(struct MHD_Daemon *d);                       /* the bound port (for --port 0) */
void sv_http_quiesce(struct MHD_Daemon *d);                    /* stops accepting connections   */
void sv_http_stop(struct MHD_Daemon *d);                       /* waits for every connection    */

#endif
