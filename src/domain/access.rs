//! Who may do what (contract §2): roles and their scopes, benchmark filters, the principal of a
//! request, and the one permission rule every route goes through ([`Principal::check`]).

use std::fmt;

use regex::Regex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Read,
    Write,
    Promote,
    Delete,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Read,
        Scope::Write,
        Scope::Promote,
        Scope::Delete,
        Scope::Admin,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Promote => "promote",
            Scope::Delete => "delete",
            Scope::Admin => "admin",
        }
    }
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub fn contains(self, s: Scope) -> bool {
        self.0 & s.bit() != 0
    }
    pub fn with(self, s: Scope) -> Self {
        Self(self.0 | s.bit())
    }
    /// Every scope of either.
    pub fn union(self, other: Scopes) -> Self {
        Self(self.0 | other.0)
    }
    /// True when every scope of `self` is also in `other`.
    pub fn is_subset_of(self, other: Scopes) -> bool {
        self.0 & !other.0 == 0
    }
    /// Every scope held, in the order of [`Scope::ALL`].
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Contributor,
    Promoter,
    Admin,
}

impl Role {
    /// Every role, lowest first, as the API spells them.
    pub const NAMES: &'static [&'static str] = &["viewer", "contributor", "promoter", "admin"];

    pub fn parse(s: &str) -> Option<Role> {
        match s.to_ascii_lowercase().as_str() {
            "viewer" => Some(Role::Viewer),
            "contributor" => Some(Role::Contributor),
            "promoter" => Some(Role::Promoter),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Contributor => "contributor",
            Role::Promoter => "promoter",
            Role::Admin => "admin",
        }
    }
    pub fn scopes(self) -> Scopes {
        let s = Scopes::default().with(Scope::Read);
        match self {
            Role::Viewer => s,
            Role::Contributor => s.with(Scope::Write),
            Role::Promoter => s.with(Scope::Write).with(Scope::Promote),
            Role::Admin => s
                .with(Scope::Write)
                .with(Scope::Promote)
                .with(Scope::Delete)
                .with(Scope::Admin),
        }
    }
}

impl Role {
    /// The role whose scopes are exactly `scopes`, if there is one (a token may carry a set no
    /// role has, such as read and delete).
    pub fn exactly(scopes: Scopes) -> Option<Role> {
        [Role::Viewer, Role::Contributor, Role::Promoter, Role::Admin]
            .into_iter()
            .find(|r| r.scopes() == scopes)
    }
    /// The most privileged role all of whose scopes are in `scopes` (never more than held).
    pub fn within(scopes: Scopes) -> Option<Role> {
        [Role::Admin, Role::Promoter, Role::Contributor, Role::Viewer]
            .into_iter()
            .find(|r| r.scopes().is_subset_of(scopes))
    }
    /// How `scopes` is reported: the role with exactly these scopes, or `custom`.
    pub fn describe(scopes: Scopes) -> &'static str {
        Role::exactly(scopes).map_or("custom", Role::as_str)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Restricts a principal to benchmarks whose whole name matches.
#[derive(Debug, Clone)]
pub struct BenchFilter {
    /// As configured (regex for `--api-keys`, glob for API-created keys); used in messages.
    pub source: String,
    regex: Regex,
}

impl BenchFilter {
    /// A regex matched against the whole name (implicitly anchored). The pattern is compiled
    /// alone first, so that an unbalanced `)` cannot close the anchoring group and escape it
    /// (`a)|(.*` would otherwise match every name).
    pub fn from_regex(re: &str) -> Result<Self, regex::Error> {
        regex::RegexBuilder::new(re).size_limit(1 << 20).build()?;
        let regex = regex::RegexBuilder::new(&format!("^(?:{re})$"))
            .size_limit(1 << 20)
            .build()?;
        Ok(Self {
            source: re.to_owned(),
            regex,
        })
    }

    /// A glob: `*` any run of characters, `?` one character, everything else literal.
    pub fn from_glob(glob: &str) -> Result<Self, regex::Error> {
        let mut re = String::with_capacity(glob.len() * 2);
        for c in glob.chars() {
            match c {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                c => re.push_str(&regex::escape(&c.to_string())),
            }
        }
        let mut f = Self::from_regex(&re)?;
        f.source = glob.to_owned();
        Ok(f)
    }

