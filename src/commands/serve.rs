//! `whospoke serve`: the HTTP API and the job workers in one process, on
//! SQLite and the local filesystem unless told otherwise. With Postgres and
//! S3-compatible storage, any number of such processes form a cluster, each
//! an API node, a worker or both (`--role`).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use jsonwebtoken::DecodingKey;
use tokio_util::sync::CancellationToken;
use whospoke::db::{self, Db, Lease};
use whospoke::engine::{Engine, EngineConfig};
use whospoke::jobs::{FetchLimits, Files, Jobs, JobsConfig, run_workers};
use whospoke::live::{Live, LiveConfig};
use whospoke::runtime;
use whospoke::server::auth::{Authenticator, JwtKeys, hs256_secret};
use whospoke::server::forward::Forwarder;
use whospoke::server::ip_limit::IpLimits;
use whospoke::server::proxy_headers::parse_network;
use whospoke::server::rate_limit::RateLimits;
use whospoke::server::routes::whip::Whip;
use whospoke::server::signing::UrlSigner;
use whospoke::server::stream_tokens::StreamTokens;
use whospoke::server::webhooks::{self, WebhookConfig};
use whospoke::server::webrtc::{IceServer, Peers, WebRtcConfig};
use whospoke::server::{self, AppState, HttpConfig, metrics};

