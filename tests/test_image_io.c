/*
** test_image_io.c — image decoding against Pillow 9.4 (transformers' load_image: Image.open,
** ImageOps.exif_transpose, convert("RGB")). The expected sizes and 64-bit FNV-1a hashes of the
** RGB bytes were computed once with Debian's python3-pil; the test itself needs no Python.
**
** Also: hand-made BMPs (bytes below, hashes from Pillow), data: URLs, every corrupt corpus file
** refused cleanly or decoded as the manifest allows, decompression bombs refused by status, the
** max_pixels / max_bytes limits, and every prefix / random byte damage of a few small files
** (no crash, no leak: run it under `make asan-test`).
**
** The corpus is $TOWER_MEDIA/images, else ../shared/media/images (tests run from the repo root).
*/
#include "testhelp.h"
#include "tower.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
static uint64_t image_hash(const tw_image *im) {
    return fnv1a(tw_image_rgb(im), (size_t)tw_image_width(im) * tw_image_height(im) * 3);
}

static char media_root[512];
static const char *media(const char *rel) {
    static char buf[4][1400];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", media_root, rel);
    return b;
}

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    *len = (size_t)n;
    return p;
}

/* ---- corpus files whose pixels must equal Pillow's ----------------------------------------- */

typedef struct pil_case {
    const char *path;
    int         w, h;
    uint64_t    fnv;
    const char *what;   /* and Pillow's mode before convert("RGB") */
} pil_case;

