//! Small statistics shared by the data checks ([`crate::data`]) and the evaluation ([`crate::eval`]): ranks
//! with averaged ties, Pearson's and Spearman's correlations. Kept apart so that neither of those modules
//! depends on the other for them.

/// Ranks with ties given their average rank (1-based), as Spearman's coefficient needs.
pub fn ranks(xs: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut out = vec![0.0; xs.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && xs[order[j + 1]] == xs[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = avg;
        }
        i = j + 1;
    }
    out
}

fn pearson64(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    if x.len() < 2 || x.len() != y.len() {
        return None;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None; // a constant series has no correlation
    }
    Some(sxy / (sxx * syy).sqrt())
}

/// Pearson's correlation; `None` when either series is constant or shorter than 2.
pub fn pearson(x: &[f32], y: &[f32]) -> Option<f64> {
    let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let y: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
    pearson64(&x, &y)
}

/// Spearman's rank correlation (Pearson on tie-averaged ranks); `None` when either series is constant.
pub fn spearman(x: &[f32], y: &[f32]) -> Option<f64> {
    pearson64(&ranks(x), &ranks(y))
}
