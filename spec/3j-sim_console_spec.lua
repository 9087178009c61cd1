-- ucwa-sim's console (/_sim/console): its page and files, its state and its
-- stream of changes without a browser, then the page itself in Debian's
-- headless Chromium (spec/support/console_test.mjs) against the demo bot.
local C = require "support.sim_client"
local cjson = require "cjson"
local socket = require "socket"
local helpers = require "helpers"

local function get(sim, path)
  return C.request("GET", sim.control_base .. path)
end

local function post(sim, path, body)
  local st, _, text = C.request("POST", sim.control_base .. path, { ["Content-Type"] = "application/json" },
    cjson.encode(body or {}))
  assert(st == 200 or st == 201, path .. ": " .. tostring(st) .. " " .. tostring(text))
  return cjson.decode(text)
end

local function state(sim)
  local st, _, text = get(sim, "/_sim/console/state")
  assert.equal(200, st)
  return cjson.decode(text)
end

-- A poll sent on its own connection, answered later (C.raw_receive).
local function start_poll(sim, after, wait)
  return C.raw_send(sim.control_base, "GET", ("/_sim/console/events?after=%d&wait=%s"):format(after, wait or 10))
end

local function finish_poll(sock)
  local st, h, body = C.raw_receive(sock)
  sock:close()
  assert(st, "the poll's connection closed without an answer")
  return st, cjson.decode(body), h, body
end

