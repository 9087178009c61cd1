-- ucwa-sim: the per-user indexes of applications (by endpointId and host,
-- the count against max_apps, the available ones) stay true as applications
-- come and go. They replaced walks over every application of the user, which
-- made signing in 10,000 bots of one user quadratic (issue 16).
local C = require "support.sim_client"

describe("ucwa-sim application indexes", function()
  local sim
  C.use_sim_each(function(s) sim = s end)

  local function add_user(name, max_apps)
    assert.equal(201, (sim:control("POST", "/_sim/users", { username = name, password = "password",
                                                             max_apps = max_apps })))
  end

  local function app_for(user, epid)
    return C.session(sim, user, "json", { input = { userAgent = "x", endpointId = epid } })
  end

  it("gives a deleted endpoint's next sign-in a new application, and counts only live ones", function()
    add_user("carol@contoso.com", 2)
    local a = app_for("carol@contoso.com", "ep-1")
    local b = app_for("carol@contoso.com", "ep-2")
    assert.are_not.equal(a.app.href, b.app.href)
    assert.equal(a.app.href, app_for("carol@contoso.com", "ep-1").app.href) -- found again: no third
    -- a third endpoint is over the limit of 2
    local s = C.session(sim, "carol@contoso.com", "json", { input = { userAgent = "x", endpointId = "ep-1" } })
    local status, _, body = s:post(s.app.href:match("^(.*)/%d+$"), { userAgent = "x", endpointId = "ep-3" })
    assert.equal(410, status)
    assert.matches("TooManyApplications", body)
    -- deleting one frees its place, and its endpoint signs in to a new application
    assert.equal(204, (a:request("DELETE", a.app.href)))
    local again = app_for("carol@contoso.com", "ep-1")
    assert.are_not.equal(a.app.href, again.app.href)
    assert.equal(b.app.href, app_for("carol@contoso.com", "ep-2").app.href)
  end)

  it("invites only the applications that are available now", function()
    add_user("dave@contoso.com")
    local a = app_for("dave@contoso.com", "ep-a")
    local b = app_for("dave@contoso.com", "ep-b")
    assert.equal(204, (a:post(a.app.embedded.me.links.makeMeAvailable.href, { signInAs = "Online" })))
    local _, st = sim:control("GET", "/_sim/state")
    local available = {}
    for _, app in ipairs(st.applications) do
      if app.user == "dave@contoso.com" and app.available then available[#available + 1] = app.href end
    end
    assert.same({ a.app.href }, available)
    -- forgetting its availability takes it off the list; b was never on it
    local function message()
      return (sim:control("POST", "/_sim/users/alice@contoso.com/message", { to = "dave@contoso.com", text = "hi" }))
    end
    assert.equal(200, message()) -- a rings
    assert.equal(200, (sim:control("POST", "/_sim/apps/" .. a.app.props.id .. "/unavailable")))
    assert.equal(409, message()) -- dave has no available application now: b never was
    assert.is_not_nil(b.app.href)
  end)
end)
