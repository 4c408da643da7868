//! Who is calling: an `X-API-Key`, or a Bearer JWT (HS256 or RS256).
//!
//! The official AudioPod SDK sends its key in BOTH headers, so a valid
//! `X-API-Key` settles the question before the Bearer value is looked at, and a
//! Bearer value that starts with `ap_` is taken as a key, not a JWT.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::AppState;
use super::drain::discard_body;
use super::error::ApiError;
use super::stream_tokens::STREAM_TOKEN_PREFIX;
use crate::db::Db;
use crate::db::accounts::API_KEY_PREFIX;

/// The authenticated caller of a request, in its extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    /// What rate limits count against: the key's hash prefix or the JWT subject.
    pub identity: String,
}

/// Shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key as long as the hash.
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// Keys that verify JWTs (either or both may be configured), and the claims
/// they must carry when set.
#[derive(Default)]
pub struct JwtKeys {
    pub hs256: Option<DecodingKey>,
    pub rs256: Option<DecodingKey>,
    /// Required `aud`.
    pub audience: Option<String>,
    /// Required `iss`.
    pub issuer: Option<String>,
}

/// A `--jwt-hs256-secret`, refused when it is short enough to guess.
pub fn hs256_secret(secret: &str) -> Result<String, String> {
    if secret.len() < MIN_HS256_SECRET_BYTES {
        return Err(format!(
            "an HS256 secret needs at least {MIN_HS256_SECRET_BYTES} bytes, this one has {}",
            secret.len()
        ));
    }
    Ok(secret.to_owned())
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

pub struct Authenticator {
    db: Db,
    jwt: JwtKeys,
}

impl Authenticator {
    pub fn new(db: Db, jwt: JwtKeys) -> Self {
        Self { db, jwt }
    }

    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        if let Some(key) = header(headers, "x-api-key") {
            return self.api_key(key).await;
        }
        let Some(bearer) = bearer(headers) else {
            return Err(ApiError::unauthorized("Not authenticated"));
        };
        if bearer.starts_with(API_KEY_PREFIX) {
            return self.api_key(bearer).await;
        }
        self.jwt(bearer).await
    }

    async fn api_key(&self, key: &str) -> Result<Caller, ApiError> {
        match self.db.user_for_key(key).await? {
            Some(user_id) => Ok(Caller {
                identity: format!("key:{}", &crate::db::accounts::key_fingerprint(key)),
                user_id,
            }),
            None => Err(ApiError::unauthorized("Invalid API key")),
        }
    }

    async fn jwt(&self, token: &str) -> Result<Caller, ApiError> {
        let invalid = |reason: &str| ApiError::unauthorized(format!("Invalid token: {reason}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed"))?;
        let key = match header.alg {
            Algorithm::HS256 => self.jwt.hs256.as_ref(),
            Algorithm::RS256 => self.jwt.rs256.as_ref(),
            _ => None,
        }
        .ok_or_else(|| invalid("unsupported algorithm"))?;
        let mut validation = Validation::new(header.alg);
        let mut required = vec!["exp"];
        if let Some(audience) = &self.jwt.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        if let Some(issuer) = &self.jwt.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => invalid("expired"),
                ErrorKind::InvalidSignature => invalid("bad signature"),
                ErrorKind::InvalidAudience => invalid("wrong audience"),
                ErrorKind::InvalidIssuer => invalid("wrong issuer"),
                ErrorKind::MissingRequiredClaim(claim) => invalid(&format!("no {claim}")),
                _ => invalid("rejected"),
            }
        })?;
        let user_id = claims.claims.sub;
        if !self.db.user_exists(&user_id).await? {
            return Err(invalid("unknown user"));
        }
        Ok(Caller {
            identity: format!("user:{user_id}"),
            user_id,
        })
    }
}

/// Credentials in the query, for clients that cannot set headers (a
/// browser's `WebSocket` and `EventSource`).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueryCredentials {
    /// An API key, where the X-API-Key header cannot be set.
    pub api_key: Option<String>,
    /// A single-use token from `POST /api/v1/speaker/stream/token`.
    pub token: Option<String>,
}

/// The caller of a live route: `X-API-Key` or Bearer headers, where a Bearer
/// may also hold a stream token; else `?api_key=`; else `?token=`.
pub async fn live_caller(
    state: &AppState,
    headers: &HeaderMap,
    query: &QueryCredentials,
) -> Result<Caller, ApiError> {
    if let Some(token) = bearer(headers).filter(|b| b.starts_with(STREAM_TOKEN_PREFIX)) {
        return redeem(state, token).await;
    }
    if headers.contains_key("x-api-key") || headers.contains_key("authorization") {
        return state.auth.authenticate(headers).await;
    }
    if let Some(key) = &query.api_key {
        let mut from_query = HeaderMap::new();
        let value =
            HeaderValue::from_str(key).map_err(|_| ApiError::unauthorized("Invalid API key"))?;
        from_query.insert("x-api-key", value);
        return state.auth.authenticate(&from_query).await;
    }
    match &query.token {
        Some(token) => redeem(state, token).await,
        None => Err(ApiError::unauthorized("Not authenticated")),
    }
}

async fn redeem(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    state
        .stream_tokens
        .redeem(token)
        .await?
        .ok_or_else(|| ApiError::unauthorized("Invalid, used or expired stream token"))
}

/// The value of an `Authorization: Bearer` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    header(headers, "authorization")
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or(value.strip_prefix("bearer "))
        })
        .map(str::trim)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

/// Middleware of the authenticated routes: authenticates, applies the rate
/// limit of (caller, endpoint), and stamps the limit's headers on the response.
pub async fn require_caller(
    State(state): State<AppState>,
    matched: MatchedPath,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = match state.auth.authenticate(request.headers()).await {
        Ok(caller) => caller,
        Err(e) => {
            discard_body(request.into_body()).await;
            return e.into_response();
        }
    };
    let bucket = format!(
        "{} {} {}",
        caller.identity,
        request.method(),
        matched.as_str()
    );
    let quota = match state.limits.check(&bucket).await {
        Ok(quota) => quota,
        Err(limited) => {
            discard_body(request.into_body()).await;
            return limited.into_response();
        }
    };
    request.extensions_mut().insert(caller);
    let mut response = next.run(request).await;
    quota.stamp(response.headers_mut());
    response
}

/// Middleware of `/metrics`: with `--metrics-token`, only that Bearer token.
pub async fn require_metrics_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = &state.config.metrics_token {
        let given = bearer(request.headers()).unwrap_or_default();
        if !same_secret(given.as_bytes(), expected.as_bytes()) {
            return ApiError::unauthorized("Metrics need the configured Bearer token")
                .into_response();
        }
    }
    next.run(request).await
}

/// Compares in time independent of where the inputs differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}
