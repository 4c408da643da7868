//! S3-compatible storage is configuration: the same server with `--storage-url s3://…`
//! keeps every job file in a bucket (moto's S3 server, from the project venv), serves
//! the downloads from there and deletes them with the job.

use crate::audio::{self, sample_frames, sample_seconds};
use crate::checks::{check_downloads, completed_job};
use crate::client::Submission;
use crate::s3::{BUCKET, S3Server};
use crate::server::Server;

const PREFIX: &str = "tenant-a";

#[tokio::test]
async fn job_files_live_in_s3_compatible_storage_when_configured() {
    let s3 = S3Server::start().await;
    let storage_url = format!("s3://{BUCKET}/{PREFIX}");
    let server = Server::start_with(true, &["--storage-url", &storage_url], &s3.env());
    let user = server.create_user(1_000_000);

    let id = Submission::extract()
        .file("sample.wav", audio::sample_bytes())
        .submit(&server, &user)
        .await;
    let outputs = completed_job(&server, &user, id, "extraction", sample_seconds()).await;
    check_downloads(&server, &outputs, sample_frames()).await;

    let keys = s3.keys().await;
    let expected = [
        format!("{PREFIX}/jobs/{id}/speaker_0.wav"),
        format!("{PREFIX}/jobs/{id}/speaker_1.wav"),
        format!("{PREFIX}/jobs/{id}/sample.rttm"),
    ];
    for key in &expected {
        assert!(
            keys.contains(key),
            "{key} should be in the bucket: {keys:?}"
        );
    }
    assert!(
        keys.iter().any(
            |key| key.starts_with(&format!("{PREFIX}/inputs/")) && key.ends_with("/sample.wav")
        ),
        "the upload is kept in the bucket too: {keys:?}"
    );
    assert!(
        !server.data_dir().join("objects").exists(),
        "nothing goes to the local object folder when S3 is configured"
    );

    let deleted = server
        .delete(&format!("/api/v1/speaker/jobs/{id}"))
        .header("X-API-Key", &user.key)
        .send()
        .await
        .expect("DELETE the job");
    assert_eq!(deleted.status().as_u16(), 204, "DELETE a completed job");
    let left = s3.keys().await;
    assert!(
        left.is_empty(),
        "deleting the job empties the bucket: {left:?}"
    );
}
