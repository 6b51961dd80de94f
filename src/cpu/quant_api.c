/*
** quant_api.c — the public entry point of `tower quantize` (include/tower.h, "Tools" section):
** tw_model_quantize over tw_quantize_model (quant.c), with the type given by name and a report
** callback that says whether each tensor was quantized.
*/
#include "quant.h"

#include <string.h>

tw_quantize_params tw_quantize_default_params(void) { return (tw_quantize_params){ .type = "q8" }; }

typedef struct report_ctx {
    const tw_quantize_params *p;
} report_ctx;

/* quant.c's report -> the public one: quantized when "how" names a quantized type */
static void report(void *user, const char *name, const char *how, int64_t N, int64_t K, double rel) {
    const report_ctx *c = user;
    tw_dtype t;
    c->p->report(c->p->user_data, name, how, tw_quant_parse(how, &t), N, K, rel);
}

tw_status tw_model_quantize(const char *dir, const char *out_path, const tw_quantize_params *p) {
    tw_quantize_params d = tw_quantize_default_params();
    if (!p) p = &d;
    tw_quant_opts o = { .keep_vision = p->keep_vision_bf16 != 0, .keep_embed = p->keep_embed_bf16 != 0,
                        .n_threads = p->n_threads };
    if (!p->type || !tw_quant_parse(p->type, &o.type))
        return tw_err(TW_E_ARG, "quantization type \"%s\": expected q8 or q4", p->type ? p->type : "(null)");
    report_ctx c = { p };
    if (p->report) {
        o.report = report;
        o.user = &c;
    }
    return tw_quantize_model(dir, out_path, &o);
}