static const pil_case pil_cases[] = {
    { "jpeg/ljt_testorig.jpg", 227, 149, 0x6636942c099383b0ull, "baseline 4:2:0 (RGB)" },
    { "jpeg/gen_testorig_422.jpg", 227, 149, 0xf4399ddbba10beb1ull, "4:2:2 (RGB)" },
    { "jpeg/gen_testorig_444.jpg", 227, 149, 0xd61d496f0e4e64c8ull, "4:4:4 (RGB)" },
    { "jpeg/gen_testorig_411.jpg", 227, 149, 0x58b7e35066eb2542ull, "4:1:1 (RGB)" },
    { "jpeg/gen_testorig_440.jpg", 227, 149, 0xe0cada7ad8882f3full, "4:4:0 (RGB)" },
    { "jpeg/gen_testorig_progressive.jpg", 227, 149, 0x6636942c099383b0ull, "progressive (RGB)" },
    { "jpeg/gen_testorig_restart1row.jpg", 227, 149, 0x6636942c099383b0ull, "restart markers (RGB)" },
    { "jpeg/gen_testorig_rgb_colorspace.jpg", 227, 149, 0xeb0dee9f878c31afull, "RGB-coded (RGB)" },
    { "jpeg/ljt_testimgari.jpg", 227, 149, 0x0cc30ec4defc0ec6ull, "arithmetic (RGB)" },
    { "jpeg/pillow_hopper_gray.jpg", 128, 128, 0x02384eefaf4ef5eaull, "greyscale (L)" },
    { "jpeg/pillow_icc-after-SOF.jpg", 10, 10, 0x54191692fe7f4315ull, "grey, ICC after SOF (L)" },
    { "jpeg/gen_testorig_cmyk_imagemagick.jpg", 227, 149, 0x752b4d1cefa28b4eull, "CMYK (ImageMagick) (CMYK)" },
    { "jpeg/pillow_pil_sample_cmyk.jpg", 100, 100, 0x9b92ebfd81ed41bcull, "CMYK (Photoshop, Adobe-inverted) (CMYK)" },
    { "jpeg/pillow_hopper_16bit_qtables.jpg", 128, 128, 0x1bb8c1420a7633bcull, "SOF1 16-bit tables (RGB)" },
    { "jpeg/pillow_sugarshack.mpo", 640, 480, 0x1cff3ac80ff87c9aull, "MPO first picture (RGB)" },
    { "jpeg/gen_odd_17x13.jpg", 17, 13, 0x2f3929073b294a6cull, "odd size (RGB)" },
    { "jpeg/gen_1x1.jpg", 1, 1, 0x9d85771c41258464ull, "1x1 (RGB)" },
    { "corrupt/gen_testorig_garbled_scan.jpg", 227, 149, 0xb2cc1dad3ae7a1eaull, "garbled scan (Pillow decodes) (RGB)" },
    { "png/pillow_hopper.png", 128, 128, 0x9fd5849cfd0b4536ull, "8-bit RGB (RGB)" },
    { "png/libpng_palette-8-tRNS.png", 256, 1, 0x953a4da4f145c792ull, "palette + tRNS (P)" },
    { "png/libpng_palette-4-sRGB-tRNS.png", 16, 1, 0xd9bacd9039750116ull, "4-bit palette + tRNS (P)" },
    { "png/libpng_gray-alpha-8-sRGB.png", 256, 256, 0x687928ca8daf2325ull, "grey + alpha (LA)" },
    { "png/libpng_rgb-16-sRGB.png", 256, 256, 0x24e71dfb37ae1025ull, "16-bit RGB (RGB)" },
    { "png/libpng_rgb-alpha-16-linear.png", 256, 256, 0x24e71dfb37ae1025ull, "16-bit RGBA (RGBA)" },
    { "png/ljt_monkey16.png", 149, 227, 0xe0b29cad994544a7ull, "16-bit RGB + iCCP (RGB)" },
    { "png/gen_tall_8x4000_gray16.png", 8, 4000, 0x110fe7c4cc8b1765ull, "16-bit grey (I -> RGB clips) (I)" },
    { "png/libpng_gray-16-tRNS.png", 256, 256, 0x751265fd7ece1925ull, "16-bit grey + tRNS (I)" },
    { "png/pillow_apng_mode_16bit.png", 128, 64, 0x55fbb7f12f944325ull, "APNG default image (RGBA)" },
    { "png/pillow_tRNS_null_1x1.png", 1, 1, 0xf822271be33db19bull, "1x1 (P)" },
    { "pngsuite/basi2c08.png", 32, 32, 0x20362d9a3ff2e125ull, "interlaced RGB (RGB)" },
    { "pngsuite/basi0g01.png", 32, 32, 0x16a22971f6e37aa3ull, "interlaced 1-bit grey (1)" },
    { "pngsuite/basn0g02.png", 32, 32, 0x2e766409b1ffd325ull, "2-bit grey (L)" },
    { "pngsuite/basn0g04.png", 32, 32, 0x9c902896caa85aa5ull, "4-bit grey (L)" },
    { "pngsuite/basi3p04.png", 32, 32, 0x0908649a6b34bb05ull, "interlaced 4-bit palette (P)" },
    { "pngsuite/basn4a16.png", 32, 32, 0x01613a57576421fdull, "16-bit grey + alpha (RGBA)" },
    { "pngsuite/exif2c08.png", 32, 32, 0xb03a7c90ec6870e9ull, "eXIf chunk (RGB)" },
    { "corrupt/libpng_regression-palette-8.png", 256, 1, 0xeeacccd5299059f1ull, "indices past the palette (P)" },
    { "webp/libwebp_test.webp", 128, 128, 0x3715e8a39ea13eb5ull, "lossy (RGB)" },
    { "webp/libwebp_lossless1.webp", 1000, 307, 0xf073c3eba28d1433ull, "lossless (RGBA)" },
    { "webp/libwebp_lossy_alpha1.webp", 1000, 307, 0x18fedf1f911927f6ull, "lossy + alpha (RGBA)" },
    { "webp/libwebp_alpha_filter_1_method_1.webp", 128, 128, 0x997ad1007bbe0cc3ull, "alpha filter (RGBA)" },
    { "webp/libwebp_bryce.webp", 11158, 2156, 0x37d5d9438d284d43ull, "very large lossy 11158x2156 (RGB)" },
    { "webp/libwebp_small_13x1.webp", 13, 1, 0x43af576b77fbdd12ull, "13x1 (RGB)" },
    { "webp/pillow_iss634.webp", 245, 245, 0x220d8e52cff7f2e7ull, "animated, first frame (RGBA)" },
    { "webp/gen_dispose_bgnd_animated.webp", 100, 100, 0xb3fb7d63688d71baull, "animated, first frame (RGBA)" },
    { "gif/pillow_hopper.gif", 128, 128, 0x5df8fb3f47e8f1b3ull, "single frame (P)" },
    { "gif/pillow_iss634.gif", 245, 245, 0x220d8e52cff7f2e7ull, "animated, first frame (P)" },
    { "gif/pillow_dispose_bgnd.gif", 100, 100, 0xb3fb7d63688d71baull, "sub-rectangle first frame (P)" },
    { "exif_orientation/recurser_Landscape_1.jpg", 1800, 1200, 0x1f3c423d3a24d876ull, "orientation 1 (RGB)" },
    { "exif_orientation/recurser_Landscape_2.jpg", 1800, 1200, 0x1bc447eda75235ccull, "orientation 2 (RGB)" },
    { "exif_orientation/recurser_Landscape_3.jpg", 1800, 1200, 0x5d7e102dd000c412ull, "orientation 3 (RGB)" },
    { "exif_orientation/recurser_Landscape_4.jpg", 1800, 1200, 0x167f42ecc5ce9f5bull, "orientation 4 (RGB)" },
    { "exif_orientation/recurser_Landscape_5.jpg", 1800, 1200, 0xea87b3b81699884dull, "orientation 5 (RGB)" },
    { "exif_orientation/recurser_Landscape_6.jpg", 1800, 1200, 0xa60ca019d6c51808ull, "orientation 6 (RGB)" },
    { "exif_orientation/recurser_Landscape_7.jpg", 1800, 1200, 0x15572b15486d6fbeull, "orientation 7 (RGB)" },
    { "exif_orientation/recurser_Landscape_8.jpg", 1800, 1200, 0x14be1992be456ca6ull, "orientation 8 (RGB)" },
    { "exif_orientation/gen_Landscape_6_progressive.jpg", 1800, 1200, 0xa60ca019d6c51808ull, "orientation 6, progressive (RGB)" },
    { "exif_orientation/pillow_hopper_orientation_2.jpg", 128, 128, 0xca916c6979e81134ull, "hopper 2 (RGB)" },
    { "exif_orientation/pillow_hopper_orientation_3.jpg", 128, 128, 0xca916c6979e81134ull, "hopper 3 (RGB)" },
    { "exif_orientation/pillow_hopper_orientation_4.jpg", 128, 128, 0xb83860f93697ff83ull, "hopper 4 (RGB)" },
    { "exif_orientation/pillow_hopper_orientation_5.jpg", 128, 128, 0x8042eef1568d102bull, "hopper 5 (RGB)" },
    { "exif_orientation/pillow_hopper_orientation_6.jpg", 128, 128, 0x8042eef1568d102bull, "hopper 6 (RGB)" },
    { "exif_orientation/pillow_hopper_orientation_7.jpg", 128, 128, 0x58249f45fb9e6059ull, "hopper 7 (RGB)" },
    { "exif_orientation/pillow_hopper_orientation_8.jpg", 128, 128, 0x58249f45fb9e6059ull, "hopper 8 (RGB)" },
    { "exif_orientation/pillow_hopper_orientation_6.webp", 128, 128, 0xad9e17a575351275ull, "WebP EXIF 6 (RGB)" },
};

