-- ucwa-sim: the event channel of each application (EventsInUCWA.md,
-- EventChannelDetails.md, events_ref.md).
--
-- Events wait in a FIFO queue (head and tail indices: never `#` over a
-- table with holes) until a pending GET (P-GET) takes them, at most
-- MAX_BATCH a batch.  Batches are numbered by `ack`: the same URL gets the
-- same batch again until the next one acknowledges it; a wrong ack gets a
-- `resync` link, a P-GET after --resume-after seconds a `resume` link.  A
-- P-GET with nothing due is suspended in the C host (no CPU) until an event
-- is due, its timeout, or a newer P-GET replaces it (409 PGetReplaced).
--
-- Priorities: realtime and high events are due at once, medium and low ones
-- after the P-GET's `medium` / `low` seconds (aggregation).  The queue keeps
-- the time of the oldest event of each class, so finding the next release
-- never walks the queue.
local host = require "ucwasim.host"
local config = require "config"
local console = require "console"
local faults = require "faults"
local plants = require "plants"
local reply = require "reply"
local stats = require "stats"
local timers = require "timers"

local M = {}

local MAX_BATCH = 1000

-- priority -> class; a class's delay is 0 or the P-GET's parameter.
local CLASS = { realtime = "now", high = "now", medium = "medium", low = "low" }

local channels = {} -- app -> channel
local held = setmetatable({}, { __mode = "k" }) -- box of a held P-GET -> its channel
local on_reset = function() end

-- Called with the application whenever its channel is reset for `resume`
-- (its conversations are to go).
function M.on_reset(fn)
  on_reset = fn
end

local function new_counts()
  return { now = 0, medium = 0, low = 0 }
end

-- Opens the channel of a new application.
function M.open(app)
  channels[app] = {
    app = app,
    next_ack = 1,        -- the ack of the batch to build next
    batch = nil,         -- the batch handed out and not yet acknowledged
    queue = {}, head = 1, tail = 0,
    counts = new_counts(), -- queued events per class
    first = {},          -- class -> time of its oldest queued event
    pget = nil,          -- the pending P-GET: { box=, ctx=, priority=, ack=, timer= }
    params = { timeout = config.get("pget-timeout"), low = 15, medium = 5 },
    last_pget = host.now(),
    resume = false,      -- the next answer carries `resume` instead of `next`
    resync = false,      -- the next answer is a resync (control API)
    replaced = false,    -- the next P-GET gets a foreign 409 PGetReplaced (control API)
    release_timer = nil, release_at = nil,
  }
end

local function queued(ch)
  return ch.tail - ch.head + 1
end

local function clear_queue(ch)
  ch.queue, ch.head, ch.tail = {}, 1, 0
  ch.counts, ch.first = new_counts(), {}
end

-- When the oldest queued event of some class is due, or nil if none is queued.
local function release_at(ch)
  local best
  for class, n in pairs(ch.counts) do
    if n > 0 then
      local at = ch.first[class] + (class == "now" and 0 or ch.params[class])
      if not best or at < best then best = at end
    end
  end
  return best
end

-- After a batch took the head of the queue: the oldest event of each class
-- still queued.  Stops as soon as every class is found.
local function refresh_first(ch)
  local missing = 0
  for _, n in pairs(ch.counts) do
    if n > 0 then missing = missing + 1 end
  end
  local seen = {}
  local i = ch.head
  while missing > 0 do
    local item = ch.queue[i]
    if not seen[item.class] then
      seen[item.class] = true
      ch.first[item.class] = item.t
      missing = missing - 1
    end
    i = i + 1
  end
end

local function events_href(ch, n)
  return ch.app.href .. "/events?ack=" .. n
end

