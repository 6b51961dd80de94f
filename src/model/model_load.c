/*
** model_load.c — tw_model_load: which loader a model name goes to. "random:SHAPE[:TYPE]" builds
** random weights of the released shapes (model_random.c); anything else is a checkpoint: a
** directory, a `tower quantize` file or a Hugging Face repo id (model.c). A file of its own so
** that model.c and model_random.c, which both use the other's entry points otherwise, stay a
** one-way pair: model_random.c -> model.c.
*/
#include "model_random.h"

tw_status tw_model_load(const char *name, const tw_model_params *params, tw_model **out) {
    if (!out) return tw_err(TW_E_ARG, "tw_model_load: out is NULL");
    *out = NULL;
    if (tw_random_name(name)) return tw_random_model_load(name, params, out);
    return tw_model_load_checkpoint(name, params, out);
}
