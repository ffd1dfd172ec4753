//! Alert triage: the states of an alert, which transitions each role may make, what each
//! transition needs, waivers, and the per-benchmark false-alarm hint.

use super::access::Scope;
use super::names::{check_text, NameError};

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertStatus {
    /// Nobody has looked at it yet.
    Untriaged,
    /// Real, being worked on (optionally with an issue link).
    Acknowledged,
    /// Noise: the run stays out of the history and the benchmark's false-alarm count grows.
    Invalid,
    /// An accepted regression, covered by a waiver.
    Expected,
    /// The same change as another alert.
    Duplicate,
    /// The level came back (set by hand, or by a later change point restoring it).
    Fixed,
}

impl AlertStatus {
    pub const ALL: [AlertStatus; 6] = [
        AlertStatus::Untriaged,
        AlertStatus::Acknowledged,
        AlertStatus::Invalid,
        AlertStatus::Expected,
        AlertStatus::Duplicate,
        AlertStatus::Fixed,
    ];
    pub const NAMES: &'static [&'static str] = &[
        "untriaged",
        "acknowledged",
        "invalid",
        "expected",
        "duplicate",
        "fixed",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Untriaged => "untriaged",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Invalid => "invalid",
            AlertStatus::Expected => "expected",
            AlertStatus::Duplicate => "duplicate",
            AlertStatus::Fixed => "fixed",
        }
    }

    pub fn parse(s: &str) -> Option<AlertStatus> {
        AlertStatus::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Open alerts still need a person; the others are settled (until an admin reopens them).
    pub fn is_open(self) -> bool {
        matches!(self, AlertStatus::Untriaged | AlertStatus::Acknowledged)
    }

    /// The states an alert may move to from this one (reopening included).
    pub fn allowed(self) -> Vec<AlertStatus> {
        use AlertStatus::*;
        match self {
            Untriaged => vec![Acknowledged, Invalid, Expected, Duplicate, Fixed],
            Acknowledged => vec![Untriaged, Invalid, Expected, Duplicate, Fixed],
            Invalid | Expected | Duplicate | Fixed => vec![Untriaged],
        }
    }
}

/// The permission a transition needs: contributors acknowledge (and mark duplicates or fixes),
/// promoters accept or dismiss (they decide what the baseline may become), admins reopen.
pub fn scope_for(from: AlertStatus, to: AlertStatus) -> Scope {
    use AlertStatus::*;
    match to {
        Untriaged if from != Acknowledged => Scope::Admin,
        Untriaged | Acknowledged | Duplicate | Fixed => Scope::Write,
        Invalid | Expected => Scope::Promote,
    }
}

/// Longest reason, link or owner, in bytes.
pub const REASON_MAX_BYTES: usize = 1024;
pub const LINK_MAX_BYTES: usize = 2048;
pub const OWNER_MAX_BYTES: usize = 256;
/// A waiver lasts this long unless it says otherwise.
pub const DEFAULT_WAIVER_DAYS: i64 = 30;
/// The longest a waiver may run.
pub const MAX_WAIVER_DAYS: i64 = 366;

/// What a transition request says, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub to: AlertStatus,
    pub reason: Option<String>,
    pub link: Option<String>,
    pub duplicate_of: Option<String>,
    pub waiver: Option<Waiver>,
}

/// An accepted regression: the benchmark's gate does not fail for a slowdown up to
/// `max_change_pct` until `expires_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiver {
    pub owner: String,
    pub max_change_pct: f64,
    /// Microseconds since the epoch.
    pub expires_at: i64,
}

/// The raw fields of a transition request.
#[derive(Debug, Clone, Default)]
pub struct TransitionRequest<'a> {
    pub to: &'a str,
    pub reason: Option<&'a str>,
    pub link: Option<&'a str>,
    pub duplicate_of: Option<&'a str>,
    pub owner: Option<&'a str>,
    pub max_change_pct: Option<f64>,
    /// Already parsed (microseconds).
    pub expires_at: Option<i64>,
}

