/* cmd_stubs.c — placeholders for commands still being written; removed as each lands. */
#include "commands.h"
#include <stdio.h>

__attribute__((weak)) int tower_cmd_bench(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "tower: error: `tower bench` is not in this build yet\n");
    return 1;
}

__attribute__((weak)) int tower_cmd_quantize(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "tower: error: `tower quantize` is not in this build yet\n");
    return 1;
}
