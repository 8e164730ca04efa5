-- Top-up bonus: a payment of at least THRESHOLD (in its subaccount's currency) earns PERCENT
-- of it as a bonus, credited through the payment method named BONUS_METHOD in the same
-- currency (create it with paymethod.edit; without one, no bonus is given). The bonus is a
-- payment of its own, created and set paid in the same transaction as the payment that
-- earned it, so either both happen or neither does.

local THRESHOLD = billing.money("500.00")
local PERCENT = billing.money("5")
local BONUS_METHOD = "Bonus"

local function ids(elid)
  local out = {}
  for id in string.gmatch(elid or "", "%d+") do out[#out + 1] = id end
  return out
end

local function bonus_method(currency)
  for _, m in ipairs(billing.call("paymethod", { filter = "on", name = BONUS_METHOD }).elem) do
    if m.name == BONUS_METHOD and m.currency == currency and m.active == "on" then return m.id end
  end
  return nil
end

billing.on("payment.setpaid", "after", function(req, res)
  for _, id in ipairs(ids(req.params.elid)) do
    local p = billing.call("payment.edit", { elid = id })
    local method = billing.call("paymethod.edit", { elid = p.paymethod })
    local amount = billing.money(p.subaccountamount)
    if method.name ~= BONUS_METHOD and amount >= THRESHOLD then
      local via = bonus_method(p.subaccount_currency)
      if via then
        local bonus = (amount * PERCENT / 100):round(2)
        local created = billing.call("payment.edit", {
          plid = p.account, sok = "ok", paymethod = via, paymethodamount = bonus,
          description = "Bonus for payment " .. id,
        })
        billing.call("payment.setpaid", { elid = created.id })
        billing.log("info", "bonus " .. tostring(bonus) .. " for payment " .. id)
      else
        billing.log("warn", "no active '" .. BONUS_METHOD .. "' method in " .. p.subaccount_currency .. "; no bonus for payment " .. id)
      end
    end
  end
end)