static void test_pillow_pixels(void) {
    for (size_t i = 0; i < sizeof pil_cases / sizeof *pil_cases; i++) {
        const pil_case *c = &pil_cases[i];
        tw_image *im = NULL;
        tw_status s = tw_image_load(media(c->path), NULL, &im);
        CHECK(s == TW_OK, "%s (%s): %s", c->path, c->what, tw_last_error());
        if (s != TW_OK) continue;
        CHECK(tw_image_width(im) == c->w && tw_image_height(im) == c->h, "%s (%s): size %dx%d, Pillow %dx%d", c->path,
              c->what, tw_image_width(im), tw_image_height(im), c->w, c->h);
        if (tw_image_width(im) == c->w && tw_image_height(im) == c->h)
            CHECK(image_hash(im) == c->fnv, "%s (%s): pixels differ from Pillow's", c->path, c->what);
        tw_image_free(im);
    }
}

/* ---- BMP, written here (Pillow decoded the same bytes for the hashes) ---------------------- */

typedef struct bmp_case {
    const char *what;
    size_t      len;
    int         w, h;
    uint64_t    fnv;
    const char *bytes;
} bmp_case;

static const bmp_case bmp_cases[] = {
    { "24-bit bottom-up, odd width", 102, 5, 3, 0xafc680d4a05c8f17ull,
      "\x42\x4d\x66\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00\x05\x00\x00\x00\x03\x00"
      "\x00\x00\x01\x00\x18\x00\x00\x00\x00\x00\x30\x00\x00\x00\x13\x0b\x00\x00\x13\x0b\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\xc8\xa0\x00\xaa\xa0\x28\x8c\xa0\x50\x6e\xa0\x78\x50\xa0\xa0\x00\xc8\x50"
      "\x00\xaa\x50\x28\x8c\x50\x50\x6e\x50\x78\x50\x50\xa0\x00\xc8\x00\x00\xaa\x00\x28\x8c\x00\x50\x6e"
      "\x00\x78\x50\x00\xa0\x00" },
    { "32-bit BI_RGB top-down (X ignored)", 78, 3, 2, 0x10f32ac7fbeff5e5ull,
      "\x42\x4d\x4e\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00\x03\x00\x00\x00\xfe\xff"
      "\xff\xff\x01\x00\x20\x00\x00\x00\x00\x00\x18\x00\x00\x00\x13\x0b\x00\x00\x13\x0b\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x64\xc8\x4d\x0a\x65\xc8\x4d\x14\x66\xc8\x4d\x01\x64\xc7\x4d\x0b\x65"
      "\xc7\x4d\x15\x66\xc7\x4d" },
    { "8-bit palette, 3 colours", 74, 4, 2, 0xf5d56da396d512b8ull,
      "\x42\x4d\x4a\x00\x00\x00\x00\x00\x00\x00\x42\x00\x00\x00\x28\x00\x00\x00\x04\x00\x00\x00\x02\x00"
      "\x00\x00\x01\x00\x08\x00\x00\x00\x00\x00\x08\x00\x00\x00\x13\x0b\x00\x00\x13\x0b\x00\x00\x03\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\xff\x00\x00\xff\x00\x00\x38\x22\x0c\x00\x02\x02\x00\x01\x00\x01"
      "\x02\x01" },
    { "4-bit palette, odd width", 126, 5, 2, 0x307bdb83d8db00f6ull,
      "\x42\x4d\x7e\x00\x00\x00\x00\x00\x00\x00\x76\x00\x00\x00\x28\x00\x00\x00\x05\x00\x00\x00\x02\x00"
      "\x00\x00\x01\x00\x04\x00\x00\x00\x00\x00\x08\x00\x00\x00\x13\x0b\x00\x00\x13\x0b\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\xff\x00\x00\x25\xef\x10\x00\x4a\xdf\x20\x00\x6f\xcf\x30\x00\x94\xbf"
      "\x40\x00\xb9\xaf\x50\x00\xde\x9f\x60\x00\x03\x8f\x70\x00\x28\x7f\x80\x00\x4d\x6f\x90\x00\x72\x5f"
      "\xa0\x00\x97\x4f\xb0\x00\xbc\x3f\xc0\x00\xe1\x2f\xd0\x00\x06\x1f\xe0\x00\x2b\x0f\xf0\x00\xfe\xdc"
      "\xb0\x00\x01\x23\x40\x00" },
    { "1-bit, two colours", 70, 10, 2, 0x7aa3a73fedc89368ull,
      "\x42\x4d\x46\x00\x00\x00\x00\x00\x00\x00\x3e\x00\x00\x00\x28\x00\x00\x00\x0a\x00\x00\x00\x02\x00"
      "\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x08\x00\x00\x00\x13\x0b\x00\x00\x13\x0b\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x14\x0a\xc8\x00\x64\xfa\x05\x00\x4d\x40\x00\x00\xb2\xc0\x00\x00" },
    { "16-bit BI_RGB 5-5-5", 70, 3, 2, 0x3279617ef1f7567bull,
      "\x42\x4d\x46\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00\x03\x00\x00\x00\x02\x00"
      "\x00\x00\x01\x00\x10\x00\x00\x00\x00\x00\x10\x00\x00\x00\x13\x0b\x00\x00\x13\x0b\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x10\x42\xff\x7f\x34\x12\x00\x00\x00\x7c\xe0\x03\x1f\x00\x00\x00" },
    { "16-bit bit fields 5-6-5", 82, 3, 2, 0x7c0d18b8fd4d460eull,
      "\x42\x4d\x52\x00\x00\x00\x00\x00\x00\x00\x42\x00\x00\x00\x28\x00\x00\x00\x03\x00\x00\x00\x02\x00"
      "\x00\x00\x01\x00\x10\x00\x03\x00\x00\x00\x10\x00\x00\x00\x13\x0b\x00\x00\x13\x0b\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\xf8\x00\x00\xe0\x07\x00\x00\x1f\x00\x00\x00\x10\x84\xff\xff\x34\x12"
      "\x00\x00\x00\xf8\xe0\x07\x1f\x00\x00\x00" },
    { "32-bit bit fields BGRA, V4 header", 138, 2, 2, 0x6736342115994805ull,
      "\x42\x4d\x8a\x00\x00\x00\x00\x00\x00\x00\x7a\x00\x00\x00\x6c\x00\x00\x00\x02\x00\x00\x00\x02\x00"
      "\x00\x00\x01\x00\x20\x00\x03\x00\x00\x00\x10\x00\x00\x00\x13\x0b\x00\x00\x13\x0b\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\xff\x00\x00\xff\x00\x00\xff\x00\x00\x00\x00\x00\x00\xff\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x01\x02\x03\x04\x05\x06\x07\x08" },
    { "V5 header 24-bit", 146, 2, 1, 0x681d7f1225ac8c1cull,
      "\x42\x4d\x92\x00\x00\x00\x00\x00\x00\x00\x8a\x00\x00\x00\x7c\x00\x00\x00\x02\x00\x00\x00\x01\x00"
      "\x00\x00\x01\x00\x18\x00\x00\x00\x00\x00\x08\x00\x00\x00\x13\x0b\x00\x00\x13\x0b\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x02\x01\xfc\xfb\xfa"
      "\x00\x00" },
};
/* RLE8 */ static const char bmp_rle8[] = "\x42\x4d\x46\x00\x00\x00\x00\x00\x00\x00\x42\x00\x00\x00\x28\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x01\x00\x08\x00\x01\x00\x00\x00\x04\x00\x00\x00\x13\x0b\x00\x00\x13\x0b\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\x00\x00\xff\x00\x00\x38\x22\x0c\x00\x00\x01\x00\x00"; enum { bmp_rle8_len = 70 };

