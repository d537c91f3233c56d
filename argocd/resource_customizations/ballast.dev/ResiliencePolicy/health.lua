-- Argo CD health for ballast.dev ResiliencePolicy (resource.customizations.health.ballast.dev_ResiliencePolicy).
-- A policy whose Service or port does not exist, or whose configuration sidecars refused, is
-- Degraded (the spec must change); one waiting for ready endpoints, for the operator, or for
-- sidecars to take the new version is Progressing.
local hs = {}
local function condition(t)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == t then return c end
    end
  end
  return nil
end
local ready = condition("Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end
local generation = obj.metadata ~= nil and obj.metadata.generation or nil
if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on generation " .. tostring(generation)
  return hs
end
local accepted = condition("Accepted")
if accepted ~= nil and accepted.status == "False" and accepted.reason == "Rejected" then
  hs.status = "Degraded"
  hs.message = accepted.message
  return hs
end
if ready.status == "True" then
  if accepted ~= nil and accepted.status == "False" then
    hs.status = "Progressing"
    hs.message = accepted.message
    return hs
  end
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
if ready.reason == "NoReadyEndpoints" then
  hs.status = "Progressing"
else
  hs.status = "Degraded"
end
hs.message = ready.message
return hs
