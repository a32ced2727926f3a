-- Argo CD health check for modelversioning.io/v1alpha1 ModelEndpoint (modelversioning-operator).
--
--   Degraded     the progressive rollout (status.rollout) Failed or was Aborted (traffic is back on
--                the last good split until the spec changes or `kubectl models rollout retry`), or
--                Degraded=True with a reason that no retry fixes (MissingVersion, DigestMismatch,
--                InvalidSplit, ...; the operator's kstatus condition Stalled=True says the same),
--                or Degraded=True while nothing is progressing
--   Suspended    the rollout waits for a person (`kubectl models rollout promote`): it is Paused
--                (too many inconclusive measurements with onInconclusive: pause), or it stands at a
--                pause step without a duration
--   Healthy      Ready=True: serving exactly as declared
--   Progressing  no status yet, a new generation not yet observed, Progressing=True (a new slot
--                becoming available, a rollout walking its steps), or anything else not yet Ready
--
-- Uses only Lua's base and table libraries (no string, math or os), so it runs in Argo CD's default
-- sandbox without useOpenLibs, and in Lua 5.1 (Argo CD's gopher-lua) to 5.4.
local hs = {}

-- Degraded reasons that only a spec change (or a person) fixes.
local PERMANENT = {
  MissingVersion = true,
  InvalidVersion = true,
  DigestMismatch = true,
  ModelVersionReplaced = true,
  ChildRejected = true,
  ChildConflict = true,
  InvalidSpec = true,
  PolicyViolation = true,
  MajorVersionMix = true,
  InvalidSplit = true,
  RouterDisabled = true,
  UnknownRouter = true,
  MirrorUnsupported = true,
  RolloutFailed = true,
  RolloutAborted = true,
  Revoked = true,
  Withdrawn = true,
  Quarantined = true,
}

local function condition(conditions, type_)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if type(c) == "table" and c.type == type_ then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = tostring(c.reason or c.type)
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. tostring(c.message)
  end
  return text
end

-- Is step `index` (0-based, as in status.rollout.step) of the canary strategy a pause without a
-- duration, that is, one that waits until `kubectl models rollout promote`?
local function manual_pause(index)
  local strategy = obj.spec and obj.spec.strategy
  local steps = type(strategy) == "table" and type(strategy.canary) == "table" and strategy.canary.steps
  if type(steps) ~= "table" or type(index) ~= "number" then
    return false
  end
  local step = steps[index + 1]
  return type(step) == "table" and type(step.pause) == "table" and step.pause.duration == nil
end

local function result(status, message)
  hs.status = status
  hs.message = message
  return hs
end

local function health()
  local status = obj.status
  if type(status) ~= "table" then
    return result("Progressing", "Waiting for the operator to report status")
  end
  local generation = obj.metadata and obj.metadata.generation
  local observed = status.observedGeneration
  if generation ~= nil and observed ~= nil and observed < generation then
    return result("Progressing", "Waiting for the operator to observe generation " .. tostring(generation))
  end

  local conditions = status.conditions
  local rollout = status.rollout
  local phase = type(rollout) == "table" and rollout.phase or nil
  if phase == "Failed" or phase == "Aborted" then
    local text = "rollout " .. phase
    if rollout.message ~= nil and rollout.message ~= "" then
      text = text .. ": " .. tostring(rollout.message)
    end
    return result("Degraded", text)
  end
  local stalled = condition(conditions, "Stalled")
  if stalled ~= nil and stalled.status == "True" then
    return result("Degraded", describe(stalled))
  end
  local degraded = condition(conditions, "Degraded")
  if degraded ~= nil and degraded.status == "True" and PERMANENT[degraded.reason] then
    return result("Degraded", describe(degraded))
  end
  if phase == "Paused" or (phase == "Progressing" and manual_pause(rollout.step)) then
    local text = "rollout paused at step " .. tostring(rollout.step)
    if rollout.message ~= nil and rollout.message ~= "" then
      text = text .. ": " .. tostring(rollout.message)
    end
    return result("Suspended", text)
  end

  local ready = condition(conditions, "Ready")
  if ready ~= nil and ready.status == "True" then
    local text = "serving as declared"
    if status.traffic ~= nil and status.traffic ~= "" then
      text = text .. ": " .. tostring(status.traffic)
    end
    return result("Healthy", text)
  end
  local progressing = condition(conditions, "Progressing")
  if progressing ~= nil and progressing.status == "True" then
    return result("Progressing", describe(progressing))
  end
  if degraded ~= nil and degraded.status == "True" then
    return result("Degraded", describe(degraded))
  end
  if ready ~= nil then
    return result("Progressing", describe(ready))
  end
  return result("Progressing", "Waiting for the operator to report Ready")
end

return health()
