/*
** tools_api.c — public entry points of the `tower` tools (include/tower.h, "Tools" section) over
** internals they used to include: tw_model_quantize over tw_quantize_model (quant.c, writing
** through format/qfile.c), with the type given by name and a report callback that says whether
** each tensor was quantized; what a checkpoint holds, for `tower info` (safetensors.c, the packed
** file's embedded files); the kernel path and CPU features (kernels.c). It sits in the top layer,
** with the engine of `tower bench`: the tools' entry points may use every layer below.
*/
#include "kernels.h"
#include "quant.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* ---- quantization --------------------------------------------------------------------------------- */

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

/* ---- what a checkpoint holds ---------------------------------------------------------------------- */

/* Where the chat template comes from; src: the checkpoint directory or a packed file's embedded
** files. */
static const char *template_source(const tw_src *src) {
    if (tw_src_exists(src, "chat_template.jinja")) return "chat_template.jinja";
    if (tw_src_exists(src, "chat_template.json")) return "chat_template.json";
    json_t *j = NULL;   /* tw_src_json reads model_max_length = 1e30 too */
    if (tw_src_exists(src, "tokenizer_config.json") && tw_src_json(src, "tokenizer_config.json", &j) != TW_OK) j = NULL;
    int has = j && json_is_string(json_object_get(j, "chat_template"));
    int has_list = j && json_is_array(json_object_get(j, "chat_template"));
    json_decref(j);
    if (has || has_list) return "tokenizer_config.json (\"chat_template\")";
    return NULL;
}

tw_status tw_checkpoint_describe(const char *path, tw_checkpoint_info *out) {
    memset(out, 0, sizeof *out);
    if (!path) return tw_err(TW_E_ARG, "tw_checkpoint_describe: no path");
    out->packed = tw_file_exists(path);
    tw_st_set *set = NULL;
    tw_src src = tw_src_dir(path);
    if ((out->packed ? tw_st_open_file(path, &set) : tw_st_open_dir(path, &set)) == TW_OK) {
        size_t count[TW_DT_COUNT] = {0};
        uint64_t bytes[TW_DT_COUNT] = {0};
        for (size_t i = 0; i < tw_st_count(set); i++) {
            const tw_tensor *t = tw_st_at(set, i);
            if ((int)t->type < 0 || t->type >= TW_DT_COUNT) continue;
            count[t->type]++;
            bytes[t->type] += t->nbytes;
            out->n_params += (uint64_t)tw_tensor_nelem(t);
        }
        out->weights_listed = 1;
        out->n_tensors = tw_st_count(set);
        out->file_bytes = tw_st_bytes(set);
        for (int d = 0; d < TW_DT_COUNT && out->n_types < TW_CHECKPOINT_MAX_TYPES; d++)
            if (count[d]) {
                out->types[out->n_types].type = tw_dtype_name((tw_dtype)d);
                out->types[out->n_types].n_tensors = count[d];
                out->types[out->n_types].bytes = bytes[d];
                out->n_types++;
            }
        if (out->packed && tw_quant_src(set, path, &src) != TW_OK) src = tw_src_dir(path);
    } else {
        snprintf(out->weights_error, sizeof out->weights_error, "%s", tw_last_error());
    }
    out->chat_template = template_source(&src);
    tw_src_free(&src);
    tw_st_close(set);
    return TW_OK;
}

const char *tw_kernels_path_name(void) { return tw_kpath_name(tw_kernels_init()); }
const char *tw_cpu_feature_list(void) { return tw_cpu_features(); }
