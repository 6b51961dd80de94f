/*
** serve_api.c — OpenAI's JSON in and out for `tower serve` (docs/server.md lists every field).
**
** A request body becomes a job: the prompt (rendered with the checkpoint's chat template through
** tw_prompt_from_chat, media fetched and decoded by serve_media.c and encoded here, in the
** connection's thread), the sampling parameters and what the response must contain. Fields we
** do not support are refused with a 400 that names them: a client that asks for n = 3 or for
** tools must not silently get something else. A finished job becomes the response JSON, or, for
** a stream, the chunks the scheduler queues as it goes.
*/
#ifdef TW_HAVE_HTTPD
#include "serve.h"
#include "serve_media.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double now_ms(void);

/* ---- replies ------------------------------------------------------------------------------------ */

static void reply_json(sv_reply *r, int status, json_t *j) {
    r->status = status;
    r->type = "application/json";
    r->body = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    r->len = r->body ? strlen(r->body) : 0;
    json_decref(j);
    if (!r->body) {
        r->status = 500;
        r->body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\"}}");
        r->len = r->body ? strlen(r->body) : 0;
    }
}

static const char *error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

void sv_error(sv_reply *r, int status, const char *param, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:s, s:s, s:o, s:o}", "message", msg, "type", error_type(status), "param",
                          param ? json_string(param) : json_null(), "code", json_integer(status));
    reply_json(r, status, json_pack("{s:o}", "error", e));
}

char *sv_api_error_event(int status, const char *msg, size_t *out_len) {
    json_t *e = json_pack("{s:{s:s, s:s, s:i}}", "error", "message", msg ? msg : "error", "type",
                          error_type(status), "code", status);
    char *s = json_dumps(e, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(e);
    char *out = NULL;
    if (s && asprintf(&out, "data: %s\n\n", s) < 0) out = NULL;
    free(s);
    *out_len = out ? strlen(out) : 0;
    return out;
}

/* ---- field checks --------------------------------------------------------------------------------- */

/* A field's reader: returns false after filling r with a 400 naming the field. */
static bool only_fields(sv_reply *r, json_t *obj, const char *const *allowed, const char *where) {
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++) ok |= strcmp(key, allowed[i]) == 0;
        if (!ok) {
            sv_error(r, 400, key, "unsupported field '%s'%s%s: towervision does not implement it (docs/server.md lists the fields)",
                     key, where ? " in " : "", where ? where : "");
            return false;
        }
    }
    return true;
}

static bool get_num(sv_reply *r, json_t *obj, const char *name, double lo, double hi, double *out, bool *set) {
    json_t *v = json_object_get(obj, name);
    if (set) *set = false;
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v)) {
        sv_error(r, 400, name, "'%s' must be a number", name);
        return false;
    }
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        sv_error(r, 400, name, "'%s' is %g: expected a value in [%g, %g]", name, d, lo, hi);
        return false;
    }
    *out = d;
    if (set) *set = true;
    return true;
}

static bool get_int(sv_reply *r, json_t *obj, const char *name, long long lo, long long hi, long long *out, bool *set) {
    json_t *v = json_object_get(obj, name);
    if (set) *set = false;
    if (!v || json_is_null(v)) return true;
    if (!json_is_integer(v)) {
        sv_error(r, 400, name, "'%s' must be an integer", name);
        return false;
    }
    long long d = json_integer_value(v);
    if (d < lo || d > hi) {
        sv_error(r, 400, name, "'%s' is %lld: expected an integer in [%lld, %lld]", name, d, lo, hi);
        return false;
    }
    *out = d;
    if (set) *set = true;
    return true;
}

