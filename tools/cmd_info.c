/*
** cmd_info.c — `tower info`: loads a model and describes it: directory or file, architecture,
** sizes, tensor dtypes, special and stop tokens, chat template source, kernel path, build.
*/
#include "commands.h"
#include "cli.h"
#include "kernels.h"
#include "quant.h"       /* a packed file's embedded files */
#include "safetensors.h"

#include <jansson.h>
#include <stdio.h>

void tower_help_info(void) {
    printf("usage: tower info -m MODEL [options]\n\n"
           "Loads the model and describes it: directory, architecture, sizes, tensor dtypes, special and\n"
           "stop tokens, chat template source, kernel path and CPU features, and the build.\n\n"
           "  -m, --model MODEL   checkpoint directory or org/name[@rev]\n"
           "  -t, --threads N, --offline, --chat-template FILE, --[no-]final-softcap   as for run\n\n"
           "example:\n"
           "  tower info -m utter-project/TowerVision-2B\n");
}

static void print_token(const tw_tokenizer *tok, int32_t id) {
    size_t pl = 0;
    const char *p = tok ? tw_token_piece(tok, id, &pl) : NULL;
    printf(" %d", id);
    if (p) { fputs(" (", stdout); print_piece(stdout, p, pl); putchar(')'); }
}

/* Where the chat template comes from; src: the checkpoint directory or a packed file's
** embedded files. */
static const char *template_source(const tw_src *src, char *buf, size_t cap) {
    if (g.chat_template) { snprintf(buf, cap, "%s (--chat-template)", g.chat_template); return buf; }
    if (tw_src_exists(src, "chat_template.jinja")) return "chat_template.jinja";
    if (tw_src_exists(src, "chat_template.json")) return "chat_template.json";
    json_t *j = NULL;   /* tw_src_json reads model_max_length = 1e30 too */
    if (tw_src_exists(src, "tokenizer_config.json") && tw_src_json(src, "tokenizer_config.json", &j) != TW_OK) j = NULL;
    int has = j && json_is_string(json_object_get(j, "chat_template"));
    int has_list = j && json_is_array(json_object_get(j, "chat_template"));
    json_decref(j);
    if (has || has_list) return "tokenizer_config.json (\"chat_template\")";
    return "none found in the checkpoint (the library's default, if any)";
}

int tower_cmd_info(int argc, char **argv) {
    parse_options(argc, argv, C_INFO, tower_help_info);
    tw_model *m = NULL;
    int rc = load_model(&m);
    if (rc) return rc;
    const tw_tokenizer *tok = tw_model_tokenizer(m);
    const char *dir = tw_model_dir(m);
    char buf[4096];
    printf("model:          %s\n", g.model);
    /* a `tower quantize` file: tw_model_dir is the file, its small files are embedded in it */
    bool packed = tw_file_exists(dir);
    printf("%s%s\n", packed ? "file:           " : "directory:      ", dir);
    printf("architecture:   %s\n", tw_model_arch(m));
    printf("text model:     %d layers, hidden %d, vocab %d, trained context %d\n", tw_model_n_layer(m), tw_model_n_embd(m),
           tw_model_n_vocab(m), tw_model_n_ctx_train(m));
    int32_t img = tw_model_image_token(m);
    if (img >= 0) { printf("image token:   "); print_token(tok, img); putchar('\n'); }
    else printf("image token:    none (text-only model)\n");

    tw_st_set *set = NULL;
    tw_src src = tw_src_dir(dir);
    if ((packed ? tw_st_open_file(dir, &set) : tw_st_open_dir(dir, &set)) == TW_OK) {
        size_t count[TW_DT_COUNT] = {0};
        uint64_t bytes[TW_DT_COUNT] = {0}, params = 0;
        for (size_t i = 0; i < tw_st_count(set); i++) {
            const tw_tensor *t = tw_st_at(set, i);
            if ((int)t->type < 0 || t->type >= TW_DT_COUNT) continue;
            count[t->type]++;
            bytes[t->type] += t->nbytes;
            params += (uint64_t)tw_tensor_nelem(t);
        }
        printf("weights:        %zu tensors, %.2fM parameters, %.1f MB on disk;", tw_st_count(set), params / 1e6,
               tw_st_bytes(set) / 1e6);
        for (int d = 0; d < TW_DT_COUNT; d++)
            if (count[d]) printf(" %s x%zu (%.1f MB)", tw_dtype_name((tw_dtype)d), count[d], bytes[d] / 1e6);
        putchar('\n');
        if (packed && tw_quant_src(set, dir, &src) != TW_OK) src = tw_src_dir(dir);
    } else {
        printf("weights:        (cannot list: %s)\n", tw_last_error());
    }
    printf("vocabulary:     %d tokens; <bos>:", tw_tokenizer_vocab_size(tok));
    int32_t bos = tw_tokenizer_bos(tok);
    if (bos >= 0) print_token(tok, bos);
    else printf(" none");
    putchar('\n');
    const int32_t *stops = NULL;
    size_t n_stops = tw_model_stop_ids(m, &stops);
    printf("stop ids:      ");
    for (size_t i = 0; i < n_stops; i++) print_token(tok, stops[i]);
    if (!n_stops) printf(" none");
    putchar('\n');
    printf("chat template:  %s\n", template_source(&src, buf, sizeof buf));
    tw_src_free(&src);
    tw_st_close(set);
    printf("final softcap:  %s\n", g.final_softcap < 0 ? "as config.json says" : g.final_softcap ? "on" : "off");
    printf("kernels:        %s (cpu: %s)\n", tw_kpath_name(tw_kernels_init()), tw_cpu_features());
    printf("build:          %s\n", tw_build_info());
    tw_model_free(m);
    return 0;
}
