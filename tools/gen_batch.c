/*
** gen_batch.c — generation for many prompts, several sequences at a time (gen_batch.h): the
** loop of tower.h's step-wise generation (tw_gen) and chunked prompt evaluation (tw_prompt_reuse,
** tw_prompt_chunk) around one tw_seq_eval_batch per step. The server's scheduler
** (tools/serve_sched.c) does the same with threads, queues and a prefix cache; this one is the
** single-threaded core a batch job needs.
**
** Each slot holds a sequence and at most one job:
**   prefill  the prompt's tokens after the prefix the sequence keeps, in one call of its own (what
**            tw_prompt_generate evaluates, bit for bit)
**   decode   the token the last step sampled: one row of the step's batch of decode rows, which
**            gives each sequence exactly the logits it gets alone (docs/batching.md)
** After the step, a slot whose prompt is in samples its first token; a decoding slot samples the
** next. A job ends on tw_gen's done step (its stop token is not evaluated: the next prompt
** rewinds the sequence to the shared prefix anyway) or when its text passes max_chars.
*/
#include "gen_batch.h"
#include "cli.h"

#include <stdlib.h>
#include <string.h>

typedef struct slot {
    tw_seq  *seq;
    tw_gen  *gen;
    gb_job   job;
    int      busy;        /* holds a job                                          */
    int      prefill;     /* its prompt is not evaluated yet                      */
    size_t   pos;         /* prefill: where evaluation resumes (the kept prefix)  */
    size_t   n_prompt, n_reused;
    int32_t  pending;     /* decode: the token to evaluate                        */
} slot;