static bool get_bool(sv_reply *r, json_t *obj, const char *name, bool *out) {
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) {
        sv_error(r, 400, name, "'%s' must be true or false", name);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

static json_t *parse_body(sv_reply *r, const char *body, size_t len) {
    json_error_t e;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
    if (!j) {
        sv_error(r, 400, NULL, "the body is not valid JSON: %s (line %d, column %d)", e.text, e.line, e.column);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        sv_error(r, 400, NULL, "the body must be a JSON object");
        return NULL;
    }
    return j;
}

/* ---- sampling fields shared by both routes ------------------------------------------------------- */

static bool parse_sampling(sv_server *sv, sv_reply *r, json_t *b, sv_job *j, bool chat) {
    tw_gen_params *gp = &j->gp;
    *gp = tw_gen_default_params();
    tw_sampler_params *sp = &gp->sampling;
    /* OpenAI's defaults: temperature 1, top_p 1; a random seed unless one is given */
    sp->temperature = 1.0f;
    sp->seed = (uint64_t)(now_ms() * 1000.0) ^ (uint64_t)(uintptr_t)j;
    double d;
    long long ll;
    bool set;
    if (!get_num(r, b, "temperature", 0, 2, &d, &set)) return false;
    if (set) sp->temperature = (float)d;
    if (!get_num(r, b, "top_p", 0, 1, &d, &set)) return false;
    if (set) sp->top_p = d <= 0 ? 1e-9f : (float)d;
    if (!get_int(r, b, "top_k", -1, 1 << 30, &ll, &set)) return false;
    if (set) sp->top_k = ll < 0 ? 0 : (int32_t)ll;
    if (!get_num(r, b, "min_p", 0, 1, &d, &set)) return false;
    if (set) sp->min_p = (float)d;
    if (!get_num(r, b, "frequency_penalty", -2, 2, &d, &set)) return false;
    if (set) sp->frequency_penalty = (float)d;
    if (!get_num(r, b, "presence_penalty", -2, 2, &d, &set)) return false;
    if (set) sp->presence_penalty = (float)d;
    if (!get_num(r, b, "repetition_penalty", 0.01, 100, &d, &set)) return false;
    if (set) sp->repetition_penalty = (float)d;
    if (!get_int(r, b, "seed", INT64_MIN, INT64_MAX, &ll, &set)) return false;
    if (set) sp->seed = (uint64_t)ll;

    /* max_tokens: OpenAI's completions default is 16; chat's is "until done" (bounded here) */
    long long mt = chat ? sv->cfg->max_tokens : SV_MIN(16, sv->cfg->max_tokens);
    bool set2;
    if (!get_int(r, b, "max_tokens", 0, 1LL << 31, &ll, &set)) return false;
    if (set) mt = ll;
    if (!get_int(r, b, "max_completion_tokens", 0, 1LL << 31, &ll, &set2)) return false;
    if (set2) mt = ll;
    if (mt > sv->cfg->max_tokens) {
        sv_error(r, 400, set2 ? "max_completion_tokens" : "max_tokens",
                 "%s is %lld: this server generates at most %d tokens per request (--max-tokens)",
                 set2 ? "max_completion_tokens" : "max_tokens", mt, (int)sv->cfg->max_tokens);
        return false;
    }
    j->max_tokens = (int32_t)mt;
    gp->max_new_tokens = mt > 0 ? (int32_t)mt : 1;   /* 0 is handled by the scheduler: no step */

    json_t *stop = json_object_get(b, "stop");
    if (stop && !json_is_null(stop)) {
        size_t n = json_is_string(stop) ? 1 : json_is_array(stop) ? json_array_size(stop) : (size_t)-1;
        if (n == (size_t)-1 || n > 16) {
            sv_error(r, 400, "stop", "'stop' must be a string or an array of at most 16 strings");
            return false;
        }
        j->stops = calloc(n ? n : 1, sizeof *j->stops);
        if (!j->stops) { sv_error(r, 500, NULL, "out of memory"); return false; }
        for (size_t i = 0; i < n; i++) {
            json_t *s = json_is_string(stop) ? stop : json_array_get(stop, i);
            if (!json_is_string(s) || json_string_length(s) == 0) {
                sv_error(r, 400, "stop", "'stop' entries must be non-empty strings");
                return false;
            }
            j->stops[j->n_stops++] = strdup(json_string_value(s));
        }
        gp->stop_strings = (const char *const *)j->stops;
        gp->n_stop_strings = j->n_stops;
    }
    if (!get_bool(r, b, "stream", &j->stream)) return false;
    json_t *so = json_object_get(b, "stream_options");
    if (so && !json_is_null(so)) {
        static const char *const ok[] = { "include_usage", "continuous_usage_stats", NULL };
        if (!json_is_object(so)) { sv_error(r, 400, "stream_options", "'stream_options' must be an object"); return false; }
        if (!only_fields(r, so, ok, "stream_options")) return false;
        if (!j->stream) { sv_error(r, 400, "stream_options", "'stream_options' is only allowed with stream: true"); return false; }
        if (!get_bool(r, so, "include_usage", &j->include_usage)) return false;
    }
    if (!get_int(r, b, "n", 1, 1, &ll, NULL)) return false;
    return true;
}

/* ---- media and the chat prompt -------------------------------------------------------------------- */

static sm_limits media_limits(const sv_server *sv) {
    sm_limits l = {
        .max_bytes = sv->cfg->max_media_bytes, .max_pixels = sv->cfg->max_pixels, .timeout_ms = sv->cfg->fetch_timeout_ms,
        .media_dir = sv->cfg->media_dir, .n_frames = sv->cfg->n_frames,
    };
    return l;
}

static bool add_image(sv_job *j, tw_image *im) {
    tw_image **n = realloc(j->images, (j->n_images + 1) * sizeof *n);
    if (!n) { tw_image_free(im); return false; }
    j->images = n;
    j->images[j->n_images++] = im;
    return true;
}

static bool add_video(sv_job *j, tw_video *v) {
    tw_video **n = realloc(j->videos, (j->n_videos + 1) * sizeof *n);
    if (!n) { tw_video_free(v); return false; }
    j->videos = n;
    j->videos[j->n_videos++] = v;
    return true;
}

/* One content part into parts[*np]. */
static bool parse_part(sv_server *sv, sv_reply *r, sv_job *j, json_t *part, size_t mi, size_t pi, tw_part *out) {
    char where[64];
    snprintf(where, sizeof where, "messages[%zu].content[%zu]", mi, pi);
    if (!json_is_object(part)) { sv_error(r, 400, where, "%s must be an object", where); return false; }
    const char *type = json_string_value(json_object_get(part, "type"));
    if (!type) { sv_error(r, 400, where, "%s has no string 'type'", where); return false; }
    char err[512];
    int status = 400;
    sm_limits lim = media_limits(sv);
    if (!strcmp(type, "text")) {
        static const char *const ok[] = { "type", "text", NULL };
        if (!only_fields(r, part, ok, where)) return false;
        const char *t = json_string_value(json_object_get(part, "text"));
        if (!t) { sv_error(r, 400, where, "%s: a text part needs a string 'text'", where); return false; }
        *out = (tw_part){ .type = TW_PART_TEXT, .text = t };
        return true;
    }
    if (j->n_images + j->n_videos >= (size_t)sv->cfg->max_media) {
        sv_error(r, 413, where, "too many images and videos: at most %d per request (--max-media)", sv->cfg->max_media);
        return false;
    }
    if (!strcmp(type, "image_url")) {
        static const char *const ok[] = { "type", "image_url", NULL };
        static const char *const ok2[] = { "url", "detail", NULL };
        if (!only_fields(r, part, ok, where)) return false;
        json_t *iu = json_object_get(part, "image_url");
        const char *url = json_is_string(iu) ? json_string_value(iu) : json_string_value(json_object_get(iu, "url"));
        if (json_is_object(iu) && !only_fields(r, iu, ok2, where)) return false;
        if (!url) { sv_error(r, 400, where, "%s: image_url needs a string 'url'", where); return false; }
        if (!tw_model_has_vision(sv->model)) { sv_error(r, 400, where, "this model takes no images (a text-only checkpoint)"); return false; }
        tw_image *im = NULL;
        if (sm_load_image(url, &lim, &im, &status, err, sizeof err) != 0) { sv_error(r, status, where, "%s: %s", where, err); return false; }
        if (!add_image(j, im)) { sv_error(r, 500, NULL, "out of memory"); return false; }
        *out = (tw_part){ .type = TW_PART_IMAGE, .image = im };
        return true;
    }
    if (!strcmp(type, "video_url") || !strcmp(type, "video")) {
        static const char *const ok[] = { "type", "video_url", "video", NULL };
        static const char *const ok2[] = { "url", "frames", NULL };
        if (!only_fields(r, part, ok, where)) return false;
        if (!tw_model_has_video(sv->model)) { sv_error(r, 400, where, "this model takes no video (a TowerVideo / LlavaOnevision checkpoint does)"); return false; }
        json_t *vu = json_object_get(part, !strcmp(type, "video") ? "video" : "video_url");
        json_t *frames = json_is_array(vu) ? vu : json_is_object(vu) ? json_object_get(vu, "frames") : NULL;
        if (json_is_object(vu) && !only_fields(r, vu, ok2, where)) return false;
        tw_video *v = NULL;
        if (frames) {
            size_t n = json_array_size(frames);
            if (!json_is_array(frames) || n == 0 || n > 4096) { sv_error(r, 400, where, "%s: 'frames' must be an array of 1 to 4096 image URLs", where); return false; }
            const char **urls = calloc(n, sizeof *urls);
            if (!urls) { sv_error(r, 500, NULL, "out of memory"); return false; }
            for (size_t i = 0; i < n; i++) {
                urls[i] = json_string_value(json_array_get(frames, i));
                if (!urls[i]) { free(urls); sv_error(r, 400, where, "%s: frame %zu is not a string", where, i); return false; }
            }
            int rc = sm_load_video_frames(urls, n, &lim, &v, &status, err, sizeof err);
            free(urls);
            if (rc != 0) { sv_error(r, status, where, "%s: %s", where, err); return false; }
        } else {
            const char *url = json_is_string(vu) ? json_string_value(vu) : json_string_value(json_object_get(vu, "url"));
            if (!url) { sv_error(r, 400, where, "%s: a video part needs 'video_url': {\"url\": ...} or a list of frames", where); return false; }
            if (sm_load_video(url, &lim, &v, &status, err, sizeof err) != 0) { sv_error(r, status, where, "%s: %s", where, err); return false; }
        }
        if (!add_video(j, v)) { sv_error(r, 500, NULL, "out of memory"); return false; }
        *out = (tw_part){ .type = TW_PART_VIDEO, .video = v };
        return true;
    }
    sv_error(r, 400, where, "%s: content part type '%s' is not supported (text, image_url, video_url, video)", where, type);
    return false;
}

/* messages -> job->prompt. flags: add_generation_prompt or TW_PROMPT_CONTINUE_FINAL. */
static bool build_chat_prompt(sv_server *sv, sv_reply *r, sv_job *j, json_t *msgs, int gen_flag) {
    size_t n = json_array_size(msgs);
    if (!json_is_array(msgs) || n == 0) { sv_error(r, 400, "messages", "'messages' must be a non-empty array"); return false; }
    if (n > 4096) { sv_error(r, 413, "messages", "at most 4096 messages"); return false; }
    tw_chat_message *cm = calloc(n, sizeof *cm);
    tw_part **parts = calloc(n, sizeof *parts);
    bool ok = cm && parts;
    if (!ok) sv_error(r, 500, NULL, "out of memory");
    for (size_t i = 0; ok && i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        char where[48];
        snprintf(where, sizeof where, "messages[%zu]", i);
        static const char *const fields[] = { "role", "content", "name", NULL };
        if (!json_is_object(m)) { sv_error(r, 400, where, "%s must be an object", where); ok = false; break; }
        if (!only_fields(r, m, fields, where)) { ok = false; break; }
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role || (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "developer"))) {
            sv_error(r, 400, where, "%s: 'role' must be system, developer, user or assistant", where);
            ok = false;
            break;
        }
        cm[i].role = strcmp(role, "developer") ? role : "system";
        json_t *c = json_object_get(m, "content");
        if (json_is_string(c)) {
            parts[i] = calloc(1, sizeof **parts);
            if (!parts[i]) { sv_error(r, 500, NULL, "out of memory"); ok = false; break; }
            parts[i][0] = (tw_part){ .type = TW_PART_TEXT, .text = json_string_value(c) };
            cm[i].n_parts = 1;
        } else if (json_is_array(c)) {
            size_t np = json_array_size(c);
            parts[i] = calloc(np ? np : 1, sizeof **parts);
            if (!parts[i]) { sv_error(r, 500, NULL, "out of memory"); ok = false; break; }
            for (size_t k = 0; ok && k < np; k++) ok = parse_part(sv, r, j, json_array_get(c, k), i, k, &parts[i][k]);
            cm[i].n_parts = np;
        } else if (!c || json_is_null(c)) {
            cm[i].n_parts = 0;
        } else {
            sv_error(r, 400, where, "%s: 'content' must be a string or an array of parts", where);
            ok = false;
        }
        cm[i].parts = parts[i];
    }
    if (ok && tw_prompt_from_chat(sv->model, cm, n, gen_flag, &j->prompt) != TW_OK) {
        sv_error(r, 400, "messages", "%s", tw_last_error());
        ok = false;
    }
    for (size_t i = 0; parts && i < n; i++) free(parts[i]);
    free(parts);
    free(cm);
    return ok;
}

