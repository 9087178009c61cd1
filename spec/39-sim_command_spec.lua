-- ucwa-sim as a command: options, exit statuses, --version, and stopping
-- cleanly on SIGTERM whatever it is holding.
local helpers = require "helpers"
local C = require "support.sim_client"
local socket = require "socket"

local sim_bin = helpers.build .. "/ucwa-sim"

-- Runs the simulator to completion: stdout, stderr, exit status.
local function run(args)
  local err = os.tmpname()
  local p = assert(io.popen(sim_bin .. " " .. args .. " 2>" .. err, "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  local stderr = helpers.read(err)
  os.remove(err)
  return out, stderr, code
end

describe("ucwa-sim command line", function()
  it("documents every option in --help and exits 0", function()
    local out, _, code = run("--help")
    assert.equal(0, code)
    local src = helpers.read("sim/main.c")
    local n = 0
    for name in src:gmatch('{"([%a%-]+)", [%a_]+, 0, [%w\']+}') do
      assert.matches("%-%-" .. name:gsub("%-", "%%-"), out)
      n = n + 1
    end
    assert.is_true(n >= 16)
  end)

  it("prints the version of lua-ucwa it ships with on --version and exits 0", function()
    local out, _, code = run("--version")
    assert.equal(0, code)
    assert.equal("ucwa-sim " .. require("ucwa")._VERSION, out:match("^[^\n]+"))
  end)

  it("refuses unknown options with exit status 2", function()
    local _, _, code = run("--no-such-option")
    assert.equal(2, code)
  end)

  -- Regression: a bad value for a Lua-side option exited 1 with a traceback.
  for _, case in ipairs({
    { "--token-lifetime soon", "--token%-lifetime" },
    { "--pget-timeout -1", "--pget%-timeout" },
    { "--step-delay ''", "--step%-delay" },
    { "--directory /nonexistent/dir.json", "directory" },
  }) do
    it("exits 2 with one line on stderr for " .. case[1], function()
      local out, err, code = run("--port 0 " .. case[1])
      assert.equal(2, code)
      assert.equal("", out)
      assert.matches("^ucwa%-sim: [^\n]*" .. case[2] .. "[^\n]*\n$", err)
      assert.not_matches("traceback", err)
    end)
  end

  it("runs from --script-dir sim/lua as it does built in", function()
    local sim = C.start({ script_dir = "sim/lua" })
    finally(function() C.stop(sim) end)
    local s = C.session(sim, "bob@contoso.com")
    assert.equal(201, (s:post(s.app.href .. "/communication/onlineMeetingInvitations",
      { onlineMeetingUri = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1" })))
  end)
end)

-- Regression: MHD_stop_daemon() aborted ("called while we have suspended
-- connections", exit 134) when a P-GET arrived while the simulator was
-- stopping: the shutdown dispatched it to Lua, which suspended it again.
-- Stopping the process fills the listen backlog with P-GETs, so they all
-- arrive together with the SIGTERM.
describe("ucwa-sim SIGTERM with P-GETs held and arriving", function()
  for round = 1, 10 do
    it("exits 0 (round " .. round .. ")", function()
      local sim = C.start({ pget_timeout = 60 })
      local socks = {}
      finally(function()
        os.execute("kill -CONT " .. sim.pid .. " 2>/dev/null")
        for _, s in ipairs(socks) do s:close() end
      end)
      local sessions = {}
      for k = 1, 3 do
        sessions[k] = C.session(sim, "bob@contoso.com")
        socks[#socks + 1] = sessions[k]:raw_pget("timeout=60")
      end
      for _ = 1, 50 do
        local _, st = sim:control("GET", "/_sim/state")
        if st.pgets_held >= 3 then break end
        socket.sleep(0.02)
      end
      os.execute("kill -STOP " .. sim.pid)
      for k = 1, 30 do
        local s = sessions[k % 3 + 1]
        socks[#socks + 1] = C.raw_send(sim.base, "GET", C.path_of(s.events) .. "&timeout=60",
          { Authorization = "Bearer " .. s.token })
      end
      os.execute("kill -TERM " .. sim.pid .. "; kill -CONT " .. sim.pid)
      C.stop(sim, "exit after SIGTERM")
    end)
  end
end)
