-- wrk script: POST /v1/activations with realistic phone-home bodies.
--
--   wrk -t1 -c64 -d10s --latency -s bench/activations.lua \
--       http://127.0.0.1:8080/v1/activations -- build/bench/bodies.lua
--
-- The bodies file (written by bench/fixture.py) returns a table with one entry per license, each a
-- table of the JSON bodies of that license's servers (one server for most licenses, two for a
-- few, so some answers are GRACE). A request picks a random license, then one of its servers.
-- Every request is formatted once in init(), so wrk spends no Lua time building requests and
-- no response() callback is defined (it would slow wrk down on every answer).

local licenses = {}
local count = 0

function init(args)
  local path = args[1] or os.getenv("BENCH_BODIES")
  if path == nil then
    error("usage: wrk ... -s activations.lua URL -- <bodies.lua>")
  end
  local bodies = dofile(path)
  local headers = { ["Content-Type"] = "application/json" }
  for i, servers in ipairs(bodies) do
    local formatted = {}
    for j, body in ipairs(servers) do
      formatted[j] = wrk.format("POST", nil, headers, body)
    end
    licenses[i] = formatted
  end
  count = #licenses
  math.randomseed(os.time())
end

function request()
  local servers = licenses[math.random(count)]
  return servers[math.random(#servers)]
end
