//! Rows bound as whole columns: one array parameter per column, so one
//! statement text serves every batch size.

use crate::store::AuditRow;

pub(super) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

pub(super) fn column<'r, T, U>(rows: &'r [T], f: impl Fn(&'r T) -> U) -> Vec<U> {
    rows.iter().map(f).collect()
}

/// `item`'s 1-based position in `seen`, added at the end if new (batches are
/// small and mostly repeat one key and one secret, so a scan beats a map).
pub(super) fn position_of<T: PartialEq>(seen: &mut Vec<T>, item: T) -> i64 {
    let at = seen.iter().position(|s| *s == item).unwrap_or_else(|| {
        seen.push(item);
        seen.len() - 1
    });
    at as i64 + 1
}

/// The audit columns as typed array parameters, in `AUDIT_INTO`'s order:
/// the eleven of [`bind_audit_columns`] from `$first`, then the five of
/// [`bind_chain_columns`] from `$extra` (bound last, after a statement's
/// other parameters).
pub(super) fn audit_params(first: usize, extra: usize) -> Vec<String> {
    let types = ["text", "bigint", "text", "text", "text", "text", "text", "text", "text", "text", "text"];
    let chain = ["bigint", "bytea", "text", "text", "text"];
    let main = types.iter().enumerate().map(|(i, t)| format!("${}::{t}[]", first + i));
    main.chain(chain.iter().enumerate().map(|(i, t)| format!("${}::{t}[]", extra + i))).collect()
}

/// The columns of [`audit_params`] unnested in a select list, in step, each
/// named as in [`audit_names`]. In the select list the arrays are read row
/// by row; in `FROM`, PostgreSQL first copies each into a tuplestore.
pub(super) fn unnested(first: usize, extra: usize) -> String {
    audit_params(first, extra).iter().zip(audit_names()).map(|(p, c)| format!("unnest({p}) AS {c}")).collect::<Vec<_>>().join(", ")
}

/// Names for the columns of [`audit_params`] where a query must name them.
pub(super) fn audit_names() -> Vec<String> {
    (1..=crate::store::sql::AUDIT_WIDTH).map(|i| format!("c{i}")).collect()
}

/// Binds audit rows as eleven column arrays, after whatever `q` binds.
pub(super) fn bind_audit_columns<'q>(q: PgQuery<'q>, a: &'q [AuditRow]) -> PgQuery<'q> {
    q.bind(column(a, |a| a.tenant_id.as_deref()))
        .bind(column(a, |a| a.at))
        .bind(column(a, |a| a.actor.as_str()))
        .bind(column(a, |a| a.front.as_str()))
        .bind(column(a, |a| a.action.as_str()))
        .bind(column(a, |a| a.resource_type.as_str()))
        .bind(column(a, |a| a.resource_id.as_deref()))
        .bind(column(a, |a| a.outcome.as_str()))
        .bind(column(a, |a| a.ip.as_deref()))
        .bind(column(a, |a| a.user_agent.as_deref()))
        .bind(column(a, |a| a.detail.as_deref()))
}

/// Binds the audit rows' chain and agent columns as five arrays (see
/// [`audit_params`]), after whatever `q` binds.
pub(super) fn bind_chain_columns<'q>(q: PgQuery<'q>, a: &'q [AuditRow]) -> PgQuery<'q> {
    q.bind(column(a, |a| a.chain_seq))
        .bind(column(a, |a| a.chain_hash.as_deref()))
        .bind(column(a, |a| a.client.as_deref()))
        .bind(column(a, |a| a.tool.as_deref()))
        .bind(column(a, |a| a.reason.as_deref()))
}
