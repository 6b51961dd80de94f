/*
** workspace.c — the packing buffers of the matrix-matrix products (gemm_avx512.c, gemm_avx2.c,
** gemm_amx.c): packed x, per-thread weight panels. Allocating them fresh on every call cost more
** than the packing itself (page faults on new memory), so a few are kept between calls: a call
** takes a free slot, grows it if needed and gives it back. Several products may run at once on
** different pools; when every slot is busy a call gets a private buffer, freed when it is given back.
*/
#include "kernels.h"

#include <pthread.h>

enum { WS_SLOTS = 4 };

static struct {
    pthread_mutex_t lock;
    struct { void *p; size_t cap; bool busy; } slot[WS_SLOTS];
} ws = { .lock = PTHREAD_MUTEX_INITIALIZER };

void *tw_ws_take(size_t n, int *slot) {
    *slot = -1;
    pthread_mutex_lock(&ws.lock);
    for (int i = 0; i < WS_SLOTS && *slot < 0; i++)
        if (!ws.slot[i].busy) ws.slot[i].busy = true, *slot = i;
    pthread_mutex_unlock(&ws.lock);
    if (*slot < 0) return tw_aligned_alloc(n);
    if (ws.slot[*slot].cap < n) {
        tw_aligned_free(ws.slot[*slot].p);
        ws.slot[*slot].p = tw_aligned_alloc(n);
        ws.slot[*slot].cap = ws.slot[*slot].p ? n : 0;
    }
    void *p = ws.slot[*slot].p;
    if (!p) {   /* out of memory: the slot is free again, the caller sees NULL */
        pthread_mutex_lock(&ws.lock);
        ws.slot[*slot].busy = false;
        pthread_mutex_unlock(&ws.lock);
        *slot = -1;
    }
    return p;
}

void tw_ws_give(void *p, int slot) {
    if (slot < 0) {
        tw_aligned_free(p);
        return;
    }
    pthread_mutex_lock(&ws.lock);
    ws.slot[slot].busy = false;
    pthread_mutex_unlock(&ws.lock);
}
