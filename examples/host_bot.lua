-- A host bot: schedules a meeting of its own (myOnlineMeetings), prints the
-- join link, joins it, admits people on an allow list from the lobby (the
-- meeting is Locked: everyone else waits there), changes the subject when
-- someone says "!subject <new subject>", and deletes the meeting at the end.
-- Usage: lua5.4 examples/host_bot.lua   (against a ucwa-sim it starts, which sends visitors)
--        UCWA_URL=... UCWA_USER=organiser@... UCWA_PASSWORD=...
--        UCWA_ALLOW=carol@contoso.com lua5.4 examples/host_bot.lua
local setup = dofile(((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".") .. "/setup.lua")
local ucwa = require "ucwa"

local env = setup.environment{ username = "alice@contoso.com", allow = { "carol@contoso.com" } }
local client = ucwa.client(env.options)
local function say(text) setup.say("host", text) end
local meeting -- the scheduled meeting (ucwa.meetings)
local finished = false

-- Deletes the meeting, then stops.
local function tidy_up()
  meeting:delete(function(ok, err)
    say(ok and "deleted the meeting" or ("delete failed: " .. tostring(err)))
    finished = ok == true
    client:stop()
  end)
end

local function decide(p)
  local name = p:display()
  if setup.allowed(env, p) then
    p:admit(function(ok, err) say(ok and ("admitted " .. name) or ("admit failed: " .. tostring(err))) end)
  else
    p:reject(function(ok, err)
      say(ok and ("rejected " .. name .. " (not on the allow list)") or ("reject failed: " .. tostring(err)))
    end)
  end
end

local function on_message(_, msg)
  local subject = (msg.text or ""):match("^!subject%s+(.+)$")
  if not subject then return end
  say(("%s asks for the subject %q"):format(msg.from or "someone", subject))
  meeting:update({ subject = subject }, function(m, err)
    -- a 412 means someone else changed it meanwhile: read again, nothing overwritten
    say(m and ("the subject is now " .. m.subject) or ("update failed: " .. tostring(err)))
  end)
end

client:on("ready", function()
  client:schedule_meeting({ subject = "Team sync", accessLevel = "Locked",
                            attendees = { "sip:carol@contoso.com" } }, function(m, err)
    if not m then say("could not schedule: " .. tostring(err)); return client:stop() end
    meeting = m
    say("scheduled " .. m.subject .. " (" .. m.onlineMeetingId .. "); join link: " .. m.joinUrl)
    local inv = m:join()
    inv:on("completed", function()
      if inv.status ~= "Success" then
        say("could not join: " .. tostring(inv.reason and inv.reason.subcode))
        return tidy_up()
      end
      inv:conversation(function(conv, cerr)
        if not conv then say("no conversation: " .. tostring(cerr)); return tidy_up() end
        conv:on("lobby", function(_, p)
          say(p:display() .. " is waiting in the lobby")
          decide(p)
        end)
        conv:on("message", on_message)
        conv:send("Welcome to " .. m.subject, function(_, serr)
          say(serr and ("cannot chat: " .. tostring(serr)) or "in the meeting, chatting")
        end)
      end)
    end)
  end)
end)
client:on("error", function(err) say("error: " .. tostring(err)) end)

-- With its own simulator: Carol (allowed) and Mallory (not) come to the lobby,
-- then Carol asks for another subject.
local function id() return meeting.onlineMeetingId end
setup.play(env, {
  { on = "^in the meeting", act = function(sim, tell)
      tell("carol", "asks to join")
      setup.post(sim, "/_sim/meetings/" .. id() .. "/join", { user = "carol@contoso.com", name = "Carol" })
      tell("mallory", "asks to join")
      setup.post(sim, "/_sim/meetings/" .. id() .. "/join", { user = "mallory@contoso.com", name = "Mallory" })
    end },
  { on = "^admitted Carol", until_ = function(sim)
      return setup.member_state(sim, id(), "carol@contoso.com") == "in"
    end, act = function(sim, tell)
      tell("carol", "!subject Quarterly review")
      setup.post(sim, "/_sim/meetings/" .. id() .. "/message",
        { from = "carol@contoso.com", text = "!subject Quarterly review" })
    end },
  { on = "^the subject is now", act = function(sim, tell)
      local st = sim:state()
      for _, x in ipairs(st.scheduled_meetings) do
        if x.id == id() then tell("sim", "the meeting's subject: " .. x.subject) end
      end
      tidy_up()
    end },
}, "host")

setup.run(client, env)
os.exit(finished and 0 or 1)
