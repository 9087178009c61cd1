-- IM bot: answers instant messages ("hello"; "who is Alice?" searches the
-- directory and tells her presence), shows Available (Online) while it runs
-- and Busy while it is in a meeting it was invited to.
-- Usage: lua5.4 examples/im_bot.lua   (against a ucwa-sim it starts, which plays Alice)
--        UCWA_URL=... UCWA_USER=... UCWA_PASSWORD=... lua5.4 examples/im_bot.lua
local setup = dofile(((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".") .. "/setup.lua")
local ucwa = require "ucwa"

local env = setup.environment{}
local client = ucwa.client(env.options)
local function say(text) setup.say("bot", text) end

local function show(availability)
  client:set_presence(availability, function(ok, err)
    say(ok and ("presence: " .. availability) or ("presence failed: " .. tostring(err)))
  end)
end

-- The answer to one message (runs in a coroutine: search and presence wait).
local function answer(text, from)
  if text:lower():match("^%s*hello") then
    return "Hello, " .. (from or "there") .. "!"
  end
  local name = text:match("^%s*[Ww]ho is (.-)%??%s*$")
  if not name then return "Ask me \"who is <name>?\"" end
  local found, err = client:search(name, { limit = 1 })
  if not found then return "Search failed: " .. tostring(err) end
  local contact = found[1]
  if not contact then return "Nobody called " .. name end
  local presence = contact:presence() or {}
  return ("%s (%s) is %s"):format(contact:display(), tostring(contact.department or "?"),
                                  tostring(presence.availability or "unknown"))
end

local function serve(conv)
  conv:on("message", function(c, msg)
    say(("heard %s: %s"):format(tostring(msg.from), tostring(msg.text)))
    client:spawn(function()
      local reply = answer(msg.text or "", msg.from)
      say("says: " .. reply)
      c:send(reply)
    end)
  end)
end

client:on("invitation", function(inv)
  inv:on("completed", function(i)
    if i.status ~= "Success" then return say(i.rel .. " failed: " .. tostring(i.reason)) end
    i:conversation(function(conv)
      if not conv then return end
      if i.rel == "messagingInvitation" then
        serve(conv)
        local first = i.message
        if first then
          say("first message: " .. first)
          local from = i.links.from and i.links.from.title
          client:spawn(function() local reply = answer(first, from); say("says: " .. reply); conv:send(reply) end)
        end
      else
        say("in the meeting " .. tostring(conv.subject))
        show("Busy")
        conv:on("deleted", function() say("the meeting is over"); show("Online") end)
      end
    end)
  end)
  say("accepting: " .. inv.rel)
  inv:accept()
end)
client:on("ready", function() say("signed in"); show("Online") end)
client:on("error", function(err) say("error: " .. tostring(err)) end)

-- With its own simulator: Alice IMs the bot, asks about Bob (who is Away),
-- invites it to a meeting, which then ends.
local function presence_of(sim, user)
  local _, p = sim:control("GET", "/_sim/users/" .. user .. "/presence")
  return p and p.availability
end
local function alice_says(sim, tell, text)
  tell("alice", text)
  setup.post(sim, "/_sim/users/alice@contoso.com/message", { to = "bot@contoso.com", text = text })
end

setup.play(env, {
  { on = "^presence: Online", act = function(sim, tell)
      setup.post(sim, "/_sim/users/bob@contoso.com/presence", { availability = "Away" })
      alice_says(sim, tell, "hello")
    end },
  { on = "^says: Hello", act = function(sim, tell) alice_says(sim, tell, "who is Bob?") end },
  { on = "^says: .* is ", act = function(sim, tell)
      tell("alice", "invites the bot to DEMO1")
      setup.post(sim, "/_sim/meetings/DEMO1/invite", { to = "bot@contoso.com", from = "alice@contoso.com" })
    end },
  { on = "^presence: Busy", act = function(sim, tell)
      tell("sim", "the bot shows " .. tostring(presence_of(sim, "bot@contoso.com")))
      tell("alice", "ends the meeting")
      setup.post(sim, "/_sim/meetings/DEMO1/end")
    end },
  { on = "^presence: Online", act = function(sim, tell)
      tell("sim", "the bot shows " .. tostring(presence_of(sim, "bot@contoso.com")))
      client:stop()
    end },
})

setup.run(client, env)