fn err(field: &'static str, reason: impl Into<String>) -> NameError {
    NameError::new(field, reason)
}

fn text(field: &'static str, v: Option<&str>, max: usize) -> Result<Option<String>, NameError> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => {
            check_text(field, t, max)?;
            Ok(Some(t.to_owned()))
        }
    }
}

impl Transition {
    /// Checks a request on its own (the current state is checked by the caller): a known
    /// state, a reason for `invalid` and `expected`, an alert to point to for `duplicate`, and a
    /// waiver for `expected` (`max_change_pct` defaults to the alert's change, the expiry to
    /// 30 days; an expiry in the past is refused).
    pub fn validate(
        r: &TransitionRequest<'_>,
        alert_change_pct: f64,
        now: i64,
        actor: &str,
    ) -> Result<Transition, NameError> {
        let to = AlertStatus::parse(r.to).ok_or_else(|| {
            err(
                "to",
                format!(
                    "unknown state; expected one of {}",
                    AlertStatus::NAMES.join(", ")
                ),
            )
        })?;
        let reason = text("reason", r.reason, REASON_MAX_BYTES)?;
        let link = text("link", r.link, LINK_MAX_BYTES)?;
        // Shown as a link in the dashboard: web addresses only (no `javascript:`, `data:`).
        if let Some(l) = &link {
            let scheme = l.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
            if !matches!(scheme.as_deref(), Some("http" | "https"))
                || l.contains(char::is_whitespace)
            {
                return Err(err("link", "an http:// or https:// address"));
            }
        }
        if matches!(to, AlertStatus::Invalid | AlertStatus::Expected) && reason.is_none() {
            return Err(err(
                "reason",
                format!("required to mark an alert {}", to.as_str()),
            ));
        }
        let duplicate_of = text("duplicate_of", r.duplicate_of, 64)?;
        if duplicate_of
            .as_deref()
            .is_some_and(|d| !crate::domain::ids::is_row_id(d))
        {
            return Err(err("duplicate_of", "an alert id: 32 hexadecimal digits"));
        }
        if to == AlertStatus::Duplicate && duplicate_of.is_none() {
            return Err(err(
                "duplicate_of",
                "required: the alert this one duplicates",
            ));
        }
        let waiver = if to == AlertStatus::Expected {
            let owner =
                text("owner", r.owner, OWNER_MAX_BYTES)?.unwrap_or_else(|| actor.to_owned());
            // No upper bound: a regression of any size may be the expected cost of a change.
            let max_change_pct = match r.max_change_pct {
                Some(m) => m,
                None if alert_change_pct.is_finite() => alert_change_pct.max(0.0),
                None => {
                    return Err(err(
                        "max_change_pct",
                        "required: the alert's change has no finite size",
                    ))
                }
            };
            if !(max_change_pct.is_finite() && max_change_pct >= 0.0) {
                return Err(err("max_change_pct", "must be a finite number, 0 or more"));
            }
            let day = 86_400_000_000i64;
            let expires_at = r.expires_at.unwrap_or(now + DEFAULT_WAIVER_DAYS * day);
            if expires_at <= now {
                return Err(err("expires_at", "must lie in the future"));
            }
            if expires_at > now + MAX_WAIVER_DAYS * day {
                return Err(err(
                    "expires_at",
                    format!("at most {MAX_WAIVER_DAYS} days ahead"),
                ));
            }
            Some(Waiver {
                owner,
                max_change_pct,
                expires_at,
            })
        } else {
            None
        };
        Ok(Transition {
            to,
            reason,
            link,
            duplicate_of,
            waiver,
        })
    }
}

/// Counts of one benchmark's alerts by state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertCounts {
    pub by_status: [u64; 6],
}

