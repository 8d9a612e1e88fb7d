-- wrk script for the load test: sets up the request from the environment
-- and prints the results as one JSON line when the run is done.
--
--   LOADTEST_METHOD      GET (default) or POST
--   LOADTEST_BODY_SIZE   bytes of request body to send (default 0)
--   LOADTEST_CLOSE       1: send `Connection: close` on every request
--
-- The JSON line starts with "LOADTEST_RESULT " so the harness can find it
-- among wrk's own output. Latencies are in microseconds.

local method = os.getenv("LOADTEST_METHOD") or "GET"
local body_size = tonumber(os.getenv("LOADTEST_BODY_SIZE") or "0") or 0

wrk.method = method
if body_size > 0 then
   wrk.body = string.rep("x", body_size)
   wrk.headers["Content-Type"] = "application/octet-stream"
end
if os.getenv("LOADTEST_CLOSE") == "1" then
   wrk.headers["Connection"] = "close"
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'LOADTEST_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "mean": %.1f, "max": %d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.mean, latency.max))
end
