/*
** cmd_tokenize.c — `tower tokenize`: the ids and pieces of a text, or JSON lines in and out
** (--jsonl). Needs only the tokenizer: a directory with tokenizer.json, the file, or a repo id.
*/
#include "commands.h"
#include "media.h"   /* print_ids_line */

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

void tower_help_tokenize(void) {
    printf("usage: tower tokenize -m MODEL_OR_TOKENIZER [-p TEXT | -f FILE | < stdin] [options]\n\n"
           "Prints one line per token: id and vocabulary piece (control characters escaped).\n"
           "MODEL_OR_TOKENIZER: a directory with tokenizer.json (weights not needed), a tokenizer.json\n"
           "file, or a repo id.\n\n"
           "  -p, --prompt TEXT   text to tokenize ('-': stdin); -f, --file (or --prompt-file) FILE: from FILE\n"
           "  --no-special        do not prepend <bos> (the default adds it, as HF does)\n"
           "  --ids               print only the ids, space separated, on one line\n"
           "  --jsonl             read JSON lines {\"text\": ..., \"add_special\": bool} from stdin and write\n"
           "                      {\"ids\": [...], \"pieces\": [...]} per line (an \"id\" field is copied;\n"
           "                      add_special defaults to the command line's choice)\n"
           "  --offline           never use the network\n\n"
           "examples:\n"
           "  tower tokenize -m ./TowerVision-2B -p \"Olá, mundo!\"\n"
           "  echo '{\"text\": \"a\\u0000b\", \"add_special\": false}' | tower tokenize -m ./tok --jsonl\n");
}

static int load_tokenizer(tw_tokenizer **tok) {
    require_model();
    struct stat st;
    if (stat(g.model, &st) == 0) {
        if (tw_tokenizer_load(g.model, tok) != TW_OK) return fail_lib();
        return 0;
    }
    /* not a path: a repo id, or tw_model_resolve says it is neither */
    tw_model_params p = model_params();
    char *dir = NULL;
    if (tw_model_resolve(g.model, &p, &dir) != TW_OK) return fail_lib();
    tw_status s = tw_tokenizer_load(dir, tok);
    tw_free(dir);
    return s == TW_OK ? 0 : fail_lib();
}

static json_t *pieces_json(const tw_tokenizer *tok, const int32_t *ids, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        size_t pl = 0;
        const char *p = tw_token_piece(tok, ids[i], &pl);
        json_t *s = p ? json_stringn(p, pl) : NULL;
        json_array_append_new(a, s ? s : json_null());
    }
    return a;
}

static int tokenize_jsonl(const tw_tokenizer *tok) {
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t n;
    int rc = 0;
    while (!rc && (n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        if (!n) continue;
        json_error_t jerr;
        json_t *in = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, &jerr);
        const json_t *text = in ? json_object_get(in, "text") : NULL;
        const json_t *add = in ? json_object_get(in, "add_special") : NULL;
        if (!in) { rc = fail("stdin line %zu: %s (column %d)", lineno, jerr.text, jerr.column); break; }
        if (!json_is_object(in) || !json_is_string(text)) {
            json_decref(in);
            rc = fail("stdin line %zu: expected an object with a string field \"text\"", lineno);
            break;
        }
        if (add && !json_is_boolean(add)) {
            json_decref(in);
            rc = fail("stdin line %zu: field \"add_special\" must be true or false", lineno);
            break;
        }
        int add_special = add ? json_is_true(add) : !g.no_special;
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if (tw_tokenize(tok, json_string_value(text), json_string_length(text), add_special, &ids, &n_ids) != TW_OK) {
            json_decref(in);
            rc = fail("stdin line %zu: %s", lineno, tw_last_error());
            break;
        }
        json_t *out = json_object(), *ja = json_array();
        const json_t *id = json_object_get(in, "id");
        if (id) json_object_set(out, "id", (json_t *)id);
        for (size_t i = 0; i < n_ids; i++) json_array_append_new(ja, json_integer(ids[i]));
        json_object_set_new(out, "ids", ja);
        json_object_set_new(out, "pieces", pieces_json(tok, ids, n_ids));
        char *s = json_dumps(out, JSON_COMPACT);
        if (s) { puts(s); free(s); }
        else rc = fail("stdin line %zu: cannot encode the output as JSON", lineno);
        json_decref(out);
        json_decref(in);
        tw_free(ids);
    }
    free(line);
    return rc;
}

int tower_cmd_tokenize(int argc, char **argv) {
    parse_options(argc, argv, C_TOKENIZE, tower_help_tokenize);
    if (g.jsonl && (g.prompt || g.prompt_file)) usage_error("--jsonl reads JSON lines from stdin; drop -p/-f");
    tw_tokenizer *tok = NULL;
    if (load_tokenizer(&tok)) return 1;
    int rc = 0;
    if (g.jsonl) {
        rc = tokenize_jsonl(tok);
    } else {
        char *text = NULL;
        size_t len = 0;
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if (read_prompt(&text, &len)) rc = 1;
        else if (tw_tokenize(tok, text, len, !g.no_special, &ids, &n_ids) != TW_OK) rc = fail_lib();
        else if (g.ids_only) print_ids_line(ids, n_ids);
        else {
            for (size_t i = 0; i < n_ids; i++) {
                size_t pl = 0;
                const char *p = tw_token_piece(tok, ids[i], &pl);
                printf("%8d  ", ids[i]);
                if (p) print_piece(stdout, p, pl);
                putchar('\n');
            }
            fprintf(stderr, "%zu tokens\n", n_ids);
        }
        tw_free(ids);
        free(text);
    }
    tw_tokenizer_free(tok);
    return rc;
}
