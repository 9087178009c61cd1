-- The meeting bot's story written top to bottom: in a coroutine started with
-- client:spawn, network methods called without a callback wait for their
-- answer, inv:wait() waits for the join, conv:receive() for the next message.
-- Usage: lua5.4 examples/coroutine_bot.lua   (against a ucwa-sim it starts, which plays the others)
--        UCWA_URL=... UCWA_USER=... UCWA_PASSWORD=... UCWA_MEETING=... lua5.4 examples/coroutine_bot.lua
local setup = dofile(((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".") .. "/setup.lua")
local ucwa = require "ucwa"

local env = setup.environment()
local client = ucwa.client(env.options)
local function say(text) setup.say("bot", text) end
local done = false

local function story()
  say("signed in; joining " .. env.meeting)
  local inv = client:join_meeting{ onlineMeetingUri = env.meeting, subject = "Coroutine bot" }
  inv:on("updated", function()                -- a callback may still say what happens meanwhile
    inv:conversation(function(c)
      if c and c.state == "InLobby" then say("waiting in the lobby") end
    end)
  end)
  local status, reason = inv:wait()
  if status ~= "Success" then
    return say("could not join: " .. tostring(reason and (reason.subcode or reason.code)))
  end
  say("admitted: in the meeting")
  local conv = assert(inv:conversation())
  local greeting = "Hello, room! Say !who for the roster or !bye to let me go."
  say("says: " .. greeting)
  local msg = conv:send(greeting)
  say("greeting delivered: " .. tostring(msg and msg:wait()))
  while true do
    local m = conv:receive()
    if not m then return say("the meeting ended") end
    say(("heard %s: %s"):format(m.from or "someone", m.text or ""))
    if m.text == "!who" then
      local list, err = conv:participants()
      if not list then return say("roster failed: " .. tostring(err)) end
      local text = setup.roster_text(list)
      say("says: " .. text)
      conv:send(text)
    elseif m.text == "!bye" then
      say("says: Bye!")
      conv:send("Bye!")
      local ok, err = conv:leave()
      say(ok and "left the meeting" or ("leaving failed: " .. tostring(err)))
      done = ok == true
      return
    end
  end
end

client:on("ready", function()
  client:spawn(function()
    story()
    client:stop()
  end)
end)
client:on("error", function(err) say("error: " .. tostring(err)) end)

setup.play(env, setup.meeting_scene())
setup.run(client, env)
os.exit(done and 0 or 1)
