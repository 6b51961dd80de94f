/*
** image_io.c — getting an image into memory as 8-bit RGB: where the bytes come from (a file,
** stdin, a data: URL, an http(s) URL) and how they are decoded (JPEG, PNG, WebP, GIF, BMP).
**
** The reference is what transformers' load_image() gives the LlavaNext processor with Pillow:
** Image.open, ImageOps.exif_transpose, then convert("RGB"). So the decoders below are the
** libraries Pillow itself links (libjpeg-turbo, libwebp) or that read the same bits (libpng,
** giflib), configured as Pillow configures them, and every colour conversion is Pillow's own
** formula for that mode (docs/images.md lists them). Gamma, ICC profiles and cICP are ignored,
** as Pillow ignores them.
**
** Untrusted input rules: the format is sniffed from magic bytes, never from a name; the image
** size is read from the header and checked against max_pixels before any allocation that
** depends on it; the libraries' fatal errors longjmp back here (they never exit) and their
** warnings are silenced (the library never prints); every error names the source and says
** what was wrong.
*/
#include "image.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#ifdef TW_HAVE_JPEG
#include <jpeglib.h>
#include <jerror.h>
#endif
#ifdef TW_HAVE_PNG
#include <png.h>
#endif
#ifdef TW_HAVE_WEBP
#include <webp/decode.h>
#include <webp/demux.h>
#endif
#ifdef TW_HAVE_GIF
#include <gif_lib.h>
#endif
#ifdef TW_HAVE_CURL
#include <curl/curl.h>
#include <pthread.h>
#endif

#define DEFAULT_MAX_PIXELS 178956970ull            /* Pillow: 2 * MAX_IMAGE_PIXELS raises       */
#define DEFAULT_MAX_BYTES  (256ull * 1024 * 1024)
#define DEFAULT_TIMEOUT_MS 30000L

/* What every decoder needs to know besides the bytes. */
typedef struct dec_ctx {
    const char *name;        /* for messages                                                   */
    uint64_t    max_pixels;
    int         orientation; /* EXIF Orientation found while decoding (0: none)              */
} dec_ctx;

/* ---- small helpers -------------------------------------------------------------------------- */

static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint32_t le16(const uint8_t *p) { return (uint32_t)p[1] << 8 | p[0]; }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]; }

/* The decompression-bomb check, done on the header's numbers before anything is allocated. */
static tw_status check_dims(const dec_ctx *c, const char *fmt, uint64_t w, uint64_t h) {
    if (w == 0 || h == 0)
        return tw_err(TW_E_FORMAT, "%s: %s header gives an empty image (%llux%llu)", c->name, fmt,
                      (unsigned long long)w, (unsigned long long)h);
    if (w > INT32_MAX || h > INT32_MAX || w * h > c->max_pixels)
        return tw_err(TW_E_UNSUPPORTED,
                      "%s: %s of %llux%llu = %llu pixels is above the limit of %llu (a decompression bomb?); "
                      "raise tw_image_load_opts.max_pixels to allow it",
                      c->name, fmt, (unsigned long long)w, (unsigned long long)h,
                      (unsigned long long)(w * h), (unsigned long long)c->max_pixels);
    return TW_OK;
}

/* An image with room for w*h RGB pixels (sizes already checked by check_dims). */
static tw_image *image_new(int32_t w, int32_t h) {
    tw_image *im = tw_calloc(1, sizeof *im);
    if (!im) return NULL;
    if (!(im->rgb = tw_malloc((size_t)w * (size_t)h * 3))) {
        free(im);
        return NULL;
    }
    im->w = w;
    im->h = h;
    return im;
}

/* Pillow's ImagingPaletteNew starts every palette as a grey ramp and the file's entries overwrite
** the first ones, so an index past the end of a short palette shows grey level = index. */
static void palette_init_ramp(uint8_t pal[256][3]) {
    for (int i = 0; i < 256; i++) pal[i][0] = pal[i][1] = pal[i][2] = (uint8_t)i;
}

/* ---- EXIF orientation ----------------------------------------------------------------------- */

/* The Orientation tag (0x0112) of IFD0, or 0. p holds a TIFF header ("II*\0" / "MM\0*"),
** optionally preceded by "Exif\0\0" as JPEG APP1 and some WebP/PNG writers store it. */
static int __attribute__((unused)) exif_orientation(const uint8_t *p, size_t n) {
    if (n >= 6 && memcmp(p, "Exif\0\0", 6) == 0) p += 6, n -= 6;
    if (n < 8) return 0;
    bool le;
    if (p[0] == 'I' && p[1] == 'I') le = true;
    else if (p[0] == 'M' && p[1] == 'M') le = false;
    else return 0;
    uint32_t (*r16)(const uint8_t *) = le ? le16 : be16;
    uint32_t (*r32)(const uint8_t *) = le ? le32 : be32;
    if (r16(p + 2) != 42) return 0;
    uint64_t off = r32(p + 4);
    if (off + 2 > n) return 0;
    uint32_t count = r16(p + off);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t e = off + 2 + 12ull * i;
        if (e + 12 > n) break;
        if (r16(p + e) != 0x0112) continue;
        uint32_t type = r16(p + e + 2), v;
        if (type == 3) v = r16(p + e + 8);        /* SHORT, the normal case */
        else if (type == 4) v = r32(p + e + 8);   /* LONG */
        else if (type == 1) v = p[e + 8];         /* BYTE */
        else return 0;
        return v >= 1 && v <= 8 ? (int)v : 0;
    }
    return 0;
}

