//! Func declarations: each func says once what it is called, who may call it, what kind of
//! func it is, which object its `elid`/`plid` name, which parameters it takes and how they are
//! validated. The dispatcher (`engine`) reads these declarations; handlers never re-implement
//! the protocol.

use crate::doc::{Doc, Fields, Level};
use crate::engine::Ctx;
use crate::error::FuncResult;
use crate::list::ListSpec;
use crate::params::Params;
use std::fmt;
use std::sync::Arc;

/// Who may call a func.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub admin: bool,
    pub user: bool,
    pub public: bool,
}

impl Access {
    pub const ADMIN: Access = Access {
        admin: true,
        user: false,
        public: false,
    };
    pub const ADMIN_USER: Access = Access {
        admin: true,
        user: true,
        public: false,
    };
    pub const PUBLIC: Access = Access {
        admin: true,
        user: true,
        public: true,
    };

    pub fn allows(self, level: Level) -> bool {
        match level {
            Level::Admin => self.admin,
            Level::User => self.user,
            Level::Public => self.public,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.public {
            return f.write_str("public");
        }
        match (self.admin, self.user) {
            (true, true) => f.write_str("admin user"),
            (true, false) => f.write_str("admin"),
            (false, true) => f.write_str("user"),
            (false, false) => f.write_str("none"),
        }
    }
}

/// A kind of stored object that `elid` or `plid` can name. `owner` is the column holding the
/// client (account) the object belongs to, for user-level access checks; objects without an
/// owner are staff-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectType {
    pub name: &'static str,
    pub table: &'static str,
    pub owner: Option<&'static str>,
}

/// How a parameter's value is checked before the handler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ty {
    /// Free text of at most this many characters, without control characters.
    Text(usize),
    /// Like `Text`, but newlines are allowed (comments, messages).
    LongText(usize),
    Email,
    /// A password: at least this many characters; never shown in forms.
    Password(usize),
    Int {
        min: i64,
        max: i64,
    },
    /// A checkbox: `on` or `off`.
    Flag,
    Decimal,
    Date,
    Choice(&'static [&'static str]),
    /// The id of an existing object of this type.
    Ref(ObjectType),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub ty: Ty,
    /// Required when the func creates (an `.edit` without `elid`, or an action).
    pub required: bool,
    /// Only staff may set it; a client user sending it gets an `access` error.
    pub admin_only: bool,
    /// What the web panel shows beside the field (default: the name, in words).
    pub label: Option<String>,
    /// For a reference: the list func its choices come from and the column naming each
    /// (default: the list called like the object type, its `name` column).
    pub source: Option<(&'static str, &'static str)>,
}

impl Param {
    pub fn new(name: &str, ty: Ty) -> Param {
        Param {
            name: name.to_string(),
            ty,
            required: false,
            admin_only: false,
            label: None,
            source: None,
        }
    }
    pub fn label(mut self, label: &str) -> Param {
        self.label = Some(label.to_string());
        self
    }
    /// The list func a reference's choices come from, and the column that names each.
    pub fn source(mut self, list: &'static str, column: &'static str) -> Param {
        self.source = Some((list, column));
        self
    }
    pub fn required(mut self) -> Param {
        self.required = true;
        self
    }
    pub fn admin_only(mut self) -> Param {
        self.admin_only = true;
        self
    }
}

