//! A connection that one batch writer keeps between uses.

use std::time::Duration;

use sqlx::postgres::PgPool;

/// A connection that one task keeps between uses, for the audit and version
/// writers' batch statements. sqlx checks every connection that comes back to
/// the pool with a round trip (a `Sync`), and these writers use theirs back
/// to back: kept, a batch costs one round trip, on one warm backend.
///
/// It runs with `plan_cache_mode = force_generic_plan`. Those statements bind
/// whole columns as arrays, and PostgreSQL's default keeps planning them
/// anew for every batch (a plan for 40 rows looks cheaper than the generic
/// one, which cannot know the length): the planner was a quarter of the audit
/// backend's CPU. The setting must not reach the pool, whose audit queries
/// are planned for their actual values on purpose (`query_audit`), so the
/// connection is detached from the pool: it is closed, never given back,
/// when it fails or sits idle long enough for a server or proxy to have
/// dropped it, and the next batch opens another.
pub(super) struct Held {
    pool: PgPool,
    slot: tokio::sync::Mutex<HeldSlot>,
}

/// The kept connection and when it last succeeded.
type HeldSlot = Option<(sqlx::PgConnection, std::time::Instant)>;

/// How long a held connection may idle before it is replaced.
const HELD_IDLE: Duration = Duration::from_secs(10);

impl Held {
    pub(super) fn new(pool: PgPool) -> Self {
        Held { pool, slot: Default::default() }
    }

    /// The held connection, opened if there is none.
    pub(super) async fn lock(&self) -> Result<HeldConn<'_>, sqlx::Error> {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|(_, used)| used.elapsed() > HELD_IDLE) {
            *slot = None;
        }
        if slot.is_none() {
            // Taken through the pool for its limits and timeouts; detached,
            // the pool may open another in its place.
            let mut conn = self.pool.acquire().await?.detach();
            sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut conn).await?;
            *slot = Some((conn, std::time::Instant::now()));
        }
        Ok(HeldConn { slot, ok: false })
    }

    /// Closes the connection.
    pub(super) async fn release(&self) {
        if let Some((conn, _)) = self.slot.lock().await.take() {
            let _ = sqlx::Connection::close(conn).await;
        }
    }
}

/// The held connection, locked for one use. Unless [`HeldConn::settle`]
/// reports a success, it is closed when this is dropped.
pub(super) struct HeldConn<'a> {
    slot: tokio::sync::MutexGuard<'a, HeldSlot>,
    ok: bool,
}

impl HeldConn<'_> {
    pub(super) fn conn(&mut self) -> &mut sqlx::PgConnection {
        &mut self.slot.as_mut().expect("filled when locked").0
    }

    /// Keeps the connection after a success; closes it after a failure.
    pub(super) fn settle<T, E>(mut self, result: Result<T, E>) -> Result<T, E> {
        if result.is_ok() {
            self.slot.as_mut().expect("filled when locked").1 = std::time::Instant::now();
            self.ok = true;
        }
        result
    }
}

impl Drop for HeldConn<'_> {
    fn drop(&mut self) {
        if !self.ok {
            *self.slot = None;
        }
    }
}
