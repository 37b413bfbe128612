-- wrk script: a store under a NEW id on every request, from every thread and run.
--   wrk ... -s bench/writes.lua -- post <run>   POST /v1/blobs, JSON, 1 KiB of Base64-decoded data
--   wrk ... -s bench/writes.lua -- put <run>    PUT /v1/blobs/{id}, raw 1 KiB
-- <run> keeps ids of separate runs apart; each thread gets its own number in setup().
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

local mode, run, counter = "post", "0", 0
local data = string.rep("QUJD", 342) .. "QUI="  -- Base64 of 1,025 bytes
local raw = string.rep("x", 1024)
function init(args)
  mode = args[1] or "post"
  run = args[2] or tostring(os.time())
end

request = function()
  counter = counter + 1
  local id = "wrk/" .. mode .. "/" .. run .. "-" .. tostring(thread_no) .. "-" .. counter
  local headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end  -- keep -H (the token)
  if mode == "put" then
    headers["Content-Type"] = "application/octet-stream"
    return wrk.format("PUT", "/v1/blobs/" .. id, headers, raw)
  end
  headers["Content-Type"] = "application/json"
  return wrk.format("POST", "/v1/blobs", headers, '{"id":"' .. id .. '","data":"' .. data .. '"}')
end
