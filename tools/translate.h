/*
** translate.h — what `tower translate` (tools/cmd_translate.c) shares with its dataset mode
** (tools/translate_dataset.c): the table of the 20 TowerVision languages and the paper's
** translation request.
*/
#ifndef TOWER_TRANSLATE_H
#define TOWER_TRANSLATE_H

#include <stddef.h>

/* One language: its code ("pt-BR"), the name the paper's prompt gives it ("Portuguese (Brazil)")
** and the other spellings accepted (compared case-insensitively, '_' read as '-'). */
typedef struct language {
    const char *code;
    const char *name;
    const char *aliases[6];
} language;

/* The language s names (code, name or alias), or NULL. */
const language *find_language(const char *s);
/* find_language, or an error on stderr listing the valid languages ("opt: unknown language"). */
const language *language_arg(const char *opt, const char *s);
/* The paper's request for one source text, "Translate the following source text from English to
** German:\n{source}", after one "<image>\n" per image and one "<video>\n" per video (malloc'ed). */
char *translation_request(const language *from, const language *to, const char *src, size_t n_images,
                          size_t n_videos);

/* `tower translate --dataset FILE`: tools/translate_dataset.c. Returns the exit code. */
int translate_dataset(void);

#endif
