-- wrk script for bench/memory.ts: every request claims a different client address (X-Forwarded-For, which Meridian
-- trusts from loopback there), drawn from the public IPv4 space, so the geo cache fills and then keeps evicting.
math.randomseed(os.time())
request = function()
  local ip = math.random(1, 223) .. "." .. math.random(0, 255) .. "." .. math.random(0, 255) .. "." .. math.random(1, 254)
  return wrk.format(nil, nil, { ["x-forwarded-for"] = ip })
end
