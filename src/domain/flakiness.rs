//! Flakiness score of a benchmark's verdict history (contract §5).
//!
//! History: the new verdict's `wall_ms_cv` (when finite and ≥ 0), then the `wall_ms_cv` of up to
//! 19 newest stored verdicts of the benchmark; stored verdicts without a usable value still take
//! up a slot. With T = 0.30: `noisy_ratio` is the share of values above T, `severity` the mean of
//! `min(cv / T, 2) / 2`, and the score `min(1, 0.7·noisy_ratio + 0.3·severity)`.

pub const NOISE_THRESHOLD: f64 = 0.30;
/// Stored verdicts consulted besides the new one.
pub const HISTORY: i64 = 19;

pub fn usable(cv: Option<f64>) -> Option<f64> {
    cv.filter(|v| v.is_finite() && *v >= 0.0)
}

/// `current` is the new verdict's cv; `stored` the cvs of the newest stored verdicts, newest
/// first (at most [`HISTORY`] are used).
pub fn score(current: Option<f64>, stored: &[Option<f64>]) -> Option<f64> {
    let values: Vec<f64> = usable(current)
        .into_iter()
        .chain(
            stored
                .iter()
                .take(HISTORY as usize)
                .filter_map(|v| usable(*v)),
        )
        .collect();
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let noisy = values.iter().filter(|v| **v > NOISE_THRESHOLD).count() as f64 / n;
    let severity = values
        .iter()
        .map(|v| (v / NOISE_THRESHOLD).min(2.0) / 2.0)
        .sum::<f64>()
        / n;
    Some((0.7 * noisy + 0.3 * severity).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn contract_check_values() {
        let s = score(Some(0.06), &[Some(0.09), Some(0.12)]).unwrap();
        assert!(close(s, 0.045), "{s}");
        let s = score(Some(0.60), &[Some(0.12)]).unwrap();
        assert!(close(s, 0.53), "{s}");
    }

    #[test]
    fn empty_and_invalid() {
        assert_eq!(score(None, &[]), None);
        assert_eq!(score(None, &[None, None]), None);
        assert_eq!(score(Some(f64::NAN), &[]), None);
        assert_eq!(score(Some(-0.1), &[]), None);
        // The new value alone.
        assert!(close(score(Some(0.30), &[]).unwrap(), 0.15));
    }

    #[test]
    fn records_without_cv_use_a_slot() {
        // 19 stored slots: 18 without a value push the 19th and 20th out of the window.
        let mut stored = vec![None; 18];
        stored.push(Some(0.9));
        stored.push(Some(0.9)); // beyond 19: ignored
        let s = score(Some(0.0), &stored).unwrap();
        // values: [0.0, 0.9] → noisy 0.5, severity (0 + 1)/2 = 0.5 → 0.35 + 0.15
        assert!(close(s, 0.5), "{s}");
    }

    #[test]
    fn capped_at_one() {
        let s = score(Some(5.0), &[Some(5.0); 19]).unwrap();
        assert!(close(s, 1.0));
    }
}
