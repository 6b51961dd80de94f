/*
** test_image_url.c — images from http(s) URLs (libcurl), against the loopback test server
** (tests/tool_hubserver serving a fixture case directory): the downloaded image decodes to the
** same pixels as the local file; a 404, a 401 and a size limit are refused with a clear message;
** nothing hangs (the server exits by itself after 120 s, every wait here is bounded).
*/
#include "tower.h"
#include "testhelp.h"
#include "loopback_server.h"

#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
#ifndef TW_HAVE_CURL
    printf("skipped: this build has no libcurl\n");
    return th_report();
#else
    char dir[512], local[600], url[700];
    snprintf(dir, sizeof dir, "%s/expected/img_200x100", th_fixtures());
    snprintf(local, sizeof local, "%s/image.png", dir);
    CHECK(start_server(dir), "test server started");
    if (server_pid <= 0) return th_report();

    tw_image *a = NULL, *b = NULL;
    CHECK_OK(tw_image_load(local, NULL, &a), local);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/test/tiny/resolve/main/image.png", server_port);
    CHECK_OK(tw_image_load(url, NULL, &b), url);
    CHECK(a && b && tw_image_width(a) == tw_image_width(b) && tw_image_height(a) == tw_image_height(b) &&
              memcmp(tw_image_rgb(a), tw_image_rgb(b), (size_t)tw_image_width(a) * tw_image_height(a) * 3) == 0,
          "the downloaded image has the local file's pixels");
    tw_image_free(a);
    tw_image_free(b);

    /* a missing file: the message names the URL */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/test/tiny/resolve/main/nothing.png", server_port);
    tw_image *c = NULL;
    tw_status s = tw_image_load(url, NULL, &c);
    CHECK(s != TW_OK && c == NULL && strstr(tw_last_error(), "nothing.png"), "404: %s: %s", tw_status_name(s),
          tw_last_error());
    /* a server that wants a token */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/test/private/resolve/main/image.png", server_port);
    s = tw_image_load(url, NULL, &c);
    CHECK(s != TW_OK && c == NULL, "401 refused: %s: %s", tw_status_name(s), tw_last_error());
    /* larger than the caller's byte limit: refused before decoding */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/test/tiny/resolve/main/image.png", server_port);
    tw_image_load_opts o = { .max_bytes = 1000 };
    s = tw_image_load(url, &o, &c);
    CHECK(s != TW_OK && c == NULL, "max_bytes enforced on downloads: %s: %s", tw_status_name(s), tw_last_error());
    /* nobody listening: a clean network error, quickly */
    stop_server();
    s = tw_image_load(url, NULL, &c);
    CHECK(s != TW_OK && c == NULL, "connection refused: %s: %s", tw_status_name(s), tw_last_error());
    return th_report();
#endif
}
