//! The ledger's lists as the spec names them: a client's subaccounts, payments and expenses,
//! and a payment's history. The funcs that change the ledger build on these.

use super::{ACCOUNT, PAYMENT};
use crate::func::{Access, FuncDecl, Registry};
use crate::list::{FilterField, FilterOp, ListSpec};

/// An expense amount column rendered in its subaccount's currency.
macro_rules! expense_money {
    ($col:literal) => {
        concat!(
            "money(e.",
            $col,
            ", (SELECT c.minor_units FROM subaccount s JOIN currency c ON c.id = s.currency_id WHERE s.id = e.subaccount_id))"
        )
    };
}

pub fn register(reg: &mut Registry) {
    let mut subaccounts = ListSpec::new(
        "subaccount s",
        "s.id",
        &[
            ("id", "s.id"),
            ("account", "s.account_id"),
            (
                "project",
                "(SELECT name FROM project WHERE id = s.project_id)",
            ),
            (
                "currency",
                "(SELECT iso FROM currency WHERE id = s.currency_id)",
            ),
            (
                "balance",
                "money(s.balance, (SELECT minor_units FROM currency WHERE id = s.currency_id))",
            ),
            (
                "creditlimit",
                "money(s.creditlimit, (SELECT minor_units FROM currency WHERE id = s.currency_id))",
            ),
            (
                "allowpostpaid",
                "CASE s.allowpostpaid WHEN 1 THEN 'on' ELSE 'off' END",
            ),
            ("active", "CASE s.active WHEN 1 THEN 'on' ELSE 'off' END"),
            (
                "status",
                "CASE s.status WHEN 1 THEN 'active' ELSE 'suspended' END",
            ),
        ],
    );
    subaccounts.owner = Some("s.account_id");
    subaccounts.parent = Some("s.account_id");
    subaccounts.filters = vec![
        FilterField::new("account", "s.account_id", FilterOp::EqInt),
        FilterField::new("project", "s.project_id", FilterOp::EqInt),
    ];
    reg.add(
        FuncDecl::list(
            "subaccount",
            "Client accounts",
            Access::ADMIN_USER,
            subaccounts,
        )
        .parent(ACCOUNT, false),
    );

    let payments = payment_list();
    reg.add(
        FuncDecl::list("account.payment", "Payments", Access::ADMIN_USER, payments)
            .parent(ACCOUNT, false)
            .panel(payment_hints(&[
                "payment.setpaid",
                "payment.delete",
                "payment.send",
                "payment.print.pdf",
            ])),
    );
    reg.add(FuncDecl::filter(
        "account.payment.filter",
        "account.payment",
        Access::ADMIN_USER,
    ));
    reg.add(
        FuncDecl::list(
            "payment",
            "Payments of every client",
            Access::ADMIN,
            payment_list(),
        )
        .panel(payment_hints(&[
            "payment.setpaid",
            "payment.delete",
            "payment.info",
        ])),
    );
    reg.add(FuncDecl::filter("payment.filter", "payment", Access::ADMIN));

    let mut expenses = ListSpec::new(
        "expense e",
        "e.id",
        &[
            ("id", "e.id"),
            ("account", "e.account_id"),
            ("subaccount", "e.subaccount_id"),
            ("locale_name", "e.name"),
            ("realdate", "substr(e.realdate, 1, 10)"),
            ("realtime", "substr(e.realdate, 12, 8)"),
            ("cdate", "substr(e.cdate, 1, 10)"),
            ("amount", expense_money!("amount")),
            ("notpayd", expense_money!("notpayd")),
            ("discountamount", expense_money!("discountamount")),
            (
                "payments",
                "(SELECT group_concat(payment_id, ', ') FROM (SELECT DISTINCT payment_id FROM payment_expense
                  WHERE expense_id = e.id AND released = 0 ORDER BY payment_id) AS paid_by)",
            ),
            ("discount", "e.discount_id"),
            ("taxamount", expense_money!("taxamount")),
        ],
    );
    expenses.base_where = Some("e.deleted = 0");
    expenses.owner = Some("e.account_id");
    expenses.parent = Some("e.account_id");
    expenses.descending = true;
    expenses.filters = vec![
        FilterField::new("account", "e.account_id", FilterOp::EqInt),
        FilterField::new("subaccount", "e.subaccount_id", FilterOp::EqInt),
        FilterField::new("locale_name", "e.name", FilterOp::Like),
        FilterField::new("realdate_from", "e.realdate", FilterOp::From),
        FilterField::new("realdate_to", "e.realdate", FilterOp::To),
    ];
    reg.add(
        FuncDecl::list(
            "subaccount.expense",
            "Expenses",
            Access::ADMIN_USER,
            expenses,
        )
        .parent(ACCOUNT, false)
        .panel(crate::func::PanelHints {
            labels: &[
                ("locale_name", "Expense"),
                ("realdate", "Date"),
                ("notpayd", "Not paid"),
            ],
            ..Default::default()
        }),
    );
    reg.add(FuncDecl::filter(
        "subaccount.expense.filter",
        "subaccount.expense",
        Access::ADMIN_USER,
    ));

    let mut history = ListSpec::new(
        "history h",
        "h.id",
        &[
            ("id", "h.id"),
            ("changedate", "substr(h.changedate, 1, 10)"),
            ("changetime", "substr(h.changedate, 12, 8)"),
            ("desc", "h.description"),
            ("user", "h.user_login"),
            ("ip", "h.ip"),
            ("action", "h.action"),
        ],
    );
    history.base_where = Some("h.object_type = 'payment'");
    history.parent = Some("h.object_id");
    history.owner = Some("(SELECT account_id FROM payment WHERE id = h.object_id)");
    reg.add(
        FuncDecl::list("payment.history", "Payment history", Access::ADMIN, history)
            .parent(PAYMENT, true),
    );
}

