--- Named callbacks for every object of the library: `on`, `off`, and the
-- emission that runs them. Each class lists the event names it has, so a
-- misspelt name raises at `on` instead of never firing. This module is the
-- only reader of an object's handler lists.
-- @module ucwa.emitter
local emitter = {}

local function names(events)
  local list = {}
  for k in pairs(events) do list[#list + 1] = k end
  table.sort(list)
  return table.concat(list, ", ")
end

local function check(kind, events, name, fn, what)
  if type(name) ~= "string" or not events[name] then
    error(("bad argument #1 to '%s' (unknown %s event '%s'; known: %s)")
      :format(what, kind, tostring(name), names(events)), 3)
  end
  if type(fn) ~= "function" then error(("bad argument #2 to '%s' (function expected)"):format(what), 3) end
end

--- Gives `class` the methods `on(name, fn)` and `off(name, fn)` for the
-- event names of the set `events`; `kind` names the class in errors.
-- @tparam table class
-- @string kind
-- @tparam table events set of names
function emitter.install(class, kind, events)
  class.events = events
  function class.on(self, name, fn)
    check(kind, events, name, fn, "on")
    local all = rawget(self, "_handlers")
    if not all then all = {}; rawset(self, "_handlers", all) end
    local old = all[name] or {}
    -- copy on write: emission in progress keeps iterating the list it had
    local list = table.move(old, 1, #old, 1, {})
    list[#list + 1] = fn
    all[name] = list
    return self
  end
  function class.off(self, name, fn)
    check(kind, events, name, fn, "off")
    local all = rawget(self, "_handlers")
    local old = all and all[name]
    if not old then return self end
    local list = {}
    for _, f in ipairs(old) do
      if f ~= fn then list[#list + 1] = f end
    end
    all[name] = list[1] and list or nil
    return self
  end
end

--- Calls each handler of `name` on `obj` through `call(fn, ...)`, which
-- runs it protected and reports what it raises.
-- @tparam table obj
-- @string name
-- @tparam function call
function emitter.emit(obj, name, call, ...)
  local all = rawget(obj, "_handlers")
  local list = all and all[name]
  if not list then return end
  for i = 1, #list do call(list[i], ...) end
end

--- True when `obj` has at least one handler for `name`.
-- @tparam table obj
-- @string name
-- @treturn boolean
function emitter.has(obj, name)
  local all = rawget(obj, "_handlers")
  return all ~= nil and all[name] ~= nil
end

return emitter
