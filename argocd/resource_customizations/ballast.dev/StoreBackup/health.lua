-- Argo CD health for ballast.dev StoreBackup (resource.customizations.health.ballast.dev_StoreBackup).
-- Succeeded → Healthy; Failed → Degraded (the message names the fix); Pending or Running (its
-- Job runs or retries with back-off) → Progressing. Each carries the operator's status message.
local hs = {}
if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end
local message = obj.status.message or obj.status.phase
if obj.status.phase == "Succeeded" then
  hs.status = "Healthy"
elseif obj.status.phase == "Failed" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = message
return hs
