//! Monthly API-call quotas: plans are quotas (DESIGN.md), and a plan's
//! `apiCallsPerMonth` caps the authenticated calls of a tenant in a calendar
//! month (UTC). Without it, anyone who signs up on an open server could store
//! versions without end at the per-minute rate.
//!
//! The count is the tenant's audit entries this month, the number
//! `GET /api/v1/plan` shows. Reading it on every call would cost a query per
//! request, so each process reads it at most every [`SYNC`] and counts its own
//! calls in memory in between; several processes on one database each catch
//! up with the others' calls within [`SYNC`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{Datelike, TimeZone, Utc};

use crate::error::{Error, Result};
use crate::store::{Millis, Store};

/// How long a process counts a tenant's calls on its own before reading the
/// database's count again.
const SYNC: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct MonthlyCalls {
    tenants: Mutex<HashMap<String, Seen>>,
}

struct Seen {
    month_start: Millis,
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
        let mut calls = store.count_audit_since(tenant_id, month_start).await?;
        let answer = take(&mut calls, limit);
        let mut tenants = self.tenants.lock().expect("not poisoned");
        // Tenants of earlier months are forgotten as they are met again;
        // the map holds at most one entry per tenant that made a call.
        tenants.insert(tenant_id.to_owned(), Seen { month_start, calls, read_at: Instant::now() });
        answer
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
