-- Argo CD health check for modelversioning.io/v1alpha1 ModelVersion (modelversioning-operator).
--
--   Healthy      the artifact is verified and the requested stage (spec.stage) is in effect
--   Progressing  no status yet, a new generation not yet observed, the artifact being verified (or a
--                fetch being retried: NotFound, FetchFailed), the stage walking toward spec.stage
--   Degraded     a failure that no retry fixes, only a new spec or a person: DigestMismatch,
--                URIRefused, AccessDenied, SizeMismatch, LimitExceeded, InvalidSpec (artifact);
--                TagWithoutDigest, ManifestDigestMismatch, LayerDigestMismatch,
--                UnsupportedArtifactLayout, UnsafeArchive (an oci:// artifact);
--                TransitionNotAllowed, LineageIncomplete, ImageNotPinned, ArchiveWhileServing, Quarantined (stage);
--                SignatureMissing, SignatureInvalid, SignerNotTrusted, SignatureDigestMismatch,
--                CertificateExpired (signed models: either); IOSignatureChanged, IOSignatureMissing
--                (the I/O contract: a MINOR/PATCH that breaks it);
--                RuntimeNotFound, RuntimeDisabled, NoRuntimeForFormat, RuntimeFormatMismatch,
--                InvalidRuntime (the catalog runtime: either); or the operator's kstatus
--                condition Stalled=True
--
-- Uses only Lua's base and table libraries (no string, math or os), so it runs in Argo CD's default
-- sandbox without useOpenLibs, and in Lua 5.1 (Argo CD's gopher-lua) to 5.4.
local hs = {}

-- ArtifactVerified / StageTransition reasons that are final for the generation.
local PERMANENT = {
  DigestMismatch = true,
  URIRefused = true,
  AccessDenied = true,
  SizeMismatch = true,
  LimitExceeded = true,
  InvalidSpec = true,
  TransitionNotAllowed = true,
  LineageIncomplete = true,
  ImageNotPinned = true,
  ArchiveWhileServing = true,
  Quarantined = true,
  TagWithoutDigest = true,
  ManifestDigestMismatch = true,
  LayerDigestMismatch = true,
  UnsupportedArtifactLayout = true,
  UnsafeArchive = true,
  SignatureMissing = true,
  SignatureInvalid = true,
  SignerNotTrusted = true,
  SignatureDigestMismatch = true,
  CertificateExpired = true,
  IOSignatureChanged = true,
  IOSignatureMissing = true,
  RuntimeNotFound = true,
  RuntimeDisabled = true,
  NoRuntimeForFormat = true,
  RuntimeFormatMismatch = true,
  InvalidRuntime = true,
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
  local stalled = condition(conditions, "Stalled")
  if stalled ~= nil and stalled.status == "True" then
    return result("Degraded", describe(stalled))
  end
  local verified = condition(conditions, "ArtifactVerified")
  if verified ~= nil and verified.status == "False" and PERMANENT[verified.reason] then
    return result("Degraded", "artifact not verified: " .. describe(verified))
  end
  local transition = condition(conditions, "StageTransition")
  if transition ~= nil and transition.status == "False" and PERMANENT[transition.reason] then
    return result("Degraded", "stage blocked: " .. describe(transition))
  end
  local ready = condition(conditions, "Ready")
  if ready ~= nil and ready.status == "False" and ready.reason == "InvalidSpec" then
    return result("Degraded", describe(ready))
  end

  local wanted = obj.spec and obj.spec.stage
  local stage = status.stage
  if verified ~= nil and verified.status == "True" then
    if transition ~= nil and transition.status == "True" and (wanted == nil or stage == wanted) then
      return result("Healthy", "verified; stage " .. tostring(stage) .. " is in effect")
    end
    if transition ~= nil then
      return result("Progressing", "stage " .. tostring(stage) .. " -> " .. tostring(wanted) .. ": " .. describe(transition))
    end
    return result("Progressing", "stage " .. tostring(stage) .. " -> " .. tostring(wanted))
  end
  if verified ~= nil then
    return result("Progressing", "verifying the artifact: " .. describe(verified))
  end
  return result("Progressing", "Waiting for the artifact to be verified")
end

return health()
