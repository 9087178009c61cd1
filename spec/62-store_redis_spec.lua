-- The Redis binding (eng:redis, src/redis.c) and the Redis store
-- (ucwa.store_redis): commands and replies, errors, a dead or slow Redis,
-- the store interface's round trip, leases and fencing. Each block starts a
-- redis-server of its own on 127.0.0.1 at a free port.
local core = require "ucwa.core"
local helpers = require "helpers"
local R = require "support.redis_server"
local store_redis = require "ucwa.store_redis"

local SLOW = helpers.SLOW

-- steps eng until pred() holds; raises after `secs`
local function drive(eng, pred, secs, what)
  local deadline = eng:now() + (secs or 5) * SLOW
  while not pred() do
    if eng:now() > deadline then error("timed out waiting for " .. (what or "a condition"), 2) end
    eng:step(0.02)
  end
end

-- runs one command and waits for its answer
local function call(eng, r, args)
  local got
  assert(r:command(args, function(rep, err) got = { rep, err } end))
  drive(eng, function() return got end, 5, table.concat(args, " "))
  return got[1], got[2]
end

describe("eng:redis", function()
  local srv, eng
  before_each(function()
    srv = R.start()
    eng = core.engine{}
  end)
  after_each(function()
    eng:close()
    srv:stop()
  end)

  it("runs commands and reads every kind of reply", function()
    local r = eng:redis{ host = srv.host, port = srv.port }
    assert.equal("connecting", r:state())
    assert.equal("OK", call(eng, r, { "SET", "k", "a\0b\255" }))
    assert.equal("ready", r:state())
    assert.equal("a\0b\255", call(eng, r, { "GET", "k" }))
    assert.equal(core.null, call(eng, r, { "GET", "missing" }))
    assert.equal(3, call(eng, r, { "RPUSH", "l", 1, "two", 3.5 }))
    assert.same({ "1", "two", "3.5" }, call(eng, r, { "LRANGE", "l", 0, -1 }))
    assert.equal("PONG", call(eng, r, { "PING" }))
    local rep = call(eng, r, { "EVAL", "return {7, 'x', false, redis.error_reply('BAD inner')}", 0 })
    assert.equal(7, rep[1])
    assert.equal("x", rep[2])
    assert.equal(core.null, rep[3])
    assert.equal("RedisError", rep[4].code)
    assert.equal("BAD inner", rep[4].message)
    local nothing, err = call(eng, r, { "INCR", "k" })
    assert.is_nil(nothing)
    assert.equal("RedisError", err.code)
    assert.equal("ERR", err.subcode)
    assert.matches("not an integer", err.message)
    assert.equal(0, r:pending())
    r:close()
    assert.equal("closed", r:state())
  end)

  it("delivers replies in order, many in flight", function()
    local r = eng:redis{ host = srv.host, port = srv.port }
    local got = {}
    for _ = 1, 2000 do
      r:command({ "INCR", "n" }, function(rep) got[#got + 1] = rep end)
    end
    assert.equal(2000, r:pending())
    drive(eng, function() return #got == 2000 end)
    for i = 1, 2000 do assert.equal(i, got[i]) end
  end)

  it("refuses bad arguments at the call", function()
    local r = eng:redis{ host = srv.host, port = srv.port }
    assert.has_error(function() r:command({}, function() end) end)
    assert.has_error(function() r:command({ "SET", {} }, function() end) end)
    assert.has_error(function() r:command({ "PING" }) end)
    assert.has_error(function() eng:redis{ port = 0 } end)
    assert.has_error(function() eng:redis{ prot = 1 } end)
    assert.has_error(function() eng:redis{ host = "a\0b" } end)
  end)

  it("says clearly that nothing listens, and stays usable after", function()
    local port = srv.port
    srv:stop()
    local closed
    local r = eng:redis{ host = "127.0.0.1", port = port, on_close = function(e) closed = e end }
    local got
    r:command({ "PING" }, function(rep, err) got = { rep, err } end)
    drive(eng, function() return closed and got end)
    assert.equal("ConnectionFailed", closed.code)
    assert.matches("refused", closed.message)
    assert.is_nil(got[1])
    assert.equal("ConnectionFailed", got[2].code)
    assert.equal("closed", r:state())
    local ok, err = r:command({ "PING" }, function() end)
    assert.is_nil(ok)
    assert.matches("closed", err.message)
    assert.equal(0, eng:stats().watches)
  end)

  it("fails the commands in flight when Redis dies, then connects again", function()
    local closed
    local r = eng:redis{ host = srv.host, port = srv.port, on_close = function(e) closed = e end }
    assert.equal("PONG", call(eng, r, { "PING" }))
    local got
    -- the reply never comes: the server is killed while it sleeps
    r:command({ "DEBUG", "SLEEP", "2" }, function(rep, err) got = { rep, err } end)
    eng:step(0.05)
    os.execute("kill -KILL " .. srv.pid)
    drive(eng, function() return got and closed end)
    assert.is_nil(got[1])
    assert.equal("ConnectionFailed", got[2].code)
    assert.equal("ConnectionFailed", closed.code)
    srv = R.start()
    local r2 = eng:redis{ host = srv.host, port = srv.port }
    assert.equal("PONG", call(eng, r2, { "PING" }))
  end)

  it("never blocks the engine on a slow Redis, and times out", function()
    local closed
    local r = eng:redis{ host = srv.host, port = srv.port, timeout = 0.6 * SLOW, on_close = function(e) closed = e end }
    assert.equal("PONG", call(eng, r, { "PING" }))
    srv:pause()
    local ticks, got = 0, nil
    local function tick() ticks = ticks + 1; if not got then eng:timer(0.02, tick) end end
    eng:timer(0.02, tick)
    local t0 = eng:now()
    r:command({ "PING" }, function(rep, err) got = { rep, err } end)
    drive(eng, function() return got and closed end)
    local waited = eng:now() - t0
    srv:resume()
    assert.is_nil(got[1])
    assert.equal("Timeout", got[2].code)
    assert.equal("Timeout", closed.code)
    assert.is_true(waited >= 0.55 * SLOW, "waited " .. waited)
    -- the timers kept running while Redis hung: ~30 in 0.6 s
    assert.is_true(ticks >= 10, "ticks: " .. ticks)
  end)

  it("keeps a slow command from holding up the engine (DEBUG SLEEP)", function()
    local r = eng:redis{ host = srv.host, port = srv.port }
    assert.equal("PONG", call(eng, r, { "PING" }))
    local ticks, got = 0, nil
    local function tick() ticks = ticks + 1; if not got then eng:timer(0.02, tick) end end
    eng:timer(0.02, tick)
    r:command({ "DEBUG", "SLEEP", "0.5" }, function(rep, err) got = { rep, err } end)
    drive(eng, function() return got end)
    assert.equal("OK", got[1])
    assert.is_true(ticks >= 10, "ticks: " .. ticks)
  end)

  it("cancels the commands waiting on close, and calls nothing when the engine closes", function()
    local r = eng:redis{ host = srv.host, port = srv.port }
    assert.equal("PONG", call(eng, r, { "PING" }))
    local got
    r:command({ "DEBUG", "SLEEP", "0.3" }, function(rep, err) got = { rep, err } end)
    eng:step(0.01)
    r:close()
    r:close()
    drive(eng, function() return got end)
    assert.equal("Cancelled", got[2].code)
    local called = false
    local r2 = eng:redis{ host = srv.host, port = srv.port, on_close = function() called = true end }
    r2:command({ "DEBUG", "SLEEP", "0.3" }, function() called = true end)
    eng:step(0.05)
    eng:close()
    assert.is_false(called)
    assert.equal("closed", r2:state())
  end)

  it("works from a host loop that only polls pollfd() and calls step(0)", function()
    local cqueues = require "cqueues"
    local r = eng:redis{ host = srv.host, port = srv.port }
    local got = {}
    for _ = 1, 50 do r:command({ "INCR", "h" }, function(rep) got[#got + 1] = rep end) end
    local cq = cqueues.new()
    cq:wrap(function()
      local deadline = cqueues.monotime() + 5 * SLOW
      while #got < 50 and cqueues.monotime() < deadline do
        cqueues.poll(eng)
        eng:step(0)
      end
    end)
    assert(cq:loop())
    assert.equal(50, #got)
    assert.equal(50, got[50])
  end)
end)

describe("ucwa.store.redis", function()
  local srv, eng, stores
  local function new_store(opts)
    local o = { host = srv.host, port = srv.port, engine = eng, prefix = "t:" }
    for k, v in pairs(opts or {}) do o[k] = v end
    local s = store_redis.new(o)
    stores[#stores + 1] = s
    return s
  end
  -- calls store method `m` and waits: returns what done got
  local function wait(s, m, ...)
    local got
    local args = table.pack(...)
    args[args.n + 1] = function(...) got = table.pack(...) end
    s[m](s, table.unpack(args, 1, args.n + 1))
    drive(eng, function() return got end, 5, m)
    return table.unpack(got, 1, got.n)
  end
  before_each(function()
    srv = R.start()
    eng = core.engine{}
    stores = {}
  end)
  after_each(function()
    for _, s in ipairs(stores) do s:close() end
    eng:close()
    srv:stop()
  end)

  it("keeps values, the inbox and deletions byte for byte (the store interface)", function()
    local s = new_store()
    assert.equal("redis", s.kind)
    assert.is_true(s.async)
    local id = "user:bot@contoso.com@https://sim"
    assert.is_false(wait(s, "load", id))
    local fence = assert(wait(s, "begin", id))
    local blob = "{\"a\":1}\0\255\r\n"
    assert.is_true(wait(s, "set", id, fence, { session = blob, hosts = "{}", gone = "x" }))
    assert.is_true(wait(s, "set", id, fence, { gone = false }))
    assert.is_true(wait(s, "inbox_put", id, fence, 12, "batch 12", { channel = "{\"ack\":13}" }))
    assert.is_true(wait(s, "inbox_put", id, fence, 3, "batch 3", {}))
    assert.is_true(wait(s, "inbox_put", id, fence, 12, "batch 12 again", nil))
    local snap = wait(s, "load", id)
    assert.same({ session = blob, hosts = "{}", channel = "{\"ack\":13}" }, snap.values)
    assert.same({ { seq = 3, data = "batch 3" }, { seq = 12, data = "batch 12 again" } }, snap.inbox)
    assert.is_true(wait(s, "inbox_done", id, fence, 3))
    snap = wait(s, "load", id)
    assert.same({ { seq = 12, data = "batch 12 again" } }, snap.inbox)
    -- another identity is untouched by all that
    assert.is_false(wait(s, "load", "user:other"))
    assert.is_true(wait(s, "clear", id, fence))
    assert.is_false(wait(s, "load", id))
    assert.is_true((s:holds(id)))
    -- the keys live under the prefix, one hash tag per identity
    assert.equal(1, srv:cli("EXISTS", "t:{" .. id .. "}:lease"))
  end)

  it("raises on wrong arguments", function()
    local s = new_store()
    assert.has_error(function() s:load("", function() end) end)
    assert.has_error(function() s:load("x") end)
    assert.has_error(function() s:set("x", "1", { k = 1 }, function() end) end)
    assert.has_error(function() store_redis.new{ prefx = "a" } end)
    assert.has_error(function() store_redis.new{ lease = 0 } end)
  end)

  it("gives one lease an identity at a time, with a new fence each time", function()
    local a = new_store{ owner = "A", lease = 0.5 * SLOW }
    local b = new_store{ owner = "B", lease = 0.5 * SLOW }
    local fa = assert(wait(a, "acquire", "bot1"))
    local no, owner, ttl = wait(b, "acquire", "bot1")
    assert.is_false(no)
    assert.equal("A", owner)
    assert.is_true(ttl > 0)
    -- A renews it (every lease/3): after three leases it is still A's
    local t0 = eng:now()
    drive(eng, function() return eng:now() - t0 > 1.5 * SLOW end)
    assert.is_true((a:holds("bot1")))
    assert.equal("A", (wait(b, "owner_of", "bot1")))
    -- released, B takes it with a newer fence
    assert.is_true(wait(a, "release", "bot1"))
    local fb = assert(wait(b, "acquire", "bot1"))
    assert.is_true(tonumber(fb) > tonumber(fa))
    local nob, err = wait(a, "begin", "bot1")
    assert.is_nil(nob)
    assert.equal("LeaseLost", err.subcode)
  end)

  it("refuses a stale fence's write (the script checks it) and tells on_lost", function()
    local a = new_store{ owner = "A", lease = 30 }
    local b = new_store{ owner = "B", lease = 30 }
    local lost = {}
    a:on_lost(function(id, err) lost[#lost + 1] = { id, err } end)
    local fa = assert(wait(a, "begin", "bot1"))
    assert.is_true(wait(a, "set", "bot1", fa, { k = "from A" }))
    -- A is partitioned (it still trusts its lease): the lease lapses at
    -- Redis and B takes the identity over
    srv:cli("DEL", "t:{bot1}:lease")
    local fb = assert(wait(b, "begin", "bot1"))
    assert.is_true(wait(b, "set", "bot1", fb, { k = "from B" }))
    local ok, err = wait(a, "set", "bot1", fa, { k = "stale A" })
    assert.is_nil(ok)
    assert.equal("Conflict", err.code)
    assert.equal("LeaseLost", err.subcode)
    ok, err = wait(a, "inbox_put", "bot1", fa, 1, "stale", { k = "stale A" })
    assert.is_nil(ok)
    assert.equal("LeaseLost", err.subcode)
    assert.equal("from B", wait(b, "load", "bot1").values.k)
    assert.equal(1, #lost)
    assert.equal("bot1", lost[1][1])
    assert.is_false((a:holds("bot1")))
  end)

  it("stops trusting a lease it cannot renew, and writes nothing after", function()
    local a = new_store{ owner = "A", lease = 0.6 * SLOW, timeout = 10 }
    local lost
    a:on_lost(function(id, err) lost = { id, err } end)
    local fa = assert(wait(a, "begin", "bot1"))
    srv:pause() -- renewals get no answer
    local t0 = eng:now()
    drive(eng, function() return lost end, 5)
    local after = eng:now() - t0
    assert.is_true(after <= 0.6 * SLOW, "lost after " .. after)
    assert.equal("LeaseLost", lost[2].subcode)
    local writes = a.stats.writes
    local ok, err = wait(a, "set", "bot1", fa, { k = "late" })
    assert.is_nil(ok)
    assert.equal("LeaseLost", err.subcode)
    assert.equal(writes, a.stats.writes)
    srv:resume()
  end)

  it("reconnects with backoff after Redis restarts", function()
    local port = srv.port
    local s = new_store{ reconnect = { initial = 0.05, max = 0.2 } }
    assert(wait(s, "begin", "bot1"))
    srv:stop()
    local ok, err = wait(s, "load", "bot1")
    assert.is_nil(ok)
    assert.equal("StoreError", err.code)
    -- the same port again
    srv = R.start{ port = port }
    local t0 = eng:now()
    local snap
    drive(eng, function()
      if not snap and s.conn and s.conn:state() == "ready" then snap = wait(s, "load", "bot1") end
      return snap ~= nil
    end, 10, "the store back")
    assert.is_false(snap)
    assert.is_true(s.stats.reconnects >= 1)
    assert.is_true(eng:now() - t0 < 5)
  end)

  it("runs on the engine of the first client made with it, and carries a session on", function()
    local sim = helpers.sim{ app_idle = 120 }
    local ok, err = pcall(function()
      local s = store_redis.new{ host = srv.host, port = srv.port, prefix = "c:" }
      stores[#stores + 1] = s
      assert.has_error(function() s:load("x", function() end) end, nil)
      local c1 = helpers.client(sim, { store = s, store_key = "bot" })
      assert.equal(c1.engine, s.engine)
      local ready = false
      c1:on("ready", function() ready = true end)
      c1:start()
      helpers.drive(c1, function() return ready end, 10, "ready")
      local app = c1.application.href
      -- stored in Redis, under the identity
      helpers.drive(c1, function() return srv:cli("HEXISTS", "c:{bot}:values", "application") == 1 end, 5)
      c1:release()
      -- another client on the same store carries the same application on
      local c2 = helpers.client(sim, { store = s, store_key = "bot", engine = s.engine })
      local restored
      c2:on("restored", function(info) restored = info end)
      c2:start()
      helpers.drive(c2, function() return restored end, 10, "restored")
      assert.equal(app, c2.application.href)
      -- a client on another engine cannot share it
      assert.has_error(function() helpers.client(sim, { store = s, store_key = "bot2" }) end)
      c2:release()
      helpers.close_clients()
    end)
    sim:stop()
    assert(ok, err)
  end)
end)
