--- How many clients of one shared engine sign in at once. A fleet that
-- starts (or restarts after a crash) signs in every bot together: thousands
-- of autodiscoveries, token grants and applications in flight at once give
-- the server a burst it may refuse, and leave the process's heap scattered
-- with the freed pieces of that peak (issue 16: 41 KB of RSS a bot with
-- 1,000 at once, 28 KB in waves of 64, for the same 22 KB in use). The
-- others wait their turn, first come first served; a client closed while it
-- waits or signs in gives its turn up.
-- @module ucwa.signin_gate
local gate = {}

--- Sign-ins in flight at once on one engine, at most, unless
-- `ucwa.engine{ max_signins = n }` says otherwise.
gate.LIMIT = 64

local gates = setmetatable({}, { __mode = "k" }) -- engine -> { busy, holders, queue, head, tail }

local function of(engine)
  local g = gates[engine]
  if not g then
    g = { busy = 0, limit = gate.LIMIT, holders = setmetatable({}, { __mode = "k" }), queue = {}, head = 1, tail = 0 }
    gates[engine] = g
  end
  return g
end

--- Sets an engine's limit (ucwa.engine's `max_signins`).
-- @param engine
-- @int n
function gate.limit(engine, n)
  of(engine).limit = n
end

--- In one of the session's coroutines: waits for a turn, then holds it
-- until `gate.leave`. Returns false when the session was closed meanwhile.
-- @tparam table session
-- @treturn boolean
function gate.enter(session)
  local g = of(session.engine)
  local held = g.holders[session]
  if held then -- a sign-in inside a restore: one turn, held until both leave
    g.holders[session] = held + 1
    return true
  end
  if g.busy >= g.limit then
    session.async:await(function(wake)
      g.tail = g.tail + 1
      g.queue[g.tail] = { session = session, wake = wake }
    end)
    if session.state == "closed" or session.state == "closing" then return false end
  end
  g.busy = g.busy + 1
  g.holders[session] = 1
  return true
end

--- Gives the session's turn up (after as many leaves as enters; `all`:
-- at once, as a close does), waking the next in line.
-- @tparam table session
-- @tparam[opt] boolean all
function gate.leave(session, all)
  local g = gates[session.engine]
  local held = g and g.holders[session]
  if not held then return end
  if held > 1 and not all then
    g.holders[session] = held - 1
    return
  end
  g.holders[session] = nil
  g.busy = g.busy - 1
  -- the next one takes the turn as it wakes; a closed one passes it on
  while g.busy < g.limit and g.head <= g.tail do
    local w = g.queue[g.head]
    g.queue[g.head] = nil
    g.head = g.head + 1
    w.wake()
  end
end

return gate
