--- Batching (BatchingRequests.md, GroupingRequestsInABatch.md, batch_ref.md):
-- the requests a bot makes inside `client:batch(fn)` go out as one
-- `multipart/batching` POST to the application's `batch` link, and each
-- answer comes back to its own callback (or coroutine) as if it had been
-- sent alone: the same parsing, errors and 401 renewal (ucwa.request).
--
-- Each request is checked by the session's send path first (trust rules,
-- tokens): a link the rules refuse fails alone and goes nowhere, in a batch
-- or not. Only requests to the batch link's own origin join the batch (the
-- batch POST carries that origin's token); others go alone. A part the
-- server answers badly fails only its request; a batch answer that cannot be
-- read at all fails each of its requests with that reason. A server without
-- batching (404, 405, 415, 501, or a batch link the trust rules refuse)
-- gets the requests one by one. At most `MAX_PARTS` a POST.
-- @module ucwa.batch
local core = require "ucwa.core"
local errors = require "ucwa.errors"

local batch = {}

--- Requests a batch POST carries at most (the page's server limit).
batch.MAX_PARTS = 100

local Collector = {}
Collector.__index = Collector

-- Statuses of a server (or a link) that does not batch: send alone instead.
local NO_BATCHING = { [404] = true, [405] = true, [415] = true, [501] = true }

--- The collector (this object's `request` takes engine requests) when
-- `url` may join the batch, else nil.
function Collector:takes(url)
  if core.url_origin(url) == self.origin then return self end
end

--- Takes one engine request (what ucwa.request would give the engine).
function Collector:request(req)
  self.parts[#self.parts + 1] = req
end

local function bad(message)
  return errors.new{ code = "BadResponse", subcode = "BadBatch", message = message }
end

-- The part of one engine request: its target (path and query of its URL),
-- its headers but the token (the batch POST carries it), its body.
local function part_of(req)
  local u = assert(core.url_parts(req.url))
  local headers = {}
  for k, v in pairs(req.headers) do
    if k:lower() ~= "authorization" then headers[k] = v end
  end
  headers.Host = u.host .. (u.port and (":" .. u.port) or "")
  return { method = req.method, target = u.path .. (u.query and ("?" .. u.query) or ""), headers = headers,
           body = req.body }
end

-- Sends `reqs` (engine requests) one by one, as if no batch had been asked.
local function alone(session, reqs)
  for _, req in ipairs(reqs) do session.engine:request(req) end
end

-- Sends one POST with `reqs`; done() when every part has had its answer.
local function post(session, href, reqs, done)
  local parts = {}
  for i, req in ipairs(reqs) do parts[i] = part_of(req) end
  local body, ctype = core.multipart_build(parts, "request")
  session:log("debug", "batch of " .. #reqs .. " requests")
  session:send({ method = "POST", url = href, raw_body = body, content_type = ctype,
                 accept = "multipart/batching", raw = true }, function(_, err, resp)
    if err then
      if NO_BATCHING[err.status] or err.code == "Forbidden" and not err.status then
        session:log("warn", "batch refused (" .. tostring(err.message) .. "): the requests go one by one")
        alone(session, reqs)
        return done()
      end
      for _, req in ipairs(reqs) do req.callback(nil, err) end
      return done(err)
    end
    local answers, perr = core.multipart_parse(resp.body or "", resp.headers["content-type"] or "", "response")
    for i, req in ipairs(reqs) do
      local a = answers and answers[i]
      if not answers then
        req.callback(nil, bad("the batch answer could not be read: " .. tostring(perr)))
      elseif not a then
        req.callback(nil, bad(("the batch answer has %d parts for %d requests: no answer to part %d")
          :format(#answers, #reqs, i)))
      elseif a.error then
        req.callback(nil, bad("the batch answer: " .. a.error))
      else
        req.callback({ status = a.status, headers = a.headers, body = a.body })
      end
    end
    done(not answers and bad(tostring(perr)) or nil)
  end)
end

--- Runs fn() with the session's requests collected, then sends them: in
-- batches of at most MAX_PARTS to the application's batch link, or one by
-- one when there is none. done(err) when every POST has been answered.
-- fn runs in a coroutine of its own: a network method called there without
-- a callback does not wait (use a callback, or client:spawn inside fn).
-- @tparam table session
-- @tparam function fn
-- @tparam function done
function batch.run(session, fn, done)
  local app = session.application
  local href = app and app:link("batch")
  local url = href and session:absolute(href)
  local origin = url and core.url_origin(url)
  if session.batching or not origin then
    -- (nested, or no batch link: the requests go as they come)
    local ok, e = pcall(fn)
    if not ok then error(e, 0) end
    return done()
  end
  local c = setmetatable({ parts = {}, origin = origin }, Collector)
  session.batching = c
  local co = coroutine.create(fn)
  local ok, e = coroutine.resume(co)
  session.batching = nil
  if not ok then
    alone(session, c.parts)
    error(e, 0)
  end
  local reqs = c.parts
  if #reqs == 0 then return done() end
  if #reqs == 1 then
    alone(session, reqs)
    return done()
  end
  local pending, first_err = 0, nil
  for i = 1, #reqs, batch.MAX_PARTS do
    local chunk = table.move(reqs, i, math.min(i + batch.MAX_PARTS - 1, #reqs), 1, {})
    pending = pending + 1
    post(session, href, chunk, function(err)
      first_err = first_err or err
      pending = pending - 1
      if pending == 0 then done(first_err) end
    end)
  end
end

--- The reads of sign-in (in a session coroutine): GET `urls` in one batch
-- where the server offers one; returns their models (or false) in order.
-- @tparam table session
-- @tparam table urls
-- @treturn table
function batch.read_all(session, urls)
  return session.async:await(function(finish)
    local out, left = {}, #urls
    local function got(i)
      return function(model)
        out[i] = type(model) == "table" and model or false
        left = left - 1
        if left == 0 then finish(out) end
      end
    end
    batch.run(session, function()
      for i, u in ipairs(urls) do session:send({ method = "GET", url = u }, got(i)) end
    end, function() end)
  end)
end

--- Sign-in's reads after makeMeAvailable (in a session coroutine): `me`,
-- with the scheduling values (ucwa.meetings), in one batch where the server
-- offers one. Returns the model of `me` (or false).
-- @tparam table session
-- @string me_href
function batch.signin_reads(session, me_href)
  local meetings = require "ucwa.meetings"
  local urls = meetings.initial_reads(session)
  table.insert(urls, 1, me_href)
  local models = batch.read_all(session, urls)
  for i = 2, #urls do meetings.store(session, urls[i], models[i]) end
  return models[1]
end

return batch