impl AlertCounts {
    pub fn add(&mut self, status: AlertStatus, n: u64) {
        if let Some(i) = AlertStatus::ALL.iter().position(|s| *s == status) {
            self.by_status[i] += n;
        }
    }
    pub fn get(&self, status: AlertStatus) -> u64 {
        AlertStatus::ALL
            .iter()
            .position(|s| *s == status)
            .map_or(0, |i| self.by_status[i])
    }
    /// Share of triaged alerts that were noise (0 when nothing is triaged yet).
    pub fn invalid_rate(&self) -> f64 {
        let triaged: u64 = AlertStatus::ALL
            .iter()
            .filter(|s| !s.is_open())
            .map(|s| self.get(*s))
            .sum();
        if triaged == 0 {
            0.0
        } else {
            self.get(AlertStatus::Invalid) as f64 / triaged as f64
        }
    }
    /// Benchmarks whose alerts are often noise need more samples per run, not a looser
    /// threshold: at least 3 invalid alerts making up at least a third of the triaged ones.
    pub fn hint(&self) -> Option<String> {
        let invalid = self.get(AlertStatus::Invalid);
        (invalid >= 3 && self.invalid_rate() >= 1.0 / 3.0).then(|| {
            format!(
                "{invalid} alerts were noise ({:.0}% of the triaged ones): raise this benchmark's repeat count (perfgate run --repeat) rather than its threshold",
                self.invalid_rate() * 100.0
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000_000;

    fn req(to: &str) -> TransitionRequest<'_> {
        TransitionRequest {
            to,
            ..Default::default()
        }
    }

    #[test]
    fn transitions_and_their_scopes() {
        use AlertStatus::*;
        assert!(Untriaged.allowed().contains(&Acknowledged));
        assert!(!Invalid.allowed().contains(&Acknowledged));
        assert_eq!(Expected.allowed(), vec![Untriaged]);
        assert_eq!(scope_for(Untriaged, Acknowledged), Scope::Write);
        assert_eq!(scope_for(Untriaged, Invalid), Scope::Promote);
        assert_eq!(scope_for(Acknowledged, Expected), Scope::Promote);
        assert_eq!(scope_for(Expected, Untriaged), Scope::Admin);
        assert_eq!(scope_for(Acknowledged, Untriaged), Scope::Write);
        for s in AlertStatus::ALL {
            assert_eq!(AlertStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(AlertStatus::parse("closed"), None);
    }

    #[test]
    fn requests_are_checked() {
        let t = |r: TransitionRequest<'_>| Transition::validate(&r, 12.0, NOW, "key-1");
        assert_eq!(t(req("closed")).unwrap_err().field, "to");
        assert_eq!(t(req("invalid")).unwrap_err().field, "reason");
        assert_eq!(t(req("expected")).unwrap_err().field, "reason");
        assert_eq!(t(req("duplicate")).unwrap_err().field, "duplicate_of");
        let ok = t(TransitionRequest {
            to: "expected",
            reason: Some("new parser is slower by design"),
            ..Default::default()
        })
        .unwrap();
        let w = ok.waiver.unwrap();
        assert_eq!(w.owner, "key-1");
        assert_eq!(w.max_change_pct, 12.0);
        assert_eq!(w.expires_at, NOW + 30 * 86_400_000_000);
        let past = t(TransitionRequest {
            to: "expected",
            reason: Some("x"),
            expires_at: Some(NOW - 1),
            ..Default::default()
        });
        assert_eq!(past.unwrap_err().field, "expires_at");
        let bad = t(TransitionRequest {
            to: "expected",
            reason: Some("x"),
            max_change_pct: Some(f64::NAN),
            ..Default::default()
        });
        assert_eq!(bad.unwrap_err().field, "max_change_pct");
        assert!(t(req("acknowledged")).unwrap().waiver.is_none());
    }

    #[test]
    fn invalid_rate_and_hint() {
        let mut c = AlertCounts::default();
        assert_eq!(c.invalid_rate(), 0.0);
        assert!(c.hint().is_none());
        c.add(AlertStatus::Invalid, 3);
        c.add(AlertStatus::Acknowledged, 10);
        c.add(AlertStatus::Fixed, 3);
        assert!((c.invalid_rate() - 0.5).abs() < 1e-12);
        assert!(c.hint().unwrap().contains("repeat"));
        c.add(AlertStatus::Fixed, 10);
        assert!(c.hint().is_none());
    }
}
