--- Checking option tables: every key known, every value of the right type
-- and range, so a typo raises where it was made ("unknown option 'pasword'
-- (did you mean 'password'?)") instead of failing later and elsewhere.
-- @module ucwa.options
local core = require "ucwa.core"

local options = {}

-- Edit distance, for the "did you mean" of an unknown key.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- The known name closest to `name` (at most a third of it different), or nil.
-- @string name
-- @tparam table known set of names
-- @treturn string|nil
function options.closest(name, known)
  local best, best_d
  for k in pairs(known) do
    local d = distance(name, k)
    if not best_d or d < best_d or (d == best_d and k < best) then best, best_d = k, d end
  end
  if best and best_d <= math.max(2, #name // 3) then return best end
end

-- Checkers: nil when the value is fine, else what was expected.
local function kind(t)
  local what = "a " .. t
  return function(v) if type(v) ~= t then return what end end
end
local string_ = kind("string")
local boolean_ = kind("boolean")
local function_ = kind("function")
local function positive(v)
  if type(v) ~= "number" or v ~= v or v <= 0 then return "a positive number" end
end
local function non_negative(v)
  if type(v) ~= "number" or v ~= v or v < 0 then return "a number >= 0" end
end
local function between(lo, hi)
  return function(v)
    if type(v) ~= "number" or v ~= v or v < lo.min or v > hi.max then
      return ("a number from %s to %s"):format(lo.min, hi.max)
    end
  end
end
local function one_of(...)
  local set, list = {}, {}
  for _, s in ipairs{ ... } do set[s] = true; list[#list + 1] = '"' .. s .. '"' end
  local what = table.concat(list, " or ")
  return function(v) if not set[v] then return what end end
end
local function string_or_function(v)
  if type(v) ~= "string" and type(v) ~= "function" then return "a string or a function" end
end
local function string_or_false(v)
  if type(v) ~= "string" and v ~= false then return "a string or false" end
end
local function list_of_strings(v)
  if type(v) ~= "table" then return "a list of strings" end
  for k, x in pairs(v) do
    if math.type(k) ~= "integer" or type(x) ~= "string" then return "a list of strings" end
  end
end
local function engine_(v)
  local mt = type(v) == "userdata" and getmetatable(v)
  if not (type(mt) == "table" and mt.__name == "ucwa.engine") then return "an engine made by ucwa.engine{}" end
end

--- Checks table `t` against `spec` (name -> checker, or a nested spec table
-- for a sub-table); raises "bad argument #1 to '<fname>' (...)" at `level`.
-- @tparam table t
-- @tparam table spec
-- @string fname
-- @int level
-- @string[opt] prefix for nested tables ("backoff.")
function options.check(t, spec, fname, level, prefix)
  prefix = prefix or ""
  local function fail(msg) error(("bad argument #1 to '%s' (%s)"):format(fname, msg), level + 1) end
  if type(t) ~= "table" then fail((prefix ~= "" and prefix:sub(1, -2) .. " must be a table" or "table expected")) end
  for k, v in pairs(t) do
    local checker = type(k) == "string" and spec[k]
    if not checker then
      local near = type(k) == "string" and options.closest(k, spec)
      fail(("unknown option '%s%s'%s"):format(prefix, tostring(k),
        near and (" (did you mean '" .. prefix .. near .. "'?)") or ""))
    end
    if type(checker) == "table" then
      options.check(v, checker, fname, level + 1, prefix .. k .. ".")
    else
      local want = checker(v)
      if want then
        fail(("option '%s%s' must be %s, got %s"):format(prefix, k, want,
          type(v) == "string" and ('"' .. v .. '"') or type(v) == "number" and tostring(v) or type(v)))
      end
    end
  end
end

--- The documented ranges of the event channel's query parameters, seconds
-- (events_ref.md). The specs lower `EVENT_TIMEOUT.min` to drive ucwa-sim's
-- short P-GETs; bots have no reason to.
options.EVENT_TIMEOUT = { min = 180, max = 1800 }
options.AGGREGATION = { min = 5, max = 1800 }

--- The options of ucwa.client{} and what each takes.
options.CLIENT = {
  url = string_, domain = string_,
  username = string_, password = string_, token = string_or_function,
  anonymous = { meeting = string_, key = string_, display_name = string_ },
  format = one_of("json", "xml"),
  user_agent = string_, culture = string_,
  verify = boolean_, ca_file = string_, proxy = string_or_false, max_body = positive,
  timeout = positive, event_timeout = between(options.EVENT_TIMEOUT, options.EVENT_TIMEOUT),
  event_grace = non_negative,
  aggregation = { low = between(options.AGGREGATION, options.AGGREGATION),
                  medium = between(options.AGGREGATION, options.AGGREGATION) },
  backoff = { initial = positive, max = positive },
  activity_interval = positive, available = boolean_,
  application_model = one_of("lean", "full"),
  engine = engine_, log = function_,
  trusted_domains = list_of_strings,
  signin_attempts = function(v)
    if math.type(v) ~= "integer" or v < 1 then return "a whole number, 1 or more" end
  end,
  -- durable sessions (docs/store.md)
  store = function(v)
    if not require("ucwa.store").is(v) then return "a store (ucwa.store.sqlite, ucwa.store.redis)" end
  end,
  store_tokens = boolean_, store_key = string_,
}

-- Options that configure the client's own engine: meaningless with engine=.
local ENGINE_OPTIONS = { "verify", "ca_file", "proxy", "max_body" }

--- Checks ucwa.client{} options and returns them with defaults filled in
-- (and the engine made); raises on anything wrong.
-- @tparam table opts
-- @int level for error()
-- @treturn table
function options.client(opts, level)
  options.check(opts, options.CLIENT, "client", level + 1)
  local function fail(msg) error("bad argument #1 to 'client' (" .. msg .. ")", level + 1) end
  if opts.url == nil and opts.domain == nil then fail("url or domain expected") end
  if opts.url ~= nil and opts.domain ~= nil then fail("url and domain given: give one") end
  if opts.anonymous and opts.anonymous.meeting == nil then fail("anonymous.meeting expected") end
  if opts.password ~= nil and opts.username == nil then fail("password given without username") end
  local creds = (opts.username and 1 or 0) + (opts.token and 1 or 0) + (opts.anonymous and 1 or 0)
  if creds == 0 then fail("username and password, token, or anonymous expected") end
  if creds > 1 then fail("give one of username and password, token, or anonymous") end
  if opts.username and opts.password == nil then fail("username given without password") end
  if (opts.store_tokens ~= nil or opts.store_key ~= nil) and opts.store == nil then
    fail((opts.store_key ~= nil and "store_key" or "store_tokens") .. " given without store")
  end
  if opts.backoff and opts.backoff.initial and opts.backoff.max and opts.backoff.max < opts.backoff.initial then
    fail("backoff.max must be >= backoff.initial")
  end
  local user_agent = opts.user_agent or ("lua-ucwa/" .. core._VERSION)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.format = opts.format or "json"
  o.user_agent = user_agent
  o.culture = opts.culture or "en-US"
  o.timeout = opts.timeout or 30
  o.event_timeout = opts.event_timeout or 180
  o.activity_interval = opts.activity_interval or 180
  o.available = opts.available ~= false
  if opts.engine then
    for _, k in ipairs(ENGINE_OPTIONS) do
      if opts[k] ~= nil then
        fail("option '" .. k .. "' configures the client's own engine: give it to ucwa.engine{} when sharing one")
      end
    end
    o.own_engine = false
  else
    -- Many bots may share one engine (one epoll set, one connection pool).
    o.engine = core.engine{ verify = opts.verify ~= false, ca_file = opts.ca_file, proxy = opts.proxy,
                            user_agent = user_agent, max_body = opts.max_body }
    o.own_engine = true
  end
  return o
end

return options
