//! The `LISTEN` connection through which a replica hears of other replicas'
//! changes, kept open for the life of the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};

use super::CHANNEL;

/// How long the `LISTEN` connection may sit silent before it is probed, and
/// how long the probe may take. Together they bound how long a replica whose
/// listener died silently goes on trusting its cache.
const HEARTBEAT: Duration = Duration::from_secs(1);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting and subscribing may take before the listener tries
/// again: a connection can die silently before `LISTEN` is answered, too.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps one `LISTEN` connection open for the life of the process,
/// reconnecting after a loss; any gap counts as a change.
///
/// A listener only reads, and a connection that died without a word (the
/// database host gone in a failover, a NAT or proxy that forgot it) never
/// fails a read: without a probe it would wait for notifications that can
/// no longer come while the cache went on serving. So an idle listener
/// asks the server something every [`HEARTBEAT`], and a connection that
/// does not answer within [`HEARTBEAT_TIMEOUT`] counts as lost.
///
/// Each listening session gets a one-connection pool of its own. Dropping
/// a `PgListener` sends `UNLISTEN *` on its connection in a task with no
/// timeout; on a connection that died silently that task holds the
/// connection until TCP gives up (about a quarter of an hour). In the
/// shared pool it would take one of the writers' connections and keep
/// closing the pool, and so shutdown, waiting; in a pool shared by all
/// listening sessions a few silent deaths in a row would leave no
/// connection to listen on. A pool of its own is simply left to that task.
pub(super) fn spawn(pool: PgPool, instance: String, changed: Arc<AtomicBool>, listening: Arc<AtomicBool>) {
    tokio::spawn(async move {
        // Whether the last attempt to listen failed: said once per outage.
        let mut failing = false;
        while !pool.is_closed() {
            let own = PgPoolOptions::new()
                .max_connections(1)
                .max_lifetime(None)
                .idle_timeout(None)
                .acquire_timeout(Duration::from_secs(10))
                .connect_lazy_with((*pool.connect_options()).clone());
            let subscribed = async {
                let mut listener = PgListener::connect_with(&own).await?;
                listener.listen(CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribed).await.unwrap_or_else(|_| {
                Err(sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "LISTEN was not answered in time")))
            });
            match subscribed {
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %e, "cannot LISTEN on PostgreSQL; caching stays off until it can");
                    }
                }
                Ok(mut listener) => {
                    failing = false;
                    // A lost connection ends `try_recv` at once. By default sqlx
                    // would reconnect inside it, and a heartbeat firing during
                    // that reconnect would drop it half-way and let the probe
                    // reconnect silently: the gap's notifications lost unnoticed.
                    listener.eager_reconnect(false);
                    changed.store(true, Ordering::SeqCst);
                    listening.store(true, Ordering::SeqCst);
                    loop {
                        // Reading a notification is cancel-safe: one half read
                        // when the heartbeat fires stays in the buffer.
                        tokio::select! {
                            n = listener.try_recv() => match n {
                                Ok(Some(n)) if n.payload() != instance => changed.store(true, Ordering::SeqCst),
                                Ok(Some(_)) => {}
                                _ => break,
                            },
                            () = tokio::time::sleep(HEARTBEAT) => {
                                let probe = sqlx::query("SELECT 1").execute(&mut listener);
                                if !matches!(tokio::time::timeout(HEARTBEAT_TIMEOUT, probe).await, Ok(Ok(_))) {
                                    break;
                                }
                            }
                        }
                    }
                    listening.store(false, Ordering::SeqCst);
                    changed.store(true, Ordering::SeqCst);
                    tracing::warn!("lost the PostgreSQL LISTEN connection; caching is off until it is back");
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}
