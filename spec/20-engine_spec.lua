-- The transport: core.engine, requests, timers, step, url helpers.
local core = require "ucwa.core"
local cjson = require "cjson.safe"
local util = require "support.peer_util"

describe("core.engine", function()
  local peer = util.use_peer()
  local eng

  before_each(function()
    eng = core.engine{ timeout = 10 }
  end)

  after_each(function()
    eng:close()
    collectgarbage()
  end)

  local function fetch(opts)
    if opts.url:sub(1, 1) == "/" then opts.url = peer.base .. opts.url end
    return util.fetch(eng, opts)
  end

  it("round-trips GET with headers", function()
    local resp, err = fetch{ url = "/echo?x=1", headers = { Accept = "application/json", ["X-Test"] = "v1" } }
    assert.is_nil(err)
    assert.equal(200, resp.status)
    assert.equal("application/json", resp.headers["content-type"])
    assert.equal("a, b", resp.headers["x-multi"])
    assert.equal("/where", resp.headers.location)
    assert.equal(peer.base .. "/echo?x=1", resp.url)
    local e = cjson.decode(resp.body)
    assert.equal("GET", e.method)
    assert.equal("/echo?x=1", e.path)
    assert.equal("application/json", e.headers.accept)
    assert.equal("v1", e.headers["x-test"])
    assert.equal("lua-ucwa/0.1", e.headers["user-agent"])
  end)

  it("sends POST, PUT, DELETE and PATCH with bodies", function()
    for _, m in ipairs{ "POST", "PUT", "DELETE", "PATCH" } do
      local body = '{"m":"' .. m .. '"}'
      local resp, err = fetch{ method = m, url = "/echo?status=201", body = body,
        headers = { ["Content-Type"] = "application/json" } }
      assert.is_nil(err)
      assert.equal(201, resp.status)
      local e = cjson.decode(resp.body)
      assert.equal(m, e.method)
      assert.equal(body, e.body)
      assert.equal("application/json", e.headers["content-type"])
      assert.is_nil(e.headers.expect)
    end
  end)

  it("keeps a request body alive until the transfer is done", function()
    local n = 3 * 1024 * 1024
    local suffix = tostring(os.time())
    local got
    do
      local body = string.rep("ab", n // 2) .. suffix   -- a fresh string
      eng:request{ method = "PUT", url = peer.base .. "/echo", body = body,
        callback = function(r) got = r end }
    end
    util.wait(eng, function() collectgarbage() return got ~= nil end, 20)
    assert.equal(200, got.status)
    local e = cjson.decode(got.body)
    assert.equal(n + #suffix, #e.body)
    assert.equal("abab", e.body:sub(1, 4))
  end)

  it("sends a POST without a body as Content-Length: 0 and no form content type", function()
    local resp = fetch{ method = "POST", url = "/echo" }
    local e = cjson.decode(resp.body)
    assert.equal("0", e.headers["content-length"])
    assert.is_nil(e.headers["content-type"])
    local resp2 = fetch{ method = "DELETE", url = "/echo", body = "x" }
    assert.is_nil(cjson.decode(resp2.body).headers["content-type"])
  end)

  it("delivers HTTP errors as responses, not errors", function()
    local resp, err = fetch{ url = "/echo?status=404" }
    assert.is_nil(err)
    assert.equal(404, resp.status)
    resp = fetch{ method = "HEAD", url = "/echo?status=500" }
    assert.equal(500, resp.status)
    assert.equal("", resp.body)
  end)

  it("reuses keep-alive connections", function()
    local before = cjson.decode(fetch{ url = "/stats" }.body).connections
    for _ = 1, 20 do fetch{ url = "/echo" } end
    local after = cjson.decode(fetch{ url = "/stats" }.body).connections
    assert.equal(before, after)
  end)

  it("times out a request with Timeout", function()
    local t0 = util.monotime()
    local resp, err = fetch{ url = "/echo?delay=3", timeout = 0.2 }
    assert.is_nil(resp)
    assert.equal("Timeout", err.code)
    assert.is_string(err.message)
    assert.equal(peer.base .. "/echo?delay=3", err.url)
    assert.is_true(util.monotime() - t0 < 2)
    assert.matches("^Timeout", tostring(err))
  end)

  it("reports a refused connection as NetworkError", function()
    local resp, err = util.fetch(eng, { url = "http://127.0.0.1:1/" })
    assert.is_nil(resp)
    assert.equal("NetworkError", err.code)
  end)

  it("reports a connection closed without an answer as NetworkError", function()
    local _, err = fetch{ url = "/drop" }
    assert.equal("NetworkError", err.code)
  end)

  it("caps bodies at max_body with TooLarge, with or without Content-Length", function()
    eng:close()
    eng = core.engine{ max_body = 1000 }
    local resp = fetch{ url = "/echo?size=1000" }
    assert.equal(1000, #resp.body)
    local _, err = fetch{ url = "/echo?size=5000" }
    assert.equal("TooLarge", err.code)
    _, err = fetch{ url = "/echo?size=200000&chunked=1" }
    assert.equal("TooLarge", err.code)
  end)

  it("never puts header values in error messages", function()
    local _, err = util.fetch(eng, { url = "http://127.0.0.1:1/",
      headers = { Authorization = "Bearer SECRET-TOKEN" } })
    assert.is_nil(tostring(err):find("SECRET", 1, true))
    local ok, msg = pcall(eng.request, eng, { url = "http://x/", callback = print,
      headers = { Authorization = "Bearer SECRET\r\nX: y" } })
    assert.is_false(ok)
    assert.is_nil(msg:find("SECRET", 1, true))
  end)

  it("cancels a request: the callback gets Cancelled once, on the next step", function()
    local calls, got = 0, nil
    local req = eng:request{ url = peer.base .. "/echo?delay=2", callback = function(r, e)
      calls = calls + 1
      got = { r, e }
    end }
    eng:step(0)
    assert.is_true(req:cancel())
    assert.equal(0, calls)
    assert.is_false(req:cancel())
    util.wait(eng, function() return calls > 0 end)
    assert.is_nil(got[1])
    assert.equal("Cancelled", got[2].code)
    eng:step(0.1)
    assert.equal(1, calls)
    assert.equal(0, eng:stats().transfers)
  end)

  it("fires timers in deadline order and cancels them", function()
    local order = {}
    eng:timer(0.06, function() order[#order + 1] = "c" end)
    eng:timer(0.02, function() order[#order + 1] = "a" end)
    local t = eng:timer(0.03, function() order[#order + 1] = "x" end)
    eng:timer(0.04, function() order[#order + 1] = "b" end)
    eng:timer(0.02, function() order[#order + 1] = "a2" end)
    assert.is_true(t:cancel())
    assert.is_false(t:cancel())
    local to = eng:timeout()
    assert.is_true(to > 0 and to <= 0.02)
    util.wait(eng, function() return #order == 4 end)
    assert.same({ "a", "a2", "b", "c" }, order)
    assert.is_nil(eng:timeout())
  end)

  it("refuses a nested step", function()
    local msg
    eng:timer(0, function()
      local ok, e = pcall(eng.step, eng, 0)
      assert(not ok)
      msg = e
    end)
    util.wait(eng, function() return msg ~= nil end)
    assert.matches("nested step", msg)
  end)

  it("propagates a callback error out of step and keeps working", function()
    local n = 0
    eng:timer(0, function() error("boom") end)
    eng:timer(0, function() n = n + 1 end)
    local ok, err = pcall(eng.step, eng, 0.1)
    assert.is_false(ok)
    assert.matches("boom", err)
    assert.equal(0, eng:timeout())       -- the second is still queued
    assert.equal(1, eng:step(0))
    assert.equal(1, n)
    local resp = fetch{ url = "/echo" }
    assert.equal(200, resp.status)
    -- a request callback too
    eng:request{ url = peer.base .. "/echo", callback = function() error({ mine = true }) end }
    local deadline = util.monotime() + 5
    local e2
    repeat
      local ok2, e = pcall(eng.step, eng, 0.05)
      if not ok2 then e2 = e end
    until e2 or util.monotime() > deadline
    assert.same({ mine = true }, e2)
    assert.equal(0, eng:stats().transfers)
  end)

  it("accepts requests and timers made from callbacks", function()
    local got
    eng:timer(0, function()
      eng:request{ url = peer.base .. "/echo", callback = function(r)
        eng:timer(0.01, function() got = r.status end)
      end }
    end)
    util.wait(eng, function() return got end)
    assert.equal(200, got)
  end)

  it("completes 200 concurrent requests", function()
    local done, ok = 0, 0
    for i = 1, 200 do
      eng:request{ url = peer.base .. "/echo?i=" .. i, callback = function(r)
        done = done + 1
        if r and r.status == 200 and cjson.decode(r.body).path == "/echo?i=" .. i then ok = ok + 1 end
      end }
    end
    util.wait(eng, function() return done == 200 end, 20)
    assert.equal(200, ok)
    assert.same({ transfers = 0, timers = 0, ready = 0, channels = 0 }, eng:stats())
  end)

  it("closes idempotently; methods on a closed engine raise", function()
    local called = false
    eng:request{ url = peer.base .. "/echo?delay=1", callback = function() called = true end }
    eng:timer(0, function() called = true end)
    eng:close()
    eng:close()
    assert.is_true(eng:closed())
    for _, m in ipairs{ "step", "pollfd", "timeout", "events", "stats" } do
      assert.has_error(function() eng[m](eng, 0) end, "engine is closed")
    end
    assert.has_error(function() eng:request{ url = "http://x/", callback = print } end, "engine is closed")
    assert.has_error(function() eng:timer(1, print) end, "engine is closed")
    assert.is_false(called)
    do
      local e2 <close> = core.engine()
      e2:timer(10, print)
    end
  end)

  it("closes from inside a callback", function()
    eng:timer(0, function() eng:close() end)
    eng:timer(0, function() error("must not run") end)
    assert.equal(1, eng:step(0))
    assert.is_true(eng:closed())
  end)

  it("collects an unreachable engine with work in flight", function()
    local weak = setmetatable({}, { __mode = "v" })
    do
      local e = core.engine()
      e:request{ url = peer.base .. "/echo?delay=1", callback = function() end }
      e:timer(5, function() end)
      e:step(0)
      weak[1] = e
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1])
  end)

  it("returns from step() at once when idle and waits for work otherwise", function()
    assert.equal(0, eng:step())
    eng:timer(0.02, function() end)
    assert.equal(1, eng:step())
  end)

  it("treats NaN and negative times as zero", function()
    local fired = 0
    eng:timer(0 / 0, function() fired = fired + 1 end)
    eng:timer(-5, function() fired = fired + 1 end)
    assert.equal(2, eng:step(0.5))
    assert.equal(2, fired)
    assert.equal(0, eng:step(0 / 0))
  end)

  it("validates arguments", function()
    assert.has_error(function() eng:request{ url = "http://x/" } end)
    assert.has_error(function() eng:request{ callback = print } end)
    assert.has_error(function() eng:request{ url = "http://x/", callback = print, method = "get x" } end)
    assert.has_error(function() eng:request{ url = "http://x/", callback = print, headers = { ["a b"] = "x" } } end)
    assert.has_error(function() core.engine{ max_body = "x" } end)
  end)

  it("refuses TLS to a plain HTTP port", function()
    local _, err = util.fetch(eng, { url = "https://127.0.0.1:" .. peer.port .. "/", timeout = 5 })
    assert.is_truthy(err.code == "TlsError" or err.code == "NetworkError")
  end)

  it("uses error_factory for error objects", function()
    eng:close()
    eng = core.engine{ error_factory = function(t) t.factory = true return t end }
    local _, err = util.fetch(eng, { url = "http://127.0.0.1:1/" })
    assert.is_true(err.factory)
  end)
end)

describe("core.engine over TLS", function()
  local peer, dir

  setup(function()
    dir = util.make_cert()
    peer = util.start("http_peer.py", ("--tls %s/cert.pem %s/key.pem"):format(dir, dir))
  end)

  teardown(function()
    peer.stop()
    os.execute("rm -rf " .. dir)
  end)

  local function get(opts, url)
    local eng = core.engine(opts)
    local resp, err = util.fetch(eng, { url = url or ("https://127.0.0.1:" .. peer.port .. "/echo") })
    eng:close()
    return resp, err
  end

  it("verifies the peer by default: a self-signed certificate is a TlsError", function()
    local resp, err = get{}
    assert.is_nil(resp)
    assert.equal("TlsError", err.code)
  end)

  it("trusts a certificate given with ca_file", function()
    local resp, err = get{ ca_file = dir .. "/cert.pem" }
    assert.is_nil(err)
    assert.equal(200, resp.status)
  end)

  it("checks the host name even with ca_file", function()
    local _, err = get({ ca_file = dir .. "/cert.pem" }, "https://localhost:" .. peer.port .. "/echo")
    assert.is_truthy(err.code == "TlsError" or err.code == "NetworkError")
  end)

  it("skips verification only with verify = false", function()
    local resp = get{ verify = false }
    assert.equal(200, resp.status)
  end)

  it("reports a missing ca_file as TlsError", function()
    local _, err = get{ ca_file = dir .. "/nope.pem" }
    assert.equal("TlsError", err.code)
  end)
end)

describe("core.url_resolve", function()
  local base = "https://h.example/ucwa/oauth/v1/applications/123/events?ack=4"
  local cases = {
    { "events?ack=5", "https://h.example/ucwa/oauth/v1/applications/123/events?ack=5" },
    { "/ucwa/oauth/v1/applications/123/events?ack=5", "https://h.example/ucwa/oauth/v1/applications/123/events?ack=5" },
    { "../x", "https://h.example/ucwa/oauth/v1/applications/x" },
    { "../../../y/z?q=1", "https://h.example/ucwa/oauth/y/z?q=1" },
    { "./", "https://h.example/ucwa/oauth/v1/applications/123/" },
    { "?ack=9", "https://h.example/ucwa/oauth/v1/applications/123/events?ack=9" },
    { "#f", "https://h.example/ucwa/oauth/v1/applications/123/events?ack=4#f" },
    { "", "https://h.example/ucwa/oauth/v1/applications/123/events?ack=4" },
    { "//other.example/a", "https://other.example/a" },
    { "http://other:8080/p?a=%2F", "http://other:8080/p?a=%2F" },
    { "/people/sip:bob@contoso.com", "https://h.example/people/sip:bob@contoso.com" },
  }
  for _, c in ipairs(cases) do
    it("resolves '" .. c[1] .. "'", function()
      assert.equal(c[2], core.url_resolve(base, c[1]))
    end)
  end
  it("rejects a relative base", function()
    local u, err = core.url_resolve("/relative", "x")
    assert.is_nil(u)
    assert.is_string(err)
  end)
end)

describe("core.url_with_query", function()
  it("appends parameters after existing ones, keeping ack", function()
    assert.equal("http://h/e?ack=1&low=true&timeout=180",
      core.url_with_query("http://h/e?ack=1", { timeout = 180, low = true }))
  end)
  it("replaces a parameter it owns and never edits others", function()
    assert.equal("http://h/e?ack=7&x=a%2Fb&timeout=60",
      core.url_with_query("http://h/e?timeout=180&ack=7&x=a%2Fb", { timeout = 60 }))
  end)
  it("removes a parameter given false", function()
    assert.equal("http://h/e?ack=7", core.url_with_query("http://h/e?ack=7&low=true", { low = false }))
  end)
  it("encodes values", function()
    assert.equal("http://h/e?q=a+b%26c", core.url_with_query("http://h/e", { q = "a b&c" }))
  end)
  it("adds a query to a URL without one and keeps the fragment", function()
    assert.equal("http://h/e?timeout=5#frag", core.url_with_query("http://h/e#frag", { timeout = 5 }))
  end)
  it("fails on a bad URL", function()
    assert.is_nil(core.url_with_query("not a url", { a = 1 }))
  end)
end)
