-- Argo CD health for ballast.dev StoreBackupSchedule (resource.customizations.health.ballast.dev_StoreBackupSchedule).
-- A schedule that cannot run (unreadable cron, no such cluster) or whose last backup failed is
-- Degraded; a suspended one is Suspended; otherwise Healthy, with when the next backup runs.
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
if ready.status == "False" then
  hs.status = "Degraded"
  hs.message = ready.message
  return hs
end
local last = condition("LastBackupSucceeded")
if last ~= nil and last.status == "False" then
  hs.status = "Degraded"
  hs.message = last.message
  return hs
end
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
else
  hs.status = "Healthy"
end
hs.message = ready.message
return hs
