-- The requests of benchmarks/server/bench_server.py for wrk, mirroring loadgen.Plan.
--
-- Run as `wrk -t C -c C -s requests.lua URL -- MODE TOKEN IDS_FILE TASKS_FILE SET EVERY SUBTASKS`:
-- one connection per wrk thread, so a thread's response() answers the request() it made just
-- before (wrk does not pipeline by default), and the thread alone owns its tasks.
--   MODE      hello (GET /), poll (GET /v1/sms/sources/{random id}/command) or mix
--   mix       every EVERY-th request of a connection is PUT /v3/tasks/{id}/progress on the
--             connection's own tasks in turn (tasks of set SET, line "SET CONN TASK_ID" in
--             TASKS_FILE), one progress step higher each time; the rest are polls
--   SUBTASKS  the tasks' subtask names, comma-separated; step k is subtask k // 101 at k % 101
-- done() prints RESULT, COUNTS, ACK (highest acknowledged step per task) and UNANSWERED (a
-- write sent but not answered when wrk stopped) lines for bench_server.py to read.

local threads = {}
local count = 0

function setup(thread)
  count = count + 1
  thread:set("conn", count)
  table.insert(threads, thread)
end

function init(args)
  mode, token, set, every = args[1], args[2], tonumber(args[5]), tonumber(args[6])
  ids = {}
  for line in io.lines(args[3]) do ids[#ids + 1] = line end
  own = {}
  if mode == "mix" then
    for line in io.lines(args[4]) do
      local s, c, task = line:match("^(%d+) (%d+) (%S+)$")
      if tonumber(s) == set and tonumber(c) == conn then own[#own + 1] = task end
    end
  end
  subtasks = {}
  for name in args[7]:gmatch("[^,]+") do subtasks[#subtasks + 1] = name end
  max_step = #subtasks * 101 - 2 -- the last subtask stops at 99: 100 would complete the task
  step, acked, unanswered = {}, {}, {}
  for _, task in ipairs(own) do step[task] = 0 end
  cnt = {polls = 0, polls_ok = 0, writes = 0, writes_ok = 0, exhausted = 0, other = 0, other_ok = 0}
  math.randomseed(conn * 1000003 + set)
  get_headers = {["X-Auth-Token"] = token}
  put_headers = {["X-Auth-Token"] = token, ["Content-Type"] = "application/json"}
  hello_request = wrk.format("GET", "/", get_headers)
  n, next_task, pending = 0, 1, nil
end

local function progress_body(k)
  return string.format(
    '{"subtask_name":"%s","progress":%d,"replicatesize":%d,"totalsize":%d,"process_trace":"bench"}',
    subtasks[math.floor(k / 101) + 1], k % 101, k * 1048576, (max_step + 1) * 1048576)
end

function request()
  n = n + 1
  pending = nil
  if mode == "hello" then return hello_request end
  if mode == "mix" and n % every == 0 then
    for _ = 1, #own do
      local task = own[next_task]
      next_task = next_task % #own + 1
      local k = step[task]
      if k < max_step then
        k = k + 1
        step[task], unanswered[task], pending = k, k, {task, k}
        return wrk.format("PUT", "/v3/tasks/" .. task .. "/progress", put_headers, progress_body(k))
      end
    end
    cnt.exhausted = cnt.exhausted + 1 -- every own task is at its last step: poll instead
  end
  return wrk.format("GET", "/v1/sms/sources/" .. ids[math.random(#ids)] .. "/command", get_headers)
end

function response(status, headers, body)
  if pending ~= nil then
    local task, k = pending[1], pending[2]
    cnt.writes = cnt.writes + 1
    unanswered[task] = nil
    if status == 200 then
      cnt.writes_ok = cnt.writes_ok + 1
      acked[task] = k -- steps only go up, so this is the highest acknowledged one
    end
  elseif mode == "hello" then
    cnt.other = cnt.other + 1
    if status == 200 then cnt.other_ok = cnt.other_ok + 1 end
  else
    cnt.polls = cnt.polls + 1
    if status == 200 then cnt.polls_ok = cnt.polls_ok + 1 end
  end
  pending = nil
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
  for _, thread in ipairs(threads) do
    local c = thread:get("cnt")
    io.write(string.format("COUNTS polls=%d polls_ok=%d writes=%d writes_ok=%d exhausted=%d other=%d other_ok=%d\n",
      c.polls, c.polls_ok, c.writes, c.writes_ok, c.exhausted, c.other, c.other_ok))
    for task, k in pairs(thread:get("acked")) do io.write("ACK ", task, " ", k, "\n") end
    for task, k in pairs(thread:get("unanswered")) do io.write("UNANSWERED ", task, " ", k, "\n") end
  end
end