/// A payment's status codes in words, as the panel shows them (`ledger::status`).
pub const PAYMENT_STATUS_WORDS: &[(&str, &str)] = &[
    ("1", "new"),
    ("2", "in progress"),
    ("3", "pledged"),
    ("4", "paid"),
    ("5", "refund pending"),
    ("6", "refunded"),
    ("7", "fraud"),
    ("9", "canceled"),
];

/// The minor digits of a payment's subaccount currency and of its method's currency.
const SUBACCOUNT_DIGITS: &str = "(SELECT c.minor_units FROM subaccount s JOIN currency c ON c.id = s.currency_id WHERE s.id = y.subaccount_id)";
const PAYMETHOD_DIGITS: &str = "(SELECT minor_units FROM currency WHERE id = y.currency_id)";

/// The payments list: `account.payment` (a client's, with `plid`, or a client user's own) and
/// `payment` (staff: every payment of every client) share it.
pub fn payment_list() -> ListSpec {
    let mut payments = ListSpec::new(
        "payment y",
        "y.id",
        &[
            ("id", "y.id"),
            ("number", "y.number"),
            // BILLmanager's list forms: a date column is `YYYY-MM-DD`, its time a column of
            // its own (the forms `payment.edit` shows keep date and time in one field).
            ("create_date", "substr(y.createdate, 1, 10)"),
            ("create_time", "substr(y.createdate, 12, 8)"),
            ("pay_date", "substr(y.paydate, 1, 10)"),
            ("pay_time", "substr(y.paydate, 12, 8)"),
            ("sender_name", "y.sender"),
            (
                "recipient_name",
                "(SELECT CASE company WHEN '' THEN name ELSE company END FROM project WHERE id = y.project_id)",
            ),
            (
                "project",
                "(SELECT name FROM project WHERE id = y.project_id)",
            ),
            ("account", "y.account_id"),
            (
                "account_name",
                "(SELECT name FROM account WHERE id = y.account_id)",
            ),
            (
                "paymethod_name",
                "(SELECT name FROM paymethod WHERE id = y.paymethod_id)",
            ),
            (
                "subaccountamount_iso",
                "(SELECT money(y.subaccountamount, c.minor_units) || ' ' || c.iso FROM subaccount s
                  JOIN currency c ON c.id = s.currency_id WHERE s.id = y.subaccount_id)",
            ),
            (
                "paymethodamount_iso",
                "(SELECT money(y.paymethodamount, c.minor_units) || ' ' || c.iso FROM currency c WHERE c.id = y.currency_id)",
            ),
            ("status", "y.status"),
        ],
    );
    payments.owner = Some("y.account_id");
    payments.parent = Some("y.account_id");
    payments.descending = true;
    payments.filters = vec![
        FilterField::new("account", "y.account_id", FilterOp::EqInt),
        FilterField::new("status", "y.status", FilterOp::EqInt),
        FilterField::new("number", "y.number", FilterOp::Like),
        FilterField::new("project", "y.project_id", FilterOp::EqInt),
        FilterField::new("paymethod", "y.paymethod_id", FilterOp::EqInt),
        FilterField::new("create_date_from", "y.createdate", FilterOp::From),
        FilterField::new("create_date_to", "y.createdate", FilterOp::To),
        FilterField::new("pay_date_from", "y.paydate", FilterOp::From),
        FilterField::new("pay_date_to", "y.paydate", FilterOp::To),
        FilterField::new("sender", "y.sender", FilterOp::Like),
        FilterField::new("external_id", "y.external_id", FilterOp::EqText),
        FilterField::new(
            "subaccountamount_from",
            "y.subaccountamount",
            FilterOp::AmountFrom(SUBACCOUNT_DIGITS),
        ),
        FilterField::new(
            "subaccountamount_to",
            "y.subaccountamount",
            FilterOp::AmountTo(SUBACCOUNT_DIGITS),
        ),
        FilterField::new(
            "paymethodamount_from",
            "y.paymethodamount",
            FilterOp::AmountFrom(PAYMETHOD_DIGITS),
        ),
        FilterField::new(
            "paymethodamount_to",
            "y.paymethodamount",
            FilterOp::AmountTo(PAYMETHOD_DIGITS),
        ),
    ];
    payments
}

/// How the panel shows a payment list (a client's, every client's): the same columns, with
/// `row_funcs` as the row's actions.
fn payment_hints(row_funcs: &'static [&'static str]) -> crate::func::PanelHints {
    crate::func::PanelHints {
        row_func: Some("payment.edit"),
        columns_first: &[
            "id",
            "number",
            "create_date",
            "pay_date",
            "account_name",
            "paymethod_name",
            "subaccountamount_iso",
            "status",
        ],
        hidden: &[
            "account",
            "recipient_name",
            "sender_name",
            "paymethodamount_iso",
        ],
        labels: &[
            ("subaccountamount_iso", "Amount"),
            ("paymethod_name", "Method"),
            ("account_name", "Client"),
        ],
        values: &[("status", PAYMENT_STATUS_WORDS)],
        row_funcs,
        ..Default::default()
    }
}
