-- A meeting bot: joins the meeting, waits in the lobby, greets the room when
-- admitted, answers !who with the roster and !bye by leaving.
-- Usage: lua5.4 examples/meeting_bot.lua   (against a ucwa-sim it starts, which plays the others)
--        UCWA_URL=... UCWA_USER=... UCWA_PASSWORD=... UCWA_MEETING=... lua5.4 examples/meeting_bot.lua
local setup = dofile(((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".") .. "/setup.lua")
local ucwa = require "ucwa"

local env = setup.environment()
local client = ucwa.client(env.options)
local function say(text) setup.say("bot", text) end
local done = false

local function on_message(conv, msg)
  say(("heard %s: %s"):format(msg.from or "someone", msg.text or ""))
  if msg.text == "!who" then
    conv:participants(function(list, err)
      if not list then return say("roster failed: " .. tostring(err)) end
      local names = {}
      for _, p in ipairs(list) do names[#names + 1] = p:display() end
      table.sort(names)
      local text = "In the room: " .. table.concat(names, ", ")
      say("says: " .. text)
      conv:send(text)
    end)
  elseif msg.text == "!bye" then
    say("says: Bye!")
    conv:send("Bye!", function()
      conv:leave(function(_, err)
        if err then say("leaving failed: " .. tostring(err)) end
      end)
    end)
  end
end

local function in_meeting(conv)
  conv:on("message", on_message)
  conv:on("participant_added", function(_, p, where)
    if not p:is_local() then say(("sees %s in %s"):format(p:display(), where or "the meeting")) end
  end)
  conv:on("participant_removed", function(_, p, where)
    if not p:is_local() then say(("sees %s leave %s"):format(p:display(), where or "the meeting")) end
  end)
  conv:on("deleted", function()
    say("left the meeting")
    done = true
    client:stop()
  end)
  local greeting = "Hello, room! Say !who for the roster or !bye to let me go."
  say("says: " .. greeting)
  conv:send(greeting, function(msg, err)
    if not msg then return say("could not greet: " .. tostring(err)) end
    msg:on("completed", function(m) say("greeting delivered: " .. tostring(m.status)) end)
  end)
end

client:on("ready", function()
  say("signed in; joining " .. env.meeting)
  local inv = client:join_meeting{ onlineMeetingUri = env.meeting, subject = "Meeting bot" }
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
      say("could not join: " .. tostring(inv.reason and (inv.reason.subcode or inv.reason.code)))
      return client:stop()
    end
    say("admitted: in the meeting")
    inv:conversation(function(conv, err)
      if not conv then
        say("no conversation: " .. tostring(err))
        return client:stop()
      end
      in_meeting(conv)
    end)
  end)
end)
client:on("error", function(err) say("error: " .. tostring(err)) end)

setup.play(env, setup.meeting_scene())
setup.run(client, env)
os.exit(done and 0 or 1)
