-- report.revenue: credited payments summed per provider, month (of the pay date) and currency.
-- billhost call report.revenue

local CREDITED = { ["4"] = true, ["5"] = true, ["6"] = true }

billing.func("report.revenue", { access = "admin", kind = "list" }, function(req)
  local totals, order = {}, {}
  for _, p in ipairs(billing.call("account.payment", { filter = "on" }).elem) do
    if CREDITED[p.status] and p.pay_date then
      local amount, currency = string.match(p.subaccountamount_iso, "^(%S+) (%S+)$")
      local month = string.sub(p.pay_date, 1, 7)
      local key = p.project .. "|" .. month .. "|" .. currency
      if not totals[key] then
        totals[key] = { project = p.project, month = month, currency = currency, total = billing.money(0), payments = 0 }
        order[#order + 1] = key
      end
      local row = totals[key]
      row.total = row.total + billing.money(amount)
      row.payments = row.payments + 1
    end
  end
  table.sort(order)
  local elem = {}
  for i, key in ipairs(order) do
    local row = totals[key]
    elem[i] = { id = i, project = row.project, month = row.month, currency = row.currency,
                total = row.total, payments = row.payments }
  end
  return { elem = elem }
end)
