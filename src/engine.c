/* placeholder: replaced by the transport */
#include "ucwa.h"
void ucwa_open_engine(lua_State *L) { (void)L; }
