-- The client inside a host event loop (lua-cqueues): the client is a
-- cqueues pollable (pollfd(), events(), timeout()), stepped with step(0), so
-- the host's other coroutines keep running. The bot joins the meeting,
-- greets the room, answers !who and leaves on !bye.
-- Usage: lua5.4 examples/cqueues_host.lua   (against a ucwa-sim it starts, which plays the others)
--        UCWA_URL=... UCWA_USER=... UCWA_PASSWORD=... UCWA_MEETING=... lua5.4 examples/cqueues_host.lua
local setup = dofile(((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".") .. "/setup.lua")
local cqueues = require "cqueues"
local ucwa = require "ucwa"

local env = setup.environment()
local client = ucwa.client(env.options)
local function say(text) setup.say("bot", text) end
local running, done = true, false

local function on_message(conv, msg)
  say(("heard %s: %s"):format(msg.from or "someone", msg.text or ""))
  if msg.text == "!who" then
    conv:participants(function(list)
      local names = {}
      for _, p in ipairs(list or {}) do names[#names + 1] = p:display() end
      table.sort(names)
      local text = "In the room: " .. table.concat(names, ", ")
      say("says: " .. text)
      conv:send(text)
    end)
  elseif msg.text == "!bye" then
    say("says: Bye!")
    conv:send("Bye!", function() conv:leave() end)
  end
end

client:on("ready", function()
  say("signed in; joining " .. env.meeting)
  local inv = client:join_meeting{ onlineMeetingUri = env.meeting, subject = "cqueues bot" }
  local announced = false
  inv:on("updated", function()
    inv:conversation(function(conv)
      if conv and conv.state == "InLobby" and not announced then
        announced = true
        say("waiting in the lobby")
      end
    end)
  end)
  inv:on("completed", function()
    if inv.status ~= "Success" then
      say("could not join: " .. tostring(inv.reason and inv.reason.subcode))
      running = false
      return
    end
    say("admitted: in the meeting")
    inv:conversation(function(conv)
      conv:on("message", on_message)
      conv:on("deleted", function()
        say("left the meeting")
        done, running = true, false
      end)
      local greeting = "Hello, room! Say !who for the roster or !bye to let me go."
      say("says: " .. greeting)
      conv:send(greeting)
    end)
  end)
end)
client:on("error", function(err) say("error: " .. tostring(err)) end)
setup.play(env, setup.meeting_scene())

local cq = cqueues.new()
local ticks = 0
cq:wrap(function()                      -- the client
  local deadline = env.seconds and cqueues.monotime() + env.seconds
  client:start()
  while running and not (deadline and cqueues.monotime() > deadline) do
    cqueues.poll(client, math.min(client:timeout() or 1, 1))
    client:step(0)
  end
  running = false
end)
cq:wrap(function()                      -- the host's own work, meanwhile
  while running do
    ticks = ticks + 1
    cqueues.sleep(0.01)
  end
end)
local ok, err = cq:loop()
setup.say("host", ("the host loop ran %d ticks of its own meanwhile"):format(ticks))
pcall(client.close, client)
if env.sim then env.sim:stop() end
if not ok then error(err, 0) end
os.exit(done and 0 or 1)