static void test_bmp(void) {
    for (size_t i = 0; i < sizeof bmp_cases / sizeof *bmp_cases; i++) {
        const bmp_case *c = &bmp_cases[i];
        tw_image *im = NULL;
        tw_status s = tw_image_decode(c->bytes, c->len, c->what, NULL, &im);
        CHECK(s == TW_OK, "BMP %s: %s", c->what, tw_last_error());
        if (s != TW_OK) continue;
        CHECK(tw_image_width(im) == c->w && tw_image_height(im) == c->h && image_hash(im) == c->fnv,
              "BMP %s: %dx%d, pixels %s Pillow's", c->what, tw_image_width(im), tw_image_height(im),
              image_hash(im) == c->fnv ? "equal" : "differ from");
        tw_image_free(im);
        /* Every truncation is refused (the pixel rows are checked against the file length). */
        for (size_t cut = 0; cut < c->len; cut++) {
            s = tw_image_decode(c->bytes, cut, c->what, NULL, &im);
            if (s == TW_OK) tw_image_free(im);
            if (s != TW_E_FORMAT) {
                CHECK(0, "BMP %s cut to %zu bytes: %s (%s)", c->what, cut, tw_status_name(s), tw_last_error());
                break;
            }
        }
    }
    tw_image *im = NULL;
    tw_status s = tw_image_decode(bmp_rle8, bmp_rle8_len, "rle8.bmp", NULL, &im);
    CHECK(s == TW_E_UNSUPPORTED && strstr(tw_last_error(), "RLE8") && strstr(tw_last_error(), "rle8.bmp"),
          "RLE8 BMP: %s: %s", tw_status_name(s), tw_last_error());
    tw_image_free(im);
    /* max_pixels applies to BMP too: the 5x3 case has 15 pixels. */
    tw_image_load_opts o = { .max_pixels = 14 };
    s = tw_image_decode(bmp_cases[0].bytes, bmp_cases[0].len, "small.bmp", &o, &im);
    CHECK(s == TW_E_UNSUPPORTED, "BMP over max_pixels: %s", tw_status_name(s));
    o.max_pixels = 15;
    s = tw_image_decode(bmp_cases[0].bytes, bmp_cases[0].len, "small.bmp", &o, &im);
    CHECK(s == TW_OK, "BMP at max_pixels: %s", tw_last_error());
    tw_image_free(im);
}

