//! Ranking, threshold and regression metrics, and the seeded bootstrap behind `emoarc eval`'s intervals.
//!
//! Every ranking metric has a weighted form: a bootstrap resample is a vector of row multiplicities, so one
//! pre-sorted order per category serves all resamples in O(n) each. The unweighted functions call the weighted
//! ones with weight 1, so the hand-checked unit tests cover both.

use rayon::prelude::*;

/// A small, fast, seedable generator (SplitMix64): the same seed gives the same stream on every platform.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose stream is fixed by `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 uniformly distributed bits of the stream.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift (bias below 2^-32 for the sizes used here).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// SplitMix64's finaliser: a fixed, well-mixed hash of a 64-bit value.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The fold (0 or 1) of row `i` for two-fold threshold selection: a fixed hash of the row index.
pub fn fold_of(i: usize) -> usize {
    (mix64(i as u64 ^ 0x5EED_F01D) & 1) as usize
}

/// Row indices sorted by score, ascending (ties in index order, so the order is deterministic).
pub fn ascending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    order
}

/// ROC-AUC over the rows of `order` (ascending by score; rows left out of `order` do not count), each row
/// counted `weights[i]` times (`None`: once). Ties count one half. `None` without both classes.
pub fn roc_auc_sorted(order: &[usize], scores: &[f64], labels: &[bool], weights: Option<&[u32]>) -> Option<f64> {
    let w = |i: usize| weights.map_or(1.0, |w| f64::from(w[i]));
    let (mut neg_below, mut num, mut pos_total) = (0.0, 0.0, 0.0);
    let mut k = 0;
    while k < order.len() {
        let s = scores[order[k]];
        let (mut gp, mut gn) = (0.0, 0.0);
        while k < order.len() && scores[order[k]] == s {
            let i = order[k];
            if labels[i] {
                gp += w(i);
            } else {
                gn += w(i);
            }
            k += 1;
        }
        num += gp * (neg_below + 0.5 * gn);
        neg_below += gn;
        pos_total += gp;
    }
    (pos_total > 0.0 && neg_below > 0.0).then(|| num / (pos_total * neg_below))
}

/// Average precision (the area under the precision-recall steps, ties taken as one step, as scikit-learn
/// computes it) over the rows of `order` (ascending by score), weighted as in [`roc_auc_sorted`]. `None`
/// without a positive.
///
/// A row counted `w` times that shares its score with no other row is taken as `w` items one after another,
/// not as `w` tied items: a bootstrap copy is another draw of a similar text, not a tie, and taking copies as
/// ties would give each the precision at the end of their group and bias AP upward.
pub fn average_precision_sorted(
    order: &[usize],
    scores: &[f64],
    labels: &[bool],
    weights: Option<&[u32]>,
) -> Option<f64> {
    let w = |i: usize| weights.map_or(1.0, |w| f64::from(w[i]));
    let pos_total: f64 = order.iter().filter(|&&i| labels[i]).map(|&i| w(i)).sum();
    if pos_total <= 0.0 {
        return None;
    }
    let (mut tp, mut fp, mut ap) = (0.0, 0.0, 0.0);
    let mut k = order.len();
    while k > 0 {
        let s = scores[order[k - 1]];
        let (mut gp, mut gn, mut rows) = (0.0, 0.0, 0);
        while k > 0 && scores[order[k - 1]] == s {
            let i = order[k - 1];
            if labels[i] {
                gp += w(i);
            } else {
                gn += w(i);
            }
            rows += 1;
            k -= 1;
        }
        if rows == 1 && gp > 1.0 {
            // One positive row counted several times: its copies one after another.
            for m in 1..=gp as u32 {
                ap += (tp + f64::from(m)) / (tp + fp + f64::from(m)) / pos_total;
            }
            tp += gp;
            continue;
        }
        tp += gp;
        fp += gn;
        if gp > 0.0 {
            ap += gp / pos_total * tp / (tp + fp);
        }
    }
    Some(ap)
}

/// ROC-AUC (the probability that a random positive scores above a random negative, ties one half).
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    roc_auc_sorted(&ascending(scores), scores, labels, None)
}

/// Average precision (see [`average_precision_sorted`]).
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    average_precision_sorted(&ascending(scores), scores, labels, None)
}

/// True positives, false positives and false negatives, weighted.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Confusion {
    /// Weight of rows predicted positive that are positive.
    pub tp: f64,
    /// Weight of rows predicted positive that are negative.
    pub fp: f64,
    /// Weight of rows predicted negative that are positive (`fn` is a keyword).
    pub fn_: f64,
}

