-- tests/bench/http/orders.lua - wrk script for the HTTP intake bench.
--
-- POSTs orders to /v1/orders over keep-alive connections, one valid order
-- per request, rotating over users and their bearer tokens read from the
-- file named by $TOKENS (one "user token" per line; phone-sim token --user
-- alice prints one). With IDEMPOTENCY_KEYS=1 every request also carries a
-- unique Idempotency-Key (optional in the API; it costs order-service an
-- extra lookup and insert).
--
-- At the end it prints two machine-readable lines (run.sh reads them):
--   wrk_status 202=N 429=N other=N errors=N
--   wrk_latency p50_ms=.. p99_ms=.. rps=.. requests=N seconds=..
-- "errors" are requests that got no HTTP answer (socket errors, timeouts).
--
-- With REQUESTS_PER_THREAD=N each wrk thread stops once N of its requests
-- were answered (the flash-sale burst: a number of orders, not a duration);
-- requests still in flight then are never read, and are not counted.  wrk's
-- main thread sleeps out its whole -d, so the last of the THREADS threads to
-- finish (each leaves a file in DONE_DIR) interrupts it with SIGINT, as ^C
-- would: wrk then reports the time the burst took.
--
-- wrk runs one Lua state per thread: counters live in each thread's globals
-- and done() adds them up through the thread objects kept by setup().

local threads = {}

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

local function read_tokens()
   local path = os.getenv("TOKENS")
   if path == nil or path == "" then
      error("orders.lua: set TOKENS to a file of 'user token' lines")
   end
   local f = io.open(path, "r")
   if f == nil then
      error("orders.lua: cannot read TOKENS=" .. path)
   end
   local list = {}
   for line in f:lines() do
      local user, token = line:match("^%s*(%S+)%s+(%S+)%s*$")
      if user ~= nil and user:sub(1, 1) ~= "#" then
         table.insert(list, { user = user, token = token })
      end
   end
   f:close()
   if #list == 0 then
      error("orders.lua: no 'user token' lines in " .. path)
   end
   return list
end

local users, prepared = {}, {}
local next_user, seq = 0, 0
local with_keys = os.getenv("IDEMPOTENCY_KEYS") == "1"
local per_thread = tonumber(os.getenv("REQUESTS_PER_THREAD") or "")
local done_dir, nthreads = os.getenv("DONE_DIR"), tonumber(os.getenv("THREADS") or "")
local finished = false
if per_thread ~= nil and (per_thread < 1 or done_dir == nil or done_dir:find("'") or nthreads == nil) then
   error("orders.lua: REQUESTS_PER_THREAD needs to be 1 or more, with DONE_DIR (a folder) and THREADS")
end

local function order_request(u, key)
   local headers = {
      ["Authorization"] = "Bearer " .. u.token,
      ["Content-Type"] = "application/json",
   }
   if key ~= nil then
      headers["Idempotency-Key"] = key
   end
   local body = '{"user_id":"' .. u.user .. '","items":[{"sku":"margherita","qty":1}]}'
   return wrk.format("POST", "/v1/orders", headers, body)
end

function init(args)
   counts = { ok = 0, limited = 0, other = 0 }
   users = read_tokens()
   -- without idempotency keys every user's request is the same bytes: build them once
   for i, u in ipairs(users) do
      prepared[i] = order_request(u, nil)
   end
   next_user = (id or 1) - 1
end

function request()
   next_user = next_user % #users + 1
   if not with_keys then
      return prepared[next_user]
   end
   seq = seq + 1
   local key = string.format("bench-%d-%d-%d", os.time(), id or 1, seq)
   return order_request(users[next_user], key)
end

function response(status, headers, body)
   if status == 202 then
      counts.ok = counts.ok + 1
   elseif status == 429 then
      counts.limited = counts.limited + 1
   else
      counts.other = counts.other + 1
   end
   if per_thread ~= nil and not finished and counts.ok + counts.limited + counts.other >= per_thread then
      finished = true
      wrk.thread:stop()
      -- $PPID of the shell is wrk itself.  system() ignores SIGINT in the whole of wrk until the shell
      -- returns, so the signal is sent from the background a moment later (again, until wrk is gone).
      os.execute(string.format("touch '%s/%d' && [ \"$(ls '%s' | wc -l)\" -ge %d ] && " ..
         "(for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.02; kill -INT $PPID 2>/dev/null || exit 0; done) " ..
         ">/dev/null 2>&1 &", done_dir, id or 1, done_dir, nthreads))
   end
end

function done(summary, latency, requests)
   local ok, limited, other = 0, 0, 0
   for _, thread in ipairs(threads) do
      local c = thread:get("counts")
      ok = ok + c.ok
      limited = limited + c.limited
      other = other + c.other
   end
   local e = summary.errors
   local errors = e.connect + e.read + e.write + e.timeout
   local seconds = summary.duration / 1e6
   io.write(string.format("wrk_status 202=%d 429=%d other=%d errors=%d\n", ok, limited, other, errors))
   io.write(string.format("wrk_latency p50_ms=%.3f p99_ms=%.3f rps=%.1f requests=%d seconds=%.3f\n",
      latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      summary.requests / seconds, summary.requests, seconds))
end
