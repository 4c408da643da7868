//! Single-use stream tokens, kept where every node can redeem them.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Db, DbError, unix_now};

impl Db {
    /// Stores a token for `user_id` (rate-limited as `identity`) until
    /// `expires_at` (unix seconds); expired ones are dropped on the way.
    pub async fn insert_stream_token(
        &self,
        token: &str,
        user_id: &str,
        identity: &str,
        expires_at: i64,
    ) -> Result<(), DbError> {
        sqlx::query("DELETE FROM stream_tokens WHERE expires_at < $1")
            .bind(unix_now())
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO stream_tokens (token_hash, user_id, identity, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(hash(token))
        .bind(user_id)
        .bind(identity)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes a token: `(user_id, identity)` the first time, before it expires.
    pub async fn redeem_stream_token(
        &self,
        token: &str,
    ) -> Result<Option<(String, String)>, DbError> {
        let row = sqlx::query(
            "DELETE FROM stream_tokens WHERE token_hash = $1 \
             RETURNING user_id, identity, expires_at",
        )
        .bind(hash(token))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .filter(|row| row.get::<i64, _>("expires_at") >= unix_now())
            .map(|row| (row.get("user_id"), row.get("identity"))))
    }
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
