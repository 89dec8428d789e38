//! Monthly API-call counts: plans are quotas (DESIGN.md), and a plan's
//! `apiCallsPerMonth` caps the authenticated calls of a tenant in a calendar
//! month (UTC). Without it, anyone who signs up on an open server could store
//! versions without end at the per-minute rate.
//!
//! The count is the tenant's audit entries this month, the number
//! `GET /api/v1/plan` shows. Counting a month of entries anew is a scan of all
//! of them, seconds for a busy tenant, so each process counts a tenant's month
//! once and then only what is newer: entries more than [`SETTLE`] old are
//! settled, their count kept, and each later count scans from there on. A
//! quota check reads that count at most every [`SYNC`] and counts its own
//! calls in memory in between; several processes on one database each catch
//! up with the others' calls within [`SYNC`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{Datelike, TimeZone, Utc};

use crate::error::{Error, Result};
use crate::store::{Millis, Store, now_millis};

/// How long a process counts a tenant's calls on its own before reading the
/// database's count again.
const SYNC: Duration = Duration::from_secs(30);

/// Entries this much older than the latest count are taken as complete: an
/// entry's time is taken before its batch commits (milliseconds, seconds at
/// worst), and on PostgreSQL by the clock of the replica that wrote it. One
/// that commits later still, with an older time, is not counted.
const SETTLE: Millis = 60_000;

#[derive(Default)]
pub struct MonthlyCalls {
    tenants: Mutex<HashMap<String, Seen>>,
}

#[derive(Clone, Copy)]
struct Seen {
    month_start: Millis,
    /// Entries before this time are counted in `settled` and never scanned again.
    settled_to: Millis,
    settled: i64,
    /// The month's calls as last counted, plus those this process counted since.
    calls: i64,
    read_at: Instant,
}

impl MonthlyCalls {
    /// Counts one call of `tenant_id`, or refuses it once the month's `limit`
    /// is used up (403 `PLAN_LIMIT_REACHED`).
    pub async fn count(&self, store: &dyn Store, tenant_id: &str, limit: i64) -> Result<()> {
        let month_start = month_start();
        {
            let mut tenants = self.tenants.lock().expect("not poisoned");
            if let Some(seen) = tenants.get_mut(tenant_id)
                && seen.month_start == month_start
                && seen.read_at.elapsed() < SYNC
            {
                return take(&mut seen.calls, limit);
            }
        }
        let mut seen = self.read(store, tenant_id, month_start).await?;
        let answer = take(&mut seen.calls, limit);
        self.tenants.lock().expect("not poisoned").insert(tenant_id.to_owned(), seen);
        answer
    }

    /// The tenant's calls this month, counted now.
    pub async fn current(&self, store: &dyn Store, tenant_id: &str) -> Result<i64> {
        let seen = self.read(store, tenant_id, month_start()).await?;
        self.tenants.lock().expect("not poisoned").insert(tenant_id.to_owned(), seen);
        Ok(seen.calls)
    }

    /// Counts what is newer than the settled part of the month.
    async fn read(&self, store: &dyn Store, tenant_id: &str, month_start: Millis) -> Result<Seen> {
        let known = self.tenants.lock().expect("not poisoned").get(tenant_id).copied().filter(|s| s.month_start == month_start);
        // Tenants of earlier months are forgotten as they are met again; the
        // map holds at most one entry per tenant that made a call.
        let (settled_to, settled) = known.map_or((month_start, 0), |s| (s.settled_to, s.settled));
        let split = (now_millis() - SETTLE).max(settled_to);
        let (settling, newer) = store.count_audit_since(tenant_id, settled_to, split).await?;
        Ok(Seen { month_start, settled_to: split, settled: settled + settling, calls: settled + newer, read_at: Instant::now() })
    }
}

fn take(calls: &mut i64, limit: i64) -> Result<()> {
    if *calls >= limit {
        return Err(Error::PlanLimitReached(format!(
            "this tenant has used the {limit} API calls of its plan for this month (UTC); \
             they renew on the 1st, or an operator can move the tenant to a larger plan"
        )));
    }
    *calls += 1;
    Ok(())
}

/// The first millisecond of this calendar month, UTC.
pub fn month_start() -> Millis {
    let now = Utc::now();
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).single().map_or(0, |t| t.timestamp_millis())
}