-- Takes up to MAX_BATCH events off the queue into the next batch, grouped
-- by consecutive sender.
local function build_batch(ch)
  local senders = {}
  local last
  local n = 0
  local q = ch.queue
  while ch.head <= ch.tail and n < MAX_BATCH do
    local item = q[ch.head]
    q[ch.head] = nil
    ch.head = ch.head + 1
    n = n + 1
    ch.counts[item.class] = ch.counts[item.class] - 1
    if not last or last.rel ~= item.sender_rel or last.href ~= item.sender_href then
      last = { rel = item.sender_rel, href = item.sender_href, events = {} }
      senders[#senders + 1] = last
    end
    last.events[#last.events + 1] = item.ev
  end
  if queued(ch) == 0 then
    clear_queue(ch)
  else
    refresh_first(ch)
  end
  local rel = "next"
  if ch.resume then
    rel = "resume"
    ch.resume = false
  end
  local batch = plants.batch(ch.app, { self = events_href(ch, ch.next_ack), senders = senders,
    links = { { rel = rel, href = events_href(ch, ch.next_ack + 1) } } })
  ch.batch = batch
  stats.add("batches")
  return batch
end

-- A batch with only a resync link (to the batch the client should ask for).
local function resync_batch(ch, self_ack)
  return { self = events_href(ch, self_ack or ch.next_ack),
    links = { { rel = "resync", href = events_href(ch, ch.next_ack) } } }
end

-- Takes the pending P-GET off the channel and stops its timers, so that only
-- the caller answers it.  Returns it, or nil if there is none.
local function take_pget(ch)
  local p = ch.pget
  if not p then return nil end
  ch.pget = nil
  held[p.box] = nil
  timers.cancel(p.timer)
  timers.cancel(ch.release_timer)
  ch.release_timer = nil
  return p
end

-- Answers the pending P-GET with `batch`, or drops it (fault injection).
local function deliver(ch, batch)
  local p = take_pget(ch)
  if not p then return end
  ch.last_pget = host.now()
  if faults.take_drop() then
    host.drop(p.box)
    console.channel(ch.app, "dropped", ch.next_ack)
  else
    host.respond(p.box, reply.events(p.ctx, batch))
    console.channel(ch.app, "sent", ch.next_ack, batch)
  end
end

-- Arms the release of the pending P-GET for when the oldest event is due.
local function schedule_release(ch)
  if not ch.pget then return end
  local at = release_at(ch)
  if not at then return end
  if ch.release_timer and ch.release_at <= at then return end
  timers.cancel(ch.release_timer)
  ch.release_at = at
  ch.release_timer = timers.after(at - host.now(), function()
    ch.release_timer = nil
    if ch.pget and queued(ch) > 0 and not ch.batch then
      deliver(ch, build_batch(ch))
    end
  end)
end

-- Queues an event for an application (nothing once it is gone).
--   prio: "realtime" | "high" | "medium" | "low"
--   ev: { type=, link=, in=, resource=, status=, reason= } (formats.events_json)
function M.emit(app, prio, sender_rel, sender_href, ev)
  local ch = channels[app]
  if not ch then return end
  local class = CLASS[prio]
  local now = host.now()
  ch.tail = ch.tail + 1
  ch.queue[ch.tail] = { class = class, sender_rel = sender_rel, sender_href = sender_href, ev = ev, t = now }
  if ch.counts[class] == 0 then ch.first[class] = now end
  ch.counts[class] = ch.counts[class] + 1
  stats.add("events")
  if ch.pget and not ch.batch then
    schedule_release(ch)
  end
end

-- Resets the application's transient state for `resume`: its conversations
-- go (on_reset), queued events are dropped, and the pending or next answer
-- has a resume link.
function M.reset(app)
  local ch = channels[app]
  on_reset(app)
  clear_queue(ch)
  -- the batch handed out counts as acknowledged: the resume batch gets a new
  -- self link (a client must not take it for the one it already had)
  if ch.batch then ch.next_ack = ch.next_ack + 1 end
  ch.batch = nil
  ch.resume = true
  console.channel(app, "resume")
  if ch.pget then
    deliver(ch, build_batch(ch))
  end
end

-- The pending or the next P-GET gets a resync answer.
function M.resync(app)
  local ch = channels[app]
  local p = take_pget(ch)
  if p then
    host.respond(p.box, reply.events(p.ctx, resync_batch(ch, p.ack)))
    console.channel(app, "resync", ch.next_ack)
  else
    ch.resync = true
  end
end

-- Closes the channel; a pending P-GET gets 404 with `subcode` (default
-- ApplicationNotFound).
function M.close(app, why, subcode)
  local ch = channels[app]
  if not ch then return end
  channels[app] = nil
  local p = take_pget(ch)
  if p then
    host.respond(p.box, reply.error(p.ctx, 404, "NotFound", subcode or "ApplicationNotFound",
      why or "The application does not exist."))
  end
end

local REPLACED = "The existing P-GET was replaced with a new P-GET from the client application."

local function replaced(ctx)
  return reply.error(ctx, 409, "Conflict", "PGetReplaced", REPLACED)
end

-- Another client's P-GET replaces the application's (control API): the
-- pending one gets 409 PGetReplaced now, or, with none pending, the next
-- one does.  Returns true if a pending one was answered.
function M.replace_foreign(app)
  local ch = channels[app]
  local p = take_pget(ch)
  if not p then
    ch.replaced = true
    return false
  end
  ch.last_pget = host.now()
  host.respond(p.box, replaced(p.ctx))
  console.channel(app, "replaced")
  return true
end

-- The client of a held P-GET went away (main.c closed the connection): the
-- channel waits for the next P-GET, its batch kept if it had one.
function M.gone(box)
  local ch = held[box]
  if ch and ch.pget and ch.pget.box == box then
    take_pget(ch)
    ch.last_pget = host.now()
    console.channel(ch.app, "left", ch.next_ack)
  end
end

-- Is a P-GET pending?
function M.holding(app)
  local ch = channels[app]
  return ch ~= nil and ch.pget ~= nil
end

-- When the application's last P-GET ended (or arrived, if it is held).
function M.last_pget(app)
  local ch = channels[app]
  return ch and ch.last_pget or 0
end

-- The channel's state for the control API.
function M.info(app)
  local ch = channels[app]
  return { next_ack = ch.next_ack, unacked_batch = ch.batch ~= nil, queued = queued(ch), pget = ch.pget ~= nil,
    pget_agents = ch.agents, replacements = ch.replacements }
end

-- A number query parameter clamped to lo..hi; nil if absent, false if bad.
local function numparam(q, name, lo, hi)
  local v = q[name]
  if v == nil or v == "" then return nil end
  local n = tonumber(v)
  if not n or n ~= n then return false end
  return math.min(math.max(n, lo), hi)
end

-- Who sends the P-GETs (their User-Agent), for fleet specs: the runs of
-- P-GETs from one agent in order, and which agent's pending P-GET another
-- one replaced (the last 32 of each).
local function note_agent(ch, agent)
  ch.agents = ch.agents or {}
  local last = ch.agents[#ch.agents]
  if last and last.agent == agent then
    last.pgets = last.pgets + 1
    return
  end
  if #ch.agents == 32 then table.remove(ch.agents, 1) end
  ch.agents[#ch.agents + 1] = { agent = agent or "", pgets = 1 }
end

local function note_replaced(ch, old, new)
  ch.replacements = ch.replacements or {}
  if #ch.replacements == 32 then table.remove(ch.replacements, 1) end
  ch.replacements[#ch.replacements + 1] = { replaced = old or "", by = new or "" }
end

-- GET <app>/events?ack=N[&timeout=&low=&medium=&priority=]
function M.get(ctx, app)
  local ch = channels[app]
  local req = ctx.req
  local q = req.query
  local timeout = numparam(q, "timeout", config.get("min-timeout"), 1800)
  local low = numparam(q, "low", config.get("min-aggregation"), 1800)
  local medium = numparam(q, "medium", config.get("min-aggregation"), 1800)
  local priority = numparam(q, "priority", -2 ^ 31, 2 ^ 31)
  if timeout == false or low == false or medium == false or priority == false then
    return reply.bad_parameter(ctx, "timeout, low, medium and priority must be numbers.")
  end
  ch.params.timeout = timeout or ch.params.timeout
  ch.params.low = low or ch.params.low
  ch.params.medium = medium or ch.params.medium
  priority = priority or 0
  local ack = tonumber(q.ack)
  note_agent(ch, req.headers["user-agent"])

  -- A newer P-GET replaces the pending one, unless its priority is lower:
  -- the losing one, new or pending, gets the 409.
  local had_pending = ch.pget ~= nil
  if ch.replaced then
    ch.replaced = false
    return replaced(ctx)
  end
  if ch.pget then
    if priority < ch.pget.priority then
      return replaced(ctx)
    end
    local old = take_pget(ch)
    note_replaced(ch, old.agent, req.headers["user-agent"])
    host.respond(old.box, replaced(old.ctx))
  end

  local now = host.now()
  if not had_pending and now - ch.last_pget > config.get("resume-after") and not ch.resume then
    -- The client was away: conversations are gone, the next answer says resume.
    M.reset(app)
  end
  ch.last_pget = now

  if ack and ch.batch and ack == ch.next_ack + 1 then
    -- The client acknowledges the batch it holds.
    ch.batch = nil
    ch.next_ack = ch.next_ack + 1
    console.channel(app, "ack", ack - 1)
  end
  if ch.resync then
    ch.resync = false
    console.channel(app, "resync", ch.next_ack)
    return reply.events(ctx, resync_batch(ch, ack))
  end
  if ch.resume then
    -- Whatever ack the client had, the state was reset: answer with resume.
    ch.batch = nil
    ack = ch.next_ack
  end
  if ack ~= ch.next_ack then
    console.channel(app, "resync", ch.next_ack)
    return reply.events(ctx, resync_batch(ch, ack))
  end

  local function answer(batch, again)
    if faults.take_drop() then
      console.channel(app, "dropped", ch.next_ack)
      return "drop"
    end
    console.channel(app, again and "again" or "sent", ch.next_ack, batch)
    return reply.events(ctx, batch)
  end
  if ch.batch then
    return answer(ch.batch, true) -- the same batch again: it was never acknowledged
  end
  local at = release_at(ch)
  if ch.resume or (at and at <= now) then
    return answer(build_batch(ch))
  end
  -- Wait: suspended in C, no CPU until an event is due or the timeout.
  local p = { box = req.box, ctx = { fmt = ctx.fmt, ctype = ctx.ctype }, priority = priority, ack = ack,
              agent = req.headers["user-agent"] }
  ch.pget = p
  held[req.box] = ch
  console.channel(app, "held", ack)
  p.timer = timers.after(ch.params.timeout, function()
    if ch.pget == p then
      deliver(ch, build_batch(ch))
    end
  end)
  schedule_release(ch)
  return "suspend"
end

return M
