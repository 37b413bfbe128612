-- wrk script: POST a 1 KiB blob under a new id on every request (a real store, not a replay).
local counter = 0
local data = string.rep("QUJD", 342) .. "QUI="  -- 1 KiB of Base64
request = function()
  counter = counter + 1
  local body = '{"id":"wrk/' .. math.random(1, 1e9) .. '-' .. counter .. '","data":"' .. data .. '"}'
  local headers = {["Content-Type"] = "application/json"}
  for name, value in pairs(wrk.headers) do headers[name] = value end  -- keep -H (the token)
  return wrk.format("POST", "/v1/blobs", headers, body)
end
