-- Argo CD health of an Ocellus Experiment (ocellus.dev/v1alpha1), from its conditions.
-- Failed=True or ProgressStalled=True (NoProgressReport): Degraded. Succeeded=True: Healthy.
-- Suspended=True (SuspendedByUser, or Queued while Kueue holds the Job; or spec.suspend before
-- the operator saw it): Suspended.
-- A trainer pod whose image cannot be pulled: Degraded (the Job would retry forever).
-- Anything else (waiting for a Dataset, unschedulable, training): Progressing.
local hs = {}

local function condition(type_)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

local generation = obj.metadata.generation
if obj.status ~= nil and obj.status.observedGeneration ~= nil and generation ~= nil
    and obj.status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "The operator has not yet seen generation " .. generation
  return hs
end

local failed = condition("Failed")
local stalled = condition("ProgressStalled")
local succeeded = condition("Succeeded")
local suspended = condition("Suspended")
local running = condition("Running")

if is_true(failed) then
  hs.status = "Degraded"
  hs.message = describe(failed)
elseif is_true(succeeded) then
  hs.status = "Healthy"
  hs.message = describe(succeeded)
elseif is_true(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled)
elseif is_true(suspended) then
  hs.status = "Suspended"
  hs.message = describe(suspended)
elseif suspended == nil and obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true"
elseif running ~= nil and (running.reason == "ImagePullBackOff" or running.reason == "PodCreationRefused" or running.reason == "PodConfigError") then
  hs.status = "Degraded"
  hs.message = describe(running)
elseif running ~= nil then
  hs.status = "Progressing"
  hs.message = describe(running)
else
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to start the experiment"
end
return hs
