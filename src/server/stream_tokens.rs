//! Short-lived, single-use tokens that let a browser open a stream without
//! putting its API key in a URL. They live in the database, so a token
//! issued by one node opens a stream on any other.

use std::time::Duration;

use super::auth::Caller;
use crate::db::{Db, DbError, unix_now};

/// Bytes of randomness in a token.
const TOKEN_BYTES: usize = 24;
/// What every stream token starts with, so a Bearer value can be told from a key or a JWT.
pub const STREAM_TOKEN_PREFIX: &str = "st_";

pub struct StreamTokens {
    db: Db,
    ttl: Duration,
}

impl StreamTokens {
    pub fn new(db: Db, ttl: Duration) -> Self {
        Self { db, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new token for `caller`.
    pub async fn issue(&self, caller: &Caller) -> Result<String, DbError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        let token = format!("{STREAM_TOKEN_PREFIX}{}", hex::encode(bytes));
        let expires_at = unix_now() + i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        self.db
            .insert_stream_token(&token, &caller.user_id, &caller.identity, expires_at)
            .await?;
        Ok(token)
    }

    /// The caller a token was issued to; a token works once, before it expires.
    pub async fn redeem(&self, token: &str) -> Result<Option<Caller>, DbError> {
        Ok(self
            .db
            .redeem_stream_token(token)
            .await?
            .map(|(user_id, identity)| Caller { user_id, identity }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn tokens(ttl: Duration) -> (StreamTokens, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&Db::default_url(dir.path())).await.unwrap();
        (StreamTokens::new(db, ttl), dir)
    }

    fn caller() -> Caller {
        Caller {
            user_id: "u".into(),
            identity: "key:abc".into(),
        }
    }

    #[tokio::test]
    async fn tokens_work_once() {
        let (tokens, _dir) = tokens(Duration::from_secs(60)).await;
        let token = tokens.issue(&caller()).await.unwrap();
        let redeemed = tokens.redeem(&token).await.unwrap().unwrap();
        assert_eq!(
            (redeemed.user_id.as_str(), redeemed.identity.as_str()),
            ("u", "key:abc")
        );
        assert!(tokens.redeem(&token).await.unwrap().is_none());
        assert!(tokens.redeem("st_forged").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn expired_tokens_fail() {
        let (tokens, _dir) = tokens(Duration::ZERO).await;
        let token = tokens.issue(&caller()).await.unwrap();
        // Valid through the second it was issued in; a second later it is gone.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(tokens.redeem(&token).await.unwrap().is_none());
    }
}
