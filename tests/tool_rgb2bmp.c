/*
** tool_rgb2bmp.c — writes an RGB uint8 tensor [h, w, 3] of a safetensors file (e.g. a fixture's
** image_rgb, or one frame of video_frames_rgb [F, h, w, 3]) as an uncompressed 24-bit BMP, so
** shell tests can hand the reference's exact pixels to `tower --image` (tw_image_load reads BMP
** losslessly; the fixtures store some images only as tensors).
**
**   tool_rgb2bmp FILE.safetensors NAME OUT.bmp [FRAME]
*/
#include "safetensors.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* BITMAPFILEHEADER + BITMAPINFOHEADER, bottom-up rows of BGR padded to 4 bytes. */
static int write_bmp(const char *path, const uint8_t *rgb, int w, int h) {
    size_t stride = ((size_t)w * 3 + 3) & ~(size_t)3, size = 54 + stride * (size_t)h;
    uint8_t *buf = calloc(1, size);
    if (!buf) return -1;
    buf[0] = 'B', buf[1] = 'M';
    put32(buf + 2, (uint32_t)size);
    put32(buf + 10, 54);
    put32(buf + 14, 40);
    put32(buf + 18, (uint32_t)w);
    put32(buf + 22, (uint32_t)h);
    buf[26] = 1, buf[28] = 24;   /* planes, bits per pixel; BI_RGB */
    put32(buf + 34, (uint32_t)(stride * (size_t)h));
    for (int y = 0; y < h; y++) {
        uint8_t *row = buf + 54 + stride * (size_t)(h - 1 - y);
        for (int x = 0; x < w; x++) {
            const uint8_t *px = rgb + ((size_t)y * w + x) * 3;
            row[3 * x] = px[2], row[3 * x + 1] = px[1], row[3 * x + 2] = px[0];
        }
    }
    FILE *f = fopen(path, "wb");
    int rc = !f || fwrite(buf, 1, size, f) != size;
    if (f && fclose(f)) rc = 1;
    free(buf);
    return rc ? -1 : 0;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s FILE.safetensors NAME OUT.bmp [FRAME]\n", argv[0]);
        return 2;
    }
    tw_st_set *set = NULL;
    if (tw_st_open_file(argv[1], &set) != TW_OK) {
        fprintf(stderr, "%s: cannot open\n", argv[1]);
        return 1;
    }
    const tw_tensor *t = tw_st_get(set, argv[2]);
    long frame = argc == 5 ? atol(argv[4]) : 0;
    int rc = 1;
    if (!t || t->type != TW_DT_U8 || t->ndim < 3 || t->ndim > 4 || t->shape[t->ndim - 1] != 3) {
        fprintf(stderr, "%s: no U8 tensor %s of shape [h, w, 3] or [F, h, w, 3]\n", argv[1], argv[2]);
    } else if (t->ndim == 4 && (frame < 0 || frame >= t->shape[0])) {
        fprintf(stderr, "%s: frame %ld out of range\n", argv[2], frame);
    } else {
        int h = (int)t->shape[t->ndim - 3], w = (int)t->shape[t->ndim - 2];
        const uint8_t *rgb = (const uint8_t *)t->data + (size_t)frame * (size_t)h * (size_t)w * 3;
        if (write_bmp(argv[3], rgb, w, h)) fprintf(stderr, "%s: cannot write\n", argv[3]);
        else rc = 0;
    }
    tw_st_close(set);
    return rc;
}
