/*
** test_safetensors.c — the safetensors reader and writer: a round trip, sharded sets through
** model.safetensors.index.json, and every malformed header the reader must refuse with
** TW_E_FORMAT and a message naming the file (and the tensor where there is one).
*/
#include "safetensors.h"
#include "testhelp.h"
#include "ckpt_variants.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static char *tpath(const char *name) {
    static char buf[4][512];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", tmpdir, name);
    return b;
}

/* Writes a safetensors file from a header string and n_data bytes of data (pattern). */
static void raw_file(const char *name, const char *header, size_t n_data) {
    size_t hl = strlen(header);
    size_t total = 8 + hl + n_data;
    unsigned char *b = calloc(1, total);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < n_data; i++) b[8 + hl + i] = (unsigned char)i;
    CHECK_OK(tw_write_file_atomic(tpath(name), b, total), "raw write");
    free(b);
}

static void expect_format(const char *what, const char *name, const char *needle) {
    tw_st_set *s = (tw_st_set *)1;
    tw_status st = tw_st_open_file(tpath(name), &s);
    const char *msg = tw_last_error();
    CHECK(st == TW_E_FORMAT, "%s: status %s (%s)", what, tw_status_name(st), msg);
    CHECK(s == NULL, "%s: no set returned", what);
    CHECK(strstr(msg, tpath(name)) != NULL, "%s: message names the file: %s", what, msg);
    if (needle) CHECK(strstr(msg, needle) != NULL, "%s: message has \"%s\": %s", what, needle, msg);
}

