/*
** serve_media.h — the images and videos of an OpenAI-style chat request (the url of an image_url
** or video_url content part), fetched and decoded under the server's limits. The URL comes from
** the client and is trusted for nothing:
**
**   data:image/<type>;base64,<data>   strict base64 (no spaces, '=' only as padding); its size is
**                                     known from its length and checked before anything is decoded
**   http://, https://                 libcurl into memory: a byte cap (a larger Content-Length is
**                                     refused at once, a body without one is cut off at the cap),
**                                     a timeout for the whole transfer, redirects only to http(s)
**   file:///absolute/path             only when the server has a --media-dir, and only for a
**                                     regular file whose real path (symlinks and ".." resolved,
**                                     percent escapes decoded) lies inside it
**
** Anything else (a bare path, ftp:, ...) is refused: the library's own loaders accept paths, so
** the client's string never reaches them. Images and frames are decoded with tw_image_decode,
** videos with tw_video_decode_ex, from the bytes in memory. Every function is thread-safe.
**
** On failure a function returns the HTTP status it chose (non-zero) and also stores it in
** *http_status, and writes into err one line for the client that names the field and says what
** was wrong or expected:
**
**   400  malformed URL or data, not an image / video, download failed (HTTP error, timeout)
**   403  file:// without --media-dir, or outside it
**   413  over a limit: bytes (data:, download, file) or pixels
**   415  a data: URL whose media type is not image/<type> (video/<type>); a format or
**       codec not decoded
**   500  out of memory or an internal error
**   501  the server was built without what the URL needs (libcurl for http, FFmpeg for video)
*/
#ifndef TOWER_SERVE_MEDIA_H
#define TOWER_SERVE_MEDIA_H

#include "tower.h"

typedef struct sm_limits {
    uint64_t    max_bytes;    /* encoded bytes of one URL (data:, download, file); 0: 64 MiB         */
    uint64_t    max_pixels;   /* width x height of an image or a video frame; 0: the library's
                              ** defaults (images 178956970, video frames 8192 x 8192)              */
    long        timeout_ms;   /* one download; a list of frames: all of them together; 0: 30 s     */
    const char *media_dir;    /* file:// URLs must resolve inside it; NULL: file:// is refused     */
    int32_t     n_frames;     /* frames sampled from a video or a list of frames; <= 0: all        */
} sm_limits;

/* url: an image_url.url. *out is the decoded image (tw_image_free). */
int sm_load_image(const char *url, const sm_limits *lim, tw_image **out, int *http_status, char *err,
                  size_t err_len);

/* url: a video_url.url: data:video/<type>;base64,..., http(s) or file:// (a video file). */
int sm_load_video(const char *url, const sm_limits *lim, tw_video **out, int *http_status, char *err,
                  size_t err_len);

/* A video given as n frame image URLs (each as sm_load_image takes it), in order: sampled to
** lim->n_frames as a video's frames are, and only the sampled URLs are fetched and decoded.
** Messages name the frame: "video_url[3]: ...". */
int sm_load_video_frames(const char *const *urls, size_t n, const sm_limits *lim, tw_video **out, int *http_status,
                         char *err, size_t err_len);

#endif
