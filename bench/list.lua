-- GET one list page: limit=50, no receipts.
local project = os.getenv("PROJECT") or "bench"
local projects = tonumber(os.getenv("PROJECTS") or "0")
local key = os.getenv("KEY")
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
dofile(os.getenv("BENCH_DIR") .. "/pick.lua")
request = function()
  return wrk.format("GET", "/api/v1/projects/" .. pick_project(project, projects)
    .. "/baselines?limit=50&include_receipt=false", { ["Authorization"] = "Bearer " .. key })
end