/* Applies an EXIF orientation as ImageOps.exif_transpose does: 2 mirror, 3 rotate 180, 4 flip,
** 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise. */
static tw_status apply_orientation(tw_image *im, int o) {
    if (o < 2 || o > 8) return TW_OK;
    int32_t W = im->w, H = im->h;
    bool swap = o >= 5;
    int32_t ow = swap ? H : W, oh = swap ? W : H;
    uint8_t *dst = tw_malloc((size_t)W * H * 3);
    if (!dst) return TW_E_NOMEM;
    for (int32_t y = 0; y < oh; y++) {
        uint8_t *d = dst + (size_t)y * ow * 3;
        for (int32_t x = 0; x < ow; x++, d += 3) {
            int32_t sx, sy;   /* the source pixel that lands at (x, y) */
            switch (o) {
            case 2: sx = W - 1 - x; sy = y; break;
            case 3: sx = W - 1 - x; sy = H - 1 - y; break;
            case 4: sx = x; sy = H - 1 - y; break;
            case 5: sx = y; sy = x; break;
            case 6: sx = y; sy = H - 1 - x; break;
            case 7: sx = W - 1 - y; sy = H - 1 - x; break;
            default: sx = W - 1 - y; sy = x; break;   /* 8 */
            }
            memcpy(d, im->rgb + ((size_t)sy * W + sx) * 3, 3);
        }
    }
    free(im->rgb);
    im->rgb = dst;
    im->w = ow;
    im->h = oh;
    return TW_OK;
}

/* ---- JPEG (libjpeg-turbo, as Pillow's JpegDecode.c configures it) ---------------------------- */

#ifdef TW_HAVE_JPEG
/* Walks the markers up to the first scan, as Pillow's JpegImagePlugin does, to learn the size,
** precision and components from SOFn (so a bomb is refused before libjpeg allocates anything)
** and the EXIF orientation from the first "Exif" APP1. */
typedef struct jpeg_head {
    uint32_t w, h, prec, ncomp;
    bool     have_sof;
    int      orientation;
} jpeg_head;

static tw_status jpeg_scan_header(const dec_ctx *c, const uint8_t *p, size_t n, jpeg_head *jh) {
    memset(jh, 0, sizeof *jh);
    size_t i = 2;
    bool have_exif = false;
    while (i + 4 <= n) {
        if (p[i] != 0xFF) { i++; continue; }          /* junk between segments: skipped, as Pillow */
        uint8_t m = p[i + 1];
        if (m == 0xFF) { i++; continue; }              /* fill bytes */
        if (m == 0xD8 || m == 0x01 || m == 0x00 || (m >= 0xD0 && m <= 0xD7)) { i += 2; continue; }
        if (m == 0xD9) break;
        uint32_t len = be16(p + i + 2);
        if (len < 2 || i + 2 + len > n)
            return tw_err(TW_E_FORMAT, "%s: JPEG: marker 0x%02X segment of %u bytes runs past the end of the data (truncated?)",
                          c->name, m, len);
        const uint8_t *s = p + i + 4;
        size_t sl = len - 2;
        if (m == 0xE1 && !have_exif && sl >= 6 && memcmp(s, "Exif\0", 5) == 0) {
            jh->orientation = exif_orientation(s, sl);
            have_exif = true;
        } else if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC && !jh->have_sof) {
            if (sl < 6) return tw_err(TW_E_FORMAT, "%s: JPEG: SOF segment too short", c->name);
            jh->prec = s[0];
            jh->h = be16(s + 1);
            jh->w = be16(s + 3);
            jh->ncomp = s[5];
            jh->have_sof = true;
        } else if (m == 0xDA) {
            break;
        }
        i += 2 + len;
    }
    if (!jh->have_sof) return tw_err(TW_E_FORMAT, "%s: JPEG: no frame header (SOF) before the image data", c->name);
    if (jh->prec != 8)
        return tw_err(TW_E_UNSUPPORTED, "%s: JPEG with %u-bit samples: only 8-bit JPEG is supported (as in Pillow)",
                      c->name, jh->prec);
    if (jh->ncomp != 1 && jh->ncomp != 3 && jh->ncomp != 4)
        return tw_err(TW_E_UNSUPPORTED, "%s: JPEG with %u components: expected 1 (grey), 3 (colour) or 4 (CMYK)",
                      c->name, jh->ncomp);
    return check_dims(c, "JPEG", jh->w, jh->h);
}

typedef struct jpeg_job {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char    msg[JMSG_LENGTH_MAX];
    bool    hit_eof;      /* libjpeg ran out of data and inserted a fake EOI */
    tw_image *im;
    uint8_t  *row;
} jpeg_job;

static void jpeg_on_error(j_common_ptr ci) {
    jpeg_job *j = (jpeg_job *)ci->err;
    ci->err->format_message(ci, j->msg);
    longjmp(j->jb, 1);
}
/* Warnings are counted, not printed; running out of data is remembered (see below). */
static void jpeg_on_message(j_common_ptr ci, int level) {
    jpeg_job *j = (jpeg_job *)ci->err;
    if (level < 0) {
        if (ci->err->msg_code == JWRN_JPEG_EOF) j->hit_eof = true;
        ci->err->num_warnings++;
    }
}
static void jpeg_no_output(j_common_ptr ci) { TW_UNUSED(ci); }