/* The context check, then the media encodes (one at a time across connections), then submit. */
static void submit(sv_server *sv, sv_reply *r, sv_job *j) {
    static atomic_uint_fast64_t counter;
    uint64_t k = atomic_fetch_add(&counter, 1) + 1;
    snprintf(j->id, sizeof j->id, "%s-%08llx%04llx", j->kind == SV_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)(time(NULL) & 0xffffffff), (unsigned long long)(k & 0xffff));
    j->created = (int64_t)time(NULL);
    size_t np = tw_prompt_n_tokens(j->prompt);
    int32_t ctx = sv->cfg->n_ctx;
    if (np + (size_t)(j->max_tokens > 0 ? j->max_tokens : 0) + 1 > (size_t)ctx) {
        sv_error(r, 400, "messages", "this server's context is %d tokens, but the request needs %zu: %zu in the prompt "
                 "(images and videos included) and %d to generate; shorten the prompt or lower max_tokens",
                 (int)ctx, np + (size_t)j->max_tokens + 1, np, (int)j->max_tokens);
        return;
    }
    if (tw_prompt_n_media(j->prompt) > 0) {
        /* one encode at a time, in the background of the token steps (serve_sched.c) */
        pthread_mutex_lock(&sv->encode_lock);
        atomic_fetch_add(&sv_encodes_running, 1);
        tw_thread_set_background(1);
        tw_status st = atomic_load(&j->cancelled) ? TW_E_CANCELLED : tw_prompt_encode(j->prompt, sv->media_cache, NULL);
        tw_thread_set_background(0);
        atomic_fetch_sub(&sv_encodes_running, 1);
        pthread_mutex_unlock(&sv->encode_lock);
        if (st != TW_OK) {
            sv_error(r, st == TW_E_NOMEM ? 413 : 400, NULL, "encoding the media failed: %s", tw_last_error());
            return;
        }
    }
    int rc = sv_sched_submit(sv->sched, j);
    if (rc == 429) { sv_error(r, 429, NULL, "the server is busy: %d requests are waiting (--max-queue); retry later", sv->cfg->max_queue); return; }
    if (rc != 0) { sv_error(r, 503, NULL, "the server is shutting down"); return; }
    atomic_fetch_add(&j->refs, 1);
    r->job = j;
}

