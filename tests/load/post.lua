-- SPDX-License-Identifier: MIT
-- post.lua - wrk script: POST a JSON body read from the file named by the
-- ATROUSD_BODY environment variable, tally status codes and check that every
-- 503 carries Retry-After.  done() prints one JSON line for load.py.
local body_file = os.getenv("ATROUSD_BODY")
local f = assert(io.open(body_file, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
wrk.headers["Content-Type"] = "application/json"
f:close()

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counts = {}
  missing_retry = 0
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if status == 503 and headers["Retry-After"] == nil then
    missing_retry = missing_retry + 1
  end
end

function done(summary, latency, requests)
  local total, parts = {}, {}
  local missing = 0
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("counts")) do
      total[status] = (total[status] or 0) + n
    end
    missing = missing + t:get("missing_retry")
  end
  for status, n in pairs(total) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  io.write(string.format(
    '{"statuses": {%s}, "missing_retry_after": %d, "requests": %d, "seconds": %.3f, ' ..
    '"socket_errors": %d, "p50_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\n',
    table.concat(parts, ", "), missing, summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
