//! The live-session registry: which node holds a session's audio and model
//! state, so any node can answer for any session.

use super::{Db, DbError, now};

/// Where a live session runs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRoute {
    pub job_id: i64,
    pub user_id: String,
    pub node_id: String,
    /// The owning node's base URL (`http://host:port`).
    pub node_url: String,
}

impl Db {
    pub async fn register_session(
        &self,
        session_id: &str,
        route: &SessionRoute,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO live_sessions (session_id, job_id, user_id, node_id, node_url, \
                created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(session_id)
        .bind(route.job_id)
        .bind(&route.user_id)
        .bind(&route.node_id)
        .bind(&route.node_url)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session's route while its job is still running.
    pub async fn session_route(&self, session_id: &str) -> Result<Option<SessionRoute>, DbError> {
        let route = sqlx::query_as(
            "SELECT s.job_id, s.user_id, s.node_id, s.node_url FROM live_sessions s \
             JOIN jobs j ON j.id = s.job_id \
             WHERE s.session_id = $1 AND j.status = 'PROCESSING'",
        )
        .bind(session_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(route)
    }

    /// Forgets a session that ended, and any registered for `job_id` (a takeover).
    pub async fn forget_session(&self, job_id: i64) -> Result<(), DbError> {
        sqlx::query("DELETE FROM live_sessions WHERE job_id = $1")
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
