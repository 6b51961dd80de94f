/*
** tool_videobench.c — how long loading N sampled frames takes, seeking vs decoding sequentially.
**
**   build/bench/tool_videobench [-n FRAMES] [-r REPEATS] [clip ...]
**
** Without clips it times the fixture clips (media/videos, via $TOWER_FIXTURES) and two generated
** long clips (64x36 H.264, written to $TMPDIR or /dev/shm and removed afterwards): "2 hours" at
** 1 fps with a keyframe every 12 frames, and 20 minutes at 30 fps with x264's default GOP of 250.
** For every clip and seek mode (auto, always, never) it prints the best of REPEATS wall times, the
** frames decoded and how the frames were reached, and checks that every mode returned the same
** indices and pixels as sequential decoding. The numbers in docs/video.md come from this tool.
**
** The synthetic-clip writer is the one of tests/test_video_io.c, included without its tests.
*/
#define TW_VIDEO_TEST_NO_MAIN
#include "test_video_io.c"

#ifdef TW_HAVE_FFMPEG
typedef struct result {
    double    ms;        /* best wall time */
    tw_video *v;         /* the last load  */
} result;

static result time_mode(const char *clip, int32_t n, tw_seek_mode mode, int repeats) {
    result r = { 1e30, NULL };
    for (int i = 0; i < repeats; i++) {
        tw_video_opts o = { .seek_mode = mode };
        tw_video *v = NULL;
        double t0 = tw_time_ms();
        tw_status s = tw_video_load(clip, n, &o, &v);
        double t = tw_time_ms() - t0;
        if (s != TW_OK) {
            fprintf(stderr, "%s: %s\n", clip, tw_last_error());
            tw_video_free(r.v);
            r.v = NULL;
            return r;
        }
        if (t < r.ms) r.ms = t;
        tw_video_free(r.v);
        r.v = v;
    }
    return r;
}

static void bench_clip(const char *label, const char *clip, int32_t n, int repeats, bool generated) {
    static const tw_seek_mode modes[] = { TW_SEEK_NEVER, TW_SEEK_AUTO, TW_SEEK_ALWAYS };
    static const char *const names[] = { "never", "auto", "always" };
    result r[3];
    for (int m = 0; m < 3; m++) r[m] = time_mode(clip, n, modes[m], repeats);
    if (!r[0].v) {
        CHECK(0, "%s: cannot load", clip);
        for (int m = 1; m < 3; m++) tw_video_free(r[m].v);
        return;
    }
    printf("%s: T=%lld, %dx%d %s, %d frames sampled\n", label, (long long)r[0].v->total_frames, r[0].v->width,
           r[0].v->height, r[0].v->codec, r[0].v->n_frames);
    for (int m = 0; m < 3; m++) {
        if (!r[m].v) continue;
        printf("  %-6s %9.1f ms  %7lld frames decoded  %s\n", names[m], r[m].ms, (long long)r[m].v->frames_decoded,
               r[m].v->access);
        if (m) CHECK(same_video(r[0].v, r[m].v), "%s: seek %s differs from sequential decoding", clip, names[m]);
        if (generated) CHECK(frames_show_indices(r[m].v), "%s: seek %s: a frame shows another number", clip, names[m]);
    }
    for (int m = 0; m < 3; m++) tw_video_free(r[m].v);
}

static void bench_generated(const char *label, int64_t frames, int fps, int gop, int32_t n, int repeats) {
    char path[256], tag[32];
    snprintf(tag, sizeof tag, "bench%d", gop);
    gen_path(path, sizeof path, tag);
    double t0 = tw_time_ms();
    if (gen_clip(path, "libx264", frames, fps, gop, 2) != 0 && gen_clip(path, "mpeg4", frames, fps, gop, 2) != 0) {
        printf("%s: no H.264 / MPEG-4 encoder in this FFmpeg, skipped\n", label);
        remove(path);
        return;
    }
    printf("(%s written in %.1f s)\n", label, (tw_time_ms() - t0) / 1000);
    bench_clip(label, path, n, repeats, true);
    remove(path);
}
#endif

int main(int argc, char **argv) {
#ifdef TW_HAVE_FFMPEG
    int32_t n = 32;
    int repeats = 3, first = argc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) n = atoi(argv[++i]);
        else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) repeats = atoi(argv[++i]);
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [-n FRAMES] [-r REPEATS] [clip ...]\n", argv[0]);
            return 2;
        } else {
            first = i;
            break;
        }
    }
    if (repeats < 1) repeats = 1;
    if (first < argc) {
        for (int i = first; i < argc; i++) bench_clip(argv[i], argv[i], n, repeats, false);
    } else {
        static const char *const clips[] = { "testsrc2_h264_640x360_30fps_5s.mp4",
                                             "testsrc2_h264_480x270_rot90_24fps_3s.mp4",
                                             "testsrc_vp9_320x240_25fps_4s.webm", "corrupt_garbled_mdat_h264.mp4" };
        for (size_t i = 0; i < sizeof clips / sizeof clips[0]; i++) {
            char rel[256];
            snprintf(rel, sizeof rel, "../media/videos/%s", clips[i]);
            bench_clip(clips[i], th_path(rel), n, repeats, false);
        }
        bench_generated("generated 2 h, 1 fps, GOP 12", 7200, 1, 12, n, repeats);
        bench_generated("generated 20 min, 30 fps, GOP 250", 36000, 30, 250, n, repeats);
    }
    return th_report();
#else
    printf("built without FFmpeg: nothing to time\n");
    return 0;
#endif
}
