-- POST one gate: 100 runs (bench-0 … bench-99 of project p000) judged against their history.
-- The body is built once by bench/run.sh --gate (GATE_BODY); gates without `record` change
-- nothing, so every request does the same work.
local key = os.getenv("KEY")
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
local f = assert(io.open(os.getenv("GATE_BODY"), "r"))
local body = f:read("*a")
f:close()
request = function()
  return wrk.format("POST", "/api/v1/projects/p000/gates",
    { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }, body)
end
