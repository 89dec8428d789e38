//! Stored data that does not read back as what was written: an integrity
//! failure, never a default. A tag list that does not parse must not read as
//! "no tags", nor a missing version as "no version": the vault would answer
//! something the database does not say.

use crate::error::Error;

/// The error for a stored value that does not parse, logged with where it
/// lies (table, column, row id) and never the value itself.
pub(crate) fn unreadable(table: &'static str, column: &'static str, row_id: &str) -> Error {
    tracing::error!(table, column, row_id = ?row_id, "stored data does not parse");
    Error::Integrity
}

/// The 1-based position `n` that a statement answered for one of `len`
/// inputs it was given (`WITH ORDINALITY`, `generate_series`), as an index.
/// Anything else is a bug in that statement, never a reason to skip a check.
pub(crate) fn position(n: i64, len: usize) -> crate::error::Result<usize> {
    usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .filter(|&i| i < len)
        .ok_or_else(|| Error::internal(format_args!("a statement answered position {n} of {len}")))
}
