//! Users, their API keys and their credit balances.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::credits::ledger;
use super::{Db, DbError, now};

/// What every AudioPod key starts with; the official SDK refuses others.
pub const API_KEY_PREFIX: &str = "ap_";

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct User {
    #[sqlx(rename = "id")]
    pub user_id: String,
    pub credits: i64,
    pub keys: i64,
    pub created_at: String,
}

/// A key as shown once, at creation; only its hash is stored.
#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    pub user_id: String,
    pub api_key: String,
}

impl Db {
    pub async fn create_user(&self, credits: i64) -> Result<String, DbError> {
        let id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO users (id, credits, created_at) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(credits)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        if credits != 0 {
            ledger(&mut tx, &id, None, credits, "grant").await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Makes a new key for `user_id` and returns it in clear, the only time it exists so.
    pub async fn create_key(&self, user_id: &str) -> Result<ApiKey, DbError> {
        if !self.user_exists(user_id).await? {
            return Err(DbError::UnknownUser(user_id.to_owned()));
        }
        let mut secret = [0u8; 24];
        getrandom::fill(&mut secret).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        let api_key = format!("{API_KEY_PREFIX}{}", hex::encode(secret));
        sqlx::query(
            "INSERT INTO api_keys (user_id, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(user_id)
        .bind(hash_key(&api_key))
        .bind(&api_key[..API_KEY_PREFIX.len() + 6])
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(ApiKey {
            user_id: user_id.to_owned(),
            api_key,
        })
    }

    /// The user owning `api_key`, if the key exists.
    pub async fn user_for_key(&self, api_key: &str) -> Result<Option<String>, DbError> {
        let row = sqlx::query("SELECT user_id FROM api_keys WHERE key_hash = $1")
            .bind(hash_key(api_key))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.get("user_id")))
    }

    pub async fn user_exists(&self, user_id: &str) -> Result<bool, DbError> {
        let row = sqlx::query("SELECT 1 FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub async fn balance(&self, user_id: &str) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT credits FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| DbError::UnknownUser(user_id.to_owned()))?;
        Ok(row.get("credits"))
    }

    /// Adds `credits` (may be negative, never below zero) and returns the new balance.
    pub async fn grant_credits(&self, user_id: &str, credits: i64) -> Result<i64, DbError> {
        let mut tx = self.pool.begin().await?;
        let row =
            sqlx::query("UPDATE users SET credits = credits + $1 WHERE id = $2 RETURNING credits")
                .bind(credits)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| DbError::UnknownUser(user_id.to_owned()))?;
        ledger(&mut tx, user_id, None, credits, "grant").await?;
        tx.commit().await?;
        Ok(row.get("credits"))
    }

    pub async fn list_users(&self) -> Result<Vec<User>, DbError> {
        let users = sqlx::query_as(
            "SELECT u.id, u.credits, u.created_at, \
                    (SELECT COUNT(*) FROM api_keys k WHERE k.user_id = u.id) AS keys \
             FROM users u ORDER BY u.created_at, u.id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(users)
    }
}

fn hash_key(api_key: &str) -> String {
    hex::encode(Sha256::digest(api_key.as_bytes()))
}

/// A stable, non-secret name for a key (rate-limit buckets, logs).
pub fn key_fingerprint(api_key: &str) -> String {
    hash_key(api_key)[..16].to_owned()
}
