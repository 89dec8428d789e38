//! Approvals and the tenant's approval policy: each change of an approval's
//! status is one conditional UPDATE from the state it leaves, committed with
//! its audit entry, so racing deciders (or readers of a one-use grant) end
//! in exactly one outcome.

use sqlx::AssertSqlSafe;

use super::dialect::query;
use super::{Backend, writes};
use crate::error::Result;
use crate::store::{ApprovalAudit, ApprovalRow, AuditRow, Decision, Millis};

/// Every column of `approvals`, in [`ApprovalRow`]'s order.
const COLS: &str = "id, tenant_id, kind, requester_id, requester_name, secret_id, token_request, gated_secret_ids, reason, ip, \
     status, created_at, expires_at, decided_at, decided_by, decided_how, deny_reason, grant_expires_at, grant_uses_left";

/// The same columns of `approvals a`, with the secret as it is now.
const JOINED: &str = "a.id, a.tenant_id, a.kind, a.requester_id, a.requester_name, a.secret_id, a.token_request, \
     a.gated_secret_ids, a.reason, a.ip, a.status, a.created_at, a.expires_at, a.decided_at, a.decided_by, a.decided_how, \
     a.deny_reason, a.grant_expires_at, a.grant_uses_left, s.name AS secret_name, s.environment AS secret_environment, \
     s.access_tier AS secret_tier FROM approvals a LEFT JOIN secrets s ON s.id = a.secret_id AND s.tenant_id = a.tenant_id";

pub(super) async fn gate_sensitive<B: Backend>(b: &B, tenant_id: &str) -> Result<bool> {
    Ok(query::<B::Db>("SELECT gate_sensitive FROM tenants WHERE id = $1")
        .bind(tenant_id)
        .fetch_optional_scalar::<bool>(b.reader())
        .await?
        .unwrap_or(false))
}

