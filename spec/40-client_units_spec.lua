-- The Lua layer's pure parts: challenges, grants, discovery checks, limits.
local auth = require "ucwa.auth"
local discovery = require "ucwa.discovery"
local invitation = require "ucwa.invitation"
local util = require "ucwa.util"

describe("WWW-Authenticate", function()
  it("reads the MsRtcOAuth challenge beside a Bearer one in one header", function()
    local h = 'Bearer trusted_issuers="", client_id="00000004-0000-0ff1-ce00-000000000000", '
      .. 'MsRtcOAuth href="https://fe1.contoso.com/WebTicket/oauth/token",'
      .. 'grant_type="urn:microsoft.rtc:windows,urn:microsoft.rtc:anonmeeting,password"'
    local list = assert(auth.parse_challenges(h))
    assert.equal(2, #list)
    assert.equal("Bearer", list[1].scheme)
    assert.equal("00000004-0000-0ff1-ce00-000000000000", list[1].params.client_id)
    local c = assert(auth.oauth_challenge(h))
    assert.equal("https://fe1.contoso.com/WebTicket/oauth/token", c.href)
    assert.is_true(c.grants.password)
    assert.is_true(c.grants["urn:microsoft.rtc:anonmeeting"])
    assert.is_nil(c.grants.other)
  end)

  it("reads an unquoted href as the reference page shows it", function()
    local c = assert(auth.oauth_challenge('MsRtcOAuth href=https://contoso.com/WebTicket/oauthtoken,'
      .. 'grant_type="urn:microsoft.rtc:windows,password"'))
    assert.equal("https://contoso.com/WebTicket/oauthtoken", c.href)
    assert.is_true(c.grants["urn:microsoft.rtc:windows"])
  end)

  it("explains what is wrong with a bad header", function()
    local c, err = auth.oauth_challenge('Bearer realm="x"')
    assert.is_nil(c)
    assert.matches("no MsRtcOAuth", err)
    c, err = auth.oauth_challenge('MsRtcOAuth href="unterminated')
    assert.is_nil(c)
    assert.matches("unterminated", err)
  end)
end)

describe("token requests", function()
  it("encodes the password grant", function()
    local body, grant = auth.token_request{ username = "bot@contoso.com", password = "p&ss w=rd" }
    assert.equal("password", grant)
    assert.equal("grant_type=password&username=bot%40contoso.com&password=p%26ss%20w%3Drd", body)
  end)

  it("takes the anonymous meeting key from the conference URI, and renews", function()
    local uri = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1"
    assert.equal("DEMO1", auth.conference_id(uri))
    local body = auth.token_request({ anonymous = { meeting = uri } }, "cwt=old")
    assert.matches("grant_type=urn%%3Amicrosoft.rtc%%3Aanonmeeting", body)
    assert.matches("password=DEMO1", body)
    assert.matches("ms_rtc_renew=cwt%%3Dold", body)
  end)
end)

describe("autodiscovery", function()
  it("tries internal before external, https first", function()
    local c = discovery.candidates("contoso.com")
    assert.same({ "https://lyncdiscoverinternal.contoso.com", "https://lyncdiscover.contoso.com",
                  "http://lyncdiscoverinternal.contoso.com", "http://lyncdiscover.contoso.com" }, c)
  end)

  -- (the redirect check is the trust policy's: spec/58)
end)

describe("invitation limits", function()
  it("refuses a subject of 251 characters and an operationId of 51", function()
    assert.is_nil(invitation.validate({ subject = string.rep("s", 250) }, false, "join"))
    local err = invitation.validate({ subject = string.rep("s", 251) }, false, "join")
    assert.equal("ParameterValidationFailure", err.subcode)
    assert.equal(400, err.status)
    assert.matches("subject", tostring(err))
    err = invitation.validate({ operationId = string.rep("o", 51) }, false, "join")
    assert.matches("operationId", err.message)
  end)

  it("counts characters, not bytes", function()
    assert.is_nil(invitation.validate({ subject = string.rep("é", 250) }, false, "join"))
  end)

  it("allows anonymousDisplayName only for anonymous users", function()
    local err = invitation.validate({ anonymousDisplayName = "Guest" }, false, "join")
    assert.equal("ParameterValidationFailure", err.subcode)
    assert.is_nil(invitation.validate({ anonymousDisplayName = "Guest" }, true, "join"))
  end)

  it("raises on argument errors", function()
    assert.has_error(function() invitation.validate({ subject = 5 }, false, "join") end)
  end)
end)

describe("util", function()
  it("makes distinct version-4 UUIDs and operationIds", function()
    local a, b = util.uuid(), util.uuid()
    assert.matches("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x+$", a)
    assert.not_equal(a, b)
    assert.equal(32, #util.operation_id())
  end)
end)
