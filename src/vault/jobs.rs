//! The one loop of the background jobs `latchkey serve` runs: the sweep,
//! scheduled rotations, audit retention, webhook deliveries and the data-key
//! reseal pass each call [`every`] with their own period and turn.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `turn` at once and then every `period` until `stop` is cancelled,
/// never two turns at once; a turn that overruns delays the next tick rather
/// than bunching the missed ones. A turn under way when `stop` fires is
/// dropped at its next await: every job writes in transactions that commit
/// or roll back whole, so a dropped turn leaves nothing half done (audit
/// retention's archive may then hold a batch twice; see `retention`).
pub async fn every<F, Fut>(period: Duration, stop: &CancellationToken, mut turn: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            () = turn() => {}
        }
    }
}