    pub fn matches(&self, benchmark: &str) -> bool {
        self.regex.is_match(benchmark)
    }

    /// The names this filter lets through (lists of a restricted caller are limited to them).
    pub fn visible(&self, names: Vec<String>) -> Vec<String> {
        names.into_iter().filter(|n| self.matches(n)).collect()
    }
}

/// How a caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// `--api-keys` or a key stored in the database.
    ApiKey,
    /// An HS256 token.
    Jwt,
    /// A token of an OIDC provider.
    Oidc,
    /// No credential, on a server in local mode (`--local`): the one local user.
    Local,
}

/// A further `(project, scopes)` grant of a principal (an OIDC token matching several
/// mappings holds the union of their grants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `None` = every project.
    pub project: Option<String>,
    pub scopes: Scopes,
}

/// The id (and audit actor) of [`Principal::local`].
pub const LOCAL_PRINCIPAL: &str = "local";

/// An authenticated caller. Its first grant is `project` with `scopes`; `more` adds others.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Stable id, written to the audit log as the actor.
    pub id: String,
    /// For display: the role of the first grant.
    pub role: Role,
    pub scopes: Scopes,
    /// `None` = every project.
    pub project: Option<String>,
    pub benchmarks: Option<BenchFilter>,
    /// Further grants; data access is the union of all grants. Administration (keys, audit)
    /// goes by the first grant alone.
    pub more: Vec<Grant>,
    /// When the credential stops working (Unix microseconds): a key's `expires_at`, a
    /// token's `exp`. `None` = never.
    pub expires_at: Option<i64>,
    pub kind: CredentialKind,
}

impl Principal {
    /// A principal with one grant, no expiry.
    pub fn new(
        id: String,
        role: Role,
        project: Option<String>,
        benchmarks: Option<BenchFilter>,
        kind: CredentialKind,
    ) -> Self {
        Principal {
            id,
            role,
            scopes: role.scopes(),
            project,
            benchmarks,
            more: Vec::new(),
            expires_at: None,
            kind,
        }
    }

    /// The caller of a request without a credential in local mode: `local`, admin of every
    /// project. It manages no keys and reads no audit log (those routes ask for a real
    /// credential even in local mode).
    pub fn local() -> Self {
        Principal::new(
            LOCAL_PRINCIPAL.to_owned(),
            Role::Admin,
            None,
            None,
            CredentialKind::Local,
        )
    }

    /// Every grant: the first one, then `more`.
    fn grants(&self) -> impl Iterator<Item = (Option<&str>, Scopes)> {
        std::iter::once((self.project.as_deref(), self.scopes))
            .chain(self.more.iter().map(|g| (g.project.as_deref(), g.scopes)))
    }

    /// The scopes held on `project` (the union of the grants that reach it).
    pub fn scopes_on(&self, project: &str) -> Scopes {
        self.grants()
            .filter(|(p, _)| p.is_none_or(|p| p == project))
            .fold(Scopes::default(), |acc, (_, s)| acc.union(s))
    }

    fn all_scopes(&self) -> Scopes {
        self.grants()
            .fold(Scopes::default(), |acc, (_, s)| acc.union(s))
    }

    /// May this caller see and revoke a key of `project` (`*` = every project) with `scopes`
    /// that expires at `expires_at` (`None` = never)? Only keys no wider than itself: within
    /// its project, scopes within its own, and expiring no later than itself (a caller that
    /// expires cannot revoke a key that outlives it). A benchmark-restricted caller
    /// administers no keys at all.
    pub fn may_manage_key(&self, project: &str, scopes: Scopes, expires_at: Option<i64>) -> bool {
        if self.benchmarks.is_some() || !self.scopes.contains(Scope::Admin) {
            return false;
        }
        let project_ok = match &self.project {
            None => true,
            Some(own) => own == project,
        };
        let expiry_ok = match (self.expires_at, expires_at) {
            (None, _) => true,
            (Some(own), Some(e)) => e <= own,
            (Some(_), None) => false,
        };
        project_ok && expiry_ok && scopes.is_subset_of(self.scopes)
    }

    pub fn is_global_admin(&self) -> bool {
        self.scopes.contains(Scope::Admin) && self.project.is_none()
    }