/// What a node does in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    /// The HTTP API, live sessions and batch workers.
    All,
    /// The HTTP API and live sessions; batch jobs are left to workers.
    Api,
    /// Batch workers (and the HTTP API, for health, metrics and downloads).
    Worker,
}

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "WHOSPOKE_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, env = "WHOSPOKE_PORT", default_value_t = 8080)]
    port: u16,
    /// The node's own files: scratch space, live spools, and by default the
    /// database and the stored files.
    #[arg(long, env = "WHOSPOKE_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://user:password@host/db`
    /// (default: `sqlite://<data-dir>/whospoke.db`). Nodes of a cluster share one Postgres.
    #[arg(long, env = "WHOSPOKE_DATABASE_URL")]
    database_url: Option<String>,
    /// What this node does: `all`, `api` (HTTP and live) or `worker` (batch jobs).
    #[arg(long, env = "WHOSPOKE_ROLE", value_enum, default_value_t = Role::All)]
    role: Role,
    /// This node's name in job leases and the live-session registry
    /// (default: the host name and a digest of the data directory, stable across restarts).
    #[arg(long, env = "WHOSPOKE_NODE_ID")]
    node_id: Option<String>,
    /// How long a node's claim on a job or live session holds without
    /// renewal; another node takes over after it runs out.
    #[arg(long, env = "WHOSPOKE_LEASE_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(3..))]
    lease_seconds: u64,
    /// This node's base URL: absolute download links, WHIP `Location`s, and
    /// where other nodes reach its live sessions (default: the request's Host
    /// for links, the bound address for other nodes).
    #[arg(long, env = "WHOSPOKE_PUBLIC_URL")]
    public_url: Option<String>,
    /// Where job files go: `s3://bucket/prefix` (AWS_* variables), default `<data-dir>/objects`.
    #[arg(long, env = "WHOSPOKE_STORAGE_URL")]
    storage_url: Option<String>,
    /// Jobs processed at the same time.
    #[arg(long, env = "WHOSPOKE_CONCURRENT_JOBS", default_value_t = 1)]
    concurrent_jobs: usize,
    /// Inference threads per job, each with its own model sessions.
    #[arg(long, env = "WHOSPOKE_THREADS", default_value_t = 2)]
    threads: usize,
    /// Largest upload accepted, in bytes.
    #[arg(long, env = "WHOSPOKE_MAX_UPLOAD_BYTES", default_value_t = 2 << 30)]
    max_upload_bytes: u64,
    /// Requests per minute per API key (or JWT subject) per endpoint.
    #[arg(long, env = "WHOSPOKE_RATE_LIMIT_PER_MINUTE", default_value = "100")]
    rate_limit_per_minute: NonZeroU32,
    /// Lifetime of signed download links.
    #[arg(long, env = "WHOSPOKE_DOWNLOAD_TTL_SECONDS", default_value_t = 3600)]
    download_ttl_seconds: u64,
    /// Secret of HS256 JWTs (at least 32 bytes).
    #[arg(long, env = "WHOSPOKE_JWT_HS256_SECRET", value_parser = hs256_secret)]
    jwt_hs256_secret: Option<String>,
    /// PEM public key of RS256 JWTs.
    #[arg(long, env = "WHOSPOKE_JWT_RS256_PUBLIC_KEY")]
    jwt_rs256_public_key: Option<PathBuf>,
    /// Key that signs download links (default: generated once and kept in the
    /// database, so every node on it signs alike).
    #[arg(long, env = "WHOSPOKE_SIGNING_SECRET")]
    signing_secret: Option<String>,
    /// Let URL jobs fetch from loopback and private networks.
    #[arg(long, env = "WHOSPOKE_ALLOW_PRIVATE_URLS")]
    allow_private_urls: bool,
    /// Largest download of a URL job, in bytes.
    #[arg(long, env = "WHOSPOKE_URL_MAX_BYTES", default_value_t = 2 << 30)]
    url_max_bytes: u64,
    /// Deadline of a URL job's download.
    #[arg(long, env = "WHOSPOKE_URL_TIMEOUT_SECONDS", default_value_t = 300)]
    url_timeout_seconds: u64,
    /// On SIGTERM, how long running jobs may finish before going back to the queue.
    #[arg(long, env = "WHOSPOKE_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    shutdown_grace_seconds: u64,
    /// Live sessions at once; more are refused with `server_busy`.
    #[arg(long, env = "WHOSPOKE_LIVE_MAX_SESSIONS", default_value_t = 64)]
    live_max_sessions: usize,
    /// Largest binary frame of a live stream, in bytes.
    #[arg(long, env = "WHOSPOKE_LIVE_MAX_FRAME_BYTES", default_value_t = 1 << 20)]
    live_max_frame_bytes: usize,
    /// A live session without audio or keepalive for this long ends.
    #[arg(long, env = "WHOSPOKE_LIVE_IDLE_TIMEOUT_SECONDS", default_value_t = 30)]
    live_idle_timeout_seconds: u64,
    /// A live session ends this long after it started.
    #[arg(
        long,
        env = "WHOSPOKE_LIVE_MAX_SESSION_SECONDS",
        default_value_t = 14_400
    )]
    live_max_session_seconds: u64,
    /// Audio a live session may hold waiting for analysis, in seconds; beyond
    /// it the server stops reading the socket.
    #[arg(long, env = "WHOSPOKE_LIVE_BUFFER_SECONDS", default_value_t = 30.0)]
    live_buffer_seconds: f64,
    /// How often a live session copies its audio to the file store, so
    /// another node can finalize it if this one dies.
    #[arg(long, env = "WHOSPOKE_LIVE_CHECKPOINT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    live_checkpoint_seconds: u64,
    /// Wait after a failed webhook delivery, doubling with each attempt (at most an hour).
    #[arg(long, env = "WHOSPOKE_WEBHOOK_RETRY_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(i64).range(1..))]
    webhook_retry_seconds: i64,
    /// Lifetime of the single-use tokens of `POST /api/v1/speaker/stream/token`.
    #[arg(long, env = "WHOSPOKE_STREAM_TOKEN_TTL_SECONDS", default_value_t = 60)]
    stream_token_ttl_seconds: u64,
    /// Address WebRTC host candidates bind to (default: the HTTP `--host`;
    /// 0.0.0.0 means every interface).
    #[arg(long, env = "WHOSPOKE_WEBRTC_INTERFACE")]
    webrtc_interface: Option<IpAddr>,
    /// UDP ports WebRTC peers may use, as FIRST-LAST (default: ephemeral).
    #[arg(long, env = "WHOSPOKE_WEBRTC_UDP_PORTS", value_parser = parse_port_range)]
    webrtc_udp_ports: Option<(u16, u16)>,
    /// STUN or TURN server offered to WHIP clients in `Link` headers and used
    /// by the server's peers (repeatable, or comma-separated in the variable).
    #[arg(
        long = "ice-server",
        env = "WHOSPOKE_ICE_SERVERS",
        value_delimiter = ','
    )]
    ice_servers: Vec<String>,
    /// Username of the TURN servers among `--ice-server`.
    #[arg(long, env = "WHOSPOKE_ICE_USERNAME")]
    ice_username: Option<String>,
    /// Credential of the TURN servers among `--ice-server`.
    #[arg(long, env = "WHOSPOKE_ICE_CREDENTIAL")]
    ice_credential: Option<String>,
    /// A WebRTC peer disconnected this long is gone and its session ends.
    #[arg(
        long,
        env = "WHOSPOKE_WEBRTC_PEER_TIMEOUT_SECONDS",
        default_value_t = 15
    )]
    webrtc_peer_timeout_seconds: u64,
    /// Folder holding the ONNX models.
    #[arg(long, env = runtime::MODELS_DIR_ENV)]
    models_dir: Option<PathBuf>,
    /// The ONNX Runtime library (libonnxruntime.so.1.31.1).
    #[arg(long, env = runtime::ORT_LIBRARY_ENV)]
    ort_lib: Option<PathBuf>,
    /// A private address URL jobs may still fetch from without
    /// --allow-private-urls, like an internal media store (repeatable).
    #[arg(long, env = "WHOSPOKE_ALLOW_URL_ADDRESS", value_delimiter = ',')]
    allow_url_address: Vec<IpAddr>,
    /// JWTs must carry this `aud`.
    #[arg(long, env = "WHOSPOKE_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// JWTs must carry this `iss`.
    #[arg(long, env = "WHOSPOKE_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Proxies (addresses or CIDR networks, comma-separated) whose `Forwarded` and
    /// `X-Forwarded-*` headers are believed.
    #[arg(long, env = "WHOSPOKE_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_network)]
    trusted_proxies: Vec<IpNet>,
    /// Serve `/metrics` on this address instead of the API's.
    #[arg(long, env = "WHOSPOKE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Bearer token `/metrics` asks for.
    #[arg(long, env = "WHOSPOKE_METRICS_TOKEN")]
    metrics_token: Option<String>,
    /// Requests per minute per client address, counted before authentication.
    #[arg(long, env = "WHOSPOKE_IP_RATE_LIMIT_PER_MINUTE", default_value = "600")]
    ip_rate_limit_per_minute: NonZeroU32,
}

pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("starting the async runtime: {e}")),
    };
    let outcome = runtime.block_on(serve(args));
    // A job past its grace period was requeued; do not wait for its blocking task.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

async fn serve(args: Args) -> Result<(), String> {
    runtime::environment(args.ort_lib.as_deref()).map_err(|e| e.to_string())?;
    let engine = Engine::load(&EngineConfig {
        models_dir: args.models_dir.clone(),
        threads: args.threads,
    })
    .map_err(|e| e.to_string())?;
    let engine = Arc::new(engine);

    let data_dir = args.data_dir.clone();
    let upload_dir = data_dir.join("uploads");
    // Uploads cut off by a crash are never referenced by a job; start empty.
    let _ = std::fs::remove_dir_all(&upload_dir);
    for dir in [&data_dir, &upload_dir] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| Db::default_url(&data_dir));
    let db = Db::connect(&database_url)
        .await
        .map_err(|e| e.to_string())?;
    let files = Files::open(args.storage_url.as_deref(), &data_dir).map_err(|e| e.to_string())?;

    // Bound before anything registers: other nodes reach this one at its address.
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| format!("listening on {}:{}: {e}", args.host, args.port))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let node_url = args
        .public_url
        .clone()
        .map(|url| url.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| format!("http://{address}"));
    let lease = Lease {
        node_id: args.node_id.clone().unwrap_or_else(|| node_id(&data_dir)),
        seconds: i64::try_from(args.lease_seconds).unwrap_or(i64::MAX),
    };

    let jobs = Jobs::new(
        db.clone(),
        files,
        JobsConfig {
            work_dir: data_dir.join("work"),
            fetch: FetchLimits {
                max_bytes: args.url_max_bytes,
                timeout: Duration::from_secs(args.url_timeout_seconds),
                allow_private: args.allow_private_urls,
                trusted_addresses: args.allow_url_address.clone(),
                ..FetchLimits::default()
            },
            concurrent_jobs: args.concurrent_jobs,
            shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
            lease: lease.clone(),
        },
    );
    let signing_secret = match &args.signing_secret {
        Some(secret) => secret.as_bytes().to_vec(),
        None => db.signing_secret().await.map_err(|e| e.to_string())?,
    };
    let shutdown = CancellationToken::new();
    let live = Live::new(
        Arc::clone(&jobs),
        Arc::clone(&engine),
        LiveConfig {
            spool_dir: data_dir.join("live"),
            max_sessions: args.live_max_sessions.max(1),
            max_frame_bytes: args.live_max_frame_bytes,
            idle_timeout: Duration::from_secs(args.live_idle_timeout_seconds),
            max_session: Duration::from_secs(args.live_max_session_seconds),
            buffer_seconds: args.live_buffer_seconds.max(1.0),
            checkpoint_every: Duration::from_secs(args.live_checkpoint_seconds),
            node_url,
        },
        shutdown.clone(),
    );
    let recovered = live.recover().await.map_err(|e| e.to_string())?;
    if recovered > 0 {
        tracing::warn!(
            recovered,
            "streams interrupted by a restart are being finalized"
        );
    }
    let handle = metrics::install().map_err(|e| format!("metrics: {e}"))?;
    let limits = Arc::new(RateLimits::new(&db, args.rate_limit_per_minute));
    let ip_limits = Arc::new(IpLimits::per_minute(args.ip_rate_limit_per_minute));
    let whip = Whip::new(Peers::new(webrtc_config(&args)));
    let state = AppState {
        jobs: Arc::clone(&jobs),
        whip: Arc::new(whip),
        live: Arc::clone(&live),
        stream_tokens: Arc::new(StreamTokens::new(
            db.clone(),
            Duration::from_secs(args.stream_token_ttl_seconds),
        )),
        auth: Arc::new(Authenticator::new(db.clone(), jwt_keys(&args)?)),
        limits: Arc::clone(&limits),
        ip_limits: Arc::clone(&ip_limits),
        signer: Arc::new(UrlSigner::new(&signing_secret)),
        metrics: handle.clone(),
        config: Arc::new(HttpConfig {
            public_url: args.public_url.clone(),
            max_upload_bytes: args.max_upload_bytes,
            download_ttl: Duration::from_secs(args.download_ttl_seconds),
            upload_dir,
            trusted_proxies: args.trusted_proxies.clone(),
            metrics_token: args.metrics_token.clone(),
            metrics_elsewhere: args.metrics_listen.is_some(),
        }),
        forwarder: Arc::new(
            Forwarder::new(lease.node_id.clone()).map_err(|e| format!("HTTP client: {e}"))?,
        ),
    };

    tokio::spawn(webhooks::deliver(
        state.clone(),
        WebhookConfig {
            first_backoff_seconds: args.webhook_retry_seconds,
        },
        shutdown.clone(),
    ));
    tokio::spawn(wait_for_signal(shutdown.clone()));
    tokio::spawn(renew_leases(db.clone(), lease.clone(), shutdown.clone()));
    tokio::spawn(Arc::clone(&live).take_over_orphans(shutdown.clone()));
    let workers = match args.role {
        Role::All | Role::Worker => Some(tokio::spawn(run_workers(
            Arc::clone(&jobs),
            engine,
            shutdown.clone(),
        ))),
        Role::Api => None,
    };
    tokio::spawn(metrics::upkeep(handle, db, limits, shutdown.clone()));
    tokio::spawn(ip_limits.upkeep(shutdown.clone()));
    if let Some(address) = args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| format!("listening on {address} for metrics: {e}"))?;
        tokio::spawn(server::serve_metrics(
            listener,
            state.clone(),
            shutdown.clone(),
        ));
    }

    // The one line on stdout: scripts and tests wait for it.
    println!("whospoke listening on http://{address}");
    let _ = std::io::stdout().flush();
    tracing::info!(%address, node = lease.node_id, role = ?args.role, data_dir = %data_dir.display(),
        database = db::redact(&database_url), "serving");

    server::serve(listener, state, shutdown.clone())
        .await
        .map_err(|e| format!("server: {e}"))?;
    shutdown.cancel();
    // Every live session says goodbye and becomes a job before the process exits.
    live.wait_idle().await;
    let Some(workers) = workers else {
        return Ok(());
    };
    match workers.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("the job workers stopped: {e}")),
    }
}

