/* placeholder: replaced by the parser */
#include "ucwa.h"
void ucwa_open_parse(lua_State *L) { (void)L; }
