//! Agglomerative clustering of unit vectors, linked by the direction of
//! each cluster's centroid.
//!
//! Each cluster keeps its nearest neighbour, so a merge costs O(n·d) plus a
//! full rescan only for the clusters whose neighbour was merged away. That
//! keeps memory linear, where a distance matrix would be quadratic.

use super::super::embedding::{Embedding, add, distance, normalised};

/// One merge of the dendrogram: cluster `from` joined cluster `into`.
#[derive(Debug, Clone, Copy)]
pub struct Merge {
    pub into: usize,
    pub from: usize,
    /// Euclidean distance between the two centroids, at unit length, when they merged.
    pub distance: f32,
}

/// Merges all `points` (unit vectors) into one cluster and returns the merges
/// in order. Cluster `i` starts as point `i` and keeps the lower index.
pub fn dendrogram(points: &[Embedding]) -> Vec<Merge> {
    let n = points.len();
    let mut sums: Vec<Embedding> = points.to_vec();
    // Clusters are linked by the directions of their sums. The plain means
    // would shrink towards the origin as a cluster grows and its members
    // scatter (a far talker's do), pulling large clusters of different voices together.
    let mut directions: Vec<Embedding> = points.to_vec();
    let mut alive = vec![true; n];
    let mut nearest: Vec<(usize, f32)> = (0..n)
        .map(|i| scan_nearest(i, &directions, &alive))
        .collect();
    let mut merges = Vec::with_capacity(n.saturating_sub(1));

    for _ in 1..n {
        let Some((a, (b, gap))) = (0..n)
            .filter(|&i| alive[i])
            .map(|i| (i, nearest[i]))
            .min_by(|x, y| x.1.1.total_cmp(&y.1.1))
        else {
            break;
        };
        let (into, from) = (a.min(b), a.max(b));
        merges.push(Merge {
            into,
            from,
            distance: gap,
        });
        let from_sum = sums[from];
        add(&mut sums[into], &from_sum);
        directions[into] = normalised(sums[into]).unwrap_or(sums[into]);
        alive[from] = false;

        for k in 0..n {
            if !alive[k] || k == into {
                continue;
            }
            if nearest[k].0 == into || nearest[k].0 == from {
                nearest[k] = scan_nearest(k, &directions, &alive);
            } else {
                let d = distance(&directions[k], &directions[into]);
                if d < nearest[k].1 {
                    nearest[k] = (into, d);
                }
            }
        }
        nearest[into] = scan_nearest(into, &directions, &alive);
    }
    merges
}

fn scan_nearest(i: usize, directions: &[Embedding], alive: &[bool]) -> (usize, f32) {
    (0..directions.len())
        .filter(|&j| j != i && alive[j])
        .map(|j| (j, distance(&directions[i], &directions[j])))
        .min_by(|x, y| x.1.total_cmp(&y.1))
        .unwrap_or((i, f32::INFINITY))
}

/// Cluster of every point after the first `steps` merges, as the index of the
/// cluster's lowest point.
pub fn labels_after(merges: &[Merge], num_points: usize, steps: usize) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..num_points).collect();
    for m in &merges[..steps.min(merges.len())] {
        parent[m.from] = m.into;
    }
    (0..num_points)
        .map(|mut i| {
            while parent[i] != i {
                i = parent[i];
            }
            i
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::embedding::EMBEDDING_DIM;

    fn unit(axis: usize, wobble: f32) -> [f32; EMBEDDING_DIM] {
        let mut v = [0.0; EMBEDDING_DIM];
        v[axis] = 1.0;
        v[(axis + 1) % EMBEDDING_DIM] = wobble;
        normalised(v).expect("a non-zero vector")
    }

    #[test]
    fn merges_near_points_first() {
        let points = [unit(0, 0.0), unit(5, 0.0), unit(0, 0.1), unit(5, 0.1)];
        let merges = dendrogram(&points);
        assert_eq!(merges.len(), 3);
        assert!(merges[0].distance < 0.2 && merges[1].distance < 0.2);
        assert!(merges[2].distance > 1.0);
        let labels = labels_after(&merges, points.len(), 2);
        assert_eq!(labels[0], labels[2]);
        assert_eq!(labels[1], labels[3]);
        assert_ne!(labels[0], labels[1]);
    }

    #[test]
    fn scattered_voices_stay_apart() {
        // Six points per voice, each leaning far into a direction of its own:
        // the plain means shrink to 0.92 apart, the voices' directions stay √2 apart.
        let scattered = |axis: usize, lean: usize| {
            let mut v = [0.0; EMBEDDING_DIM];
            v[axis] = 1.0;
            v[lean] = 1.5;
            normalised(v).expect("a non-zero vector")
        };
        let points: Vec<_> = (0..6)
            .map(|i| scattered(0, 20 + i))
            .chain((0..6).map(|i| scattered(10, 40 + i)))
            .collect();
        let merges = dendrogram(&points);
        let last = merges.last().expect("merges");
        assert!(last.distance > 1.0, "{}", last.distance);
        let labels = labels_after(&merges, points.len(), merges.len() - 1);
        assert!(labels[..6].iter().all(|&l| l == labels[0]));
        assert!(labels[6..].iter().all(|&l| l == labels[6]));
        assert_ne!(labels[0], labels[6]);
    }
}
