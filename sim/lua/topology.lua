-- ucwa-sim: the topology (--topology): which hosts one process serves, on
-- which addresses, and where each sends a client on.  A preset by name, a
-- JSON file, or inline JSON (sim/README.md, "Topologies"); without
-- --topology, one host named by its address (--host, --port).  Checked once
-- at start-up; hosts.lua runs what this returns.
--
-- A description: { hosts = { host... }, discovery = name, pool = name,
--   homes = { [username] = name }, single = true|nil }, where a host is
--   { name=, address=, port=, http = bool, http_port=,
--     root = nil | { redirect = name or URL, query = string|nil },
--     user = "link" | "redirect" | "redirect-root", max_version=, hostile= }
local cjson = require "cjson.safe"

local M = {}

local USER_MODES = { link = true, redirect = true, ["redirect-root"] = true }
local HOST_FIELDS = { name = true, address = true, port = true, http = true, http_port = true, root = true,
  user = true, max_version = true, hostile = true }
local TOP_FIELDS = { preset = true, hosts = true, discovery = true, pool = true, homes = true }

-- The on-premises hosts of contoso.com and a hostile one.
local function contoso(discovery_extra)
  local d = { name = "lyncdiscover.contoso.com", address = "127.0.0.2" }
  for k, v in pairs(discovery_extra or {}) do d[k] = v end
  return {
    discovery = "lyncdiscover.contoso.com",
    pool = "pool2.contoso.com",
    hosts = {
      d,
      { name = "pool2.contoso.com", address = "127.0.0.3" },
      { name = "pool3.contoso.com", address = "127.0.0.4" },
      { name = "evil.example", address = "127.0.0.6", hostile = true },
    },
  }
end

-- Each call makes a fresh table: a JSON file may change what it starts from.
M.PRESETS = {
  -- the user resource links `applications` straight at the home pool
  pool = function() return contoso() end,
  -- the user resource redirects to the pool's .../root/oauth/user
  ["redirect-user"] = function() return contoso({ user = "redirect" }) end,
  -- ... or to the pool's .../root (no /oauth/user, as some servers do)
  ["redirect-user-root"] = function() return contoso({ user = "redirect-root" }) end,
  -- the discovery root answers a `redirect` link to the pool's root
  ["redirect-root"] = function() return contoso({ root = { redirect = "pool2.contoso.com" } }) end,
  -- on premises to Skype for Business Online
  hybrid = function()
    return {
      discovery = "lyncdiscover.contoso.com",
      pool = "webdir.online.lync.com",
      hosts = {
        { name = "lyncdiscover.contoso.com", address = "127.0.0.2",
          root = { redirect = "webdir.online.lync.com", query = "originalDomain=contoso.com" } },
        { name = "webdir.online.lync.com", address = "127.0.0.5" },
        { name = "evil.example", address = "127.0.0.6", hostile = true },
      },
    }
  end,
}