/// The object operations behind an `.edit` func. The dispatcher decides which one runs from
/// `sok` and `elid`, has already checked that `elid`/`plid` exist and belong to the caller
/// (before a view, unless [`EditOps::view_checks_object`]), and has validated the declared
/// parameters.
pub trait EditOps: Send + Sync {
    /// The form of an existing object (without `elid`, which the dispatcher adds).
    fn view(&self, ctx: &Ctx, elid: i64, plid: Option<i64>) -> FuncResult<Fields>;
    /// Whether [`EditOps::view`] checks `elid` itself, answering exactly what the dispatcher's
    /// check would ([`crate::engine::check_object`]: the missing object, then the access error
    /// for a client user's view of another client's object); the dispatcher then skips its own
    /// query before a view. A view that reads the object's row anyway saves a statement.
    fn view_checks_object(&self) -> bool {
        false
    }
    /// The blank form for a new object.
    fn blank(&self, ctx: &Ctx, plid: Option<i64>) -> FuncResult<Fields>;
    /// Creates the object and answers its id.
    fn create(&self, ctx: &Ctx, plid: Option<i64>, params: &Params) -> FuncResult<i64>;
    /// Changes the object with the parameters given; absent parameters keep their values.
    fn change(&self, ctx: &Ctx, elid: i64, plid: Option<i64>, params: &Params) -> FuncResult<()>;
}

pub type GroupFn = dyn Fn(&Ctx, i64, &Params) -> FuncResult<()> + Send + Sync;
pub type ActionFn = dyn Fn(&Ctx, &Params) -> FuncResult<Doc> + Send + Sync;

pub enum Handler {
    /// A list served from SQL: paging, sorting, filters and ownership are the dispatcher's.
    List(ListSpec),
    Edit(Box<dyn EditOps>),
    /// Runs once per `elid` element, all in one transaction.
    Group(Box<GroupFn>),
    Action(Box<ActionFn>),
    /// Stores the caller's filter of the named list (`sok=ok`) or shows it.
    Filter {
        list: String,
    },
}

impl Handler {
    pub fn kind(&self) -> &'static str {
        match self {
            Handler::List(_) => "list",
            Handler::Edit(_) => "edit",
            Handler::Group(_) => "group",
            Handler::Action(_) => "action",
            Handler::Filter { .. } => "filter",
        }
    }
}

/// How an action treats a call without `sok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionMode {
    /// Runs on every call, writing.
    Write,
    /// Runs on every call and changes nothing (served from a read connection).
    Read,
    /// Without `sok` answers the blank form of its parameters; with `sok` runs, writing.
    FormThenWrite,
    /// Runs on every call on a read connection (required parameters are enforced only with
    /// `sok`) and writes in transactions of its own through `Ctx::write`, so that it can call
    /// out (a plugin, the network) between them without holding the writer.
    CallOut,
}

/// What the web panel needs of a func beyond the rest of its declaration (see `docs/panel.md`);
/// every field has a default derived from the name and the other fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PanelHints {
    /// For a list: the func a row opens (default `<list>.edit`, when it exists).
    pub row_func: Option<&'static str>,
    /// For a list: the columns shown first, in this order; the others follow (default: the
    /// declared order). `elid` is never shown.
    pub columns_first: &'static [&'static str],
    /// For a list: columns left out of the table.
    pub hidden: &'static [&'static str],
    /// For a list: funcs offered on the selected rows besides `<list>.<name>` groups and
    /// actions on the same object.
    pub row_funcs: &'static [&'static str],
    /// The menu area (default: the name up to the first dot).
    pub area: Option<&'static str>,
    /// For a group func: asks for a confirmation first (default: names ending in `.delete`).
    pub confirm: Option<bool>,
    /// Left out of the menu (a list that only makes sense under a parent, a technical func).
    pub no_menu: bool,
    /// Column headings where the column's name in words is not enough.
    pub labels: &'static [(&'static str, &'static str)],
    /// Words for a column's codes: `(column, &[(code, word)])` (a payment's status 4 is "paid").
    pub values: &'static [(&'static str, &'static [(&'static str, &'static str)])],
}

pub struct FuncDecl {
    pub name: String,
    pub title: String,
    pub access: Access,
    pub handler: Handler,
    /// What `elid` names (each element of a group operation).
    pub object: Option<ObjectType>,
    /// What `plid` names.
    pub parent: Option<ObjectType>,
    pub parent_required: bool,
    pub params: Vec<Param>,
    /// Fields the spec lists for this func's form that billhost computes or does not offer,
    /// with the reason: a write that sets one (non-empty, and on a change different from what
    /// the object's view shows, so a view sent back as it came passes) is a `value` error,
    /// never accepted and dropped.
    pub refused: Vec<(&'static str, &'static str)>,
    pub action_mode: ActionMode,
    /// A group handler that checks each element itself, answering exactly what the
    /// dispatcher's [`crate::engine::check_object`] would (the missing object, then
    /// [`crate::engine::check_owner`]'s access error), because it reads the object's row
    /// first anyway: the dispatcher then skips its own query (one statement fewer per element).
    pub group_checks_object: bool,
    /// How the web panel shows it.
    pub panel: PanelHints,
}