/* ---- data: URLs ------------------------------------------------------------------------------ */

static char *base64(const uint8_t *p, size_t n) {
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc(4 * (n / 3 + 1) + 1), *q = o;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        *q++ = al[v >> 18 & 63];
        *q++ = al[v >> 12 & 63];
        *q++ = i + 1 < n ? al[v >> 6 & 63] : '=';
        *q++ = i + 2 < n ? al[v & 63] : '=';
    }
    *q = 0;
    return o;
}

static void test_data_url(void) {
    static const char *files[] = { "png/pillow_hopper.png", "jpeg/pillow_hopper.jpg", "webp/pillow_hopper.webp",
                                   "gif/pillow_hopper.gif" };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        size_t n;
        uint8_t *p = slurp(media(files[i]), &n);
        CHECK(p != NULL, "cannot read %s", files[i]);
        if (!p) continue;
        char *b = base64(p, n);
        size_t bl = strlen(b);
        char *url = malloc(bl + 64);
        /* The media type is deliberately wrong for all but the PNG: the bytes decide. */
        snprintf(url, bl + 64, "data:image/png;base64,%s", b);
        tw_image *a = NULL, *c = NULL;
        CHECK_OK(tw_image_load(url, NULL, &a), files[i]);
        CHECK_OK(tw_image_load(media(files[i]), NULL, &c), files[i]);
        if (a && c)
            CHECK(tw_image_width(a) == tw_image_width(c) && image_hash(a) == image_hash(c), "%s: data: URL differs", files[i]);
        tw_image_free(a);
        tw_image_free(c);
        /* Line breaks inside the base64 text are skipped, as Python's base64.decodebytes does. */
        if (i == 0) {
            char *wrapped = malloc(2 * bl + 64), *q = wrapped;
            q += sprintf(q, "data:image/png;base64,");
            for (size_t k = 0; k < bl; k++) {
                *q++ = b[k];
                if (k % 76 == 75) *q++ = '\n';
            }
            *q = 0;
            CHECK_OK(tw_image_load(wrapped, NULL, &a), "wrapped base64");
            CHECK(a && tw_image_width(a) == 128, "wrapped base64 decodes");
            tw_image_free(a);
            free(wrapped);
            /* max_bytes applies to the decoded data. */
            tw_image_load_opts o = { .max_bytes = n - 1 };
            CHECK(tw_image_load(url, &o, &a) == TW_E_ARG, "data: URL above max_bytes");
            o.max_bytes = n;
            CHECK_OK(tw_image_load(url, &o, &a), "data: URL at max_bytes");
            tw_image_free(a);
        }
        free(url);
        free(b);
        free(p);
    }
    tw_image *im = NULL;
    CHECK(tw_image_load("data:image/png;base64,iVBO*w0K", NULL, &im) == TW_E_FORMAT, "bad base64 character");
    CHECK(tw_image_load("data:image/png;base64", NULL, &im) == TW_E_ARG, "data: URL without a comma");
    CHECK(tw_image_load("data:image/png;base64,", NULL, &im) == TW_E_FORMAT, "empty data: URL");
    CHECK(im == NULL, "no image on failure");
}