void sv_api_chat(sv_server *sv, const char *body, size_t len, sv_reply *r) {
    json_t *b = parse_body(r, body, len);
    if (!b) return;
    static const char *const ok[] = {
        "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p", "seed",
        "stop", "frequency_penalty", "presence_penalty", "repetition_penalty", "logprobs", "top_logprobs", "stream",
        "stream_options", "n", "user", "add_generation_prompt", "continue_final_message", NULL,
    };
    sv_job *j = sv_job_new();
    if (!j) { json_decref(b); sv_error(r, 500, NULL, "out of memory"); return; }
    j->kind = SV_CHAT;
    bool lp = false, agp = true, cont = false;
    long long top = 0;
    bool top_set;
    if (!only_fields(r, b, ok, NULL) || !parse_sampling(sv, r, b, j, true) || !get_bool(r, b, "logprobs", &lp) ||
        !get_int(r, b, "top_logprobs", 0, TW_MAX_TOP, &top, &top_set) || !get_bool(r, b, "add_generation_prompt", &agp) ||
        !get_bool(r, b, "continue_final_message", &cont))
        goto out;
    if (top_set && !lp) { sv_error(r, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true"); goto out; }
    if (cont && agp && json_object_get(b, "add_generation_prompt")) {
        sv_error(r, 400, "continue_final_message", "'continue_final_message' and 'add_generation_prompt' cannot both be true");
        goto out;
    }
    j->logprobs = lp ? (int)top : -1;
    if (!build_chat_prompt(sv, r, j, json_object_get(b, "messages"), cont ? TW_PROMPT_CONTINUE_FINAL : agp)) goto out;
    submit(sv, r, j);
out:
    json_decref(b);
    sv_job_unref(j);
}

void sv_api_completion(sv_server *sv, const char *body, size_t len, sv_reply *r) {
    json_t *b = parse_body(r, body, len);
    if (!b) return;
    static const char *const ok[] = {
        "model", "prompt", "messages", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop",
        "frequency_penalty", "presence_penalty", "repetition_penalty", "logprobs", "echo", "stream", "stream_options",
        "n", "user", "add_generation_prompt", "continue_final_message", NULL,
    };
    sv_job *j = sv_job_new();
    if (!j) { json_decref(b); sv_error(r, 500, NULL, "out of memory"); return; }
    j->kind = SV_COMPLETION;
    long long lpn = 0;
    bool lp_set, agp = true, cont = false;
    if (!only_fields(r, b, ok, NULL) || !parse_sampling(sv, r, b, j, false) ||
        !get_int(r, b, "logprobs", 0, TW_MAX_TOP, &lpn, &lp_set) || !get_bool(r, b, "echo", &j->echo) ||
        !get_bool(r, b, "add_generation_prompt", &agp) || !get_bool(r, b, "continue_final_message", &cont))
        goto out;
    j->logprobs = lp_set ? (int)lpn : -1;
    j->prompt_lp = (lp_set && j->echo) ? (int)lpn : -1;
    json_t *prompt = json_object_get(b, "prompt"), *msgs = json_object_get(b, "messages");
    if ((prompt != NULL) == (msgs != NULL)) {
        sv_error(r, 400, "prompt", "give either 'prompt' (a string or token ids) or 'messages' (a chat with images and videos)");
        goto out;
    }
    if (msgs) {
        if (!build_chat_prompt(sv, r, j, msgs, cont ? TW_PROMPT_CONTINUE_FINAL : agp)) goto out;
        j->echo_text = strdup(tw_prompt_text(j->prompt));   /* one <image> / <video> per medium */
        j->echo_len = j->echo_text ? strlen(j->echo_text) : 0;
    } else if (json_is_string(prompt)) {
        /* a completion prompt starts with <bos> as the tokenizer adds it (vLLM, llama-server) */
        const tw_tokenizer *tok = tw_model_tokenizer(sv->model);
        int32_t bos = tok ? tw_tokenizer_bos(tok) : -1;
        size_t bl = 0;
        const char *bp = bos >= 0 ? tw_token_piece(tok, bos, &bl) : NULL;
        const char *t = json_string_value(prompt);
        size_t tl = json_string_length(prompt);
        char *full = NULL;
        size_t fl = tl;
        if (bp && !(tl >= bl && !memcmp(t, bp, bl))) {
            full = malloc(bl + tl + 1);
            if (!full) { sv_error(r, 500, NULL, "out of memory"); goto out; }
            memcpy(full, bp, bl);
            memcpy(full + bl, t, tl);
            full[bl + tl] = 0;
            fl = bl + tl;
        }
        tw_status st = tw_prompt_from_text(sv->model, NULL, full ? full : t, fl, NULL, 0, TW_PROMPT_RAW, &j->prompt);
        free(full);
        j->echo_text = strndup(t, tl);
        j->echo_len = j->echo_text ? tl : 0;
        if (st != TW_OK) { sv_error(r, 400, "prompt", "%s", tw_last_error()); goto out; }
    } else if (json_is_array(prompt)) {
        size_t n = json_array_size(prompt);
        if (n == 0) { sv_error(r, 400, "prompt", "'prompt' is empty"); goto out; }
        if (!json_is_integer(json_array_get(prompt, 0))) {
            sv_error(r, 400, "prompt", "'prompt' must be a string or an array of token ids (one prompt per request)");
            goto out;
        }
        int32_t *ids = malloc(n * sizeof *ids);
        if (!ids) { sv_error(r, 500, NULL, "out of memory"); goto out; }
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_array_get(prompt, i);
            long long id = json_is_integer(v) ? json_integer_value(v) : -1;
            if (id < 0 || id >= tw_model_n_vocab(sv->model)) {
                free(ids);
                sv_error(r, 400, "prompt", "prompt[%zu] is not a token id in [0, %d)", i, (int)tw_model_n_vocab(sv->model));
                goto out;
            }
            ids[i] = (int32_t)id;
        }
        tw_status st = tw_prompt_from_ids(sv->model, ids, n, &j->prompt);
        if (st == TW_OK && tw_detokenize(tw_model_tokenizer(sv->model), ids, n, 0, &j->echo_text, &j->echo_len) != TW_OK)
            j->echo_text = NULL, j->echo_len = 0;
        free(ids);
        if (st != TW_OK) { sv_error(r, 400, "prompt", "%s", tw_last_error()); goto out; }
    } else {
        sv_error(r, 400, "prompt", "'prompt' must be a string or an array of token ids");
        goto out;
    }
    submit(sv, r, j);
out:
    json_decref(b);
    sv_job_unref(j);
}

/* ---- responses ------------------------------------------------------------------------------------ */

/* The text of one token, and its bytes. */
static json_t *token_str(const tw_model *m, int32_t id) {
    char *t = NULL;
    size_t n = 0;
    const tw_tokenizer *tok = tw_model_tokenizer(m);
    if (!tok || tw_detokenize(tok, &id, 1, 0, &t, &n) != TW_OK) return json_string("");
    json_t *s = json_stringn_nocheck(t, n);
    if (!json_string_value(s) || !json_is_string(s)) {
        json_decref(s);
        s = json_string("");
    }
    /* a lone byte token decodes to U+FFFD: valid UTF-8, but say what it was */
    free(t);
    return s;
}

static json_t *token_bytes(const tw_model *m, int32_t id) {
    char *t = NULL;
    size_t n = 0;
    json_t *a = json_array();
    const tw_tokenizer *tok = tw_model_tokenizer(m);
    if (tok && tw_detokenize(tok, &id, 1, 0, &t, &n) == TW_OK)
        for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)t[i]));
    free(t);
    return a;
}