/* Characters (UTF-8 code points) in s[0..n). */
static size_t n_chars(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

/* Ends the slot's job with status st (text and counts from its generator, when it has one). */
static int finish(const gb_params *p, slot *s, tw_status st, const char *msg, tw_stop_reason why, int too_long) {
    gb_result r = { .status = st, .msg = msg, .text = "", .stop_reason = why, .too_long = too_long,
                    .n_prompt = s->n_prompt, .n_reused = s->n_reused };
    if (s->gen) {
        r.text = tw_gen_text(s->gen, &r.len);
        tw_gen_ids(s->gen, &r.n_ids);
    }
    int stop = p->done(p->ud, &s->job, &r);
    tw_gen_free(s->gen);
    s->gen = NULL;
    s->busy = 0;
    return stop;
}

/* Gives an idle slot the next job: rewinds its sequence to the prefix it shares with the prompt.
** Returns 1 when the slot took a job, 0 when there is none, -1 to stop, -2 on a library failure. */
static int take_job(const tw_model *m, const gb_params *p, slot *s, gb_stats *st) {
    for (;;) {
        gb_job job = { 0 };
        int got = p->next(p->ud, &job);
        if (got <= 0) return got;
        *s = (slot){ .seq = s->seq, .job = job, .busy = 1, .prefill = 1, .pending = -1 };
        if (!s->seq && tw_seq_new_ex(m, p->n_ctx, &(tw_seq_params){ .kv_type = p->kv_type }, &s->seq) != TW_OK) {
            fail_lib();
            finish(p, s, TW_E_CANCELLED, "cancelled", TW_STOP_CALLBACK, 0);
            return -2;
        }
        s->n_prompt = tw_prompt_n_tokens(job.prompt);
        tw_status rc = tw_prompt_reuse(s->seq, job.prompt, &s->pos);
        if (rc == TW_OK) rc = tw_prompt_encode_from(job.prompt, s->pos, p->cache, NULL);
        if (rc == TW_OK) rc = tw_gen_new(m, &p->gen, &s->gen);
        if (rc == TW_OK) {
            s->n_reused = s->pos;
            st->reused_tokens += s->pos;
            return 1;
        }
        /* this prompt cannot run (it does not fit, its media do not encode): the job ends here */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", tw_last_error());
        if (finish(p, s, rc, msg, TW_STOP_CALLBACK, 0)) return -1;
    }
}

/* One tw_gen step from the slot's logits; ends the job when generation is done. Returns non-zero
** when done() asked to stop, -2 on a library failure. */
static int gen_step(const gb_params *p, slot *s, gb_stats *st) {
    tw_gen_step step;
    int32_t pos = tw_seq_pos(s->seq);
    if (tw_gen_next(s->gen, tw_seq_logits(s->seq), tw_seq_tokens(s->seq), (size_t)pos, tw_seq_n_ctx(s->seq) - pos,
                    &step) != TW_OK)
        return -2;
    st->gen_tokens += step.emitted;
    if (step.done) return finish(p, s, TW_OK, NULL, step.stop_reason, 0);
    size_t len = 0;
    const char *text = tw_gen_text(s->gen, &len);
    if (s->job.max_chars && n_chars(text, len) > s->job.max_chars) {
        if (tw_gen_cancel(s->gen, &step) != TW_OK) return -2;
        return finish(p, s, TW_OK, NULL, TW_STOP_CALLBACK, 1);
    }
    s->pending = step.id;
    return 0;
}

int gen_batch_run(const tw_model *m, const gb_params *p, gb_stats *out) {
    int n = p->n_seqs > 0 ? p->n_seqs : 1;
    slot *slots = calloc((size_t)n, sizeof *slots);
    tw_batch_item *items = calloc((size_t)n, sizeof *items);
    tw_eval_opts *opts = calloc((size_t)n, sizeof *opts);
    slot **who = calloc((size_t)n, sizeof *who);
    gb_stats st = { 0 };
    int rc = GB_DONE, more = 1;
    if (!slots || !items || !opts || !who) { rc = fail("out of memory"); goto out; }

    for (;;) {
        if (p->stop && *p->stop) { rc = GB_STOPPED; break; }
        /* idle slots take the next jobs */
        for (int i = 0; i < n && more; i++) {
            if (slots[i].busy) continue;
            int t = take_job(m, p, &slots[i], &st);
            if (t == 0) more = 0;
            else if (t == -1) { rc = GB_STOPPED; goto out; }
            else if (t == -2) { rc = GB_FAILED; goto out; }
        }
        /* The step: one batch of every decode row, then each prompt on its own, whole, as
        ** tw_prompt_eval evaluates it. A batch of decode steps gives each sequence exactly its
        ** logits alone (docs/batching.md); a prompt batched with other rows would not (its last
        ** row would share the head's product), so keeping prompts apart keeps every translation
        ** bit for bit what one sequence gives, whatever n_seqs. */
        size_t n_items = 0, n_dec = 0;
        for (int i = 0; i < n; i++) {
            slot *s = &slots[i];
            if (!s->busy || s->prefill) continue;
            who[n_items] = s;
            items[n_items++] = (tw_batch_item){ s->seq, &s->pending, 1, NULL };
        }
        n_dec = n_items;
        for (int i = 0; i < n; i++) {
            slot *s = &slots[i];
            if (!s->busy || !s->prefill) continue;
            const int32_t *ids;
            size_t k = s->n_prompt - s->pos;
            tw_eval_opts *o = &opts[n_items];
            if (tw_prompt_chunk(s->job.prompt, s->pos, k, &ids, o) != TW_OK) { rc = fail_lib(); goto out; }
            who[n_items] = s;
            items[n_items++] = (tw_batch_item){ s->seq, ids, k, o };
            st.prompt_tokens += k;
        }
        if (n_items == 0) break;   /* no job running and none left */
        double t0 = now_ms();
        for (size_t k = 0; k < n_items; k = k < n_dec ? n_dec : k + 1) {
            size_t cnt = k < n_dec ? n_dec : 1;
            if (tw_seq_eval_batch(items + k, cnt) != TW_OK) { rc = fail_lib(); goto out; }
            st.steps++;
            st.items += cnt;
        }
        st.eval_ms += now_ms() - t0;
        for (size_t k = 0; k < n_items; k++) {
            slot *s = who[k];
            s->prefill = 0;
            int r = gen_step(p, s, &st);
            if (r == -2) { rc = fail_lib(); goto out; }
            if (r) { rc = GB_STOPPED; goto out; }
        }
        if (p->tick) p->tick(p->ud, &st);
    }
out:
    /* jobs still running end as cancelled; their callbacks' answers no longer matter */
    for (int i = 0; slots && i < n; i++) {
        if (slots[i].busy) finish(p, &slots[i], TW_E_CANCELLED, "cancelled", TW_STOP_CALLBACK, 0);
        tw_seq_free(slots[i].seq);
    }
    if (out) *out = st;
    free(slots);
    free(items);
    free(opts);
    free(who);
    return rc;
}
