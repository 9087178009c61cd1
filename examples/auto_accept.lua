-- Auto-accept: a bot that is available for invitations, accepts meeting
-- invitations from people on its allow list (and says hello in the meeting),
-- and declines every other invitation with a reason.
-- Usage: lua5.4 examples/auto_accept.lua   (against a ucwa-sim it starts, which sends invitations)
--        UCWA_URL=... UCWA_USER=... UCWA_PASSWORD=... UCWA_ALLOW=alice@contoso.com lua5.4 examples/auto_accept.lua
local setup = dofile(((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".") .. "/setup.lua")
local ucwa = require "ucwa"
local conversation = require "ucwa.conversation"

local env = setup.environment{ allow = { "alice@contoso.com" } }
local client = ucwa.client(env.options)   -- available = true (the default): makeMeAvailable
local function say(text) setup.say("bot", text) end

local function inviter(inv)
  local from = inv.links.from
  local emb = inv.embedded.from
  return (emb and emb.properties and emb.properties.uri) or (from and from.title) or "someone",
         (from and from.title) or "someone"
end

client:on("invitation", function(inv)
  local uri, name = inviter(inv)
  local note = inv:link("message")
  note = note and conversation.decode_data_url(note)
  say(("%s from %s%s"):format(inv.rel, name, note and (': "' .. note .. '"') or ""))
  if inv.rel == "onlineMeetingInvitation" and setup.allowed(env, uri) then
    inv:on("completed", function()
      if inv.status ~= "Success" then return say("joining failed: " .. tostring(inv.reason)) end
      inv:conversation(function(conv)
        if not conv then return end
        say("in " .. tostring(conv.subject) .. "; saying hello")
        conv:send("Hello! I joined because " .. name .. " asked me to.")
      end)
    end)
    inv:accept(function(ok, err) say(ok and "accepted" or ("accept failed: " .. tostring(err))) end)
  else
    local why = inv.rel ~= "onlineMeetingInvitation" and "not a meeting" or (name .. " is not on my allow list")
    inv:decline("Local", function(ok, err)
      say(ok and ("declined (" .. why .. ")") or ("decline failed: " .. tostring(err)))
    end)
  end
end)
client:on("ready", function() say("available; waiting for invitations") end)
client:on("error", function(err) say("error: " .. tostring(err)) end)

-- With its own simulator: Alice invites the bot to her meeting, then Bob to his.
setup.play(env, {
  { on = "^available", act = function(sim, tell)
      tell("alice", "invites the bot to DEMO1")
      setup.post(sim, "/_sim/meetings/DEMO1/invite", { to = "bot@contoso.com", from = "alice@contoso.com",
                                                       message = "Join us for the demo?" })
    end },
  { on = "saying hello", act = function(sim, tell)
      setup.post(sim, "/_sim/meetings", { id = "BOBS", organizer = "bob@contoso.com", subject = "Bob's" })
      tell("bob", "invites the bot to BOBS")
      setup.post(sim, "/_sim/meetings/BOBS/invite", { to = "bot@contoso.com", from = "bob@contoso.com" })
    end },
  { on = "^declined", act = function(sim, tell)
      for n = 1, 2 do
        local _, rec = sim:control("GET", "/_sim/invitations/" .. n)
        tell("sim", ("invitation %d from %s: %s%s"):format(n, tostring(rec.from), tostring(rec.state),
          rec.reason ~= nil and rec.reason ~= require("cjson").null and (" (" .. tostring(rec.reason) .. ")") or ""))
      end
      client:stop()
    end },
})

setup.run(client, env)