local function names_of(t)
  local list = {}
  for k in pairs(t) do list[#list + 1] = k end
  table.sort(list)
  return table.concat(list, ", ")
end

local function is_port(v)
  return math.type(tonumber(v)) == "integer" and tonumber(v) >= 0 and tonumber(v) <= 65535
end

local function is_ipv4(s)
  if type(s) ~= "string" then return false end
  local parts = { s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }
  if #parts ~= 4 then return false end
  for _, p in ipairs(parts) do
    if tonumber(p) > 255 then return false end
  end
  return true
end

-- A host of the description, checked; `known` has every host name.
local function check_host(h, i, known)
  local where = "host " .. i
  if type(h) ~= "table" then return nil, where .. " is not an object" end
  for k in pairs(h) do
    if not HOST_FIELDS[k] then return nil, where .. ": unknown field '" .. tostring(k) .. "'" end
  end
  if type(h.name) ~= "string" or not h.name:match("^[%w][%w%-%.]*$") or #h.name > 253 then
    return nil, where .. ": name must be a host name"
  end
  where = "host " .. h.name
  h.name = h.name:lower()
  if not is_ipv4(h.address) then return nil, where .. ": address must be an IPv4 address" end
  if h.port ~= nil and not is_port(h.port) then return nil, where .. ": port must be 0..65535" end
  if h.http_port ~= nil and not is_port(h.http_port) then return nil, where .. ": http_port must be 0..65535" end
  if h.http ~= nil and type(h.http) ~= "boolean" then return nil, where .. ": http must be true or false" end
  if h.hostile ~= nil and type(h.hostile) ~= "boolean" then return nil, where .. ": hostile must be true or false" end
  if h.user ~= nil and not USER_MODES[h.user] then
    return nil, where .. ": user must be one of " .. names_of(USER_MODES)
  end
  if h.max_version ~= nil and (type(h.max_version) ~= "number" or h.max_version < 1) then
    return nil, where .. ": max_version must be a number, 1 or more"
  end
  if h.root ~= nil then
    local r = h.root
    if type(r) ~= "table" or type(r.redirect) ~= "string" or (r.query ~= nil and type(r.query) ~= "string") then
      return nil, where .. ": root must be { redirect = host name or URL, query = string }"
    end
    if not known[r.redirect:lower()] and not r.redirect:match("^https?://") then
      return nil, where .. ": root redirect names no host of the topology and is no http(s) URL"
    end
  end
  return h
end

-- Merges the file's hosts into its preset's: same name, fields replaced.
local function merge(base, d)
  local by = {}
  for _, h in ipairs(base.hosts) do by[h.name] = h end
  for _, h in ipairs(d.hosts or {}) do
    local cur = type(h) == "table" and type(h.name) == "string" and by[h.name:lower()]
    if cur then
      for k, v in pairs(h) do cur[k] = v end
    else
      base.hosts[#base.hosts + 1] = h
    end
  end
  for _, k in ipairs({ "discovery", "pool" }) do
    if d[k] ~= nil then base[k] = d[k] end
  end
  base.homes = d.homes
  return base
end

-- Checks a description; returns it, or nil and a message.
local function check(d)
  if type(d.hosts) ~= "table" or #d.hosts == 0 then return nil, "hosts must be a non-empty list" end
  if #d.hosts > 30 then return nil, "at most 30 hosts" end
  local known = {}
  for _, h in ipairs(d.hosts) do
    if type(h) == "table" and type(h.name) == "string" then
      local n = h.name:lower()
      if known[n] then return nil, "host " .. n .. " is named twice" end
      known[n] = true
    end
  end
  for i, h in ipairs(d.hosts) do
    local ok, err = check_host(h, i, known)
    if not ok then return nil, err end
  end
  d.discovery = d.discovery or d.hosts[1].name
  d.pool = d.pool or d.discovery
  for _, k in ipairs({ "discovery", "pool" }) do
    if type(d[k]) ~= "string" or not known[d[k]:lower()] then
      return nil, k .. " must name a host of the topology"
    end
    d[k] = d[k]:lower()
  end
  local homes = {}
  if d.homes ~= nil and type(d.homes) ~= "table" then return nil, "homes must be an object" end
  for user, name in pairs(d.homes or {}) do
    if type(user) ~= "string" or type(name) ~= "string" or not known[name:lower()] then
      return nil, "homes: " .. tostring(user) .. " must name a host of the topology"
    end
    homes[(user:lower():gsub("^sip:", ""))] = name:lower()
  end
  d.homes = homes
  return d
end

-- Reads --topology: a preset name, inline JSON, or a file.
local function read(spec)
  if M.PRESETS[spec] then return M.PRESETS[spec]() end
  local text = spec
  if not spec:match("^%s*{") then
    local f, err = io.open(spec, "rb")
    if not f then
      return nil, "no preset '" .. spec .. "' (" .. names_of(M.PRESETS) .. ") and no such file: " .. tostring(err)
    end
    text = f:read("a")
    f:close()
  end
  local d, err = cjson.decode(text)
  if type(d) ~= "table" then return nil, "not JSON: " .. tostring(err) end
  for k in pairs(d) do
    if not TOP_FIELDS[k] then return nil, "unknown field '" .. tostring(k) .. "'" end
  end
  if d.preset ~= nil then
    local p = M.PRESETS[d.preset]
    if not p then return nil, "no preset '" .. tostring(d.preset) .. "' (" .. names_of(M.PRESETS) .. ")" end
    return merge(p(), d)
  end
  return d
end

-- The description for `spec` (nil: one host at `address`:`port`).  Returns
-- it, or nil and a one-line message for --topology.
function M.load(spec, address, port)
  if spec == nil then
    return { hosts = { { name = address, address = address, port = port, http = false } },
      discovery = address, pool = address, homes = {}, single = true }
  end
  local d, err = read(spec)
  if d then d, err = check(d) end
  if not d then return nil, "bad value for --topology: " .. err end
  return d
end

return M
