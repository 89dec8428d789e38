//! Statements whose shape depends on the request: a secret listing's
//! filters and an audit query's conditions, each with its binds in order.

use super::dialect::{Dialect, Stmt};

/// A bound parameter of a query whose shape depends on the filters given.
#[derive(Clone)]
pub(super) enum Bind {
    Text(String),
    Int(i64),
}

/// A `LIKE … ESCAPE '\'` pattern matching `text` anywhere, with `%`, `_` and
/// `\` escaped, after `lower`.
/// A scope glob (`*` any run, `?` one character) as a LIKE pattern.
fn like_glob(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 4);
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

pub(super) fn like_contains(text: &str, lower: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in lower(text).chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// A secret's path (`vault::scopes::path`) in SQL.
const PATH: &str = "(CASE WHEN s.environment = '' THEN s.name ELSE s.environment || '/' || s.name END)";

/// Builds the WHERE clause and binds of a secret listing.
pub(super) fn secret_list_query(tenant_id: &str, f: &crate::store::SecretFilter) -> (String, Vec<Bind>) {
    let mut sql = String::from(
        "SELECT s.id, s.tenant_id, s.project_id, s.environment, s.name, s.secret_type, s.description, \
         s.tags, s.current_version, s.created_at, s.updated_at, s.access_tier, s.exposure, s.bindings, s.expires_at, s.deleted_at, s.max_versions, s.retiring_version, s.retiring_until FROM secrets s WHERE s.tenant_id = $1",
    );
    let mut binds = vec![Bind::Text(tenant_id.to_owned())];
    let mut push = |sql: &mut String, clause: &str, value: String| {
        binds.push(Bind::Text(value));
        sql.push_str(&clause.replace("$?", &format!("${}", binds.len())));
    };
    // A soft-deleted secret is gone for every listing but the restorable one.
    sql.push_str(if f.deleted { " AND s.deleted_at IS NOT NULL" } else { " AND s.deleted_at IS NULL" });
    if let Some(v) = &f.secret_type {
        push(&mut sql, " AND s.secret_type = $?", v.clone());
    }
    if let Some(v) = &f.path_prefix {
        // Exact on both databases (SQLite's LIKE ignores ASCII case).
        push(&mut sql, &format!(" AND SUBSTR({PATH}, 1, LENGTH($?)) = $?"), v.clone());
    }
    if let Some(v) = &f.environment {
        push(&mut sql, " AND s.environment = $?", v.clone());
    }
    if let Some(v) = &f.project_id {
        push(&mut sql, " AND s.project_id = $?", v.clone());
    }
    if let Some(v) = &f.tag {
        push(&mut sql, " AND EXISTS (SELECT 1 FROM secret_tags t WHERE t.secret_id = s.id AND t.tag = $?)", v.clone());
    }
    if let Some(v) = &f.search {
        // Two patterns: PostgreSQL's LOWER folds every letter, SQLite's only
        // ASCII ones. Fully lowered, the term matches PostgreSQL's folding and
        // any text already in lower case; lowered in ASCII only, it matches
        // SQLite's folding, so text found as written on one backend is on both.
        sql.push_str(" AND (1 = 0");
        for pattern in [like_contains(v, str::to_lowercase), like_contains(v, str::to_ascii_lowercase)] {
            push(
                &mut sql,
                " OR LOWER(s.name) LIKE $? ESCAPE '\\' OR LOWER(COALESCE(s.description, '')) LIKE $? ESCAPE '\\' \
                 OR EXISTS (SELECT 1 FROM secret_tags t WHERE t.secret_id = s.id AND LOWER(t.tag) LIKE $? ESCAPE '\\')",
                pattern,
            );
        }
        sql.push(')');
    }
    if let Some(globs) = &f.path_globs {
        sql.push_str(" AND (1 = 0");
        for g in globs {
            push(&mut sql, &format!(" OR {PATH} LIKE $? ESCAPE '\\'"), like_glob(g));
        }
        sql.push(')');
    }
    if let Some(t) = f.hide_expired_at {
        binds.push(Bind::Int(t));
        sql.push_str(&format!(" AND (s.expires_at IS NULL OR s.expires_at > ${})", binds.len()));
    }
    if let Some(t) = f.expiring_before {
        binds.push(Bind::Int(t));
        sql.push_str(&format!(" AND s.expires_at IS NOT NULL AND s.expires_at <= ${}", binds.len()));
    }
    if let Some(scope) = &f.project_scope {
        if scope.is_empty() {
            sql.push_str(" AND 1 = 0");
        } else {
            sql.push_str(" AND s.project_id IN (");
            for (i, p) in scope.iter().enumerate() {
                binds.push(Bind::Text(p.clone()));
                sql.push_str(&format!("{}${}", if i > 0 { ", " } else { "" }, binds.len()));
            }
            sql.push(')');
        }
    }
    if let Some((name, id)) = &f.after {
        binds.push(Bind::Text(name.clone()));
        binds.push(Bind::Text(id.clone()));
        sql.push_str(&format!(" AND (s.name, s.id) > (${}, ${})", binds.len() - 1, binds.len()));
    }
    sql.push_str(&format!(" ORDER BY s.name, s.id LIMIT {}", f.limit.clamp(1, 1000)));
    (sql, binds)
}

/// The WHERE clause of an audit query and its binds, a condition at a time.
/// Only the tenant and times are in an index (`audit_by_tenant_time`); the
/// action and resource type are checked row by row.
pub(super) struct AuditWhere {
    pub sql: String,
    pub binds: Vec<Bind>,
}

impl AuditWhere {
    /// The tenant's entries within the query's dates.
    pub(super) fn range(tenant_id: &str, f: &crate::store::AuditFilter) -> Self {
        let mut w = AuditWhere { sql: String::from(" FROM audit_log WHERE tenant_id = $1"), binds: vec![Bind::Text(tenant_id.to_owned())] };
        if let Some(v) = f.start {
            w.add(" AND at >= $?", Bind::Int(v));
        }
        if let Some(v) = f.end {
            w.add(" AND at <= $?", Bind::Int(v));
        }
        w
    }

    /// Entries after the cursor `(at, id)` in newest-first order. Spelled so
    /// that `at <= …` is an index range on both databases (PostgreSQL's index
    /// does not hold `id`).
    pub(super) fn after(mut self, cursor: Option<(i64, i64)>) -> Self {
        if let Some((at, id)) = cursor {
            self = self.until(Some(at));
            self.add(" AND (at < $?", Bind::Int(at));
            self.add(" OR id < $?)", Bind::Int(id));
        }
        self
    }

    /// Entries no newer than `at`.
    pub(super) fn until(mut self, at: Option<i64>) -> Self {
        if let Some(at) = at {
            self.add(" AND at <= $?", Bind::Int(at));
        }
        self
    }

    /// Entries no older than `at`: the window a bounded scan examines.
    pub(super) fn since(mut self, at: Option<i64>) -> Self {
        if let Some(at) = at {
            self.add(" AND at >= $?", Bind::Int(at));
        }
        self
    }

    /// The action, resource type, actor, front and tool filters (none
    /// indexed: the scan is bounded, see `AuditFilter::scan`).
    pub(super) fn matching(mut self, f: &crate::store::AuditFilter) -> Self {
        if let Some(v) = &f.action {
            self.add(" AND action = $?", Bind::Text(v.clone()));
        }
        if let Some(v) = &f.resource_type {
            self.add(" AND resource_type = $?", Bind::Text(v.clone()));
        }
        if let Some(v) = &f.actor {
            self.add(" AND actor = $?", Bind::Text(v.clone()));
        }
        if let Some(v) = &f.front {
            self.add(" AND front = $?", Bind::Text(v.clone()));
        }
        if let Some(v) = &f.tool {
            self.add(" AND tool = $?", Bind::Text(v.clone()));
        }
        self
    }

    fn add(&mut self, clause: &str, b: Bind) {
        self.binds.push(b);
        self.sql.push_str(&clause.replace("$?", &format!("${}", self.binds.len())));
    }
}

/// Binds `binds` in order, after whatever `q` already binds.
pub(super) fn bind_all<'q, D: Dialect>(mut q: Stmt<'q, D>, binds: Vec<Bind>) -> Stmt<'q, D> {
    for b in binds {
        q = match b {
            Bind::Text(s) => q.bind(s),
            Bind::Int(i) => q.bind(i),
        };
    }
    q
}

#[cfg(test)]
mod tests {
    #[test]
    fn globs_become_like_patterns() {
        assert_eq!(super::like_glob("production/gemini/*"), "production/gemini/%");
        assert_eq!(super::like_glob("a?b"), "a_b");
        assert_eq!(super::like_glob("100%_\\x*"), "100\\%\\_\\\\x%");
    }
}
