-- The rock: `luarocks make` (offline on Debian: `luarocks make --deps-mode=none`
-- after `make deps`). A make build: the Makefile finds libcurl, expat,
-- OpenSSL and SQLite through pkg-config (Debian keeps curl.h in a multiarch folder that
-- luarocks' own header search misses), builds ucwa.core and ucwa-sim, and
-- `make install` puts the module, the Lua layer and the ucwa-sim command
-- into the tree luarocks names. The version is ucwa._VERSION's.
rockspec_format = "3.0"
package = "ucwa"
version = "0.2.0-1"
source = { url = "git+https://github.com/lua-ucwa/lua-ucwa.git", tag = "v0.2.0" }
description = {
  summary = "Skype for Business (UCWA 2.0) bots in Lua, with a UCWA server simulator",
  detailed = "A Lua 5.4 module with a C core (libcurl, expat, lua-cjson) for UCWA 2.0 clients: "
    .. "meetings and the onlineMeetingInvitation, the event channel, conversations, "
    .. "and ucwa-sim, a UCWA 2.0 server simulator on libmicrohttpd.",
  license = "MIT",
}
dependencies = { "lua >= 5.4, < 5.5", "lua-cjson >= 2.1" }
external_dependencies = {
  CURL = { library = "curl" },
  EXPAT = { header = "expat.h", library = "expat" },
  CRYPTO = { header = "openssl/evp.h", library = "crypto" },
  MICROHTTPD = { header = "microhttpd.h", library = "microhttpd" },
  GMIME = { library = "gmime-3.0" },        -- multipart/batching (its header is under gmime-3.0/)
  HTTP_PARSER = { header = "http_parser.h", library = "http_parser" },
  SQLITE = { header = "sqlite3.h", library = "sqlite3" },
  HIREDIS = { header = "hiredis/async.h", library = "hiredis" },
}
build = {
  type = "make",
  build_target = "all",
  build_variables = { CC = "$(CC)", CFLAGS = "$(CFLAGS)", LUA = "$(LUA)" },
  install_target = "install",
  install_variables = { INST_LIBDIR = "$(LIBDIR)", INST_LUADIR = "$(LUADIR)", INST_BINDIR = "$(BINDIR)" },
}
