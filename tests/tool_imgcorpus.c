/*
** tool_imgcorpus.c — runs the image decoder over every file of the media corpus and prints one
** line per file ("ok WxH fnv64" or "refused: reason"), then a summary. Crashes cannot be counted
** from inside, so the tool forks one child per file: a child killed by a signal is a crash.
**
** The outcome is checked against manifest.tsv's `expected` column (pngsuite files are not in the
** manifest: their x* files must be refused, the others decoded), and disagreements are counted.
**
** usage: tool_imgcorpus [corpus dir]   (default $TOWER_MEDIA/images, else ../shared/media/images)
** The exit status is non-zero when something crashed or disagreed with the manifest.
*/
#include "tower.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* The expected column for rel, from the manifest text (NULL if absent). */
static const char *manifest_expected(const char *manifest, const char *rel, char *out, size_t cap) {
    size_t rl = strlen(rel);
    for (const char *line = manifest; line && *line;) {
        const char *nl = strchr(line, '\n');
        if (strncmp(line, rel, rl) == 0 && line[rl] == '\t') {
            const char *f = line;
            for (int k = 0; k < 4 && f; k++) f = strchr(f + 1, '\t');   /* to the 5th column */
            if (!f) return NULL;
            f++;
            size_t n = strcspn(f, "\t\n");
            if (n >= cap) n = cap - 1;
            memcpy(out, f, n);
            out[n] = 0;
            return out;
        }
        line = nl ? nl + 1 : NULL;
    }
    return NULL;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

int main(int argc, char **argv) {
    char root[1024];
    const char *media = getenv("TOWER_MEDIA");
    if (argc > 1) snprintf(root, sizeof root, "%s", argv[1]);
    else snprintf(root, sizeof root, "%s/images", media && *media ? media : "../shared/media");
    char mpath[1100];
    snprintf(mpath, sizeof mpath, "%s/manifest.tsv", root);
    char *manifest = slurp(mpath);
    if (!manifest) {
        fprintf(stderr, "cannot read %s (give the corpus folder as the argument)\n", mpath);
        return 2;
    }
    static const char *folders[] = { "corrupt", "exif_orientation", "gif", "jpeg", "other", "png", "pngsuite", "webp" };
    int n_ok = 0, n_refused = 0, n_crashed = 0, n_disagree = 0, n_explained = 0, n_unlisted = 0;
    for (size_t fi = 0; fi < sizeof folders / sizeof *folders; fi++) {
        char dir[1200];
        snprintf(dir, sizeof dir, "%s/%s", root, folders[fi]);
        DIR *d = opendir(dir);
        if (!d) continue;
        char **names = NULL;
        size_t nn = 0;
        for (struct dirent *e; (e = readdir(d));) {
            const char *n = e->d_name;
            if (n[0] == '.' || strcmp(n, "LICENSE") == 0 || strstr(n, "README")) continue;
            names = realloc(names, (nn + 1) * sizeof *names);
            names[nn++] = strdup(n);
        }
        closedir(d);
        qsort(names, nn, sizeof *names, cmp_str);
        for (size_t i = 0; i < nn; i++) {
            char rel[600], path[1900], line[1024] = "";
            snprintf(rel, sizeof rel, "%s/%s", folders[fi], names[i]);
            snprintf(path, sizeof path, "%s/%s", root, rel);
            /* The child decodes and writes its line into a pipe; the parent sees how it ended. */
            int fd[2];
            if (pipe(fd) != 0) return 2;
            fflush(stdout);
            pid_t pid = fork();
            if (pid == 0) {
                close(fd[0]);
                tw_image *im = NULL;
                tw_status s = tw_image_load(path, NULL, &im);
                char buf[1024];
                if (s == TW_OK)
                    snprintf(buf, sizeof buf, "ok %dx%d %016llx", tw_image_width(im), tw_image_height(im),
                             (unsigned long long)fnv1a(tw_image_rgb(im), (size_t)tw_image_width(im) * tw_image_height(im) * 3));
                else
                    snprintf(buf, sizeof buf, "refused: %s: %s", tw_status_name(s), tw_last_error());
                tw_image_free(im);
                ssize_t wr = write(fd[1], buf, strlen(buf));
                (void)wr;
                exit(0);   /* not _exit: under ASan the leak check runs at exit (a leak fails the child) */
            }
            close(fd[1]);
            ssize_t k = read(fd[0], line, sizeof line - 1);
            for (ssize_t t; k >= 0 && (size_t)k < sizeof line - 1 && (t = read(fd[0], line + k, sizeof line - 1 - k)) > 0;) k += t;
            line[k > 0 ? k : 0] = 0;
            close(fd[0]);
            int ws = 0;
            waitpid(pid, &ws, 0);
            bool crashed = !WIFEXITED(ws) || WEXITSTATUS(ws) != 0;
            bool ok = !crashed && strncmp(line, "ok ", 3) == 0;
            if (crashed) {
                n_crashed++;
                snprintf(line, sizeof line, "CRASHED (%s %d)", WIFSIGNALED(ws) ? "signal" : "exit",
                         WIFSIGNALED(ws) ? WTERMSIG(ws) : WEXITSTATUS(ws));
            } else if (ok) {
                n_ok++;
            } else {
                n_refused++;
            }
            /* What the manifest allows. */
            char exp[64];
            const char *e = manifest_expected(manifest, rel, exp, sizeof exp);
            if (!e && strcmp(folders[fi], "pngsuite") == 0) e = names[i][0] == 'x' ? "fail" : "ok";
            bool agree = true;
            if (!e) {
                n_unlisted++;
                e = "?";
            } else if (!crashed) {
                bool may_ok = strcmp(e, "ok") == 0 || strstr(e, "-ok") || strstr(e, "ok-") || strstr(e, "partial") ||
                              strstr(e, "warn");
                bool may_fail = strncmp(e, "fail", 4) == 0 || strstr(e, "unsupported") || strstr(e, "warn");
                agree = ok ? may_ok : may_fail;
            } else {
                agree = false;
            }
            /* Known, explained disagreements: libwebp itself (and so Pillow, with the same pixels)
            ** decodes very_short.webp completely: its VP8 partitions end exactly at the end of the
            ** chunk, so nothing is missing although the manifest calls it truncated. */
            const char *why = NULL;
            if (!agree && ok && strcmp(rel, "corrupt/libwebp_very_short.webp") == 0) why = "libwebp and Pillow decode it too";
            if (why) n_explained++;
            else if (!agree) n_disagree++;
            printf("%-60s %-18s %s%s%s%s\n", rel, e, line, agree ? "" : why ? "   (differs from the manifest: " : "   <-- DISAGREES with manifest",
                   why ? why : "", why ? ")" : "");
            free(names[i]);
        }
        free(names);
    }
    printf("decoded %d, refused %d, crashed %d; %d disagree with the manifest (+%d explained), %d not listed\n", n_ok,
           n_refused, n_crashed, n_disagree, n_explained, n_unlisted);
    free(manifest);
    return n_crashed || n_disagree ? 1 : 0;
}
