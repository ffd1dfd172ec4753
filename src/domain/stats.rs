//! Pure statistics used by the CI gate: robust location and scale, distribution functions (always from
//! `statrs`, never hand-written), Benjamini–Hochberg q-values, empirical-Bayes variance shrinkage and
//! precision weighting. No I/O, no panics: non-finite inputs are skipped or mapped to a documented value.

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Consistency factor that turns a MAD into an SD estimate for normal data (1 / Φ⁻¹(0.75)).
pub const MAD_TO_SD: f64 = 1.4826;

/// Points further than this many scaled MADs from the median are rejected before taking an SD: far enough
/// that clean normal data loses nothing measurable, close enough that a 1.5–3× outlier run cannot inflate
/// the scale that decides at p ≈ 10⁻³.
pub const REJECT_SCALED_MADS: f64 = 4.0;

/// Above this many degrees of freedom the t distribution is indistinguishable from the normal, and
/// statrs' t is slower and less accurate in the far tail there.
const T_DF_AS_NORMAL: f64 = 1e7;

/// Finite values only, sorted. Every estimator goes through here, so NaN and ±∞ never reach a comparison
/// and the result does not depend on the input order.
fn sorted_finite(xs: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

fn median_of_sorted(v: &[f64]) -> Option<f64> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    if n % 2 == 1 {
        Some(v[mid])
    } else {
        Some(0.5 * (v[mid - 1] + v[mid]))
    }
}

/// Median of the finite values; `None` when there are none.
pub fn median(xs: &[f64]) -> Option<f64> {
    median_of_sorted(&sorted_finite(xs))
}

/// Median absolute deviation from the median (unscaled); `None` when there are no finite values.
pub fn mad(xs: &[f64]) -> Option<f64> {
    let center = median(xs)?;
    let dev: Vec<f64> = xs.iter().map(|x| (x - center).abs()).collect();
    median(&dev)
}

/// MAD scaled to estimate the SD of normal data.
pub fn scaled_mad(xs: &[f64]) -> Option<f64> {
    mad(xs).map(|m| MAD_TO_SD * m)
}

/// Sample standard deviation (n − 1 denominator) of the finite values; `None` below two values.
pub fn sample_sd(xs: &[f64]) -> Option<f64> {
    let v = sorted_finite(xs);
    if v.len() < 2 {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let ss: f64 = v.iter().map(|x| (x - mean) * (x - mean)).sum();
    Some((ss / (n - 1.0)).sqrt())
}

/// Result of [`robust_sd`]: the scale and how many points it rests on (degrees of freedom = `kept − 1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RobustScale {
    pub sd: f64,
    pub kept: usize,
}

/// SD of the points within 4 scaled MADs of the median.
///
/// `min_scale` floors the scaled MAD used for the cut: quantised data (integer milliseconds) often has a
/// MAD of zero, and a zero cut would reject every point off the median and report a spread of zero.
/// `None` when fewer than two points survive.
pub fn robust_sd(xs: &[f64], min_scale: f64) -> Option<RobustScale> {
    let v = sorted_finite(xs);
    let center = median_of_sorted(&v)?;
    let floor = if min_scale.is_finite() {
        min_scale.max(0.0)
    } else {
        0.0
    };
    let cut = REJECT_SCALED_MADS * scaled_mad(&v).unwrap_or(0.0).max(floor);
    let kept: Vec<f64> = v
        .into_iter()
        .filter(|x| (x - center).abs() <= cut)
        .collect();
    let sd = sample_sd(&kept)?;
    Some(RobustScale {
        sd,
        kept: kept.len(),
    })
}

fn std_normal() -> Normal {
    Normal::standard()
}

/// Standard normal CDF Φ(x).
pub fn normal_cdf(x: f64) -> f64 {
    if let Some(edge) = tail_edge(x) {
        return edge;
    }
    std_normal().cdf(x)
}

/// Standard normal quantile Φ⁻¹(p); p is clamped to [0, 1] (NaN stays NaN).
pub fn normal_quantile(p: f64) -> f64 {
    std_normal().inverse_cdf(p.clamp(0.0, 1.0))
}

/// Student t with `df` degrees of freedom, or `None` when the normal should be used instead (huge or
/// infinite df). `df` below 1 is raised to 1: fewer is not a distribution the gate ever means.
fn students_t(df: f64) -> Option<StudentsT> {
    if df.is_nan() || df >= T_DF_AS_NORMAL {
        return None;
    }
    StudentsT::new(0.0, 1.0, df.max(1.0)).ok()
}