/* Pillow's cmyk2rgb, with its rounding division by 255. */
static inline uint8_t muldiv255(int a, int b) {
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

/* The part that runs under setjmp; all state it changes lives in *j (not in its own locals). */
static tw_status jpeg_run(const dec_ctx *c, const uint8_t *data, size_t len, jpeg_job *j,
                          struct jpeg_decompress_struct *ci) {
    if (setjmp(j->jb)) {
        tw_status s = strstr(j->msg, "Unsupported") || strstr(j->msg, "not supported") ? TW_E_UNSUPPORTED : TW_E_FORMAT;
        return tw_err(s, "%s: JPEG: %s", c->name, j->msg);
    }
    jpeg_create_decompress(ci);
    jpeg_mem_src(ci, data, (unsigned long)len);
    if (jpeg_read_header(ci, TRUE) != JPEG_HEADER_OK)
        return tw_err(TW_E_FORMAT, "%s: JPEG: no image in the file (tables only)", c->name);
    /* Pillow picks the output colour space from the component count (mode L / RGB / CMYK) and
    ** leaves every other setting at libjpeg's default: islow DCT, fancy upsampling. */
    switch (ci->num_components) {
    case 1: ci->out_color_space = JCS_GRAYSCALE; break;
    case 3: ci->out_color_space = JCS_RGB; break;
    default: ci->out_color_space = JCS_CMYK; break;
    }
    jpeg_start_decompress(ci);
    uint32_t w = ci->output_width, h = ci->output_height;
    tw_status st = check_dims(c, "JPEG", w, h);
    if (st != TW_OK) return st;
    int nc = ci->output_components;
    if (!(j->im = image_new((int32_t)w, (int32_t)h)) || !(j->row = tw_malloc((size_t)w * nc))) return TW_E_NOMEM;
    while (ci->output_scanline < h) {
        uint8_t *rp = j->row;
        uint32_t y = ci->output_scanline;
        if (jpeg_read_scanlines(ci, &rp, 1) != 1) break;
        uint8_t *o = j->im->rgb + (size_t)y * w * 3;
        if (nc == 3) {
            memcpy(o, j->row, (size_t)w * 3);
        } else if (nc == 1) {
            for (uint32_t x = 0; x < w; x++) o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = j->row[x];
        } else {
            /* Pillow reads every 4-component JPEG as "CMYK;I" (Adobe's inverted convention),
            ** then convert("RGB") applies cmyk2rgb. */
            for (uint32_t x = 0; x < w; x++) {
                const uint8_t *q = j->row + 4 * x;
                int nk = q[3];   /* 255 - inverted K */
                for (int k = 0; k < 3; k++) {
                    int v = nk - muldiv255(255 - q[k], nk);
                    o[3 * x + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
        }
    }
    /* A file cut inside the scan data: libjpeg pads it with grey and warns; Pillow raises "image
    ** file is truncated", and so do we. The Huffman decoder reads ahead, so a file that only
    ** lacks its final EOI marker also runs out of data here, and Pillow refuses it as well. */
    if (j->hit_eof || ci->output_scanline < h)
        return tw_err(TW_E_FORMAT, "%s: JPEG: truncated: the compressed data ends before the image is complete "
                      "(or the final EOI marker is missing)", c->name);
    jpeg_finish_decompress(ci);
    return TW_OK;
}

static tw_status decode_jpeg(dec_ctx *c, const uint8_t *data, size_t len, tw_image **out) {
    jpeg_head jh;
    TW_TRY(jpeg_scan_header(c, data, len, &jh));
    struct jpeg_decompress_struct ci;
    jpeg_job j;
    memset(&ci, 0, sizeof ci);
    memset(&j, 0, sizeof j);
    ci.err = jpeg_std_error(&j.pub);
    j.pub.error_exit = jpeg_on_error;
    j.pub.emit_message = jpeg_on_message;
    j.pub.output_message = jpeg_no_output;
    tw_status st = jpeg_run(c, data, len, &j, &ci);
    jpeg_destroy_decompress(&ci);
    free(j.row);
    if (st != TW_OK) {
        tw_image_free(j.im);
        return st;
    }
    c->orientation = jh.orientation;
    *out = j.im;
    return TW_OK;
}
#endif

/* ---- PNG (libpng: samples only, converted with Pillow's rawmodes) ------------------------- */

#ifdef TW_HAVE_PNG
typedef struct png_job {
    const uint8_t *data;
    size_t   len, pos;
    jmp_buf  jb;
    char     msg[200];
    bool     in_end;         /* reading the chunks after the image data */
    png_structp png;
    png_infop   info;
    tw_image   *im;
    uint8_t    *raw;         /* one row, or the whole image when interlaced */
    uint8_t     pal[256][3];
} png_job;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_job *j = png_get_error_ptr(png);
    snprintf(j->msg, sizeof j->msg, "%s", msg);
    longjmp(j->jb, 1);
}
static void png_on_warning(png_structp png, png_const_charp msg) { TW_UNUSED(png); TW_UNUSED(msg); }

static void png_on_read(png_structp png, png_bytep dst, size_t n) {
    png_job *j = png_get_io_ptr(png);
    if (n > j->len - j->pos) png_error(png, "truncated: the data ends inside a chunk");
    memcpy(dst, j->data + j->pos, n);
    j->pos += n;
}

/* One row of libpng's samples (16-bit big-endian, sub-byte depths unpacked to one byte per
** pixel) to RGB, as Pillow's PNG rawmodes and then convert("RGB") produce it:
**   grey 1/2/4 bit: "1" / "L;2" / "L;4" scale to 0..255; grey 16: mode "I", and I -> RGB clips
**   at 255; RGB/RGBA/LA 16: the high byte ("RGB;16B" ...); alpha is dropped; palette: lookup. */
static void png_row_to_rgb(const png_job *j, const uint8_t *s, uint8_t *o, uint32_t w, int ct, int bd) {
    int bps = bd == 16 ? 2 : 1;
    for (uint32_t x = 0; x < w; x++, o += 3) {
        switch (ct) {
        case PNG_COLOR_TYPE_GRAY: {
            unsigned v;
            if (bd == 16) { v = be16(s + 2 * x); v = v > 255 ? 255 : v; }
            else v = s[x] * 255u / ((1u << bd) - 1);
            o[0] = o[1] = o[2] = (uint8_t)v;
            break;
        }
        case PNG_COLOR_TYPE_GRAY_ALPHA:
            o[0] = o[1] = o[2] = s[2 * bps * x];
            break;
        case PNG_COLOR_TYPE_PALETTE:
            memcpy(o, j->pal[s[x]], 3);
            break;
        case PNG_COLOR_TYPE_RGB:
            for (int k = 0; k < 3; k++) o[k] = s[(3 * x + k) * bps];
            break;
        default:   /* RGBA */
            for (int k = 0; k < 3; k++) o[k] = s[(4 * x + k) * bps];
            break;
        }
    }
}

static tw_status png_run(const dec_ctx *c, png_job *j) {
    if (setjmp(j->jb)) {
        /* Pillow stops quietly at a broken chunk after the image data; the pixels are complete. */
        if (j->in_end) return TW_OK;
        return tw_err(TW_E_FORMAT, "%s: PNG: %s", c->name, j->msg);
    }
    png_set_read_fn(j->png, j, png_on_read);
    png_read_info(j->png, j->info);
    png_uint_32 w, h;
    int bd, ct, il;
    png_get_IHDR(j->png, j->info, &w, &h, &bd, &ct, &il, NULL, NULL);
    tw_status st = check_dims(c, "PNG", w, h);
    if (st != TW_OK) return st;
    if (ct == PNG_COLOR_TYPE_PALETTE) {
        png_colorp pal = NULL;
        int npal = 0;
        palette_init_ramp(j->pal);
        if (png_get_PLTE(j->png, j->info, &pal, &npal) & PNG_INFO_PLTE)
            for (int i = 0; i < npal && i < 256; i++) {
                j->pal[i][0] = pal[i].red;
                j->pal[i][1] = pal[i].green;
                j->pal[i][2] = pal[i].blue;
            }
    }
    if (bd < 8) png_set_packing(j->png);
    int passes = png_set_interlace_handling(j->png);
    png_read_update_info(j->png, j->info);
    size_t rb = png_get_rowbytes(j->png, j->info);
    if (!(j->im = image_new((int32_t)w, (int32_t)h))) return TW_E_NOMEM;
    if (passes == 1) {
        /* Row by row: no buffer for the whole 16-bit image. */
        if (!(j->raw = tw_malloc(rb))) return TW_E_NOMEM;
        for (png_uint_32 y = 0; y < h; y++) {
            png_read_row(j->png, j->raw, NULL);
            png_row_to_rgb(j, j->raw, j->im->rgb + (size_t)y * w * 3, w, ct, bd);
        }
    } else {
        size_t total;
        if (tw_mul_overflow(rb, h, &total) || !(j->raw = tw_malloc(total))) return TW_E_NOMEM;
        for (int p = 0; p < passes; p++)
            for (png_uint_32 y = 0; y < h; y++) png_read_row(j->png, j->raw + (size_t)y * rb, NULL);
        for (png_uint_32 y = 0; y < h; y++)
            png_row_to_rgb(j, j->raw + (size_t)y * rb, j->im->rgb + (size_t)y * w * 3, w, ct, bd);
    }
    j->in_end = true;
    png_read_end(j->png, j->info);   /* an eXIf chunk may follow the image data */
    return TW_OK;
}

static tw_status decode_png(dec_ctx *c, const uint8_t *data, size_t len, tw_image **out) {
    /* The signature and IHDR are checked here first: a damaged signature gets a clear message,
    ** and the size is known before libpng allocates anything. */
    if (len < 8 || memcmp(data, "\x89PNG\r\n\x1a\n", 8) != 0)
        return tw_err(TW_E_FORMAT, "%s: PNG: damaged 8-byte signature (a text-mode transfer changed line endings?)", c->name);
    if (len < 33 || memcmp(data + 12, "IHDR", 4) != 0)
        return tw_err(TW_E_FORMAT, "%s: PNG: the first chunk is not a complete IHDR", c->name);
    TW_TRY(check_dims(c, "PNG", be32(data + 16), be32(data + 20)));

    png_job *j = tw_calloc(1, sizeof *j);
    if (!j) return TW_E_NOMEM;
    j->data = data;
    j->len = len;
    tw_status st = TW_E_NOMEM;
    j->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, j, png_on_error, png_on_warning);
    if (j->png && (j->info = png_create_info_struct(j->png))) {
        st = png_run(c, j);
        if (st == TW_OK) {
            png_bytep exif = NULL;
            png_uint_32 nexif = 0;
#ifdef PNG_eXIf_SUPPORTED
            if (png_get_eXIf_1(j->png, j->info, &nexif, &exif) && exif) c->orientation = exif_orientation(exif, nexif);
#endif
        }
    }
    png_destroy_read_struct(j->png ? &j->png : NULL, j->info ? &j->info : NULL, NULL);
    free(j->raw);
    if (st == TW_OK) *out = j->im;
    else tw_image_free(j->im);
    free(j);
    return st;
}
#endif

/* ---- WebP (libwebp's animation decoder, as Pillow 9.4 uses it for every WebP) -------------- */

#ifdef TW_HAVE_WEBP
static tw_status decode_webp(dec_ctx *c, const uint8_t *data, size_t len, tw_image **out) {
    WebPData wd = { data, len };
    WebPDemuxer *dmx = WebPDemux(&wd);
    if (!dmx) return tw_err(TW_E_FORMAT, "%s: WebP: the RIFF container is truncated or corrupt", c->name);
    uint32_t w = WebPDemuxGetI(dmx, WEBP_FF_CANVAS_WIDTH), h = WebPDemuxGetI(dmx, WEBP_FF_CANVAS_HEIGHT);
    int orient = 0;
    WebPChunkIterator it;
    if (WebPDemuxGetChunk(dmx, "EXIF", 1, &it)) {
        orient = exif_orientation(it.chunk.bytes, it.chunk.size);
        WebPDemuxReleaseChunkIterator(&it);
    }
    WebPDemuxDelete(dmx);
    TW_TRY(check_dims(c, "WebP canvas", w, h));

    /* Pillow decodes through WebPAnimDecoder in RGBA (still images are one frame): the first
    ** frame is composited on a transparent black canvas; convert("RGB") then drops alpha. */
    WebPAnimDecoderOptions o;
    if (!WebPAnimDecoderOptionsInit(&o)) return tw_err(TW_E_INTERNAL, "%s: WebP: libwebp version mismatch", c->name);
    o.color_mode = MODE_RGBA;
    o.use_threads = 0;
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&wd, &o);
    if (!dec) return tw_err(TW_E_FORMAT, "%s: WebP: the bitstream header is invalid", c->name);
    uint8_t *buf = NULL;
    int ts = 0;
    tw_status st = TW_OK;
    tw_image *im = NULL;
    if (!WebPAnimDecoderGetNext(dec, &buf, &ts) || !buf) {
        st = tw_err(TW_E_FORMAT, "%s: WebP: the first frame could not be decoded (corrupt or truncated data)", c->name);
    } else if (!(im = image_new((int32_t)w, (int32_t)h))) {
        st = TW_E_NOMEM;
    } else {
        size_t n = (size_t)w * h;
        for (size_t i = 0; i < n; i++) memcpy(im->rgb + 3 * i, buf + 4 * i, 3);
    }
    WebPAnimDecoderDelete(dec);
    if (st != TW_OK) return st;
    c->orientation = orient;
    *out = im;
    return TW_OK;
}
#endif

/* ---- GIF (giflib; frame 0 laid out as Pillow 9.4's GifImagePlugin does) --------------------- */

#ifdef TW_HAVE_GIF
typedef struct gif_src {
    const uint8_t *data;
    size_t len, pos;
} gif_src;

static int gif_on_read(GifFileType *g, GifByteType *dst, int n) {
    gif_src *s = g->UserData;
    size_t k = n < 0 ? 0 : (size_t)n;
    if (k > s->len - s->pos) k = s->len - s->pos;
    memcpy(dst, s->data + s->pos, k);
    s->pos += k;
    return (int)k;
}

static tw_status gif_frame0(dec_ctx *c, GifFileType *g, tw_image **out) {
    int transparent = -1;
    TW_TRY(check_dims(c, "GIF canvas", (uint32_t)g->SWidth, (uint32_t)g->SHeight));
    for (;;) {
        GifRecordType rt;
        if (DGifGetRecordType(g, &rt) == GIF_ERROR) break;
        if (rt == TERMINATE_RECORD_TYPE)
            return tw_err(TW_E_FORMAT, "%s: GIF: the file has no image", c->name);
        if (rt == EXTENSION_RECORD_TYPE) {
            int code;
            GifByteType *ext;
            if (DGifGetExtension(g, &code, &ext) == GIF_ERROR) break;
            /* The graphic control extension before the first image gives its transparent index. */
            if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4) transparent = (ext[1] & 1) ? ext[4] : -1;
            while (ext)
                if (DGifGetExtensionNext(g, &ext) == GIF_ERROR) goto fail;
            continue;
        }
        if (rt != IMAGE_DESC_RECORD_TYPE) continue;
        /* Pillow grows the canvas when the first frame reaches outside the logical screen. The
        ** descriptor is read from the bytes first (giflib reads through gif_on_read without
        ** buffering, so src->pos is right after the ','): giflib goes on to read the frame's
        ** colour table and code size, and the size check must come before any failure there. */
        gif_src *src = g->UserData;
        if (src->len - src->pos >= 8) {
            const uint8_t *q = src->data + src->pos;
            TW_TRY(check_dims(c, "GIF canvas", TW_MAX((uint32_t)g->SWidth, le16(q) + le16(q + 4)),
                              TW_MAX((uint32_t)g->SHeight, le16(q + 2) + le16(q + 6))));
        }
        if (DGifGetImageDesc(g) == GIF_ERROR) break;
        GifImageDesc *d = &g->Image;
        uint32_t cw = (uint32_t)TW_MAX(g->SWidth, d->Left + d->Width);
        uint32_t ch = (uint32_t)TW_MAX(g->SHeight, d->Top + d->Height);
        TW_TRY(check_dims(c, "GIF canvas", cw, ch));
        uint8_t pal[256][3];
        palette_init_ramp(pal);
        ColorMapObject *cm = d->ColorMap ? d->ColorMap : g->SColorMap;
        for (int i = 0; cm && i < cm->ColorCount && i < 256; i++) {
            pal[i][0] = cm->Colors[i].Red;
            pal[i][1] = cm->Colors[i].Green;
            pal[i][2] = cm->Colors[i].Blue;
        }
        /* The canvas starts as the transparent index when there is one, else index 0. */
        size_t npx = (size_t)cw * ch;
        uint8_t *idx = tw_malloc(npx);
        tw_image *im = idx ? image_new((int32_t)cw, (int32_t)ch) : NULL;
        if (!im) {
            free(idx);
            return TW_E_NOMEM;
        }
        memset(idx, transparent >= 0 ? transparent : 0, npx);
        /* Interlaced frames store rows in four passes: every 8th from 0, every 8th from 4,
        ** every 4th from 2, every 2nd from 1. */
        static const int start[4] = { 0, 4, 2, 1 }, step[4] = { 8, 8, 4, 2 };
        int npass = d->Interlace ? 4 : 1;
        bool ok = true;
        for (int p = 0; p < npass && ok; p++)
            for (int r = d->Interlace ? start[p] : 0; r < d->Height && ok; r += d->Interlace ? step[p] : 1)
                ok = DGifGetLine(g, idx + (size_t)(d->Top + r) * cw + d->Left, d->Width) != GIF_ERROR;
        if (!ok) {
            free(idx);
            tw_image_free(im);
            goto fail;
        }
        for (size_t i = 0; i < npx; i++) memcpy(im->rgb + 3 * i, pal[idx[i]], 3);
        free(idx);
        *out = im;
        return TW_OK;
    }
fail:
    return tw_err(TW_E_FORMAT, "%s: GIF: %s", c->name,
                  g->Error == D_GIF_ERR_READ_FAILED ? "truncated: the data ends inside the first frame"
                                                    : GifErrorString(g->Error));
}

