/*
** jinja.h — internal entry points of the chat-template interpreter (src/text/jinja.c).
**
** The public API (tw_template_new / _free / _render in tower.h) covers the common case of
** role + string content messages. Callers inside the library that need the full Jinja context
** (typed content parts, tools, documents, extra variables) build a jansson object and call
** tw_template_render_json directly.
*/
#ifndef TW_JINJA_H
#define TW_JINJA_H

#include "tw_internal.h"

/* Renders t with the variables of `context` (a JSON object: messages, add_generation_prompt,
** bos_token, eos_token, tools, ...). *out is malloc'ed and NUL-terminated; *len (may be NULL)
** receives its length, which matters when the prompt itself contains U+0000.
** Errors: TW_E_TEMPLATE (raise_exception() gives exactly its message; other runtime errors
** give "chat template:LINE:COL: ..."), TW_E_ARG for a bad context. */
tw_status tw_template_render_json(const tw_template *t, const json_t *context, char **out,
                                  size_t *len);

#endif /* TW_JINJA_H */