static json_t *lp_value(float lp) { return isnan(lp) ? json_null() : json_real(isinf(lp) ? -9999.0 : lp); }

/* chat: {"token", "logprob", "bytes", "top_logprobs": [...]} */
static json_t *chat_lp_entry(const tw_model *m, const sv_lp *lp) {
    json_t *top = json_array();
    for (int k = 0; k < lp->n_top; k++)
        json_array_append_new(top, json_pack("{s:o, s:o, s:o}", "token", token_str(m, lp->top_ids[k]), "logprob",
                                             lp_value(lp->top_lp[k]), "bytes", token_bytes(m, lp->top_ids[k])));
    return json_pack("{s:o, s:o, s:o, s:o}", "token", token_str(m, lp->id), "logprob", lp_value(lp->lp), "bytes",
                     token_bytes(m, lp->id), "top_logprobs", top);
}

/* completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"} */
static json_t *completion_lps(const tw_model *m, const sv_lp *a, size_t na, const sv_lp *b, size_t nb, size_t offset0) {
    json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t off = offset0;
    for (size_t i = 0; i < na + nb; i++) {
        const sv_lp *lp = i < na ? &a[i] : &b[i - na];
        json_t *s = token_str(m, lp->id);
        json_array_append_new(offs, json_integer((json_int_t)off));
        off += json_string_length(s);
        json_array_append_new(toks, s);
        json_array_append_new(lps, lp_value(lp->lp));
        if (isnan(lp->lp)) {
            json_array_append_new(tops, json_null());
        } else {
            json_t *o = json_object();
            for (int k = 0; k < lp->n_top; k++) {
                json_t *ts = token_str(m, lp->top_ids[k]);
                json_object_set_new(o, json_string_value(ts), lp_value(lp->top_lp[k]));
                json_decref(ts);
            }
            json_array_append_new(tops, o);
        }
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", toks, "token_logprobs", lps, "top_logprobs", tops, "text_offset", offs);
}

static json_t *usage(const sv_job *j) {
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", (json_int_t)j->n_prompt, "completion_tokens",
                     (json_int_t)j->n_completion, "total_tokens", (json_int_t)(j->n_prompt + j->n_completion),
                     "prompt_tokens_details", "cached_tokens", (json_int_t)j->n_cached);
}

