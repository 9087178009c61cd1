-- Shared by the examples: where the bot signs in, a transcript, and the
-- scenes ucwa-sim plays when an example runs on its own.
--
-- With UCWA_URL set, a real pool (or a simulator someone else runs):
--   UCWA_URL       autodiscover root URL
--   UCWA_USER      sign-in name            UCWA_PASSWORD  its password
--   UCWA_MEETING   meeting URI to join     UCWA_FORMAT    json (default) or xml
--   UCWA_ALLOW     comma-separated allow list (lobby_keeper, auto_accept)
--   UCWA_BOT_SECONDS  stop after this many seconds (default: run until done)
-- Without UCWA_URL, a ucwa-sim is started for the run (and stopped at the
-- end), and the other participants are played through its control API.
-- The checkout is the folder above this file's, wherever the example is run from.
local examples_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local here = examples_dir .. "/.."
package.path = here .. "/lua/?.lua;" .. here .. "/lua/?/init.lua;" .. package.path
local build = os.getenv("UCWA_BUILD") or "build"
if build:sub(1, 1) ~= "/" then build = here .. "/" .. build end
package.cpath = build .. "/?.so;" .. package.cpath

local setup = {}

local DEMO1 = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1"

-- The scene being played (own simulator only): steps run as the bot's
-- transcript lines arrive.
local scene

