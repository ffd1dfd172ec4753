-- Mixed CI traffic: 70% GET latest, 20% POST verdict, 10% POST upload.
local n = tonumber(os.getenv("BENCHMARKS") or "100")
local project = os.getenv("PROJECT") or "bench"
local key = os.getenv("KEY")
dofile(os.getenv("BENCH_DIR") .. "/upload.lua")
dofile(os.getenv("BENCH_DIR") .. "/verdict.lua")
request = function()
  local r = math.random(1, 10)
  if r <= 7 then
    return wrk.format("GET", "/api/v1/projects/" .. project .. "/baselines/bench-" .. math.random(0, n - 1)
      .. "/latest", { ["Authorization"] = "Bearer " .. key })
  elseif r <= 9 then
    return verdict_request()
  end
  return upload_request()
end
