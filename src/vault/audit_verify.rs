//! `GET /api/v1/audit/verify` and `latchkey audit verify`: walks a tenant's
//! audit chain (see `store::chain`) in chain order, a bounded page at a time,
//! and names the first entry that does not link.
//!
//! - The walk starts after retention's checkpoint when there is one (the
//!   last pruned entry's position and hash), else at position 1.
//! - `startDate` picks the first entry reported, but that entry still links
//!   from its predecessor's stored hash (a missing predecessor breaks it).
//!   `endDate` stops the walk; the head is compared only when the walk
//!   reaches the end of the chain.
//! - An entry is broken when its position is not the next one (a row
//!   deleted or moved before it) or its hash is not the HMAC of its content
//!   after its predecessor's hash (an edited or swapped row). Entries
//!   deleted from the end show as a head beyond the last row: `truncated`.
//! - Rows written before chaining have no position: counted as `unchained`,
//!   neither verified nor broken.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::principal::Permission;
use super::{Principal, Vault, audited};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::chain::{self, GENESIS};

/// Rows read per query.
const PAGE: i64 = 1000;

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyQuery {
    /// RFC 3339 time or `YYYY-MM-DD` (inclusive): the first entry reported.
    pub start_date: Option<String>,
    /// RFC 3339 time or `YYYY-MM-DD` (inclusive, whole day): the last.
    pub end_date: Option<String>,
}

#[derive(Debug, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// Every entry walked links, and (without an end date) the chain ends
    /// where its head says.
    pub verified: bool,
    /// Entries walked and found linked (before the first broken one).
    pub entries: i64,
    /// The id (as GET /api/v1/audit shows it) of the first entry that fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_broken: Option<i64>,
    /// Why it fails: `position` (an entry before it is missing or moved),
    /// `hash` (it was changed), `predecessor` (the entry before the start
    /// date is missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Entries are missing from the end of the chain (its head is further).
    pub truncated: bool,
    /// Retention's checkpoint the walk started after, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointView>,
    /// Entries written before the chain existed (not verifiable, not broken).
    pub unchained: i64,
    /// The chain's last position.
    pub head: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointView {
    /// Position of the last pruned entry.
    pub seq: i64,
    pub pruned_entries: i64,
    /// Entries before this time (Unix ms) were pruned.
    pub pruned_before: i64,
}

/// Walks `chain` between `start` and `end` (Unix ms); `progress` hears the
/// number of entries walked so far, and the head's position first.
pub async fn verify_chain(
    store: &dyn Store,
    chain: &str,
    start: Option<i64>,
    end: Option<i64>,
    mut progress: impl FnMut(i64, i64) + Send,
) -> Result<VerifyReport> {
    let s = store.audit_chain();
    let head = s.head(chain).await?.unwrap_or_default();
    let checkpoint = s.checkpoint(chain).await?;
    let mut report = VerifyReport {
        unchained: s.unchained(chain).await?,
        head: head.seq,
        checkpoint: checkpoint.as_ref().map(|c| CheckpointView {
            seq: c.seq,
            pruned_entries: c.pruned_entries,
            pruned_before: c.pruned_before,
        }),
        ..Default::default()
    };
    progress(0, head.seq);
    let floor = checkpoint.as_ref().map_or(0, |c| c.seq);
    let (mut prev_seq, mut prev_hash) = match &checkpoint {
        Some(c) => (c.seq, c.hash.clone()),
        None => (0, GENESIS.to_vec()),
    };
    if let Some(start) = start {
        match s.first_since(chain, start).await? {
            // Nothing on or after the start: nothing to report.
            None => {
                report.verified = true;
                return Ok(report);
            }
            Some(first) if first - 1 > floor => {
                prev_seq = first - 1;
                match s.entry(chain, prev_seq).await? {
                    Some(p) => prev_hash = p.chain_hash.unwrap_or_default(),
                    None => {
                        let at = s.entry(chain, first).await?.map(|r| r.id);
                        report.first_broken = at;
                        report.reason = Some("predecessor");
                        return Ok(report);
                    }
                }
            }
            Some(_) => {}
        }
    }
    loop {
        let page = s.page(chain, prev_seq, PAGE).await?;
        let done = (page.len() as i64) < PAGE;
        for row in &page {
            if end.is_some_and(|end| row.at > end) {
                report.verified = true;
                return Ok(report);
            }
            let seq = row.chain_seq.unwrap_or_default();
            let broken = if seq != prev_seq + 1 {
                Some("position")
            } else if row.chain_hash.as_deref() != Some(chain::hash(chain, seq, &prev_hash, row).as_slice()) {
                Some("hash")
            } else {
                None
            };
            if let Some(reason) = broken {
                report.first_broken = Some(row.id);
                report.reason = Some(reason);
                return Ok(report);
            }
            prev_seq = seq;
            prev_hash = row.chain_hash.clone().unwrap_or_default();
            report.entries += 1;
        }
        progress(report.entries, head.seq);
        if done {
            break;
        }
    }
    // Rows gone from the end leave the head beyond the last one.
    report.truncated = head.seq > prev_seq;
    report.verified = !report.truncated;
    Ok(report)
}

impl Vault {
    /// The tenant's chain, verified (admin keys only).
    pub async fn verify_audit(&self, p: &Principal, q: VerifyQuery) -> Result<VerifyReport> {
        audited!(
            self,
            p,
            "audit.verify",
            "audit",
            None,
            async {
                p.require_key("verify the audit trail")?;
                p.require(Permission::Admin)?;
                if p.project_scope.is_some() {
                    return Err(Error::ScopeDenied(
                        "the audit trail covers the whole tenant; a project-scoped key cannot verify it".into(),
                    ));
                }
                let start = q
                    .start_date
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .map(|s| super::audit::parse_bound("startDate", s, false))
                    .transpose()?;
                let end =
                    q.end_date.as_deref().filter(|s| !s.is_empty()).map(|s| super::audit::parse_bound("endDate", s, true)).transpose()?;
                let report = verify_chain(self.store.as_ref(), &p.tenant_id, start, end, |_, _| {}).await?;
                self.record_read(p, p.audit("audit.verify", "audit", None, "success")).await?;
                Ok(report)
            }
            .await
        )
    }
}

/// `latchkey audit verify`: the operator's walk of a tenant's chain, with a
/// progress bar on stderr (hidden when stderr is not a terminal).
pub async fn operator_verify(vault: &Vault, tenant: &str, start: Option<&str>, end: Option<&str>) -> Result<VerifyReport> {
    let start = start.map(|s| super::audit::parse_bound("startDate", s, false)).transpose()?;
    let end = end.map(|s| super::audit::parse_bound("endDate", s, true)).transpose()?;
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} entries {elapsed}") {
        bar.set_style(style);
    }
    let report = verify_chain(vault.store().as_ref(), tenant, start, end, |done, head| {
        bar.set_length(head.max(0) as u64);
        bar.set_position(done.max(0) as u64);
    })
    .await;
    bar.finish_and_clear();
    report
}