/* ---- corrupt files, bombs, unsupported formats ---------------------------------------------- */

/* The manifest's expected column for rel (empty when absent). */
static void manifest_expected(const char *manifest, const char *rel, char *out, size_t cap) {
    out[0] = 0;
    size_t rl = strlen(rel);
    for (const char *line = manifest; line && *line;) {
        const char *nl = strchr(line, '\n');
        if (strncmp(line, rel, rl) == 0 && line[rl] == '\t') {
            const char *f = line;
            for (int k = 0; k < 4 && f; k++) f = strchr(f + 1, '\t');
            if (!f) return;
            size_t n = strcspn(f + 1, "\t\n");
            if (n >= cap) n = cap - 1;
            memcpy(out, f + 1, n);
            out[n] = 0;
            return;
        }
        line = nl ? nl + 1 : NULL;
    }
}

static void test_corrupt_folder(void) {
    size_t mlen;
    char *manifest = (char *)slurp(media("manifest.tsv"), &mlen);
    CHECK(manifest != NULL, "cannot read manifest.tsv");
    if (!manifest) return;
    manifest[mlen] = 0;
    DIR *d = opendir(media("corrupt"));
    CHECK(d != NULL, "cannot open corrupt/");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char rel[512], exp[64];
        snprintf(rel, sizeof rel, "corrupt/%s", e->d_name);
        manifest_expected(manifest, rel, exp, sizeof exp);
        tw_image *im = NULL;
        tw_status s = tw_image_load(media(rel), NULL, &im);
        n++;
        bool may_ok = strstr(exp, "ok") || strstr(exp, "partial") || strstr(exp, "warn");
        /* One known disagreement: libwebp (and so Pillow, same pixels) decodes very_short.webp
        ** completely; its VP8 partitions end exactly at the end of the chunk. */
        if (strcmp(e->d_name, "libwebp_very_short.webp") == 0) may_ok = true;
        if (s == TW_OK) {
            CHECK(may_ok, "%s: decoded %dx%d but the manifest says %s", rel, tw_image_width(im), tw_image_height(im), exp);
        } else {
            CHECK(strncmp(exp, "fail", 4) == 0 || strstr(exp, "warn") || strstr(exp, "unsupported"),
                  "%s: refused (%s) but the manifest says %s", rel, tw_last_error(), exp);
            CHECK(s == TW_E_FORMAT || s == TW_E_UNSUPPORTED, "%s: status %s", rel, tw_status_name(s));
            CHECK(strstr(tw_last_error(), e->d_name) != NULL, "%s: message does not name the file: %s", rel, tw_last_error());
        }
        tw_image_free(im);
    }
    if (d) closedir(d);
    CHECK(n >= 30, "corrupt/ has %d files", n);
    free(manifest);

    /* pngsuite's x* files are all refused. */
    d = opendir(media("pngsuite"));
    int nx = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] != 'x') continue;
        char rel[512];
        snprintf(rel, sizeof rel, "pngsuite/%s", e->d_name);
        tw_image *im = NULL;
        tw_status s = tw_image_load(media(rel), NULL, &im);
        CHECK(s == TW_E_FORMAT, "%s: %s (%s)", rel, tw_status_name(s), tw_last_error());
        tw_image_free(im);
        nx++;
    }
    if (d) closedir(d);
    CHECK(nx == 14, "pngsuite has %d x* files", nx);
}

