//! PostgreSQL, for many stateless replicas on one database. Quota checks lock
//! the tenant row so replicas cannot race past a plan limit.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

pub struct PgStore {
    writer: PgPool,
    /// The same pool: PostgreSQL needs no separate read path.
    reader: PgPool,
}

impl PgStore {
    pub async fn open(url: &str) -> crate::error::Result<Self> {
        let pool = PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| crate::error::Error::internal(format_args!("migrations: {e}")))?;
        Ok(PgStore { writer: pool.clone(), reader: pool })
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.writer.begin().await
    }
}

super::sql::sql_store!(PgStore, sqlx::Postgres, "postgres", "SELECT id FROM tenants WHERE id = $1 FOR UPDATE", " FOR UPDATE");
