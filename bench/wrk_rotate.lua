-- wrk script: POST a fixed set of bodies in rotation; prints a JSON summary line at the end.
-- usage: wrk ... -s wrk_rotate.lua URL -- TOKEN BODY_FILE...
local reqs = {}
local idx = 0

init = function(args)
  local token = args[1]
  local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
  for i = 2, #args do
    local f = assert(io.open(args[i], "rb"))
    local body = f:read("*a")
    f:close()
    reqs[#reqs + 1] = wrk.format("POST", nil, headers, body)
  end
end

request = function()
  idx = idx % #reqs + 1
  return reqs[idx]
end

done = function(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "errors_connect": %d, "errors_read": %d, ' ..
    '"errors_write": %d, "errors_status": %d, "errors_timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
