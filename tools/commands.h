/*
** commands.h — entry points of the `tower` commands that live in their own files (tools/cmd_*.c).
** Each takes the arguments after the command name (argv[0] is the command name) and returns the
** process exit code: 0 success, 1 error (message printed), 2 usage error.
*/
#ifndef TOWER_COMMANDS_H
#define TOWER_COMMANDS_H

int tower_cmd_bench(int argc, char **argv);      /* tools/cmd_bench.c    */
int tower_cmd_quantize(int argc, char **argv);   /* tools/cmd_quantize.c */

#endif