void sv_api_job_reply(sv_server *sv, sv_job *j, sv_reply *r) {
    const tw_model *m = sv->model;
    if (j->status != 0) {
        sv_error(r, j->status, NULL, "%s", j->err[0] ? j->err : "the request failed");
        return;
    }
    json_t *choice;
    if (j->kind == SV_CHAT) {
        json_t *lps = json_null();
        if (j->logprobs >= 0) {
            json_t *content = json_array();
            for (size_t i = 0; i < j->n_lps; i++) json_array_append_new(content, chat_lp_entry(m, &j->lps[i]));
            lps = json_pack("{s:o}", "content", content);
        }
        choice = json_pack("{s:i, s:{s:s, s:s%}, s:o, s:s}", "index", 0, "message", "role", "assistant", "content",
                           j->text ? j->text : "", j->text_len, "logprobs", lps, "finish_reason", j->finish_reason);
    } else {
        size_t plen = j->echo ? j->echo_len : 0;
        const char *ptext = j->echo_text;
        size_t tl = plen + j->text_len;
        char *all = malloc(tl + 1);
        if (all) {
            if (plen) memcpy(all, ptext, plen);
            if (j->text_len) memcpy(all + plen, j->text, j->text_len);
            all[tl] = 0;
        }
        json_t *lps = json_null();
        if (j->logprobs >= 0)
            lps = completion_lps(m, j->prompt_lp >= 0 ? j->plps : NULL, j->prompt_lp >= 0 ? (size_t)j->n_prompt : 0, j->lps,
                                 j->n_lps, 0);
        choice = json_pack("{s:s%, s:i, s:o, s:s}", "text", all ? all : "", all ? tl : 0, "index", 0, "logprobs", lps,
                           "finish_reason", j->finish_reason);
        free(all);
    }
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:[o], s:o}", "id", j->id, "object",
                          j->kind == SV_CHAT ? "chat.completion" : "text_completion", "created", (json_int_t)j->created,
                          "model", sv->cfg->model_name, "choices", choice, "usage", usage(j));
    if (!o) { sv_error(r, 500, NULL, "could not build the response (invalid UTF-8 in the output?)"); return; }
    reply_json(r, 200, o);
}

static char *sse(json_t *o, size_t *out_len) {
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(o);
    char *out = NULL;
    if (s && asprintf(&out, "data: %s\n\n", s) < 0) out = NULL;
    free(s);
    *out_len = out ? strlen(out) : 0;
    return out;
}

char *sv_api_chunk(const sv_config *cfg, const tw_model *m, sv_job *j, const char *text, size_t len, const sv_lp *lp,
                   size_t n_lp, const char *finish, size_t *out_len) {
    json_t *choice;
    json_t *fr = finish ? json_string(finish) : json_null();
    if (j->kind == SV_CHAT) {
        json_t *delta = finish ? json_object() : json_pack("{s:s%}", "content", text ? text : "", len);
        json_t *lps = json_null();
        if (lp && n_lp) {
            json_t *content = json_array();
            for (size_t i = 0; i < n_lp; i++) json_array_append_new(content, chat_lp_entry(m, &lp[i]));
            json_decref(lps);
            lps = json_pack("{s:o}", "content", content);
        }
        choice = json_pack("{s:i, s:o, s:o, s:o}", "index", 0, "delta", delta, "logprobs", lps, "finish_reason", fr);
    } else {
        json_t *lps = (lp && n_lp) ? completion_lps(m, NULL, 0, lp, n_lp, 0) : json_null();
        choice = json_pack("{s:s%, s:i, s:o, s:o}", "text", text ? text : "", len, "index", 0, "logprobs", lps, "finish_reason", fr);
    }
    return sse(json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", j->id, "object",
                         j->kind == SV_CHAT ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)j->created,
                         "model", cfg->model_name, "choices", choice),
               out_len);
}

