/*
** serve_media.h — image and video URLs of OpenAI content parts, fetched and decoded with limits.
*/
#ifndef TOWER_SERVE_MEDIA_H
#define TOWER_SERVE_MEDIA_H

#include "tower.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sm_limits {
    uint64_t    max_bytes;
    uint64_t    max_pixels;
    long        timeout_ms;
    const char *media_dir;   /* NULL: file:// refused */
    int32_t     n_frames;
} sm_limits;

int sm_load_image(const char *url, const sm_limits *lim, tw_image **out, int *http_status, char *err, size_t err_len);
int sm_load_video(const char *url, const sm_limits *lim, tw_video **out, int *http_status, char *err, size_t err_len);
int sm_load_video_frames(const char *const *urls, size_t n, const sm_limits *lim, tw_video **out, int *http_status,
                         char *err, size_t err_len);

#endif
