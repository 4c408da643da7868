//! Percentiles and the small summaries printed for every delay distribution.

use serde::Serialize;

/// The `q`-quantile (0 ≤ q ≤ 1) of `sorted`, linearly interpolated between
/// the two nearest ranks (numpy's default), so p50 of an even count is the
/// mean of the middle pair. `None` for an empty slice.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = q.clamp(0.0, 1.0) * last as f64;
    let below = rank.floor() as usize;
    let above = rank.ceil() as usize;
    let weight = rank - below as f64;
    Some(sorted[below] + (sorted[above] - sorted[below]) * weight)
}

/// Count, median, 95th percentile and maximum of a set of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Distribution {
    pub count: usize,
    pub p50_seconds: f64,
    pub p95_seconds: f64,
    pub max_seconds: f64,
}

impl Distribution {
    /// `None` when there is nothing to summarise; NaNs are dropped first so
    /// one bad value cannot poison the ordering.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        Some(Self {
            count: sorted.len(),
            p50_seconds: percentile(&sorted, 0.50)?,
            p95_seconds: percentile(&sorted, 0.95)?,
            max_seconds: *sorted.last()?,
        })
    }
}

/// Mean and maximum of a series (CPU %), `None` when empty.
pub fn mean_and_max(values: &[f64]) -> Option<(f64, f64)> {
    let max = values.iter().copied().reduce(f64::max)?;
    Some((values.iter().sum::<f64>() / values.len() as f64, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_between_ranks() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), Some(2.5));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 1.0), Some(4.0));
        // rank 0.95 * 3 = 2.85 → 3 + 0.85 * (4 - 3)
        assert!((percentile(&v, 0.95).unwrap() - 3.85).abs() < 1e-12);
    }

    #[test]
    fn percentile_of_one_to_hundred() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&v, 0.95).unwrap() - 95.05).abs() < 1e-9);
        assert!((percentile(&v, 0.5).unwrap() - 50.5).abs() < 1e-9);
    }

    #[test]
    fn percentile_edge_cases() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7.0], 0.95), Some(7.0));
        assert_eq!(percentile(&[1.0, 3.0], 2.0), Some(3.0), "q is clamped to 1");
    }

    #[test]
    fn distribution_sorts_and_drops_nan() {
        let d = Distribution::of(&[3.0, f64::NAN, 1.0, 2.0]).unwrap();
        assert_eq!(d.count, 3);
        assert_eq!(d.p50_seconds, 2.0);
        assert_eq!(d.max_seconds, 3.0);
        assert!((d.p95_seconds - 2.9).abs() < 1e-12);
        assert_eq!(Distribution::of(&[]), None);
        assert_eq!(Distribution::of(&[f64::NAN]), None);
    }

    #[test]
    fn mean_and_max_of_series() {
        assert_eq!(mean_and_max(&[10.0, 30.0, 20.0]), Some((20.0, 30.0)));
        assert_eq!(mean_and_max(&[]), None);
    }
}