static void test_roundtrip(void) {
    tw_st_writer *w = tw_st_writer_new();
    float f[6] = { 1, -2, 3.5f, 0, 1e-3f, 65504 };
    uint16_t bf[3] = { tw_f32_to_bf16(1.0f), tw_f32_to_bf16(-0.5f), tw_f32_to_bf16(3.0f) };
    int64_t ids[2] = { 7, -9 };
    uint8_t u[3] = { 1, 2, 3 };
    int64_t s23[2] = { 2, 3 }, s3[1] = { 3 }, s2[1] = { 2 }, s0[1] = { 0 }, s113[3] = { 1, 1, 3 };
    CHECK_OK(tw_st_writer_add(w, "z.weight", TW_DT_F32, 2, s23, f), "add f32");
    CHECK_OK(tw_st_writer_add(w, "a.bf16", TW_DT_BF16, 1, s3, bf), "add bf16");
    CHECK_OK(tw_st_writer_add(w, "m.ids", TW_DT_I64, 1, s2, ids), "add i64");
    CHECK_OK(tw_st_writer_add(w, "m.u8", TW_DT_U8, 3, s113, u), "add u8 (odd size before aligned ones)");
    CHECK_OK(tw_st_writer_add(w, "m.empty", TW_DT_F32, 1, s0, NULL), "add empty");
    CHECK_OK(tw_st_writer_add(w, "scalar", TW_DT_F32, 0, NULL, &f[2]), "add scalar");
    CHECK(tw_st_writer_add(w, "a.bf16", TW_DT_BF16, 1, s3, bf) == TW_E_ARG, "duplicate add refused");
    CHECK(tw_st_writer_add(w, "__metadata__", TW_DT_BF16, 1, s3, bf) == TW_E_ARG, "reserved name refused");
    CHECK_OK(tw_st_writer_save(w, tpath("rt.safetensors")), "save");
    tw_st_writer_free(w);

    tw_st_set *s = NULL;
    CHECK_OK(tw_st_open_file(tpath("rt.safetensors"), &s), "open");
    if (!s) return;
    CHECK(tw_st_count(s) == 6, "count %zu", tw_st_count(s));
    const tw_tensor *t = tw_st_get(s, "z.weight");
    CHECK(t && t->type == TW_DT_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->nbytes == 24 &&
          memcmp(t->data, f, 24) == 0, "f32 tensor");
    CHECK(t && strcmp(t->file, tpath("rt.safetensors")) == 0, "file recorded");
    t = tw_st_get(s, "a.bf16");
    CHECK(t && t->type == TW_DT_BF16 && t->nbytes == 6 && memcmp(t->data, bf, 6) == 0, "bf16 tensor");
    t = tw_st_get(s, "m.ids");
    CHECK(t && t->type == TW_DT_I64 && memcmp(t->data, ids, 16) == 0, "i64 tensor");
    t = tw_st_get(s, "m.u8");
    CHECK(t && t->ndim == 3 && t->shape[2] == 3 && memcmp(t->data, u, 3) == 0, "u8 tensor");
    t = tw_st_get(s, "m.empty");
    CHECK(t && t->nbytes == 0 && t->shape[0] == 0 && tw_tensor_nelem(t) == 0, "empty tensor");
    t = tw_st_get(s, "scalar");
    CHECK(t && t->ndim == 0 && tw_tensor_nelem(t) == 1 && memcmp(t->data, &f[2], 4) == 0, "scalar");
    t = tw_st_get(s, "m.ids");
    CHECK(t && (uintptr_t)t->data % 8 == 0, "i64 aligned despite the 3-byte u8 tensor");
    t = tw_st_get(s, "z.weight");
    CHECK(t && (uintptr_t)t->data % 4 == 0, "f32 aligned");
    CHECK(tw_st_get(s, "nope") == NULL && tw_st_get(s, "") == NULL, "absent names");
    struct stat sb;
    stat(tpath("rt.safetensors"), &sb);
    CHECK(tw_st_bytes(s) == (uint64_t)sb.st_size, "bytes");
    tw_st_close(s);

    /* header: sorted names, 8-byte aligned data start, padded with spaces */
    char *d = NULL;
    size_t n = 0;
    CHECK_OK(tw_read_file(tpath("rt.safetensors"), &d, &n), "read back");
    if (d) {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = (hl << 8) | (unsigned char)d[i];
        CHECK((8 + hl) % 8 == 0, "data area aligned");
        char *h = strndup(d + 8, hl);
        char *pa = strstr(h, "\"a.bf16\""), *pm = strstr(h, "\"m.empty\""), *pz = strstr(h, "\"z.weight\"");
        CHECK(pa && pm && pz && pa < pm && pm < pz, "sorted header: %s", h);
        CHECK(hl == strlen(h) && (h[hl - 1] == '}' || h[hl - 1] == ' '), "padding");
        free(h);
        free(d);
    }

    /* many tensors: hashed lookup finds each one */
    w = tw_st_writer_new();
    for (int i = 0; i < 1500; i++) {
        char nm[64];
        float v = (float)i;
        snprintf(nm, sizeof nm, "layers.%d.weight", i);
        tw_st_writer_add(w, nm, TW_DT_F32, 1, (int64_t[]){ 1 }, &v);
    }
    CHECK_OK(tw_st_writer_save(w, tpath("many.safetensors")), "save many");
    tw_st_writer_free(w);
    CHECK_OK(tw_st_open_file(tpath("many.safetensors"), &s), "open many");
    int good = 0;
    for (int i = 0; s && i < 1500; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "layers.%d.weight", i);
        const tw_tensor *x = tw_st_get(s, nm);
        float v;
        if (x) memcpy(&v, x->data, 4);
        good += x && v == (float)i;
    }
    CHECK(good == 1500, "all 1500 found (%d)", good);
    tw_st_close(s);
}

