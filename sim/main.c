/* placeholder: replaced by ucwa-sim */
#include <stdio.h>
int main(void) { puts("ucwa-sim: not built yet"); return 0; }