impl Confusion {
    /// Counts one row with its bootstrap multiplicity `weight` (1 outside the bootstrap); a true negative
    /// counts nowhere, as F1 does not use it.
    pub fn add(&mut self, predicted: bool, actual: bool, weight: f64) {
        match (predicted, actual) {
            (true, true) => self.tp += weight,
            (true, false) => self.fp += weight,
            (false, true) => self.fn_ += weight,
            (false, false) => {}
        }
    }

    /// `2 TP / (2 TP + FP + FN)`; `None` when there is no positive (F1 is undefined).
    pub fn f1(&self) -> Option<f64> {
        (self.tp + self.fn_ > 0.0).then(|| 2.0 * self.tp / (2.0 * self.tp + self.fp + self.fn_))
    }
}

/// F1 of "score >= threshold" against the labels; `None` without a positive.
pub fn f1_at(scores: &[f64], labels: &[bool], threshold: f64) -> Option<f64> {
    let mut c = Confusion::default();
    for (&s, &l) in scores.iter().zip(labels) {
        c.add(s >= threshold, l, 1.0);
    }
    c.f1()
}

/// The threshold that maximises F1 of "score >= threshold" on these rows: the midpoint between the score that
/// does best as a cut and the next lower distinct score (so the same rows pass however close the next score
/// is), `-inf` when calling everything positive is best, `+inf` when there is no positive to find. Among equal
/// F1s the highest cut wins.
pub fn best_threshold(scores: &[f64], labels: &[bool]) -> f64 {
    let order = ascending(scores);
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    if positives == 0.0 {
        return f64::INFINITY;
    }
    let (mut tp, mut fp) = (0.0, 0.0);
    let (mut best_f1, mut best) = (-1.0, f64::INFINITY);
    let mut k = order.len();
    while k > 0 {
        let s = scores[order[k - 1]];
        while k > 0 && scores[order[k - 1]] == s {
            if labels[order[k - 1]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            k -= 1;
        }
        let f1 = 2.0 * tp / (2.0 * tp + fp + (positives - tp));
        if f1 > best_f1 {
            best_f1 = f1;
            best = if k == 0 { f64::NEG_INFINITY } else { (s + scores[order[k - 1]]) / 2.0 };
        }
    }
    best
}

/// Least-squares slope of `y` on `x`; `None` when `x` is constant or there are fewer than 2 points.
pub fn least_squares_slope(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() < 2 || x.len() != y.len() {
        return None;
    }
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Pearson's correlation with row weights (`None`: 1 each); `None` when either series is constant.
pub fn pearson_weighted(x: &[f64], y: &[f64], weights: Option<&[u32]>) -> Option<f64> {
    if x.len() != y.len() {
        return None;
    }
    let w = |i: usize| weights.map_or(1.0, |w| f64::from(w[i]));
    let n: f64 = (0..x.len()).map(w).sum();
    if n < 2.0 {
        return None;
    }
    let mx = (0..x.len()).map(|i| w(i) * x[i]).sum::<f64>() / n;
    let my = (0..x.len()).map(|i| w(i) * y[i]).sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..x.len() {
        let (dx, dy) = (x[i] - mx, y[i] - my);
        sxy += w(i) * dx * dy;
        sxx += w(i) * dx * dx;
        syy += w(i) * dy * dy;
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Mean of the values that exist; `None` when none does.
pub fn mean_of(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let (s, n) = values.into_iter().flatten().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| s / n as f64)
}

/// The bootstrap: `resamples` draws of `n` rows with replacement, each from its own seeded stream (so results
/// do not depend on thread count), and the 2.5th and 97.5th percentiles of a statistic over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bootstrap {
    /// How many resamples to draw (default 1,000); 0 turns intervals off.
    pub resamples: usize,
    /// The seed every resample's stream is derived from (default [`DEFAULT_BOOTSTRAP_SEED`]).
    pub seed: u64,
}

/// The fixed seed `emoarc eval` uses.
pub const DEFAULT_BOOTSTRAP_SEED: u64 = 20_240_611;

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            resamples: 1000,
            seed: DEFAULT_BOOTSTRAP_SEED,
        }
    }
}

impl Bootstrap {
    /// Row multiplicities of resample `b` over `n` rows (they sum to `n`).
    pub fn weights(&self, b: usize, n: usize) -> Vec<u32> {
        let mut rng = SplitMix64::new(self.seed ^ mix64(b as u64 + 1));
        let mut w = vec![0u32; n];
        for _ in 0..n {
            w[rng.below(n)] += 1;
        }
        w
    }

