/*
** serve_sched.c — the scheduler of `tower serve`: the one thread that runs the text model.
**
** Each step it builds one batch (tw_seq_eval_batch): the pending token of every job that is
** generating, plus prompt chunks of the jobs that are prefilling, up to prefill_chunk prompt
** tokens while others are generating (so their tokens keep flowing), more when nobody waits on a
** decode step. A decode step of k jobs reads the weights once, which is what makes k streams cost
** little more than one on a memory-bound CPU.
**
** Prefix cache: a sequence keeps its KV cache after its job ends. A new job takes the idle
** sequence that shares the longest prefix with its prompt (tokens and media content hashes,
** tw_prompt_match), so a chat that re-sends its history with the same image prefills only the
** new turn. Idle sequences leave, least recently used first, when the KV memory of all sequences
** passes the budget or a sequence is needed for a new prompt.
**
** Prompt log-probabilities (echo + logprobs) are computed while prefilling and kept with the
** sequence, so that a second request scoring another continuation of the same prefix (CoMMuTE:
** the correct and the incorrect translation after one image) evaluates only its continuation.
*/
#ifdef TW_HAVE_HTTPD
#include "serve.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double now_ms(void);

typedef enum { SQ_IDLE = 0, SQ_PREFILL, SQ_GEN, SQ_TAIL } sq_state;

static int g_verbose;   /* -v: a line per finished request */

typedef struct sv_seq {
    tw_seq  *seq;          /* NULL: not allocated (or evicted)                                  */
    sv_job  *job;          /* the job it runs, NULL when idle                                   */
    sq_state state;
    size_t   pos;          /* prefill: next prompt position to evaluate                         */
    size_t   n_prompt;
    tw_gen  *gen;
    int32_t  pending;      /* token to evaluate in the next batch, -1: none                     */
    double   last_used;
    sv_lp   *plp;          /* [n_ctx] prompt logprobs of the cached positions (lazily)          */
    int32_t  plp_n;        /* positions [0, plp_n) of plp are valid ...                         */
    int32_t  plp_top;      /* ... with this many alternatives                                   */
    /* per-step scratch for a prefill chunk's logprobs */
    float   *c_lp;
    int32_t *c_top_ids;
    float   *c_top_lp;
    size_t   c_cap;
} sv_seq;

struct sv_sched {
    const tw_model  *m;
    const sv_config *cfg;
    pthread_t        thread;
    bool             started;
    pthread_mutex_t  mu;
    pthread_cond_t   cv;
    bool             stop;
    sv_job         **queue;      /* FIFO of waiting jobs                                        */
    int              q_head, q_len, q_cap;
    sv_seq          *seqs;
    int              n_seqs;
    sv_metrics       mt;         /* under mu                                                    */
    int32_t          n_vocab;
    double           last_step_ms;   /* the last batch's time (an encode's turn after it)      */
};

atomic_int sv_encodes_running;

/* ---- jobs ------------------------------------------------------------------------------------ */

sv_job *sv_job_new(void) {
    sv_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    atomic_init(&j->refs, 1);
    atomic_init(&j->cancelled, false);
    j->logprobs = -1;
    j->prompt_lp = -1;
    return j;
}

