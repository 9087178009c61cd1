-- ucwa-sim: the hosts this process serves, as topology.lua describes them:
-- the listener each request came in on, the names and URLs links are
-- written with (names, never addresses: a client maps the names to the
-- addresses, e.g. with libcurl's resolve), each user's home pool, and the
-- per-host settings.
--
-- A host: { name=, address=, scheme= "http"|"https", port=, base=
-- "scheme://name:port", http_port=, http_base= (its plain-HTTP listener,
-- with TLS only; else nil), root= (topology), user= "link" | "redirect" |
-- "redirect-root", max_version=, hostile= }; other modules read these.
local M = {}

local list, by_name = {}, {}
local listeners = {} -- listener number -> { host=, plain_http= }
local discovery, pool
local homes = {} -- username -> host

-- Takes a checked description; returns the listeners to open, in order:
-- { {address=, port=, tls=} ... }.  tls: serve HTTPS; max_version: the
-- default of --max-version.
function M.configure(desc, tls, max_version)
  local out = {}
  for _, d in ipairs(desc.hosts) do
    local h = { name = d.name, address = d.address, scheme = tls and "https" or "http",
      root = d.root, user = d.user or "link", max_version = d.max_version or max_version,
      hostile = d.hostile == true }
    list[#list + 1] = h
    by_name[h.name] = h
    listeners[#listeners + 1] = { host = h }
    out[#out + 1] = { address = d.address, port = d.port or 0, tls = tls }
    if tls and d.http ~= false then
      listeners[#listeners + 1] = { host = h, plain_http = true }
      out[#out + 1] = { address = d.address, port = d.http_port or 0, tls = false }
    end
  end
  discovery, pool = by_name[desc.discovery], by_name[desc.pool]
  for user, name in pairs(desc.homes) do homes[user] = by_name[name] end
  return out
end

-- Takes the ports the listeners got; returns what the simulator prints:
-- the discovery root URL, a line per host, an empty line.
function M.start(ports, root_path)
  for i, l in ipairs(listeners) do
    local h = l.host
    if l.plain_http then
      h.http_port = ports[i]
      h.http_base = "http://" .. h.name .. ":" .. ports[i]
    else
      h.port = ports[i]
      h.base = h.scheme .. "://" .. h.name .. ":" .. ports[i]
    end
  end
  local lines = { discovery.base .. root_path }
  for _, h in ipairs(list) do
    local line = "host " .. h.name .. " " .. h.scheme .. "://" .. h.address .. ":" .. h.port
    if h.http_port then line = line .. " http://" .. h.address .. ":" .. h.http_port end
    lines[#lines + 1] = line
  end
  return table.concat(lines, "\n") .. "\n\n"
end

-- The host of a request, and whether it came in on that host's plain-HTTP
-- listener (beside HTTPS).
function M.of(req)
  local l = listeners[req.listener] or listeners[1]
  return l.host, l.plain_http == true
end

function M.get(name)
  return type(name) == "string" and by_name[name:lower()] or nil
end

-- The hosts, in topology order.
function M.list()
  return list
end

function M.discovery()
  return discovery
end

-- The home pool of a user (a normalized user name).
function M.home(username)
  return homes[username] or pool
end

function M.set_home(username, host)
  homes[username] = host
end

-- Everyone homed on `from` is homed on `to` from now on (a pool that went
-- down and came back elsewhere).
function M.move(from, to)
  if pool == from then pool = to end
  for user, h in pairs(homes) do
    if h == from then homes[user] = to end
  end
end

-- An absolute URL for `path` on `host` (its main scheme).
function M.url(host, path)
  return host.base .. path
end

return M
