-- `make demo`: starts ucwa-sim, runs examples/meeting_bot.lua against it as
-- a separate process (UCWA_URL pointing at the simulator, as for a real
-- pool), and plays the other people in the meeting through the simulator's
-- control API: Alice admits the bot from the lobby, Carol says "!who", Alice
-- says "!bye". Prints the transcript; exits 0 only if the whole story
-- happened, and leaves nothing running.
-- Usage: lua5.4 examples/demo.lua   (UCWA_FORMAT=xml for the XML representation)
local dir = ((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".")
local setup = dofile(dir .. "/setup.lua")

local LIMIT = tonumber(os.getenv("UCWA_DEMO_SECONDS")) or 15
local format = os.getenv("UCWA_FORMAT") or "json"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local socket = require "socket"
local t0 = socket.gettime()
local sim = setup.start_sim{ step_delay = 0.05, min_timeout = 0.1 }
setup.say("demo", "ucwa-sim at " .. sim.url .. " (" .. format .. ")")

-- The bot: its own process; `timeout` makes sure it cannot outlive the demo.
local lua = os.getenv("LUA") or "lua5.4"
local cmd = table.concat({
  "exec timeout -k 1", tostring(LIMIT - 1), quote(lua), quote(dir .. "/meeting_bot.lua"), "2>&1",
}, " ")
local envs = {
  UCWA_URL = sim.url, UCWA_USER = "bot@contoso.com", UCWA_PASSWORD = "password",
  UCWA_MEETING = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1",
  UCWA_FORMAT = format, UCWA_BOT_SECONDS = tostring(LIMIT - 2),
}
local prefix = {}
for k, v in pairs(envs) do prefix[#prefix + 1] = k .. "=" .. quote(v) end
table.sort(prefix)
local bot = assert(io.popen("env " .. table.concat(prefix, " ") .. " sh -c " .. quote(cmd), "r"))

local scene = setup.new_scene(sim, setup.meeting_scene(), setup.say, "bot")
local seen, finished = {}, false
local ok, err = pcall(function()
  for line in bot:lines() do
    io.write(line, "\n")
    io.flush()
    seen[#seen + 1] = line
    local who, text = line:match("^%[(%w+)%] (.*)$")
    if who == "bot" and setup.advance(scene, text) then finished = true end
    if socket.gettime() - t0 > LIMIT then break end
  end
end)
local closed_ok, how, code = bot:close()
local sim_ok = sim:stop()

-- The story, as the transcript must tell it.
local story = {
  "%[bot%] waiting in the lobby",
  "%[bot%] admitted: in the meeting",
  "%[bot%] says: Hello, room!",
  "%[bot%] heard Carol: !who",
  "%[bot%] says: In the room: Alice Adams, Carol, Meeting Bot",
  "%[bot%] heard Alice Adams: !bye",
  "%[bot%] left the meeting",
}
local missing, at = {}, 1
for _, pattern in ipairs(story) do
  local found = false
  for i = at, #seen do
    if seen[i]:find(pattern) then found, at = true, i + 1; break end
  end
  if not found then missing[#missing + 1] = pattern:gsub("%%", "") end
end

local good = ok and finished and closed_ok and sim_ok and #missing == 0
if good then
  setup.say("demo", ("the story happened: the bot was admitted, answered !who and left (%.1f s)")
    :format(socket.gettime() - t0))
  os.exit(0)
end
if not ok then setup.say("demo", "error: " .. tostring(err)) end
if not closed_ok then setup.say("demo", ("the bot exited with %s %s"):format(tostring(how), tostring(code))) end
for _, m in ipairs(missing) do setup.say("demo", "missing from the transcript: " .. m) end
setup.say("demo", "FAILED")
os.exit(1)
