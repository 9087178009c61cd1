--- Callback-or-coroutine glue for every network method.
-- A method takes an optional trailing callback cb(result, err). Without one,
-- inside a coroutine started by client:spawn, it yields and returns result, err;
-- elsewhere a failure goes to the client's "error" handlers.
-- One runner per client: it knows which coroutines are the client's.
-- @module ucwa.async
local errors = require "ucwa.errors"

local async = {}

local running, yield, resume, status = coroutine.running, coroutine.yield, coroutine.resume, coroutine.status

local Runner = {}
Runner.__index = Runner

--- A runner whose coroutine failures go to `report(err)`.
-- @tparam function report
function async.new(report)
  return setmetatable({ spawned = setmetatable({}, { __mode = "k" }), report = report }, Runner)
end

--- Runs fn(...) in a new coroutine of this runner; returns the coroutine.
function Runner:spawn(fn, ...)
  local co = coroutine.create(fn)
  self.spawned[co] = true
  self:resume(co, ...)
  return co
end

--- Resumes co; an error raised in it goes to `report` as a CallbackError.
function Runner:resume(co, ...)
  local ok, err = resume(co, ...)
  if not ok then
    self.spawned[co] = nil
    self.report(errors.new{ code = "CallbackError", message = debug.traceback(co, tostring(err)) })
  elseif status(co) == "dead" then
    self.spawned[co] = nil
  end
end

--- The running coroutine when it is one of this runner's, else nil.
function Runner:current()
  local co = running()
  if co and self.spawned[co] then return co end
end

--- In one of this runner's coroutines: runs start(done) and returns done's
-- arguments, yielding until done is called (at once when done is called
-- before start returns).
function Runner:await(start)
  local co = assert(self:current(), "await outside a coroutine of the client")
  local state, results = "running", nil
  start(function(...)
    if state == "waiting" then
      state = "done"
      self:resume(co, ...)
    elseif state == "running" then
      state, results = "sync", table.pack(...)
    end
  end)
  if state == "sync" then return table.unpack(results, 1, results.n) end
  state = "waiting"
  return yield()
end

--- Runs start(done) and delivers done's arguments by the rule of this
-- module: to cb, or back to the calling coroutine, or a failure to `report`.
function Runner:call(cb, start)
  if cb then
    start(cb)
    return
  end
  if self:current() then return self:await(start) end
  start(function(_, err)
    if err then self.report(err) end
  end)
end

--- Waits in one of this runner's coroutines until register(wake) calls
-- wake(...); returns wake's arguments. `what` names the caller in errors.
function Runner:wait(what, register)
  local co = self:current()
  if not co then error(what .. " needs a coroutine started with client:spawn", 3) end
  register(function(...) self:resume(co, ...) end)
  return yield()
end

--- Suspends one of this runner's coroutines for `seconds`, with `after(seconds, fn)`
-- providing the timer.
function Runner:sleep(seconds, after)
  local co = assert(self:current(), "sleep outside a coroutine of the client")
  after(seconds, function() self:resume(co) end)
  return yield()
end

return async
