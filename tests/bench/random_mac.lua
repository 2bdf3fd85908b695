-- wrk: each request asks for one of the bench's 10,000 seeded nodes at random
-- (MACs 02:00:00:00:00:00 to 02:00:00:00:27:0f), on the URL's path.
math.randomseed(20261126)
local nodes = 10000

request = function()
  local i = math.random(0, nodes - 1)
  local mac = string.format("02:00:00:00:%02x:%02x", math.floor(i / 256), i % 256)
  return wrk.format(nil, wrk.path .. "?mac=" .. mac)
end