static tw_status decode_gif(dec_ctx *c, const uint8_t *data, size_t len, tw_image **out) {
    gif_src src = { data, len, 0 };
    int err = 0;
    GifFileType *g = DGifOpen(&src, gif_on_read, &err);
    if (!g) return tw_err(TW_E_FORMAT, "%s: GIF: %s", c->name, GifErrorString(err));
    tw_status st = gif_frame0(c, g, out);
    DGifCloseFile(g, &err);
    return st;
}
#endif

/* ---- BMP (by hand: uncompressed and bit-field layouts, as Pillow's BmpImagePlugin) ----------- */

/* One bit-field channel: its shift and width; 8-bit fields are copied, 5- and 6-bit ones scaled
** with Pillow's v * 255 / max (truncating), as its "BGR;15" / "BGR;16" unpackers do. */
static bool bmp_field(uint32_t mask, int *shift, int *bits) {
    if (!mask) return false;
    int s = 0, b = 0;
    while (!(mask & 1)) mask >>= 1, s++;
    while (mask & 1) mask >>= 1, b++;
    if (mask || (b != 5 && b != 6 && b != 8)) return false;
    *shift = s;
    *bits = b;
    return true;
}

static tw_status decode_bmp(dec_ctx *c, const uint8_t *p, size_t n, tw_image **out) {
    if (n < 26) return tw_err(TW_E_FORMAT, "%s: BMP: file too short for its headers (%zu bytes)", c->name, n);
    uint32_t off = le32(p + 10), hs = le32(p + 14);
    int64_t w, h;
    uint32_t bpp, comp = 0, nclr = 0, palent;
    if (hs == 12) {                                   /* OS/2 1.x core header */
        w = le16(p + 18);
        h = le16(p + 20);
        bpp = le16(p + 24);
        palent = 3;
    } else if (hs >= 40 && hs <= 124) {
        if (n < 14 + (size_t)hs) return tw_err(TW_E_FORMAT, "%s: BMP: truncated info header", c->name);
        w = (int32_t)le32(p + 18);
        h = (int32_t)le32(p + 22);
        bpp = le16(p + 28);
        comp = le32(p + 30);
        nclr = le32(p + 46);
        palent = 4;
    } else {
        return tw_err(TW_E_UNSUPPORTED, "%s: BMP: info header of %u bytes: expected 12, 40, 52, 56, 64, 108 or 124", c->name, hs);
    }
    bool bottom_up = h > 0;
    if (h < 0) h = -h;
    if (w < 0) return tw_err(TW_E_FORMAT, "%s: BMP: negative width", c->name);
    TW_TRY(check_dims(c, "BMP", (uint64_t)w, (uint64_t)h));

    uint32_t mask[3] = { 0 };
    size_t pal_at = 14 + hs;
    if (comp == 3 || comp == 6) {                     /* BI_BITFIELDS / BI_ALPHABITFIELDS */
        size_t at = 14 + 40;
        if (hs == 40) pal_at += comp == 6 ? 16 : 12;  /* the masks follow a 40-byte header */
        if (n < at + 12) return tw_err(TW_E_FORMAT, "%s: BMP: truncated bit-field masks", c->name);
        for (int k = 0; k < 3; k++) mask[k] = le32(p + at + 4 * k);
        if (bpp != 16 && bpp != 32 && bpp != 24)
            return tw_err(TW_E_UNSUPPORTED, "%s: BMP: bit fields with %u bits per pixel", c->name, bpp);
    } else if (comp == 0) {
        if (bpp == 16) mask[0] = 0x7C00, mask[1] = 0x3E0, mask[2] = 0x1F;
        else if (bpp == 24 || bpp == 32) mask[0] = 0xFF0000, mask[1] = 0xFF00, mask[2] = 0xFF;
        else if (bpp != 1 && bpp != 4 && bpp != 8)
            return tw_err(TW_E_UNSUPPORTED, "%s: BMP with %u bits per pixel: expected 1, 4, 8, 16, 24 or 32", c->name, bpp);
    } else {
        static const char *names[] = { "BI_RGB", "RLE8", "RLE4", "BI_BITFIELDS", "embedded JPEG", "embedded PNG" };
        return tw_err(TW_E_UNSUPPORTED, "%s: BMP compression %s: only uncompressed and bit-field BMPs are supported",
                      c->name, comp < 6 ? names[comp] : "unknown");
    }
    int shift[3], bits[3];
    if (bpp > 8)
        for (int k = 0; k < 3; k++)
            if (!bmp_field(mask[k], &shift[k], &bits[k]))
                return tw_err(TW_E_UNSUPPORTED, "%s: BMP: unsupported bit-field layout (masks %08X %08X %08X)",
                              c->name, mask[0], mask[1], mask[2]);

    uint8_t pal[256][3];
    palette_init_ramp(pal);
    if (bpp <= 8) {
        uint32_t ncol = nclr ? nclr : 1u << bpp;
        if (ncol > 256) return tw_err(TW_E_FORMAT, "%s: BMP: palette of %u colours (at most 256)", c->name, ncol);
        if (pal_at + (size_t)ncol * palent > n) return tw_err(TW_E_FORMAT, "%s: BMP: truncated palette", c->name);
        for (uint32_t i = 0; i < ncol; i++) {         /* stored B, G, R(, reserved) */
            const uint8_t *e = p + pal_at + (size_t)i * palent;
            pal[i][0] = e[2];
            pal[i][1] = e[1];
            pal[i][2] = e[0];
        }
    }
    size_t stride = (((size_t)w * bpp + 31) >> 5) * 4;
    if (off > n || stride * (size_t)h > n - off)
        return tw_err(TW_E_FORMAT, "%s: BMP: truncated: the pixel data needs %zu bytes, the file has %zu after offset %u",
                      c->name, stride * (size_t)h, off > n ? 0 : n - off, off);
    tw_image *im = image_new((int32_t)w, (int32_t)h);
    if (!im) return TW_E_NOMEM;
    for (int64_t y = 0; y < h; y++) {
        const uint8_t *s = p + off + stride * (size_t)(bottom_up ? h - 1 - y : y);
        uint8_t *o = im->rgb + (size_t)y * w * 3;
        for (int64_t x = 0; x < w; x++, o += 3) {
            if (bpp <= 8) {
                unsigned ppb = 8 / bpp, i = (unsigned)(x % ppb);
                unsigned v = (s[x / ppb] >> (8 - bpp * (i + 1))) & ((1u << bpp) - 1);
                memcpy(o, pal[v], 3);
                continue;
            }
            uint32_t v = bpp == 16 ? le16(s + 2 * x) : bpp == 24 ? (uint32_t)s[3 * x] | (uint32_t)s[3 * x + 1] << 8 | (uint32_t)s[3 * x + 2] << 16
                                                              : le32(s + 4 * x);
            for (int k = 0; k < 3; k++) {
                uint32_t f = (v >> shift[k]) & ((1u << bits[k]) - 1);
                o[k] = (uint8_t)(bits[k] == 8 ? f : f * 255 / ((1u << bits[k]) - 1));
            }
        }
    }
    *out = im;
    return TW_OK;
}

