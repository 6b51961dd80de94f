/*
** gen_batch.h — generation for many prompts, several at a time (tools/gen_batch.c), for the
** commands that work through a list: `tower translate --dataset`. Up to n_seqs sequences run
** together: each prefills its prompt and then decodes, and every step is one tw_seq_eval_batch
** over all the active ones (decode is bound by reading the weights: k sequences cost little more
** than one). When a sequence finishes, the next prompt takes it at once, keeping the prefix the
** two share in its KV cache (the template and the instruction, for a list of translations).
**
** Every sequence gets exactly the logits it would get alone: the decode rows of a step go in one
** batch (a batch of decode steps is bit-identical to each alone, docs/batching.md) and each prompt
** is evaluated in a call of its own, as tw_prompt_generate does. So the output does not depend on
** n_seqs and is what `tower run` / `tower translate --lines` print, bit for bit. No threads: the
** model's pool parallelises each step.
*/
#ifndef TOWER_GEN_BATCH_H
#define TOWER_GEN_BATCH_H

#include "tower.h"

#include <signal.h>

/* One prompt to generate from. */
typedef struct gb_job {
    tw_prompt *prompt;      /* the caller's: still valid when done() is called, freed by the caller */
    size_t     max_chars;   /* stop once the text has more characters (code points) than this; 0: no limit */
    void      *ud;          /* the caller's                                                        */
} gb_job;

/* How a job ended: given to done(), valid during the call. */
typedef struct gb_result {
    tw_status      status;      /* TW_OK; TW_E_CONTEXT (the prompt does not fit: msg says why);
                                ** TW_E_CANCELLED (the run stopped before the job finished)        */
    const char    *msg;         /* when status != TW_OK                                             */
    const char    *text;        /* the generated text (stop strings cut), not NUL-terminated        */
    size_t         len;
    size_t         n_ids;       /* tokens generated                                                 */
    size_t         n_prompt;    /* prompt tokens, and how many the KV cache already held            */
    size_t         n_reused;
    tw_stop_reason stop_reason;
    int            too_long;    /* stopped after max_chars characters (stop_reason: TW_STOP_CALLBACK) */
} gb_result;

/* Counts over the run so far (for a progress line). */
typedef struct gb_stats {
    uint64_t prompt_tokens;     /* evaluated, reused ones not counted                               */
    uint64_t reused_tokens;
    uint64_t gen_tokens;
    uint64_t steps;             /* tw_seq_eval_batch calls, and the rows of their items             */
    uint64_t items;
    double   eval_ms;
} gb_stats;

typedef struct gb_params {
    int             n_seqs;     /* sequences decoded together (>= 1)                                */
    int32_t         n_ctx;      /* per sequence; 0: the model's                                     */
    tw_kv_type      kv_type;
    tw_gen_params   gen;        /* every job's generation parameters (copied per job)               */
    tw_media_cache *cache;      /* for prompts with media; may be NULL                              */
    /* The next job: return 1 with *job filled, 0 when there is none (the run ends when the jobs
    ** handed out are done), -1 to stop the run. */
    int  (*next)(void *ud, gb_job *job);
    /* A job ended (every job handed out gets exactly one call): return non-zero to stop the run. */
    int  (*done)(void *ud, const gb_job *job, const gb_result *r);
    /* After every step (may be NULL): progress. */
    void (*tick)(void *ud, const gb_stats *st);
    void *ud;
    volatile sig_atomic_t *stop;   /* may be NULL; set (by a signal handler) to stop after the step */
} gb_params;

enum { GB_DONE = 0, GB_FAILED = 1, GB_STOPPED = 2 };

/* Runs jobs until next() has none and every job is done (GB_DONE), a callback or *stop stopped it
** (GB_STOPPED: the jobs then running get done() with TW_E_CANCELLED), or the library failed
** (GB_FAILED: "tower: error: ..." printed, the running jobs cancelled as well). st (may be NULL)
** receives the counts. */
int gen_batch_run(const tw_model *m, const gb_params *p, gb_stats *st);

#endif