    /// The 95% percentile interval of `statistic` over the resamples of `n` rows; `None` when there are no
    /// resamples or fewer than half of them give a value.
    pub fn interval<F>(&self, n: usize, statistic: F) -> Option<[f64; 2]>
    where
        F: Fn(&[u32]) -> Option<f64> + Sync,
    {
        if self.resamples == 0 || n == 0 {
            return None;
        }
        let mut values: Vec<f64> = (0..self.resamples)
            .into_par_iter()
            .filter_map(|b| statistic(&self.weights(b, n)))
            .filter(|v| v.is_finite())
            .collect();
        if values.len() * 2 < self.resamples {
            return None;
        }
        values.sort_by(f64::total_cmp);
        Some([quantile(&values, 0.025), quantile(&values, 0.975)])
    }
}

/// Linear-interpolated quantile of sorted values (numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn auc_by_hand() {
        // Positives 0.9, 0.4; negatives 0.5, 0.1: pairs (0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1) = 3/4.
        let s = [0.9, 0.5, 0.4, 0.1];
        let l = [true, false, true, false];
        assert!(close(roc_auc(&s, &l).unwrap(), 0.75));
        // A tie between a positive and a negative counts one half: (1 + 0.5) / 2.
        assert!(close(roc_auc(&[0.8, 0.5, 0.5], &[true, true, false]).unwrap(), 0.75));
        // Perfect and reversed.
        assert!(close(roc_auc(&[3.0, 2.0, 1.0], &[true, false, false]).unwrap(), 1.0));
        assert!(close(roc_auc(&[1.0, 2.0, 3.0], &[true, false, false]).unwrap(), 0.0));
        // A constant score is chance.
        assert!(close(roc_auc(&[1.0; 4], &[true, false, true, false]).unwrap(), 0.5));
        assert_eq!(roc_auc(&[1.0, 2.0], &[true, true]), None);
    }

    #[test]
    fn auc_with_weights_equals_auc_of_the_repeated_rows() {
        // Copies are distinct items just below each other (for AP; AUC does not care).
        let s = [0.9, 0.5, 0.4, 0.1, 0.45];
        let l = [true, false, true, false, false];
        let w = [2u32, 0, 1, 3, 1];
        let mut rs = Vec::new();
        let mut rl = Vec::new();
        for i in 0..5 {
            for m in 0..w[i] {
                rs.push(s[i] - f64::from(m) * 1e-9);
                rl.push(l[i]);
            }
        }
        let order = ascending(&s);
        assert!(close(roc_auc_sorted(&order, &s, &l, Some(&w)).unwrap(), roc_auc(&rs, &rl).unwrap()));
        assert!(close(
            average_precision_sorted(&order, &s, &l, Some(&w)).unwrap(),
            average_precision(&rs, &rl).unwrap()
        ));
    }

    #[test]
    fn average_precision_by_hand() {
        // Ranked: 0.9 P, 0.5 N, 0.4 P, 0.1 N: precision at each positive 1/1 and 2/3; AP = (1 + 2/3) / 2.
        let s = [0.9, 0.5, 0.4, 0.1];
        let l = [true, false, true, false];
        assert!(close(average_precision(&s, &l).unwrap(), (1.0 + 2.0 / 3.0) / 2.0));
        // Tied scores form one step: all three at 0.5 with one positive: precision 1/3 at recall 1.
        assert!(close(average_precision(&[0.5, 0.5, 0.5], &[false, true, false]).unwrap(), 1.0 / 3.0));
        assert_eq!(average_precision(&[0.5], &[false]), None);
        // A positive counted twice at the top, then a negative, then a positive: items P P N P, precisions
        // 1, 1, 3/4 over 3 positives = (2 + 0.75) / 3 (as ties the first two would also get 1: same here);
        // and a positive counted twice below a negative: N P P, precisions 1/2, 2/3 (ties: 2/3, 2/3).
        let order = ascending(&[0.9, 0.5, 0.4]);
        let ap = average_precision_sorted(&order, &[0.9, 0.5, 0.4], &[true, false, true], Some(&[2, 1, 1])).unwrap();
        assert!(close(ap, (2.0 + 0.75) / 3.0));
        let ap = average_precision_sorted(&order, &[0.9, 0.5, 0.4], &[false, true, false], Some(&[1, 2, 0])).unwrap();
        assert!(close(ap, (0.5 + 2.0 / 3.0) / 2.0));
    }

    #[test]
    fn f1_and_threshold_by_hand() {
        let s = [0.9, 0.8, 0.6, 0.3, 0.2];
        let l = [true, false, true, true, false];
        // Cut at 0.5: predicted 0.9, 0.8, 0.6: TP 2, FP 1, FN 1 -> 4 / 6.
        assert!(close(f1_at(&s, &l, 0.5).unwrap(), 2.0 / 3.0));
        // Cuts: >=0.9 F1 2/4, >=0.8 2/5, >=0.6 4/6, >=0.3 6/7, >=0.2 6/8. Best: between 0.3 and 0.2.
        assert!(close(best_threshold(&s, &l), 0.25));
        assert!(close(f1_at(&s, &l, best_threshold(&s, &l)).unwrap(), 6.0 / 7.0));
        // Calling everything positive is best -> -inf; no positives -> +inf.
        assert_eq!(best_threshold(&[0.1, 0.2], &[true, true]), f64::NEG_INFINITY);
        assert_eq!(best_threshold(&[0.1, 0.2], &[false, false]), f64::INFINITY);
        assert_eq!(f1_at(&[0.1], &[false], 0.0), None);
        // Equal F1s: the higher cut wins (>= 0.9: TP 1, FN 1, F1 2/3; >= 0.6: TP 2, FP 2, F1 4/6).
        assert!(close(best_threshold(&[0.9, 0.8, 0.7, 0.6], &[true, false, false, true]), 0.85));
    }

    #[test]
    fn slope_and_weighted_pearson_by_hand() {
        // y = 2x + 1 exactly.
        assert!(close(least_squares_slope(&[0.0, 1.0, 2.0], &[1.0, 3.0, 5.0]).unwrap(), 2.0));
        // x = [0, 0, 1, 1], y = [0, 0.2, 0.5, 0.5]: slope = mean(y|1) - mean(y|0) = 0.5 - 0.1 = 0.4.
        assert!(close(least_squares_slope(&[0.0, 0.0, 1.0, 1.0], &[0.0, 0.2, 0.5, 0.5]).unwrap(), 0.4));
        assert_eq!(least_squares_slope(&[1.0, 1.0], &[0.0, 1.0]), None);
        // Weights 2,1,1 on x = [1,2,3], y = [2,4,7] equals the unweighted r of [1,1,2,3] vs [2,2,4,7].
        let a = pearson_weighted(&[1.0, 2.0, 3.0], &[2.0, 4.0, 7.0], Some(&[2, 1, 1])).unwrap();
        let b = pearson_weighted(&[1.0, 1.0, 2.0, 3.0], &[2.0, 2.0, 4.0, 7.0], None).unwrap();
        assert!(close(a, b));
        assert!((pearson_weighted(&[1.0, 2.0, 3.0], &[2.0, 4.0, 7.0], None).unwrap() - 0.993399).abs() < 1e-6);
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_mean() {
        let boot = Bootstrap { resamples: 1000, seed: 7 };
        let w = boot.weights(3, 50);
        assert_eq!(w.iter().sum::<u32>(), 50);
        assert_eq!(w, boot.weights(3, 50), "the same resample twice");
        assert_ne!(w, boot.weights(4, 50));
        // Mean of 0..100: 49.5; the standard error is 29.0 / 10 = 2.9, so the interval is about 49.5 +- 5.7.
        let x: Vec<f64> = (0..100).map(f64::from).collect();
        let mean = |w: &[u32]| Some(x.iter().zip(w).map(|(v, &k)| v * f64::from(k)).sum::<f64>() / 100.0);
        let [lo, hi] = boot.interval(100, mean).unwrap();
        assert!(lo < 49.5 && 49.5 < hi, "{lo} {hi}");
        assert!((hi - lo - 2.0 * 1.96 * 2.9).abs() < 2.0, "{lo} {hi}");
        assert_eq!(boot.interval(100, mean), Some([lo, hi]), "deterministic whatever the threads");
        // A statistic that never exists gives no interval.
        assert_eq!(boot.interval(100, |_| None), None);
        assert_eq!(Bootstrap { resamples: 0, seed: 1 }.interval(100, mean), None);
    }

    #[test]
    fn quantile_interpolates() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!(close(quantile(&v, 0.5), 3.0));
        assert!(close(quantile(&v, 0.25), 2.0));
        assert!(close(quantile(&v, 0.1), 1.4));
    }

    #[test]
    fn folds_split_rows_about_evenly() {
        let ones = (0..10_000).filter(|&i| fold_of(i) == 1).count();
        assert!((4800..5200).contains(&ones), "{ones}");
        assert_eq!(fold_of(17), fold_of(17));
    }
}
