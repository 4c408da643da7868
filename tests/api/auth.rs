//! Authentication (API keys, HS256 and RS256 JWTs, the SDK's double header) and isolation
//! between users.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::RequestBuilder;
use serde_json::json;

use crate::audio;
use crate::client::{Submission, WithKey, expect_detail, expect_json, job_id};
use crate::jobs::failed_upload;
use crate::server::{Server, User};

const HS256_SECRET: &str = "whospoke-test-secret-that-is-long-enough-for-hs256";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

fn token(algorithm: Algorithm, key: &EncodingKey, sub: &str, exp: Option<u64>) -> String {
    let claims = match exp {
        Some(exp) => json!({"sub": sub, "exp": exp, "iat": now()}),
        None => json!({"sub": sub, "iat": now()}),
    };
    encode(&Header::new(algorithm), &claims, key).expect("sign a JWT")
}

fn hs256(secret: &str, sub: &str, exp: Option<u64>) -> String {
    token(
        Algorithm::HS256,
        &EncodingKey::from_secret(secret.as_bytes()),
        sub,
        exp,
    )
}

/// A good token lives ten minutes; an expired one died an hour ago (well past any leeway).
fn valid() -> Option<u64> {
    Some(now() + 600)
}

fn expired() -> Option<u64> {
    Some(now() - 3600)
}

/// `GET /api/v1/credits` with the given credentials must be 200 for `user`.
async fn expect_accepted(request: RequestBuilder, user: &User, what: &str) {
    let body = expect_json(request.send().await, 200, what).await;
    assert_eq!(
        body["user_id"],
        user.id.as_str(),
        "{what}: authenticated as the wrong user: {body}"
    );
}

/// ... must be 401 `{detail}`.
async fn expect_unauthorized(request: RequestBuilder, what: &str) {
    expect_detail(request.send().await, 401, what).await;
}

fn bearer(request: RequestBuilder, token: &str) -> RequestBuilder {
    request.header("Authorization", format!("Bearer {token}"))
}

#[tokio::test]
async fn missing_or_wrong_api_keys_get_401_on_every_endpoint() {
    let server = Server::start(&[]);
    let user = server.create_user(100_000);
    let wrong = User {
        id: user.id.clone(),
        key: format!("{}x", user.key),
    };
    let unprefixed = User {
        id: user.id.clone(),
        key: user.key.trim_start_matches("ap_").to_string(),
    };

    let gets = [
        "/api/v1/credits",
        "/api/v1/speaker/jobs",
        "/api/v1/jobs/1",
        "/api/v1/speaker/jobs/1",
    ];
    for path in gets {
        expect_unauthorized(server.get(path), &format!("GET {path} without credentials")).await;
        for (label, bad) in [("a wrong key", &wrong), ("a key without ap_", &unprefixed)] {
            expect_unauthorized(
                server.get(path).with_key(bad),
                &format!("GET {path} with {label}"),
            )
            .await;
        }
        expect_unauthorized(
            bearer(server.get(path), "not-a-jwt"),
            &format!("GET {path} with Bearer garbage"),
        )
        .await;
    }
    let upload = Submission::extract().file("sample.wav", audio::sample_bytes());
    expect_unauthorized(upload.request(&server), "POST extract without credentials").await;
    expect_unauthorized(
        upload.request(&server).with_key(&wrong),
        "POST extract, wrong key",
    )
    .await;
    expect_unauthorized(
        server.post("/api/v1/speaker/jobs/1/retry"),
        "POST retry, no credentials",
    )
    .await;
    expect_unauthorized(
        server.delete("/api/v1/speaker/jobs/1"),
        "DELETE without credentials",
    )
    .await;

    let listing = server.list(&user, "").await;
    assert_eq!(
        listing["total"], 0,
        "rejected uploads create no job: {listing}"
    );
    expect_accepted(
        server.get("/api/v1/credits").with_key(&user),
        &user,
        "X-API-Key",
    )
    .await;
    expect_accepted(
        bearer(server.get("/api/v1/credits"), &user.key),
        &user,
        "Authorization: Bearer ap_... alone",
    )
    .await;
}

