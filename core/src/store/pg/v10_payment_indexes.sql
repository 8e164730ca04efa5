-- Migration 10: fewer index entries move when a payment changes status. `payment_status`
-- (status, id) and `payment_subaccount` (subaccount_id, status, id) both had the status in
-- their keys, so every status change (a setpaid above all) deleted and inserted an entry in
-- each: about four of the eight pages a setpaid wrote to the WAL. What used them keeps an
-- index: the gateways' status check reads the payments in progress (`payment_in_progress`,
-- partial: only those rows are in it), and the lookups by subaccount filter the status on the
-- rows (`payment_subaccount` without the status; the ledger's own lookups of paid payments
-- use `payment_free`).
DROP INDEX payment_status;
CREATE INDEX payment_in_progress ON payment(id) WHERE status = 2;
DROP INDEX payment_subaccount;
CREATE INDEX payment_subaccount ON payment(subaccount_id, id);
