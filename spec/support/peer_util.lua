-- Helpers for the transport specs: start/stop the scripted python peer, drive an
-- engine until a condition holds (with a deadline), make a request synchronously.
local M = {}

local function monotime()
  local ok, cq = pcall(require, "cqueues")
  if ok then return cq.monotime() end
  return os.clock()
end
M.monotime = monotime

-- Starts spec/support/<script> (default http_peer.py; *.lua runs under lua5.4) without
-- the sanitizer preload; returns { port=, pid=, addr=, base=, stop= } (filled into `peer` if given).
function M.start(script, args, peer)
  script = script or "http_peer.py"
  local interp = script:match("%.lua$") and "lua5.4" or "python3"
  local p = assert(io.popen("exec env -u LD_PRELOAD " .. interp .. " spec/support/" .. script
    .. (args and " " .. args or ""), "r"))
  local line = assert(p:read("l"), "peer did not start")
  local port, pid = line:match("^PORT (%d+) PID (%d+)")
  assert(port, "unexpected peer output: " .. line)
  peer = peer or {}
  peer.addr = line:match(" ADDR (%S+)") or "127.0.0.1"    -- http_peer.py --bind ADDR
  peer.port, peer.pid, peer.base = tonumber(port), tonumber(pid), "http://" .. peer.addr .. ":" .. port
  function peer.stop()
    if peer.pipe then
      os.execute("kill " .. peer.pid .. " 2>/dev/null")
      peer.pipe:close()
      peer.pipe = nil
    end
  end
  peer.pipe = p
  return peer
end

-- For a describe block: starts the peer in setup() and stops it in teardown().
-- Returns the peer table at once; its fields are there from setup() on.
function M.use_peer(script, args)
  local busted = require "busted"        -- its API: this module is outside the spec's environment
  local peer = {}
  busted.setup(function() M.start(script, args, peer) end)
  busted.teardown(function() peer.stop() end)
  return peer
end

-- The peer's number of an event batch (as parsed by the channel's core.parse_events):
-- the ack of the URL it answered, from its self link.
function M.batch_n(batch)
  return tonumber(batch.links.self.href:match("ack=(%d+)"))
end

-- A throw-away self-signed certificate for 127.0.0.1: returns dir (cert.pem, key.pem).
M.make_cert = require("helpers").make_cert

-- Synchronous request: returns resp, err.
function M.fetch(eng, opts)
  local done, resp, err = false, nil, nil
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.callback = function(r, e) done, resp, err = true, r, e end
  eng:request(o)
  require("helpers").drive(eng, function() return done end, opts.wait or 10, "the answer")
  return resp, err
end

return M