pub(super) async fn set_gate_sensitive<B: Backend>(b: &B, tenant_id: &str, on: bool, audit: &AuditRow) -> Result<bool> {
    let mut conn = b.write_conn().await?;
    let mut tx = B::begin_write(&mut conn).await?;
    let n = query::<B::Db>("UPDATE tenants SET gate_sensitive = $2 WHERE id = $1").bind(tenant_id).bind(on).execute(&mut *tx).await?;
    if n == 0 {
        return Ok(false);
    }
    writes::insert_audit(&mut tx, audit).await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn open_approval<B: Backend>(
    b: &B,
    row: &ApprovalRow,
    now: Millis,
    requested: ApprovalAudit<'_>,
    expired: ApprovalAudit<'_>,
) -> Result<ApprovalRow> {
    let mut conn = b.write_conn().await?;
    let mut tx = B::begin_write(&mut conn).await?;
    let existing: Option<ApprovalRow> = if row.kind == "read" {
        // A lapsed pending request holds the unique index: expire it first.
        let lapsed: Vec<ApprovalRow> = query::<B::Db>(AssertSqlSafe(format!(
            "UPDATE approvals SET status = 'expired' WHERE tenant_id = $1 AND requester_id = $2 AND secret_id = $3 \
             AND kind = 'read' AND status = 'pending' AND expires_at <= $4 RETURNING {COLS}"
        )))
        .bind(&row.tenant_id)
        .bind(&row.requester_id)
        .bind(&row.secret_id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for r in &lapsed {
            writes::insert_audit(&mut tx, &expired(r)).await?;
        }
        query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {COLS} FROM approvals WHERE tenant_id = $1 AND requester_id = $2 AND secret_id = $3 \
             AND kind = 'read' AND status = 'pending'"
        )))
        .bind(&row.tenant_id)
        .bind(&row.requester_id)
        .bind(&row.secret_id)
        .fetch_optional(&mut *tx)
        .await?
    } else {
        query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {COLS} FROM approvals WHERE tenant_id = $1 AND requester_id = $2 AND kind = 'token' \
             AND status = 'pending' AND expires_at > $3 AND token_request = $4 ORDER BY created_at DESC LIMIT 1"
        )))
        .bind(&row.tenant_id)
        .bind(&row.requester_id)
        .bind(now)
        .bind(&row.token_request)
        .fetch_optional(&mut *tx)
        .await?
    };
    if let Some(existing) = existing {
        tx.commit().await?;
        return Ok(existing);
    }
    // Concurrent first reads (PostgreSQL) meet at the unique index: the
    // losers wait for the winner's commit and answer its request.
    let inserted = query::<B::Db>(AssertSqlSafe(format!(
        "INSERT INTO approvals ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
         ON CONFLICT DO NOTHING"
    )))
    .bind(&row.id)
    .bind(&row.tenant_id)
    .bind(&row.kind)
    .bind(&row.requester_id)
    .bind(&row.requester_name)
    .bind(&row.secret_id)
    .bind(&row.token_request)
    .bind(&row.gated_secret_ids)
    .bind(&row.reason)
    .bind(&row.ip)
    .bind("pending")
    .bind(row.created_at)
    .bind(row.expires_at)
    .bind(None::<i64>)
    .bind(None::<String>)
    .bind(None::<String>)
    .bind(None::<String>)
    .bind(None::<i64>)
    .bind(None::<i64>)
    .execute(&mut *tx)
    .await?;
    if inserted == 0 {
        let winner: Option<ApprovalRow> = query::<B::Db>(AssertSqlSafe(format!(
            "SELECT {COLS} FROM approvals WHERE tenant_id = $1 AND requester_id = $2 AND secret_id = $3 \
             AND kind = 'read' AND status = 'pending'"
        )))
        .bind(&row.tenant_id)
        .bind(&row.requester_id)
        .bind(&row.secret_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        // Decided in the instant between: the caller's next read finds its state.
        return winner.ok_or_else(|| crate::error::Error::Conflict("the approval request changed while it was opened; retry".into()));
    }
    writes::insert_audit(&mut tx, &requested(row)).await?;
    tx.commit().await?;
    Ok(ApprovalRow { status: "pending".into(), ..row.clone() })
}

