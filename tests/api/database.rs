//! The job table on the database under test (`WHOSPOKE_TEST_DATABASE`), through the library.

use whospoke::db::{Db, JobType, NewJob};

use crate::server;

/// sqlx 0.9.0 sent a NULL `f64` as PostgreSQL `float4` and cached the statement with it, so
/// a later job with a known duration could fail ("incorrect binary data format in bind
/// parameter 12"). One connection runs the same insert with every mix of nulls and values
/// of four nullable columns, forwards then backwards.
#[tokio::test]
async fn an_insert_takes_nulls_and_values_in_turn() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = server::test_database().unwrap_or_else(|| Db::default_url(dir.path()));
    let db = Db::connect(&url).await.expect("the test database");
    let user_id = db.create_user(0).await.expect("a user");
    for (round, mix) in (0..16).chain((0..16).rev()).enumerate() {
        let has = |bit: u32| mix & (1 << bit) != 0;
        let job = NewJob {
            user_id: user_id.clone(),
            job_type: JobType::Extraction,
            task_id: format!("task-{round}"),
            filename: "meeting.wav".into(),
            source_url: has(0).then(|| "https://example.com/meeting.wav".into()),
            input_key: None,
            num_speakers: has(1).then_some(2),
            min_speakers: None,
            max_speakers: None,
            duration_seconds: has(2).then_some(12.5),
            credits: 0,
            webhook_url: has(3).then(|| "https://example.com/hook".into()),
            exclusive: has(1),
        };
        let inserted = db
            .insert_job(&job)
            .await
            .unwrap_or_else(|e| panic!("insert {round} (null mix {mix:04b}): {e}"));
        assert_eq!(inserted.source_url, job.source_url);
        assert_eq!(inserted.num_speakers, job.num_speakers);
        assert_eq!(inserted.duration_seconds, job.duration_seconds);
        assert_eq!(inserted.webhook_url, job.webhook_url);
        assert_eq!(inserted.exclusive, job.exclusive);
    }
}
