-- What bots share to stay small (issue 16): the option defaults live once,
-- behind each session's own options, and the registry makes its tables on
-- first use. Sharing must never let one bot's settings or objects reach
-- another's.
local ucwa = require "ucwa"
local simmod = require "ucwa.sim"
local helpers = require "helpers"

describe("state shared between bots", function()
  local sim
  setup(function() sim = simmod.start{ step_delay = 0 } end)
  teardown(function() sim:stop() end)

  local function bot(eng, opts)
    local o = { url = sim.url, username = "bot@contoso.com", password = "password", engine = eng }
    for k, v in pairs(opts or {}) do o[k] = v end
    return ucwa.client(o)
  end

  it("keeps each bot's own options, the defaults for the rest", function()
    local eng = ucwa.engine{}
    local a = bot(eng)
    local b = bot(eng, { timeout = 5, culture = "fr-FR", aggregation = { low = 10 }, available = false })
    local oa, ob = a._session.options, b._session.options -- white box: what each session holds
    assert.equal(30, oa.timeout)
    assert.equal("en-US", oa.culture)
    assert.is_true(oa.available)
    assert.is_nil(oa.aggregation.low)
    assert.equal(5, ob.timeout)
    assert.equal("fr-FR", ob.culture)
    assert.is_false(ob.available)
    assert.equal(10, ob.aggregation.low)
    -- a's defaults are not stored in a's table: they are the shared ones
    assert.is_nil(rawget(oa, "timeout"))
    assert.equal(5, rawget(ob, "timeout"))
    -- the shared default aggregation cannot be written through one bot
    assert.has_error(function() oa.aggregation.low = 7 end, "the shared default aggregation is read-only")
    assert.is_nil(bot(eng)._session.options.aggregation.low)
    a:close()
    b:close()
    eng:close()
  end)

  it("gives each bot registry tables of its own, made on first use", function()
    local eng = ucwa.engine{}
    local a, b = bot(eng), bot(eng)
    local ra, rb = a._session.registry, b._session.registry -- white box
    assert.is_nil(rawget(ra, "objects"))
    assert.is_nil(ra:find("/ucwa/oauth/v1/applications/1/x")) -- reading makes no difference
    local obj = { href = "/x/1" }
    ra.objects["http://h/x/1"] = obj
    assert.equal(obj, ra.objects["http://h/x/1"])
    assert.is_nil(rb.objects["http://h/x/1"])
    assert.are_not.equal(ra.objects, rb.objects)
    assert.equal("v", getmetatable(ra.objects).__mode) -- still weak: an object nobody holds goes
    assert.equal(getmetatable(ra.objects), getmetatable(rb.objects))
    assert.are_not.equal(ra.pending, rb.pending)
    assert.is_nil(ra.no_such_field)
    assert.is_function(ra.dispatch)
    a:close()
    b:close()
    eng:close()
  end)

  it("signs in two bots with different options on one engine", function()
    local eng = ucwa.engine{}
    local a, b = bot(eng), bot(eng, { activity_interval = 60, available = false })
    local ready = 0
    a:on("ready", function() ready = ready + 1 end)
    b:on("ready", function() ready = ready + 1 end)
    a:start()
    b:start()
    helpers.drive(a, function() return ready == 2 end, 10, "both ready")
    assert.equal("ready", a.state)
    assert.equal("ready", b.state)
    assert.are_not.equal(a.application.href, b.application.href)
    a:close()
    b:close()
    eng:close()
  end)
end)