#[tokio::test]
async fn the_sdks_double_header_is_accepted() {
    let server = Server::start(&["--jwt-hs256-secret", HS256_SECRET]);
    let user = server.create_user(100_000);
    let credits = || server.get("/api/v1/credits").with_key(&user);

    // audiopod 2.12.0 sends `Authorization: Bearer <key>` and `X-API-Key: <key>`.
    expect_accepted(
        bearer(credits(), &user.key),
        &user,
        "X-API-Key + Bearer same key",
    )
    .await;
    expect_accepted(
        bearer(credits(), "not.a.jwt"),
        &user,
        "X-API-Key + Bearer garbage",
    )
    .await;
    let expired_jwt = hs256(HS256_SECRET, &user.id, expired());
    expect_accepted(
        bearer(credits(), &expired_jwt),
        &user,
        "X-API-Key + expired JWT",
    )
    .await;
}

#[tokio::test]
async fn hs256_jwts_are_verified() {
    let server = Server::start(&["--jwt-hs256-secret", HS256_SECRET]);
    let user = server.create_user(100_000);
    let credits = || server.get("/api/v1/credits");

    let good = hs256(HS256_SECRET, &user.id, valid());
    expect_accepted(bearer(credits(), &good), &user, "a good HS256 JWT").await;
    let response = bearer(server.get("/api/v1/speaker/jobs"), &good)
        .send()
        .await;
    expect_json(response, 200, "GET /api/v1/speaker/jobs with a good JWT").await;

    let other_secret = "another-secret-that-is-also-long-enough-for-hs256";
    let mut tampered = good.clone();
    let last = tampered.pop().expect("a JWT is not empty");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let unknown_user = uuid::Uuid::new_v4().to_string();
    let rejected = [
        ("an expired JWT", hs256(HS256_SECRET, &user.id, expired())),
        (
            "a JWT signed with another secret",
            hs256(other_secret, &user.id, valid()),
        ),
        ("a JWT with a tampered signature", tampered),
        ("a JWT without exp", hs256(HS256_SECRET, &user.id, None)),
        (
            "a JWT for an unknown user",
            hs256(HS256_SECRET, &unknown_user, valid()),
        ),
    ];
    for (what, jwt) in rejected {
        expect_unauthorized(bearer(credits(), &jwt), what).await;
    }
}

/// `openssl genpkey` + `openssl rsa -pubout`: (private PEM, path of the public PEM).
fn rsa_key_pair(dir: &Path, name: &str) -> (Vec<u8>, std::path::PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .output()
            .expect("the openssl command line tool is needed to make RSA keys");
        assert!(
            output.status.success(),
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let private_str = private.to_str().expect("a UTF-8 path");
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private_str,
    ]);
    run(&[
        "rsa",
        "-in",
        private_str,
        "-pubout",
        "-out",
        public.to_str().expect("a UTF-8 path"),
    ]);
    (
        std::fs::read(&private).expect("read the private key"),
        public,
    )
}

#[tokio::test]
async fn rs256_jwts_are_verified_with_the_public_key() {
    let keys = tempfile::tempdir().expect("a directory for keys");
    let (private, public) = rsa_key_pair(keys.path(), "server");
    let (other_private, _) = rsa_key_pair(keys.path(), "other");
    let server = Server::start(&[
        "--jwt-rs256-public-key",
        public.to_str().expect("UTF-8 path"),
    ]);
    let user = server.create_user(100_000);
    let credits = || server.get("/api/v1/credits");
    let rs256 = |pem: &[u8], exp| {
        let key = EncodingKey::from_rsa_pem(pem).expect("an RSA private key");
        token(Algorithm::RS256, &key, &user.id, exp)
    };

    let good = rs256(&private, valid());
    expect_accepted(bearer(credits(), &good), &user, "a good RS256 JWT").await;

    // An HS256 token "signed" with the public key: the classic algorithm-confusion attack.
    let public_pem = std::fs::read_to_string(&public).expect("read the public key");
    let rejected = [
        ("an expired RS256 JWT", rs256(&private, expired())),
        (
            "an RS256 JWT signed by another key",
            rs256(&other_private, valid()),
        ),
        (
            "an HS256 JWT keyed with the RS256 public key",
            hs256(&public_pem, &user.id, valid()),
        ),
    ];
    for (what, jwt) in rejected {
        expect_unauthorized(bearer(credits(), &jwt), what).await;
    }
}

