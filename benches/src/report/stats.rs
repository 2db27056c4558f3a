//! Small statistics for the plots: quantiles, histogram binning, cosine similarity and the
//! strided subsampling that keeps heatmaps small.

/// The `q`-quantile (0..=1) of `sorted` (ascending), linearly interpolated between the
/// two nearest ranks (numpy's default). NaN for an empty slice.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    let h = q.clamp(0.0, 1.0) * last as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(last);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// `values` sorted ascending (NaNs last).
pub fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// Five-number summary and mean of a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Smallest value.
    pub min: f64,
    /// First quartile.
    pub q1: f64,
    /// Median.
    pub median: f64,
    /// Third quartile.
    pub q3: f64,
    /// Largest value.
    pub max: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Mean.
    pub mean: f64,
    /// Sample size.
    pub n: usize,
}

/// The summary of `values`, or `None` when empty.
pub fn summary(values: &[f64]) -> Option<Summary> {
    let s = sorted(values);
    let (&min, &max) = (s.first()?, s.last()?);
    Some(Summary {
        min,
        q1: quantile(&s, 0.25),
        median: quantile(&s, 0.5),
        q3: quantile(&s, 0.75),
        max,
        p99: quantile(&s, 0.99),
        mean: s.iter().sum::<f64>() / s.len() as f64,
        n: s.len(),
    })
}

/// Equal-width bins over `[lo, hi]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// Left edge of bin 0.
    pub lo: f64,
    /// Bin width.
    pub width: f64,
    /// Count per bin.
    pub counts: Vec<usize>,
    /// Values outside `[lo, hi]` (not counted in any bin).
    pub outside: usize,
}

impl Histogram {
    /// `bins` equal bins over `[lo, hi]`; bin `i` holds `lo + i w <= x < lo + (i+1) w`,
    /// the last bin also holds `x == hi`.
    pub fn new(values: &[f64], lo: f64, hi: f64, bins: usize) -> Self {
        let bins = bins.max(1);
        let width = if hi > lo {
            (hi - lo) / bins as f64
        } else {
            1.0
        };
        let mut counts = vec![0; bins];
        let mut outside = 0;
        for &x in values {
            if !(x >= lo && x <= hi) {
                outside += 1;
                continue;
            }
            let i = (((x - lo) / width) as usize).min(bins - 1);
            counts[i] += 1;
        }
        Self {
            lo,
            width,
            counts,
            outside,
        }
    }

    /// Left edge of bin `i`.
    pub fn edge(&self, i: usize) -> f64 {
        self.lo + i as f64 * self.width
    }
}

/// `(n, n)` cosine similarities of the rows of `m` (`(n, cols)`, row-major), in f64.
/// A zero row has similarity 0 with every row.
pub fn cosine_matrix(m: &[f32], cols: usize) -> Vec<f64> {
    let rows: Vec<&[f32]> = m.chunks_exact(cols.max(1)).collect();
    let norms: Vec<f64> = rows
        .iter()
        .map(|r| r.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt())
        .collect();
    let n = rows.len();
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let dot: f64 = rows[i]
                .iter()
                .zip(rows[j])
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum();
            let d = norms[i] * norms[j];
            out[i * n + j] = if d > 0.0 { dot / d } else { 0.0 };
        }
    }
    out
}

/// The indices `0, s, 2s, ...` below `n` with the smallest stride `s` that keeps at most
/// `max` of them.
pub fn strided(n: usize, max: usize) -> Vec<usize> {
    let stride = n.div_ceil(max.max(1)).max(1);
    (0..n).step_by(stride).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_ranks() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&s, 0.0), 1.0);
        assert_eq!(quantile(&s, 1.0), 4.0);
        assert_eq!(quantile(&s, 0.5), 2.5);
        assert!((quantile(&s, 0.25) - 1.75).abs() < 1e-12);
        assert_eq!(quantile(&[7.0], 0.9), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
        let m = summary(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!(
            (m.min, m.median, m.max, m.mean, m.n),
            (1.0, 3.0, 5.0, 3.0, 3)
        );
        assert_eq!((m.q1, m.q3), (2.0, 4.0));
        assert!(summary(&[]).is_none());
    }

    #[test]
    fn histogram_bins_are_half_open_with_a_closed_last_bin() {
        let h = Histogram::new(
            &[0.0, 0.99, 1.0, 2.5, 4.0, -0.1, 4.1, f64::NAN],
            0.0,
            4.0,
            4,
        );
        assert_eq!(h.counts, [2, 1, 1, 1]);
        assert_eq!(h.outside, 3);
        assert_eq!(h.edge(2), 2.0);
        assert_eq!(h.width, 1.0);
        // Degenerate range: everything equal to lo lands in bin 0.
        let d = Histogram::new(&[3.0, 3.0], 3.0, 3.0, 10);
        assert_eq!(d.counts[0], 2);
        assert_eq!(d.counts.iter().sum::<usize>(), 2);
    }

    #[test]
    fn cosine_matrix_of_known_rows() {
        // Rows: e0, e1, -e0, 2*(e0+e1), 0.
        let m = [1.0, 0.0, 0.0, 1.0, -1.0, 0.0, 2.0, 2.0, 0.0, 0.0];
        let c = cosine_matrix(&m, 2);
        let at = |i: usize, j: usize| c[i * 5 + j];
        assert!((at(0, 0) - 1.0).abs() < 1e-12);
        assert!(at(0, 1).abs() < 1e-12);
        assert!((at(0, 2) + 1.0).abs() < 1e-12);
        assert!((at(0, 3) - 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(at(3, 1), at(1, 3));
        assert_eq!(at(4, 0), 0.0);
        assert_eq!(at(4, 4), 0.0);
    }

    #[test]
    fn strided_keeps_at_most_max_indices() {
        assert_eq!(strided(4, 64), [0, 1, 2, 3]);
        assert_eq!(strided(10, 4), [0, 3, 6, 9]);
        assert_eq!(strided(256, 128).len(), 128);
        assert_eq!(strided(384, 128), (0..384).step_by(3).collect::<Vec<_>>());
        assert!(strided(0, 8).is_empty());
    }
}
