-- A lobby keeper: an organiser (or leader) bot that joins its meeting and
-- admits people on an allow list from the lobby, rejecting everyone else.
-- Usage: lua5.4 examples/lobby_keeper.lua   (against a ucwa-sim it starts, which sends visitors)
--        UCWA_URL=... UCWA_USER=organiser@... UCWA_PASSWORD=... UCWA_MEETING=...
--        UCWA_ALLOW=carol@contoso.com,dave@contoso.com lua5.4 examples/lobby_keeper.lua
local setup = dofile(((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".") .. "/setup.lua")
local ucwa = require "ucwa"

local env = setup.environment{ username = "alice@contoso.com", allow = { "carol@contoso.com" } }
local client = ucwa.client(env.options)
local function say(text) setup.say("keeper", text) end

local decided = 0
local function count()
  decided = decided + 1
  say(("%d decided so far"):format(decided))
end

-- Decides for one participant waiting in the lobby.
local function decide(p)
  local name = p:display()
  if not p:can("admit") then return say("cannot admit " .. name .. " (not a leader here?)") end
  if setup.allowed(env, p) then
    p:admit(function(ok, err)
      say(ok and ("admitted " .. name) or ("admit failed: " .. tostring(err)))
      count()
    end)
  else
    p:reject(function(ok, err)
      say(ok and ("rejected " .. name .. " (not on the allow list)") or ("reject failed: " .. tostring(err)))
      count()
    end)
  end
end

client:on("ready", function()
  say("signed in as " .. env.options.username .. "; allow list: " .. table.concat(env.allow, ", "))
  local inv = client:join_meeting{ onlineMeetingUri = env.meeting, subject = "Lobby keeper" }
  inv:on("completed", function()
    if inv.status ~= "Success" then
      say("could not join: " .. tostring(inv.reason and inv.reason.subcode))
      return client:stop()
    end
    inv:conversation(function(conv, err)
      if not conv then say("no conversation: " .. tostring(err)); return client:stop() end
      conv:on("lobby", function(_, p)
        say(p:display() .. " is waiting in the lobby")
        decide(p)
      end)
      conv:on("deleted", function() say("the meeting is over for me"); client:stop() end)
      -- Those who were already waiting.
      conv:lobby(function(list)
        say(("in the meeting; %d waiting in the lobby"):format(list and #list or 0))
        for _, p in ipairs(list or {}) do decide(p) end
      end)
    end)
  end)
end)
client:on("error", function(err) say("error: " .. tostring(err)) end)

-- With its own simulator: Carol (allowed) and Mallory (not) come to the lobby.
setup.play(env, {
  { on = "^in the meeting", act = function(sim, tell)
      tell("carol", "asks to join")
      setup.post(sim, "/_sim/meetings/DEMO1/join", { user = "carol@contoso.com", name = "Carol" })
      tell("mallory", "asks to join")
      setup.post(sim, "/_sim/meetings/DEMO1/join", { user = "mallory@contoso.com", name = "Mallory" })
    end },
  { on = "^2 decided", until_ = function(sim)
      return setup.member_state(sim, "DEMO1", "carol@contoso.com") ~= "lobby"
        and setup.member_state(sim, "DEMO1", "mallory@contoso.com") ~= "lobby"
    end, act = function(sim, tell)
      tell("sim", ("carol is %s, mallory is %s"):format(
        tostring(setup.member_state(sim, "DEMO1", "carol@contoso.com") or "gone"),
        tostring(setup.member_state(sim, "DEMO1", "mallory@contoso.com") or "gone")))
      client:stop()
    end },
}, "keeper")

setup.run(client, env)
