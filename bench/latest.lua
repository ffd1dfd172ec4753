-- GET latest of a random benchmark among BENCHMARKS (env), project from PROJECT.
local n = tonumber(os.getenv("BENCHMARKS") or "100")
local project = os.getenv("PROJECT") or "bench"
local key = os.getenv("KEY")
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
request = function()
  local i = math.random(0, n - 1)
  return wrk.format("GET", "/api/v1/projects/" .. project .. "/baselines/bench-" .. i .. "/latest",
    { ["Authorization"] = "Bearer " .. key })
end
