//! Reference directories every form needs: countries and currencies.

use crate::func::{Access, FuncDecl, Registry};
use crate::list::{FilterField, FilterOp, ListSpec};

pub fn register(reg: &mut Registry) {
    let mut countries = ListSpec::new(
        "country c",
        "c.id",
        &[("id", "c.id"), ("iso2", "c.iso2"), ("name", "c.name")],
    );
    countries.filters = vec![
        FilterField::new("name", "c.name", FilterOp::Like),
        FilterField::new("iso2", "c.iso2", FilterOp::EqText),
    ];
    reg.add(FuncDecl::list(
        "country",
        "Countries",
        Access::PUBLIC,
        countries,
    ));

    let mut currencies = ListSpec::new(
        "currency c",
        "c.id",
        &[
            ("id", "c.id"),
            ("iso", "c.iso"),
            ("name", "c.name"),
            ("minor_units", "c.minor_units"),
            ("symbol", "c.symbol"),
            ("active", "CASE c.active WHEN 1 THEN 'on' ELSE 'off' END"),
        ],
    );
    currencies.filters = vec![
        FilterField::new("iso", "c.iso", FilterOp::EqText),
        FilterField::new("active", "c.active", FilterOp::EqInt),
    ];
    reg.add(FuncDecl::list(
        "currency",
        "Currencies",
        Access::ADMIN_USER,
        currencies,
    ));
}
