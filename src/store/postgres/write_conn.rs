//! The pooled connection a write transaction runs on.

use sqlx::postgres::PgPool;
use sqlx::{Postgres, Transaction};

/// A pooled connection a write transaction is opened on. sqlx 0.9 counts a
/// transaction as open only once `BEGIN` has been answered, so a request
/// dropped while waiting for that answer (its client went away) leaves the
/// session inside a transaction nothing rolls back, and the pool hands it on:
/// the next autocommit statement there (an audit batch, a rotation) would
/// never commit, though its caller was answered. Such a connection is closed
/// instead of returned, which ends the transaction on the server.
/// (launchbadge/sqlx#4393; the fix is not released yet.)
pub struct WriteConn {
    conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
    beginning: bool,
}

impl WriteConn {
    pub(super) async fn acquire(pool: &PgPool) -> Result<Self, sqlx::Error> {
        Ok(WriteConn { conn: pool.acquire().await?, beginning: false })
    }

    /// Opens a transaction, marking the connection for closing until
    /// `BEGIN` has been answered.
    pub(super) async fn begin(&mut self) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
        self.beginning = true;
        let tx = sqlx::Connection::begin(&mut *self.conn).await?;
        self.beginning = false;
        Ok(tx)
    }
}

impl Drop for WriteConn {
    fn drop(&mut self) {
        if self.beginning {
            self.conn.close_on_drop();
        }
    }
}
