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

/// Keys that verify JWTs; either or both may be configured.
#[derive(Default)]
pub struct JwtKeys {
    pub hs256: Option<DecodingKey>,
    pub rs256: Option<DecodingKey>,
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
        let validation = Validation::new(header.alg);
        let claims =
            jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => invalid("expired"),
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => invalid("bad signature"),
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
#[derive(Debug, Default, Deserialize)]
pub struct QueryCredentials {
    pub api_key: Option<String>,
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
