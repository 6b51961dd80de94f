/*
** cmd_info.c — `tower info`: loads a model and describes it: directory or file, architecture,
** sizes, tensor dtypes, special and stop tokens, chat template source, kernel path, build.
*/
#include "commands.h"
#include "cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>

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

int tower_cmd_info(int argc, char **argv) {
    parse_options(argc, argv, C_INFO, tower_help_info);
    tw_model *m = NULL;
    int rc = load_model(&m);
    if (rc) return rc;
    const tw_tokenizer *tok = tw_model_tokenizer(m);
    const char *dir = tw_model_dir(m);
    printf("model:          %s\n", g.model);
    /* a `tower quantize` file: tw_model_dir is the file, its small files are embedded in it */
    struct stat st;
    bool packed = stat(dir, &st) == 0 && S_ISREG(st.st_mode);
    printf("%s%s\n", packed ? "file:           " : "directory:      ", dir);
    printf("architecture:   %s\n", tw_model_arch(m));
    printf("text model:     %d layers, hidden %d, vocab %d, trained context %d\n", tw_model_n_layer(m), tw_model_n_embd(m),
           tw_model_n_vocab(m), tw_model_n_ctx_train(m));
    int32_t img = tw_model_image_token(m);
    if (img >= 0) { printf("image token:   "); print_token(tok, img); putchar('\n'); }
    else printf("image token:    none (text-only model)\n");

    tw_checkpoint_info ci;
    tw_checkpoint_describe(dir, &ci);
    if (ci.weights_listed) {
        printf("weights:        %zu tensors, %.2fM parameters, %.1f MB on disk;", ci.n_tensors, ci.n_params / 1e6,
               ci.file_bytes / 1e6);
        for (size_t d = 0; d < ci.n_types; d++)
            printf(" %s x%zu (%.1f MB)", ci.types[d].type, ci.types[d].n_tensors, ci.types[d].bytes / 1e6);
        putchar('\n');
    } else {
        printf("weights:        (cannot list: %s)\n", ci.weights_error);
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
    if (g.chat_template) printf("chat template:  %s (--chat-template)\n", g.chat_template);
    else printf("chat template:  %s\n", ci.chat_template ? ci.chat_template
                                                           : "none found in the checkpoint (the library's default, if any)");
    printf("final softcap:  %s\n", g.final_softcap < 0 ? "as config.json says" : g.final_softcap ? "on" : "off");
    printf("kernels:        %s (cpu: %s)\n", tw_kernels_path_name(), tw_cpu_feature_list());
    printf("build:          %s\n", tw_build_info());
    tw_model_free(m);
    return 0;
}
