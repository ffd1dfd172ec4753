-- Shared wrk reporting: one machine-readable line at the end of a run.
-- Answers of 400 and above count as errors (wrk counts them in summary.errors.status; its own
-- printed summary counts only socket errors). No `response` callback: with one, wrk hands
-- every answer's headers and body to Lua, and that costs the load generator more CPU the more
-- headers a server sends (1.4 us of wrk's CPU per GET latest more for ours than for the
-- ceiling, whose answer has fewer headers), which two cores shared with the server pay.
-- No scenario expects a 1xx or 3xx answer.
if report_loaded then return end
report_loaded = true

function done(summary, latency, requests)
  local e = summary.errors
  local sock = e.connect + e.read + e.write + e.timeout
  local bad = e.status
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    sock + bad))
end