    /// Contract order, first failure wins: scope, project, benchmark filter.
    /// The one permission rule: may this principal do `access`? Every route asks through
    /// `auth::Gate`, which counts refusals by [`Denied::reason`].
    pub fn check(&self, access: Access<'_>) -> Result<(), Denied> {
        match access {
            Access::Project {
                scope,
                project,
                benchmark,
            } => {
                if !self.scopes_on(project).contains(scope) {
                    // Contract order: a scope held nowhere, then a project out of reach.
                    let reached = self.grants().any(|(p, _)| p.is_none_or(|p| p == project));
                    if reached || !self.all_scopes().contains(scope) {
                        return Err(Denied::MissingScope(scope));
                    }
                    return Err(Denied::OtherProject(
                        self.project.clone().unwrap_or_else(|| "*".to_owned()),
                    ));
                }
                if let (Some(f), Some(b)) = (&self.benchmarks, benchmark) {
                    if !f.matches(b) {
                        return Err(Denied::OtherBenchmark(f.source.clone()));
                    }
                }
                Ok(())
            }
            Access::WholeProject {
                scope,
                project,
                what,
            } => {
                self.check(Access::Project {
                    scope,
                    project,
                    benchmark: None,
                })?;
                if self.benchmarks.is_some() {
                    return Err(Denied::BenchmarkRestricted(what));
                }
                Ok(())
            }
            Access::Somewhere { scope } => {
                if self.all_scopes().contains(scope) {
                    Ok(())
                } else {
                    Err(Denied::MissingScope(scope))
                }
            }
            Access::AllProjects { scope, what } => {
                if !self.all_scopes().contains(scope) {
                    return Err(Denied::MissingScope(scope));
                }
                let global = self
                    .grants()
                    .filter(|(p, _)| p.is_none())
                    .fold(Scopes::default(), |acc, (_, s)| acc.union(s));
                if global.contains(scope) {
                    return Ok(());
                }
                match &self.project {
                    Some(own) => Err(Denied::NeedsAllProjects {
                        own: own.clone(),
                        what,
                    }),
                    None => Err(Denied::MissingScope(scope)),
                }
            }
            Access::Administer { project, what } => {
                self.require(Scope::Admin)?;
                if self.benchmarks.is_some() {
                    return Err(Denied::BenchmarkRestricted(what));
                }
                match project {
                    Some(p) => self.require_project(p),
                    None => Ok(()),
                }
            }
        }
    }

    fn require(&self, scope: Scope) -> Result<(), Denied> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(Denied::MissingScope(scope))
        }
    }

    fn require_project(&self, project: &str) -> Result<(), Denied> {
        match &self.project {
            Some(own) if own != project => Err(Denied::OtherProject(own.clone())),
            _ => Ok(()),
        }
    }
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// `scope` on one project, and on one benchmark of it when the request names one.
    Project {
        scope: Scope,
        project: &'a str,
        benchmark: Option<&'a str>,
    },
    /// `scope` on one project as a whole (data that spans benchmarks, such as the decision
    /// ledger): a key bound to some benchmarks is refused, since what it would reach is wider
    /// than itself.
    WholeProject {
        scope: Scope,
        project: &'a str,
        what: &'static str,
    },
    /// `scope` across every project (fleet-wide data): only keys not bound to a project.
    AllProjects { scope: Scope, what: &'static str },
    /// `scope` on some project: the first check of a request that names its project in the
    /// body, made before the body is read (the full check follows once it is).
    Somewhere { scope: Scope },
    /// Administration (keys, the audit log), of `project` when the request names one (a project
    /// admin administers its own project only). A key bound to some benchmarks administers
    /// nothing: what it would see or mint is wider than itself.
    Administer {
        project: Option<&'a str>,
        what: &'static str,
    },
}

/// Why a request was refused (403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    MissingScope(Scope),
    /// The key is bound to another project (named).
    OtherProject(String),
    /// The key is bound to benchmarks matching this filter.
    OtherBenchmark(String),
    NeedsAllProjects {
        own: String,
        what: &'static str,
    },
    BenchmarkRestricted(&'static str),
}

