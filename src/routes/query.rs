//! Query parameters shared by list routes: paging and timestamps.

use crate::domain::time::parse_rfc3339;
use crate::error::ApiError;

pub(crate) fn parse_time(field: &str, v: &Option<String>) -> Result<Option<i64>, ApiError> {
    v.as_deref()
        .map(|s| {
            // An unencoded '+' of an offset arrives as a space.
            parse_rfc3339(&s.replace(' ', "+")).ok_or_else(|| {
                ApiError::bad_request(format!("Invalid {field}: expected an RFC 3339 timestamp"))
            })
        })
        .transpose()
}

pub(crate) fn parse_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match limit {
        None => Ok(default),
        Some(l) if (1..=max).contains(&l) => Ok(l),
        Some(_) => Err(ApiError::bad_request(format!(
            "Invalid limit: must be between 1 and {max}"
        ))),
    }
}

pub(crate) fn parse_offset(offset: Option<i64>) -> Result<i64, ApiError> {
    match offset {
        None => Ok(0),
        Some(o) if o >= 0 => Ok(o),
        Some(_) => Err(ApiError::bad_request(
            "Invalid offset: must not be negative",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None, 50, 1000).unwrap(), 50);
        assert!(parse_limit(Some(0), 50, 1000).is_err());
        assert!(parse_limit(Some(1001), 50, 1000).is_err());
        assert!(parse_offset(Some(-1)).is_err());
    }
}
