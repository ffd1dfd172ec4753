-- POST an upload with a server-generated version; body = a real perfgate receipt.
local project = os.getenv("PROJECT") or "bench"
local key = os.getenv("KEY")
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
local f = assert(io.open(os.getenv("RECEIPT"), "r"))
local receipt = f:read("*a"):gsub("%s+$", "")
f:close()
local counter = 0
request = function()
  counter = counter + 1
  local body = '{"benchmark":"upload-' .. (counter % 50) .. '","version":null,"git_ref":null,"git_sha":null,"receipt":'
    .. receipt .. ',"metadata":{},"tags":[],"normalize":false}'
  return wrk.format("POST", "/api/v1/projects/" .. project .. "/baselines",
    { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }, body)
end