-- Polls from `after` until the changes seen satisfy done(changes); returns them.
local function changes_until(sim, after, done, secs)
  local all = {}
  local deadline = socket.gettime() + (secs or 5) * helpers.SLOW
  repeat
    local st, answer = finish_poll(start_poll(sim, after, 0.5))
    assert.equal(200, st)
    assert.is_nil(answer.reset, "unexpected reset")
    for _, ch in ipairs(answer.changes) do all[#all + 1] = ch end
    after = answer.seq
    if done(all) then return all, after end
  until socket.gettime() > deadline
  error("the stream did not show it in time; saw " .. cjson.encode(all))
end

local function last_of(changes, kind, pred)
  local found
  for _, ch in ipairs(changes) do
    if ch.kind == kind and (not pred or pred(ch[kind])) then found = ch[kind] end
  end
  return found
end

local function member(m, key)
  for _, x in ipairs(m.members) do
    if x.key == key then return x end
  end
end

local function read(path) return helpers.read(path) end

describe("ucwa-sim console: the page", function()
  local sim
  C.use_sim(function(s) sim = s end)

  it("serves the page, its script and style built in, with their content types", function()
    local want = {
      ["/_sim/console"] = { "text/html; charset=utf-8", "sim/console/index.html" },
      ["/_sim/console/"] = { "text/html; charset=utf-8", "sim/console/index.html" },
      ["/_sim/console/console.js"] = { "text/javascript; charset=utf-8", "sim/console/console.js" },
      ["/_sim/console/console.css"] = { "text/css; charset=utf-8", "sim/console/console.css" },
    }
    for path, w in pairs(want) do
      local st, h, body = get(sim, path)
      assert.equal(200, st, path)
      assert.equal(w[1], h["content-type"], path)
      assert.equal("nosniff", h["x-content-type-options"])
      assert.matches("default%-src 'none'", h["content-security-policy"])
      assert.matches("connect%-src 'self'", h["content-security-policy"])
      assert.equal(read(w[2]), body, path .. " is the file in sim/console")
    end
  end)

  it("needs nothing from another origin: no URL in the page, its script or its style", function()
    for _, name in ipairs({ "index.html", "console.js", "console.css" }) do
      local _, _, body = get(sim, "/_sim/console/" .. (name == "index.html" and "" or name))
      assert.is_nil(body:find("https?:"), name .. " names another origin")
      assert.is_nil(body:find("//[%w.-]+%.[%a]+/"), name .. " names another host")
      assert.is_nil(body:find("@import", 1, true), name)
    end
    local _, _, page = get(sim, "/_sim/console")
    assert.truthy(page:find('<script src="/_sim/console/console.js" defer></script>', 1, true))
    assert.truthy(page:find('<link rel="stylesheet" href="/_sim/console/console.css">', 1, true))
  end)

  it("keeps its script in strict mode and valid JavaScript (node --check)", function()
    assert.truthy(read("sim/console/console.js"):find('"use strict";', 1, true))
    local ok = os.execute("node --check sim/console/console.js")
    assert.is_true(ok, "node --check sim/console/console.js failed")
  end)

  it("answers GET only, and 404 for other paths under it", function()
    local st, h = C.request("POST", sim.control_base .. "/_sim/console", {}, "")
    assert.equal(405, st)
    assert.equal("GET", h.allow)
    assert.equal(404, (get(sim, "/_sim/console/missing.js")))
    assert.equal(400, (get(sim, "/_sim/console/events?after=x")))
  end)

  it("gives the state a console starts from: where it listens, meetings, users, limits", function()
    local s = state(sim)
    assert.equal("number", type(s.seq))
    assert.equal("127.0.0.1", s.listen[1].address)
    assert.equal(sim.control_base, s.listen[1].url)
    assert.equal("DEMO1", s.meetings[1].id)
    local names = {}
    for _, u in ipairs(s.users) do names[u.username] = u.name end
    assert.equal("Alice Adams", names["alice@contoso.com"])
    assert.equal(8, s.limits.streams)
    assert.same({}, s.apps)
    assert.same({}, s.messages)
    assert.equal(0, s.faults.drop_pget)
  end)
end)

describe("ucwa-sim console: where it is served", function()
  it("is part of the control API: --no-control turns it off", function()
    local sim = C.start({ no_control = true })
    finally(function() C.stop(sim) end)
    assert.equal(404, (get(sim, "/_sim/console")))
  end)

  it("with a topology, is on every host's listener and names each address it listens on", function()
    local sim = C.start({ topology = "pool" })
    finally(function() C.stop(sim) end)
    local want = {}
    for name, h in pairs(sim.hosts) do
      want[name] = h.address
      local st, hd = C.request("GET", ("http://%s:%d/_sim/console"):format(h.address, h.port))
      assert.equal(200, st, name)
      assert.equal("text/html; charset=utf-8", hd["content-type"])
    end
    local got = {}
    for _, l in ipairs(state(sim).listen) do got[l.name] = l.address end
    assert.same(want, got)
  end)

  it("serves sim/console's files with --script-dir sim/lua, as built in", function()
    local sim = C.start({ script_dir = "sim/lua" })
    finally(function() C.stop(sim) end)
    local st, _, body = get(sim, "/_sim/console/console.js")
    assert.equal(200, st)
    assert.equal(read("sim/console/console.js"), body)
  end)
end)

describe("ucwa-sim console: the stream", function()
  local sim
  C.use_sim_each(function(s) sim = s end)

  it("holds a poll until something changes, then answers the change", function()
    local s = state(sim)
    local sock = start_poll(sim, s.seq)
    socket.sleep(0.2)
    post(sim, "/_sim/meetings/DEMO1/join", { user = "alice@contoso.com" })
    local st, answer, h = finish_poll(sock)
    assert.equal(200, st)
    assert.equal("application/json; charset=utf-8", h["content-type"])
    assert.is_true(answer.seq > s.seq)
    local m = last_of(answer.changes, "meeting")
    assert.equal("DEMO1", m.id)
    assert.same({ "alice@contoso.com", "in", "Leader", true },
      { m.members[1].key, m.members[1].state, m.members[1].role, m.members[1].virtual })
  end)

  it("answers a poll with nothing new after `wait` seconds, with no change", function()
    local s = state(sim)
    local t0 = socket.gettime()
    local st, _, text = get(sim, "/_sim/console/events?after=" .. s.seq .. "&wait=0.3")
    assert.equal(200, st)
    assert.is_true(socket.gettime() - t0 >= 0.25)
    assert.matches('"changes":%[%]', text)
  end)

  it("shows the lobby, admissions, roles and typing of each meeting", function()
    local s = state(sim)
    post(sim, "/_sim/meetings/DEMO1/join", { user = "carol@contoso.com", name = "Carol" })
    local changes, after = changes_until(sim, s.seq, function(all)
      local m = last_of(all, "meeting")
      return m and member(m, "carol@contoso.com") and member(m, "carol@contoso.com").state == "lobby"
    end)
    assert.equal("Carol", member(last_of(changes, "meeting"), "carol@contoso.com").name)
    post(sim, "/_sim/meetings/DEMO1/admit", { user = "carol@contoso.com" })
    post(sim, "/_sim/meetings/DEMO1/typing", { from = "carol@contoso.com" })
    changes = changes_until(sim, after, function(all)
      local m = last_of(all, "meeting")
      local carol = m and member(m, "carol@contoso.com")
      return carol and carol.state == "in" and carol.typing
    end)
    assert.equal("Attendee", member(last_of(changes, "meeting"), "carol@contoso.com").role)
  end)

  it("carries the conversation's messages in order, with who said what, and keeps them for a new console", function()
    post(sim, "/_sim/meetings/DEMO1/join", { user = "alice@contoso.com" })
    post(sim, "/_sim/meetings/DEMO1/join", { user = "carol@contoso.com", name = "Carol", lobby = false })
    local s = state(sim)
    local said = { { "alice@contoso.com", "one" }, { "carol@contoso.com", "two" }, { "alice@contoso.com", "three" } }
    for _, x in ipairs(said) do post(sim, "/_sim/meetings/DEMO1/message", { from = x[1], text = x[2] }) end
    local changes = changes_until(sim, s.seq, function(all)
      local n = 0
      for _, ch in ipairs(all) do if ch.kind == "message" then n = n + 1 end end
      return n == 3
    end)
    local got = {}
    for _, ch in ipairs(changes) do
      if ch.kind == "message" then
        local msg = ch.message
        got[#got + 1] = { msg.from, msg.name, msg.text, msg.meeting, msg.bot }
      end
    end
    assert.same({ { "alice@contoso.com", "Alice Adams", "one", "DEMO1", false },
      { "carol@contoso.com", "Carol", "two", "DEMO1", false },
      { "alice@contoso.com", "Alice Adams", "three", "DEMO1", false } }, got)
    local later = state(sim)
    assert.same({ "one", "two", "three" }, { later.messages[1].text, later.messages[2].text, later.messages[3].text })
  end)

  it("shows each directory user's presence, and a change to it", function()
    local s = state(sim)
    local bob
    for _, p in ipairs(s.people) do if p.username == "bob@contoso.com" then bob = p end end
    assert.same({ "Bob Brown", false }, { bob.name, bob.reachable })
    post(sim, "/_sim/users/bob@contoso.com/presence", { availability = "BeRightBack" })
    post(sim, "/_sim/users/bob@contoso.com/note", { message = "Back at two" })
    local changes = changes_until(sim, s.seq, function(all)
      local p = last_of(all, "person", function(x) return x.username == "bob@contoso.com" end)
      return p and p.note == "Back at two"
    end)
    assert.equal("BeRightBack", last_of(changes, "person").availability)
    post(sim, "/_sim/users/bob@contoso.com/presence", { availability = "Offline" })
  end)

  it("shows the faults armed, and their counts as they are used", function()
    local s = state(sim)
    post(sim, "/_sim/faults/fail", { count = 3, status = 502 })
    post(sim, "/_sim/faults/drop-pget", { count = 1 })
    local changes = changes_until(sim, s.seq, function(all)
      local f = last_of(all, "faults")
      return f and f.drop_pget == 1 and #f.failures == 1
    end)
    local f = last_of(changes, "faults")
    assert.same({ "fail", 3, 502 }, { f.failures[1].kind, f.failures[1].count, f.failures[1].status })
  end)

  it("answers {reset: true} to a poll from a seq it does not have", function()
    local s = state(sim)
    local st, answer = finish_poll(start_poll(sim, s.seq + 5))
    assert.equal(200, st)
    assert.is_true(answer.reset)
    assert.equal(s.seq, answer.seq)
  end)

  it("keeps a bounded log: a poll from before the oldest entry it keeps gets a reset", function()
    local s = state(sim)
    for i = 1, 1010 do
      C.request("POST", sim.control_base .. "/_sim/faults/drop-pget", {}, cjson.encode({ count = i }))
      if i % 100 == 0 then socket.sleep(0.01) end
    end
    local newer = state(sim)
    assert.is_true(newer.seq >= s.seq + 1000, "every arming was written: " .. newer.seq - s.seq)
    local _, answer = finish_poll(start_poll(sim, s.seq))
    assert.is_true(answer.reset)
    local _, recent = finish_poll(start_poll(sim, newer.seq - 10))
    assert.is_nil(recent.reset)
    assert.equal(10, #recent.changes)
  end)

  it("sends at most 256 KiB in one answer: the rest comes with the next poll", function()
    post(sim, "/_sim/meetings/DEMO1/join", { user = "alice@contoso.com" })
    local s = state(sim)
    local text = ("x"):rep(4000)
    for _ = 1, 80 do post(sim, "/_sim/meetings/DEMO1/message", { from = "alice@contoso.com", text = text }) end
    local last = state(sim).seq
    local _, first, _, body = finish_poll(start_poll(sim, s.seq))
    assert.is_true(#body <= 256 * 1024 + 64, "answer of " .. #body .. " bytes")
    assert.is_true(first.seq < last)
    local _, second = finish_poll(start_poll(sim, first.seq))
    assert.equal(first.changes[#first.changes].message.n + 1, second.changes[1].message.n)
  end)

  it("holds at most 8 console streams: the 9th gets 503, a closed one makes room", function()
    local s = state(sim)
    local socks = {}
    finally(function() for _, k in ipairs(socks) do k:close() end end)
    for i = 1, 8 do socks[i] = start_poll(sim, s.seq, 20) end
    assert.equal(8, C.eventually(function()
      local st = cjson.decode(select(3, get(sim, "/_sim/state")))
      return st.console_streams == 8 and st.console_streams
    end, 5 * helpers.SLOW))
    local st, h, text = get(sim, "/_sim/console/events?after=" .. s.seq)
    assert.equal(503, st)
    assert.equal("5", h["retry-after"])
    assert.matches("too many console streams", cjson.decode(text).error)
    socks[1]:close()
    table.remove(socks, 1)
    assert.truthy(C.eventually(function()
      return cjson.decode(select(3, get(sim, "/_sim/state"))).console_streams == 7
    end, 5 * helpers.SLOW))
    local again = start_poll(sim, s.seq, 0.2)
    local st2, answer = finish_poll(again)
    assert.equal(200, st2)
    assert.same({}, answer.changes)
  end)
end)

describe("ucwa-sim console: each application's event channel", function()
  C.each_format(function(fmt)
    local sim
    C.use_sim_each(function(s) sim = s end)

    it("shows P-GETs held, batches sent, acks, a dropped answer and a resync", function()
      local s = state(sim)
      local bot = C.session(sim, "bot@contoso.com", fmt)
      local app_id = bot.events:match("/applications/([^/]+)/")
      assert(bot:pget("timeout=0.2")) -- held, answered at its timeout: batch 1
      assert(bot:pget("timeout=0.2")) -- acks batch 1
      post(sim, "/_sim/faults/drop-pget", { count = 1 })
      post(sim, "/_sim/apps/" .. app_id .. "/events", { count = 2 })
      local batch = bot:pget("timeout=0.2")
      assert.is_nil(batch, "the answer was dropped")
      assert(bot:pget("timeout=0.2")) -- the same batch again
      post(sim, "/_sim/apps/" .. app_id .. "/resync")
      assert(bot:pget("timeout=0.2"))
      local changes = changes_until(sim, s.seq, function(all)
        local a = last_of(all, "app", function(a) return a.id == app_id end)
        return a and a.channel.counts.resyncs == 1
      end)
      local a = last_of(changes, "app", function(x) return x.id == app_id end)
      assert.equal("bot@contoso.com", a.user)
      assert.equal("Meeting Bot", a.name)
      local c = a.channel.counts
      assert.is_true(c.held >= 2, "held " .. c.held)
      assert.is_true(c.sent >= 3, "sent " .. c.sent)
      assert.is_true(c.acks >= 2, "acks " .. c.acks)
      assert.equal(1, c.dropped)
      local whats = {}
      for _, l in ipairs(a.channel.lines) do whats[#whats + 1] = l.what end
      local line = table.concat(whats, " ")
      assert.matches("held .*dropped again .*resync", line)
      for _, l in ipairs(a.channel.lines) do
        if l.what == "dropped" then assert.matches("^batch %d+ dropped %(fault%)", l.text) end
      end
    end)

    it("shows the application's invitations and their states, and its end", function()
      local bot = C.session(sim, "bot@contoso.com", fmt)
      local app_id = bot.events:match("/applications/([^/]+)/")
      assert.equal(204, (bot:post(bot.app.embedded.me.links.makeMeAvailable.href,
        { signInAs = "Online", supportedModalities = { "Messaging" } })))
      local s = state(sim)
      post(sim, "/_sim/meetings/DEMO1/invite", { to = "bot@contoso.com", message = "Join us?" })
      local changes, after = changes_until(sim, s.seq, function(all)
        local a = last_of(all, "app", function(a) return a.id == app_id end)
        return a and #a.invitations == 1
      end)
      local inv = last_of(changes, "app", function(a) return a.id == app_id end).invitations[1]
      assert.same({ "Incoming", "Connecting", "DEMO1", "Alice Adams", "Incoming" },
        { inv.direction, inv.state, inv.meeting, inv.from, inv.conversation })
      post(sim, "/_sim/apps/" .. app_id .. "/forget")
      changes = changes_until(sim, after, function(all)
        local a = last_of(all, "app", function(a) return a.id == app_id end)
        return a and a.gone
      end)
      assert.is_true(last_of(changes, "app").gone)
    end)
  end)
end)

describe("ucwa-sim console in a browser", function()
  -- Runs examples/<bot> against a new simulator, then console_test.mjs's
  -- `scenario` in headless Chromium; returns what the browser test printed
  -- and what the bot said.
  local function in_browser(bot, scenario, setup)
    local f = io.open("node_modules/playwright-core/package.json", "rb")
    assert(f, "node_modules/playwright-core is missing: run `make deps` (it runs npm ci), then make test again")
    f:close()
    assert(io.open("/usr/bin/chromium", "rb"), "/usr/bin/chromium is missing: run `make deps` (Debian's chromium)")

    local sim = C.start({ step_delay = 0.05, typing_timeout = 60 }) -- typing lasts while the test looks
    local log = os.tmpname()
    local bot_pid
    -- (one finally: busted keeps only the last one a test gives)
    finally(function()
      if bot_pid then
        -- the bot's `timeout`, started here: it ends the bot and exits
        os.execute("kill " .. bot_pid .. " 2>/dev/null")
        for _ = 1, 50 do
          if not os.execute("kill -0 " .. bot_pid .. " 2>/dev/null") then break end
          socket.sleep(0.1)
        end
      end
      os.remove(log)
      C.stop(sim)
    end)
    if setup then setup(sim) end

    local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
    local build = helpers.build:sub(1, 1) == "/" and helpers.build or (os.getenv("PWD") .. "/" .. helpers.build)
    local limit = 90 * helpers.SLOW
    local envs = table.concat({ "UCWA_URL=" .. q(sim.url), "UCWA_USER=bot@contoso.com", "UCWA_PASSWORD=password",
      "UCWA_MEETING=" .. q(helpers.DEMO1), "UCWA_FORMAT=json", "UCWA_BUILD=" .. q(build),
      "UCWA_BOT_SECONDS=" .. limit }, " ")
    local p = assert(io.popen(("env -u LUA_PATH -u LUA_CPATH %s timeout -k 2 %d %s examples/%s"
      .. " > %s 2>&1 & echo $!"):format(envs, limit + 5, q(helpers.lua), bot, q(log))))
    bot_pid = assert(tonumber(p:read("l")), "no pid for the bot")
    p:close()

    local shots = os.getenv("UCWA_CONSOLE_SHOTS") or (build .. "/console")
    os.execute("mkdir -p " .. q(shots))
    local node = io.popen(("env -u LD_PRELOAD CONSOLE_BASE=%s CONSOLE_SCENARIO=%s CONSOLE_SHOTS=%s timeout -k 2 %d"
      .. " node %s 2>&1"):format(q(sim.control_base), scenario, q(shots), 120 * helpers.SLOW,
      "spec/support/console_test.mjs"))
    local out = node:read("a")
    local ok = node:close()
    local transcript = helpers.read(log)
    assert.is_true(ok, "the browser test failed:\n" .. out .. "\nthe bot said:\n" .. transcript)
    assert.is_nil(out:find("not ok", 1, true), out)
    return out, transcript, shots
  end

  local function has_steps(out, steps)
    for _, line in ipairs(steps) do
      assert.truthy(out:find(line, 1, true), "missing step: " .. line .. "\n" .. out)
    end
  end

  local function has_png(shots, names)
    for _, name in ipairs(names) do
      local png = helpers.read(shots .. "/" .. name)
      assert.equal("\137PNG", png:sub(1, 4), name)
    end
  end

  it("plays the meeting with the demo bot in headless Chromium", function()
    local out, transcript, shots = in_browser("meeting_bot.lua", "meeting", function(sim)
      post(sim, "/_sim/users", { username = "carol@contoso.com", name = "Carol" })
    end)
    has_steps(out, { "the bot waits in the lobby", "admitted: the bot moved from the lobby to the attendees",
      "Carol said !who and the bot's answer appeared", "the channel recovered", "resync by a click",
      "screenshots at 1280x800 and 390x844", "ended the meeting" })
    assert.truthy(transcript:find("[bot] heard Carol: !who", 1, true), transcript)
    has_png(shots, { "console.png", "console-phone.png" })
  end)

  it("IMs the IM bot as Alice, types, and sets Bob's presence in headless Chromium", function()
    local out, transcript, shots = in_browser("im_bot.lua", "im")
    has_steps(out, { "the bot signed in: Online", "Alice said hello to the bot and the bot's answer appeared in the IM",
      "Alice types, and the IM shows it", "Bob's presence set to Away from the keyboard",
      "screenshots at 1280x800 and 390x844" })
    assert.truthy(transcript:find("heard alice@contoso.com: hello", 1, true)
      or transcript:find("first message: hello", 1, true), transcript)
    has_png(shots, { "console-im.png", "console-im-phone.png" })
  end)
end)
