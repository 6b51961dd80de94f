/*
** hub.h — finding models by name: a local directory, or a Hugging Face repo id
** "org/name[@revision]" looked up in the standard Hugging Face cache
** ($HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
** ~/.cache/huggingface/hub; layout models--org--name/{blobs,refs,snapshots/<commit>/}) so that
** files other tools downloaded are reused, and downloading what is missing from $HF_ENDPOINT
** with $HF_TOKEN (libcurl): resumable, verified (size, and sha256 for LFS files), written
** atomically. Offline ($HF_HUB_OFFLINE=1 or opts.offline) never touches the network.
** docs/models.md describes the behaviour for users.
*/
#ifndef TW_HUB_H
#define TW_HUB_H

#include "tw_internal.h"

typedef struct tw_hub_opts {
    int            offline;      /* 1: cache only (HF_HUB_OFFLINE=1 also forces this)       */
    const char    *endpoint;     /* NULL: $HF_ENDPOINT, else the public hub                  */
    const char    *token;        /* NULL: $HF_TOKEN (then $HF_HOME/token)                    */
    const char    *cache_dir;    /* NULL: from the environment as above                      */
    tw_progress_fn progress;     /* per file: what = file name, bytes done / total           */
    void          *progress_user_data;
    int            refresh;      /* 1: ask the hub where a branch/tag points even when the
                                 ** cache already holds a complete snapshot for it (0: a
                                 ** complete cached snapshot is used without any request)    */
} tw_hub_opts;

/* True when name looks like "org/name" or "org/name@rev" and is not an existing path. */
bool tw_hub_is_repo_id(const char *name);

/* name: an existing directory (returned as is), or a repo id. On success *dir (malloc'ed) is a
** directory holding config.json, the weights (model.safetensors or the index and every shard it
** names), tokenizer files and whichever optional configs the repo has. */
tw_status tw_hub_resolve(const char *name, const tw_hub_opts *opts, char **dir);

/* The hub cache root that tw_hub_resolve would use (opts may be NULL). *dir is malloc'ed. */
tw_status tw_hub_cache_dir(const tw_hub_opts *opts, char **dir);

/* SHA-256 (FIPS 180-4), used to verify LFS downloads against their etag. */
typedef struct tw_sha256 {
    uint32_t h[8];
    uint64_t len;        /* bytes hashed so far */
    uint8_t  buf[64];
    size_t   n;          /* bytes waiting in buf */
} tw_sha256;
void      tw_sha256_init(tw_sha256 *s);
void      tw_sha256_update(tw_sha256 *s, const void *data, size_t n);
void      tw_sha256_final_hex(tw_sha256 *s, char hex[65]);   /* lowercase, NUL-terminated */
tw_status tw_sha256_file(const char *path, char hex[65]);

#endif