void sv_job_unref(sv_job *j) {
    if (!j || atomic_fetch_sub(&j->refs, 1) != 1) return;
    tw_prompt_free(j->prompt);
    for (size_t i = 0; i < j->n_images; i++) tw_image_free(j->images[i]);
    for (size_t i = 0; i < j->n_videos; i++) tw_video_free(j->videos[i]);
    free(j->images);
    free(j->videos);
    for (size_t i = 0; i < j->n_stops; i++) free(j->stops[i]);
    free(j->stops);
    for (sv_event *e = j->head, *n; e; e = n) {
        n = e->next;
        free(e->data);
        free(e);
    }
    free(j->text);
    free(j->echo_text);
    free(j->lps);
    free(j->plps);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

void sv_job_push(sv_job *j, char *data, size_t len) {
    if (!data) return;
    sv_event *e = malloc(sizeof *e);
    if (!e) { free(data); return; }
    *e = (sv_event){ data, len, NULL };
    pthread_mutex_lock(&j->mu);
    if (j->tail) j->tail->next = e;
    else j->head = e;
    j->tail = e;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* Marks the job finished (status 0: success) and wakes its connection; with -v, a log line. */
static void job_finish(sv_job *j, int status, const char *msg) {
    if (g_verbose) {
        double t = now_ms();
        fprintf(stderr, "tower serve: %s %s: %d prompt tokens (%d cached), %d generated, first token %.0f ms, total %.0f ms%s%s\n",
                j->id, status == 0 ? "ok" : "failed", (int)j->n_prompt, (int)j->n_cached, (int)j->n_completion,
                j->t_first > 0 ? j->t_first - j->t_submit : -1.0, t - j->t_submit, msg ? ": " : "", msg ? msg : "");
    }
    pthread_mutex_lock(&j->mu);
    j->status = status;
    if (msg) snprintf(j->err, sizeof j->err, "%s", msg);
    j->t_end = now_ms();
    j->done = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* A failure the client sees: in a stream an error event; otherwise the reply's status. */
static void job_fail(sv_sched *s, sv_job *j, int status, const char *msg) {
    if (j->stream) {
        size_t n;
        char *ev = sv_api_error_event(status, msg, &n);
        sv_job_push(j, ev, n);
    }
    pthread_mutex_lock(&s->mu);
    s->mt.requests_failed++;
    pthread_mutex_unlock(&s->mu);
    job_finish(j, status, msg);
}

/* The client went away: nobody to tell, but it counts as a failed request. */
static void job_cancelled(sv_sched *s, sv_job *j) {
    pthread_mutex_lock(&s->mu);
    s->mt.requests_failed++;
    pthread_mutex_unlock(&s->mu);
    job_finish(j, 499, "client closed the connection");
}

/* ---- sequences --------------------------------------------------------------------------------- */

static size_t kv_bytes_all(const sv_sched *s) {
    size_t b = 0;
    for (int i = 0; i < s->n_seqs; i++)
        if (s->seqs[i].seq) b += tw_seq_bytes(s->seqs[i].seq);
    return b;
}

static void seq_drop(sv_seq *q) {
    tw_seq_free(q->seq);
    q->seq = NULL;
    q->plp_n = 0;
}

/* Frees idle sequences, least recently used first, while the KV memory is over the budget. */
static void enforce_budget(sv_sched *s) {
    while (s->cfg->cache_bytes > 0 && kv_bytes_all(s) > s->cfg->cache_bytes) {
        sv_seq *lru = NULL;
        for (int i = 0; i < s->n_seqs; i++) {
            sv_seq *q = &s->seqs[i];
            if (q->seq && q->state == SQ_IDLE && (!lru || q->last_used < lru->last_used)) lru = q;
        }
        if (!lru) return;   /* only running sequences left: they finish first */
        seq_drop(lru);
    }
}

/* The idle sequence for a prompt: the longest shared prefix, else an empty one, else the least
** recently used. NULL when every sequence runs. */
static sv_seq *pick_seq(sv_sched *s, const tw_prompt *p, size_t *match) {
    sv_seq *best = NULL, *empty = NULL, *lru = NULL;
    size_t best_n = 0;
    for (int i = 0; i < s->n_seqs; i++) {
        sv_seq *q = &s->seqs[i];
        if (q->state != SQ_IDLE) continue;
        if (!q->seq) { if (!empty) empty = q; continue; }
        size_t n = tw_prompt_match(q->seq, p);
        if (n > best_n) { best = q; best_n = n; }
        if (!lru || q->last_used < lru->last_used) lru = q;
    }
    *match = best_n;
    if (best) return best;
    return empty ? empty : lru;
}

/* Starts job j on an idle sequence. Returns false when it failed (the job is then finished). */
static bool start_job(sv_sched *s, sv_job *j) {
    size_t match = 0;
    sv_seq *q = pick_seq(s, j->prompt, &match);
    if (!q) return false;   /* cannot happen: callers check that a sequence is free */
    j->t_start = now_ms();
    char msg[512];
    if (!q->seq) {
        tw_seq_params sp = { .kv_type = s->cfg->kv_type };
        if (tw_seq_new_ex(s->m, s->cfg->n_ctx, &sp, &q->seq) != TW_OK) {
            snprintf(msg, sizeof msg, "cannot create a sequence: %s", tw_last_error());
            job_fail(s, j, 500, msg);
            return true;
        }
        q->plp_n = 0;
    }
    size_t keep = 0;
    if (tw_prompt_reuse(q->seq, j->prompt, &keep) != TW_OK) {
        snprintf(msg, sizeof msg, "%s", tw_last_error());
        job_fail(s, j, 400, msg);
        return true;
    }
    if (j->prompt_lp >= 0) {
        /* prompt logprobs of the kept prefix come from the sequence's record, when it has them */
        size_t have = (q->plp && q->plp_top >= j->prompt_lp) ? (size_t)q->plp_n : 0;
        size_t copy = keep < have ? keep : have;
        /* The first evaluated token's logprob needs the logits before it, which a rewound
        ** sequence no longer holds: evaluate from one position earlier (its own logprob is
        ** copied, the chunk's first one is then ignored). */
        keep = copy > 0 ? copy - 1 : 0;
        tw_seq_rewind(q->seq, (int32_t)keep);
        size_t np = tw_prompt_n_tokens(j->prompt);
        j->plps = calloc(np ? np : 1, sizeof *j->plps);
        if (!j->plps) { job_fail(s, j, 500, "out of memory"); return true; }
        for (size_t i = 0; i < copy; i++) {
            j->plps[i] = q->plp[i];
            j->plps[i].n_top = SV_MIN(j->plps[i].n_top, j->prompt_lp);
        }
    }
    if ((int32_t)keep < q->plp_n) q->plp_n = (int32_t)keep;
    tw_gen_free(q->gen);
    q->gen = NULL;
    if (tw_gen_new(s->m, &j->gp, &q->gen) != TW_OK) {
        snprintf(msg, sizeof msg, "%s", tw_last_error());
        job_fail(s, j, 400, msg);
        return true;
    }
    atomic_fetch_add(&j->refs, 1);
    q->job = j;
    q->state = SQ_PREFILL;
    q->pos = keep;
    q->n_prompt = tw_prompt_n_tokens(j->prompt);
    q->pending = -1;
    j->n_cached = (int32_t)keep;
    j->n_prompt = (int32_t)q->n_prompt;
    pthread_mutex_lock(&s->mu);
    s->mt.cached_tokens += keep;
    s->mt.prompt_tokens += q->n_prompt;
    pthread_mutex_unlock(&s->mu);
    (void)match;
    return true;
}

/* Ends the sequence's job; the sequence stays as a prefix-cache entry. */
static void release(sv_sched *s, sv_seq *q) {
    if (q->job) sv_job_unref(q->job);
    q->job = NULL;
    q->state = SQ_IDLE;
    q->pending = -1;
    q->last_used = now_ms();
    pthread_mutex_lock(&s->mu);
    s->mt.running--;
    pthread_mutex_unlock(&s->mu);
}

/* ---- emitting tokens --------------------------------------------------------------------------- */

static const char *finish_reason(tw_stop_reason r) {
    return (r == TW_STOP_MAX_TOKENS || r == TW_STOP_CONTEXT_FULL) ? "length" : "stop";
}

/* The generation finished: final text, stream's last events, wake the connection. */
static void complete(sv_sched *s, sv_seq *q, tw_stop_reason why) {
    sv_job *j = q->job;
    size_t n_ids = 0, len = 0;
    tw_gen_ids(q->gen, &n_ids);
    const char *text = tw_gen_text(q->gen, &len);
    char *copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, text, len);
        copy[len] = 0;
    }
    pthread_mutex_lock(&j->mu);
    j->text = copy;
    j->text_len = copy ? len : 0;
    j->n_completion = (int32_t)n_ids;
    j->finish_reason = finish_reason(why);
    pthread_mutex_unlock(&j->mu);
    if (j->stream) {
        size_t n;
        char *ev = sv_api_chunk(s->cfg, s->m, j, "", 0, NULL, 0, j->finish_reason, &n);
        sv_job_push(j, ev, n);
        if (j->include_usage) {
            ev = sv_api_usage_chunk(s->cfg, j, &n);
            sv_job_push(j, ev, n);
        }
        char *done = strdup("data: [DONE]\n\n");
        sv_job_push(j, done, done ? strlen(done) : 0);
    }
    pthread_mutex_lock(&s->mu);
    s->mt.requests++;
    s->mt.completion_tokens += n_ids;
    pthread_mutex_unlock(&s->mu);
    job_finish(j, 0, NULL);
}

static void add_lp(sv_job *j, const sv_lp *lp) {
    if (j->n_lps == j->cap_lps) {
        size_t cap = j->cap_lps ? 2 * j->cap_lps : 32;
        sv_lp *n = realloc(j->lps, cap * sizeof *n);
        if (!n) return;
        j->lps = n;
        j->cap_lps = cap;
    }
    j->lps[j->n_lps++] = *lp;
}

/* One generation step from the sequence's current logits. */
static void gen_step(sv_sched *s, sv_seq *q) {
    sv_job *j = q->job;
    const float *logits = tw_seq_logits(q->seq);
    sv_lp lp = { .id = -1, .lp = NAN };
    tw_gen_step st;
    if (tw_gen_next(q->gen, logits, tw_seq_tokens(q->seq), (size_t)tw_seq_pos(q->seq),
                    tw_seq_n_ctx(q->seq) - tw_seq_pos(q->seq), &st) != TW_OK) {
        job_fail(s, j, 500, tw_last_error());
        release(s, q);
        return;
    }
    bool have_lp = false;
    if (st.emitted && j->logprobs >= 0) {
        lp.id = st.id;
        lp.n_top = j->logprobs;
        lp.lp = tw_logprob(logits, s->n_vocab, st.id, lp.n_top, lp.top_ids, lp.top_lp);
        have_lp = true;
    }
    if (j->t_first == 0 && st.emitted) j->t_first = now_ms();
    if (j->stream && (st.len > 0 || have_lp)) {
        size_t n;
        char *ev = sv_api_chunk(s->cfg, s->m, j, st.text, st.len, have_lp ? &lp : NULL, have_lp, NULL, &n);
        sv_job_push(j, ev, n);
    } else if (have_lp) {
        pthread_mutex_lock(&j->mu);
        add_lp(j, &lp);
        pthread_mutex_unlock(&j->mu);
    }
    if (st.done) {
        complete(s, q, st.stop_reason);
        if (st.eval) {   /* a stop id: into the cache for the next turn, then idle */
            q->pending = st.id;
            q->state = SQ_TAIL;
        } else {
            release(s, q);
        }
        return;
    }
    q->pending = st.id;
    q->state = SQ_GEN;
}

/* ---- the loop ------------------------------------------------------------------------------------ */

static bool chunk_scratch(sv_seq *q, size_t n, int top) {
    size_t need = n * (size_t)(top > 0 ? top : 1);
    if (n <= q->c_cap && need <= q->c_cap * TW_MAX_TOP) return true;
    size_t cap = n > 256 ? n : 256;
    free(q->c_lp);
    free(q->c_top_ids);
    free(q->c_top_lp);
    q->c_lp = malloc(cap * sizeof(float));
    q->c_top_ids = malloc(cap * TW_MAX_TOP * sizeof(int32_t));
    q->c_top_lp = malloc(cap * TW_MAX_TOP * sizeof(float));
    q->c_cap = (q->c_lp && q->c_top_ids && q->c_top_lp) ? cap : 0;
    return q->c_cap >= n;
}

/* Records the logprobs of prompt positions [from, from + n) into the job and the sequence. */
static void keep_prompt_lps(sv_sched *s, sv_seq *q, size_t from, size_t n) {
    sv_job *j = q->job;
    int top = j->prompt_lp;
    if (!q->plp) q->plp = calloc((size_t)s->cfg->n_ctx, sizeof *q->plp);
    const int32_t *ids = tw_prompt_tokens(j->prompt);
    for (size_t i = 0; i < n; i++) {
        if (i == 0 && from > 0 && isnan(q->c_lp[0])) continue;   /* copied from the record (start_job) */
        sv_lp lp = { .id = ids[from + i], .lp = q->c_lp[i], .n_top = isnan(q->c_lp[i]) ? 0 : top };
        for (int k = 0; k < lp.n_top; k++) {
            lp.top_ids[k] = q->c_top_ids[i * (size_t)top + (size_t)k];
            lp.top_lp[k] = q->c_top_lp[i * (size_t)top + (size_t)k];
        }
        j->plps[from + i] = lp;
        if (q->plp) q->plp[from + i] = lp;
    }
    if (q->plp && (int32_t)from == q->plp_n) {
        q->plp_n = (int32_t)(from + n);
        q->plp_top = top;
    }
}

static void *sched_main(void *arg) {
    sv_sched *s = arg;
    tw_batch_item *items = calloc((size_t)s->n_seqs, sizeof *items);
    tw_eval_opts *opts = calloc((size_t)s->n_seqs, sizeof *opts);
    sv_seq **who = calloc((size_t)s->n_seqs, sizeof *who);
    size_t *chunk_n = calloc((size_t)s->n_seqs, sizeof *chunk_n);
    if (!items || !opts || !who || !chunk_n) {
        fprintf(stderr, "tower serve: out of memory in the scheduler\n");
        abort();
    }
    for (;;) {
        /* ---- admit waiting jobs onto free sequences ---- */
        pthread_mutex_lock(&s->mu);
        for (;;) {
            int busy = 0;
            for (int i = 0; i < s->n_seqs; i++) busy += s->seqs[i].state != SQ_IDLE;
            bool any_running = busy > 0;
            if (s->stop) break;
            if (s->q_len > 0 && busy < s->cfg->parallel) {
                sv_job *j = s->queue[s->q_head];
                s->q_head = (s->q_head + 1) % s->q_cap;
                s->q_len--;
                s->mt.queued = s->q_len;
                pthread_mutex_unlock(&s->mu);
                if (atomic_load(&j->cancelled)) job_cancelled(s, j);
                else {
                    bool ok = start_job(s, j);
                    (void)ok;
                    pthread_mutex_lock(&s->mu);
                    int run = 0;
                    for (int i = 0; i < s->n_seqs; i++) run += s->seqs[i].state != SQ_IDLE;
                    s->mt.running = run;
                    pthread_mutex_unlock(&s->mu);
                }
                sv_job_unref(j);
                pthread_mutex_lock(&s->mu);
                continue;
            }
            if (any_running) break;
            pthread_cond_wait(&s->cv, &s->mu);
        }
        bool stopping = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stopping) break;

        /* ---- cancelled jobs leave; the batch: decode steps first, then prompt chunks ---- */
        size_t n_items = 0;
        int n_decoding = 0;
        for (int i = 0; i < s->n_seqs; i++) {
            sv_seq *q = &s->seqs[i];
            if (q->state == SQ_IDLE) continue;
            if (q->state != SQ_TAIL && atomic_load(&q->job->cancelled)) {
                job_cancelled(s, q->job);
                release(s, q);
                continue;
            }
            if ((q->state == SQ_GEN || q->state == SQ_TAIL) && q->pending >= 0) {
                who[n_items] = q;
                chunk_n[n_items] = 1;
                opts[n_items] = (tw_eval_opts){ 0 };
                items[n_items] = (tw_batch_item){ q->seq, &q->pending, 1, NULL };
                n_items++;
                n_decoding += q->state == SQ_GEN;
            }
        }
        size_t budget = n_decoding > 0 ? (size_t)s->cfg->prefill_chunk : (size_t)4 * s->cfg->prefill_chunk;
        for (int i = 0; i < s->n_seqs && budget > 0; i++) {
            sv_seq *q = &s->seqs[i];
            if (q->state != SQ_PREFILL) continue;
            size_t n = SV_MIN(q->n_prompt - q->pos, budget);
            const int32_t *ids;
            if (tw_prompt_chunk(q->job->prompt, q->pos, n, &ids, &opts[n_items]) != TW_OK) {
                job_fail(s, q->job, 500, tw_last_error());
                release(s, q);
                continue;
            }
            if (q->job->prompt_lp >= 0) {
                int top = q->job->prompt_lp;
                if (!chunk_scratch(q, n, top)) {
                    job_fail(s, q->job, 500, "out of memory");
                    release(s, q);
                    continue;
                }
                opts[n_items].logprobs = q->c_lp;
                opts[n_items].n_top = top;
                opts[n_items].top_ids = top > 0 ? q->c_top_ids : NULL;
                opts[n_items].top_logprobs = top > 0 ? q->c_top_lp : NULL;
            }
            who[n_items] = q;
            chunk_n[n_items] = n;
            items[n_items] = (tw_batch_item){ q->seq, ids, n, &opts[n_items] };
            n_items++;
            budget -= n;
        }
        if (n_items == 0) continue;

        /* Media encodes run in the connections' threads and yield to this step (the model's
        ** threads are claimed); between steps they get a turn as long as the last step took, so
        ** running streams slow to about half speed during an encode instead of stopping. */
        int enc = atomic_load(&sv_encodes_running);
        if (enc > 0 && s->last_step_ms > 0) {
            double slice = s->last_step_ms < 250 ? s->last_step_ms : 250;
            struct timespec ts = { 0, (long)(slice * 1e6) };
            nanosleep(&ts, NULL);
        }
        double t0 = now_ms();
        tw_model_claim(s->m);
        tw_status st = tw_seq_eval_batch(items, n_items);
        tw_model_release(s->m);
        double dt = now_ms() - t0;
        s->last_step_ms = dt;
        pthread_mutex_lock(&s->mu);
        s->mt.batches++;
        s->mt.batch_rows += n_items;
        if (n_decoding > 0) s->mt.decode_ms += dt;
        else s->mt.prefill_ms += dt;
        pthread_mutex_unlock(&s->mu);
        if (st != TW_OK) {
            char msg[512];
            snprintf(msg, sizeof msg, "evaluation failed: %s", tw_last_error());
            for (size_t k = 0; k < n_items; k++) {
                sv_seq *q = who[k];
                if (q->state != SQ_TAIL) job_fail(s, q->job, 500, msg);
                seq_drop(q);   /* its cache may be half-written */
                release(s, q);
            }
            continue;
        }

        /* ---- results ---- */
        for (size_t k = 0; k < n_items; k++) {
            sv_seq *q = who[k];
            switch (q->state) {
            case SQ_TAIL: release(s, q); break;
            case SQ_GEN: gen_step(s, q); break;
            case SQ_PREFILL:
                if (q->job->prompt_lp >= 0) keep_prompt_lps(s, q, q->pos, chunk_n[k]);
                else if ((int32_t)q->pos < q->plp_n) q->plp_n = (int32_t)q->pos;
                q->pos += chunk_n[k];
                if (q->pos == q->n_prompt) {
                    if (q->job->max_tokens == 0) {   /* scoring only: nothing to generate */
                        complete(s, q, TW_STOP_MAX_TOKENS);
                        release(s, q);
                    } else {
                        gen_step(s, q);
                    }
                }
                break;
            case SQ_IDLE: break;
            }
        }
        pthread_mutex_lock(&s->mu);
        enforce_budget(s);
        s->mt.kv_bytes = kv_bytes_all(s);
        int kept = 0;
        for (int i = 0; i < s->n_seqs; i++) kept += s->seqs[i].seq && s->seqs[i].state == SQ_IDLE;
        s->mt.seqs_kept = kept;
        pthread_mutex_unlock(&s->mu);
    }

    /* stopping: every job still here ends with an error */
    for (int i = 0; i < s->n_seqs; i++) {
        sv_seq *q = &s->seqs[i];
        if (q->state == SQ_IDLE) continue;
        if (q->state != SQ_TAIL) job_fail(s, q->job, 503, "the server is shutting down");
        release(s, q);
    }
    pthread_mutex_lock(&s->mu);
    while (s->q_len > 0) {
        sv_job *j = s->queue[s->q_head];
        s->q_head = (s->q_head + 1) % s->q_cap;
        s->q_len--;
        pthread_mutex_unlock(&s->mu);
        job_fail(s, j, 503, "the server is shutting down");
        sv_job_unref(j);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    free(items);
    free(opts);
    free(who);
    free(chunk_n);
    return NULL;
}

/* ---- public ------------------------------------------------------------------------------------ */

int sv_sched_new(const tw_model *m, const sv_config *cfg, sv_sched **out) {
    *out = NULL;
    sv_sched *s = calloc(1, sizeof *s);
    if (!s) return -1;
    s->m = m;
    s->cfg = cfg;
    g_verbose = cfg->verbose;
    s->n_vocab = tw_model_n_vocab(m);
    s->n_seqs = cfg->parallel + cfg->cache_seqs;
    s->q_cap = cfg->max_queue > 0 ? cfg->max_queue : 1;
    s->seqs = calloc((size_t)s->n_seqs, sizeof *s->seqs);
    s->queue = calloc((size_t)s->q_cap, sizeof *s->queue);
    s->mt.kv_budget = cfg->cache_bytes;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (!s->seqs || !s->queue || pthread_create(&s->thread, NULL, sched_main, s) != 0) {
        free(s->seqs);
        free(s->queue);
        free(s);
        return -1;
    }
    s->started = true;
    *out = s;
    return 0;
}

void sv_sched_stop(sv_sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void sv_sched_join(sv_sched *s) {
    if (!s || !s->started) return;
    pthread_join(s->thread, NULL);
    s->started = false;
}

void sv_sched_free(sv_sched *s) {
    if (!s) return;
    sv_sched_stop(s);
    sv_sched_join(s);
    for (int i = 0; i < s->n_seqs; i++) {
        sv_seq *q = &s->seqs[i];
        tw_seq_free(q->seq);
        tw_gen_free(q->gen);
        free(q->plp);
        free(q->c_lp);
        free(q->c_top_ids);
        free(q->c_top_lp);
    }
    free(s->seqs);
    free(s->queue);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

int sv_sched_submit(sv_sched *s, sv_job *j) {
    pthread_mutex_lock(&s->mu);
    if (s->stop) { pthread_mutex_unlock(&s->mu); return 503; }
    if (s->q_len >= s->q_cap) { pthread_mutex_unlock(&s->mu); return 429; }
    atomic_fetch_add(&j->refs, 1);
    j->t_submit = now_ms();
    s->queue[(s->q_head + s->q_len) % s->q_cap] = j;
    s->q_len++;
    s->mt.queued = s->q_len;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void sv_sched_metrics(sv_sched *s, sv_metrics *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->mt;
    pthread_mutex_unlock(&s->mu);
}
#endif /* TW_HAVE_HTTPD */