/// Renews this node's claims (running batch jobs and live streams) until
/// shutdown; a node that stops renewing loses them to another.
async fn renew_leases(db: Db, lease: Lease, shutdown: CancellationToken) {
    let every = Duration::from_secs(u64::try_from(lease.seconds / 3).unwrap_or(1).max(1));
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = db.renew_leases(&lease).await {
            tracing::error!(error = %e, "renewing this node's leases failed");
        }
    }
}

/// A node id stable across restarts and distinct for each data directory on a host.
fn node_id(data_dir: &Path) -> String {
    use sha2::Digest;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "node".to_owned());
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    format!("{host}-{}", &hex::encode(digest)[..8])
}

fn webrtc_config(args: &Args) -> WebRtcConfig {
    let interface = args.webrtc_interface.unwrap_or_else(|| {
        args.host
            .parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    });
    let ice_servers = args
        .ice_servers
        .iter()
        .map(|url| {
            let turn = url.starts_with("turn:") || url.starts_with("turns:");
            IceServer {
                url: url.clone(),
                username: args.ice_username.clone().filter(|_| turn),
                credential: args.ice_credential.clone().filter(|_| turn),
            }
        })
        .collect();
    WebRtcConfig {
        interface,
        udp_ports: args.webrtc_udp_ports,
        ice_servers,
        peer_timeout: Duration::from_secs(args.webrtc_peer_timeout_seconds),
    }
}

fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let invalid = || format!("expected FIRST-LAST ports, like 50000-50100, not {text:?}");
    let (first, last) = text.split_once('-').ok_or_else(invalid)?;
    let first: u16 = first.trim().parse().map_err(|_| invalid())?;
    let last: u16 = last.trim().parse().map_err(|_| invalid())?;
    if first == 0 || first > last {
        return Err(invalid());
    }
    Ok((first, last))
}

/// SIGTERM or Ctrl-C: stop accepting, let running jobs finish or requeue them,
/// end and finalize live sessions.
async fn wait_for_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}

fn jwt_keys(args: &Args) -> Result<JwtKeys, String> {
    let rs256 = match &args.jwt_rs256_public_key {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Some(
                DecodingKey::from_rsa_pem(&pem)
                    .map_err(|e| format!("{}: not an RSA public key: {e}", path.display()))?,
            )
        }
        None => None,
    };
    Ok(JwtKeys {
        hs256: args
            .jwt_hs256_secret
            .as_ref()
            .map(|secret| DecodingKey::from_secret(secret.as_bytes())),
        rs256,
        audience: args.jwt_audience.clone(),
        issuer: args.jwt_issuer.clone(),
    })
}

fn fail(message: &str) -> ExitCode {
    eprintln!("whospoke serve: {message}");
    ExitCode::FAILURE
}