static void test_corrupt(void) {
    const char *ok_entry = "\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}";
    char h[512];

    /* sanity: the base case is valid (and __metadata__ is ignored) */
    snprintf(h, sizeof h, "{\"__metadata__\":{\"format\":\"pt\"},%s}", ok_entry);
    raw_file("good.safetensors", h, 16);
    tw_st_set *s = NULL;
    CHECK_OK(tw_st_open_file(tpath("good.safetensors"), &s), "base case");
    CHECK(s && tw_st_count(s) == 1, "metadata not a tensor");
    tw_st_close(s);

    /* header length larger than the file */
    {
        unsigned char b[16] = { 0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}' };
        tw_write_file_atomic(tpath("hlen.safetensors"), b, sizeof b);
        expect_format("header length > file", "hlen.safetensors", "header length");
        unsigned char b2[16] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
        tw_write_file_atomic(tpath("hlen2.safetensors"), b2, sizeof b2);
        expect_format("header length 2^64-1", "hlen2.safetensors", "header length");
        tw_write_file_atomic(tpath("short.safetensors"), b, 5);
        expect_format("file shorter than 8 bytes", "short.safetensors", "too short");
    }
    raw_file("syntax.safetensors", "{\"t\":", 0);
    expect_format("JSON syntax", "syntax.safetensors", "header JSON");
    raw_file("array.safetensors", "[1,2,3]", 0);
    expect_format("non-object JSON", "array.safetensors", "not a JSON object");
    raw_file("entry.safetensors", "{\"t\":5}", 0);
    expect_format("entry not an object", "entry.safetensors", "\"t\"");
    raw_file("dtype.safetensors", "{\"t\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
    expect_format("unknown dtype", "dtype.safetensors", "unknown dtype \"Q4\"");
    raw_file("nodtype.safetensors", "{\"t\":{\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
    expect_format("missing dtype", "nodtype.safetensors", "\"t\"");
    raw_file("neg.safetensors", "{\"t\":{\"dtype\":\"U8\",\"shape\":[-2],\"data_offsets\":[0,2]}}", 2);
    expect_format("negative dim", "neg.safetensors", "shape[0]");
    raw_file("real.safetensors", "{\"t\":{\"dtype\":\"U8\",\"shape\":[2.5],\"data_offsets\":[0,2]}}", 2);
    expect_format("real dim", "real.safetensors", "shape[0]");
    raw_file("strdim.safetensors", "{\"t\":{\"dtype\":\"U8\",\"shape\":[1,\"2\"],\"data_offsets\":[0,2]}}", 2);
    expect_format("string dim", "strdim.safetensors", "shape[1]");
    raw_file("noshape.safetensors", "{\"t\":{\"dtype\":\"U8\",\"shape\":3,\"data_offsets\":[0,3]}}", 3);
    expect_format("shape not an array", "noshape.safetensors", "\"shape\"");
    raw_file("dims.safetensors", "{\"t\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1);
    expect_format("too many dims", "dims.safetensors", "\"t\"");
    raw_file("off3.safetensors", "{\"t\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2,4]}}", 4);
    expect_format("offsets of 3", "off3.safetensors", "data_offsets");
    raw_file("offstr.safetensors", "{\"t\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[\"0\",2]}}", 4);
    expect_format("offsets strings", "offstr.safetensors", "data_offsets");
    raw_file("offrev.safetensors", "{\"t\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,2]}}", 4);
    expect_format("end < begin", "offrev.safetensors", "data_offsets");
    raw_file("size.safetensors", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 16);
    expect_format("end-begin != nelem*size", "size.safetensors", "needs 16");
    raw_file("ovf.safetensors",
             "{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", 0);
    expect_format("shape overflow", "ovf.safetensors", "overflow");
    raw_file("ovf2.safetensors",
             "{\"t\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,0]}}", 0);
    expect_format("bytes overflow", "ovf2.safetensors", "overflow");
    raw_file("past.safetensors", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[8,24]}}", 16);
    expect_format("past the data area", "past.safetensors", "past the data area");
    snprintf(h, sizeof h, "{%s}", ok_entry);
    raw_file("trunc.safetensors", h, 10);
    expect_format("truncated data", "trunc.safetensors", "truncated");
    raw_file("overlap.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
    expect_format("overlap", "overlap.safetensors", "overlaps");
    raw_file("dup.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16);
    expect_format("duplicate names", "dup.safetensors", "duplicate");

    tw_st_set *none = NULL;
    CHECK(tw_st_open_file(tpath("does-not-exist.safetensors"), &none) == TW_E_NOT_FOUND && !none, "missing file");
}

static void write_shard(const char *file, const char *a, const char *b) {
    tw_st_writer *w = tw_st_writer_new();
    float v[2] = { 1, 2 };
    tw_st_writer_add(w, a, TW_DT_F32, 1, (int64_t[]){ 2 }, v);
    if (b) tw_st_writer_add(w, b, TW_DT_F32, 1, (int64_t[]){ 1 }, v);
    CHECK_OK(tw_st_writer_save(w, tpath(file)), "shard");
    tw_st_writer_free(w);
}

static void write_index(const char *json) {
    CHECK_OK(tw_write_file_atomic(tpath("model.safetensors.index.json"), json, strlen(json)), "index");
}

static void expect_dir(const char *what, tw_status want, const char *needle) {
    tw_st_set *s = NULL;
    tw_status st = tw_st_open_dir(tmpdir, &s);
    const char *msg = tw_last_error();
    CHECK(st == want, "%s: status %s (%s)", what, tw_status_name(st), msg);
    if (st != TW_OK) CHECK(strstr(msg, tmpdir) && strstr(msg, needle), "%s: message: %s", what, msg);
    tw_st_close(s);
}

static void test_shards(void) {
    write_shard("model-00001-of-00002.safetensors", "x", "y");
    write_shard("model-00002-of-00002.safetensors", "z", NULL);
    write_index("{\"metadata\":{},\"weight_map\":{\"x\":\"model-00001-of-00002.safetensors\","
                "\"y\":\"model-00001-of-00002.safetensors\",\"z\":\"model-00002-of-00002.safetensors\"}}");
    tw_st_set *s = NULL;
    CHECK_OK(tw_st_open_dir(tmpdir, &s), "sharded open");
    if (s) {
        CHECK(tw_st_count(s) == 3, "3 tensors");
        const tw_tensor *z = tw_st_get(s, "z");
        CHECK(z && strstr(z->file, "model-00002-of-00002.safetensors"), "z from shard 2");
        CHECK(tw_st_get(s, "x") && tw_st_get(s, "y"), "x, y");
    }
    tw_st_close(s);

    write_index("{\"weight_map\":{\"x\":\"model-00001-of-00002.safetensors\",\"q\":\"model-00002-of-00002.safetensors\"}}");
    expect_dir("tensor listed but absent", TW_E_FORMAT, "\"q\"");
    write_index("{\"weight_map\":{\"x\":\"model-00002-of-00002.safetensors\",\"z\":\"model-00001-of-00002.safetensors\"}}");
    expect_dir("tensor in the wrong shard", TW_E_FORMAT, "\"x\"");
    write_index("{\"weight_map\":{\"x\":\"model-00009-of-00009.safetensors\"}}");
    expect_dir("missing shard", TW_E_NOT_FOUND, "model-00009-of-00009.safetensors");
    write_index("{\"weight_map\":{\"x\":\"../etc/passwd\"}}");
    expect_dir("path in shard name", TW_E_FORMAT, "plain file name");
    write_index("{\"metadata\":{}}");
    expect_dir("no weight_map", TW_E_FORMAT, "weight_map");
    write_index("{\"weight_map\":{\"x\":");
    expect_dir("index syntax", TW_E_FORMAT, "model.safetensors.index.json");
    write_shard("model-00002-of-00002.safetensors", "x", NULL);
    write_index("{\"weight_map\":{\"x\":\"model-00001-of-00002.safetensors\",\"z\":\"model-00002-of-00002.safetensors\"}}");
    expect_dir("duplicate across shards", TW_E_FORMAT, "\"x\"");

    unlink(tpath("model.safetensors.index.json"));
    expect_dir("no weights at all", TW_E_NOT_FOUND, "model.safetensors");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s/twst-XXXXXX", cv_tmp_root());
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_roundtrip();
    test_corrupt();
    test_shards();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return th_report();
}
