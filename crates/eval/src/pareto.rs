//! The cost/quality Pareto frontier.

use crate::cascade::SimResult;

/// Indices of the non-dominated points, sorted by cost (ascending; quality then rises).
///
/// A point is dominated when another costs no more and is at least as good, and is
/// strictly better on one of the two. Of several identical (cost, quality) points only
/// the first is kept. Points with a NaN coordinate are ignored.
pub fn pareto_front<T>(points: &[T], cost: impl Fn(&T) -> f64, quality: impl Fn(&T) -> f64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len())
        .filter(|&i| !cost(&points[i]).is_nan() && !quality(&points[i]).is_nan())
        .collect();
    // Cheapest first; at equal cost the best first; at a full tie the earliest first.
    order.sort_by(|&a, &b| {
        cost(&points[a])
            .total_cmp(&cost(&points[b]))
            .then(quality(&points[b]).total_cmp(&quality(&points[a])))
            .then(a.cmp(&b))
    });
    let mut front = Vec::new();
    let mut best = f64::NEG_INFINITY;
    for i in order {
        let q = quality(&points[i]);
        if q > best {
            front.push(i);
            best = q;
        }
    }
    front
}

/// [`pareto_front`] of simulation results on (cost per 1k, mean quality).
pub fn pareto_results(points: &[SimResult]) -> Vec<usize> {
    pareto_front(points, |p| p.cost_per_1k, |p| p.quality.mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_front() {
        // (cost, quality)
        let pts = [
            (1.0, 0.5),
            (2.0, 0.7),
            (2.0, 0.6),
            (3.0, 0.65),
            (0.5, 0.4),
            (4.0, 0.9),
            (5.0, 0.9),
            (4.0, 0.9),
            (f64::NAN, 1.0),
        ];
        let f = pareto_front(&pts, |p| p.0, |p| p.1);
        assert_eq!(f, [4, 0, 1, 5]);
        assert!(pareto_front::<(f64, f64)>(&[], |p| p.0, |p| p.1).is_empty());
        // A single dominant point is the whole front.
        assert_eq!(pareto_front(&[(2.0, 0.5), (1.0, 0.9)], |p| p.0, |p| p.1), [1]);
    }
}
