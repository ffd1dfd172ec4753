//! Query parameters shared by list routes: paging and timestamps.

use crate::domain::names::NameError;
use crate::domain::time::parse_rfc3339;
use crate::error::ApiError;

pub(crate) fn parse_time(field: &'static str, v: &Option<String>) -> Result<Option<i64>, ApiError> {
    v.as_deref()
        .map(|s| {
            // An unencoded '+' of an offset arrives as a space.
            parse_rfc3339(&s.replace(' ', "+"))
                .ok_or_else(|| NameError::new(field, "expected an RFC 3339 timestamp").into())
        })
        .transpose()
}

/// A page size: `default` when absent, 400 when below 1, and capped at `max` (the answer's
/// `pagination.limit` reports the page size used, so a client asking for more sees it).
pub(crate) fn parse_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match limit {
        None => Ok(default),
        Some(l) if l >= 1 => Ok(l.min(max)),
        Some(_) => Err(NameError::new("limit", "must be at least 1").into()),
    }
}

pub(crate) fn parse_offset(offset: Option<i64>) -> Result<i64, ApiError> {
    match offset {
        None => Ok(0),
        Some(o) if o >= 0 => Ok(o),
        Some(_) => Err(NameError::new("offset", "must not be negative").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None, 50, 1000).unwrap(), 50);
        assert!(parse_limit(Some(0), 50, 1000).is_err());
        assert!(parse_limit(Some(-3), 50, 1000).is_err());
        assert_eq!(parse_limit(Some(1001), 50, 1000).unwrap(), 1000);
        assert_eq!(parse_limit(Some(i64::MAX), 50, 200).unwrap(), 200);
        assert!(parse_offset(Some(-1)).is_err());
    }
}