#[tokio::test]
async fn another_users_job_is_not_found_on_get_retry_and_delete() {
    let server = Server::start(&[]);
    let alice = server.create_user(100_000);
    let bob = server.create_user(100_000);
    // A FAILED job: if ownership were not checked, bob's retry and delete would succeed.
    let id = job_id(&failed_upload(&server, &alice, "notes.wav", audio::not_audio()).await);
    let unknown = id + 1000;

    for job in [id, unknown] {
        crate::checks::expect_not_found(&server, &bob, job).await;
        let retry = format!("/api/v1/speaker/jobs/{job}/retry");
        let delete = format!("/api/v1/speaker/jobs/{job}");
        let attempts = [
            (format!("POST {retry}"), server.post(&retry).with_key(&bob)),
            (
                format!("DELETE {delete}"),
                server.delete(&delete).with_key(&bob),
            ),
        ];
        for (what, request) in attempts {
            let body = expect_json(request.send().await, 404, &what).await;
            assert_eq!(
                body,
                json!({"detail": "Job not found or access denied"}),
                "{what} as another user: the 404 body"
            );
        }
    }

    let job = server.job(&alice, id).await;
    assert_eq!(
        job["status"], "FAILED",
        "bob's attempts left alice's job alone: {job}"
    );
    let listing = server.list(&bob, "").await;
    assert_eq!(
        listing["total"], 0,
        "bob sees none of alice's jobs: {listing}"
    );
}

fn hs256_claims(claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(HS256_SECRET.as_bytes()),
    )
    .expect("sign a JWT")
}

#[tokio::test]
async fn jwt_audience_and_issuer_are_checked_when_configured() {
    let server = Server::start(&[
        "--jwt-hs256-secret",
        HS256_SECRET,
        "--jwt-audience",
        "whospoke-api",
        "--jwt-issuer",
        "https://idp.example",
    ]);
    let user = server.create_user(1_000);
    let credits = || server.get("/api/v1/credits");
    let claims = |aud: Option<&str>, iss: Option<&str>| {
        let mut claims = json!({"sub": user.id, "exp": now() + 600});
        if let Some(aud) = aud {
            claims["aud"] = json!(aud);
        }
        if let Some(iss) = iss {
            claims["iss"] = json!(iss);
        }
        hs256_claims(claims)
    };

    let right = claims(Some("whospoke-api"), Some("https://idp.example"));
    expect_accepted(bearer(credits(), &right), &user, "the right aud and iss").await;
    for (what, jwt) in [
        (
            "a wrong aud",
            claims(Some("another-api"), Some("https://idp.example")),
        ),
        (
            "a wrong iss",
            claims(Some("whospoke-api"), Some("https://evil.example")),
        ),
        ("no aud", claims(None, Some("https://idp.example"))),
        ("no iss", claims(Some("whospoke-api"), None)),
    ] {
        expect_unauthorized(bearer(credits(), &jwt), what).await;
    }
}

#[test]
fn a_short_hs256_secret_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("a data directory");
    let output = Command::new(env!("CARGO_BIN_EXE_whospoke"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .args(["--jwt-hs256-secret", "only-31-bytes-of-secret-here..."])
        .current_dir(crate::server::project_dir())
        .output()
        .expect("run `whospoke serve`");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a 31-byte secret must stop the server: {stderr}"
    );
    assert!(
        stderr.contains("an HS256 secret needs at least 32 bytes, this one has 31"),
        "the error says why: {stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "the server never listened: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}
