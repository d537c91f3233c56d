-- Argo CD health for ballast.dev StoreCluster (resource.customizations.health.ballast.dev_StoreCluster).
-- Paused → Suspended; quorum lost or a stuck rollout → Degraded; Ready → Healthy; anything
-- else (bootstrapping, scaling, updating, the operator not caught up yet) → Progressing.
-- Each status carries the operator's own condition message, which says what to do.
local hs = {}
local function condition(t)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == t then return c end
    end
  end
  return nil
end
local annotations = (obj.metadata ~= nil and obj.metadata.annotations) or {}
if annotations["ballast.dev/reconcile"] == "paused" then
  hs.status = "Suspended"
  local p = condition("Progressing")
  if p ~= nil and p.reason == "Paused" and p.message ~= nil then
    hs.message = p.message
  else
    hs.message = "Reconcile paused by the ballast.dev/reconcile: paused annotation; remove it to resume"
  end
  return hs
end
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end
local generation = obj.metadata ~= nil and obj.metadata.generation or nil
if generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on generation " .. tostring(generation)
  return hs
end
local available = condition("Available")
local degraded = condition("Degraded")
local ready = condition("Ready")
if available ~= nil and available.status == "False" and available.reason == "QuorumLost" then
  hs.status = "Degraded"
  hs.message = available.message
  return hs
end
if degraded ~= nil and degraded.status == "True" and degraded.reason ~= "MembersNotReady" then
  hs.status = "Degraded"
  hs.message = degraded.message
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
hs.status = "Progressing"
if ready ~= nil and ready.message ~= nil then
  hs.message = ready.message
else
  hs.message = "Waiting for the members to be ready"
end
return hs
