-- Argo CD health of an Ocellus Dataset (ocellus.dev/v1alpha1), from its Ready condition.
-- Ready=True: Healthy. Ready=False while the import waits or runs (Importing, WaitingForDataset,
-- Unschedulable, Evicted, Queued): Progressing.
-- Ready=False with any other reason (BadInput, SourceUnreachable, ImagePullBackOff, OOMKilled,
-- DeadlineExceeded, Failed, ...): Degraded.
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

local waiting = {
  Importing = true, WaitingForDataset = true, Unschedulable = true, Evicted = true, Queued = true,
}
local ready = condition("Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to start the import"
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
elseif waiting[ready.reason] or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = describe(ready)
else
  hs.status = "Degraded"
  hs.message = describe(ready)
end
return hs