/* ---- format sniffing ------------------------------------------------------------------------ */

static bool has(const uint8_t *p, size_t n, size_t at, const char *magic, size_t m) {
    return n >= at + m && memcmp(p + at, magic, m) == 0;
}

/* Names a format we recognise but do not read, or NULL. */
static const char *unsupported_format(const uint8_t *p, size_t n) {
    if (has(p, n, 0, "II*\0", 4) || has(p, n, 0, "MM\0*", 4)) return "TIFF";
    if (has(p, n, 4, "ftyp", 4) && n >= 12) {
        if (has(p, n, 8, "avif", 4) || has(p, n, 8, "avis", 4)) return "AVIF";
        if (has(p, n, 8, "heic", 4) || has(p, n, 8, "heix", 4) || has(p, n, 8, "mif1", 4) || has(p, n, 8, "msf1", 4))
            return "HEIF/HEIC";
        if (has(p, n, 8, "jp2 ", 4)) return "JPEG 2000";
        return "an ISO media file (MP4/HEIF family)";
    }
    if (has(p, n, 0, "\xff\x0a", 2) || has(p, n, 0, "\0\0\0\x0cJXL \r\n\x87\n", 12)) return "JPEG XL";
    if (has(p, n, 0, "\0\0\0\x0cjP  \r\n\x87\n", 12) || has(p, n, 0, "\xff\x4f\xff\x51", 4)) return "JPEG 2000";
    if (has(p, n, 0, "\0\0\1\0", 4)) return "ICO";
    if (has(p, n, 0, "8BPS", 4)) return "Photoshop PSD";
    if (has(p, n, 0, "qoif", 4)) return "QOI";
    if (has(p, n, 0, "%PDF", 4)) return "PDF";
    if (has(p, n, 0, "<svg", 4) || has(p, n, 0, "<?xml", 5)) return "SVG/XML";
    if (n >= 2 && p[0] == 'P' && p[1] >= '1' && p[1] <= '7' && n > 2 && (p[2] == '\n' || p[2] == ' ' || p[2] == '\r'))
        return "PNM (PBM/PGM/PPM)";
    if (has(p, n, 0, "RIFF", 4)) return "a RIFF file that is not WebP (AVI/WAV?)";
    return NULL;
}

