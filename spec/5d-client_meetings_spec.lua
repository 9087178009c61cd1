-- The client's scheduled meetings against ucwa-sim, JSON and XML: schedule,
-- join by a second user, update with the etag and the echo property (a stale
-- etag is refused with 412, read again, nothing overwritten), values outside
-- the eligible values refused before sending, delete.
local helpers = require "helpers"
local steps = require "support.steps"

local ready = steps.ready
local function wait(_, f, what) return steps.wait(f, what) end

for _, format in ipairs{ "json", "xml" } do
  describe("scheduled meetings in " .. format, function()
    local sim
    helpers.sim_each(function(s) sim = s end)

    it("schedules a meeting that a second user joins", function()
      local alice = ready(helpers.client(sim, { username = "alice@contoso.com", format = format }))
      local m, err = wait(alice, function(cb)
        alice:schedule_meeting({ subject = "Weekly sync", accessLevel = "Everyone",
                                 attendees = { "sip:bob@contoso.com" } }, cb)
      end, "schedule")
      assert.is_nil(err)
      assert.equal("Weekly sync", m.subject)
      assert.matches("^sip:alice@contoso%.com;gruu;opaque=app:conf:focus:id:" .. m.onlineMeetingId .. "$",
        m.onlineMeetingUri)
      assert.matches("^https://", m.joinUrl)
      local dial = wait(alice, function(cb) m:dial_in(cb) end, "dial-in")
      assert.equal(m.conferenceId, dial.conferenceId)
      assert.is_string(dial.tollNumber)
      -- the organizer joins through the meeting, bob by its URI
      local own = m:join()
      local bob = ready(helpers.client(sim, { username = "bob@contoso.com", format = format }))
      local inv = bob:join_meeting{ onlineMeetingUri = m.onlineMeetingUri, subject = "joining" }
      helpers.drive(nil, function() return inv:completed() and own:completed() end, 10, "joins")
      assert.equal("Success", own.status)
      assert.equal("Success", inv.status)
      local members = {}
      for _, x in ipairs(sim:state().meetings) do
        if x.id == m.onlineMeetingId then
          for _, mem in ipairs(x.members) do members[mem.key] = mem.state end
        end
      end
      assert.same({ ["alice@contoso.com"] = "in", ["bob@contoso.com"] = "in" }, members)
    end)

    it("puts the lobby rules of a Locked meeting on the second user", function()
      local alice = ready(helpers.client(sim, { username = "alice@contoso.com", format = format }))
      local m = wait(alice, function(cb) alice:schedule_meeting({ subject = "Locked", accessLevel = "Locked" }, cb) end)
      local bob = ready(helpers.client(sim, { username = "bob@contoso.com", format = format }))
      bob:join_meeting{ onlineMeetingUri = m.onlineMeetingUri }
      helpers.drive(nil, function()
        for _, x in ipairs(sim:state().meetings) do
          if x.id == m.onlineMeetingId and x.members[1] then return x.members[1].state == "lobby" end
        end
      end, 10, "bob in the lobby")
    end)

    it("refuses an update with a stale etag (412): read again, nothing overwritten", function()
      local alice = ready(helpers.client(sim, { username = "alice@contoso.com", format = format }))
      local m = wait(alice, function(cb) alice:schedule_meeting({ subject = "First" }, cb) end)
      local list = wait(alice, function(cb) alice:meetings(cb) end, "list")
      assert.equal(1, #list)
      local other = list[1] -- the same meeting, read separately
      local ok, err = wait(alice, function(cb) other:update({ subject = "Second" }, cb) end, "update")
      assert.is_nil(err)
      assert.equal("Second", ok.subject)
      local _, stale = wait(alice, function(cb) m:update({ subject = "Third" }, cb) end, "stale update")
      assert.equal(412, stale.status)
      assert.equal("PreconditionFailed", stale.code)
      assert.is_true(stale.refreshed)
      assert.equal("Second", m.subject) -- read again
      local fresh = wait(alice, function(cb) alice:meetings(cb) end)
      assert.equal("Second", fresh[1].subject)
      -- now m holds the current etag: its update goes through
      local again = wait(alice, function(cb) m:update({ subject = "Third" }, cb) end)
      assert.equal("Third", again.subject)
    end)

    it("refuses values outside the eligible values before sending", function()
      local alice = ready(helpers.client(sim, { username = "alice@contoso.com", format = format }))
      local eligible = wait(alice, function(cb) alice:meeting_eligible_values(cb) end)
      assert.same({ "Everyone", "Invited", "Locked", "SameEnterprise" }, eligible.accessLevels)
      local defaults = wait(alice, function(cb) alice:meeting_defaults(cb) end)
      assert.equal("SameEnterprise", defaults.accessLevel)
      local policies = wait(alice, function(cb) alice:meeting_policies(cb) end)
      assert.equal("Allowed", policies.externalUserMeetingAccess)
      local before = sim:state().stats.requests
      local m, err = wait(alice, function(cb) alice:schedule_meeting({ subject = "x", accessLevel = "Anyone" }, cb) end)
      assert.is_nil(m)
      assert.equal("ParameterValidationFailure", err.subcode)
      assert.equal("accessLevel", err.parameter)
      local _, err2 = wait(alice, function(cb) alice:schedule_meeting({ subject = ("s"):rep(251) }, cb) end)
      assert.equal("ParameterValidationFailure", err2.subcode)
      local st = sim:state()
      assert.equal(before + 1, st.stats.requests) -- only this state read
      assert.equal(0, #st.scheduled_meetings)
      -- an update is checked the same way
      local okm = wait(alice, function(cb) alice:schedule_meeting({ subject = "ok" }, cb) end)
      local _, err3 = wait(alice, function(cb) okm:update({ entryExitAnnouncement = "Loud" }, cb) end)
      assert.equal("entryExitAnnouncement", err3.parameter)
      assert.equal("ok", wait(alice, function(cb) okm:refresh(cb) end).subject)
      assert.has_error(function() alice:schedule_meeting({ subjcet = "typo" }) end)
      assert.has_error(function() alice:schedule_meeting({ attendees = { "bob" } }) end)
    end)

    it("deletes a meeting", function()
      local alice = ready(helpers.client(sim, { username = "alice@contoso.com", format = format }))
      local m = wait(alice, function(cb) alice:schedule_meeting({ subject = "Gone soon" }, cb) end)
      assert.is_true((wait(alice, function(cb) m:delete(cb) end)))
      assert.equal(0, #wait(alice, function(cb) alice:meetings(cb) end))
      local _, err = wait(alice, function(cb) m:refresh(cb) end)
      assert.equal(404, err.status)
    end)
  end)
end
