-- busted output: the usual terminal output, then a plain "N passed, N failed"
-- closing line that CI can read.
return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.utfTerminal")(options)
  local function summary()
    local passed = #handler.successes
    local failed = #handler.failures + #handler.errors
    io.write(("\n%d passed, %d failed, %d skipped\n"):format(passed, failed, #handler.pendings))
    io.flush()
    return nil, true
  end
  busted.subscribe({ "suite", "end" }, summary)
  return handler
end
