-- Where credentials may go (DESIGN.md, "Trust"): the policy every request,
-- redirect and token grant is checked against. End-to-end, against a
-- simulator serving several hosts, in spec/59.
local trust = require "ucwa.trust"

describe("the trust policy", function()
  local p = trust.new{ root = "https://lyncdiscover.contoso.com", user = "bot@contoso.com",
                       trusted_domains = { "online.lync.com" } }

  it("allows the user's domain, the discovery domain and trusted_domains", function()
    assert.is_nil(p:check("https://lyncdiscover.contoso.com/autodiscover"))
    assert.is_nil(p:check("https://pool2.contoso.com:4443/ucwa/oauth/v1/applications"))
    assert.is_nil(p:check("https://webdir.online.lync.com/Autodiscover/root?originalDomain=contoso.com"))
  end)

  it("refuses another host, naming it and what to set", function()
    local err = p:check("https://evil.example/ucwa/x")
    assert.equal("Forbidden", err.code)
    assert.equal("UntrustedHost", err.subcode)
    assert.matches("evil%.example is another host", err.message)
    assert.matches("trusted_domains", err.message)
    -- a suffix that is not a label boundary is another domain
    assert.equal("UntrustedHost", p:check("https://evilcontoso.com/x").subcode)
    assert.equal("UntrustedHost", p:check("https://contoso.com.evil.example/x").subcode)
  end)

  it("refuses plain http from an HTTPS session", function()
    local err = p:check("http://pool2.contoso.com/ucwa/x")
    assert.equal("InsecureLink", err.subcode)
  end)

  it("refuses what is not an http(s) URL, or has a NUL byte", function()
    assert.equal("BadLink", p:check("file:///etc/passwd").subcode)
    assert.equal("BadLink", p:check("https://pool2.contoso.com\0.evil.example/x").subcode)
  end)

  it("refuses the password to an untrusted token service", function()
    assert.is_nil(p:check_token_service("https://pool2.contoso.com/WebTicket/oauthtoken"))
    for _, url in ipairs{ "https://evil.example/WebTicket/oauthtoken",
                          "http://pool2.contoso.com/WebTicket/oauthtoken" } do
      assert.equal("UntrustedTokenService", p:check_token_service(url).subcode, url)
    end
  end)

  it("checks redirects as RootURL.md says: no downgrade, the same domains", function()
    assert.is_nil(p:check_redirect("https://lyncdiscover.contoso.com/", "https://lyncweb.contoso.com/root"))
    assert.is_nil(p:check_redirect("https://lyncdiscover.contoso.com/", "https://webdir.online.lync.com/root"))
    for _, to in ipairs{ "http://lyncweb.contoso.com/", "https://evil.example/" } do
      assert.equal("RedirectRefused", p:check_redirect("https://lyncdiscover.contoso.com/", to).subcode, to)
    end
  end)

  it("lets an address be reached only when it is the discovery host", function()
    local q = trust.new{ root = "http://127.0.0.1:8080/root", user = "bot@contoso.com" }
    assert.is_nil(q:check("http://127.0.0.1:9999/ucwa"))
    assert.equal("UntrustedHost", q:check("http://127.0.0.2/ucwa").subcode)
    assert.equal("UntrustedHost", q:check("http://localhost/ucwa").subcode)
  end)

  it("gives one origin per scheme, host and port, the default port explicit", function()
    assert.equal("https://pool2.contoso.com:443", trust.origin("https://POOL2.contoso.com/ucwa"))
    assert.equal(trust.origin("https://pool2.contoso.com:443/a"), trust.origin("https://pool2.contoso.com/b"))
    assert.not_equal(trust.origin("https://pool2.contoso.com/a"), trust.origin("http://pool2.contoso.com/a"))
  end)
end)
