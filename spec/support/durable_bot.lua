-- A bot process for spec/61-client_restart_spec.lua: signs in with an SQLite
-- store, joins meeting 1, then starts joining meeting 2 (in flight while the
-- spec kills it), and logs every synthetic event with its ev.id. Started
-- again on the same store, it carries on the session.
--   lua5.4 spec/support/durable_bot.lua BUILD SIM_URL DB FORMAT LOG [MEETING1 MEETING2]
-- With UCWA_BOT_GUEST=1 it is a guest of MEETING1 (UCWA_BOT_MEETING when
-- started again without arguments) and joins only that meeting;
-- UCWA_BOT_STORE_TOKENS=1 stores its tokens.
-- Log lines end with " ." so that a line cut by SIGKILL is not read as whole.
local build, url, db, format, log_path, m1, m2 = table.unpack(arg)
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local ucwa = require "ucwa"
require("ucwa.options").EVENT_TIMEOUT.min = 1 -- ucwa-sim's short P-GETs

local say = require("support.line_log").writer(log_path)

local store = assert(ucwa.store.sqlite(db))
-- UCWA_BOT_GUEST=1: a guest (anonymous) bot of meeting 1, no account
local guest = os.getenv("UCWA_BOT_GUEST") == "1"
local c = ucwa.client{ url = url, username = not guest and "bot@contoso.com" or nil,
                       password = not guest and "password" or nil,
                       anonymous = guest and { meeting = m1 or os.getenv("UCWA_BOT_MEETING"), display_name = "Guest" }
                         or nil,
                       format = format, store = store, event_timeout = 2,
                       store_tokens = os.getenv("UCWA_BOT_STORE_TOKENS") == "1" or nil }

-- UCWA_BOT_SLOW: seconds of work per event, so that a kill lands in a batch
local slow = tonumber(os.getenv("UCWA_BOT_SLOW") or "") or 0
c:on("event", function(ev)
  if ev.link and ev.link.rel == "note" then
    if slow > 0 then
      local t = os.clock() + slow
      repeat until os.clock() >= t
    end
    say("E", ev.id, ev.link.title)
  end
end)

local function watch(inv, name)
  inv:on("completed", function(i) say("completed", name, i.status) end)
end

c:on("ready", function()
  say("ready", c.application.href)
  if not m1 then return end
  local inv1 = c:join_meeting{ onlineMeetingUri = m1, operationId = "join-m1" }
  watch(inv1, "m1")
  inv1:on("completed", function(i)
    if i.status ~= "Success" or not m2 then return end
    local inv2 = c:join_meeting{ onlineMeetingUri = m2, operationId = "join-m2" }
    watch(inv2, "m2")
    say("inflight m2")
  end)
end)

c:on("restored", function(info)
  local ops = {}
  for _, op in ipairs(info.operations) do
    local id = op.properties.operationId or "?"
    ops[#ops + 1] = id
    watch(op, id == "join-m2" and "m2" or id)
  end
  table.sort(ops)
  say("restored", c.application.href, #info.conversations, table.concat(ops, ","), info.replayed)
end)

-- an invitation to the bot: noted, answered only by the next process
-- (UCWA_BOT_ACCEPT=1 there: it accepts the restored one)
c:on("invitation", function(inv) say("invited", inv.rel, inv.message) end)
c:on("restored", function(info)
  if os.getenv("UCWA_BOT_ACCEPT") ~= "1" then return end
  for _, op in ipairs(info.operations) do
    if op.rel == "messagingInvitation" then
      say("accepting", op.rel, op.message)
      op:on("completed", function(i) say("completed", "incoming", i.status) end)
      op:accept()
    end
  end
end)

c:on("resumed", function(i) say("resumed", i.reason, i.restart) end)
c:on("error", function(e) say("error", e) end)

c:start()
c:run()
