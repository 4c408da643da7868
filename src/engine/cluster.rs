//! Local speakers of all windows → global speakers.
//!
//! Agglomerative clustering runs on the embeddings of local speakers with
//! enough clean speech. Small clusters close to a large one are dropped, the
//! rest become centroids, refined by k-means steps, and every local speaker is
//! then assigned to a centroid group by group, with cannot-link between the
//! local speakers of one group: the local speakers of a window heard together
//! (two voices heard at once are two people; two heard one after the other
//! may be one). Last, close speakers that no group holds together merge.

mod ahc;

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

use super::SpeakerCount;
use super::embedding::{EMBEDDING_DIM, Embedding, add, distance, normalised};

/// A local speaker to cluster.
#[derive(Debug, Clone)]
pub struct LocalSpeaker {
    /// Local speakers of one group were heard together (see the module doc);
    /// a group's members are consecutive.
    pub group: usize,
    /// L2-normalised embedding.
    pub embedding: Embedding,
    /// Whether its embedding is clean enough to shape the clusters.
    pub reliable: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct ClusterParams {
    /// Centroids closer than this (Euclidean, at unit length) merge.
    pub threshold: f32,
    /// Clusters with fewer reliable members are not speakers of their own…
    pub min_cluster_size: usize,
    /// …unless they are farther than this from every larger cluster: a voice
    /// heard little but clearly someone else's (the live run's rule for weak
    /// speakers, with its `new_speaker_distance`).
    pub distinct_distance: f32,
    /// Small clusters kept for being distinct merge with one another up to
    /// this distance: a far, reverberant talker's embeddings scatter into
    /// several lone clusters, all far from the main voices.
    pub lone_merge_distance: f32,
    /// Speakers never heard at the same time merge up to this distance (with
    /// an automatic count): a far or noisy talker's embeddings spread wider
    /// than `threshold`, while two people in a conversation overlap now and then.
    pub apart_merge_distance: f32,
}

/// The global speaker (centroid index) of each local speaker.
pub fn assign(speakers: &[LocalSpeaker], count: SpeakerCount, params: ClusterParams) -> Vec<usize> {
    let reliable: Vec<&LocalSpeaker> = speakers.iter().filter(|s| s.reliable).collect();
    let training: Vec<&LocalSpeaker> = if reliable.is_empty() {
        speakers.iter().collect()
    } else {
        reliable
    };
    if training.is_empty() {
        return Vec::new();
    }
    let points: Vec<Embedding> = training.iter().map(|s| s.embedding).collect();
    let centroids = refined(&points, centroids(&points, count, params));
    let mut labels = assign_to_centroids(speakers, &centroids);
    if let SpeakerCount::Auto { min, .. } = count {
        let floor = min.unwrap_or(1).max(1);
        merge_never_together(speakers, &mut labels, params.apart_merge_distance, floor);
    }
    labels
}

fn centroids(points: &[Embedding], count: SpeakerCount, params: ClusterParams) -> Vec<Embedding> {
    let merges = ahc::dendrogram(points);
    let n = points.len();
    let steps = merges
        .iter()
        .position(|m| m.distance > params.threshold)
        .unwrap_or(merges.len());
    let clusters = clusters_after(&merges, points, steps);

    // A small cluster far from every large one is a voice heard little, not
    // a stray embedding of a known voice.
    let large_centroids: Vec<Embedding> = clusters
        .iter()
        .filter(|c| c.size >= params.min_cluster_size)
        .map(Cluster::centre)
        .collect();
    let is_speaker = |c: &Cluster| {
        c.size >= params.min_cluster_size || {
            let me = c.centre();
            large_centroids
                .iter()
                .all(|o| distance(&me, o) > params.distinct_distance)
        }
    };
    let (lone, mut clusters): (Vec<Cluster>, Vec<Cluster>) = clusters
        .into_iter()
        .partition(|c| c.size < params.min_cluster_size && is_speaker(c));
    clusters.extend(merge_lone(lone, params.lone_merge_distance));
    let large = clusters.iter().filter(|c| is_speaker(c)).count();
    let wanted = match count {
        SpeakerCount::Exact(k) => Some(k),
        SpeakerCount::Auto { min, max } => {
            let floor = min.unwrap_or(1).max(1);
            let ceiling = max.unwrap_or(usize::MAX);
            (large < floor || large > ceiling).then(|| large.clamp(floor, ceiling))
        }
    };
    let chosen = match wanted {
        None if large == 0 => largest(clusters, 1),
        None => clusters.into_iter().filter(|c| is_speaker(c)).collect(),
        Some(k) => {
            // The most merged point of the dendrogram that still has k large
            // clusters; with too few points, the point with k clusters at all.
            let step = last_step_with(&merges, n, k, params.min_cluster_size)
                .unwrap_or_else(|| n.saturating_sub(k).min(merges.len()));
            largest(clusters_after(&merges, points, step), k)
        }
    };
    chosen.iter().map(Cluster::centre).collect()
}

struct Cluster {
    sum: Embedding,
    size: usize,
}

impl Cluster {
    /// The sum at unit length (a zero or non-finite sum stays as it is).
    fn centre(&self) -> Embedding {
        normalised(self.sum).unwrap_or(self.sum)
    }
}

fn clusters_after(merges: &[ahc::Merge], points: &[Embedding], steps: usize) -> Vec<Cluster> {
    let labels = ahc::labels_after(merges, points.len(), steps);
    let mut clusters: Vec<Option<Cluster>> = (0..points.len()).map(|_| None).collect();
    for (point, &label) in points.iter().zip(&labels) {
        let c = clusters[label].get_or_insert(Cluster {
            sum: [0.0; EMBEDDING_DIM],
            size: 0,
        });
        add(&mut c.sum, point);
        c.size += 1;
    }
    clusters.into_iter().flatten().collect()
}

/// Lone clusters joined by centroid linkage up to `threshold`.
fn merge_lone(lone: Vec<Cluster>, threshold: f32) -> Vec<Cluster> {
    let centres: Vec<Embedding> = lone.iter().map(Cluster::centre).collect();
    let merges = ahc::dendrogram(&centres);
    let steps = merges
        .iter()
        .position(|m| m.distance > threshold)
        .unwrap_or(merges.len());
    let labels = ahc::labels_after(&merges, lone.len(), steps);
    let mut merged: Vec<Option<Cluster>> = (0..lone.len()).map(|_| None).collect();
    for (c, &label) in lone.into_iter().zip(&labels) {
        match &mut merged[label] {
            Some(m) => {
                add(&mut m.sum, &c.sum);
                m.size += c.size;
            }
            slot => *slot = Some(c),
        }
    }
    merged.into_iter().flatten().collect()
}

fn largest(mut clusters: Vec<Cluster>, k: usize) -> Vec<Cluster> {
    clusters.sort_by_key(|c| std::cmp::Reverse(c.size));
    clusters.truncate(k);
    clusters
}

fn last_step_with(merges: &[ahc::Merge], n: usize, k: usize, min_size: usize) -> Option<usize> {
    let mut sizes = vec![1usize; n];
    let is_large = |s: usize| usize::from(s >= min_size);
    let mut large: usize = sizes.iter().map(|&s| is_large(s)).sum();
    let mut best = (large >= k).then_some(0);
    for (step, m) in merges.iter().enumerate() {
        large -= is_large(sizes[m.into]) + is_large(sizes[m.from]);
        sizes[m.into] += sizes[m.from];
        large += is_large(sizes[m.into]);
        if large >= k {
            best = Some(step + 1);
        }
    }
    best
}

/// At most this many k-means steps after the clustering.
const REFINE_STEPS: usize = 10;

/// K-means steps from the clustering's centroids until no centroid moves: a
/// centroid then sums the points nearest it rather than those merged into it,
/// which early merges and the dropped or folded small clusters skew. A
/// centroid no point is nearest keeps its place, so the count stays.
fn refined(points: &[Embedding], mut centroids: Vec<Embedding>) -> Vec<Embedding> {
    for _ in 0..REFINE_STEPS {
        let mut sums = vec![[0.0; EMBEDDING_DIM]; centroids.len()];
        for p in points {
            let nearest = (0..centroids.len())
                .max_by(|&a, &b| cosine(p, &centroids[a]).total_cmp(&cosine(p, &centroids[b])));
            if let Some(k) = nearest {
                add(&mut sums[k], p);
            }
        }
        let next: Vec<Embedding> = sums
            .into_iter()
            .zip(&centroids)
            .map(|(sum, &old)| normalised(sum).unwrap_or(old))
            .collect();
        if next == centroids {
            break;
        }
        centroids = next;
    }
    centroids
}

fn cosine(a: &Embedding, b: &Embedding) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Hungarian assignment of each group's local speakers to distinct centroids;
/// a group with more local speakers than centroids gives the rest their
/// nearest centroid.
fn assign_to_centroids(speakers: &[LocalSpeaker], centroids: &[Embedding]) -> Vec<usize> {
    const SCALE: f32 = 1e6;
    let mut labels = vec![0; speakers.len()];
    let mut start = 0;
    while start < speakers.len() {
        let group = speakers[start].group;
        let end = start
            + speakers[start..]
                .iter()
                .take_while(|s| s.group == group)
                .count();
        let group = &speakers[start..end];
        let nearest = |s: &LocalSpeaker| {
            (0..centroids.len())
                .max_by(|&a, &b| {
                    cosine(&s.embedding, &centroids[a])
                        .total_cmp(&cosine(&s.embedding, &centroids[b]))
                })
                .unwrap_or(0)
        };
        if group.len() <= centroids.len() {
            let weights = Matrix::from_fn(group.len(), centroids.len(), |(r, c)| {
                (cosine(&group[r].embedding, &centroids[c]) * SCALE) as i64
            });
            let (_, columns) = kuhn_munkres(&weights);
            labels[start..end].copy_from_slice(&columns);
        } else {
            for (label, s) in labels[start..end].iter_mut().zip(group) {
                *label = nearest(s);
            }
        }
        start = end;
    }
    labels
}

/// A speaker's voice for `merge_never_together`: its centroid comes from its
/// reliable members when it has any.
struct Voice {
    reliable: Embedding,
    all: Embedding,
    has_reliable: bool,
}

impl Voice {
    fn centre(&self) -> Embedding {
        let sum = if self.has_reliable {
            self.reliable
        } else {
            self.all
        };
        normalised(sum).unwrap_or(sum)
    }