char *sv_api_usage_chunk(const sv_config *cfg, sv_job *j, size_t *out_len) {
    return sse(json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", j->id, "object",
                         j->kind == SV_CHAT ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)j->created,
                         "model", cfg->model_name, "choices", "usage", usage(j)),
               out_len);
}

/* ---- small routes ----------------------------------------------------------------------------------- */

void sv_api_models(sv_server *sv, sv_reply *r) {
    json_t *mods = json_pack("[s]", "text");
    if (tw_model_has_vision(sv->model)) json_array_append_new(mods, json_string("image"));
    if (tw_model_has_video(sv->model)) json_array_append_new(mods, json_string("video"));
    json_t *m = json_pack("{s:s, s:s, s:I, s:s, s:i, s:o, s:s}", "id", sv->cfg->model_name, "object", "model", "created",
                          (json_int_t)time(NULL), "owned_by", "towervision", "max_model_len", (int)sv->cfg->n_ctx,
                          "input_modalities", mods, "architecture", tw_model_arch(sv->model));
    reply_json(r, 200, json_pack("{s:s, s:[o]}", "object", "list", "data", m));
}

void sv_api_tokenize(sv_server *sv, const char *body, size_t len, sv_reply *r) {
    json_t *b = parse_body(r, body, len);
    if (!b) return;
    static const char *const ok[] = { "model", "prompt", "content", "messages", "add_special_tokens", "add_generation_prompt", "with_pieces", NULL };
    bool add_special = true, agp = true, pieces = false;
    if (!only_fields(r, b, ok, NULL) || !get_bool(r, b, "add_special_tokens", &add_special) ||
        !get_bool(r, b, "add_generation_prompt", &agp) || !get_bool(r, b, "with_pieces", &pieces)) {
        json_decref(b);
        return;
    }
    json_t *text = json_object_get(b, "prompt");
    if (!text) text = json_object_get(b, "content");
    json_t *msgs = json_object_get(b, "messages");
    int32_t *ids = NULL;
    size_t n = 0;
    sv_job *j = NULL;
    if (msgs) {
        j = sv_job_new();
        if (!j || !build_chat_prompt(sv, r, j, msgs, agp)) { if (!j) sv_error(r, 500, NULL, "out of memory"); goto out; }
        n = tw_prompt_n_tokens(j->prompt);
        ids = malloc((n ? n : 1) * sizeof *ids);
        if (ids) memcpy(ids, tw_prompt_tokens(j->prompt), n * sizeof *ids);
    } else if (json_is_string(text)) {
        if (tw_tokenize(tw_model_tokenizer(sv->model), json_string_value(text), json_string_length(text), add_special, &ids, &n) != TW_OK) {
            sv_error(r, 400, "prompt", "%s", tw_last_error());
            goto out;
        }
    } else {
        sv_error(r, 400, "prompt", "give 'prompt' (a string) or 'messages'");
        goto out;
    }
    json_t *a = json_array(), *p = pieces ? json_array() : NULL;
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(a, json_integer(ids[i]));
        if (p) json_array_append_new(p, token_str(sv->model, ids[i]));
    }
    json_t *o = json_pack("{s:o, s:i, s:i}", "tokens", a, "count", (json_int_t)n, "max_model_len", (int)sv->cfg->n_ctx);
    if (p) json_object_set_new(o, "pieces", p);
    reply_json(r, 200, o);
out:
    free(ids);
    sv_job_unref(j);
    json_decref(b);
}

void sv_api_detokenize(sv_server *sv, const char *body, size_t len, sv_reply *r) {
    json_t *b = parse_body(r, body, len);
    if (!b) return;
    static const char *const ok[] = { "model", "tokens", NULL };
    if (!only_fields(r, b, ok, NULL)) { json_decref(b); return; }
    json_t *t = json_object_get(b, "tokens");
    size_t n = json_array_size(t);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!json_is_array(t) || !ids) {
        free(ids);
        json_decref(b);
        sv_error(r, 400, "tokens", "'tokens' must be an array of token ids");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(t, i);
        long long id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || id >= tw_model_n_vocab(sv->model)) {
            free(ids);
            json_decref(b);
            sv_error(r, 400, "tokens", "tokens[%zu] is not a token id in [0, %d)", i, (int)tw_model_n_vocab(sv->model));
            return;
        }
        ids[i] = (int32_t)id;
    }
    char *text = NULL;
    size_t tl = 0;
    if (tw_detokenize(tw_model_tokenizer(sv->model), ids, n, 0, &text, &tl) != TW_OK) sv_error(r, 400, "tokens", "%s", tw_last_error());
    else reply_json(r, 200, json_pack("{s:s%}", "prompt", text, tl));
    free(text);
    free(ids);
    json_decref(b);
}

