-- The client's API contract, without a server: options checked when the
-- client is made, callbacks named per object, one return contract for
-- meetings, and timers that end with the client.
local ucwa = require "ucwa"

local BASE = { url = "http://127.0.0.1:9/", username = "bot@contoso.com", password = "x" }

local function opts(extra)
  local o = {}
  for k, v in pairs(BASE) do o[k] = v end
  for k, v in pairs(extra or {}) do
    if v == "nil" then o[k] = nil else o[k] = v end
  end
  return o
end

local function raises(pattern, extra)
  local ok, err = pcall(ucwa.client, opts(extra))
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.matches(pattern, tostring(err))
end

describe("ucwa.client{} options", function()
  -- regression: typos and wrong types were accepted silently
  it("raise on an unknown option, naming the closest known one", function()
    raises("unknown option 'pasword' %(did you mean 'password'%?%)", { pasword = "x", password = "nil" })
    raises("unknown option 'timout' %(did you mean 'timeout'%?%)", { timout = 1 })
    raises("unknown option 'verfy' %(did you mean 'verify'%?%)", { verfy = false })
    raises("unknown option 'backoff.inital' %(did you mean 'backoff.initial'%?%)", { backoff = { inital = 1 } })
    raises("unknown option 'anonymous.displayname'", {
      username = "nil", password = "nil", anonymous = { meeting = "sip:a@b;gruu;opaque=app:conf:focus:id:X",
                                                      displayname = "G" } })
  end)

  it("raise on a wrong type or range when the client is made, not after start()", function()
    raises("option 'event_timeout' must be a number from 180 to 1800, got \"x\"", { event_timeout = "x" })
    -- regression: event_timeout = 60 was sent as is (the documented range is 180..1800)
    raises("option 'event_timeout' must be a number from 180 to 1800, got 60", { event_timeout = 60 })
    raises("option 'aggregation.low' must be a number from 5 to 1800, got 2", { aggregation = { low = 2 } })
    raises("option 'timeout' must be a positive number", { timeout = 0 })
    raises("option 'format' must be \"json\" or \"xml\"", { format = "yaml" })
    raises("option 'engine' must be an engine made by ucwa.engine{}", { engine = "x" })
    raises("option 'log' must be a function", { log = true })
    raises("backoff.max must be >= backoff.initial", { backoff = { initial = 5, max = 1 } })
  end)

  it("raise on credentials that cannot work", function()
    raises("username given without password", { password = "nil" })
    raises("password given without username", { username = "nil" })
    raises("username and password, token, or anonymous expected", { username = "nil", password = "nil" })
    raises("give one of", { token = "cwt=x" })
    raises("url or domain expected", { url = "nil" })
  end)

  it("raise on options an engine= makes meaningless", function()
    local eng = ucwa.engine{}
    for _, k in ipairs{ "verify", "ca_file", "max_body", "proxy" } do
      local v = ({ verify = false, ca_file = "/x.pem", max_body = 10, proxy = "http://127.0.0.1:3128" })[k]
      raises("option '" .. k .. "' configures the client's own engine", { engine = eng, [k] = v })
    end
    eng:close()
  end)

  -- regression: verify = false connected without a word
  it("warn once, in the log and on stderr, when TLS verification is off", function()
    local lines = {}
    local c = ucwa.client(opts{ verify = false, log = function(level, m) lines[#lines + 1] = level .. " " .. m end })
    assert.same({ "warn TLS verification is off (verify = false): the server's certificate is not checked" }, lines)
    c:close()
    local helpers = require "helpers"
    local err = helpers.run_lua([[
      require("ucwa").client{ url = "https://127.0.0.1:9/", username = "u", password = "p", verify = false }:close()
    ]], nil, "2>&1 >/dev/null")
    assert.equal("lua-ucwa: warning: TLS verification is off (verify = false): "
      .. "the server's certificate is not checked\n", err)
  end)

  it("accept every documented option", function()
    local c = ucwa.client(opts{
      format = "xml", user_agent = "bot/1", culture = "en-GB", verify = true, proxy = false, max_body = 1e6,
      timeout = 5, event_timeout = 180, event_grace = 5, backoff = { initial = 1, max = 10 },
      aggregation = { low = 600, medium = 300 },
      activity_interval = 60, available = false, log = function() end,
    })
    assert.equal("new", c.state)
    c:close()
  end)
end)

describe("callbacks on every object", function()
  local c, session
  before_each(function()
    c = ucwa.client(opts())
    session = c._session -- white box: objects are made by the session's registry
  end)
  after_each(function() c:close() end)

  it("raise on an unknown event name, listing the known ones", function()
    local resource = require "ucwa.resource"
    local objects = {
      client = c,
      invitation = resource.new(session, { rel = "onlineMeetingInvitation", href = "/i/1" }),
      conversation = resource.new(session, { rel = "conversation", href = "/c/1" }),
      participant = resource.new(session, { rel = "participant", href = "/p/1" }),
      message = resource.new(session, { rel = "message", href = "/m/1" }),
      resource = resource.new(session, { rel = "me", href = "/me" }),
    }
    for what, obj in pairs(objects) do
      local ok, err = pcall(obj.on, obj, "complted", function() end)
      assert.is_false(ok, what)
      assert.matches("unknown %a+ event 'complted'; known: ", tostring(err), nil, what)
      assert.has_error(function() obj:off("complted", print) end)
      assert.has_error(function() obj:on("updated", 42) end)
    end
  end)

  it("off removes one handler, and a handler removed while its event runs is not called again", function()
    local inv = require("ucwa.resource").new(session, { rel = "onlineMeetingInvitation", href = "/i/1" })
    local seen = {}
    local function a() seen[#seen + 1] = "a"; inv:off("updated", a) end
    local function b() seen[#seen + 1] = "b" end
    inv:on("updated", a):on("updated", b)
    inv:_event{ type = "updated" }
    inv:_event{ type = "updated" }
    assert.same({ "a", "b", "b" }, seen)
    inv:off("updated", b)
    inv:_event{ type = "updated" }
    assert.same({ "a", "b", "b" }, seen)
  end)

  it("client:on('event') receives every raw event of the channel", function()
    local got = {}
    c:on("event", function(ev, sender) got[#got + 1] = ev.type .. "@" .. sender.rel end)
    session.registry:dispatch{ senders = { { rel = "me", href = "/me", events = { { type = "updated" } } } } }
    assert.same({ "updated@me" }, got)
  end)
end)

describe("join_meeting and start_meeting", function()
  it("always return the invitation; before sign-in it completes with Failure", function()
    local c = ucwa.client(opts())
    local cb_args
    local inv = c:join_meeting({ onlineMeetingUri = "sip:x" }, function(i, e) cb_args = { i, e } end)
    assert.equal("onlineMeetingInvitation", inv.rel)
    assert.equal("Failure", inv.status)
    assert.equal("NotSignedIn", inv.reason.subcode)
    assert.is_nil(cb_args[1])
    assert.equal(inv.reason, cb_args[2])
    local adhoc = c:start_meeting()
    assert.equal("Failure", adhoc.status)
    c:close()
  end)

  it("in a spawned coroutine without a callback, return inv, err", function()
    local c = ucwa.client(opts())
    local got
    c:spawn(function() got = table.pack(c:join_meeting{ onlineMeetingUri = "sip:x" }) end)
    assert.equal("onlineMeetingInvitation", got[1].rel)
    assert.equal("NotSignedIn", got[2].subcode)
    c:close()
  end)
end)

describe("closing", function()
  -- regression: timers made by the sign-in backoff were owned by nothing, so a
  -- client on a shared engine closed during the backoff came back to "new"
  -- and kept sending requests
  it("close during sign-in backoff on a shared engine stays closed", function()
    local eng = ucwa.engine{}
    local lines = {}
    local c = ucwa.client(opts{ url = "http://127.0.0.1:1/", engine = eng,
                                log = function(level, msg) lines[#lines + 1] = level .. " " .. msg end })
    c:start()
    local deadline = os.time() + 5
    local function retrying()
      for _, l in ipairs(lines) do if l:find("retrying", 1, true) then return true end end
    end
    while not retrying() and os.time() <= deadline do eng:step(0.05) end
    assert.is_true(retrying(), "sign-in never failed")
    c:close()
    assert.equal("closed", c.state)
    local sent = #lines
    local stop = os.time() + 2
    while os.time() <= stop do eng:step(0.1) end
    assert.equal("closed", c.state)
    assert.equal(sent, #lines, "requests after close: " .. table.concat(lines, "\n", sent + 1))
    eng:close()
  end)

  it("cancels the bot's own timers, also on a shared engine", function()
    local eng = ucwa.engine{}
    local c = ucwa.client(opts{ engine = eng })
    local fired, kept = false, false
    c:after(0.05, function() fired = true end)
    eng:timer(0.05, function() kept = true end)
    c:close()
    local gettime = require("socket").gettime
    local stop = gettime() + 0.3
    while gettime() < stop and not kept do eng:step(0.05) end
    assert.is_true(kept, "the engine's own timer should still fire")
    assert.is_false(fired)
    eng:close()
  end)
end)