/* The PNG signature, or one damaged in a byte or two (so the message can say so). */
static bool png_like(const uint8_t *p, size_t n) {
    if (n < 8) return has(p, n, 0, "\x89PNG", 4);
    int diff = 0;
    for (int i = 0; i < 8; i++) diff += p[i] != (uint8_t)"\x89PNG\r\n\x1a\n"[i];
    return diff <= 2;
}

static tw_status __attribute__((unused)) no_support(const dec_ctx *c, const char *fmt) {
    return tw_err(TW_E_UNSUPPORTED, "%s: %s image, but this build has no %s support (rebuild with its library installed)",
                  c->name, fmt, fmt);
}

tw_status tw_image_decode(const void *data, size_t len, const char *name, const tw_image_load_opts *opts,
                          tw_image **out) {
    if (!out) return tw_err(TW_E_ARG, "tw_image_decode: out is NULL");
    *out = NULL;
    dec_ctx c = { .name = name && *name ? name : "image", .max_pixels = DEFAULT_MAX_PIXELS };
    if (opts && opts->max_pixels) c.max_pixels = opts->max_pixels;
    if (!data && len) return tw_err(TW_E_ARG, "%s: data is NULL", c.name);
    const uint8_t *p = data;
    if (len == 0) return tw_err(TW_E_FORMAT, "%s: empty file (0 bytes): not an image", c.name);

    tw_image *im = NULL;
    tw_status st;
    if (has(p, len, 0, "\xff\xd8\xff", 3)) {
#ifdef TW_HAVE_JPEG
        st = decode_jpeg(&c, p, len, &im);
#else
        st = no_support(&c, "JPEG");
#endif
    } else if (png_like(p, len)) {
#ifdef TW_HAVE_PNG
        st = decode_png(&c, p, len, &im);
#else
        st = no_support(&c, "PNG");
#endif
    } else if (has(p, len, 0, "RIFF", 4) && has(p, len, 8, "WEBP", 4)) {
#ifdef TW_HAVE_WEBP
        st = decode_webp(&c, p, len, &im);
#else
        st = no_support(&c, "WebP");
#endif
    } else if (has(p, len, 0, "GIF87a", 6) || has(p, len, 0, "GIF89a", 6)) {
#ifdef TW_HAVE_GIF
        st = decode_gif(&c, p, len, &im);
#else
        st = no_support(&c, "GIF");
#endif
    } else if (has(p, len, 0, "BM", 2) && len >= 18) {
        st = decode_bmp(&c, p, len, &im);
    } else {
        const char *f = unsupported_format(p, len);
        if (f) return tw_err(TW_E_UNSUPPORTED, "%s: %s image: not supported (JPEG, PNG, WebP, GIF and BMP are)", c.name, f);
        char hex[3 * 8 + 1] = "";
        for (size_t i = 0; i < len && i < 8; i++) snprintf(hex + 3 * i, 4, "%02x ", p[i]);
        return tw_err(TW_E_FORMAT, "%s: not a recognised image format (first bytes: %s); expected JPEG, PNG, WebP, GIF or BMP",
                      c.name, hex);
    }
    if (st != TW_OK) return st;
    if ((st = apply_orientation(im, c.orientation)) != TW_OK) {
        tw_image_free(im);
        return st;
    }
    *out = im;
    return TW_OK;
}

