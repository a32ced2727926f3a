-- Runs an Argo CD health script (docs/argocd/health-*.lua) the way Argo CD does, for the tests.
--
--   lua5.4 e2e/argocd_health.lua SCRIPT < object.json   ->   {"status": "...", "message": "..."}
--
-- Like Argo CD's Lua VM (util/lua: gopher-lua, custom health checks without useOpenLibs), the script
-- sees the object as the global `obj` (JSON null as nil) and only the base and table libraries and a
-- safe os (time, date, clock): no string, math, io or debug, and strings have no methods. It must
-- return a table whose `status` is one of Argo CD's health codes. Works on Lua 5.1 and 5.4; needs
-- dkjson (Debian: lua-dkjson).
local json = require("dkjson")

local VALID = { Healthy = true, Progressing = true, Degraded = true, Suspended = true, Missing = true, Unknown = true }

local function fail(msg)
  io.stderr:write("argocd_health: " .. msg .. "\n")
  os.exit(2)
end

local path = arg[1] or fail("usage: argocd_health.lua SCRIPT < object.json")
local fh = io.open(path, "r") or fail("cannot read " .. path)
local source = fh:read("*a")
fh:close()

local obj, _, err = json.decode(io.read("*a"), 1, nil)
if type(obj) ~= "table" then
  fail("input is not a JSON object: " .. tostring(err))
end

local env = {
  obj = obj,
  table = { concat = table.concat, insert = table.insert, remove = table.remove, sort = table.sort },
  os = { time = os.time, date = os.date, clock = os.clock },
}
for _, name in ipairs({
  "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "print", "rawequal", "rawget",
  "rawset", "select", "setmetatable", "tonumber", "tostring", "type", "unpack", "xpcall", "_VERSION",
}) do
  env[name] = _G[name]
end
env._G = env

local chunk, loaderr
if setfenv ~= nil then -- Lua 5.1
  chunk, loaderr = loadstring(source, "=" .. path)
  if chunk ~= nil then
    setfenv(chunk, env)
  end
else
  chunk, loaderr = load(source, "=" .. path, "t", env)
end
if chunk == nil then
  fail(tostring(loaderr))
end

-- gopher-lua gives strings methods only when the string library is opened; Argo CD does not open it.
local string_mt = getmetatable("")
local string_index = string_mt.__index
string_mt.__index = nil
local ok, hs = pcall(chunk)
string_mt.__index = string_index
if not ok then
  fail("the script raised: " .. tostring(hs))
end
if type(hs) ~= "table" then
  fail("the script returned " .. type(hs) .. ", not a table")
end
if not VALID[hs.status] then
  fail("invalid health status " .. tostring(hs.status))
end
if hs.message ~= nil and type(hs.message) ~= "string" then
  fail("message is a " .. type(hs.message) .. ", not a string")
end
io.write(json.encode({ status = hs.status, message = hs.message or "" }), "\n")
