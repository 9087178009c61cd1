-- The client inside a host event loop (lua-cqueues): the client is a
-- cqueues pollable (pollfd(), events(), timeout()), stepped with step(0), so
-- the host's other coroutines keep running. The bot joins the meeting,
-- greets the room, answers !who and leaves on !bye.
-- Usage: lua5.4 examples/cqueues_host.lua   (against a ucwa-sim it starts, which plays the others)
--        UCWA_URL=... UCWA_USER=... UCWA_PASSWORD=... UCWA_MEETING=... lua5.4 examples/cqueues_host.lua
local dir = ((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".")
local setup = dofile(dir .. "/setup.lua")
local cqueues = require "cqueues"
local ucwa = require "ucwa"

local env = setup.environment()
local client = ucwa.client(env.options)
local function say(text) setup.say("bot", text) end
local running, done = true, false

dofile(dir .. "/meeting_behaviour.lua")(setup, client, env, say, "cqueues bot", function(ok)
  done, running = ok, false
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
