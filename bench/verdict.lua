-- POST a verdict for a random benchmark among BENCHMARKS.
local n = tonumber(os.getenv("BENCHMARKS") or "100")
local project = os.getenv("PROJECT") or "bench"
local key = os.getenv("KEY")
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
dofile(os.getenv("BENCH_DIR") .. "/pick.lua")
local statuses = { "pass", "pass", "pass", "warn", "fail" }
function verdict_request()
  local s = statuses[math.random(1, #statuses)]
  local body = '{"benchmark":"bench-' .. math.random(0, n - 1) .. '","run_id":"' .. unique_id()
    .. '","status":"' .. s .. '","counts":{"pass":' .. (s == "pass" and 1 or 0) .. ',"warn":'
    .. (s == "warn" and 1 or 0) .. ',"fail":' .. (s == "fail" and 1 or 0) .. ',"skip":0},"reasons":['
    .. (s == "pass" and "" or '"wall_ms regressed"') .. '],"git_ref":"refs/heads/main","git_sha":null,"wall_ms_cv":'
    .. string.format("%.3f", math.random() * 0.4) .. '}'
  return wrk.format("POST", "/api/v1/projects/" .. project .. "/verdicts",
    { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }, body)
end
request = verdict_request
