//! Reading the audit trail. There is deliberately no way to change it.

use chrono::{DateTime, NaiveDate, Utc};

use super::views::*;
use super::{Permission, Principal, Vault, audited};
use crate::error::{Error, Result};
use crate::store::AuditFilter;

/// Accepts RFC 3339 or a bare date; a bare end date covers its whole day.
/// Public for fuzzing (fuzz/fuzz_targets/audit_bound.rs).
pub fn parse_bound(field: &str, raw: &str, end_of_day: bool) -> Result<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc).timestamp_millis());
    }
    let d = NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| Error::InvalidRequest(format!("{field} must be an RFC 3339 time or YYYY-MM-DD")))?;
    let t = if end_of_day { d.and_hms_milli_opt(23, 59, 59, 999) } else { d.and_hms_opt(0, 0, 0) }.expect("valid time");
    Ok(t.and_utc().timestamp_millis())
}

impl Vault {
    pub async fn query_audit(&self, p: &Principal, q: AuditQuery) -> Result<AuditPage> {
        audited!(
            self,
            p,
            "audit.query",
            "audit",
            None,
            async {
                p.require(Permission::Admin)?;
                if p.project_scope.is_some() {
                    // Its rows name secrets, projects and keys of every project.
                    return Err(Error::ScopeDenied("the audit trail covers the whole tenant; a project-scoped key cannot read it".into()));
                }
                let limit = q.limit.unwrap_or(100);
                let offset = q.offset.unwrap_or(0);
                if !(1..=1000).contains(&limit) || offset < 0 {
                    return Err(Error::InvalidRequest("limit must be 1-1000 and offset at least 0".into()));
                }
                let filter = AuditFilter {
                    action: q.action.filter(|s| !s.is_empty()),
                    resource_type: q.resource_type.filter(|s| !s.is_empty()),
                    start: q.start_date.as_deref().filter(|s| !s.is_empty()).map(|s| parse_bound("startDate", s, false)).transpose()?,
                    end: q.end_date.as_deref().filter(|s| !s.is_empty()).map(|s| parse_bound("endDate", s, true)).transpose()?,
                    limit,
                    offset,
                };
                let (rows, total) = self.store.query_audit(&p.tenant_id, &filter).await?;
                self.record_read(p, p.audit("audit.query", "audit", None, "success")).await?;
                Ok(AuditPage { logs: rows.iter().map(AuditEntry::from).collect(), total, limit, offset })
            }
            .await
        )
    }
}
