//! Who is calling, and what they may do (contract §2).

pub mod extract;
pub mod jwt;
pub mod keys;
pub mod oidc;

use std::fmt;

use regex::Regex;

use crate::error::ApiError;

/// A permission. Roles are fixed sets of scopes.
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
    pub fn authorize(
        &self,
        scope: Scope,
        project: &str,
        benchmark: Option<&str>,
    ) -> Result<(), ApiError> {
        if !self.scopes.contains(scope) {
            crate::metrics::auth_failure("forbidden_scope");
            return Err(ApiError::forbidden(format!(
                "Requires '{}' permission",
                scope.as_str()
            )));
        }
        if let Some(p) = &self.project {
            if p != project {
                crate::metrics::auth_failure("forbidden_project");
                return Err(ApiError::forbidden(format!(
                    "Key is restricted to project '{p}'"
                )));
            }
        }
        if let (Some(f), Some(b)) = (&self.benchmarks, benchmark) {
            if !f.matches(b) {
                crate::metrics::auth_failure("forbidden_benchmark");
                return Err(ApiError::forbidden(format!(
                    "Key is restricted to benchmarks matching '{}'",
                    f.source
                )));
            }
        }
        Ok(())
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
        let e = v.authorize(Scope::Write, "b", Some("y")).unwrap_err();
        assert_eq!(e.message, "Requires 'write' permission");
        let e = v.authorize(Scope::Read, "b", Some("y")).unwrap_err();
        assert_eq!(e.message, "Key is restricted to project 'a'");
        let e = v.authorize(Scope::Read, "a", Some("y")).unwrap_err();
        assert_eq!(e.message, "Key is restricted to benchmarks matching 'x.*'");
        assert!(v.authorize(Scope::Read, "a", Some("xyz")).is_ok());
        assert!(v.authorize(Scope::Read, "a", None).is_ok());
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
