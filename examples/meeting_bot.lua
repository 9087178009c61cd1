-- A meeting bot: joins the meeting, waits in the lobby, greets the room when
-- admitted, answers !who with the roster and !bye by leaving.
-- Usage: lua5.4 examples/meeting_bot.lua   (against a ucwa-sim it starts, which plays the others)
--        UCWA_URL=... UCWA_USER=... UCWA_PASSWORD=... UCWA_MEETING=... lua5.4 examples/meeting_bot.lua
local dir = ((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".")
local setup = dofile(dir .. "/setup.lua")
local ucwa = require "ucwa"

local env = setup.environment()
local client = ucwa.client(env.options)
local function say(text) setup.say("bot", text) end
local done = false

dofile(dir .. "/meeting_behaviour.lua")(setup, client, env, say, "Meeting bot", function(ok)
  done = ok
  client:stop()
end)
client:on("error", function(err) say("error: " .. tostring(err)) end)

setup.play(env, setup.meeting_scene())
setup.run(client, env)
os.exit(done and 0 or 1)
