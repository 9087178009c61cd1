-- ucwa-sim: the batch resource. A multipart/batching POST is one request
-- (the simulator counts it once), each part answered as if sent alone, in
-- order; a failing part fails alone; a body that is not a readable
-- multipart is a 400. JSON and XML.
local C = require "support.sim_client"
local core = require "ucwa.core"

local ACCEPT = { json = "application/json", xml = "application/xml" }

describe("ucwa-sim batching", function()
  local sim
  C.use_sim(function(s) sim = s end)

  C.each_format(function(fmt)
    local function post_batch(s, parts)
      local body, ctype = core.multipart_build(parts, "request")
      return s:request("POST", s.app.links.batch.href, body, ctype, { Accept = "multipart/batching" })
    end
    local function get(path) return { method = "GET", target = path, headers = { Accept = ACCEPT[fmt] } } end

    it("answers five reads in one POST, each part as if alone, in order", function()
      local s = C.session(sim, "bob@contoso.com", fmt)
      local app = s.app.href
      local before = sim:state()
      local status, h, body = post_batch(s, {
        get(app .. "/me"), get(app .. "/people"), get(app .. "/onlineMeetings/eligibleValues"),
        get(app .. "/onlineMeetings/defaultValues"), get(app .. "/onlineMeetings/phoneDialInInformation") })
      assert.equal(200, status, body)
      assert.matches("^multipart/batching", h["content-type"])
      local after = sim:state()
      -- the batch, and the state request itself
      assert.equal(before.stats.requests + 2, after.stats.requests)
      assert.equal(before.batching.posts + 1, after.batching.posts)
      assert.equal(before.batching.parts + 5, after.batching.parts)
      local parts = assert(core.multipart_parse(body, h["content-type"], "response"))
      assert.equal(5, #parts)
      local rels = { "me", "people", "onlineMeetingEligibleValues", "onlineMeetingDefaultValues",
                     "phoneDialInInformation" }
      for i, p in ipairs(parts) do
        assert.is_nil(p.error)
        assert.equal(200, p.status)
        assert.matches(fmt, p.headers["content-type"])
        assert.equal(rels[i], C.model(p.body, fmt).rel)
      end
    end)

    it("fails a failing part alone", function()
      local s = C.session(sim, "bob@contoso.com", fmt)
      local app = s.app.href
      local status, h, body = post_batch(s, { get(app .. "/me"), get(app .. "/no/such/thing"),
        get(app .. "/events?ack=1"), get(app .. "/people") })
      assert.equal(200, status)
      local parts = assert(core.multipart_parse(body, h["content-type"], "response"))
      assert.same({ 200, 404, 400, 200 }, { parts[1].status, parts[2].status, parts[3].status, parts[4].status })
      assert.equal("ResourceNotFound", C.error_model(parts[2].body, fmt).subcode)
    end)

    it("runs each part with the batch's token: another user's application is refused", function()
      local s = C.session(sim, "bob@contoso.com", fmt)
      local other = C.session(sim, "alice@contoso.com", fmt)
      local status, h, body = post_batch(s, { get(other.app.href .. "/me") })
      assert.equal(200, status)
      local parts = assert(core.multipart_parse(body, h["content-type"], "response"))
      assert.equal(403, parts[1].status)
    end)

    it("refuses a body that is not a readable multipart with 400, and a part that is not HTTP alone", function()
      local s = C.session(sim, "bob@contoso.com", fmt)
      local href = s.app.links.batch.href
      local body, ctype = core.multipart_build({ get(s.app.href .. "/me") }, "request")
      assert.equal(400, (s:request("POST", href, body, "multipart/batching", { Accept = "multipart/batching" })))
      assert.equal(400, (s:request("POST", href, body:sub(1, #body - 20), ctype, { Accept = "multipart/batching" })))
      assert.equal(415, (s:request("POST", href, body, "application/json", { Accept = "multipart/batching" })))
      local broken = body:gsub("GET ", "G@T ", 1)
      local status, h, b = s:request("POST", href, broken, ctype, { Accept = "multipart/batching" })
      assert.equal(200, status)
      local parts = assert(core.multipart_parse(b, h["content-type"], "response"))
      assert.equal(400, parts[1].status)
      -- (its Accept unread, the part's error is in the batch's representation)
      local pfmt = parts[1].headers["content-type"]:match("xml") and "xml" or "json"
      assert.matches("could not be read", C.error_model(parts[1].body, pfmt).message)
    end)

    -- A query with '+', escaped '&', '=', '+', '%' and UTF-8, its name escaped too.
    local QUERY = "mess%61ge=caf%C3%A9+%26+cr%C3%A8me%3D1%2B1+100%25"
    local function available(s)
      assert(s:pget("timeout=0.1&medium=0&low=0"))
      assert.equal(204, (s:post(s.app.embedded.me.links.makeMeAvailable.href, { signInAs = "Online" })))
      return s.app.href .. "/me/note"
    end

    it("gives a part the query arguments the same request gets sent alone", function()
      local s = C.session(sim, "alice@contoso.com", fmt)
      local note = available(s)
      assert.equal(204, (s:request("POST", note .. "?" .. QUERY, "", nil, { Accept = ACCEPT[fmt] })))
      local alone = assert(s:get(note)).props.message
      assert.equal("caf\u{e9} & cr\u{e8}me=1+1 100%", alone)
      assert.equal(204, (s:post(note, { message = "reset" })))
      local status, h, body = post_batch(s, {
        { method = "POST", target = note .. "?" .. QUERY, headers = { Accept = ACCEPT[fmt] }, body = "" },
        get(note) })
      assert.equal(200, status, body)
      local parts = assert(core.multipart_parse(body, h["content-type"], "response"))
      assert.equal(204, parts[1].status, parts[1].body)
      assert.equal(alone, C.model(parts[2].body, fmt).props.message)
    end)

    it("refuses a part whose target escapes are not text (%00, %FF) alone, saying where", function()
      local s = C.session(sim, "alice@contoso.com", fmt)
      local note = available(s)
      assert.equal(204, (s:post(note, { message = "kept" })))
      local status, h, body = post_batch(s, {
        { method = "POST", target = note .. "?message=a%00b", headers = { Accept = ACCEPT[fmt] }, body = "" },
        { method = "POST", target = note .. "?message=%FF", headers = { Accept = ACCEPT[fmt] }, body = "" },
        get(s.app.href .. "/me/n%00te"), get(note) })
      assert.equal(200, status, body)
      local parts = assert(core.multipart_parse(body, h["content-type"], "response"))
      assert.same({ 400, 400, 400, 200 }, { parts[1].status, parts[2].status, parts[3].status, parts[4].status })
      assert.matches("query cannot be read", C.error_model(parts[1].body, fmt).message)
      assert.matches("query cannot be read", C.error_model(parts[2].body, fmt).message)
      assert.matches("path cannot be decoded", C.error_model(parts[3].body, fmt).message)
      assert.equal("kept", C.model(parts[4].body, fmt).props.message)
    end)
  end)
end)