    fn absorb(&mut self, other: &Voice) {
        add(&mut self.reliable, &other.reliable);
        add(&mut self.all, &other.all);
        self.has_reliable |= other.has_reliable;
    }
}

/// Merges, closest first, the speakers closer than `limit` that no group
/// holds together, down to `floor` speakers; labels come back as 0..count.
fn merge_never_together(speakers: &[LocalSpeaker], labels: &mut [usize], limit: f32, floor: usize) {
    let count = labels.iter().max().map_or(0, |&m| m + 1);
    let mut voices: Vec<Voice> = (0..count)
        .map(|_| Voice {
            reliable: [0.0; EMBEDDING_DIM],
            all: [0.0; EMBEDDING_DIM],
            has_reliable: false,
        })
        .collect();
    for (s, &label) in speakers.iter().zip(labels.iter()) {
        let v = &mut voices[label];
        add(&mut v.all, &s.embedding);
        if s.reliable {
            add(&mut v.reliable, &s.embedding);
            v.has_reliable = true;
        }
    }
    let mut together = vec![vec![false; count]; count];
    let members: Vec<(usize, usize)> = speakers
        .iter()
        .zip(labels.iter())
        .map(|(s, &l)| (s.group, l))
        .collect();
    for group in members.chunk_by(|a, b| a.0 == b.0) {
        for &(_, a) in group {
            for &(_, b) in group {
                together[a][b] |= a != b;
            }
        }
    }

    let mut alive: Vec<usize> = (0..count).filter(|&l| labels.contains(&l)).collect();
    let mut into: Vec<usize> = (0..count).collect();
    let mut centres: Vec<Embedding> = voices.iter().map(Voice::centre).collect();
    while alive.len() > floor {
        let closest = alive
            .iter()
            .flat_map(|&a| alive.iter().map(move |&b| (a, b)))
            .filter(|&(a, b)| a < b && !together[a][b])
            .map(|(a, b)| (distance(&centres[a], &centres[b]), a, b))
            .filter(|&(d, _, _)| d < limit)
            .min_by(|x, y| x.0.total_cmp(&y.0));
        let Some((_, a, b)) = closest else { break };
        let (head, tail) = voices.split_at_mut(b);
        head[a].absorb(&tail[0]);
        centres[a] = head[a].centre();
        let heard_with_b = together[b].clone();
        for (x, &heard) in heard_with_b.iter().enumerate() {
            together[a][x] |= heard;
            together[x][a] |= heard;
        }
        into[b] = a;
        alive.retain(|&l| l != b);
    }

    let root = |mut l: usize| {
        while into[l] != l {
            l = into[l];
        }
        l
    };
    for label in labels.iter_mut() {
        *label = alive.binary_search(&root(*label)).unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speaker(group: usize, axis: usize, wobble: f32) -> LocalSpeaker {
        let mut e = [0.0; EMBEDDING_DIM];
        e[axis] = 1.0;
        e[axis + 1] = wobble;
        LocalSpeaker {
            group,
            embedding: normalised(e).expect("a non-zero vector"),
            reliable: true,
        }
    }

    const PARAMS: ClusterParams = ClusterParams {
        threshold: 0.8,
        min_cluster_size: 1,
        distinct_distance: 1.15,
        lone_merge_distance: 1.0,
        apart_merge_distance: 1.0,
    };

    #[test]
    fn two_voices_two_speakers() {
        let speakers = [
            speaker(0, 0, 0.1),
            speaker(0, 10, 0.0),
            speaker(1, 0, 0.2),
            speaker(2, 10, 0.3),
        ];
        let labels = assign(&speakers, SpeakerCount::default(), PARAMS);
        assert_eq!(labels[0], labels[2]);
        assert_eq!(labels[1], labels[3]);
        assert_ne!(labels[0], labels[1]);
    }

    #[test]
    fn cannot_link_keeps_one_window_apart() {
        // Both local speakers of window 0 look like speaker A, but they were heard at once.
        let speakers = [speaker(0, 0, 0.0), speaker(0, 0, 0.3), speaker(1, 20, 0.0)];
        let labels = assign(&speakers, SpeakerCount::Exact(2), PARAMS);
        assert_ne!(labels[0], labels[1]);
    }

    #[test]
    fn a_voice_heard_once_is_a_speaker_when_unlike_the_others() {
        let params = ClusterParams {
            min_cluster_size: 2,
            ..PARAMS
        };
        let mut speakers: Vec<LocalSpeaker> =
            (0..6).map(|i| speaker(i, (i % 2) * 20, 0.1)).collect();
        // Heard in one window only: near speaker A (distance 0.2), then far from everyone.
        speakers.push(speaker(6, 0, 0.3));
        let labels = assign(&speakers, SpeakerCount::default(), params);
        assert_eq!(labels.iter().max(), Some(&1), "a stray of A is A");
        speakers[6] = speaker(6, 40, 0.0);
        let labels = assign(&speakers, SpeakerCount::default(), params);
        assert_eq!(labels[6], 2, "a distinct voice is its own speaker");
    }

    #[test]
    fn a_scattered_voice_heard_little_is_one_speaker() {
        let params = ClusterParams {
            min_cluster_size: 2,
            ..PARAMS
        };
        let mut speakers: Vec<LocalSpeaker> =
            (0..6).map(|i| speaker(i, (i % 2) * 20, 0.1)).collect();
        // Three lone points far from A and B, 0.9 apart: one far talker.
        for i in 0..3 {
            let mut s = speaker(6 + i, 40, 0.0);
            s.embedding[41 + i] = 0.825;
            s.embedding = normalised(s.embedding).expect("a non-zero vector");
            speakers.push(s);
        }
        let labels = assign(&speakers, SpeakerCount::default(), params);
        assert_eq!(labels[6], labels[7]);
        assert_eq!(labels[6], labels[8]);
        assert_eq!(labels.iter().max(), Some(&2));
    }

    #[test]
    fn refined_centroids_follow_their_nearest_points() {
        let unit = |axis: usize, wobble: f32| speaker(0, axis, wobble).embedding;
        let points = [unit(0, 0.1), unit(0, 0.2), unit(10, 0.1), unit(10, 0.2)];
        // The second centroid leans towards the first voice (as after an early wrong merge).
        let mut leaning = unit(10, 0.0);
        leaning[0] = 0.8;
        let leaning = normalised(leaning).expect("a non-zero vector");
        let unused = unit(20, 0.0);
        let centroids = refined(&points, vec![unit(0, 0.0), leaning, unused]);
        let mean = normalised(std::array::from_fn(|i| points[2][i] + points[3][i]))
            .expect("a non-zero vector");
        assert!(distance(&centroids[1], &mean) < 1e-5);
        assert_eq!(centroids[2], unused, "a centroid without points stays");
    }

    /// Six local speakers of voice A (axis 0) and six of A' (0.9 from A,
    /// beyond the clustering threshold 0.8), one per group.
    fn a_voice_and_its_far_echo() -> Vec<LocalSpeaker> {
        (0..12)
            .map(|i| {
                let mut s = speaker(i, 0, 0.0);
                if i % 2 == 1 {
                    // 2·sin(θ/2) = 0.9 at tan θ = 1.35.
                    s.embedding[1] = 1.35;
                    s.embedding = normalised(s.embedding).expect("a non-zero vector");
                }
                s
            })
            .collect()
    }

    #[test]
    fn close_voices_never_heard_together_are_one_speaker() {
        let speakers = a_voice_and_its_far_echo();
        let apart = ClusterParams {
            apart_merge_distance: 0.8,
            ..PARAMS
        };
        let labels = assign(&speakers, SpeakerCount::default(), apart);
        assert_ne!(labels[0], labels[1], "0.9 apart is beyond both limits");
        let labels = assign(&speakers, SpeakerCount::default(), PARAMS);
        assert!(labels.iter().all(|&l| l == 0), "{labels:?}");
        let labels = assign(&speakers, SpeakerCount::Exact(2), PARAMS);
        assert_ne!(labels[0], labels[1], "an exact count is kept");
    }

    #[test]
    fn close_voices_heard_together_stay_two_speakers() {
        let mut speakers = a_voice_and_its_far_echo();
        // One window hears both at once.
        speakers[1].group = 0;
        for s in &mut speakers[2..] {
            s.group -= 1;
        }
        let labels = assign(&speakers, SpeakerCount::default(), PARAMS);
        assert_ne!(labels[0], labels[1]);
        assert_eq!(labels.iter().max(), Some(&1));
    }

    #[test]
    fn exact_count_is_honoured() {
        let speakers: Vec<LocalSpeaker> = (0..12).map(|i| speaker(i, (i % 3) * 20, 0.0)).collect();
        for k in 1..=3 {
            let labels = assign(&speakers, SpeakerCount::Exact(k), PARAMS);
            let distinct: std::collections::BTreeSet<usize> = labels.iter().copied().collect();
            assert_eq!(distinct.len(), k);
        }
        let labels = assign(
            &speakers,
            SpeakerCount::Auto {
                min: None,
                max: Some(2),
            },
            PARAMS,
        );
        assert_eq!(
            labels
                .iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            2
        );
    }
}
