--- Small helpers shared by the Lua layer: ids, form encoding, URL pieces.
-- @module ucwa.util
local util = {}

local random = math.random

--- A random version-4 UUID string (endpointId, operationId, sessionContext).
function util.uuid()
  return ("%08x-%04x-4%03x-%x%03x-%012x"):format(random(0, 0xffffffff), random(0, 0xffff), random(0, 0xfff),
    random(8, 11), random(0, 0xfff), random(0, 0xffffffffffff))
end

--- An operationId: 32 hex digits, as the UCWA samples show.
function util.operation_id()
  return (util.uuid():gsub("-", ""))
end

local function encode_component(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

--- application/x-www-form-urlencoded body from an array of {name, value} pairs (order kept).
function util.form_encode(pairs_list)
  local out = {}
  for i, kv in ipairs(pairs_list) do
    out[i] = encode_component(kv[1]) .. "=" .. encode_component(kv[2])
  end
  return table.concat(out, "&")
end

return util
