-- The meeting bot's behaviour, shared by meeting_bot.lua (run by the client's
-- own loop) and cqueues_host.lua (inside a host loop): join the meeting, wait
-- in the lobby, greet the room when admitted, answer !who with the roster and
-- !bye by leaving. finish(ok) is called when the story is over.
return function(setup, client, env, say, subject, finish)
  local function on_message(conv, msg)
    say(("heard %s: %s"):format(msg.from or "someone", msg.text or ""))
    if msg.text == "!who" then
      conv:participants(function(list, err)
        if not list then return say("roster failed: " .. tostring(err)) end
        local text = setup.roster_text(list)
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
      finish(true)
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
    local inv = client:join_meeting{ onlineMeetingUri = env.meeting, subject = subject }
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
        return finish(false)
      end
      say("admitted: in the meeting")
      inv:conversation(function(conv, err)
        if not conv then
          say("no conversation: " .. tostring(err))
          return finish(false)
        end
        in_meeting(conv)
      end)
    end)
  end)
end
