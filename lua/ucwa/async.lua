--- Callback-or-coroutine glue for every network method.
-- A method takes an optional trailing callback cb(result, err). Without one,
-- inside a coroutine started by client:spawn, it yields and returns result, err;
-- elsewhere a failure goes to the client's "error" handlers.
-- @module ucwa.async
local async = {}

local running, yield = coroutine.running, coroutine.yield

--- Runs start(done) and delivers done's arguments per the rule above.
function async.call(client, cb, start)
  if cb then
    start(cb)
    return
  end
  local co = running()
  if client._spawned[co] then
    return async.await(client, co, start)
  end
  start(function(_, err)
    if err then client:_report(err) end
  end)
end

--- In coroutine co: runs start(done) and returns done's arguments, yielding
-- until done is called (at once when done is called before start returns).
function async.await(client, co, start)
  local state, results = "running", nil
  start(function(...)
    if state == "waiting" then
      state = "done"
      client:_resume(co, ...)
    elseif state == "running" then
      state, results = "sync", table.pack(...)
    end
  end)
  if state == "sync" then return table.unpack(results, 1, results.n) end
  state = "waiting"
  return yield()
end

--- Waits in a spawned coroutine until register(wake) calls wake(...).
function async.wait(client, what, register)
  local co = running()
  if not client._spawned[co] then
    error(what .. " needs a coroutine started with client:spawn", 3)
  end
  register(function(...) client:_resume(co, ...) end)
  return yield()
end

return async
