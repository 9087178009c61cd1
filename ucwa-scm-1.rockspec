rockspec_format = "3.0"
package = "ucwa"
version = "scm-1"
source = { url = "git+https://example.invalid/lua-ucwa.git" }
description = {
  summary = "Skype for Business (UCWA 2.0) meeting bots in Lua",
  detailed = "A Lua 5.4 module with a C core (libcurl, expat) for UCWA 2.0 clients: "
    .. "meetings, onlineMeetingInvitation, the event channel, conversations.",
  license = "MIT",
}
dependencies = { "lua >= 5.4", "lua-cjson" }
external_dependencies = {
  CURL = { header = "curl/curl.h", library = "curl" },
  EXPAT = { header = "expat.h", library = "expat" },
  CRYPTO = { header = "openssl/evp.h", library = "crypto" },
}
build = {
  type = "builtin",
  modules = {
    ["ucwa.core"] = {
      sources = {
        "src/auxlib.c", "src/channel.c", "src/core.c", "src/dataurl.c", "src/date.c",
        "src/encode.c", "src/error.c", "src/loop.c", "src/parse.c", "src/parse_json.c",
        "src/parse_xml.c", "src/request.c", "src/timer.c", "src/url.c",
      },
      libraries = { "curl", "expat", "crypto" },
      incdirs = { "$(CURL_INCDIR)", "$(EXPAT_INCDIR)", "$(CRYPTO_INCDIR)", "src" },
      libdirs = { "$(CURL_LIBDIR)", "$(EXPAT_LIBDIR)", "$(CRYPTO_LIBDIR)" },
    },
    ["ucwa.async"] = "lua/ucwa/async.lua",
    ["ucwa.auth"] = "lua/ucwa/auth.lua",
    ["ucwa.client"] = "lua/ucwa/client.lua",
    ["ucwa.conversation"] = "lua/ucwa/conversation.lua",
    ["ucwa.discovery"] = "lua/ucwa/discovery.lua",
    ["ucwa.errors"] = "lua/ucwa/errors.lua",
    ["ucwa"] = "lua/ucwa/init.lua",
    ["ucwa.invitation"] = "lua/ucwa/invitation.lua",
    ["ucwa.resource"] = "lua/ucwa/resource.lua",
    ["ucwa.sim"] = "lua/ucwa/sim.lua",
    ["ucwa.util"] = "lua/ucwa/util.lua",
  },
}
