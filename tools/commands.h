/*
** commands.h — entry points of the `tower` commands, one file each (tools/cmd_*.c). Each takes the
** arguments after the command name (argv[0] is the command name) and returns the process exit
** code: 0 success, 1 error (message printed), 2 usage error. tower_help_* print a command's help.
*/
#ifndef TOWER_COMMANDS_H
#define TOWER_COMMANDS_H

int  tower_cmd_run(int argc, char **argv);        /* tools/cmd_run.c       */
int  tower_cmd_chat(int argc, char **argv);       /* tools/cmd_chat.c      */
int  tower_cmd_translate(int argc, char **argv);  /* tools/cmd_translate.c */
int  tower_cmd_tokenize(int argc, char **argv);   /* tools/cmd_tokenize.c  */
int  tower_cmd_dump(int argc, char **argv);       /* tools/cmd_dump.c      */
int  tower_cmd_info(int argc, char **argv);       /* tools/cmd_info.c      */
int  tower_cmd_bench(int argc, char **argv);      /* tools/cmd_bench.c     */
int  tower_cmd_quantize(int argc, char **argv);   /* tools/cmd_quantize.c  */
int  tower_cmd_serve(int argc, char **argv);      /* tools/cmd_serve.c     */

void tower_help_run(void);
void tower_help_chat(void);
void tower_help_translate(void);
void tower_help_tokenize(void);
void tower_help_dump(void);
void tower_help_info(void);
void tower_help_bench(void);
void tower_help_quantize(void);
void tower_help_serve(void);

#endif
