-- wrk script for bench/memory.ts: requests claim client addresses (X-Forwarded-For, which Meridian trusts from
-- loopback there) from a fixed pool of 20,000 public IPv4 addresses, taken in turn. The first pass fills the geo
-- cache (every request a database lookup); after it every address is cached, as for a site's returning clients.
math.randomseed(20261201)
local pool = {}
for i = 1, 20000 do
  pool[i] = math.random(1, 223) .. "." .. math.random(0, 255) .. "." .. math.random(0, 255) .. "." .. math.random(1, 254)
end
local next = 0
request = function()
  next = next % #pool + 1
  return wrk.format(nil, nil, { ["x-forwarded-for"] = pool[next] })
end