--- The answer to !who: everyone's name, sorted.
function setup.roster_text(participants)
  local names = {}
  for _, p in ipairs(participants) do names[#names + 1] = p:display() end
  table.sort(names)
  return "In the room: " .. table.concat(names, ", ")
end

--- Prints one transcript line, flushed at once, and lets the scene react.
function setup.say(who, text)
  io.write(("[%s] %s\n"):format(who, text))
  io.flush()
  if scene and who == scene.who then setup.advance(scene, text) end
end

local function sleep(seconds)
  local ok, socket = pcall(require, "socket")
  if ok then socket.sleep(seconds) else os.execute("sleep " .. seconds) end
end

--- Runs the steps of a scene whose trigger matches `line` (a bot line).
-- A step: { on = "lua pattern", until_ = fn(sim) -> bool (polled, 5 s at most),
--           act = fn(sim), done = true (the last one) }.
-- Returns true once the scene's last step has run.
function setup.advance(sc, line)
  while sc.next <= #sc.steps do
    local step = sc.steps[sc.next]
    if step.on and not line:find(step.on) then break end
    sc.next = sc.next + 1
    line = "" -- one line triggers one step (then steps with no `on` follow)
    if step.until_ then
      for _ = 1, 100 do
        if step.until_(sc.sim) then break end
        sleep(0.05)
      end
    end
    if step.act then step.act(sc.sim, sc.say) end
  end
  return sc.next > #sc.steps
end

--- A scene object for `steps`, played against `sim`; lines go to `say(who, text)`.
function setup.new_scene(sim, steps, say, who)
  return { sim = sim, steps = steps, say = say or setup.say, who = who or "bot", next = 1 }
end

--- Plays `steps` in this process while the bot runs (own simulator only).
function setup.play(env, steps, who)
  if not env.sim then return end
  scene = setup.new_scene(env.sim, steps, setup.say, who)
  setup.advance(scene, "")
end

local function post(sim, path, body)
  local status, answer = sim:control("POST", path, body or {})
  if status ~= 200 and status ~= 201 then
    error(("control %s: %s %s"):format(path, tostring(status), type(answer) == "table"
      and tostring(answer.error) or tostring(answer)))
  end
  return answer
end
setup.post = post

--- State of member `key` in meeting `id` ("lobby", "in", or nil).
function setup.member_state(sim, id, key)
  local status, m = sim:control("GET", "/_sim/meetings/" .. id)
  if status ~= 200 then return nil end
  for _, mem in ipairs(m.members or {}) do
    if mem.key == key then return mem.state end
  end
  return nil
end

--- The meeting story: Alice (the organiser) and Carol are in the meeting;
-- Alice admits the bot from the lobby, Carol asks "!who", Alice says "!bye".
function setup.meeting_scene(bot_key)
  bot_key = bot_key or "bot@contoso.com"
  return {
    { on = "joining", act = function(sim, say)
        post(sim, "/_sim/meetings/DEMO1/join", { user = "alice@contoso.com" })
        say("alice", "joins the meeting (organiser)")
        post(sim, "/_sim/meetings/DEMO1/join", { user = "carol@contoso.com", name = "Carol" })
        say("carol", "joins and waits in the lobby")
        post(sim, "/_sim/meetings/DEMO1/admit", { user = "carol@contoso.com" })
        say("alice", "admits Carol")
      end },
    { on = "waiting in the lobby",
      until_ = function(sim) return setup.member_state(sim, "DEMO1", bot_key) == "lobby" end,
      act = function(sim, say)
        say("alice", "admits the bot")
        post(sim, "/_sim/meetings/DEMO1/admit", { user = bot_key })
      end },
    -- after the greeting is delivered, so the transcript has one order
    { on = "greeting delivered", act = function(sim, say)
        say("carol", "!who")
        post(sim, "/_sim/meetings/DEMO1/message", { from = "carol@contoso.com", text = "!who" })
      end },
    { on = "says: In the room", act = function(sim, say)
        say("alice", "!bye")
        post(sim, "/_sim/meetings/DEMO1/message", { from = "alice@contoso.com", text = "!bye" })
      end },
    { on = "left the meeting", until_ = function(sim)
        return setup.member_state(sim, "DEMO1", bot_key) == nil
      end, act = function(_, say) say("sim", "the bot is gone from the meeting") end },
  }
end

--- Starts a ucwa-sim on 127.0.0.1 (UCWA_SIM_MARK, when set, becomes its
-- lobby timeout: the specs find leftover simulators by it).
function setup.start_sim(opts)
  local mark = os.getenv("UCWA_SIM_MARK")
  if mark then opts.lobby_timeout = mark end
  if not os.getenv("UCWA_SIM") then
    -- The checkout's simulator, wherever the example is run from.
    local built = build .. "/ucwa-sim"
    local f = io.open(built, "rb")
    if f then f:close(); opts.binary = built end
  end
  return require("ucwa.sim").start(opts)
end

--- The client options and meeting for this run:
-- `{ options = {...}, meeting = uri, sim = sim|nil, allow = {...}, seconds = n|nil }`.
-- `defaults`: username, meeting, allow (a list), seconds (own simulator).
function setup.environment(defaults)
  defaults = defaults or {}
  local url = os.getenv("UCWA_URL")
  local env = { options = { format = os.getenv("UCWA_FORMAT") or "json" } }
  local allow = os.getenv("UCWA_ALLOW")
  if url then
    env.options.url = url
    env.options.username = os.getenv("UCWA_USER") or defaults.username
    env.options.password = os.getenv("UCWA_PASSWORD") or "password"
    env.meeting = os.getenv("UCWA_MEETING") or defaults.meeting or DEMO1
  else
    env.sim = setup.start_sim{ step_delay = 0.02, min_timeout = 0.1 }
    env.options.url = env.sim.url
    env.options.username = defaults.username or "bot@contoso.com"
    env.options.password = "password"
    env.meeting = defaults.meeting or DEMO1
    env.seconds = defaults.seconds or 20
  end
  env.seconds = tonumber(os.getenv("UCWA_BOT_SECONDS")) or env.seconds
  env.allow = {}
  if allow then
    for item in allow:gmatch("[^,%s]+") do env.allow[#env.allow + 1] = item end
  else
    env.allow = defaults.allow or {}
  end
  return env
end

--- True when `p` (a participant, or a SIP URI / name) is on the allow list.
function setup.allowed(env, who)
  local uri = type(who) == "table" and who.uri or who
  local name = type(who) == "table" and who.name or who
  uri = tostring(uri or ""):gsub("^sip:", ""):lower()
  for _, a in ipairs(env.allow) do
    a = a:gsub("^sip:", ""):lower()
    if a == uri or a == tostring(name):lower() then return true end
  end
  return false
end

--- Runs the client until it stops (or env.seconds pass), then signs out and
-- stops the simulator, whatever happened. Returns true if the bot stopped
-- by itself.
function setup.run(client, env)
  local timed_out = false
  local ok, err = pcall(function()
    client:start()
    if env.seconds then
      client:after(env.seconds, function()
        timed_out = true
        setup.say("setup", "stopping after " .. env.seconds .. " s")
        client:stop()
      end)
    end
    client:run()
  end)
  pcall(client.close, client)
  if env.sim then env.sim:stop() end
  if not ok then error(err, 0) end
  return not timed_out
end

return setup
