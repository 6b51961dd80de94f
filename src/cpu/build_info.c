/* build_info.c — what this build of the library contains, for `tower info` and bug reports. */
#include "kernels.h"

#include <stdio.h>

#ifndef TW_BUILD_FEATURES
#define TW_BUILD_FEATURES "unknown"
#endif
#ifndef TW_BUILD_CC
#define TW_BUILD_CC "unknown compiler"
#endif

const char *tw_build_info(void) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "towervision %s; %s; %s; kernels: %s (cpu: %s)%s", TW_VERSION, TW_BUILD_CC,
             TW_BUILD_FEATURES, tw_kpath_name(tw_kernels_path()), tw_cpu_features(),
#if defined(__SANITIZE_ADDRESS__)
             "; AddressSanitizer"
#else
             ""
#endif
    );
    return buf;
}
