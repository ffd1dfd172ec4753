-- POST an upload of a new, explicit version (unique per thread and run: the reference server's
-- generated versions collide within a second); body = a real perfgate receipt, all eight keys.
local project = os.getenv("PROJECT") or "bench"
local key = os.getenv("KEY")
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
dofile(os.getenv("BENCH_DIR") .. "/pick.lua")
local f = assert(io.open(os.getenv("RECEIPT"), "r"))
local receipt = f:read("*a"):gsub("%s+$", "")
f:close()
function upload_request()
  local id = unique_id()
  local body = '{"benchmark":"upload-' .. math.random(0, 49) .. '","version":"' .. id
    .. '","git_ref":null,"git_sha":null,"receipt":' .. receipt .. ',"metadata":{},"tags":[],"normalize":false}'
  return wrk.format("POST", "/api/v1/projects/" .. project .. "/baselines",
    { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }, body)
end
request = upload_request
