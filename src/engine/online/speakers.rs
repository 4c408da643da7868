//! Rolling speaker centroids of a live run.
//!
//! A centroid is the sum of a speaker's reliable embeddings, so it steadies as
//! the speaker talks. Two centroids that drift together are one speaker said
//! twice; the later one is merged into the earlier.

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

use crate::engine::embedding::{EMBEDDING_DIM, Embedding, add, distance, normalised};

pub(super) struct Candidate {
    pub embedding: Embedding,
    /// Long clean speech: may open a speaker and move a centroid.
    pub reliable: bool,
    /// The speaker this voice was following, if any.
    pub current: Option<usize>,
    /// Speakers this voice cannot be: other voices heard with it have them.
    pub held: Vec<usize>,
    /// Its first frames are about to be decided: it gets a speaker now.
    pub due: bool,
}

pub(super) struct Speakers {
    sums: Vec<Embedding>,
    /// Reliable embeddings in each sum; 0 for a tentative speaker.
    reliable: Vec<u32>,
    /// Where a merged speaker went; `None` for live speakers.
    merged_into: Vec<Option<usize>>,
    max_speakers: usize,
    new_speaker_distance: f32,
    assign_distance: f32,
    merge_distance: f32,
}

/// What an assignment changed besides the labels.
#[derive(Default)]
pub(super) struct Changes {
    pub new_speakers: usize,
    pub merges: Vec<(usize, usize)>,
}

impl Speakers {
    pub(super) fn new(params: &super::OnlineParams) -> Self {
        Self {
            sums: Vec::new(),
            reliable: Vec::new(),
            merged_into: Vec::new(),
            max_speakers: params.max_speakers.max(1),
            new_speaker_distance: params.new_speaker_distance,
            assign_distance: params.assign_distance,
            merge_distance: params.merge_distance,
        }
    }

    /// A speaker's current identity, following merges.
    pub(super) fn resolve(&self, mut k: usize) -> usize {
        while let Some(to) = self.merged_into[k] {
            k = to;
        }
        k
    }

    fn live(&self) -> Vec<usize> {
        (0..self.sums.len())
            .filter(|&k| self.merged_into[k].is_none())
            .collect()
    }

    /// Assigns the voices of one window, all to different speakers (they were
    /// heard apart) and none to a speaker it `held` (a voice heard with it has
    /// it). A voice far from every speaker opens one; opened by a short
    /// voice, it is tentative until a reliable embedding confirms it.
    pub(super) fn assign(&mut self, candidates: &[Candidate]) -> (Vec<Option<usize>>, Changes) {
        let mut changes = Changes::default();
        let mut chosen = vec![None; candidates.len()];
        if candidates.is_empty() {
            return (chosen, changes);
        }
        let live = self.live();
        let centroids: Vec<Embedding> = live.iter().map(|&k| unit(&self.sums[k])).collect();
        // Columns: live speakers, then one "new speaker" slot per voice. A voice
        // already followed gets a small bonus to keep its speaker (hysteresis).
        const SCALE: f32 = 1e6;
        const KEEP_BONUS: f32 = 0.05;
        const FORBIDDEN: f32 = 100.0;
        let weights = Matrix::from_fn(candidates.len(), live.len() + candidates.len(), |(r, c)| {
            let candidate = &candidates[r];
            let score = match centroids.get(c) {
                Some(_) if candidate.held.contains(&live[c]) => -FORBIDDEN,
                Some(centroid) => {
                    let bonus = if candidate.current == Some(live[c]) {
                        KEEP_BONUS
                    } else {
                        0.0
                    };
                    bonus - distance(&candidate.embedding, centroid)
                }
                None => -self.new_speaker_distance,
            };
            (score * SCALE) as i64
        });
        let (_, columns) = kuhn_munkres(&weights);
        for (r, &c) in columns.iter().enumerate() {
            let candidate = &candidates[r];
            let k = if c < live.len() {
                // A short new voice only joins a speaker it clearly sounds like.
                let near = distance(&candidate.embedding, &centroids[c]) < self.assign_distance;
                if !candidate.reliable && !near && candidate.current.is_none() && !candidate.due {
                    continue;
                }
                live[c]
            } else if self.live().len() < self.max_speakers {
                self.sums.push([0.0; EMBEDDING_DIM]);
                self.reliable.push(0);
                self.merged_into.push(None);
                changes.new_speakers += 1;
                self.sums.len() - 1
            } else {
                // No room for another speaker: the nearest one takes the voice.
                let nearest = (0..live.len())
                    .filter(|&n| !candidate.held.contains(&live[n]))
                    .min_by(|&a, &b| {
                        distance(&candidate.embedding, &centroids[a])
                            .total_cmp(&distance(&candidate.embedding, &centroids[b]))
                    });
                match nearest {
                    Some(n) => live[n],
                    None => continue,
                }
            };
            if candidate.reliable {
                // A tentative speaker whose voice proves to be a known one was that one.
                if let Some(current) = candidate
                    .current
                    .filter(|&c| c != k && self.is_tentative(c) && !self.is_tentative(k))
                {
                    changes.merges.push((current, k));
                    self.absorb(current, k);
                }
                add(&mut self.sums[k], &candidate.embedding);
                self.reliable[k] += 1;
                changes.merges.extend(self.merge_near(k));
            } else if self.sums[k].iter().all(|&x| x == 0.0) {
                self.sums[k] = candidate.embedding;
            }
            chosen[r] = Some(self.resolve(k));
        }
        (chosen, changes)
    }

