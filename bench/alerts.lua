-- GET /api/v1/fleet/alerts with the default query.
local key = os.getenv("KEY")
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
request = function()
  return wrk.format("GET", "/api/v1/fleet/alerts", { ["Authorization"] = "Bearer " .. key })
end