/// Handles the cases statrs must never see: its t CDF panics on NaN (beta_reg unwraps an error).
fn tail_edge(x: f64) -> Option<f64> {
    if x.is_nan() {
        Some(f64::NAN)
    } else if x == f64::INFINITY {
        Some(1.0)
    } else if x == f64::NEG_INFINITY {
        Some(0.0)
    } else {
        None
    }
}

/// CDF of Student's t with `df` degrees of freedom (normal for df ≥ 10⁷ or NaN df).
pub fn t_cdf(x: f64, df: f64) -> f64 {
    if let Some(edge) = tail_edge(x) {
        return edge;
    }
    match students_t(df) {
        Some(t) => t.cdf(x),
        None => normal_cdf(x),
    }
}

/// Upper tail P(T > x); computed directly rather than 1 − cdf so tiny p-values keep their precision.
pub fn t_sf(x: f64, df: f64) -> f64 {
    if let Some(edge) = tail_edge(x) {
        return 1.0 - edge;
    }
    match students_t(df) {
        Some(t) => t.sf(x),
        None => std_normal().sf(x),
    }
}

/// Quantile of Student's t with `df` degrees of freedom; p is clamped to [0, 1].
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if p.is_nan() {
        return f64::NAN;
    }
    let p = p.clamp(0.0, 1.0);
    match students_t(df) {
        Some(t) => t.inverse_cdf(p),
        None => normal_quantile(p),
    }
}

/// Benjamini–Hochberg adjusted p-values (q-values), step-up and monotone, in the input order.
///
/// q₍ᵢ₎ = min over j ≥ i of p₍ⱼ₎·m/j, capped at 1. NaN p-values count as 1 (they still count in m, so a
/// broken benchmark cannot make the others look more significant).
pub fn bh_qvalues(ps: &[f64]) -> Vec<f64> {
    let m = ps.len();
    let clean: Vec<f64> = ps
        .iter()
        .map(|&p| if p.is_nan() { 1.0 } else { p.clamp(0.0, 1.0) })
        .collect();
    let mut order: Vec<usize> = (0..m).collect();
    // Ties broken by index so the result never depends on the sort's stability.
    order.sort_by(|&a, &b| clean[a].total_cmp(&clean[b]).then(a.cmp(&b)));
    let mut q = vec![1.0; m];
    let mut running = 1.0_f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        let adjusted = clean[i] * m as f64 / (rank + 1) as f64;
        running = running.min(adjusted).min(1.0);
        q[i] = running;
    }
    q
}

/// Empirical-Bayes posterior variance (Smyth 2004, limma `squeezeVar`):
/// s²_post = (d·s² + d0·s0²)/(d + d0). With no degrees of freedom at all the prior is returned, and a
/// non-finite s² is replaced by the prior, so a benchmark with a broken history still gets a usable scale.
pub fn squeeze_var(s2: f64, d: f64, s0_2: f64, d0: f64) -> f64 {
    let d = if d.is_finite() { d.max(0.0) } else { 0.0 };
    let d0 = if d0.is_finite() { d0.max(0.0) } else { 0.0 };
    if !s2.is_finite() || d + d0 <= 0.0 {
        return s0_2;
    }
    (d * s2 + d0 * s0_2) / (d + d0)
}

