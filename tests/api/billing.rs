//! Billing follows the audio processed: a file whose header understates its
//! length is charged for what was decoded, or fails unpaid with no output.

use std::process::Command;

use crate::audio::{credits_for, sample_path, sample_seconds};
use crate::checks::completed_job;
use crate::client::{Submission, expect_json, job_id};
use crate::server::Server;

/// What the lying header claims.
const STATED_SECONDS: f64 = 2.0;

/// The sample as FLAC whose STREAMINFO says it holds [`STATED_SECONDS`].
/// Symphonia decodes FLAC frames to the end of the file whatever the header
/// says (a WAV's data size, by contrast, does end its audio).
fn lying_flac() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("lying.flac");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-i"])
        .arg(sample_path())
        .arg(&path)
        .status()
        .expect("ffmpeg must be installed to make the fixture");
    assert!(status.success(), "ffmpeg could not make the FLAC");
    let mut bytes = std::fs::read(&path).expect("read the FLAC");
    assert_eq!(&bytes[..4], b"fLaC", "a FLAC stream");
    // STREAMINFO is the first block (data at byte 8): 20 bits of sample rate
    // at byte 18, then 3 of channels, 5 of bit depth, 36 of total samples.
    let rate =
        (u32::from(bytes[18]) << 12) | (u32::from(bytes[19]) << 4) | u32::from(bytes[20] >> 4);
    let stated = (STATED_SECONDS * f64::from(rate)) as u64;
    bytes[21] = (bytes[21] & 0xf0) | ((stated >> 32) as u8 & 0x0f);
    bytes[22..26].copy_from_slice(&(stated as u32).to_be_bytes());
    bytes
}

#[tokio::test]
async fn a_header_that_understates_the_length_is_charged_for_the_decoded_audio() {
    let server = Server::start(&[]);
    let flac = lying_flac();
    let seconds = sample_seconds();

    let payer = server.create_user(1_000_000);
    let response = Submission::extract()
        .file("lying.flac", flac.clone())
        .send(&server, &payer)
        .await;
    let created = expect_json(response, 200, "upload of the lying FLAC").await;
    let reserved_for = created["duration_seconds"].as_f64().unwrap_or_default();
    assert!(
        reserved_for < seconds / 4.0,
        "submit prices the file from its header ({reserved_for} s): {created:#}"
    );
    let outputs = completed_job(&server, &payer, job_id(&created), "extraction", seconds).await;
    assert_eq!(
        outputs.credits_used,
        credits_for(seconds),
        "charged for the {seconds} s decoded"
    );
    assert_eq!(
        server.balance(&payer).await,
        1_000_000 - credits_for(seconds),
        "the balance pays for the decoded audio"
    );

    // Enough for the reservation, not for the audio.
    let granted = credits_for(seconds / 3.0);
    let short = server.create_user(granted as u64);
    let response = Submission::extract()
        .file("lying.flac", flac)
        .send(&server, &short)
        .await;
    let created = expect_json(response, 200, "upload of the lying FLAC").await;
    let id = job_id(&created);
    let job = server.wait_for_status(&short, id, "FAILED").await;
    let message = job["error_message"].as_str().unwrap_or_default();
    let expected = format!(
        "the audio is {seconds:.1} s long but your balance covers {:.1} s",
        granted as f64 / 27.5
    );
    assert!(
        message.contains(&expected) && message.contains("header said"),
        "the failure says what the audio needs and what the balance covers: {job:#}"
    );
    assert_eq!(job["credits_used"], 0, "nothing charged: {job:#}");
    assert!(job["result"].is_null(), "no result: {job:#}");
    assert!(
        job["outputFiles"].as_array().is_none_or(Vec::is_empty),
        "no download links: {job:#}"
    );
    assert_eq!(
        server.balance(&short).await,
        granted,
        "the balance is intact"
    );
    let outputs = server.data_dir().join(format!("objects/jobs/{id}"));
    assert!(
        !outputs.exists() || std::fs::read_dir(&outputs).unwrap().next().is_none(),
        "no output kept in {}",
        outputs.display()
    );
}
