//! Group commit for standalone audit entries (reads, lists, denied attempts).
//!
//! Each caller hands its entry to one writer task and waits for the commit
//! that contains it; the writer takes everything queued meanwhile into the
//! same transaction. Under load many reads share one commit (one fsync on
//! SQLite) instead of queueing for one each, and a read still returns only
//! after its audit entry is durable: if the write fails, every caller in the
//! batch gets the error and no value leaves the server. An entry the store
//! refused because its key or secret changed (see `Appended::refused`) fails
//! only its own caller.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::store::{AuditRow, CHANGED_MEANWHILE, Store};

/// Most entries written in one transaction.
const MAX_BATCH: usize = 512;

type Ack = oneshot::Sender<Result<u64>>;

#[derive(Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<(AuditRow, Ack)>,
}

impl AuditWriter {
    /// Starts the writer task on the current runtime; it ends when every
    /// handle is dropped.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (queue, mut rx) = mpsc::channel::<(AuditRow, Ack)>(4 * MAX_BATCH);
        tokio::spawn(async move {
            let mut rows = Vec::with_capacity(MAX_BATCH);
            let mut acks = Vec::with_capacity(MAX_BATCH);
            while let Some((row, ack)) = rx.recv().await {
                rows.push(row);
                acks.push(ack);
                while rows.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok((row, ack)) => {
                            rows.push(row);
                            acks.push(ack);
                        }
                        Err(_) => break,
                    }
                }
                let result = store.append_audit(&rows).await.map(|appended| (store.change_epoch(), appended.refused));
                for (i, ack) in acks.drain(..).enumerate() {
                    let _ = ack.send(match &result {
                        Ok((_, refused)) if refused.contains(&i) => Err(Error::Conflict(CHANGED_MEANWHILE.into())),
                        Ok((epoch, _)) => Ok(*epoch),
                        Err(e) => Err(Error::Internal(format!("audit write failed: {}", e.public_message_with_cause()))),
                    });
                }
                rows.clear();
            }
        });
        AuditWriter { queue }
    }

    /// Appends `row` and returns once it is committed, with the store's
    /// change epoch as of the commit; `409` (`CHANGED_MEANWHILE`) if the
    /// store refused it (see `Appended::refused`).
    pub async fn record(&self, row: AuditRow) -> Result<u64> {
        let (ack, done) = oneshot::channel();
        self.queue.send((row, ack)).await.map_err(|_| Error::internal("audit writer stopped"))?;
        done.await.map_err(|_| Error::internal("audit writer stopped"))?
    }
}