impl FuncDecl {
    fn new(name: &str, title: &str, access: Access, handler: Handler) -> FuncDecl {
        FuncDecl {
            name: name.into(),
            title: title.into(),
            access,
            handler,
            object: None,
            parent: None,
            parent_required: false,
            params: Vec::new(),
            refused: Vec::new(),
            action_mode: ActionMode::Write,
            group_checks_object: false,
            panel: PanelHints::default(),
        }
    }

    pub fn list(name: &str, title: &str, access: Access, spec: ListSpec) -> FuncDecl {
        Self::new(name, title, access, Handler::List(spec))
    }

    pub fn edit(name: &str, title: &str, access: Access, ops: impl EditOps + 'static) -> FuncDecl {
        Self::new(name, title, access, Handler::Edit(Box::new(ops)))
    }

    pub fn group(
        name: &str,
        title: &str,
        access: Access,
        object: ObjectType,
        f: impl Fn(&Ctx, i64, &Params) -> FuncResult<()> + Send + Sync + 'static,
    ) -> FuncDecl {
        let mut d = Self::new(name, title, access, Handler::Group(Box::new(f)));
        d.object = Some(object);
        d
    }

    pub fn action(
        name: &str,
        title: &str,
        access: Access,
        mode: ActionMode,
        f: impl Fn(&Ctx, &Params) -> FuncResult<Doc> + Send + Sync + 'static,
    ) -> FuncDecl {
        let mut d = Self::new(name, title, access, Handler::Action(Box::new(f)));
        d.action_mode = mode;
        d
    }

    pub fn filter(name: &str, list: &str, access: Access) -> FuncDecl {
        let title = format!("Filter of {list}");
        Self::new(name, &title, access, Handler::Filter { list: list.into() })
    }

    /// See [`FuncDecl::group_checks_object`].
    pub fn checks_object(mut self) -> FuncDecl {
        self.group_checks_object = true;
        self
    }

    pub fn object(mut self, object: ObjectType) -> FuncDecl {
        self.object = Some(object);
        self
    }

    pub fn parent(mut self, parent: ObjectType, required: bool) -> FuncDecl {
        self.parent = Some(parent);
        self.parent_required = required;
        self
    }

    pub fn params(mut self, params: Vec<Param>) -> FuncDecl {
        self.params = params;
        self
    }

    /// Spec fields this func refuses, with the reason shown in the error (see `refused`).
    pub fn refuses(mut self, fields: &[(&'static str, &'static str)]) -> FuncDecl {
        self.refused = fields.to_vec();
        self
    }

    /// Sets what the web panel needs beyond the rest of the declaration.
    pub fn panel(mut self, hints: PanelHints) -> FuncDecl {
        self.panel = hints;
        self
    }

    pub fn columns(&self) -> Vec<&'static str> {
        match &self.handler {
            Handler::List(spec) => spec.columns.iter().map(|c| c.name).collect(),
            _ => Vec::new(),
        }
    }
}

/// Every func the engine knows, by name.
#[derive(Default)]
pub struct Registry {
    funcs: std::collections::BTreeMap<String, Arc<FuncDecl>>,
}

impl Registry {
    pub fn add(&mut self, decl: FuncDecl) {
        self.funcs.insert(decl.name.clone(), Arc::new(decl));
    }

    pub fn get(&self, name: &str) -> Option<&Arc<FuncDecl>> {
        self.funcs.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<FuncDecl>> {
        self.funcs.values()
    }
}