/// Precision-weighted mean of `(estimate, variance)` pairs: weights 1/variance. Pairs with a non-finite
/// estimate or a variance that is not finite and positive are ignored. Returns `(mean, variance)`.
pub fn precision_weighted(pairs: &[(f64, f64)]) -> Option<(f64, f64)> {
    let mut sum_w = 0.0;
    let mut sum_wx = 0.0;
    for &(x, var) in pairs {
        if x.is_finite() && var.is_finite() && var > 0.0 {
            sum_w += 1.0 / var;
            sum_wx += x / var;
        }
    }
    if sum_w > 0.0 && sum_w.is_finite() {
        Some((sum_wx / sum_w, 1.0 / sum_w))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn median_and_mad() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 1.0, f64::INFINITY]), Some(1.0));
        // |x − 3| = 2,1,0,1,6 → MAD 1.
        assert_eq!(mad(&[1.0, 2.0, 3.0, 4.0, 9.0]), Some(1.0));
        assert!(close(
            scaled_mad(&[1.0, 2.0, 3.0, 4.0, 9.0]).unwrap(),
            1.4826,
            1e-12
        ));
    }

    #[test]
    fn robust_sd_rejects_outliers_and_survives_zero_mad() {
        let mut xs = vec![10.0, 10.1, 9.9, 10.2, 9.8, 10.0, 10.05, 9.95];
        let clean = robust_sd(&xs, 0.0).unwrap();
        xs.push(30.0);
        let with_outlier = robust_sd(&xs, 0.0).unwrap();
        assert_eq!(with_outlier.kept, 8);
        assert!(close(clean.sd, with_outlier.sd, 1e-12));
        // MAD = 0: without a floor every off-median point would go.
        let quantised = [10.0, 10.0, 10.0, 10.0, 10.0, 11.0, 9.0];
        assert_eq!(
            robust_sd(&quantised, 0.0),
            Some(RobustScale { sd: 0.0, kept: 5 })
        );
        assert_eq!(robust_sd(&quantised, 0.5).unwrap().kept, 7);
        assert_eq!(robust_sd(&[], 1.0), None);
    }

    #[test]
    fn distribution_reference_values() {
        assert!(close(normal_quantile(0.975), 1.959963985, 1e-8));
        assert!(close(normal_cdf(1.959963985), 0.975, 1e-9));
        assert!(close(t_quantile(0.975, 10.0), 2.228138852, 1e-7));
        assert!(close(t_cdf(2.228138852, 10.0), 0.975, 1e-8));
        // t(30) upper 0.001 point is 3.385479; sf must agree with 1 − cdf there.
        assert!(close(t_sf(3.385479, 30.0), 0.001, 1e-6));
        assert!(close(t_sf(1.959963985, f64::INFINITY), 0.025, 1e-9));
        // Edge inputs that statrs would panic on or mishandle.
        assert!(t_sf(f64::NAN, 5.0).is_nan() && t_cdf(f64::NAN, 5.0).is_nan());
        assert!(t_quantile(f64::NAN, 5.0).is_nan() && normal_cdf(f64::NAN).is_nan());
        assert_eq!(
            (t_sf(f64::INFINITY, 5.0), t_cdf(f64::NEG_INFINITY, 5.0)),
            (0.0, 0.0)
        );
        assert_eq!(t_sf(3.0, f64::NAN), std_normal().sf(3.0));
        assert!(t_sf(2.0, 0.0).is_finite() && t_sf(40.0, 1e6).is_finite());
        assert!(t_quantile(0.0, 5.0) == f64::NEG_INFINITY && t_quantile(1.0, 5.0) == f64::INFINITY);
    }

    #[test]
    fn bh_textbook_example() {
        // Benjamini & Hochberg (1995), the 15 p-values of their example; q-values as given by R's
        // p.adjust(p, "BH").
        let p = [
            0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262,
            0.5719, 0.6528, 0.7590, 1.0000,
        ];
        let expected = [
            0.0015, 0.0030, 0.0095, 0.035625, 0.0603, 0.0638571, 0.0638571, 0.0645, 0.0765, 0.486,
            0.5811818, 0.714875, 0.7532308, 0.8132143, 1.0,
        ];
        let q = bh_qvalues(&p);
        for (qi, ei) in q.iter().zip(expected.iter()) {
            assert!(close(*qi, *ei, 1e-6), "{qi} vs {ei}");
        }
        // Input order must not matter.
        let mut rev = p;
        rev.reverse();
        let mut qr = bh_qvalues(&rev);
        qr.reverse();
        assert_eq!(q, qr);
        assert!(bh_qvalues(&[]).is_empty());
        assert_eq!(bh_qvalues(&[f64::NAN, 0.01]), vec![1.0, 0.02]);
    }

    #[test]
    fn squeeze_and_weights() {
        assert!(close(squeeze_var(4.0, 10.0, 1.0, 20.0), 2.0, 1e-12));
        assert_eq!(squeeze_var(f64::NAN, 10.0, 1.0, 20.0), 1.0);
        assert_eq!(squeeze_var(3.0, 0.0, 1.0, 0.0), 1.0);
        let (m, v) =
            precision_weighted(&[(1.0, 1.0), (3.0, 1.0), (f64::NAN, 1.0), (9.0, 0.0)]).unwrap();
        assert!(close(m, 2.0, 1e-12) && close(v, 0.5, 1e-12));
        assert_eq!(precision_weighted(&[]), None);
    }
}