/* ---- sources -------------------------------------------------------------------------------- */

/* Reads a stream to the end, refusing more than max bytes. */
static tw_status read_stream(FILE *f, const char *name, uint64_t max, tw_buf *b) {
    char chunk[65536];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b->len + k > max)
            return tw_err(TW_E_ARG, "%s: more than %llu bytes: larger than tw_image_load_opts.max_bytes allows",
                          name, (unsigned long long)max);
        TW_TRY(tw_buf_append(b, chunk, k));
    }
    if (ferror(f)) return tw_err(TW_E_IO, "%s: read error: %s", name, strerror(errno));
    return TW_OK;
}

static tw_status load_file(const char *path, uint64_t max, tw_buf *b) {
    FILE *f = fopen(path, "rb");
    if (!f) return tw_err(TW_E_IO, "%s: cannot open image: %s", path, strerror(errno));
    struct stat sb;
    tw_status st = TW_OK;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode))
        st = tw_err(TW_E_IO, "%s: is a directory, not an image file", path);
    else if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > max)
        st = tw_err(TW_E_ARG, "%s: %lld bytes: larger than tw_image_load_opts.max_bytes (%llu)", path,
                    (long long)sb.st_size, (unsigned long long)max);
    else
        st = read_stream(f, path, max, b);
    fclose(f);
    return st;
}

