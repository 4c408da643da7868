//! The cluster's database costs: how fast workers claim jobs, and what the
//! shared rate limiter adds to a request.
//!   cargo run --release --example cluster_bench -- DATABASE_URL [JOBS [WORKERS]]
//! DATABASE_URL should be an empty Postgres database (`scripts/bench_cluster.sh`
//! makes one); defaults: 2000 jobs, 8 workers. The in-memory limiter that a
//! single SQLite node uses is measured alongside, in the same run.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use whospoke::db::{Db, JobType, Lease, NewJob};
use whospoke::server::rate_limit::RateLimits;

const LIMIT_CHECKS: usize = 4000;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(url) = args.first() else {
        eprintln!("usage: cluster_bench DATABASE_URL [JOBS [WORKERS]]");
        std::process::exit(2);
    };
    let jobs: usize = args.get(1).map_or(2000, |n| n.parse().expect("JOBS"));
    let workers: usize = args.get(2).map_or(8, |n| n.parse().expect("WORKERS"));
    let db = Db::connect(url).await.expect("connect");
    println!("database: {:?}", db.backend());
    claims(&db, jobs, workers).await;

    let per_minute = NonZeroU32::new(u32::MAX).expect("non-zero");
    let shared = RateLimits::new(&db, per_minute);
    let scratch = tempfile_dir();
    let local_db = Db::connect(&Db::default_url(&scratch))
        .await
        .expect("sqlite");
    let local = RateLimits::new(&local_db, per_minute);
    println!("\nrate limiter, {LIMIT_CHECKS} checks of one key, one at a time:");
    let in_memory = limiter_latency(&local).await;
    let in_database = limiter_latency(&shared).await;
    print_latency("in memory (one node, SQLite)", &in_memory);
    print_latency("shared (Postgres)", &in_database);
    println!(
        "added per request by the shared limiter: p50 {:.3} ms, p95 {:.3} ms",
        ms(in_database[in_database.len() / 2]) - ms(in_memory[in_memory.len() / 2]),
        ms(percentile(&in_database, 0.95)) - ms(percentile(&in_memory, 0.95)),
    );
    let _ = std::fs::remove_dir_all(scratch);
}

/// Queues `count` jobs, then `workers` tasks claim and complete them as fast
/// as they can; checks each was claimed exactly once.
async fn claims(db: &Db, count: usize, workers: usize) {
    let user = db.create_user(0).await.expect("user");
    for i in 0..count {
        let job = NewJob {
            user_id: user.clone(),
            job_type: JobType::Diarization,
            task_id: format!("bench-{i}"),
            filename: "bench.wav".into(),
            source_url: None,
            input_key: None,
            num_speakers: None,
            min_speakers: None,
            max_speakers: None,
            duration_seconds: Some(1.0),
            credits: 0,
            webhook_url: None,
            exclusive: false,
        };
        db.insert_job(&job).await.expect("insert");
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let db = db.clone();
            tokio::spawn(async move {
                let lease = Lease {
                    node_id: format!("bench-{w}"),
                    seconds: 60,
                };
                let mut claimed = Vec::new();
                while let Some(job) = db.claim_next_job(&lease).await.expect("claim") {
                    assert!(
                        db.complete_job(&job, "{}", 1.0, 0).await.expect("complete"),
                        "a claimed job must complete"
                    );
                    claimed.push(job.id);
                }
                claimed
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut per_worker = Vec::new();
    for task in tasks {
        let claimed = task.await.expect("worker");
        per_worker.push(claimed.len());
        for id in claimed {
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(seen.len(), count, "every job is claimed once");
    println!(
        "job claims: {count} jobs, {workers} concurrent workers: {:.0} claims/s \
         (claim + complete, {elapsed:.2} s; per worker {per_worker:?})",
        count as f64 / elapsed
    );
}

async fn limiter_latency(limits: &RateLimits) -> Vec<Duration> {
    let mut times = Vec::with_capacity(LIMIT_CHECKS);
    for _ in 0..LIMIT_CHECKS {
        let started = Instant::now();
        assert!(limits.check("bench GET /api/v1/credits").await.is_ok());
        times.push(started.elapsed());
    }
    times.sort();
    times
}

fn print_latency(name: &str, sorted: &[Duration]) {
    println!(
        "  {name}: p50 {:.3} ms, p95 {:.3} ms, p99 {:.3} ms",
        ms(sorted[sorted.len() / 2]),
        ms(percentile(sorted, 0.95)),
        ms(percentile(sorted, 0.99)),
    );
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cluster-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}
