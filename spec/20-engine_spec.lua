-- The transport: core.engine, requests, timers, step, url helpers.
local core = require "ucwa.core"
local cjson = require "cjson.safe"
local helpers = require "helpers"
local util = require "support.peer_util"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs Lua `code` in a child process (the sanitized interpreter under `make check`)
-- with the environment `env` and, when given, a soft descriptor limit; returns its
-- output lines (stdout and stderr) and whether it exited 0.
local function child(code, env, nofile)
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write("package.cpath = ", ("%q"):format(helpers.build .. "/?.so;"), " .. package.cpath\n", code)
  f:close()
  local envs = {}
  for k, v in pairs(env or {}) do envs[#envs + 1] = k .. "=" .. quote(v) end
  local cmd = ("%s env -u no_proxy -u NO_PROXY %s timeout -k 2 60 %s %s 2>&1"):format(
    nofile and ("ulimit -S -n %d &&"):format(nofile) or "", table.concat(envs, " "), quote(helpers.lua), quote(file))
  local p = assert(io.popen("sh -c " .. quote(cmd)))
  local lines = {}
  for l in p:lines() do lines[#lines + 1] = l end
  local ok = p:close()
  os.remove(file)
  return lines, ok
end

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
    helpers.drive(eng, function() collectgarbage() return got ~= nil end, 20)
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
    helpers.drive(eng, function() return calls > 0 end)
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
    helpers.drive(eng, function() return #order == 4 end)
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
    helpers.drive(eng, function() return msg ~= nil end)
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
    helpers.drive(eng, function() return got end)
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
    helpers.drive(eng, function() return done == 200 end, 20)
    assert.equal(200, ok)
    assert.same({ transfers = 0, timers = 0, ready = 0, channels = 0, watches = 0 }, eng:stats())
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

  it("raises argument errors naming the closest option for unknown keys", function()
    local function err_of(f)
      local ok, err = pcall(f)
      assert.is_false(ok)
      return err
    end
    assert.matches("bad argument #1 to 'engine' (unknown option 'max_bdy' (did you mean 'max_body'?))",
      err_of(function() core.engine{ max_bdy = 1 } end), 1, true)
    assert.matches("bad argument #1 to 'request' (unknown option 'callbak' (did you mean 'callback'?))",
      err_of(function() eng:request{ url = "http://x/", callbak = print } end), 1, true)
    assert.matches("unknown option 'zzz' (known: method, url, headers, body, timeout, callback)",
      err_of(function() eng:request{ url = "http://x/", callback = print, zzz = 1 } end), 1, true)
    assert.matches("option names must be strings",
      err_of(function() core.engine{ "verify" } end), 1, true)
  end)

  -- the options nothing used are gone: error_factory (error objects come from
  -- the one constructor, core.error) and http2 (untested)
  it("refuses the removed options error_factory and http2", function()
    for _, o in ipairs{ { error_factory = function(t) return t end }, { http2 = true } } do
      local ok, err = pcall(core.engine, o)
      assert.is_false(ok)
      assert.matches("unknown option", err, 1, true)
    end
  end)

  it("raises on options of the wrong type or out of range", function()
    local cases = {
      { { verify = "yes" }, "option 'verify' must be a boolean (got string)" },
      { { timeout = -1 }, "option 'timeout' must be between 0 and inf (got -1)" },
      { { timeout = 0 / 0 }, "option 'timeout' must be between" },
      { { max_connections = 1e9 }, "option 'max_connections' must be between 0 and 1e+06" },
      { { proxy = true }, "option 'proxy' must be a string or false" },
      { { user_agent = "bot\0x" }, "option 'user_agent' contains a NUL byte" },
      { { ca_file = 5 }, "option 'ca_file' must be a string (got number)" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(core.engine, c[1])
      assert.is_false(ok)
      assert.matches(c[2], err, 1, true)
    end
    local function req(o)
      o.url = o.url or "http://x/"
      o.callback = o.callback or print
      local ok, err = pcall(function() return eng:request(o) end)
      assert.is_false(ok)
      return err
    end
    assert.matches("option 'timeout' must be between", req{ timeout = -2 }, 1, true)
    assert.matches("option 'body' must be a string (got number)", req{ body = 5 }, 1, true)
    assert.matches("option 'headers' must be a table", req{ headers = "x" }, 1, true)
    assert.matches("option 'callback' must be a function", req{ callback = 1 }, 1, true)
    assert.matches("option 'method' must be an upper-case token", req{ method = "get" }, 1, true)
    assert.matches("option 'method' contains a NUL byte", req{ method = "GET\0X" }, 1, true)
  end)

  -- regression: C cut URLs at a NUL byte, so "http://evil\0.good.com/x" was
  -- requested, and resolved, as "http://evil/"
  it("refuses a URL with a NUL byte in requests and the URL helpers", function()
    local ok, err = pcall(function() return eng:request{ url = "http://evil\0.good.com/x", callback = print } end)
    assert.is_false(ok)
    assert.matches("option 'url' contains a NUL byte", err, 1, true)
    assert.equal(0, eng:stats().transfers)
    local u, why = core.url_resolve("http://evil\0.good.com/x", "y")
    assert.is_nil(u)
    assert.matches("NUL byte", why, 1, true)
    u, why = core.url_resolve("https://good.com/", "http://evil\0.good.com/x")
    assert.is_nil(u)
    assert.matches("NUL byte", why, 1, true)
    u, why = core.url_with_query("http://evil\0.good.com/x", { a = 1 })
    assert.is_nil(u)
    assert.matches("NUL byte", why, 1, true)
    u, why = core.url_with_query("http://good.com/x", { a = "1\0&admin=1" })
    assert.is_nil(u)
    assert.matches("NUL bytes", why, 1, true)
  end)

  it("refuses TLS to a plain HTTP port", function()
    local _, err = util.fetch(eng, { url = "https://127.0.0.1:" .. peer.port .. "/", timeout = 5 })
    assert.is_truthy(err.code == "TlsError" or err.code == "NetworkError")
  end)

  it("makes transport errors with the one error constructor", function()
    local _, err = util.fetch(eng, { url = "http://127.0.0.1:1/" })
    assert.equal(core.error_mt, getmetatable(err))
    assert.equal("NetworkError", err.code)
    assert.equal("http://127.0.0.1:1/", err.url)
    assert.is_number(err.curl_code)
    assert.equal("NetworkError: " .. err.message, tostring(err))
  end)
end)

describe("the descriptor limit", function()
  local peer = util.use_peer()

  -- regression: the first engine raised the process's RLIMIT_NOFILE to its hard
  -- limit behind the host's back; now the limit is the host's, and a transfer that
  -- cannot get a socket says so
  it("is left as the host set it; transfers past it fail with TooManyOpenFiles", function()
    local lines, ok = child(([[
      local core = require "ucwa.core"
      local function nofile()
        for l in io.lines("/proc/self/limits") do
          local soft = l:match("^Max open files%%s+(%%d+)")
          if soft then return soft end
        end
      end
      local before = nofile()
      local eng = core.engine{ timeout = 10 }
      print("limit", before, nofile())
      local done, over, msg = 0, 0, nil
      for i = 1, 80 do
        eng:request{ url = %q .. "/echo?delay=1&i=" .. i, callback = function(_, e)
          done = done + 1
          if e and e.subcode == "TooManyOpenFiles" then over, msg = over + 1, e.code .. ": " .. e.message end
        end }
      end
      while done < 80 do eng:step(0.2) end
      eng:close()
      print("over", over, msg)
    ]]):format(peer.base), nil, 48)
    assert(ok, table.concat(lines, "\n"))
    assert.equal("limit 48 48", lines[1]:gsub("\t", " "))
    local over, msg = lines[2]:match("^over\t(%d+)\t(.*)$")
    assert.is_truthy(over, table.concat(lines, "\n"))
    assert.is_true(tonumber(over) > 0)
    assert.matches("^NetworkError: cannot open a socket: Too many open files", msg)
    assert.matches("RLIMIT_NOFILE", msg, 1, true)
  end)
end)

describe("core.engine through a forward proxy", function()
  local peer = util.use_peer()
  local proxy = util.use_peer("http_proxy.py")

  -- the proxy's own counts (asked directly, not through it)
  local function proxied()
    local e = core.engine{ proxy = false }
    local r = assert(util.fetch(e, { url = proxy.base .. "/_proxy" }))
    e:close()
    return cjson.decode(r.body)
  end

  before_each(function()
    local e = core.engine{ proxy = false }
    util.fetch(e, { method = "POST", url = proxy.base .. "/_proxy/reset" })
    e:close()
  end)

  it("sends requests and the event channel's P-GETs through the 'proxy' option", function()
    local eng = core.engine{ proxy = proxy.base, timeout = 10 }
    local resp = assert(util.fetch(eng, { url = peer.base .. "/echo?via=proxy", headers = { ["X-Test"] = "p" } }))
    assert.equal(200, resp.status)
    local e = cjson.decode(resp.body)
    assert.equal("/echo?via=proxy", e.path)
    assert.equal("p", e.headers["x-test"])
    resp = assert(util.fetch(eng, { method = "POST", url = peer.base .. "/echo?status=201", body = "b" }))
    assert.equal(201, resp.status)
    local n, ch = 0, nil
    ch = eng:channel{ url = peer.base .. "/proxyapp/events?ack=1", on_batch = function()
      n = n + 1
      if n == 2 then ch:stop() end
    end }
    ch:start()
    helpers.drive(eng, function() return n == 2 end)
    eng:close()
    -- (the P-GET for batch 3 went out before on_batch(2) stopped the channel: it
    -- may have reached the proxy)
    local st = proxied()
    assert.is_true(st.requests == 4 or st.requests == 5, "requests: " .. st.requests)
    assert.same({ peer.base .. "/echo?via=proxy", peer.base .. "/echo?status=201",
      peer.base .. "/proxyapp/events?ack=1&timeout=180", peer.base .. "/proxyapp/events?ack=2&timeout=180" },
      { table.unpack(st.urls, 1, 4) })
  end)

  it("tunnels HTTPS through the proxy (CONNECT), verifying the server's certificate", function()
    local dir = util.make_cert()
    local tls = util.start("http_peer.py", ("--tls %s/cert.pem %s/key.pem"):format(dir, dir))
    local ok, err = pcall(function()
      local url = "https://127.0.0.1:" .. tls.port .. "/echo?tls"
      local eng = core.engine{ proxy = proxy.base, ca_file = dir .. "/cert.pem" }
      local resp = assert(util.fetch(eng, { url = url }))
      assert.equal(200, resp.status)
      assert.equal("/echo?tls", cjson.decode(resp.body).path)
      eng:close()
      eng = core.engine{ proxy = proxy.base }    -- the system store does not know it
      local _, terr = util.fetch(eng, { url = url })
      assert.equal("TlsError", terr.code)
      eng:close()
      local st = proxied()
      assert.equal(2, st.connects)
      assert.equal(0, st.requests)
    end)
    tls.stop()
    os.execute("rm -rf " .. dir)
    assert(ok, err)
  end)

  it("goes direct with proxy = false even when http_proxy is set; the environment's proxy otherwise", function()
    local lines, ok = child(([[
      local core = require "ucwa.core"
      local function get(opts)
        local eng = core.engine(opts)
        local got
        eng:request{ url = %q, callback = function(r, e) got = r and r.status or e.code end }
        while not got do eng:step(0.1) end
        eng:close()
        return got
      end
      print(get{ proxy = false }, get{})
    ]]):format(peer.base .. "/echo?env"), { http_proxy = proxy.base })
    assert(ok, table.concat(lines, "\n"))
    assert.equal("200\t200", lines[1])
    assert.same({ peer.base .. "/echo?env" }, proxied().urls)
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

describe("core.url_parts and core.url_origin", function()
  it("split an http(s) URL with libcurl's parser: lower case, the default port filled in", function()
    assert.same({ scheme = "https", host = "pool2.contoso.com", port = 443, path = "/ucwa/oauth/v1/applications",
                  query = "x=1&ack=2" },
      core.url_parts("HTTPS://Pool2.Contoso.COM/ucwa/oauth/v1/applications?x=1&ack=2#frag"))
    assert.same({ scheme = "http", host = "lyncdiscover.contoso.com", port = 8080, path = "/" },
      core.url_parts("http://lyncdiscover.contoso.com:8080"))
    assert.same({ scheme = "http", host = "[::1]", port = 80, path = "/x" }, core.url_parts("http://[::1]/x"))
    assert.equal("", core.url_parts("http://h/?").query)
  end)

  it("give the origin a credential is bound to, normalised", function()
    assert.equal("https://pool2.contoso.com:443", core.url_origin("https://POOL2.contoso.com/ucwa?a=b"))
    assert.equal("https://pool2.contoso.com:443", core.url_origin("https://pool2.contoso.com:443/other"))
    assert.equal("http://pool2.contoso.com:80", core.url_origin("http://user:pw@pool2.contoso.com/"))
    assert.equal("https://pool2.contoso.com:4443", core.url_origin("https://pool2.contoso.com:4443/"))
    assert.equal("http://[fe80::1]:8080", core.url_origin("http://[FE80::1]:8080/"))
    -- percent escapes in a host name are decoded, so they cannot hide one
    assert.equal("https://example.com:443", core.url_origin("https://ex%41mple.com/"))
    assert.is_true(core.url_origin("http://h/") ~= core.url_origin("https://h/"))
  end)

  it("return nil and why for what is not an absolute http(s) URL", function()
    for _, u in ipairs{ "/relative", "//h/p", "h/p", "ftp://h/", "file:///etc/passwd", "http://h:99999/",
                        "http://h x/", "" } do
      local t, err = core.url_parts(u)
      assert.is_nil(t, u)
      assert.matches("^cannot read URL: ", err)
      local o, err2 = core.url_origin(u)
      assert.is_nil(o, u)
      assert.equal(err, err2)
    end
    assert.has_error(function() core.url_parts(nil) end)
    assert.has_error(function() core.url_origin({}) end)
  end)

  -- a NUL byte would cut the URL short in C: "http://evil\0.good.com" is not good.com's
  it("refuse a NUL byte", function()
    local t, err = core.url_parts("http://evil\0.good.com/x")
    assert.is_nil(t)
    assert.matches("NUL byte", err, 1, true)
    t, err = core.url_origin("https://good.com/\0")
    assert.is_nil(t)
    assert.matches("NUL byte", err, 1, true)
  end)
end)

describe("core.engine option resolve", function()
  -- loopback addresses other than 127.0.0.1 work without set-up
  local discover = util.use_peer("http_peer.py", "--bind 127.0.0.2")
  local pool = util.use_peer("http_peer.py", "--bind 127.0.0.3")

  it("reaches loopback listeners by real host names", function()
    local eng = core.engine{ resolve = {
      "lyncdiscover.contoso.com:" .. discover.port .. ":127.0.0.2",
      "pool2.contoso.com:" .. pool.port .. ":127.0.0.3",
    } }
    local r, err = util.fetch(eng, { url = "http://lyncdiscover.contoso.com:" .. discover.port .. "/whoami" })
    assert.is_nil(err)
    assert.same({ address = "127.0.0.2", host = "lyncdiscover.contoso.com:" .. discover.port }, cjson.decode(r.body))
    assert.equal("http://lyncdiscover.contoso.com:" .. discover.port .. "/whoami", r.url)
    r = assert(util.fetch(eng, { url = "http://POOL2.contoso.com:" .. pool.port .. "/whoami" }))
    assert.equal("127.0.0.3", cjson.decode(r.body).address)
    -- and the event channel's P-GETs too
    local got
    local ch = eng:channel{ url = "http://pool2.contoso.com:" .. pool.port .. "/app/events?ack=1",
      on_batch = function(_, url) got = url end }
    ch:start()
    helpers.drive(eng, function() return got end)
    ch:close()
    assert.matches("^http://pool2%.contoso%.com:%d+/app/events%?ack=1", got)
    eng:close()
  end)

  it("is checked like the other options", function()
    local function err_of(v)
      local ok, err = pcall(core.engine, { resolve = v })
      assert.is_false(ok)
      return err
    end
    assert.matches("option 'resolve' must be a table", err_of("h:80:127.0.0.2"), 1, true)
    assert.matches("option 'resolve' must be an array", err_of({ h = "h:80:127.0.0.2" }), 1, true)
    assert.matches("option 'resolve' entry 1 must be a string (got number)", err_of({ 5 }), 1, true)
    assert.matches("option 'resolve' entry 2 contains a NUL byte", err_of({ "h:80:127.0.0.2", "h:80:1\0" }), 1, true)
    for _, bad in ipairs{ "h", "h:80", "h:80:", ":80:127.0.0.2", "h:x:127.0.0.2", "h:0:127.0.0.2",
                          "h:70000:127.0.0.2", "h:80:evil.example", "h/x:80:127.0.0.2" } do
      assert.matches('option \'resolve\' entry 1 must be "host:port:address"', err_of({ bad }), 1, true)
    end
    core.engine{ resolve = { "h:80:127.0.0.2,127.0.0.3", "+h2:443:[::1]", "[::1]:80:127.0.0.1" } }:close()
  end)
end)

describe("header caps", function()
  local peer = util.use_peer()
  local eng
  before_each(function() eng = core.engine{ timeout = 10 } end)
  after_each(function() eng:close() end)

  -- regression: a 10 MB token made every request fail as "Out of memory"
  -- (libcurl's), and sign-in retried forever
  it("fails a request with a header over max_header as BadRequest/HeaderTooLarge, sending nothing", function()
    local token = "Bearer " .. ("s"):rep(10 * 1024 * 1024)
    local stats = function() return cjson.decode(util.fetch(eng, { url = peer.base .. "/stats" }).body).requests end
    local before = stats()
    local got, calls = nil, 0
    eng:request{ url = peer.base .. "/echo", headers = { Authorization = token, Accept = "application/json" },
      callback = function(r, e) calls = calls + 1; got = { r, e } end }
    assert.equal(0, calls)                       -- never from inside request()
    assert.equal(0, eng:stats().transfers)
    helpers.drive(eng, function() return calls > 0 end)
    assert.is_nil(got[1])
    local err = got[2]
    assert.equal(core.error_mt, getmetatable(err))
    assert.same({ "BadRequest", "HeaderTooLarge" }, { err.code, err.subcode })
    local want = ("header 'Authorization' is %d bytes, over max_header (65536 bytes)")
      :format(#"Authorization: " + #token)
    assert.matches(want, err.message, 1, true)
    assert.is_nil(tostring(err):find("sss", 1, true))
    assert.equal(peer.base .. "/echo", err.url)
    assert.equal(before + 1, stats())            -- only the /stats request itself
    eng:step(0.05)
    assert.equal(1, calls)
    -- the cap is an option; what is under it is sent
    eng:close()
    eng = core.engine{ max_header = 1024 }
    local r = assert(util.fetch(eng, { url = peer.base .. "/echo", headers = { Authorization = ("s"):rep(1000) } }))
    assert.equal(200, r.status)
    local _, e1 = util.fetch(eng, { url = peer.base .. "/echo", headers = { Authorization = ("s"):rep(1010) } })
    assert.equal("HeaderTooLarge", e1.subcode)
    -- and libcurl's own limit on a whole request (1 MiB) is met first by ours
    eng:close()
    eng = core.engine{ max_header = 512 * 1024 }
    local _, e2 = util.fetch(eng, { url = peer.base .. "/echo",
      headers = { A = ("a"):rep(500 * 1024), B = ("b"):rep(500 * 1024) } })
    assert.same({ "BadRequest", "HeaderTooLarge" }, { e2.code, e2.subcode })
    assert.matches("in total", e2.message, 1, true)
  end)

  it("refuses an event channel header over max_header as an argument error, never quoting it", function()
    local big = "Bearer " .. ("t"):rep(100 * 1024)
    local size = #"Authorization: " + #big
    local ok, err = pcall(function()
      return eng:channel{ url = peer.base .. "/app/events", on_batch = print, headers = { Authorization = big } }
    end)
    assert.is_false(ok)
    assert.matches(("bad argument #1 to 'channel' (header 'Authorization' is %d bytes, over max_header"):format(size),
      err, 1, true)
    assert.is_nil(err:find("ttt", 1, true))
    local ch = eng:channel{ url = peer.base .. "/app/events", on_batch = print }
    ok, err = pcall(function() ch:set_header("Authorization", big) end)
    assert.is_false(ok)
    assert.matches(("bad argument #2 to 'set_header' (header 'Authorization' is %d bytes"):format(size), err, 1, true)
    assert.is_nil(err:find("ttt", 1, true))
    ch:set_header("Authorization", "Bearer small")
    ch:close()
  end)

  -- regression: a 1 MB response header gave the same misleading "Out of memory"
  it("fails a response whose headers are over max_response_header as BadResponse/HeaderTooLarge", function()
    local r = assert(util.fetch(eng, { url = peer.base .. "/echo?hsize=60000" }))
    assert.equal(60000, #r.headers["x-big"])
    for _, q in ipairs{ "hsize=70000", "hlines=80", "hsize=1048576" } do
      local url = peer.base .. "/echo?" .. q
      local resp, err = util.fetch(eng, { url = url })
      assert.is_nil(resp, q)
      assert.same({ "BadResponse", "HeaderTooLarge" }, { err.code, err.subcode }, q)
      assert.equal(url, err.url)
      assert.matches(url, err.message, 1, true)
      assert.is_truthy(err.message:find("65536 bytes", 1, true) or err.message:find("102400 bytes", 1, true),
        err.message)
    end
    eng:close()
    eng = core.engine{ max_response_header = 200000 }
    r = assert(util.fetch(eng, { url = peer.base .. "/echo?hlines=150" }))
    assert.equal(200, r.status)
    assert.has_error(function() core.engine{ max_response_header = 10 } end)
    assert.has_error(function() core.engine{ max_header = 2 * 1024 * 1024 } end)
  end)
end)
