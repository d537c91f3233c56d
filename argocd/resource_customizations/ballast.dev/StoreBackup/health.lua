-- Argo CD health for ballast.dev StoreBackup (resource.customizations.health.ballast.dev_StoreBackup).
-- Succeeded → Healthy (Degraded if its verification found the restore does not hash as the
-- source did; Progressing while it is being verified); Failed → Degraded (the message names the
-- fix); Pending or Running (its Job runs or retries with back-off) → Progressing. Each carries
-- the operator's status message.
local hs = {}
if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end
hs.message = obj.status.message or obj.status.phase
if obj.status.phase == "Succeeded" then
  hs.status = "Healthy"
  local v = obj.status.verification
  if v ~= nil and v.phase == "Failed" then
    hs.status = "Degraded"
    hs.message = v.message or "the backup did not pass verification"
  elseif v ~= nil and v.phase == "Running" then
    hs.status = "Progressing"
    hs.message = v.message or "verifying the backup"
  end
elseif obj.status.phase == "Failed" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
return hs
