-- Parsing speed against its baselines, measured in the same run:
--   ucwa.parse (JSON)  vs cjson.decode of the same body     (goal: 1.1x, issue 16)
--   ucwa.parse (XML)   vs a bare lxp.new({}):parse(body)    (goal: 1.15x)
--   ucwa.parse_events on a 50-event batch, JSON and XML, vs the same baselines.
-- Prints ratios; no pass/fail. Run: make bench (or lua5.4 bench/parse_bench.lua).
local build = os.getenv("UCWA_BUILD") or "build"
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local core = require "ucwa.core"
local cjson = require "cjson"
local lxp = require "lxp"
local F = require "support.fixtures"

local fixtures, read = F.dir, F.read

local clock = os.clock
-- one round: n calls of f, CPU seconds per call
local function round(n, f, body, ct)
  local t0 = clock()
  for _ = 1, n do f(body, ct) end
  return (clock() - t0) / n
end
local decode = cjson.decode
local function cjson_decode(body) return decode(body) end

local function lxp_pass(body)
  local p = lxp.new({})
  assert(p:parse(body))
  assert(p:parse())
  p:close()
end

-- The subject and its baseline in alternating rounds, best of 9 each: a
-- neighbour's load hits both alike (the machine is shared).
local function report(name, n, f, base, body, ct, bar)
  collectgarbage()
  collectgarbage()
  local tb, tf = math.huge, math.huge
  for _ = 1, 9 do
    tb = math.min(tb, round(n, base, body, ct))
    tf = math.min(tf, round(n, f, body, ct))
  end
  print(string.format("%-44s %8.1f us  baseline %8.1f us  ratio %.2fx  (bar %.2fx)", name, tf * 1e6, tb * 1e6,
    tf / tb, bar))
end

local json_body, xml_body = F.invitation()
assert(core.parse(json_body, "application/json"))
assert(core.parse(xml_body, "application/xml"))

-- A 50-event batch from the event samples of the reference, in JSON and in
-- the XML event shape (EventChannelDetails.md).
local function event_batches()
  local manifest = cjson.decode(read(fixtures .. "/manifest.json"))
  local events, xml = {}, {}
  local attr = F.xml_attr
  for _, e in ipairs(manifest) do
    if e.kind == "event" and #events < 50 then
      local b = cjson.decode(read(fixtures .. "/" .. e.file))
      for _, s in ipairs(b.sender) do
        for _, ev in ipairs(s.events) do
          if #events < 50 then
            events[#events + 1] = { rel = s.rel, href = s.href, events = { ev } }
            local x = { string.format('<sender rel="%s" href="%s">', attr(s.rel), attr(s.href)),
              string.format('<%s rel="%s" href="%s">', ev.type, attr(ev.link.rel), attr(ev.link.href)) }
            if ev["in"] then
              x[#x + 1] = string.format('<in rel="%s" href="%s"/>', attr(ev["in"].rel), attr(ev["in"].href))
            end
            x[#x + 1] = string.format("</%s></sender>", ev.type)
            xml[#xml + 1] = table.concat(x)
          end
        end
      end
    end
  end
  local j = cjson.encode{ _links = { self = { href = "/events?ack=1" }, next = { href = "/events?ack=2" } },
    sender = events }
  local x = '<?xml version="1.0" encoding="utf-8"?>\n<events href="/events?ack=1" '
    .. 'xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa"><link rel="next" href="/events?ack=2"/>'
    .. table.concat(xml, "\n") .. "</events>"
  return j, x, #events
end

local ev_json, ev_xml, nev = event_batches()
local bj = assert(core.parse_events(ev_json, "application/json"))
local bx = assert(core.parse_events(ev_xml, "application/xml"))
assert(#bj.senders == nev and #bx.senders == nev)

local N = tonumber(os.getenv("BENCH_N")) or 3000
print(string.format("lua-ucwa parse bench (%d iterations x best of 9, alternating with the baseline; "
  .. "bodies %d B JSON, %d B XML; %d-event batches)",
  N, #json_body, #xml_body, nev))
report("parse onlineMeetingInvitation JSON", N, core.parse, cjson_decode, json_body, "application/json", 1.1)
report("parse onlineMeetingInvitation XML", N, core.parse, lxp_pass, xml_body, "application/xml", 1.15)
report("parse_events 50 events JSON", N // 3, core.parse_events, cjson_decode, ev_json, "application/json", 1.3)
report("parse_events 50 events XML", N // 3, core.parse_events, lxp_pass, ev_xml, "application/xml", 1.5)
