-- Argo CD health of a blocksight.live/v1alpha1 BlockSight (resource.customizations.health format).
-- Trusts only status the operator wrote for the current spec: a status or condition older than
-- metadata.generation says nothing about what is deployed now.
local hs = {}
local generation = obj.metadata.generation or 0

local function isCurrent(condition)
  return condition.observedGeneration == nil or condition.observedGeneration >= generation
end

-- The current condition of the given type, or nil.
local function findCondition(conditionType)
  if obj.status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == conditionType and isCurrent(condition) then
      return condition
    end
  end
  return nil
end

local function isTrue(conditionType)
  local condition = findCondition(conditionType)
  return condition ~= nil and condition.status == "True"
end

local function messageOf(conditionType, fallback)
  local condition = findCondition(conditionType)
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  return fallback
end

if obj.status == nil or obj.status.observedGeneration == nil or obj.status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

if (obj.spec ~= nil and obj.spec.paused == true) or isTrue("Paused") then
  hs.status = "Suspended"
  hs.message = messageOf("Paused", "Reconciliation is paused (spec.paused)")
  return hs
end

if isTrue("InvalidSpec") then
  hs.status = "Degraded"
  hs.message = messageOf("InvalidSpec", "The spec is invalid")
  return hs
end

if isTrue("Degraded") then
  hs.status = "Degraded"
  hs.message = messageOf("Degraded", "BlockSight is degraded")
  return hs
end

if isTrue("Ready") then
  hs.status = "Healthy"
  hs.message = messageOf("Ready", "BlockSight is ready")
  return hs
end

hs.status = "Progressing"
hs.message = messageOf("Progressing", "Waiting for BlockSight to become ready")
return hs
