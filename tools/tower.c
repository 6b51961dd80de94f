/* tower — command-line front end (placeholder until the CLI lands). */
#include "tower.h"
#include <stdio.h>
int main(void) { printf("tower %s\n", TW_VERSION); return 0; }
