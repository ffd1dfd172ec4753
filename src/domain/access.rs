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
    /// A regex matched against the whole name (implicitly anchored).
    pub fn from_regex(re: &str) -> Result<Self, regex::Error> {
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

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Stable id, written to the audit log as the actor.
    pub id: String,
    pub role: Role,
    pub scopes: Scopes,
    /// `None` = every project.
    pub project: Option<String>,
    pub benchmarks: Option<BenchFilter>,
}

impl Principal {
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
                self.require(scope)?;
                self.require_project(project)?;
                if let (Some(f), Some(b)) = (&self.benchmarks, benchmark) {
                    if !f.matches(b) {
                        return Err(Denied::OtherBenchmark(f.source.clone()));
                    }
                }
                Ok(())
            }
            Access::AllProjects { scope, what } => {
                self.require(scope)?;
                match &self.project {
                    Some(own) => Err(Denied::NeedsAllProjects {
                        own: own.clone(),
                        what,
                    }),
                    None => Ok(()),
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
    /// `scope` across every project (fleet-wide data): only keys not bound to a project.
    AllProjects { scope: Scope, what: &'static str },
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
        Principal {
            id: "k".into(),
            role,
            scopes: role.scopes(),
            project: project.map(str::to_owned),
            benchmarks: re.map(|r| BenchFilter::from_regex(r).unwrap()),
        }
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
    fn filters_are_anchored() {
        let f = BenchFilter::from_regex("bench-[a-c]").unwrap();
        assert!(f.matches("bench-a"));
        assert!(!f.matches("bench-ab"));
        assert!(!f.matches("xbench-a"));
        let f = BenchFilter::from_regex("a|b").unwrap();
        assert!(!f.matches("ab"));
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
