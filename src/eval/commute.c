/*
** commute.c — CoMMuTE's contrastive accuracy, once the model has scored both translations of
** each line (the scoring itself is tw_seq_eval / tw_prompt_eval with tw_eval_opts.logprobs).
**
** CoMMuTE's evaluate.py (MatthieuFP/CoMMuTE) reads one perplexity per translation and counts a
** line right when ppl(correct) < ppl(incorrect). TowerVision's lmms-eval fork
** (tasks/commute/utils.py, commute_aggregate_results) compares what its model wrapper returns as
** "loglikelihood", which for llava_hf is the `loss` of the forward pass: the mean negative
** log-probability of the labelled tokens (the translation and the chat template's end of turn),
** and counts l_correct < l_incorrect. Both therefore compare a per-token mean; perplexity is its
** exponential, so the order is the same. TW_COMMUTE_SUM compares the summed log-probabilities
** instead (benchmarks/commute/README's other reading). Ties and NaN are wrong under every rule:
** the references use a strict "<".
*/
#include "eval.h"

#include <math.h>

int tw_commute_right(const tw_commute_line *l, tw_commute_rule rule) {
    if (!l) return 0;
    double c = -l->logprob_correct, i = -l->logprob_incorrect;   /* negative log-likelihoods */
    if (rule == TW_COMMUTE_PER_TOKEN) {
        if (l->n_correct <= 0 || l->n_incorrect <= 0) return 0;
        c /= l->n_correct;
        i /= l->n_incorrect;
    } else if (rule != TW_COMMUTE_SUM) {
        return 0;
    }
    return c < i;
}

double tw_commute_accuracy(const tw_commute_line *lines, size_t n, tw_commute_rule rule) {
    if (!lines || n == 0) return NAN;
    size_t right = 0;
    for (size_t k = 0; k < n; k++) right += (size_t)tw_commute_right(&lines[k], rule);
    return (double)right / (double)n;
}
