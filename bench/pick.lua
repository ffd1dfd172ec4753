-- Shared helpers: random project choice, per-thread unique ids. Loaded once per Lua state.
if pick_loaded then return end
pick_loaded = true

function pick_project(project, projects)
  if projects > 0 then
    return string.format("%s%03d", project, math.random(0, projects - 1))
  end
  return project
end

-- setup() runs in the main state; each thread gets its own number (global `thread_no` there).
local threads_started = 0
local base_setup = setup
function setup(thread)
  threads_started = threads_started + 1
  thread:set("thread_no", threads_started)
  if base_setup then base_setup(thread) end
end

local counter = 0
-- A string unique across threads, warm-up and measured runs (RUN_TAG comes from run.sh).
function unique_id()
  counter = counter + 1
  return (os.getenv("RUN_TAG") or "r") .. "-" .. tostring(thread_no or 0) .. "-" .. counter
end

function init(args)
  math.randomseed(os.time() * 100 + (thread_no or 0))
end
