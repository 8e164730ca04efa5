-- Hourly: suspends subaccounts whose balance is below minus their credit limit (the client
-- owes more than it may). `billhost run-jobs` runs it once, for cron.

billing.every(3600, "suspend-debtors", function()
  for _, s in ipairs(billing.call("subaccount", {}).elem) do
    local balance = billing.money(s.balance)
    local limit = billing.money(s.creditlimit)
    if s.status == "active" and balance < -limit then
      billing.call("subaccount.suspend", { elid = s.id })
      billing.log("info", "suspended subaccount " .. s.id .. " of client " .. s.account .. ": balance " .. s.balance)
    end
  end
end)
