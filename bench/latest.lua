-- GET latest of a random benchmark among BENCHMARKS (env), project from PROJECT, or a random one
-- of PROJECTS projects named PROJECT .. "%03d" when PROJECTS is set (scale run).
local n = tonumber(os.getenv("BENCHMARKS") or "100")
local project = os.getenv("PROJECT") or "bench"
local projects = tonumber(os.getenv("PROJECTS") or "0")
local key = os.getenv("KEY")
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
dofile(os.getenv("BENCH_DIR") .. "/pick.lua")
request = function()
  return wrk.format("GET", "/api/v1/projects/" .. pick_project(project, projects) .. "/baselines/bench-"
    .. math.random(0, n - 1) .. "/latest", { ["Authorization"] = "Bearer " .. key })
end
