/*
** eval.h — the evaluation layer (src/eval): metrics exact to the reference implementations the
** TowerVision paper's numbers were computed with (sacreBLEU, the VQA evaluation, OCRBench, CC-OCR,
** lmms-eval's answer parsing), and the benchmark tasks built on them. docs/eval.md describes each.
*/
#ifndef TOWER_EVAL_H
#define TOWER_EVAL_H

#include "tw_internal.h"

#endif
