//! Reading the audit trail. There is deliberately no way to change it.
//!
//! Every read appends an entry, so a busy tenant's trail runs to millions of
//! rows, and its queries share the database's few reader connections with
//! every other request. Each query's work is therefore bounded, whatever the
//! size of the trail: a deep `offset` is refused, the count stops early, and
//! a filter by action or resource type (neither has an index) examines a
//! window of entries per request and hands out a cursor to the next one.
//! Clients that need more page with `cursor` or narrow the dates.
//!
//! An export reads the whole range it is given, but as the same bounded
//! queries, one page at a time, so it holds a database connection only while
//! a page is read and never the whole trail in memory.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

use super::views::*;
use super::{Permission, Principal, Vault, audited};
use crate::error::{Error, Result};
use crate::store::{AuditFilter, AuditRow, Millis, Store};

// The API docs (views::AuditQuery, views::AuditPage, llms.txt, README) quote
// these numbers.
/// Deepest `offset`: skipping entries costs as much as reading them.
pub const MAX_OFFSET: i64 = 10_000;
/// Most matching entries a query counts; past it `total` says "at least".
pub const COUNT_CAP: i64 = 10_000;
/// Entries a query filtered by action or resource type examines for its
/// page, and for its count when the page did not see them all (see
/// `AuditFilter::scan`).
pub const SCAN_ROWS: i64 = 100_000;

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

/// A position in the trail, newest first: `(at, id)` of the last entry seen.
fn encode_cursor(at: Millis, id: i64) -> String {
    super::cursor::encode(&(at, id))
}

/// Where the next page starts: after the last entry returned when the page
/// is full, or past the window the scan stopped at (`i64::MIN`: every entry
/// of that millisecond was examined).
fn next_position(rows: &[AuditRow], page_full: bool, unscanned_before: Option<Millis>) -> Option<(Millis, i64)> {
    match (page_full, rows.last(), unscanned_before) {
        (true, Some(last), _) => Some((last.at, last.id)),
        (_, _, Some(at)) => Some((at, i64::MIN)),
        _ => None,
    }
}

/// Entries an export reads per query.
const EXPORT_PAGE: i64 = 1000;

/// The filters the query and the export share, with their dates parsed.
/// The row-by-row filters of an audit query: action, resource type, actor, front, tool.
pub struct Matching {
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub actor: Option<String>,
    pub front: Option<String>,
    pub tool: Option<String>,
}

fn range_filter(m: Matching, start: Option<&str>, end: Option<&str>) -> Result<AuditFilter> {
    let given = |v: Option<String>| v.filter(|s| !s.is_empty());
    Ok(AuditFilter {
        action: given(m.action),
        resource_type: given(m.resource_type),
        actor: given(m.actor),
        front: given(m.front),
        tool: given(m.tool),
        start: start.filter(|s| !s.is_empty()).map(|s| parse_bound("startDate", s, false)).transpose()?,
        end: end.filter(|s| !s.is_empty()).map(|s| parse_bound("endDate", s, true)).transpose()?,
        scan: SCAN_ROWS,
        ..AuditFilter::default()
    })
}

/// Only a tenant-wide admin key reads the trail.
fn may_read_trail(p: &Principal) -> Result<()> {
    p.require_key("read the audit trail")?;
    p.require(Permission::Admin)?;
    if p.project_scope.is_some() {
        // Its rows name secrets, projects and keys of every project.
        return Err(Error::ScopeDenied("the audit trail covers the whole tenant; a project-scoped key cannot read it".into()));
    }
    Ok(())
}

/// An export's pages, newest first, read as they are asked for.
pub struct AuditPages {
    store: Arc<dyn Store>,
    tenant_id: String,
    filter: AuditFilter,
    done: bool,
}

impl AuditPages {
    /// The next entries (never an empty page), or `None` past the last one;
    /// an entry that does not parse ends the export with an integrity error.
    pub async fn next_page(&mut self) -> Result<Option<Vec<AuditEntry>>> {
        while !self.done {
            let mut found = self.store.query_audit(&self.tenant_id, &self.filter).await?;
            let page_full = found.rows.len() as i64 > EXPORT_PAGE;
            found.rows.truncate(EXPORT_PAGE as usize);
            self.filter.after = next_position(&found.rows, page_full, found.unscanned_before);
            self.done = self.filter.after.is_none();
            if !found.rows.is_empty() {
                return found.rows.iter().map(AuditEntry::try_from).collect::<Result<_>>().map(Some);
            }
        }
        Ok(None)
    }
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
                may_read_trail(p)?;
                let limit = q.limit.unwrap_or(100);
                let offset = q.offset.unwrap_or(0);
                if !(1..=1000).contains(&limit) || offset < 0 {
                    return Err(Error::InvalidRequest("limit must be 1-1000 and offset at least 0".into()));
                }
                if offset > MAX_OFFSET {
                    return Err(Error::InvalidRequest(format!(
                        "offset is at most {MAX_OFFSET}: narrow the range with startDate and endDate, or page with cursor (nextCursor of the previous page)"
                    )));
                }
                let after = q.cursor.as_deref().filter(|c| !c.is_empty()).map(super::cursor::decode::<(Millis, i64)>).transpose()?;
                if after.is_some() && offset > 0 {
                    return Err(Error::InvalidRequest("give either cursor or offset, not both".into()));
                }
                let filter = AuditFilter {
                    after,
                    // One more than asked tells whether the page is full.
                    limit: limit + 1,
                    offset,
                    count_limit: COUNT_CAP + 1,
                    ..range_filter(
                        Matching { action: q.action, resource_type: q.resource_type, actor: q.actor, front: q.front, tool: q.tool },
                        q.start_date.as_deref(),
                        q.end_date.as_deref()
                    )?
                };
                let mut found = self.store.query_audit(&p.tenant_id, &filter).await?;
                let page_full = found.rows.len() as i64 > limit;
                found.rows.truncate(limit as usize);
                let next_cursor = next_position(&found.rows, page_full, found.unscanned_before).map(|(at, id)| encode_cursor(at, id));
                let logs = found.rows.iter().map(AuditEntry::try_from).collect::<Result<_>>()?;
                self.record_read(p, p.audit("audit.query", "audit", None, "success")).await?;
                Ok(AuditPage {
                    logs,
                    total: found.total.min(COUNT_CAP),
                    total_is_lower_bound: found.total > COUNT_CAP || found.total_partial,
                    limit,
                    offset,
                    has_more: next_cursor.is_some(),
                    next_cursor,
                })
            }
            .await
        )
    }

    /// The trail in the range `q` gives, every matching entry, newest first.
    /// The export's own entry is durable before its first page is read.
    pub async fn export_audit(&self, p: &Principal, q: AuditExportQuery) -> Result<AuditPages> {
        audited!(
            self,
            p,
            "audit.export",
            "audit",
            None,
            async {
                may_read_trail(p)?;
                let filter = AuditFilter {
                    // One more than a page tells whether another follows.
                    limit: EXPORT_PAGE + 1,
                    // No count: an export's length is its entries.
                    count_limit: 0,
                    ..range_filter(
                        Matching { action: q.action, resource_type: q.resource_type, actor: q.actor, front: q.front, tool: q.tool },
                        q.start_date.as_deref(),
                        q.end_date.as_deref(),
                    )?
                };
                self.record_read(p, p.audit("audit.export", "audit", None, "success")).await?;
                Ok(AuditPages { store: self.store.clone(), tenant_id: p.tenant_id.clone(), filter, done: false })
            }
            .await
        )
    }
}
