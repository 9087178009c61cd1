-- The examples, each run on its own (it starts a ucwa-sim that plays the
-- other people), and the `make demo` driver: their transcripts tell the
-- story, they exit 0, and they leave no process behind. JSON and XML.
local helpers = require "helpers"

local MARK = ("900.%d"):format(math.random(1000, 9999))
local LIMIT = 40 * (helpers.sanitized and 3 or 1)

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs an example (from the checkout, or from `cwd` with `path` to it);
-- returns its output lines and exit status.
local function run(script, format, extra_env, cwd, path)
  local build = helpers.build:sub(1, 1) == "/" and helpers.build or (os.getenv("PWD") .. "/" .. helpers.build)
  local envs = { "UCWA_SIM_MARK=" .. MARK, "UCWA_FORMAT=" .. format, "UCWA_BUILD=" .. quote(build),
                 "LUA=" .. quote(helpers.lua) }
  for k, v in pairs(extra_env or {}) do envs[#envs + 1] = k .. "=" .. quote(v) end
  local cmd = ("cd %s && env -u UCWA_URL -u LUA_PATH -u LUA_CPATH %s timeout -k 2 %d %s %s 2>&1"):format(
    quote(cwd or "."), table.concat(envs, " "), LIMIT, quote(helpers.lua), quote(path or ("examples/" .. script)))
  local pipe = assert(io.popen(cmd, "r"))
  local lines = {}
  for line in pipe:lines() do lines[#lines + 1] = line end
  local ok, how, code = pipe:close()
  return lines, ok, how, code
end

-- Asserts that `patterns` (plain strings) appear in `lines` in this order.
local function assert_story(lines, patterns, what)
  local at = 1
  for _, p in ipairs(patterns) do
    local found
    for i = at, #lines do
      if lines[i]:find(p, 1, true) then found = i; break end
    end
    assert(found, what .. ": missing or out of order: " .. p .. "\n" .. table.concat(lines, "\n"))
    at = found + 1
  end
end

local function count(lines, p)
  local n = 0
  for _, l in ipairs(lines) do if l:find(p, 1, true) then n = n + 1 end end
  return n
end

-- This run's processes only: a simulator started with this run's mark, a
-- meeting bot whose environment carries it (other checkouts may be running
-- the same examples at the same time).
local function ours(pid)
  local f = io.open("/proc/" .. pid .. "/environ", "rb")
  local env = f and f:read("a") or ""
  if f then f:close() end
  return env:find("UCWA_SIM_MARK=" .. MARK .. "\0", 1, true) ~= nil
end

local function leftovers()
  -- (pgrep without the sanitizer preload of `make check`: it hangs under LSan)
  local p = io.popen("env -u LD_PRELOAD pgrep -f " .. quote("lobby-timeout " .. MARK:gsub("%.", "[.]")))
  local out = p:read("a")
  p:close()
  p = io.popen("env -u LD_PRELOAD pgrep -f " .. quote("examples/meeting_bot[.]lua"))
  for pid in p:read("a"):gmatch("%d+") do
    if ours(pid) then out = out .. pid .. "\n" end
  end
  p:close()
  return out
end

local MEETING_STORY = {
  "[bot] signed in; joining sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1",
  "[alice] joins the meeting (organiser)",
  "[bot] waiting in the lobby",
  "[alice] admits the bot",
  "[bot] admitted: in the meeting",
  "[bot] says: Hello, room!",
  "[carol] !who",
  "[bot] heard Carol: !who",
  "[bot] says: In the room: Alice Adams, Carol, Meeting Bot",
  "[alice] !bye",
  "[bot] heard Alice Adams: !bye",
  "[bot] says: Bye!",
  "[bot] left the meeting",
  "[sim] the bot is gone from the meeting",
}

describe("examples", function()
  after_each(function()
    assert.equal("", leftovers(), "processes left behind")
  end)

  for _, format in ipairs{ "json", "xml" } do
    describe("in " .. format, function()
      it("demo.lua (make demo) plays the whole story", function()
        local lines, ok, how, code = run("demo.lua", format)
        assert.is_true(ok, ("demo exit %s %s:\n%s"):format(how, code, table.concat(lines, "\n")))
        assert.matches("^%[demo%] ucwa%-sim at http://127%.0%.0%.1:%d+/", lines[1])
        assert.matches("(" .. format .. ")", lines[1], 1, true)
        assert_story(lines, MEETING_STORY, "demo")
        assert_story(lines, { "[demo] the story happened" }, "demo")
        assert.equal(1, count(lines, "[bot] left the meeting"))
        assert.equal(0, count(lines, "error"))
      end)

      -- The meeting story, told by three hosts of the same bot.
      for _, case in ipairs{
        { "meeting_bot.lua", "runs against its own simulator", "greeting delivered: Success" },
        { "coroutine_bot.lua", "tells the same story top to bottom", "greeting delivered: Success" },
        { "cqueues_host.lua", "runs the bot inside a cqueues loop", "[host] the host loop ran" },
      } do
        local script, what, marker = case[1], case[2], case[3]
        it(script .. " " .. what, function()
          local lines, ok = run(script, format)
          assert.is_true(ok, table.concat(lines, "\n"))
          assert_story(lines, MEETING_STORY, script)
          assert.equal(1, count(lines, marker))
          assert.equal(0, count(lines, "error"))
        end)
      end

      -- regression: run from inside examples/ (or anywhere) they could not find the module
      it("meeting_bot.lua runs from inside examples/ and from another directory", function()
        for _, where in ipairs{ { "examples", "meeting_bot.lua" },
                                { "/tmp", os.getenv("PWD") .. "/examples/meeting_bot.lua" } } do
          local lines, ok = run("meeting_bot.lua", format, { UCWA_BOT_SECONDS = "20" }, where[1], where[2])
          assert_story(lines, { "[bot] signed in", "[bot] admitted: in the meeting" }, "from " .. where[1])
          assert.is_true(ok, table.concat(lines, "\n"))
        end
      end)

      it("lobby_keeper.lua admits the allowed and rejects the rest", function()
        local lines, ok = run("lobby_keeper.lua", format)
        assert.is_true(ok, table.concat(lines, "\n"))
        assert_story(lines, {
          "[keeper] signed in as alice@contoso.com; allow list: carol@contoso.com",
          "[keeper] in the meeting; 0 waiting in the lobby",
          "[carol] asks to join",
          "[mallory] asks to join",
          "[sim] carol is in, mallory is gone",
        }, "lobby_keeper")
        assert.equal(1, count(lines, "[keeper] admitted Carol"))
        assert.equal(1, count(lines, "[keeper] rejected Mallory (not on the allow list)"))
        assert.equal(1, count(lines, "[keeper] Carol is waiting in the lobby"))
        assert.equal(1, count(lines, "[keeper] Mallory is waiting in the lobby"))
        assert.equal(0, count(lines, "error"))
      end)

      it("lobby_keeper.lua takes its allow list from UCWA_ALLOW", function()
        local lines, ok = run("lobby_keeper.lua", format,
          { UCWA_ALLOW = "nobody@contoso.com", UCWA_BOT_SECONDS = "10" })
        assert.is_true(ok, table.concat(lines, "\n"))
        assert.equal(1, count(lines, "[keeper] rejected Carol (not on the allow list)"))
        assert.equal(1, count(lines, "[keeper] rejected Mallory (not on the allow list)"))
        assert.equal(0, count(lines, "admitted"))
      end)

      it("host_bot.lua schedules, admits from its allow list, renames and deletes its meeting", function()
        local lines, ok = run("host_bot.lua", format)
        assert.is_true(ok, table.concat(lines, "\n"))
        assert_story(lines, {
          "; join link: https://meet.contoso.com/alice/",
          "[host] in the meeting, chatting",
          "[carol] asks to join",
          "[host] admitted Carol",
          "[carol] !subject Quarterly review",
          '[host] Carol asks for the subject "Quarterly review"',
          "[host] the subject is now Quarterly review",
          "[sim] the meeting's subject: Quarterly review",
          "[host] deleted the meeting",
        }, "host_bot")
        assert.equal(1, count(lines, "[host] rejected Mallory (not on the allow list)"))
        assert.equal(0, count(lines, "error"))
      end)

      it("auto_accept.lua accepts Alice's invitation and declines Bob's", function()
        local lines, ok = run("auto_accept.lua", format)
        assert.is_true(ok, table.concat(lines, "\n"))
        assert_story(lines, {
          "[bot] available; waiting for invitations",
          "[alice] invites the bot to DEMO1",
          '[bot] onlineMeetingInvitation from Alice Adams: "Join us for the demo?"',
          "[bot] accepted",
          "[bot] in Demo meeting; saying hello",
          "[bob] invites the bot to BOBS",
          "[bot] declined (Bob Brown is not on my allow list)",
          "[sim] invitation 1 from alice@contoso.com: Accepted",
          "[sim] invitation 2 from bob@contoso.com: Declined (Local)",
        }, "auto_accept")
        assert.equal(0, count(lines, "error"))
      end)

      it("im_bot.lua answers IMs, shows Busy in a meeting and Online after", function()
        local lines, ok = run("im_bot.lua", format)
        assert.is_true(ok, table.concat(lines, "\n"))
        assert_story(lines, {
          "[bot] presence: Online",
          "[alice] hello",
          "[bot] accepting: messagingInvitation",
          "[bot] says: Hello, Alice Adams!",
          "[alice] who is Bob?",
          "[bot] heard Alice Adams: who is Bob?",
          "[bot] says: Bob Brown (Engineering) is Away",
          "[bot] accepting: onlineMeetingInvitation",
          "[bot] presence: Busy",
          "[sim] the bot shows Busy",
          "[bot] the meeting is over",
          "[bot] presence: Online",
          "[sim] the bot shows Online",
        }, "im_bot")
        assert.equal(0, count(lines, "error"))
        assert.equal(0, count(lines, "failed"))
      end)
    end)
  end
end)

describe("the README's demo transcript", function()
  -- regression: the README showed a transcript the demo did not print
  it("is what make demo prints, but for the port and the time", function()
    local readme = helpers.read("README.md")
    local block = assert(readme:match("\n```\n(%[demo%] ucwa%-sim at .-)```"), "no transcript in the README")
    local lines = run("demo.lua", "json")
    local function norm(l) return (l:gsub("127%.0%.0%.1:%d+", "127.0.0.1:PORT"):gsub("%(%d+%.%d s%)", "(T s)")) end
    local want = {}
    for l in block:gmatch("[^\n]+") do want[#want + 1] = norm(l) end
    for i, l in ipairs(lines) do lines[i] = norm(l) end
    assert.same(want, lines)
  end)
end)

describe("the README's ten-line bot", function()
  -- regression: as written it never printed "joined:" (the lobby) and needed
  -- an export from another section
  it("runs as written and prints joined: Success", function()
    local readme = helpers.read("README.md")
    local section = assert(readme:match("## A bot in ten lines(.-)\n## "), "no ten-line bot section")
    local code = assert(section:match("```lua\n(.-)```"), "no lua block")
    local shell = assert(section:match("\n\n    (eval.-)\n\n"), "no shell block")
    shell = shell:gsub("\n    ", "\n")
    local n = select(2, code:gsub("\n", ""))
    assert.is_true(n <= 12, "the ten-line bot has " .. n .. " lines")
    local f = assert(io.open("bot.lua", "w"))
    f:write(code)
    f:close()
    if helpers.sanitized then
      -- under make check: the sanitized build and interpreter, the rest as written
      shell = "export BUILD=" .. helpers.build .. "\n" .. shell:gsub("lua5%.4 ", quote(helpers.lua) .. " ")
    end
    local p = assert(io.popen("timeout -k 2 " .. LIMIT .. " bash -c " .. quote(shell) .. " 2>&1"))
    local out = p:read("a")
    p:close()
    os.remove("bot.lua")
    os.remove("sim.url")
    assert.matches("joined: Success", out)
  end)
end)
