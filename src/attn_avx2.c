/*
** attn_avx2.c — the attention block (tw_attn_block, attn.h) for AVX2/FMA machines.
** (interim: scalar loops; the vectorised version follows)
*/
#include "attn.h"

#include <math.h>

void tw_attn_block_avx2(const tw_attn_block *b) {
    for (int32_t i = 0; i < b->m; i++) {
        float *s = b->s + (size_t)i * b->lds, mb = -INFINITY;
        int32_t lo = b->lo ? b->lo[i] : 0, hi = b->hi ? b->hi[i] : b->nk;
        for (int32_t j = 0; j < b->nk; j++) {
            float d = -INFINITY;
            if (j >= lo && j < hi) {
                const float *q = b->qp + (size_t)i * b->D, *k = b->k + (size_t)j * b->ldk;
                d = 0;
                for (int32_t e = 0; e < b->D; e++) d += q[e] * k[e];
                d *= b->scale;
                if (b->softcap > 0) d = b->softcap * tanhf(d / b->softcap);
            }
            s[j] = d;
            mb = d > mb ? d : mb;
        }
        float m_old = b->mx[i], m_new = m_old > mb ? m_old : mb;
        if (m_new == -INFINITY) continue;
        float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new), sum = 0;
        for (int32_t j = 0; j < b->nk; j++) sum += (s[j] = s[j] == -INFINITY ? 0.0f : expf(s[j] - m_new));
        b->l[i] = b->l[i] * alpha + sum;
        b->mx[i] = m_new;
        float *o = b->o + (size_t)i * b->ldo;
        for (int32_t e = 0; e < b->D; e++) o[e] *= alpha;
        for (int32_t j = 0; j < b->nk; j++) {
            const float *v = b->v + (size_t)j * b->ldv;
            for (int32_t e = 0; e < b->D; e++) o[e] += s[j] * v[e];
        }
    }
}
