-- Argo CD health of an argoproj.io Application, as the Argo CD docs give it. Argo CD stopped
-- assessing child Applications in 1.8; without this, the app-of-apps in argocd/bootstrap.yaml
-- would start sync wave 0 (the BlockSight environments) before the operator (wave -1) is healthy.
local hs = {}
hs.status = "Progressing"
hs.message = ""
if obj.status ~= nil and obj.status.health ~= nil then
  hs.status = obj.status.health.status
  if obj.status.health.message ~= nil then
    hs.message = obj.status.health.message
  end
end
return hs
