-- Registration guard: refuses sign-ups from disposable email domains.
-- Edit DISPOSABLE to add domains; the file reloads while the server runs.

local DISPOSABLE = {
  "mailinator.com", "guerrillamail.com", "10minutemail.com", "tempmail.com",
  "yopmail.com", "trashmail.com", "sharklasers.com", "getnada.com",
}

local blocked = {}
for _, domain in ipairs(DISPOSABLE) do blocked[domain] = true end

billing.on("register", "before", function(req)
  local email = string.lower(req.params.email or "")
  local domain = email:match("@([^@]+)$")
  if domain and blocked[domain] then
    billing.reject("value", "email", "Addresses at " .. domain .. " are not accepted; use a permanent email address")
  end
end)
