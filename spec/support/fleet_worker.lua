-- A fleet worker process for spec/63-fleet_spec.lua: runs ucwa.fleet on a
-- Redis store with bots bot1..botN of ucwa-sim, and logs what its bots see.
--   lua5.4 spec/support/fleet_worker.lua BUILD REDIS_PORT SIM_URL N LEASE NAME LOG [FORMAT [SHARE]]
-- (SHARE: a fixed share; default the fair one)
-- Its engine's User-Agent names the worker, so that the simulator can tell
-- whose P-GET it got. Log lines (each ends with " ." so that a line cut by
-- SIGKILL is not read as whole):
--   E <bot> <ev.id> <title>       an event of the simulator's synthetic kind
--   ready|restored|resumed <bot>  the bot's session began, carried on, or signed in afresh
--   drop <bot> <subcode>          the worker stopped driving it
--   count <n> <writes>            bots driven, fenced writes sent (once a second)
local build, port, url, n, lease, name, log_path, format, share = table.unpack(arg)
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local ucwa = require "ucwa"
require("ucwa.options").EVENT_TIMEOUT.min = 1 -- ucwa-sim's short P-GETs

local say = require("support.line_log").writer(log_path)

math.randomseed(os.time() + #name * 7919 + tonumber(port))
local engine = ucwa.engine{ user_agent = "fleet-worker/" .. name }
local store = ucwa.store.redis{ port = tonumber(port), engine = engine, lease = tonumber(lease), owner = name,
                                prefix = "f:" }
local bots = {}
for i = 1, tonumber(n) do
  bots[i] = { name = "bot" .. i, username = "bot" .. i .. "@contoso.com", password = "password" }
end

local f = ucwa.fleet{
  store = store, bots = bots, share = share and math.tointeger(tonumber(share)) or nil,
  client = { url = url, format = format or "json", event_timeout = 2 },
  on_bot = function(bot, c)
    c._session.log_fn = function(level, msg)
      if level ~= "debug" then say("log", bot, level, (tostring(msg):gsub("%s+", "_"))) end
    end
    c:on("event", function(ev)
      if ev.link and ev.link.rel == "note" then say("E", bot, ev.id, ev.link.title) end
    end)
    c:on("ready", function() say("ready", bot) end)
    c:on("restored", function(info) say("restored", bot, info.replayed) end)
    c:on("resumed", function(i) say("resumed", bot, i.reason, (tostring(i.error):gsub("%s+", "_"))) end)
  end,
  on_drop = function(bot, err) say("drop", bot, err.subcode) end,
  on_error = function(bot, err) say("error", bot, (tostring(err):gsub("%s+", "_"))) end,
}
f:start()
local function report()
  say("count", f:count(), store.stats.writes)
  engine:timer(1, report)
end
report()
f:run()
