-- keel's script environment, run once per core before any script.
-- Receives the Rust side (`raw`) and returns the runner and the protected
-- globals table scripts see as their environment.
local raw = ...
local G = _G
local getinfo = debug.getinfo
local type, tostring, error, rawget, rawset, next, setmetatable, xpcall, select =
  type, tostring, error, rawget, rawset, next, setmetatable, xpcall, select
local setfenv, loadstring, concat = setfenv, loadstring, table.concat

-- An error reply raised in the script's frame, without a position prefix.
local function fail(text)
  error({ err = text })
end

-- Nothing that reaches files, processes, other environments or the
-- debugger stays in reach.
for _, name in ipairs({ 'dofile', 'loadfile', 'print', 'getfenv', 'setfenv', 'module',
  'require', 'newproxy', 'debug', 'os', 'io', 'package' }) do
  G[name] = nil
end

local function refuse()
  error('Attempt to modify a readonly table', 2)
end

-- A read-only view of a table: reads pass through, writes fail.
local proxies = setmetatable({}, { __mode = 'k' })
-- Its metatable, as getmetatable shows it, is read-only too.
local function frozen(t)
  local p = {}
  proxies[p] = t
  setmetatable(p, { __index = t, __newindex = refuse, __metatable = false })
  return p
end
local function readonly(t, index)
  local p = {}
  proxies[p] = t
  local mt = { __index = index or t, __newindex = refuse }
  mt.__metatable = frozen(mt)
  setmetatable(p, mt)
  return p
end
G.setmetatable = function(t, mt)
  if proxies[t] then
    error('Attempt to modify a readonly table', 2)
  end
  return setmetatable(t, mt)
end

-- pairs, next and raw access see through the views.
G.next = function(t, k)
  return next(proxies[t] or t, k)
end
local view_next = G.next
G.pairs = function(t)
  return view_next, t, nil
end
G.rawget = function(t, k)
  return rawget(proxies[t] or t, k)
end
G.rawset = function(t, k, v)
  if proxies[t] then
    refuse()
  end
  return rawset(t, k, v)
end

