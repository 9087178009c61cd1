--- Invitation objects: onlineMeetingInvitation (joining a meeting, or an
-- incoming one), messagingInvitation, participantInvitation.
-- An invitation is an operation: events started, updated, completed; after
-- completion `status` is "Success" or "Failure" and `reason` says why.
-- An incoming messagingInvitation's first message is `inv.message`, decoded
-- from its `message` link (ucwa.messaging).
-- @module ucwa.invitation
local core = require "ucwa.core"
local errors = require "ucwa.errors"
local resource = require "ucwa.resource"
local util = require "ucwa.util"

local invitation = {}

local Invitation = resource.class("invitation", resource.Operation)
invitation.Invitation = Invitation

invitation.rels = { "onlineMeetingInvitation", "messagingInvitation", "participantInvitation",
                    "audioVideoInvitation", "applicationSharingInvitation", "phoneAudioInvitation" }
for _, rel in ipairs(invitation.rels) do resource.register(rel, Invitation) end

--- Accepts an incoming invitation (POST to its accept link). cb(true, err).
function Invitation:accept(cb)
  return self:_post("accept", nil, cb, { sessionContext = util.uuid() })
end

--- The reasons a decline may give (CallDeclineReason in the reference).
invitation.DECLINE_REASONS = {}
for _, r in ipairs{ "CodecMismatch", "EncryptionMismatch", "Global", "InsufficientBandwidth",
                    "InsufficientBandwidthRerouteOverPstn", "InvalidMediaOffer", "IPv6NotSupported", "Local",
                    "MediaAllocationFailure", "MediaConnectivityFailure", "Unknown", "UnsupportedMedia" } do
  invitation.DECLINE_REASONS[r] = true
end

--- Declines an incoming invitation; reason is one of DECLINE_REASONS ("Local",
-- "Global", "Unknown" ...). cb(true, err).
function Invitation:decline(reason, cb)
  if type(reason) == "function" then reason, cb = nil, reason end
  if reason ~= nil and not invitation.DECLINE_REASONS[reason] then
    error("bad argument #1 to 'decline' (a CallDeclineReason expected: \"Local\", \"Global\", \"Unknown\" ...; got "
      .. tostring(reason) .. ")", 2)
  end
  return self:_post("decline", reason and { reason = reason } or nil, cb)
end

--- Cancels an outgoing invitation still in progress (e.g. waiting in the
-- lobby). Called before the server has given the cancel link (no 201 or no
-- started event yet), it cancels as soon as the link arrives. cb(true, err).
function Invitation:cancel(cb)
  if self:link("cancel") or self:completed() then return self:_post("cancel", nil, cb) end
  return self._session.async:call(cb, function(done)
    self._cancel_when_linked = done
  end)
end

-- Sends a cancel that was asked for before its link was known.
function Invitation:_check_cancel()
  local done = rawget(self, "_cancel_when_linked")
  if not done then return end
  if self:completed() then
    self._cancel_when_linked = nil
    done(nil, errors.new{ code = "Conflict", message = "the invitation completed before it could be cancelled" })
  elseif self:link("cancel") then
    self._cancel_when_linked = nil
    self:_post("cancel", nil, done)
  end
end

function Invitation:_event(ev)
  resource.Operation._event(self, ev)
  self:_check_cancel()
end

-- Links a bot acts on: an update of an invitation still in progress that
-- carries none of them (servers send such updates) keeps the ones it had.
local ACTIONS = { "accept", "decline", "cancel" }

function Invitation:_update(model)
  local old = rawget(self, "links")
  resource.Resource._update(self, model)
  local links = self.links
  if old and links ~= old and self.properties.state == "Connecting" then
    for _, rel in ipairs(ACTIONS) do
      if links[rel] == nil then links[rel] = old[rel] end
    end
  end
  -- the first message of an incoming messagingInvitation, as text
  local href = self:link("message")
  if href and href:match("^[Dd][Aa][Tt][Aa]:") then
    local text = core.data_url(href)
    if text then self.message = (text:gsub("[\r\n]+$", "")) end
  end
end

--- The conversation of the invitation (the embedded one, or a GET). cb(conv, err).
function Invitation:conversation(cb) return self:_follow("conversation", cb) end
--- Who sent it: a contact or participant object. cb(obj, err).
function Invitation:from(cb) return self:_follow("from", cb) end
--- Whom it is for (the `to` link; the `to` property is `inv.properties.to`). cb(obj, err).
function Invitation:to(cb) return self:_follow("to", cb) end
--- Who accepted it (the `acceptedByContact` link). cb(obj, err).
function Invitation:accepted_by(cb) return self:_follow("acceptedByContact", cb) end
--- On whose behalf it was sent (the `onBehalfOf` link). cb(obj, err).
function Invitation:on_behalf_of(cb) return self:_follow("onBehalfOf", cb) end

--- Checks the documented limits of an outgoing invitation; raises on
-- argument errors, returns an error object for limit violations.
function invitation.validate(args, anonymous, what)
  if type(args) ~= "table" then error("bad argument #1 to '" .. what .. "' (table expected)", 3) end
  for _, k in ipairs{ "onlineMeetingUri", "subject", "importance", "threadId", "operationId",
                      "anonymousDisplayName" } do
    if args[k] ~= nil and type(args[k]) ~= "string" then
      error("bad argument #1 to '" .. what .. "' (" .. k .. " must be a string)", 3)
    end
  end
  local function too_long(k, max)
    if args[k] and utf8.len(args[k]) and utf8.len(args[k]) > max then
      return errors.validation(k .. " is longer than " .. max .. " characters")
    end
  end
  local err = too_long("subject", 250) or too_long("operationId", 50)
    or too_long("anonymousDisplayName", 250)
  if err then return err end
  if args.anonymousDisplayName and not anonymous then
    return errors.validation("anonymousDisplayName is only for anonymous users")
  end
end

return invitation
