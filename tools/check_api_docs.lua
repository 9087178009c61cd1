-- Checks the LDoc reference in build/doc against the code: every public
-- function (C and Lua) and every client option has an entry, and no private
-- (`_`) name has one. Run by tools/check_docs.sh after LDoc; exits 1 with the
-- list of what is missing. Usage: lua5.4 tools/check_api_docs.lua [build]
local build = arg[1] or os.getenv("UCWA_BUILD") or "build"
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The names LDoc gave entries, per page.
local pages = {}
local function anchors(page)
  if pages[page] then return pages[page] end
  local html = read("build/doc/modules/" .. page .. ".html")
  local set = {}
  for name in (html or ""):gmatch('name = "([^"]+)"') do set[name] = true end
  pages[page] = html and set or false
  return pages[page]
end

local missing, private = {}, {}

-- Every public function of `t`, as `prefix .. name`, must be on `page`.
local function expect_functions(page, t, prefix, skip)
  local set = anchors(page)
  if not set then
    missing[#missing + 1] = "page " .. page .. " (not generated)"
    return
  end
  for k, v in pairs(t) do
    if type(k) == "string" and type(v) == "function" and not k:match("^_") and not (skip and skip[k]) then
      if not set[prefix .. k] then missing[#missing + 1] = page .. ": " .. prefix .. k end
    end
  end
end

local ucwa = require "ucwa"
local core = require "ucwa.core"
local client = require "ucwa.client"
local resource = require "ucwa.resource"
local invitation = require "ucwa.invitation"
local conversation = require "ucwa.conversation"
local errors = require "ucwa.errors"
local sim = require "ucwa.sim"

-- metamethods are not API entries
local META = { __index = true, __tostring = true, __gc = true, __close = true, __name = true }

-- the C functions ucwa re-exports are documented once, in ucwa.core
local reexported = {}
for k, v in pairs(ucwa) do if core[k] == v then reexported[k] = true end end
expect_functions("ucwa", ucwa, "", reexported)
-- on/off are the emitter's, documented once on Resource for every class
local EMITTED = { on = true, off = true }
for k in pairs(META) do EMITTED[k] = true end
expect_functions("ucwa.client", client, "", { new = false })
expect_functions("ucwa.client", client.Client, "Client:", META)
expect_functions("ucwa.resource", resource, "", { class = true, register = true, new = true })
expect_functions("ucwa.resource", resource.Resource, "Resource:", META)
expect_functions("ucwa.resource", resource.Operation, "Operation:", EMITTED)
expect_functions("ucwa.invitation", invitation.Invitation, "Invitation:", EMITTED)
expect_functions("ucwa.conversation", conversation, "")
expect_functions("ucwa.conversation", conversation.Conversation, "Conversation:", EMITTED)
expect_functions("ucwa.conversation", conversation.Participant, "Participant:", EMITTED)
expect_functions("ucwa.errors", errors, "")
local people, presence = require "ucwa.people", require "ucwa.presence"
local subscription = require "ucwa.subscription"
expect_functions("ucwa.people", people, "")
expect_functions("ucwa.people", people.Contact, "Contact:", EMITTED)
expect_functions("ucwa.people", people.Group, "Group:", EMITTED)
expect_functions("ucwa.presence", presence, "")
expect_functions("ucwa.subscription", subscription, "")
expect_functions("ucwa.subscription", subscription.Subscription, "Subscription:", EMITTED)
expect_functions("ucwa.sim", sim, "")
local store_redis = require "ucwa.store_redis"
expect_functions("ucwa.store_redis", store_redis, "")
expect_functions("ucwa.store_redis", store_redis.Store, "Store:", META)
local fleet = require "ucwa.fleet"
expect_functions("ucwa.fleet", fleet, "")
expect_functions("ucwa.fleet", fleet.Fleet, "Fleet:", META)

-- The C core: its functions, and the methods of each class it registers.
expect_functions("ucwa.core", core, "")
local eng = core.engine{}
local classes = { engine = eng, timer = eng:timer(60, function() end) }
classes.request = eng:request{ url = "http://127.0.0.1:9/", callback = function() end }
classes.redis = eng:redis{ port = 9 }
classes.channel = eng:channel{ url = "http://127.0.0.1:9/e", on_batch = function() end,
                               on_error = function() end }
for name, obj in pairs(classes) do
  local mt = getmetatable(obj)
  local methods = type(mt.__index) == "table" and mt.__index or mt
  expect_functions("ucwa.core", methods, name .. ":", META)
end
eng:close()

-- Every client option, as a field of the options table.
local set = anchors("ucwa.client") or {}
local html = read("build/doc/modules/ucwa.client.html") or ""
for k in pairs(client.OPTIONS) do
  if not html:find('<span class="parameter">' .. k .. "</span>", 1, true) and not set[k] then
    missing[#missing + 1] = "ucwa.client: option " .. k
  end
end

-- No private entry anywhere.
for page, names in pairs(pages) do
  for name in pairs(names or {}) do
    if name:match("^_") or name:match("[:.]_") then private[#private + 1] = page .. ": " .. name end
  end
end

table.sort(missing)
table.sort(private)
for _, m in ipairs(missing) do io.stderr:write("check_api_docs: no doc entry for ", m, "\n") end
for _, p in ipairs(private) do io.stderr:write("check_api_docs: private entry documented: ", p, "\n") end
if #missing > 0 or #private > 0 then os.exit(1) end
print("check_api_docs: every public function and client option has an entry")