void sv_api_apply_template(sv_server *sv, const char *body, size_t len, sv_reply *r) {
    json_t *b = parse_body(r, body, len);
    if (!b) return;
    static const char *const ok[] = { "model", "messages", "add_generation_prompt", "continue_final_message", NULL };
    bool agp = true, cont = false;
    sv_job *j = NULL;
    if (!only_fields(r, b, ok, NULL) || !get_bool(r, b, "add_generation_prompt", &agp) || !get_bool(r, b, "continue_final_message", &cont)) goto out;
    j = sv_job_new();
    if (!j) { sv_error(r, 500, NULL, "out of memory"); goto out; }
    if (!build_chat_prompt(sv, r, j, json_object_get(b, "messages"), cont ? TW_PROMPT_CONTINUE_FINAL : agp)) goto out;
    reply_json(r, 200, json_pack("{s:s, s:i}", "prompt", tw_prompt_text(j->prompt), "n_tokens", (json_int_t)tw_prompt_n_tokens(j->prompt)));
out:
    sv_job_unref(j);
    json_decref(b);
}

/* Prometheus text format. */
void sv_api_metrics(sv_server *sv, sv_reply *r) {
    sv_metrics mt;
    memset(&mt, 0, sizeof mt);
    if (sv->sched) sv_sched_metrics(sv->sched, &mt);
    tw_media_cache_stats cs;
    memset(&cs, 0, sizeof cs);
    if (sv->media_cache) tw_media_cache_get_stats(sv->media_cache, &cs);
    double dec_s = mt.decode_ms / 1000.0;
    char *out = NULL;
    int n = asprintf(&out,
        "# HELP tower_requests_total Requests finished, by outcome.\n# TYPE tower_requests_total counter\n"
        "tower_requests_total{outcome=\"ok\"} %llu\ntower_requests_total{outcome=\"error\"} %llu\n"
        "# HELP tower_http_requests_total HTTP requests received.\n# TYPE tower_http_requests_total counter\n"
        "tower_http_requests_total %llu\n"
        "# HELP tower_prompt_tokens_total Prompt tokens, media tokens included.\n# TYPE tower_prompt_tokens_total counter\n"
        "tower_prompt_tokens_total %llu\n"
        "# HELP tower_prompt_tokens_cached_total Prompt tokens taken from the prefix cache.\n# TYPE tower_prompt_tokens_cached_total counter\n"
        "tower_prompt_tokens_cached_total %llu\n"
        "# HELP tower_completion_tokens_total Generated tokens.\n# TYPE tower_completion_tokens_total counter\n"
        "tower_completion_tokens_total %llu\n"
        "# HELP tower_decode_tokens_per_second Generated tokens per second of decode batches, since start.\n# TYPE tower_decode_tokens_per_second gauge\n"
        "tower_decode_tokens_per_second %.3f\n"
        "# HELP tower_requests_running Requests being prefilled or generated.\n# TYPE tower_requests_running gauge\n"
        "tower_requests_running %d\n"
        "# HELP tower_requests_queued Requests waiting for a slot.\n# TYPE tower_requests_queued gauge\n"
        "tower_requests_queued %d\n"
        "# HELP tower_media_encoded_total Images and videos encoded (cache misses).\n# TYPE tower_media_encoded_total counter\n"
        "tower_media_encoded_total{kind=\"image\"} %llu\ntower_media_encoded_total{kind=\"video\"} %llu\n"
        "# HELP tower_media_encode_seconds_total Time spent encoding media.\n# TYPE tower_media_encode_seconds_total counter\n"
        "tower_media_encode_seconds_total{kind=\"image\"} %.3f\ntower_media_encode_seconds_total{kind=\"video\"} %.3f\n"
        "# HELP tower_media_cache_hits_total Media found in the embedding cache.\n# TYPE tower_media_cache_hits_total counter\n"
        "tower_media_cache_hits_total %llu\n"
        "# HELP tower_kv_cache_bytes KV cache memory of all sequences (running and kept for reuse).\n# TYPE tower_kv_cache_bytes gauge\n"
        "tower_kv_cache_bytes %zu\n"
        "# HELP tower_kv_cache_budget_bytes The KV memory budget (--cache-mb).\n# TYPE tower_kv_cache_budget_bytes gauge\n"
        "tower_kv_cache_budget_bytes %zu\n"
        "# HELP tower_kv_cache_usage_ratio KV memory over the budget.\n# TYPE tower_kv_cache_usage_ratio gauge\n"
        "tower_kv_cache_usage_ratio %.4f\n"
        "# HELP tower_sequences_kept Idle sequences kept for prefix reuse.\n# TYPE tower_sequences_kept gauge\n"
        "tower_sequences_kept %d\n"
        "# HELP tower_batches_total Forward passes run; rows: sequences in them.\n# TYPE tower_batches_total counter\n"
        "tower_batches_total %llu\ntower_batch_sequences_total %llu\n",
        (unsigned long long)mt.requests, (unsigned long long)mt.requests_failed,
        (unsigned long long)atomic_load(&sv->n_http), (unsigned long long)mt.prompt_tokens,
        (unsigned long long)mt.cached_tokens, (unsigned long long)mt.completion_tokens,
        dec_s > 0 ? (double)mt.completion_tokens / dec_s : 0.0, mt.running, mt.queued,
        (unsigned long long)cs.images_encoded, (unsigned long long)cs.videos_encoded, cs.image_encode_ms / 1000.0,
        cs.video_encode_ms / 1000.0, (unsigned long long)cs.hits, mt.kv_bytes, mt.kv_budget,
        mt.kv_budget ? (double)mt.kv_bytes / (double)mt.kv_budget : 0.0, mt.seqs_kept, (unsigned long long)mt.batches,
        (unsigned long long)mt.batch_rows);
    if (n < 0) { sv_error(r, 500, NULL, "out of memory"); return; }
    r->status = 200;
    r->body = out;
    r->len = (size_t)n;
    r->type = "text/plain; version=0.0.4";
}
#endif /* TW_HAVE_HTTPD */