    /// At the end: a speaker never confirmed by a reliable embedding joins its
    /// nearest confirmed speaker, and one heard too little to stand alone
    /// (`talk_seconds` per speaker) joins it when within `new_speaker_distance`,
    /// as the offline clustering does with small clusters.
    pub(super) fn absorb_tentative(&mut self, talk_seconds: &[f64]) -> Vec<(usize, usize)> {
        let weak = |k: usize| {
            self.reliable[k] < MIN_RELIABLE
                && talk_seconds.get(k).copied().unwrap_or(0.0) < MIN_TALK_SECONDS
        };
        let mut confirmed: Vec<usize> = self
            .live()
            .into_iter()
            .filter(|&k| !self.is_tentative(k))
            .collect();
        if confirmed.iter().any(|&k| !weak(k)) {
            confirmed.retain(|&k| !weak(k));
        }
        let mut merges = Vec::new();
        for k in self.live() {
            if confirmed.contains(&k) {
                continue;
            }
            let me = unit(&self.sums[k]);
            let nearest = confirmed.iter().copied().min_by(|&a, &b| {
                distance(&me, &unit(&self.sums[a])).total_cmp(&distance(&me, &unit(&self.sums[b])))
            });
            let near = |to: usize| distance(&me, &unit(&self.sums[to])) < self.new_speaker_distance;
            if let Some(to) = nearest.filter(|&to| self.is_tentative(k) || near(to)) {
                self.absorb(k, to);
                merges.push((k, to));
            }
        }
        merges
    }

    fn is_tentative(&self, k: usize) -> bool {
        self.reliable[k] == 0
    }

    /// Speaker `gone` is `keep` from now on.
    fn absorb(&mut self, gone: usize, keep: usize) {
        if !self.is_tentative(gone) {
            let gone_sum = self.sums[gone];
            add(&mut self.sums[keep], &gone_sum);
        }
        self.reliable[keep] += self.reliable[gone];
        self.merged_into[gone] = Some(keep);
    }

    /// Merges every live speaker within `merge_distance` of `k` into the older one.
    fn merge_near(&mut self, k: usize) -> Vec<(usize, usize)> {
        let mut merges = Vec::new();
        let mut k = k;
        loop {
            let me = unit(&self.sums[k]);
            let near = self
                .live()
                .into_iter()
                .find(|&j| j != k && distance(&me, &unit(&self.sums[j])) < self.merge_distance);
            let Some(j) = near else {
                return merges;
            };
            let (keep, gone) = (j.min(k), j.max(k));
            self.absorb(gone, keep);
            merges.push((gone, keep));
            k = keep;
        }
    }
}

/// At the end, a speaker with fewer reliable embeddings and less speech than
/// these is too little heard to be told from a near speaker.
const MIN_RELIABLE: u32 = 2;
const MIN_TALK_SECONDS: f64 = 3.0;

fn unit(v: &Embedding) -> Embedding {
    normalised(*v).unwrap_or([0.0; EMBEDDING_DIM])
}
