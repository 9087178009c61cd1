-- `make rock`: the installed rock, used from outside the checkout, works:
-- the module loads and parses, the client loads, ucwa.sim finds the rock's
-- own ucwa-sim and talks to it, and the version is the rockspec's.
local ucwa = require "ucwa"
assert(ucwa.parse('{"rel":"x"}', "application/json").rel == "x")
require "ucwa.client"
require "ucwa.conversation"
local so = package.searchpath("ucwa.core", package.cpath)
assert(not so:find("/build/ucwa/", 1, true), "ucwa.core came from the checkout: " .. so)
local sim = require("ucwa.sim").start{ step_delay = 0 }
local status = sim:control("GET", "/_sim/state")
assert(status == 200, "the rock's ucwa-sim did not answer")
assert(sim:stop())
print("rock ok: " .. so .. ", ucwa " .. ucwa._VERSION)
