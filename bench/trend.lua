-- GET the wall_ms trend (window=30) of a random benchmark among BENCHMARKS.
local n = tonumber(os.getenv("BENCHMARKS") or "100")
local project = os.getenv("PROJECT") or "bench"
local projects = tonumber(os.getenv("PROJECTS") or "0")
local key = os.getenv("KEY")
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
dofile(os.getenv("BENCH_DIR") .. "/pick.lua")
request = function()
  return wrk.format("GET", "/api/v1/projects/" .. pick_project(project, projects) .. "/baselines/bench-"
    .. math.random(0, n - 1) .. "/trend?metric=wall_ms&window=30", { ["Authorization"] = "Bearer " .. key })
end