-- The redis library. `call` and `pcall` are added by Rust (C functions,
-- so that their errors point at the script's line).
local redis = {
  -- "-CODE text" keeps its code; anything else gets ERR.
  error_reply = function(s)
    if type(s) ~= 'string' then
      fail('ERR wrong number or type of arguments')
    end
    if s:sub(1, 1) ~= '-' then
      s = '-' .. s
    end
    if s:find(' ', 1, true) then
      return { err = s:sub(2) }
    end
    return { err = 'ERR ' .. s:sub(2) }
  end,
  status_reply = function(s)
    if type(s) ~= 'string' then
      fail('ERR wrong number or type of arguments')
    end
    return { ok = s }
  end,
  sha1hex = function(s)
    if select('#', s) == 0 or (type(s) ~= 'string' and type(s) ~= 'number') then
      fail('ERR wrong number of arguments')
    end
    return raw.sha1hex(tostring(s))
  end,
  log = function(level, ...)
    if select('#', ...) == 0 then
      fail('ERR redis.log() requires two arguments or more.')
    end
    if type(level) ~= 'number' then
      fail('ERR First argument must be a number (log level).')
    end
    if level < 0 or level > 3 then
      fail('ERR Invalid debug level.')
    end
    local parts = {}
    for i = 1, select('#', ...) do
      parts[i] = tostring((select(i, ...)))
    end
    raw.log(level, table.concat(parts, ' '))
  end,
  setresp = function(v)
    if v ~= 2 and v ~= 3 then
      fail('ERR RESP version must be 2 or 3.')
    end
    raw.setresp(v)
  end,
  set_repl = function(v)
    if type(v) ~= 'number' then
      fail('ERR redis.set_repl() requires one argument.')
    end
  end,
  replicate_commands = function()
    return true
  end,
  breakpoint = function()
    return false
  end,
  debug = function() end,
  acl_check_cmd = function(...)
    local allowed = raw.acl_check(...)
    if allowed == nil then
      error({ err = 'ERR Invalid command passed to redis.acl_check_cmd()' })
    end
    return allowed
  end,
  REDIS_VERSION = raw.version,
  REDIS_VERSION_NUM = raw.version_num,
  LOG_DEBUG = 0,
  LOG_VERBOSE = 1,
  LOG_NOTICE = 2,
  LOG_WARNING = 3,
  REPL_NONE = 0,
  REPL_AOF = 1,
  REPL_SLAVE = 2,
  REPL_REPLICA = 2,
  REPL_ALL = 3,
}
raw.install(redis)
G.redis = readonly(redis)

-- Library tables are read-only too (a script must not change what the
-- next script sees), the string metatable included.
for _, name in ipairs({ 'string', 'table', 'math', 'coroutine', 'bit', 'cjson', 'struct', 'cmsgpack' }) do
  if type(G[name]) == 'table' then
    G[name] = readonly(G[name])
  end
end
local string_mt = getmetatable('')
string_mt.__index = G.string
string_mt.__metatable = false

-- Globals: reading a missing one is an error (it is always a typo),
-- writing any is refused.
local env = readonly(G, function(_, k)
  local v = rawget(G, k)
  if v == nil then
    error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
  end
  return v
end)
G._G = env

-- Code compiled inside a script runs in the same protected environment,
-- and only from source: bytecode could break the VM.
G.loadstring = function(s, name)
  if type(s) == 'string' and s:byte(1) == 27 then
    return nil, 'binary chunks are not allowed'
  end
  local f, e = loadstring(s, name)
  if f then
    setfenv(f, env)
  end
  return f, e
end
local guarded_loadstring = G.loadstring
G.load = function(reader, name)
  if type(reader) ~= 'function' then
    return guarded_loadstring(reader, name)
  end
  local parts = {}
  while true do
    local piece = reader()
    if piece == nil or piece == '' then
      break
    end
    parts[#parts + 1] = piece
  end
  return guarded_loadstring(concat(parts), name)
end

-- Where an error happened: the first frame that is the script's own.
local function handler(e)
  local level, info = 2, nil
  repeat
    info = getinfo(level, 'Sl')
    level = level + 1
  until info == nil or (info.what ~= 'C' and info.source ~= '=keel')
  if type(e) ~= 'table' then
    e = { err = 'ERR ' .. tostring(e) }
  elseif type(rawget(e, 'err')) ~= 'string' then
    e = { err = 'ERR unknown error' }
  end
  if info then
    rawset(e, 'source', info.source)
    rawset(e, 'line', info.currentline)
  end
  return e
end

local function run(f)
  return xpcall(f, handler)
end

-- Function libraries (FUNCTION LOAD). A library's code runs once to
-- register its functions, seeing only `redis.register_function`,
-- `redis.log` and the version; the functions it registered later run
-- with the globals every script sees. Both views go through one
-- environment whose lookups depend on whether a library is loading.
local registering = nil
local known_flags = { ['no-writes'] = true, ['allow-oom'] = true, ['allow-stale'] = true,
  ['no-cluster'] = true, ['allow-cross-slot-keys'] = true }

local function missing(k)
  error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 3)
end

local function read_flags(list)
  local flags, i = {}, 1
  while true do
    local f = list[i]
    if f == nil then
      return flags
    end
    if type(f) ~= 'string' and type(f) ~= 'number' then
      fail('ERR unknown flag given')
    end
    local name = tostring(f):lower()
    if not known_flags[name] then
      fail('ERR unknown flag given')
    end
    flags[#flags + 1] = name
    i = i + 1
  end
end

local function register_function(...)
  if not registering then
    fail('ERR redis.register_function can only be called on FUNCTION LOAD command')
  end
  local n = select('#', ...)
  if n < 1 or n > 2 then
    fail('ERR wrong number of arguments to redis.register_function')
  end
  local name, callback, desc, flags
  if n == 1 then
    local t = ...
    if type(t) ~= 'table' then
      fail('ERR calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).')
    end
    for k, v in next, proxies[t] or t do
      if type(k) ~= 'string' and type(k) ~= 'number' then
        fail('ERR named argument key given to redis.register_function is not a string')
      end
      local key = tostring(k):lower()
      if key == 'function_name' then
        if type(v) ~= 'string' and type(v) ~= 'number' then
          fail('ERR function_name argument given to redis.register_function must be a string')
        end
        name = tostring(v)
      elseif key == 'description' then
        if type(v) ~= 'string' and type(v) ~= 'number' then
          fail('ERR description argument given to redis.register_function must be a string')
        end
        desc = tostring(v)
      elseif key == 'callback' then
        if type(v) ~= 'function' then
          fail('ERR callback argument given to redis.register_function must be a function')
        end
        callback = v
      elseif key == 'flags' then
        if type(v) ~= 'table' then
          fail('ERR flags argument to redis.register_function must be a table representing function flags')
        end
        flags = read_flags(v)
      else
        fail('ERR unknown argument given to redis.register_function')
      end
    end
    if name == nil then
      fail('ERR redis.register_function must get a function name argument')
    end
    if callback == nil then
      fail('ERR redis.register_function must get a callback argument')
    end
  else
    local a, b = ...
    if type(a) ~= 'string' and type(a) ~= 'number' then
      fail('ERR first argument to redis.register_function must be a string')
    end
    if type(b) ~= 'function' then
      fail('ERR second argument to redis.register_function must be a function')
    end
    name, callback = tostring(a), b
  end
  if not name:find('^[%w_]+$') then
    fail('ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long')
  end
  if registering.by_name[name] then
    fail('ERR Function already exists in the library')
  end
  local entry = { name = name, callback = callback, description = desc, flags = flags or {} }
  registering.by_name[name] = entry
  registering.list[#registering.list + 1] = entry
end

local library_redis = {
  register_function = register_function,
  log = redis.log,
  REDIS_VERSION = redis.REDIS_VERSION,
  REDIS_VERSION_NUM = redis.REDIS_VERSION_NUM,
  LOG_DEBUG = 0,
  LOG_VERBOSE = 1,
  LOG_NOTICE = 2,
  LOG_WARNING = 3,
}
local library_redis_view = readonly(library_redis, function(_, k)
  local v = rawget(library_redis, k)
  if v == nil then
    missing(k)
  end
  return v
end)

local function_env = readonly(G, function(_, k)
  if registering then
    if k == 'redis' then
      return library_redis_view
    end
    missing(k)
  end
  local v = rawget(G, k)
  if v == nil then
    missing(k)
  end
  return v
end)

-- Runs a library's code; returns true and its functions in the order they
-- were registered, or false and the error.
local function load_library(code)
  local f, e = loadstring(code, '@user_function')
  if not f then
    return false, 'Error compiling function: ' .. tostring(e)
  end
  setfenv(f, function_env)
  registering = { by_name = {}, list = {} }
  local ok, err = xpcall(f, handler)
  local got = registering
  registering = nil
  if not ok then
    local text = type(err) == 'table' and rawget(err, 'err') or tostring(err)
    if type(text) == 'string' then
      text = text:gsub('^ERR ', '', 1)
    end
    return false, 'Error registering functions: ' .. tostring(text)
  end
  return true, got.list
end

-- Calls a registered function with its keys and arguments.
local function run_function(f, keys, args)
  return xpcall(function()
    return f(keys, args)
  end, handler)
end

return run, env, load_library, run_function
