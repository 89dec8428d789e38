//! What `/metrics` samples at scrape time (see `telemetry`): cheap reads of
//! the database's state, set as gauges. Later features add their own here
//! (the webhook queue's depth).

use super::Vault;
use crate::error::Result;
use crate::telemetry::names;

impl Vault {
    /// Sets the gauges sampled at scrape: the read pool's connections and
    /// the audit trail's size (see `store::trail::TrailSize` for how it is
    /// estimated without a count).
    pub async fn metrics_sample(&self) -> Result<()> {
        let backend = self.store.backend();
        let pool = self.store.pool_stats();
        for (state, n) in [("open", pool.open), ("idle", pool.idle), ("in_use", pool.open.saturating_sub(pool.idle))] {
            metrics::gauge!(names::POOL_CONNECTIONS, "backend" => backend, "pool" => "reader", "state" => state).set(f64::from(n));
        }
        let size = self.store.trail().trail_size().await?;
        metrics::gauge!(names::AUDIT_ROWS, "backend" => backend).set(size.rows as f64);
        if let Some(bytes) = size.table_bytes {
            metrics::gauge!(names::AUDIT_BYTES, "backend" => backend).set(bytes as f64);
        }
        if let Some(bytes) = size.database_bytes {
            metrics::gauge!(names::DATABASE_BYTES, "backend" => backend).set(bytes as f64);
        }
        // Deliveries not yet delivered or given up (pending and retrying).
        metrics::gauge!(names::WEBHOOK_QUEUE, "backend" => backend).set(self.webhook_queue_depth().await? as f64);
        Ok(())
    }
}
