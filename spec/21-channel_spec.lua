-- The event channel (P-GET loop) against the scripted peer.
local core = require "ucwa.core"
local cjson = require "cjson.safe"
local helpers = require "helpers"
local util = require "support.peer_util"

local batch_n = util.batch_n

describe("eng:channel", function()
  local peer = util.use_peer()
  local eng
  local app, napp = nil, 0      -- a fresh /appN per test: late requests of the last test stay out

  before_each(function()
    eng = core.engine{ timeout = 10 }
    util.fetch(eng, { method = "POST", url = peer.base .. "/_reset" })
    napp = napp + 1
    app = "/app" .. napp
  end)

  after_each(function()
    eng:close()
    collectgarbage()
  end)

  local function script(actions)
    local r = util.fetch(eng, { method = "POST", url = peer.base .. "/_script?app=" .. app,
      body = cjson.encode(actions) })
    assert.equal(204, r.status)
  end

  local function log()
    return cjson.decode(util.fetch(eng, { url = peer.base .. "/_log?app=" .. app }).body)
  end

  -- a channel recording batches and errors; stops itself after `upto` batches
  local function channel(opts, upto)
    local rec = { batches = {}, errors = {}, urls = {} }
    local o = {
      url = peer.base .. app .. "/events?ack=1",
      headers = { Accept = "application/json" },
      backoff = { initial = 0.01, max = 0.04 },
      on_batch = function(b, url)
        rec.batches[#rec.batches + 1] = batch_n(b)
        rec.urls[#rec.urls + 1] = url
        if upto and #rec.batches >= upto then rec.ch:stop() end
      end,
      on_error = function(e) rec.errors[#rec.errors + 1] = e end,
    }
    for k, v in pairs(opts or {}) do o[k] = v end
    rec.ch = eng:channel(o)
    return rec
  end

  local function range(a, b)
    local t = {}
    for i = a, b do t[#t + 1] = i end
    return t
  end

  it("delivers batches in order, exactly once, across dropped connections and 5xx bursts", function()
    script{ {}, {}, { drop = true }, { status = 503 }, { status = 500 }, {}, { drop = true },
            { drop = true }, {}, { status = 502 }, { status = 429 }, {} }
    local rec = channel(nil, 10)
    rec.ch:start()
    assert.is_true(rec.ch:running())
    helpers.drive(eng, function() return #rec.batches == 10 end, 10)
    assert.same(range(1, 10), rec.batches)
    -- a drop on a kept-alive connection is retried once by libcurl on a fresh one,
    -- so only the second of two drops in a row reaches the channel
    local seen = {}
    for _, e in ipairs(rec.errors) do
      assert.is_true(e.retrying)
      assert.is_nil(e.fatal)
      seen[#seen + 1] = e.status or e.code
    end
    assert.same({ 503, 500, "NetworkError", 502, 429 }, seen)
    assert.equal("ServiceUnavailable", rec.errors[1].code)
    assert.is_false(rec.ch:running())
    assert.equal(0, eng:stats().transfers)
    -- the server saw every ack until acked, with the channel's timeout param added
    local acks = {}
    for i, l in ipairs(log()) do
      if i <= 17 then acks[#acks + 1] = tonumber(l.path:match("ack=(%d+)")) end
    end
    assert.same({ 1, 2, 3, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 7, 8, 9, 10 }, acks)
    assert.equal(app .. "/events?ack=1&timeout=180", log()[1].path)
    assert.equal(peer.base .. app .. "/events?ack=1&timeout=180", rec.urls[1])
  end)

  it("adds the next P-GET before on_batch runs and sends it once the step's callbacks are done", function()
    local seen, ends = {}, {}
    local rec
    rec = channel{ on_batch = function(b)
      seen[#seen + 1] = { n = batch_n(b), pending = rec.ch:pending(), transfers = eng:stats().transfers }
      local t = util.monotime()
      while util.monotime() - t < 0.03 do end   -- let the peer log the next request
      ends[batch_n(b)] = util.monotime()
      if batch_n(b) == 3 then rec.ch:stop() end
    end }
    rec.ch:start()
    helpers.drive(eng, function() return #seen == 3 end)
    for _, s in ipairs(seen) do
      assert.equal("request", s.pending)
      assert.equal(1, s.transfers)
    end
    local arrival = {}
    for _, l in ipairs(log()) do arrival[tonumber(l.path:match("ack=(%d+)"))] = l.t end
    -- sending it costs libcurl ~50 us (connection reuse checks, the request,
    -- the send): done after on_batch, that is not in the event's latency
    for n = 1, 2 do
      assert.is_truthy(arrival[n + 1], "P-GET " .. (n + 1) .. " not sent")
      assert.is_true(arrival[n + 1] > ends[n], "P-GET " .. (n + 1) .. " sent before on_batch(" .. n .. ") ended")
    end
    -- on_batch(3) stopped the channel: P-GET 4, added, never went out
    local t = util.monotime()
    while util.monotime() - t < 0.1 do eng:step(0.01) end
    for _, l in ipairs(log()) do assert.is_not.equal("4", l.path:match("ack=(%d+)")) end
  end)

  it("follows resync and resume links (relative or absolute) and keeps the params", function()
    script{ { link = "resync", href = app .. "/events?ack=5" }, { link = "resume", href = "events?ack=9" },
            { href = peer.base .. app .. "/events?ack=20" } }
    local rec = channel({ low = true, timeout = 60 }, 4)
    rec.ch:start()
    helpers.drive(eng, function() return #rec.batches == 4 end)
    assert.same({ 1, 5, 9, 20 }, rec.batches)
    local paths = {}
    for _, l in ipairs(log()) do paths[#paths + 1] = l.path end
    assert.equal(app .. "/events?ack=5&low=true&timeout=60", paths[2])
    assert.equal(app .. "/events?ack=9&low=true&timeout=60", paths[3])
    assert.equal(app .. "/events?ack=20&low=true&timeout=60", paths[4])
  end)

  it("stops on 404 with a fatal error carrying code and subcode", function()
    script{ {}, { status = 404, body = '{"code":"NotFound","subcode":"ApplicationNotFound"}' } }
    local rec = channel()
    rec.ch:start()
    helpers.drive(eng, function() return #rec.errors == 1 end)
    local e = rec.errors[1]
    assert.is_true(e.fatal)
    assert.is_nil(e.retrying)
    assert.equal(404, e.status)
    assert.equal("NotFound", e.code)
    assert.equal("ApplicationNotFound", e.subcode)
    assert.matches("ApplicationNotFound", e.body)
    assert.same({ 1 }, rec.batches)
    assert.is_false(rec.ch:running())
    assert.is_nil(rec.ch:pending())
    assert.equal(0, eng:stats().transfers)
    eng:step(0.1)
    assert.equal(1, #rec.errors)
  end)

  for _, st in ipairs{ 401, 403, 410, 400 } do
    it("stops on " .. st, function()
      script{ { status = st, body = "" } }
      local rec = channel()
      rec.ch:start()
      helpers.drive(eng, function() return #rec.errors == 1 end)
      assert.is_true(rec.errors[1].fatal)
      assert.equal(st, rec.errors[1].status)
      assert.is_false(rec.ch:running())
    end)
  end

  -- regression: a 409 PGetReplaced on the P-GET the channel waits on was
  -- retried, so two processes driving one application replaced each other's
  -- P-GETs forever. The channel has one P-GET at a time: a replacement of the
  -- one it waits on is someone else's.
  it("stops on 409 PGetReplaced for its current P-GET: another client took the channel", function()
    script{ {}, { status = 409, body = '{"code":"Conflict","subcode":"PGetReplaced"}' } }
    local rec = channel(nil, 3)
    rec.ch:start()
    helpers.drive(eng, function() return #rec.errors == 1 end)
    assert.same({ 1 }, rec.batches)
    assert.equal(409, rec.errors[1].status)
    assert.equal("PGetReplaced", rec.errors[1].subcode)
    assert.is_true(rec.errors[1].fatal)
    assert.is_false(rec.ch:running())
  end)

  it("recognises PGetReplaced in an XML body too", function()
    script{ { status = 409, ctype = "application/xml",
              body = '<?xml version="1.0"?><error xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa">'
                .. '<code>Conflict</code><subcode>PGetReplaced</subcode></error>' } }
    local rec = channel(nil, 1)
    rec.ch:start()
    helpers.drive(eng, function() return #rec.errors == 1 end)
    assert.equal("PGetReplaced", rec.errors[1].subcode)
    assert.is_true(rec.errors[1].fatal)
  end)

  -- regression: the channel followed a next/resync/resume link to any host or
  -- scheme, with its Authorization header (the session's token) on it
  for _, target in ipairs{ "http://localhost:%d/app/events?ack=1", "https://127.0.0.1:%d/app/events?ack=1" } do
    local where = target:match("^(%a+://[^:]+)")
    it("refuses an event link to another origin (" .. where .. ") and sends nothing", function()
      local href = target:format(peer.port)
      script{ { link = "resync", href = href } }
      local rec = channel{ headers = { Accept = "application/json", Authorization = "Bearer secret" } }
      rec.ch:start()
      helpers.drive(eng, function() return #rec.errors == 1 end)
      assert.equal("Forbidden", rec.errors[1].code)
      assert.equal("UntrustedLink", rec.errors[1].subcode)
      assert.is_true(rec.errors[1].fatal)
      assert.is_false(rec.ch:running())
      assert.equal(1, #log(), "the link was followed")
    end)
  end

  it("stops on a 409 that is not PGetReplaced", function()
    script{ { status = 409, body = '{"code":"Conflict","subcode":"SomethingElse"}' } }
    local rec = channel()
    rec.ch:start()
    helpers.drive(eng, function() return #rec.errors == 1 end)
    assert.is_true(rec.errors[1].fatal)
    assert.equal("SomethingElse", rec.errors[1].subcode)
    assert.is_false(rec.ch:running())
  end)

  it("backs off exponentially with jitter, and resets after a success", function()
    script{ { status = 503 }, { status = 503 }, { status = 503 }, {}, { status = 503 }, {} }
    local rec = channel({ backoff = { initial = 0.1, max = 0.3 } }, 2)
    rec.ch:start()
    helpers.drive(eng, function() return #rec.batches == 2 end)
    local t = {}
    for _, l in ipairs(log()) do t[#t + 1] = l.t end
    local gaps = {}
    for i = 2, #t do gaps[i - 1] = t[i] - t[i - 1] end
    -- waits: [0.05,0.1], [0.1,0.2], [0.15,0.3] (capped), then 0 after the batch, then [0.05,0.1]
    local lo, hi = { 0.05, 0.1, 0.15, 0, 0.05 }, { 0.1, 0.2, 0.3, 0.1, 0.1 }
    for i = 1, 5 do
      assert.is_true(gaps[i] >= lo[i] - 0.005, ("gap %d: %.3f < %.3f"):format(i, gaps[i], lo[i]))
      assert.is_true(gaps[i] <= hi[i] + 0.15, ("gap %d: %.3f > %.3f"):format(i, gaps[i], hi[i]))
    end
  end)

  it("retries a batch it cannot parse, never skipping it", function()
    script{ {}, { garbage = true }, { nolinks = true } }
    local rec = channel(nil, 3)
    rec.ch:start()
    helpers.drive(eng, function() return #rec.batches == 3 end)
    assert.same({ 1, 2, 3 }, rec.batches)
    assert.equal("ParseError", rec.errors[1].code)
    assert.equal("NoNextLink", rec.errors[2].code)
    assert.is_true(rec.errors[1].retrying and rec.errors[2].retrying)
  end)

  it("retries after a client-side timeout", function()
    script{ { delay = 1 } }
    local rec = channel({ client_timeout = 0.2 }, 1)
    rec.ch:start()
    helpers.drive(eng, function() return #rec.batches == 1 end)
    assert.equal("Timeout", rec.errors[1].code)
    assert.is_true(rec.errors[1].retrying)
  end)

  it("uses a header set with set_header from the next request on (token renewal)", function()
    util.fetch(eng, { method = "POST", url = peer.base .. "/_token", body = "Bearer two" })
    local rec
    rec = channel({ headers = { Authorization = "Bearer one" },
      on_error = function(e)
        rec.errors[#rec.errors + 1] = e
        if e.fatal and e.status == 401 then
          rec.ch:set_header("authorization", "Bearer two")   -- any case replaces
          rec.ch:start()
        end
      end }, 2)
    rec.ch:start()
    helpers.drive(eng, function() return #rec.batches == 2 end)
    assert.same({ 1, 2 }, rec.batches)
    assert.equal(401, rec.errors[1].status)
    -- requests of this channel only (a late one from an earlier test has no auth);
    -- the P-GET after the last batch may or may not have reached the peer yet
    local auths = {}
    for _, l in ipairs(log()) do if l.auth and l.auth ~= "" then auths[#auths + 1] = l.auth end end
    assert.is_true(#auths >= 3, "requests seen: " .. #auths)
    assert.equal("Bearer one", auths[1])
    for i = 2, #auths do assert.equal("Bearer two", auths[i]) end
    assert.has_error(function() rec.ch:set_header("X", "a\r\nb") end)
    rec.ch:set_header("Authorization", nil)
  end)

  it("propagates an on_batch error out of step with the next P-GET already sent", function()
    local rec
    rec = channel({ on_batch = function(b)
      local n = batch_n(b)
      rec.batches[#rec.batches + 1] = n
      if n == 2 then error("bot bug") end
      if n == 3 then rec.ch:stop() end
    end })
    rec.ch:start()
    local err
    local deadline = util.monotime() + 5
    while not err and util.monotime() < deadline do
      local ok, e = pcall(eng.step, eng, 0.05)
      if not ok then err = e end
    end
    assert.matches("bot bug", err)
    assert.equal("request", rec.ch:pending())
    helpers.drive(eng, function() return #rec.batches == 3 end)
    assert.same({ 1, 2, 3 }, rec.batches)
  end)

  it("stop aborts the in-flight P-GET; start resumes at the current URL", function()
    script{ {}, { delay = 3 } }
    local rec = channel()
    rec.ch:start()
    helpers.drive(eng, function() return #rec.batches == 1 and #log() >= 2 end)
    rec.ch:stop()
    rec.ch:stop()
    assert.is_false(rec.ch:running())
    assert.equal(0, eng:stats().transfers)
    assert.equal(peer.base .. app .. "/events?ack=2&timeout=180", rec.ch:url())
    rec.ch:start()
    rec.ch:start()
    helpers.drive(eng, function() return #rec.batches == 2 end)
    assert.same({ 1, 2 }, rec.batches)
    assert.equal(0, #rec.errors)
    rec.ch:close()
    rec.ch:close()
    assert.has_error(function() rec.ch:start() end, "channel is closed")
  end)

  it("is stopped by eng:close and refuses start afterwards", function()
    local rec = channel()
    rec.ch:start()
    eng:step(0.05)
    eng:close()
    assert.is_false(rec.ch:running())
    assert.has_error(function() rec.ch:start() end, "engine is closed")
    rec.ch:close()
  end)

  it("reads batches with core.parse_events: the model of the batch, links and senders", function()
    local got
    local rec = channel({ on_batch = function(b) got = b end }, 1)
    rec.ch:start()
    helpers.drive(eng, function() return got ~= nil end)
    rec.ch:stop()
    assert.matches("ack=1", got.links.self.href)
    assert.matches("ack=2", got.links.next.href)
    assert.equal("me", got.senders[1].rel)
    assert.equal("updated", got.senders[1].events[1].type)
  end)

  -- regression: the channel named a 502 BadGateway while core.parse_error said
  -- ServiceFailure; one status table now (ErrorCode_ref.md has no BadGateway)
  it("names a body-less 502 ServiceFailure, as core.parse_error does", function()
    script{ { status = 502, body = "" } }
    local rec = channel(nil, 1)
    rec.ch:start()
    helpers.drive(eng, function() return #rec.batches == 1 end)
    assert.equal(502, rec.errors[1].status)
    assert.equal("ServiceFailure", rec.errors[1].code)
    assert.equal(core.parse_error("", "application/json", 502).code, rec.errors[1].code)
    assert.equal(core.error_mt, getmetatable(rec.errors[1]))
    assert.equal("502 ServiceFailure: HTTP 502", tostring(rec.errors[1]))
  end)

  it("gives a fatal HTTP error the body, its content type and the URL", function()
    script{ { status = 403, body = '{"code":"Forbidden","subcode":"NoScope","message":"no"}' } }
    local rec = channel()
    rec.ch:start()
    helpers.drive(eng, function() return #rec.errors == 1 end)
    local e = rec.errors[1]
    assert.same({ 403, "Forbidden", "NoScope", "no", "application/json", true },
      { e.status, e.code, e.subcode, e.message, e.content_type, e.fatal })
    assert.matches("NoScope", e.body)
    assert.equal(peer.base .. app .. "/events?ack=1&timeout=180", e.url)
  end)

  -- regression: a server link with a NUL byte was cut there by C ("http://evil\0.good/x"
  -- followed as "http://evil")
  it("refuses an event link with a NUL byte and retries the batch", function()
    script{ { href = "http://evil\0.good.com" .. app .. "/events?ack=2" } }
    local rec = channel(nil, 1)
    rec.ch:start()
    helpers.drive(eng, function() return #rec.errors >= 1 end)
    rec.ch:stop()
    assert.equal("BadLink", rec.errors[1].code)
    assert.matches("NUL", rec.errors[1].message)
    assert.is_true(rec.errors[1].retrying)
    for _, l in ipairs(log()) do assert.matches("^" .. app .. "/events%?ack=1", l.path) end
  end)

  -- regression: a next P-GET that completed inside the send kick was freed with
  -- the previous response, and the channel stalled
  it("runs back to back against a peer that answers at once", function()
    local fast = util.start("peer_fast.lua")
    local n, last, ch = 0, 0, nil
    ch = eng:channel{ url = fast.base .. "/app/events?ack=1",
      on_batch = function(b)
        n = n + 1
        local ack = batch_n(b)
        assert(ack == last + 1, "out of order")
        last = ack
        if n == 300 then ch:stop() end
      end }
    ch:start()
    local ok, err = pcall(helpers.drive, eng, function() return n == 300 end, 10)
    fast.stop()
    assert(ok, err)
    assert.equal(300, last)
  end)

  it("validates its options: unknown keys, types and ranges are argument errors", function()
    local base = { url = peer.base .. "/e", on_batch = print }
    local function try(extra)
      local o = {}
      for k, v in pairs(base) do o[k] = v end
      for k, v in pairs(extra) do o[k] = v end
      local ok, err = pcall(function() return eng:channel(o) end)
      assert.is_false(ok)
      assert.matches("^[^\n]*bad argument #1 to 'channel'", err)
      return err
    end
    assert.matches("unknown option 'on_batc' %(did you mean 'on_batch'%?%)", try{ on_batc = print })
    -- the parse functions are the core's, no longer options
    assert.matches("unknown option 'parse'", try{ parse = core.parse_events })
    assert.matches("unknown option 'parse_error'", try{ parse_error = false })
    assert.matches("unknown option 'backoff.inital' %(did you mean 'backoff.initial'%?%)",
      try{ backoff = { inital = 1 } })
    assert.matches("option 'on_batch' must be a function", try{ on_batch = false })
    assert.matches("option 'url' must be a string", try{ url = 1 })
    assert.matches("option 'url' is not a URL", try{ url = "/relative" })
    assert.matches("option 'url' contains a NUL byte", try{ url = peer.base .. "\0.x/e" })
    assert.matches("option 'timeout' must be between", try{ timeout = -1 })
    assert.matches("option 'buffer_size' must be between", try{ buffer_size = 512 })
    assert.matches("option 'buffer_size' must be between", try{ buffer_size = 1024 * 1024 })
    assert.matches("option 'grace' must be a number", try{ grace = "20" })
    assert.matches("option 'initial' must be between", try{ backoff = { initial = 0 } })
    assert.matches("option 'max' must be between", try{ backoff = { initial = 2, max = 1 } })
    assert.matches("option 'low' must be a boolean, number or string", try{ low = {} })
    assert.matches("bad header name", try{ headers = { ["Bad:Name"] = "x" } })
    assert.matches("header 'X': value contains CR, LF or NUL", try{ headers = { X = "a\r\nb" } })
    assert.has_error(function() eng:channel{ url = peer.base } end)
  end)

  -- A 200 with a batch of the test's making: self and next links (hrefs relative
  -- to the app, e.g. "events?ack=3"), with one event unless empty.
  local function batch_action(self_href, next_href, empty, rel)
    local body = { _links = { self = { href = self_href }, [rel or "next"] = { href = next_href } }, sender = {} }
    if not empty then
      body.sender[1] = { rel = "me", href = "/app/me",
        events = { { link = { rel = "me", href = "/app/me" }, type = "updated" } } }
    end
    return { status = 200, body = cjson.encode(body) }
  end

  local function times()
    local t = {}
    for _, l in ipairs(log()) do t[#t + 1] = l.t end
    return t
  end

  -- on_batch's third argument spares the session a URL parse a batch (issue 16:
  -- ~12 us of the event's latency); it must read the ack as durable.lua does
  it("gives on_batch the ack of the batch's URL as Lua reads it, or nil when not known", function()
    local long = ("9"):rep(19)
    local nexts = { app .. "/events?ack=7", app .. "/events?x=1&ack=08", app .. "/events?ackx=3&ack=4a&ack=12",
                    app .. "/events", app .. "/events?ack=" .. long, app .. "/events?ack=10&ack=11", "events?ack=30",
                    app .. "/events?ack=31" }
    local actions = {}
    for i, href in ipairs(nexts) do actions[i] = batch_action(app .. "/events?self=" .. i, href) end
    script(actions)
    local acks, urls = {}, {}
    local rec
    rec = channel({ on_batch = function(_, url, ack)
      urls[#urls + 1] = url
      acks[#urls] = ack
      if #urls == #nexts then rec.ch:stop() end
    end })
    rec.ch:start()
    helpers.drive(eng, function() return #urls == #nexts or #rec.errors > 0 end)
    assert.same({}, rec.errors)
    local function lua_ack(url) -- lua/ucwa/durable.lua's reading
      local q = core.url_parts(url).query
      local ack = q and math.tointeger(tonumber(("&" .. q .. "&"):match("&ack=(%d+)&")))
      return ack and tostring(ack) or false
    end
    for i, url in ipairs(urls) do
      if acks[i] ~= nil then assert.equal(lua_ack(url), acks[i], url) end
    end
    -- its digits ("08" is "8"); the first URL and the one after a relative
    -- link came the full way: not known
    assert.same({ nil, "7", "8", "12", false, nil, "10", nil }, { acks[1], acks[2], acks[3], acks[4], acks[5], acks[6],
      acks[7], acks[8] })
  end)

  -- regression: instant empty batches gave ~2,900 P-GETs/s at 55 % CPU
  it("waits min_interval after an empty batch answered faster than that", function()
    local a = {}
    for i = 1, 4 do a[i] = batch_action(app .. "/events?ack=" .. i, app .. "/events?ack=" .. (i + 1), true) end
    script(a)
    local rec = channel({ min_interval = 0.3 }, 5)
    rec.ch:start()
    helpers.drive(eng, function() return #rec.batches == 1 end)
    assert.equal("pause", rec.ch:pending())       -- the empty batch is delivered, the next P-GET waits
    helpers.drive(eng, function() return #rec.batches == 5 end, 10)
    assert.same({ 1, 2, 3, 4, 5 }, rec.batches)
    assert.equal(0, #rec.errors)
    local t = times()
    for i = 2, 5 do assert.is_true(t[i] - t[i - 1] >= 0.28, ("gap %d: %.3f s"):format(i, t[i] - t[i - 1])) end
    -- a batch with events is followed at once
    assert.is_true(#t < 6 or t[6] - t[5] < 0.25)
  end)

  it("waits 1 s by default, not after a batch with events or a P-GET the server held", function()
    script{ batch_action(app .. "/events?ack=1", app .. "/events?ack=2", true), {}, {},
            { delay = 1.1, status = 200,
              body = batch_action(app .. "/events?ack=4", app .. "/events?ack=5", true).body } }
    local pending = {}
    local rec
    rec = channel({ on_batch = function(b)
      rec.batches[#rec.batches + 1] = batch_n(b)
      pending[#pending + 1] = rec.ch:pending()
      if #rec.batches == 5 then rec.ch:stop() end
    end })
    rec.ch:start()
    helpers.drive(eng, function() return #rec.batches == 5 end, 10)
    assert.same({ 1, 2, 3, 4, 5 }, rec.batches)
    assert.same({ "pause", "request", "request", "request", "request" }, pending)
    local t = times()
    assert.is_true(t[2] - t[1] >= 0.95, ("gap after the empty batch: %.3f s"):format(t[2] - t[1]))
    assert.is_true(t[3] - t[2] < 0.5)
  end)

  it("follows a first resync or resume at once, as servers answer them without holding", function()
    script{ batch_action(app .. "/events?ack=1", app .. "/events?ack=2", true, "resync"),
            batch_action(app .. "/events?ack=2", app .. "/events?ack=3", true, "resume"),
            batch_action(app .. "/events?ack=3", app .. "/events?ack=4", true, "resume") }
    local rec = channel({ min_interval = 0.4 }, 4)
    rec.ch:start()
    helpers.drive(eng, function() return #rec.batches == 4 end)
    local t = times()
    assert.is_true(t[2] - t[1] < 0.3)
    assert.is_true(t[3] - t[2] >= 0.38)            -- the second one in a row waits
  end)

  -- regression: the same next link forever delivered the same events 46,171 times
  it("never delivers a batch twice: a next that does not advance is a RepeatedBatch, fatal after max_repeats",
  function()
    local a = {}
    for i = 1, 30 do a[i] = batch_action(app .. "/events?ack=1", app .. "/events?ack=1") end
    script(a)
    local rec = channel({ min_interval = 0.01 })
    rec.ch:start()
    helpers.drive(eng, function() return rec.errors[#rec.errors] and rec.errors[#rec.errors].fatal end, 10)
    assert.same({ 1 }, rec.batches)
    assert.equal(10, #rec.errors)
    for i, e in ipairs(rec.errors) do
      assert.same({ "BadResponse", "RepeatedBatch", 200 }, { e.code, e.subcode, e.status })
      assert.equal(i, e.failures)
      if i < 10 then assert.is_true(e.retrying) else assert.is_nil(e.retrying) end
    end
    assert.is_true(rec.errors[10].fatal)
    assert.matches("does not advance", rec.errors[1].message)
    assert.matches("sent before", rec.errors[2].message)
    assert.matches("10 in a row: the channel stopped", rec.errors[10].message)
    assert.is_false(rec.ch:running())
    assert.equal(10, #log())
    -- each repeat waited the backoff: no busy loop
    local t = times()
    assert.is_true(t[10] - t[1] >= 9 * 0.005)
  end)

  it("skips a batch it delivered before and follows its next link", function()
    -- the peer's own batch 1 has the self link /appN/events?ack=1&timeout=180
    script{ {}, batch_action(app .. "/events?ack=1&timeout=180", app .. "/events?ack=3"),
            batch_action(app .. "/events?ack=3", app .. "/events?ack=4") }
    local rec = channel({ max_repeats = 2 }, 3)
    rec.ch:start()
    helpers.drive(eng, function() return #rec.batches == 3 end)
    assert.same({ 1, 3, 4 }, rec.batches)
    assert.equal(1, #rec.errors)
    assert.same({ "RepeatedBatch", true }, { rec.errors[1].subcode, rec.errors[1].retrying })
  end)

  it("counts an answer at once with an empty batch and the same next link as a repeat", function()
    local a = {}
    for i = 1, 3 do a[i] = batch_action(app .. "/events?ack=1", app .. "/events?ack=1", true) end
    script(a)
    local rec = channel({ min_interval = 0.05, max_repeats = 3 })
    rec.ch:start()
    helpers.drive(eng, function() return #rec.errors == 3 end)
    assert.same({}, rec.batches)
    assert.is_true(rec.errors[3].fatal)
    assert.equal("RepeatedBatch", rec.errors[3].subcode)
  end)

  -- regression: a batch that failed to parse (DTD, entity, too deep) was retried
  -- forever, the subcode thrown away and nothing reported
  it("reports each unreadable batch with the parser's code and subcode, and stops after max_bad_batches", function()
    local dtd = { status = 200, ctype = "application/xml",
      body = '<?xml version="1.0"?><!DOCTYPE events [<!ENTITY x "y">]><events href="/e"/>' }
    script{ dtd, dtd, { garbage = true }, dtd, dtd, dtd }
    local rec = channel()
    rec.ch:start()
    helpers.drive(eng, function() return #rec.errors == 5 end)
    assert.same({}, rec.batches)
    local subs = {}
    for i, e in ipairs(rec.errors) do
      assert.equal("ParseError", e.code)
      assert.equal(200, e.status)
      assert.equal(i, e.failures)
      assert.matches("ack=1", e.url)
      subs[i] = e.subcode
      if i < 5 then assert.is_true(e.retrying) end
    end
    assert.same({ "DtdNotAllowed", "DtdNotAllowed", "SyntaxError", "DtdNotAllowed", "DtdNotAllowed" }, subs)
    assert.is_true(rec.errors[5].fatal)
    assert.matches("5 in a row: the channel stopped", rec.errors[5].message)
    assert.is_false(rec.ch:running())
    eng:step(0.1)
    assert.equal(5, #rec.errors)
    assert.equal(5, #log())
    -- start() tries again, counting afresh
    rec.ch:start()
    helpers.drive(eng, function() return #rec.batches == 1 end)
    assert.same({ 1 }, rec.batches)
    assert.equal("DtdNotAllowed", rec.errors[6].subcode)
    assert.is_true(rec.errors[6].retrying)
  end)

  it("resets the count of unreadable batches at a good one", function()
    script{ { nolinks = true }, { garbage = true }, {}, { nolinks = true }, { nolinks = true }, {} }
    local rec = channel({ max_bad_batches = 3 }, 2)
    rec.ch:start()
    helpers.drive(eng, function() return #rec.batches == 2 end)
    assert.equal(4, #rec.errors)
    for _, e in ipairs(rec.errors) do assert.is_true(e.retrying) end
    assert.same({ 1, 2, 1, 2 }, { rec.errors[1].failures, rec.errors[2].failures, rec.errors[3].failures,
                                  rec.errors[4].failures })
  end)

  it("reports every network fault with the count of failures in a row", function()
    script{ { drop = true }, { drop = true }, { status = 503 }, { status = 500 }, {} }
    local rec = channel(nil, 1)
    rec.ch:start()
    helpers.drive(eng, function() return #rec.batches == 1 end)
    local f = {}
    for i, e in ipairs(rec.errors) do
      assert.is_true(e.retrying)
      f[i] = e.failures
    end
    assert.same({ 1, 2, 3 }, f)
  end)

  it("checks min_interval, max_bad_batches and max_repeats", function()
    local function try(o)
      o.url, o.on_batch = peer.base .. "/e", print
      local ok, err = pcall(function() return eng:channel(o) end)
      assert.is_false(ok)
      return err
    end
    assert.matches("option 'min_interval' must be between 0 and 3600", try{ min_interval = -1 }, 1, true)
    assert.matches("option 'max_bad_batches' must be between 1 and 1000", try{ max_bad_batches = 0 }, 1, true)
    assert.matches("option 'max_repeats' must be an integer", try{ max_repeats = 2.5 }, 1, true)
    assert.matches("did you mean 'min_interval'", try{ min_intervall = 1 }, 1, true)
  end)

  it("lets an unreachable engine with a running channel be collected", function()
    local weak = setmetatable({}, { __mode = "v" })
    do
      local e = core.engine()
      local ch = e:channel{ url = peer.base .. app .. "/events?ack=1", on_batch = function() end }
      script{ { delay = 1 } }
      ch:start()
      e:step(0.05)
      weak[1], weak[2] = e, ch
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1])
    assert.is_nil(weak[2])
  end)
end)