static void expect(const char *rel, const tw_image_load_opts *o, tw_status want, const char *needle) {
    tw_image *im = NULL;
    tw_status s = tw_image_load(media(rel), o, &im);
    CHECK(s == want && (!needle || strstr(tw_last_error(), needle)), "%s: %s (%s), want %s containing \"%s\"", rel,
          tw_status_name(s), s ? tw_last_error() : "", tw_status_name(want), needle ? needle : "");
    tw_image_free(im);
}

static void test_limits(void) {
    /* Decompression bombs: refused from the header's numbers, before the pixel buffer exists. */
    expect("corrupt/gen_testorig_sof_60000x60000.jpg", NULL, TW_E_UNSUPPORTED, "3600000000 pixels");
    expect("corrupt/gen_testorig_sof_65535x65535.jpg", NULL, TW_E_UNSUPPORTED, "decompression bomb");
    expect("corrupt/gen_basn2c08_ihdr_100000x100000_validcrc.png", NULL, TW_E_UNSUPPORTED, "100000x100000");
    expect("corrupt/pillow_decompression_bomb.gif", NULL, TW_E_UNSUPPORTED, "decompression bomb");
    expect("corrupt/gen_testorig_sof_0x0.jpg", NULL, TW_E_FORMAT, "empty image");
    expect("corrupt/gen_testorig_truncated_50pct.jpg", NULL, TW_E_FORMAT, "truncated");
    expect("corrupt/gen_empty.jpg", NULL, TW_E_FORMAT, "empty file");
    expect("corrupt/gen_text_named.png", NULL, TW_E_FORMAT, "not a recognised image");
    expect("corrupt/gen_basn2c08_bad_signature.png", NULL, TW_E_FORMAT, "signature");
    expect("other/pillow_hopper.avif", NULL, TW_E_UNSUPPORTED, "AVIF");
    expect("jpeg/ljt_monkey12.jpg", NULL, TW_E_UNSUPPORTED, "12-bit");
    expect("does/not/exist.png", NULL, TW_E_IO, "does/not/exist.png");
    /* max_pixels on each format: 128x128 = 16384 pixels passes, one less is refused. */
    static const char *hop[] = { "jpeg/pillow_hopper.jpg", "png/pillow_hopper.png", "webp/pillow_hopper.webp",
                                 "gif/pillow_hopper.gif" };
    for (size_t i = 0; i < 4; i++) {
        tw_image_load_opts o = { .max_pixels = 128 * 128 - 1 };
        expect(hop[i], &o, TW_E_UNSUPPORTED, "max_pixels");
        o.max_pixels = 128 * 128;
        expect(hop[i], &o, TW_OK, NULL);
    }
    /* max_bytes: the file is refused before it is read. */
    tw_image_load_opts o = { .max_bytes = 1000 };
    expect("jpeg/pillow_hopper.jpg", &o, TW_E_ARG, "max_bytes");
    tw_image *im = NULL;
    CHECK(tw_image_decode("GIF89a", 6, "six.gif", NULL, &im) == TW_E_FORMAT, "6-byte GIF");
    CHECK(tw_image_decode("II*\0\x08\0\0\0", 8, "x.tif", NULL, &im) == TW_E_UNSUPPORTED &&
          strstr(tw_last_error(), "TIFF"), "TIFF named: %s", tw_last_error());
#ifndef TW_HAVE_CURL
    CHECK(tw_image_load("http://127.0.0.1:9/x.png", NULL, &im) == TW_E_UNSUPPORTED, "http without curl");
#else
    /* Port 9 (discard) refuses the connection at once: a network error, not a hang. */
    o = (tw_image_load_opts){ .timeout_ms = 2000 };
    CHECK(tw_image_load("http://127.0.0.1:9/x.png", &o, &im) == TW_E_NETWORK, "unreachable URL: %s", tw_last_error());
#endif
    CHECK(tw_image_load("", NULL, &im) == TW_E_ARG && im == NULL, "empty source");
}

