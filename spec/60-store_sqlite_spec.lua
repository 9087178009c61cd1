-- The SQLite session store (ucwa.store.sqlite, docs/store.md): WAL mode, the
-- synchronous levels, the round trip of values and the inbox, clear errors
-- for a bad path and a corrupt file; and a client with a store: the event
-- channel holds each batch until the store has it (an asynchronous store
-- too), ev.id, secrets only with store_tokens = true and never in a log.
local helpers = require "helpers"
local ucwa = require "ucwa"
local store = require "ucwa.store"

local function tmpdb()
  local p = os.tmpname()
  os.remove(p)
  return p .. ".db"
end

local function remove(path)
  for _, s in ipairs{ "", "-wal", "-shm" } do os.remove(path .. s) end
end

-- Calls a store method and returns what its callback got (SQLite answers at once).
local function call(st, method, ...)
  local got
  local args = table.pack(...)
  args[args.n + 1] = function(r, e) got = { r, e } end
  st[method](st, table.unpack(args, 1, args.n + 1))
  assert(got, method .. " did not call back before returning")
  return got[1], got[2]
end

-- Starts c and drives it until its "ready" fired (signed in, channel open).
local function start(c)
  local ready = false
  c:on("ready", function() ready = true end)
  c:start()
  helpers.drive(c, function() return ready end, 5, "ready")
  return c
end

local function file_has(path, needle)
  local found = false
  for _, s in ipairs{ "", "-wal" } do
    local f = io.open(path .. s, "rb")
    if f then
      if f:read("a"):find(needle, 1, true) then found = true end
      f:close()
    end
  end
  return found
end

