-- wrk: each request asks /1/links/shares.json for one of READ_URLS counted URLs, at random
-- (bench/readbench.py's url_of, the same formula). With READ_PACE_MS set, each connection
-- waits between its answer and its next request a random 1 to 2 × READ_PACE_MS - 2 whole
-- milliseconds (READ_PACE_MS - 0.5 on average, leaving about half a millisecond for the
-- answer): arrivals spread over time, not in lockstep bursts.
local urls = tonumber(os.getenv("READ_URLS"))
local pace = tonumber(os.getenv("READ_PACE_MS") or "0")
math.randomseed(7)

local function url_of(i)
  return string.format("bench%d.example.com/%d/post-%x", i % 9973, 2016 + i % 9, i)
end

request = function()
  local path = "/1/links/shares.json?url=" .. url_of(math.random(0, urls - 1))
  return wrk.format("GET", path)
end

if pace > 0 then
  delay = function()
    return math.random(1, 2 * pace - 2)
  end
end
