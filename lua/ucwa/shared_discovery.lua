--- What servers tell every bot alike, shared by the clients of one engine:
-- the answer of an autodiscovery root (for `ROOT_TTL` seconds) and each
-- origin's token service (from its 401 challenge). A fleet signing in on
-- one engine then asks the root once, not once a bot, and each bot goes
-- straight to the token service instead of first being refused with a 401
-- (issue 16: 4 requests a bot's sign-in instead of 6).
--
-- Nothing secret is kept here: a root's answer is public, a token service
-- is a URL. Each bot still checks what it takes against its own trust
-- rules (ucwa.trust): a token service one bot trusts (its
-- `trusted_domains`) is not one another bot sends its password to unless
-- its rules allow it too.
-- @module ucwa.shared_discovery
local shared = {}

--- Seconds a root's answer is used by the other bots of the engine.
shared.ROOT_TTL = 60
--- Roots, and origins with a token service, remembered per engine at most:
-- past that (a server sending its bots through endless hosts) nothing more
-- is shared, and each bot asks for itself as it would alone.
shared.MAX_ENTRIES = 64

local by_engine = setmetatable({}, { __mode = "k" }) -- engine -> { roots =, services =, counts = }

local function of(engine)
  local t = by_engine[engine]
  if not t then
    t = { roots = {}, services = {}, counts = { roots = 0, services = 0 } }
    by_engine[engine] = t
  end
  return t
end

-- Sets map[key] = value (nil: forgets it), within MAX_ENTRIES keys.
local function put(engine, map, key, value)
  local t = of(engine)
  local m, had = t[map], t[map][key] ~= nil
  if value ~= nil and not had then
    if t.counts[map] >= shared.MAX_ENTRIES then return end
    t.counts[map] = t.counts[map] + 1
  elseif value == nil and had then
    t.counts[map] = t.counts[map] - 1
  end
  m[key] = value
end

--- The model a root URL answered with, when another bot of the engine read
-- it less than ROOT_TTL seconds ago; else nil. Read only: it is shared.
-- @param engine
-- @string url
-- @treturn table|nil
function shared.root(engine, url)
  local t = by_engine[engine]
  local r = t and t.roots[url]
  if r and os.time() - r.at < shared.ROOT_TTL then return r.model end
end

--- Remembers (or, with nil, forgets) a root's answer (a plain 200 with its user link).
-- @param engine
-- @string url
-- @tparam table|nil model
function shared.set_root(engine, url, model)
  put(engine, "roots", url, model and { model = model, at = os.time() } or nil)
end

--- The token service an origin's challenge named to a bot of the engine, or nil.
-- @param engine
-- @string origin
-- @treturn string|nil
function shared.service(engine, origin)
  local t = by_engine[engine]
  return t and t.services[origin]
end

--- Remembers (or, with nil, forgets) the token service of an origin.
-- @param engine
-- @string origin
-- @tparam string|nil url
function shared.set_service(engine, origin, url)
  put(engine, "services", origin, url)
end

return shared