describe("ucwa.store.sqlite", function()
  local path, st
  before_each(function() path = tmpdb() end)
  after_each(function()
    if st then st:close() end
    st = nil
    remove(path)
  end)

  it("opens in WAL mode, synchronous normal by default", function()
    st = assert(ucwa.store.sqlite(path))
    assert.equal("wal", st:pragma("journal_mode"))
    assert.equal("normal", st:pragma("synchronous"))
    assert.equal("1", st:pragma("user_version"))
    assert.is_true(call(st, "set", "bot", 0, { a = "1" }))
    assert.truthy(io.open(path .. "-wal"), "no write-ahead log next to the file")
    assert.equal("sqlite", st.kind)
    assert.is_false(st.async)
  end)

  for _, level in ipairs(store.SYNCHRONOUS) do
    it("takes synchronous = " .. level, function()
      st = assert(ucwa.store.sqlite(path, { synchronous = level }))
      assert.equal(level, st:pragma("synchronous"))
      assert.is_true(call(st, "set", "bot", 0, { k = level }))
      assert.equal(level, call(st, "load", "bot").values.k)
    end)
  end

  it("refuses an unknown level or option, naming it", function()
    assert.error_matches(function() ucwa.store.sqlite(path, { synchronous = "sometimes" }) end,
      "option 'synchronous' must be off, normal, full or extra, not 'sometimes'", 1, true)
    assert.error_matches(function() ucwa.store.sqlite(path, { sync = "full" }) end, "unknown option 'sync'")
    assert.error_matches(function() ucwa.store.sqlite(42) end, "path must be a string")
  end)

  it("keeps values per identity, byte for byte, and deletes with false", function()
    st = assert(ucwa.store.sqlite(path))
    local blob = "a\0b\255\n" .. string.rep("x", 100000)
    assert.is_true(call(st, "set", "bot1", 0, { session = "{}", blob = blob }))
    assert.is_true(call(st, "set", "bot2", 0, { session = "two" }))
    local snap = call(st, "load", "bot1")
    assert.same({ session = "{}", blob = blob }, snap.values)
    assert.same({}, snap.inbox)
    assert.is_true(call(st, "set", "bot1", 0, { blob = false, session = "again" }))
    assert.same({ session = "again" }, call(st, "load", "bot1").values)
    assert.same({ session = "two" }, call(st, "load", "bot2").values)
    assert.is_false(call(st, "load", "nobody"))
  end)

  it("keeps the inbox in order, with the channel's change in the same write, until done", function()
    st = assert(ucwa.store.sqlite(path))
    assert.is_true(call(st, "inbox_put", "bot", 0, 7, "seven", { channel = "ack=8" }))
    assert.is_true(call(st, "inbox_put", "bot", 0, 5, "five", {}))
    assert.is_true(call(st, "inbox_put", "bot", 0, 9, "nine", { channel = "ack=10" }))
    assert.is_true(call(st, "inbox_put", "bot", 0, 9, "nine again", { channel = "ack=10" })) -- replaced
    local snap = call(st, "load", "bot")
    assert.same({ { seq = 5, data = "five" }, { seq = 7, data = "seven" }, { seq = 9, data = "nine again" } },
      snap.inbox)
    assert.equal("ack=10", snap.values.channel)
    assert.is_true(call(st, "inbox_done", "bot", 0, 7))
    assert.same({ 5, 9 }, { call(st, "load", "bot").inbox[1].seq, call(st, "load", "bot").inbox[2].seq })
    assert.is_true(call(st, "clear", "bot", 0))
    assert.is_false(call(st, "load", "bot"))
  end)

  it("is shared by two handles on one file (two processes)", function()
    st = assert(ucwa.store.sqlite(path))
    local other = assert(ucwa.store.sqlite(path))
    assert.is_true(call(st, "set", "bot", 0, { a = "from one" }))
    assert.equal("from one", call(other, "load", "bot").values.a)
    assert.is_true(call(other, "inbox_put", "bot", 0, 1, "b", {}))
    assert.equal(1, #call(st, "load", "bot").inbox)
    other:close()
  end)

  it("gives begin's fence 0: SQLite has no leases", function()
    st = assert(ucwa.store.sqlite(path))
    assert.equal(0, (call(st, "begin", "bot")))
  end)

  it("says which file it cannot open", function()
    local s, err = ucwa.store.sqlite("/nonexistent-dir/sub/bots.db")
    assert.is_nil(s)
    assert.equal("StoreError", err.code)
    assert.matches("sqlite store /nonexistent%-dir/sub/bots.db: open: unable to open database file", tostring(err))
  end)

  it("says a corrupt file is not a database", function()
    local f = assert(io.open(path, "wb"))
    f:write(string.rep("not a database, just garbage ", 400))
    f:close()
    local s, err = ucwa.store.sqlite(path)
    assert.is_nil(s)
    assert.equal("StoreError", err.code)
    assert.matches(path:gsub("%p", "%%%0") .. ": .*file is not a database", tostring(err))
  end)

  it("refuses bad arguments before SQLite is touched, and a closed store", function()
    st = assert(ucwa.store.sqlite(path))
    assert.error_matches(function() call(st, "set", "bot", 0, { a = 1 }) end, "a string or false expected, got number")
    assert.error_matches(function() call(st, "set", "bot", 0, { [1] = "x" }) end, "keys must be strings")
    assert.error_matches(function() call(st, "set", "", 0, {}) end, "identity must be a non%-empty string")
    assert.error_matches(function() st:load("bot", "not a function") end, "done must be a function")
    st:close()
    assert.error_matches(function() call(st, "load", "bot") end, "store is closed")
    st:close() -- idempotent
    st = nil
  end)
end)

describe("a client with a store", function()
  local sim, path
  before_each(function()
    sim = helpers.sim{ app_idle = 60 }
    path = tmpdb()
  end)
  after_each(function()
    helpers.close_clients()
    sim:stop()
    remove(path)
  end)

  local function app_id()
    local _, st = sim:control("GET", "/_sim/state")
    return st.applications[#st.applications].id
  end

  it("refuses a store that is not one, and store options without a store", function()
    assert.error_matches(function() ucwa.client{ url = sim.url, token = "t", store = {} } end,
      "option 'store' must be a store")
    assert.error_matches(function() ucwa.client{ url = sim.url, token = "t", store_tokens = true } end,
      "store_tokens given without store")
    assert.error_matches(function() ucwa.client{ url = sim.url, token = "t", store_key = "k" } end,
      "store_key given without store")
  end)

  for _, format in ipairs{ "json", "xml" } do
    it("holds the next P-GET until an asynchronous store has the batch (" .. format .. ")", function()
      local sqlite = assert(ucwa.store.sqlite(path))
      -- an asynchronous store: every inbox write answers 0.3 s later, from the loop
      local pending, c = {}, nil
      local slow = setmetatable({
        inbox_put = function(_, id, _fence, seq, data, changes, done)
          local ok, err = sqlite.db:write(id, changes, seq, data)
          pending[#pending + 1] = seq
          c:after(0.3, function()
            table.remove(pending, 1)
            done(ok, err)
          end)
        end,
      }, { __index = sqlite })
      c = helpers.client(sim, { store = slow, format = format })
      local ids = {}
      c:on("event", function(ev) if ev.link.rel == "note" then ids[#ids + 1] = ev.id end end)
      start(c)
      helpers.drive(c, function() return #pending == 0 and c._session.channel:pending() == "request" end, 5, "idle")
      assert.equal(200, (sim:control("POST", "/_sim/apps/" .. app_id() .. "/events", { count = 3 })))
      helpers.drive(c, function() return #pending > 0 end, 5, "the batch")
      -- the batch is dispatched, not acknowledged: no P-GET at the server
      assert.equal(3, #ids)
      assert.equal("held", c._session.channel:pending())
      local _, st = sim:control("GET", "/_sim/state")
      assert.equal(0, st.pgets_held)
      assert.is_true(st.applications[#st.applications].unacked_batch)
      helpers.drive(c, function() return #pending == 0 end, 5, "the write's answer")
      assert.equal("request", c._session.channel:pending())
      helpers.drive(c, function()
        local _, s2 = sim:control("GET", "/_sim/state")
        return not s2.applications[#s2.applications].unacked_batch
      end, 5, "the ack")
      local seq = ids[1]:match("^(%d+):")
      assert.same({ seq .. ":" .. (ids[1]:match(":(%d+)$")), seq .. ":" .. (ids[1]:match(":(%d+)$") + 1),
                    seq .. ":" .. (ids[1]:match(":(%d+)$") + 2) }, ids)
      assert.same({}, call(sqlite, "load", "user:bot@contoso.com@" .. sim.url).inbox) -- all done
      assert.same({}, c.errors)
    end)
  end

  -- a store whose inbox writes fail with `err` (after the first `ok` of them)
  local function failing(err, ok)
    local sqlite = assert(ucwa.store.sqlite(path))
    local n = 0
    return setmetatable({
      inbox_put = function(_, id, fence, seq, data, changes, done)
        n = n + 1
        if n <= (ok or 0) then return sqlite:inbox_put(id, fence, seq, data, changes, done) end
        done(nil, ucwa.errors.new(err))
      end,
    }, { __index = sqlite })
  end

  local function started(st)
    local c = helpers.client(sim, { store = st })
    local ids = {}
    c:on("event", function(ev) if ev.link.rel == "note" then ids[#ids + 1] = ev.id end end)
    start(c)
    return c, ids
  end

  it("goes on when the store fails: the events dispatched, the error reported", function()
    local c, ids = started(failing{ code = "StoreError", message = "disk full" })
    local app = app_id()
    assert.equal(200, (sim:control("POST", "/_sim/apps/" .. app .. "/events", { count = 2 })))
    helpers.drive(c, function() return #ids == 2 end, 5, "the events")
    assert.equal(200, (sim:control("POST", "/_sim/apps/" .. app .. "/events", { count = 1 })))
    helpers.drive(c, function() return #ids == 3 end, 5, "the channel going on")
    assert.equal("StoreError", c.errors[1].code)
    assert.equal("ready", c.state)
  end)

  it("stops driving the bot, without a word to the server, when the store says the lease is lost", function()
    local c, ids = started(failing({ code = "Conflict", subcode = "LeaseLost", message = "fence 3 is not 4" }))
    local app = app_id()
    assert.equal(200, (sim:control("POST", "/_sim/apps/" .. app .. "/events", { count = 1 })))
    helpers.drive(c, function() return c.state == "stopped" end, 5, "stopped")
    assert.equal("LeaseLost", c.errors[1].subcode)
    assert.is_false(c.errors[1].retrying)
    assert.equal(0, #ids) -- the batch in hand is the new owner's: not acknowledged, not dispatched
    assert.is_nil(c._session.channel)
    helpers.drive(c, function()
      local _, st = sim:control("GET", "/_sim/state")
      return st.pgets_held == 0
    end, 5, "no P-GET at the server")
    c:close()
    local _, st = sim:control("GET", "/_sim/state")
    assert.equal(1, st.application_count) -- not deleted: the new owner's now
  end)

  it("stores no secret without store_tokens, and never logs one", function()
    local logs = {}
    assert.equal(201, (sim:control("POST", "/_sim/users", { username = "bot@contoso.com", password = "s3cret-pass" })))
    local c = helpers.client(sim, { store = assert(ucwa.store.sqlite(path)), password = "s3cret-pass",
      log = function(_, m) logs[#logs + 1] = m end })
    start(c)
    local auth = c._session.tokens:authorization(c._session.base)
    local value = auth:match("%S+$")
    assert.is_false(file_has(path, value), "the token is in the store")
    assert.is_false(file_has(path, "s3cret-pass"), "the password is in the store")
    for _, l in ipairs(logs) do
      assert.is_nil(l:find(value, 1, true))
      assert.is_nil(l:find("s3cret-pass", 1, true))
    end
  end)

  it("stores the tokens with store_tokens = true, uses them after a restart, and never logs them", function()
    local logs = {}
    local function mk()
      local c = helpers.client(sim, { store = assert(ucwa.store.sqlite(path)), store_tokens = true,
        log = function(_, m) logs[#logs + 1] = m end })
      return c
    end
    local c = mk()
    start(c)
    local value = c._session.tokens:authorization(c._session.base):match("%S+$")
    assert.is_true(file_has(path, value), "the token is not in the store")
    assert.is_false(file_has(path, "password"), "the password is in the store")
    c._session:release() -- the process dies; the application lives on
    local grants = #logs
    local c2 = mk()
    local info
    c2:on("restored", function(i) info = i end)
    c2:start()
    helpers.drive(c2, function() return info end, 5, "restored")
    -- the stored token got through: no new grant
    for i = grants + 1, #logs do assert.is_nil(logs[i]:match("POST %S+/oauth/token")) end
    for _, l in ipairs(logs) do
      assert.is_nil(l:find(value, 1, true))
      assert.is_nil(l:find("tokens stored", 1, true) and l:find(value, 1, true))
    end
  end)

  -- regression: only batches with events were stored, so after empty ones
  -- the stored URL's ack was behind the server's and every restart (every
  -- fleet takeover) began with a resync, reported to the bot as resumed
  it("carries on after empty batches without a resync", function()
    local function mk()
      local c = helpers.client(sim, { store = assert(ucwa.store.sqlite(path)) })
      c._session.options.event_timeout = 0.3 -- empty batches often (the option's floor is 180 s)
      return c
    end
    local c = mk()
    start(c)
    local id = c._session.application.properties.id
    local function next_ack()
      local _, state = sim:control("GET", "/_sim/state")
      for _, a in ipairs(state.applications) do if a.id == id then return a.next_ack end end
    end
    local first = next_ack()
    helpers.drive(c, function() return next_ack() >= first + 2 end, 10, "two empty batches")
    c._session:release() -- the process dies; the application lives on
    local c2 = mk()
    local info, resumed
    c2:on("restored", function(i) info = i end)
    c2:on("resumed", function(i) resumed = i end)
    c2:start()
    helpers.drive(c2, function() return info end, 5, "restored")
    local at = next_ack()
    helpers.drive(c2, function() return next_ack() > at end, 10, "the channel going on")
    assert.is_nil(resumed, "resumed after a restart: " .. tostring(resumed and resumed.reason))
  end)

  it("forgets the session when the client signs out", function()
    local st = assert(ucwa.store.sqlite(path))
    local c = helpers.client(sim, { store = st, store_key = "bot-7" })
    start(c)
    assert.truthy(call(st, "load", "bot-7").values.application)
    c:close()
    assert.is_false(call(st, "load", "bot-7"))
  end)
end)

describe("ev.id without a store", function()
  it("is the batch's ack and the event's position, as with a store", function()
    local sim = helpers.sim()
    local c = helpers.client(sim)
    local ids = {}
    c:on("event", function(ev) if ev.link.rel == "note" then ids[#ids + 1] = ev.id end end)
    start(c)
    local _, st = sim:control("GET", "/_sim/state")
    assert.equal(200, (sim:control("POST", "/_sim/apps/" .. st.applications[1].id .. "/events", { count = 2 })))
    helpers.drive(c, function() return #ids == 2 end, 5, "the events")
    local ack = c._session.channel:url():match("ack=(%d+)") - 1 -- the batch the next P-GET acknowledges
    local first = tonumber(ids[1]:match(":(%d+)$"))
    assert.same({ ack .. ":" .. first, ack .. ":" .. (first + 1) }, ids)
    helpers.close_clients()
    sim:stop()
  end)
end)

describe("a store whose URLs lead to another host", function()
  local sim, path, listener, c
  before_each(function()
    sim = helpers.sim{ app_idle = 60 }
    path = tmpdb()
    listener = assert(require("socket").bind("127.0.0.2", 0))
    listener:settimeout(0)
  end)
  after_each(function()
    helpers.close_clients()
    listener:close()
    sim:stop()
    remove(path)
  end)

  local function foreign(url)
    local _, port = listener:getsockname()
    return (url:gsub("^http://[^/]+", "http://127.0.0.2:" .. port))
  end

  -- signs in with a store, then "dies", leaving the session stored
  local function first_life()
    local st = assert(ucwa.store.sqlite(path))
    c = helpers.client(sim, { store = st, store_key = "bot" })
    start(c)
    c._session:release()
    return st
  end

  local function rewrite(st, key, fn)
    local v = require("cjson").decode(call(st, "load", "bot").values[key])
    fn(v)
    assert.is_true(call(st, "set", "bot", 0, { [key] = require("cjson").encode(v) }))
  end

  it("sends nothing to a planted application URL: a fresh sign-in instead", function()
    local st = first_life()
    rewrite(st, "session", function(v) v.base = foreign(v.base) end)
    local c2 = helpers.client(sim, { store = st, store_key = "bot" })
    local ready, restored, resumed = false, false, nil
    c2:on("ready", function() ready = true end)
    c2:on("restored", function() restored = true end)
    c2:on("resumed", function(i) resumed = i end)
    c2:start()
    helpers.drive(c2, function() return ready and resumed end, 5, "a fresh sign-in")
    assert.is_false(restored)
    assert.is_true(resumed.restart)
    assert.equal("Forbidden", resumed.error.code)
    assert.is_nil(listener:accept(), "a request went to the planted host")
  end)

  it("opens the channel at the application's events link, not at a planted one", function()
    local st = first_life()
    rewrite(st, "session", function() end)
    local planted = foreign(sim.url .. "/ucwa/oauth/v1/applications/101/events?ack=1")
    assert.is_true(call(st, "set", "bot", 0, { channel = require("cjson").encode{ url = planted, ack = 1 } }))
    local c2 = helpers.client(sim, { store = st, store_key = "bot" })
    local restored = false
    c2:on("restored", function() restored = true end)
    c2:start()
    helpers.drive(c2, function() return restored and c2._session.channel end, 5, "restored")
    assert.matches("^http://127%.0%.0%.1:", c2._session.channel:url())
    assert.is_nil(listener:accept(), "a request went to the planted host")
  end)
end)
