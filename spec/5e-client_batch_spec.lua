-- client:batch against ucwa-sim, JSON and XML: five reads go out as one
-- multipart/batching POST (the simulator counts it), each answer at its own
-- callback; a failing part fails alone; a link to another host inside a
-- batch is refused and goes nowhere; sign-in's reads use the batch link.
-- And the multipart reader on bad answers: a clear error, no crash.
local helpers = require "helpers"
local core = require "ucwa.core"
local steps = require "support.steps"
local ready = steps.ready

-- alice signed in, with a meeting she scheduled: the client and the meeting.
local function with_meeting(sim, format, subject)
  local c = ready(helpers.client(sim, { username = "alice@contoso.com", format = format }))
  local m = assert(steps.wait(function(cb) c:schedule_meeting({ subject = subject }, cb) end, "schedule"))
  return c, m
end

for _, format in ipairs{ "json", "xml" } do
  describe("batching in " .. format, function()
    local sim
    helpers.sim_each(function(s) sim = s end)

    it("sends five reads as one POST, each answer at its own callback", function()
      local c, m = with_meeting(sim, format, "Batched")
      local before = sim:state()
      local got, done = {}, nil
      c:batch(function()
        c:meetings(function(l, e) got.meetings = l and #l or e end)
        c.application:refresh(function(a, e) got.app = a and a.rel or e end)
        m:refresh(function(x, e) got.meeting = x and x.subject or e end)
        m:dial_in(function(d, e) got.dial = d and d.tollNumber or e end)
        c:spawn(function() -- a coroutine inside a batch: it waits for its own answer
          local list = c:meetings()
          got.spawned = list and #list
        end)
      end, function(ok, err) done = ok or err end)
      helpers.drive(nil, function() return done ~= nil and got.spawned ~= nil end, 10, "the batch")
      assert.is_true(done)
      assert.same({ meetings = 1, app = "application", meeting = "Batched", dial = "+14255550100", spawned = 1 }, got)
      local after = sim:state()
      assert.equal(before.batching.posts + 1, after.batching.posts)
      assert.equal(before.batching.parts + 5, after.batching.parts)
      assert.equal(before.stats.requests + 2, after.stats.requests) -- the batch and this state read
    end)

    it("fails a failing part alone", function()
      local c, m = with_meeting(sim, format, "Soon deleted")
      local deleted
      m:delete(function(ok) deleted = ok end)
      helpers.drive(nil, function() return deleted end)
      local res = steps.batch(c, {
        function(cb) c:meetings(cb) end,
        function(cb) m:refresh(cb) end,
        function(cb) c.application:refresh(cb) end,
      })
      assert.equal(0, #res[1][1])
      assert.is_nil(res[2][1])
      assert.equal(404, res[2][2].status)
      assert.equal("application", res[3][1].rel)
    end)

    it("refuses a link to another host inside a batch: nothing goes there", function()
      local c, m = with_meeting(sim, format, "Planted")
      -- a link a server could plant: another host than the session's
      m.href = "https://evil.example.net/ucwa/oauth/v1/applications/1/me"
      local before = sim:state()
      steps.batch_with_planted_meeting(c, m)
      local after = sim:state()
      assert.equal(before.batching.parts + 2, after.batching.parts) -- the refused one was not in it
    end)

    -- regression guard: a batch answer the client cannot read must not crash it
    for _, case in ipairs{ { "no-boundary", "no boundary" }, { "truncated", "truncated" },
                           { "not-multipart", "multipart/batching expected" } } do
      it("gives each request a clear error when the batch answer is " .. case[1], function()
        local c = ready(helpers.client(sim, { username = "alice@contoso.com", format = format }))
        sim:control("POST", "/_sim/batching", { garble = case[1] })
        local res, ok = steps.batch(c, {
          function(cb) c:meetings(cb) end,
          function(cb) c.application:refresh(cb) end,
        })
        for i = 1, 2 do
          assert.is_nil(res[i][1])
          assert.equal("BadResponse", res[i][2].code)
          assert.equal("BadBatch", res[i][2].subcode)
          assert.matches(case[2], res[i][2].message, 1, true)
        end
        assert.is_nil(ok)
        -- and the client carries on
        local again
        c:meetings(function(l) again = l end)
        helpers.drive(nil, function() return again end)
      end)
    end

    it("fails only the request whose part of the answer is broken", function()
      local c = ready(helpers.client(sim, { username = "alice@contoso.com", format = format }))
      sim:control("POST", "/_sim/batching", { garble = "broken-part" })
      local res = steps.batch(c, {
        function(cb) c:meetings(cb) end,
        function(cb) c.application:refresh(cb) end,
      })
      assert.is_nil(res[1][1])
      assert.equal("BadBatch", res[1][2].subcode)
      assert.matches("part 1: not an HTTP response", res[1][2].message, 1, true)
      assert.equal("application", res[2][1].rel)
    end)

    it("reads me and the scheduling values at sign-in in one batch", function()
      ready(helpers.client(sim, { username = "alice@contoso.com", format = format }))
      local st = sim:state()
      assert.equal(1, st.batching.posts)
      assert.equal(3, st.batching.parts)
    end)
  end)
end

describe("the multipart reader on bad batch answers", function()
  local good, ctype = core.multipart_build({
    { status = 200, headers = { ["Content-Type"] = "application/json" }, body = "{}" },
    { status = 404, headers = {} },
  }, "response")

  it("refuses a Content-Type without a boundary", function()
    local parts, err = core.multipart_parse(good, "multipart/batching", "response")
    assert.is_nil(parts)
    assert.matches("no boundary", err)
  end)

  it("refuses a truncated body", function()
    local parts, err = core.multipart_parse(good:sub(1, #good - 40), ctype, "response")
    assert.is_nil(parts)
    assert.matches("truncated", err)
  end)

  it("fails a part with a broken HTTP message alone", function()
    local parts = assert(core.multipart_parse((good:gsub("HTTP/1%.1 404", "HTXP/1.1 404")), ctype, "response"))
    assert.equal(200, parts[1].status)
    assert.matches("^part 2: not an HTTP response", parts[2].error)
    local cut = good:gsub("Content%-Length: 2", "Content-Length: 20")
    parts = assert(core.multipart_parse(cut, ctype, "response"))
    assert.matches("^part 1: ", parts[1].error)
    assert.equal(404, parts[2].status)
  end)

  it("refuses what is not multipart, and a line break in the Content-Type", function()
    assert.is_nil((core.multipart_parse(good, "application/json", "response")))
    assert.is_nil((core.multipart_parse(good, ctype .. "\r\nX: y", "response")))
    assert.is_nil((core.multipart_parse("", ctype, "response")))
  end)

  it("refuses header injection when building", function()
    assert.has_error(function()
      core.multipart_build({ { method = "GET", target = "/a\r\nX: y" } }, "request")
    end)
    assert.has_error(function()
      core.multipart_build({ { method = "GET", target = "/a", headers = { ["X"] = "1\r\nY: 2" } } }, "request")
    end)
  end)
end)