static int b64_value(int ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+' || ch == '-') return 62;   /* '-' and '_': the URL-safe alphabet */
    if (ch == '/' || ch == '_') return 63;
    return -1;
}

/* data:[<media type>][;base64],<data>. The media type is not trusted: the bytes are sniffed. */
static tw_status load_data_url(const char *src, uint64_t max, tw_buf *b) {
    const char *comma = strchr(src, ',');
    if (!comma) return tw_err(TW_E_ARG, "data: URL without a ',' before the data");
    bool base64 = false;
    for (const char *q = src + 5; q < comma; q++)
        if ((size_t)(comma - q) >= 7 && strncmp(q, ";base64", 7) == 0) base64 = true;
    const char *s = comma + 1;
    if (!base64) {   /* percent-encoded bytes */
        for (; *s; s++) {
            int ch = (unsigned char)*s;
            if (ch == '%' && s[1] && s[2]) {
                char hx[3] = { s[1], s[2], 0 };
                char *end;
                long v = strtol(hx, &end, 16);
                if (*end) return tw_err(TW_E_FORMAT, "data: URL: bad percent escape \"%%%s\"", hx);
                ch = (int)v;
                s += 2;
            }
            if (b->len >= max) return tw_err(TW_E_ARG, "data: URL: larger than tw_image_load_opts.max_bytes");
            TW_TRY(tw_buf_putc(b, (char)ch));
        }
        return TW_OK;
    }
    uint32_t acc = 0;
    int nbits = 0;
    for (size_t i = 0; s[i]; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '=') break;
        if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t') continue;
        int v = b64_value(ch);
        if (v < 0) return tw_err(TW_E_FORMAT, "data: URL: character '%c' at offset %zu of the base64 data is not base64",
                                 ch >= ' ' && ch < 0x7f ? ch : '?', i);
        acc = acc << 6 | (uint32_t)v;
        nbits += 6;
        if (nbits >= 8) {
            nbits -= 8;
            if (b->len >= max) return tw_err(TW_E_ARG, "data: URL: larger than tw_image_load_opts.max_bytes");
            TW_TRY(tw_buf_putc(b, (char)(acc >> nbits & 0xFF)));
        }
    }
    return TW_OK;
}

#ifdef TW_HAVE_CURL
typedef struct http_sink {
    tw_buf  *b;
    uint64_t max;
    bool     too_big;
} http_sink;

static size_t http_on_body(char *p, size_t sz, size_t n, void *ud) {
    http_sink *s = ud;
    size_t k = sz * n;
    if (s->b->len + k > s->max) {
        s->too_big = true;
        return 0;   /* aborts the transfer */
    }
    return tw_buf_append(s->b, p, k) == TW_OK ? k : 0;
}

static pthread_once_t img_curl_once = PTHREAD_ONCE_INIT;
static void img_curl_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static tw_status load_url(const char *url, uint64_t max, long timeout_ms, tw_buf *b) {
    pthread_once(&img_curl_once, img_curl_init);
    CURL *h = curl_easy_init();
    if (!h) return tw_err(TW_E_NOMEM, "%s: curl_easy_init failed", url);
    http_sink sink = { b, max, false };
    char err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
#if LIBCURL_VERSION_NUM >= 0x075500
    /* Redirects may not leave http(s) (no file://, no ftp). */
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(h, CURLOPT_USERAGENT, "towervision/" TW_VERSION);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    if (sink.too_big || rc == CURLE_FILESIZE_EXCEEDED)
        return tw_err(TW_E_ARG, "%s: the download is larger than tw_image_load_opts.max_bytes (%llu)", url,
                      (unsigned long long)max);
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return tw_err(TW_E_NETWORK, "%s: download timed out after %ld ms", url, timeout_ms);
    if (rc != CURLE_OK) return tw_err(TW_E_NETWORK, "%s: download failed: %s", url, err[0] ? err : curl_easy_strerror(rc));
    if (code >= 400) return tw_err(code == 404 ? TW_E_NOT_FOUND : TW_E_NETWORK, "%s: HTTP %ld", url, code);
    return TW_OK;
}
#endif

tw_status tw_image_load(const char *src, const tw_image_load_opts *opts, tw_image **out) {
    if (!out) return tw_err(TW_E_ARG, "tw_image_load: out is NULL");
    *out = NULL;
    if (!src || !*src) return tw_err(TW_E_ARG, "tw_image_load: empty image source");
    uint64_t max = opts && opts->max_bytes ? opts->max_bytes : DEFAULT_MAX_BYTES;
    tw_buf b = { 0 };
    tw_status st;
    const char *name = src;
    if (strcmp(src, "-") == 0) {
        name = "<stdin>";
        st = read_stream(stdin, name, max, &b);
    } else if (strncmp(src, "data:", 5) == 0) {
        name = "data: URL";
        st = load_data_url(src, max, &b);
    } else if (strncmp(src, "http://", 7) == 0 || strncmp(src, "https://", 8) == 0) {
#ifdef TW_HAVE_CURL
        st = load_url(src, max, opts && opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS, &b);
#else
        st = tw_err(TW_E_UNSUPPORTED, "%s: this build has no download support (rebuild with libcurl)", src);
#endif
    } else {
        st = load_file(src, max, &b);
    }
    if (st == TW_OK) st = tw_image_decode(b.data, b.len, name, opts, out);
    tw_buf_free(&b);
    return st;
}