/* ---- damage: every prefix and random byte changes of small files ----------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static void test_damage(void) {
    static const char *files[] = { "jpeg/gen_odd_17x13.jpg", "jpeg/gen_testorig_progressive.jpg", "pngsuite/basi3p04.png",
                                   "pngsuite/basn2c16.png", "webp/libwebp_lossless_vec_1_0.webp", "webp/libwebp_test.webp",
                                   "gif/pillow_dispose_bgnd.gif", "exif_orientation/pillow_hopper_orientation_6.webp" };
    int bad = 0, runs = 0;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        size_t n;
        uint8_t *p = slurp(media(files[i]), &n);
        CHECK(p != NULL, "cannot read %s", files[i]);
        if (!p) continue;
        size_t step = n / 97 + 1;
        for (size_t cut = 0; cut < n; cut += step) {
            /* A private copy of exactly cut bytes, so ASan sees any read past the end. */
            uint8_t *q = malloc(cut ? cut : 1);
            memcpy(q, p, cut);
            tw_image *im = NULL;
            tw_status s = tw_image_decode(q, cut, files[i], NULL, &im);
            if (s != TW_OK && s != TW_E_FORMAT && s != TW_E_UNSUPPORTED) bad++;
            tw_image_free(im);
            free(q);
            runs++;
        }
        for (int t = 0; t < 60; t++) {
            uint8_t *q = malloc(n);
            memcpy(q, p, n);
            for (int k = 0, nk = 1 + rnd() % 4; k < nk; k++) q[16 + rnd() % (n - 16)] = (uint8_t)rnd();
            tw_image *im = NULL;
            tw_status s = tw_image_decode(q, n, files[i], NULL, &im);
            if (s != TW_OK && s != TW_E_FORMAT && s != TW_E_UNSUPPORTED) bad++;
            tw_image_free(im);
            free(q);
            runs++;
        }
        free(p);
    }
    CHECK(bad == 0, "%d of %d damaged inputs gave a status other than OK / FORMAT / UNSUPPORTED", bad, runs);
}

int main(void) {
    const char *m = getenv("TOWER_MEDIA");
    snprintf(media_root, sizeof media_root, "%s/images", m && *m ? m : "../shared/media");
    DIR *d = opendir(media_root);
    if (!d) {
        printf("skipping the corpus tests: %s not found (set TOWER_MEDIA)\n", media_root);
        test_bmp();
        return th_report();
    }
    closedir(d);
    test_pillow_pixels();
    test_bmp();
    test_data_url();
    test_corrupt_folder();
    test_limits();
    test_damage();
    return th_report();
}
