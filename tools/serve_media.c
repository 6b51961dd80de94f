/* serve_media.c — placeholder until the full version lands: data: and http(s) images only. */
#include "serve_media.h"

#include <stdio.h>
#include <string.h>

int sm_load_image(const char *url, const sm_limits *lim, tw_image **out, int *http_status, char *err, size_t err_len) {
    *http_status = 400;
    if (strncmp(url, "data:", 5) && strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) {
        snprintf(err, err_len, "image_url: only data: and http(s) URLs are supported");
        return -1;
    }
    tw_image_load_opts o = { .max_pixels = lim->max_pixels, .max_bytes = lim->max_bytes, .timeout_ms = lim->timeout_ms };
    if (tw_image_load(url, &o, out) != TW_OK) {
        snprintf(err, err_len, "image_url: %s", tw_last_error());
        return -1;
    }
    return 0;
}

int sm_load_video(const char *url, const sm_limits *lim, tw_video **out, int *http_status, char *err, size_t err_len) {
    (void)url; (void)lim; (void)out;
    *http_status = 400;
    snprintf(err, err_len, "video_url: not supported yet");
    return -1;
}

int sm_load_video_frames(const char *const *urls, size_t n, const sm_limits *lim, tw_video **out, int *http_status,
                         char *err, size_t err_len) {
    (void)urls; (void)n; (void)lim; (void)out;
    *http_status = 400;
    snprintf(err, err_len, "video_url: not supported yet");
    return -1;
}