pub(super) async fn use_grant<B: Backend>(
    b: &B,
    tenant_id: &str,
    requester_id: &str,
    secret_id: &str,
    now: Millis,
    used: ApprovalAudit<'_>,
) -> Result<Option<ApprovalRow>> {
    let mut conn = b.write_conn().await?;
    let mut tx = B::begin_write(&mut conn).await?;
    // The conditions stand in the outer WHERE too: a racing use that
    // committed first makes PostgreSQL re-evaluate them on the new row.
    let row: Option<ApprovalRow> = query::<B::Db>(AssertSqlSafe(format!(
        "UPDATE approvals SET grant_uses_left = grant_uses_left - 1, \
         status = CASE WHEN grant_uses_left <= 1 THEN 'used' ELSE status END \
         WHERE id = (SELECT id FROM approvals WHERE tenant_id = $1 AND requester_id = $2 AND secret_id = $3 AND kind = 'read' \
                     AND status = 'approved' AND grant_uses_left > 0 AND grant_expires_at > $4 ORDER BY created_at LIMIT 1) \
         AND status = 'approved' AND grant_uses_left > 0 AND grant_expires_at > $4 RETURNING {COLS}"
    )))
    .bind(tenant_id)
    .bind(requester_id)
    .bind(secret_id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    writes::insert_audit(&mut tx, &used(&row)).await?;
    tx.commit().await?;
    Ok(Some(row))
}

pub(super) async fn get_approval<B: Backend>(b: &B, tenant_id: Option<&str>, id: &str) -> Result<Option<ApprovalRow>> {
    query::<B::Db>(AssertSqlSafe(format!("SELECT {JOINED} WHERE ($1 IS NULL OR a.tenant_id = $1) AND a.id = $2")))
        .bind(tenant_id.map(str::to_owned))
        .bind(id.to_owned())
        .fetch_optional(b.reader())
        .await
}

pub(super) async fn list_approvals<B: Backend>(
    b: &B,
    tenant_id: Option<&str>,
    requester_id: Option<&str>,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<ApprovalRow>> {
    query::<B::Db>(AssertSqlSafe(format!(
        "SELECT {JOINED} WHERE ($1 IS NULL OR a.tenant_id = $1) AND ($2 IS NULL OR a.requester_id = $2) AND ($3 IS NULL OR a.status = $3) \
         ORDER BY a.created_at DESC, a.id LIMIT {}",
        limit.clamp(1, 1000)
    )))
    .bind(tenant_id.map(str::to_owned))
    .bind(requester_id.map(str::to_owned))
    .bind(status.map(str::to_owned))
    .fetch_all(b.reader())
    .await
}

pub(super) async fn decide_approval<B: Backend>(
    b: &B,
    tenant_id: &str,
    id: &str,
    d: &Decision,
    audit: &AuditRow,
) -> Result<Option<ApprovalRow>> {
    let mut conn = b.write_conn().await?;
    let mut tx = B::begin_write(&mut conn).await?;
    let row: Option<ApprovalRow> = query::<B::Db>(AssertSqlSafe(format!(
        "UPDATE approvals SET status = $3, decided_at = $4, decided_by = $5, decided_how = $6, deny_reason = $7, \
         grant_expires_at = $8, grant_uses_left = $9 \
         WHERE tenant_id = $1 AND id = $2 AND status = 'pending' AND expires_at > $4 RETURNING {COLS}"
    )))
    .bind(tenant_id)
    .bind(id)
    .bind(d.status)
    .bind(d.decided_at)
    .bind(&d.decided_by)
    .bind(&d.decided_how)
    .bind(&d.deny_reason)
    .bind(d.grant_expires_at)
    .bind(d.grant_uses_left)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    writes::insert_audit(&mut tx, audit).await?;
    tx.commit().await?;
    Ok(Some(row))
}

pub(super) async fn expire_approvals<B: Backend>(
    b: &B,
    tenant_id: &str,
    ids: &[String],
    now: Millis,
    expired: ApprovalAudit<'_>,
) -> Result<Vec<ApprovalRow>> {
    let mut conn = b.write_conn().await?;
    let mut tx = B::begin_write(&mut conn).await?;
    let mut changed = Vec::new();
    for id in ids {
        let row: Option<ApprovalRow> = query::<B::Db>(AssertSqlSafe(format!(
            "UPDATE approvals SET status = 'expired' WHERE tenant_id = $1 AND id = $2 AND status = 'pending' \
             AND expires_at <= $3 RETURNING {COLS}"
        )))
        .bind(tenant_id)
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            writes::insert_audit(&mut tx, &expired(&row)).await?;
            changed.push(row);
        }
    }
    tx.commit().await?;
    Ok(changed)
}

pub(super) async fn take_token_approval<B: Backend>(
    b: &B,
    tenant_id: &str,
    id: &str,
    requester_id: &str,
    now: Millis,
    used: ApprovalAudit<'_>,
) -> Result<Option<ApprovalRow>> {
    let mut conn = b.write_conn().await?;
    let mut tx = B::begin_write(&mut conn).await?;
    let row: Option<ApprovalRow> = query::<B::Db>(AssertSqlSafe(format!(
        "UPDATE approvals SET status = 'used', grant_uses_left = 0 WHERE tenant_id = $1 AND id = $2 AND requester_id = $3 \
         AND kind = 'token' AND status = 'approved' AND grant_expires_at > $4 RETURNING {COLS}"
    )))
    .bind(tenant_id)
    .bind(id)
    .bind(requester_id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    writes::insert_audit(&mut tx, &used(&row)).await?;
    tx.commit().await?;
    Ok(Some(row))
}