impl Denied {
    /// The `reason` label of the auth-failure metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::MissingScope(_) => "forbidden_scope",
            Denied::OtherProject(_) | Denied::NeedsAllProjects { .. } => "forbidden_project",
            Denied::OtherBenchmark(_) | Denied::BenchmarkRestricted(_) => "forbidden_benchmark",
        }
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::MissingScope(s) => write!(f, "Requires '{}' permission", s.as_str()),
            Denied::OtherProject(p) => write!(f, "Key is restricted to project '{p}'"),
            Denied::OtherBenchmark(re) => {
                write!(f, "Key is restricted to benchmarks matching '{re}'")
            }
            Denied::NeedsAllProjects { own, what } => write!(
                f,
                "Key is restricted to project '{own}'; {what} needs access to all projects"
            ),
            Denied::BenchmarkRestricted(what) => {
                write!(f, "Keys restricted to some benchmarks cannot {what}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(role: Role, project: Option<&str>, re: Option<&str>) -> Principal {
        Principal::new(
            "k".into(),
            role,
            project.map(str::to_owned),
            re.map(|r| BenchFilter::from_regex(r).unwrap()),
            CredentialKind::ApiKey,
        )
    }

    fn project_access(scope: Scope, project: &str) -> Access<'_> {
        Access::Project {
            scope,
            project,
            benchmark: None,
        }
    }

    #[test]
    fn grants_are_a_union_whatever_their_order() {
        // Issue 15 #5: promoter on a, viewer everywhere; either order gives the same answers.
        let mut x = p(Role::Promoter, Some("a"), None);
        x.more.push(Grant {
            project: None,
            scopes: Role::Viewer.scopes(),
        });
        let mut y = p(Role::Viewer, None, None);
        y.more.push(Grant {
            project: Some("a".into()),
            scopes: Role::Promoter.scopes(),
        });
        for q in [&x, &y] {
            assert!(q.check(project_access(Scope::Promote, "a")).is_ok());
            assert!(q.check(project_access(Scope::Read, "b")).is_ok());
            assert_eq!(
                q.check(project_access(Scope::Write, "b")).unwrap_err(),
                Denied::MissingScope(Scope::Write)
            );
            assert_eq!(
                q.check(project_access(Scope::Delete, "a")).unwrap_err(),
                Denied::MissingScope(Scope::Delete)
            );
            assert!(q
                .check(Access::AllProjects {
                    scope: Scope::Read,
                    what: "x"
                })
                .is_ok());
        }
        // Two projects: each reached with its own scopes, a third not at all.
        let mut z = p(Role::Contributor, Some("a"), None);
        z.more.push(Grant {
            project: Some("b".into()),
            scopes: Role::Viewer.scopes(),
        });
        assert!(z.check(project_access(Scope::Write, "a")).is_ok());
        assert!(z.check(project_access(Scope::Read, "b")).is_ok());
        assert!(z.check(project_access(Scope::Write, "b")).is_err());
        assert_eq!(
            z.check(project_access(Scope::Read, "c")).unwrap_err(),
            Denied::OtherProject("a".into())
        );
    }

    #[test]
    fn roles_of_scope_sets() {
        let rd = Scopes::default().with(Scope::Read).with(Scope::Delete);
        assert_eq!(Role::exactly(rd), None);
        assert_eq!(Role::describe(rd), "custom");
        assert_eq!(Role::within(rd), Some(Role::Viewer));
        assert_eq!(Role::describe(Role::Promoter.scopes()), "promoter");
        assert_eq!(Role::within(Scopes::default().with(Scope::Write)), None);
    }

    #[test]
    fn keys_no_wider_than_the_caller() {
        let global = p(Role::Admin, None, None);
        let proj = p(Role::Admin, Some("a"), None);
        let narrow = p(Role::Admin, Some("a"), Some("bench-.*"));
        let all = Role::Admin.scopes();
        assert!(global.may_manage_key("*", all, None));
        assert!(proj.may_manage_key("a", all, None));
        assert!(!proj.may_manage_key("*", Role::Viewer.scopes(), None));
        assert!(!proj.may_manage_key("b", Role::Viewer.scopes(), None));
        assert!(!narrow.may_manage_key("a", Role::Viewer.scopes(), None));
        let mut admin_only = p(Role::Admin, None, None);
        admin_only.scopes = Scopes::default().with(Scope::Admin).with(Scope::Read);
        assert!(admin_only.may_manage_key("a", Role::Viewer.scopes(), None));
        assert!(!admin_only.may_manage_key("a", Role::Contributor.scopes(), None));
        // A caller that expires manages only keys that expire no later than itself.
        let mut expiring = p(Role::Admin, None, None);
        expiring.expires_at = Some(1_000);
        assert!(expiring.may_manage_key("a", all, Some(1_000)));
        assert!(expiring.may_manage_key("a", all, Some(999)));
        assert!(!expiring.may_manage_key("a", all, Some(1_001)));
        assert!(!expiring.may_manage_key("a", all, None));
        assert!(global.may_manage_key("a", all, Some(1_001)));
    }

    #[test]
    fn role_scopes() {
        assert!(Role::Viewer.scopes().contains(Scope::Read));
        assert!(!Role::Viewer.scopes().contains(Scope::Write));
        assert!(Role::Contributor.scopes().contains(Scope::Write));
        assert!(!Role::Contributor.scopes().contains(Scope::Promote));
        assert!(Role::Promoter.scopes().contains(Scope::Promote));
        assert!(!Role::Promoter.scopes().contains(Scope::Delete));
        assert!(Role::Admin.scopes().contains(Scope::Delete));
        assert!(Role::Admin.scopes().contains(Scope::Admin));
    }

    #[test]
    fn check_order() {
        let v = p(Role::Viewer, Some("a"), Some("x.*"));
        let e = v
            .check(Access::Project {
                scope: Scope::Write,
                project: "b",
                benchmark: Some("y"),
            })
            .unwrap_err();
        assert_eq!(e.to_string(), "Requires 'write' permission");
        let e = v
            .check(Access::Project {
                scope: Scope::Read,
                project: "b",
                benchmark: Some("y"),
            })
            .unwrap_err();
        assert_eq!(e.to_string(), "Key is restricted to project 'a'");
        let e = v
            .check(Access::Project {
                scope: Scope::Read,
                project: "a",
                benchmark: Some("y"),
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Key is restricted to benchmarks matching 'x.*'"
        );
        assert!(v
            .check(Access::Project {
                scope: Scope::Read,
                project: "a",
                benchmark: Some("xyz")
            })
            .is_ok());
        assert!(v
            .check(Access::Project {
                scope: Scope::Read,
                project: "a",
                benchmark: None
            })
            .is_ok());
    }

    #[test]
    fn whole_project_access_refuses_benchmark_restricted_keys() {
        let whole = |scope, project| Access::WholeProject {
            scope,
            project,
            what: "use the decision ledger",
        };
        let restricted = p(Role::Admin, Some("a"), Some("x.*"));
        assert_eq!(
            restricted
                .check(whole(Scope::Read, "a"))
                .unwrap_err()
                .to_string(),
            "Keys restricted to some benchmarks cannot use the decision ledger"
        );
        // Scope and project are checked first, in the contract's order.
        let viewer = p(Role::Viewer, Some("a"), None);
        assert!(viewer.check(whole(Scope::Read, "a")).is_ok());
        assert_eq!(
            viewer.check(whole(Scope::Write, "a")).unwrap_err(),
            Denied::MissingScope(Scope::Write)
        );
        assert_eq!(
            viewer.check(whole(Scope::Read, "b")).unwrap_err(),
            Denied::OtherProject("a".into())
        );
        assert!(p(Role::Admin, None, None)
            .check(whole(Scope::Delete, "any"))
            .is_ok());
    }

    #[test]
    fn filters_are_anchored() {
        let f = BenchFilter::from_regex("bench-[a-c]").unwrap();
        assert!(f.matches("bench-a"));
        assert!(!f.matches("bench-ab"));
        assert!(!f.matches("xbench-a"));
        let f = BenchFilter::from_regex("a|b").unwrap();
        assert!(!f.matches("ab"));
        // Issue 15 #14: a pattern that only compiles inside the anchoring group is refused.
        assert!(BenchFilter::from_regex("bench-a)|(.*").is_err());
        assert!(BenchFilter::from_regex("a)(b").is_err());
        let g = BenchFilter::from_glob("render/*").unwrap();
        assert!(g.matches("render/md"));
        assert!(!g.matches("xrender/md"));
        let g = BenchFilter::from_glob("a.b?").unwrap();
        assert!(g.matches("a.bc"));
        assert!(!g.matches("axbc"));
    }

    #[test]
    fn project_admin_is_not_global() {
        assert!(p(Role::Admin, None, None).is_global_admin());
        assert!(!p(Role::Admin, Some("x"), None).is_global_admin());
        assert!(!p(Role::Promoter, None, None).is_global_admin());
    }
}
