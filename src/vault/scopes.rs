//! What a scoped token may touch: `secrets:{read|write|list|delete|*}:{glob}`,
//! the glob matched against a secret's *path* (see [`path`]).
//!
//! A path is the secret's environment and name joined by `/`
//! (`production/gemini/API_KEY` is the secret `gemini/API_KEY` of
//! environment `production`); a secret with no environment has its bare name
//! as its path. In a glob, `*` matches any run of characters, `/` included, and
//! `?` exactly one: `production/*` covers every secret of `production`,
//! `*` every secret. Nothing else is special.

use super::Permission;
use crate::error::{Error, Result};

/// The one function that makes a secret's path: scopes, and later the
/// path routes, use it.
pub fn path(environment: &str, name: &str) -> String {
    if environment.is_empty() { name.to_owned() } else { format!("{environment}/{name}") }
}

/// What a scope lets its holder do to the secrets it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeAction {
    Read,
    Write,
    List,
    Delete,
    /// `*`: all four.
    All,
}

impl ScopeAction {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "read" => ScopeAction::Read,
            "write" => ScopeAction::Write,
            "list" => ScopeAction::List,
            "delete" => ScopeAction::Delete,
            "*" => ScopeAction::All,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ScopeAction::Read => "read",
            ScopeAction::Write => "write",
            ScopeAction::List => "list",
            ScopeAction::Delete => "delete",
            ScopeAction::All => "*",
        }
    }

    fn includes(self, wanted: ScopeAction) -> bool {
        self == ScopeAction::All || self == wanted
    }

    /// The key permission this action needs: a token never carries more
    /// than the key that asked for it.
    pub fn permission(self) -> Permission {
        match self {
            ScopeAction::Read | ScopeAction::List => Permission::Read,
            ScopeAction::Write | ScopeAction::Delete | ScopeAction::All => Permission::Write,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub action: ScopeAction,
    pub glob: String,
}

/// A token's scopes, parsed once when the token authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

/// At most this many scopes per token, each at most this long.
const MAX_SCOPES: usize = 32;
const MAX_SCOPE_LEN: usize = 300;

impl Scopes {
    /// Parses scope strings; a malformed one is 400 naming it.
    pub fn parse(raw: &[String]) -> Result<Self> {
        if raw.is_empty() || raw.len() > MAX_SCOPES {
            return Err(Error::InvalidRequest(format!("scopes must hold 1-{MAX_SCOPES} entries")));
        }
        let mut out = Vec::with_capacity(raw.len());
        for s in raw {
            let bad = || {
                Error::InvalidRequest(format!(
                    "scope '{}' is not of the form secrets:{{read|write|list|delete|*}}:{{glob}}",
                    s.escape_debug()
                ))
            };
            if s.len() > MAX_SCOPE_LEN || s.chars().any(char::is_control) {
                return Err(bad());
            }
            let mut parts = s.splitn(3, ':');
            let (Some("secrets"), Some(action), Some(glob)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad());
            };
            let action = ScopeAction::parse(action).ok_or_else(bad)?;
            if glob.is_empty() {
                return Err(bad());
            }
            out.push(Scope { action, glob: glob.to_owned() });
        }
        Ok(Scopes(out))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// The scopes as they were written (and are stored).
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|s| format!("secrets:{}:{}", s.action.as_str(), s.glob)).collect()
    }

    /// Whether some scope lets its holder do `action` to the secret at `path`.
    pub fn allows(&self, action: ScopeAction, path: &str) -> bool {
        self.0.iter().any(|s| s.action.includes(action) && glob_matches(&s.glob, path))
    }

    /// The globs of the scopes that allow `action`.
    pub fn globs_for(&self, action: ScopeAction) -> Vec<String> {
        self.0.iter().filter(|s| s.action.includes(action)).map(|s| s.glob.clone()).collect()
    }

    /// The widest permission any scope needs.
    pub fn permission(&self) -> Permission {
        self.0.iter().map(|s| s.action.permission()).max().unwrap_or(Permission::Read)
    }
}

/// `*` matches any run of characters (`/` too), `?` one character. Iterative
/// with one backtrack point, so a hostile glob costs O(glob × path).
pub fn glob_matches(glob: &str, path: &str) -> bool {
    let (g, p): (Vec<char>, Vec<char>) = (glob.chars().collect(), path.chars().collect());
    let (mut gi, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while pi < p.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == p[pi]) {
            gi += 1;
            pi += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some((gi, pi));
            gi += 1;
        } else if let Some((sg, sp)) = star {
            gi = sg + 1;
            pi = sp + 1;
            star = Some((sg, sp + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_globs() {
        assert_eq!(path("production", "gemini/KEY"), "production/gemini/KEY");
        assert_eq!(path("", "KEY"), "KEY");
        assert!(glob_matches("production/gemini/*", "production/gemini/KEY"));
        assert!(glob_matches("production/gemini/*", "production/gemini/a/b"));
        assert!(!glob_matches("production/gemini/*", "production/stripe/KEY"));
        assert!(!glob_matches("production/gemini/*", "staging/gemini/KEY"));
        assert!(glob_matches("*", "anything/at/all"));
        assert!(glob_matches("*/KEY", "dev/KEY"));
        assert!(glob_matches("dev/K?Y", "dev/KEY"));
        assert!(!glob_matches("dev/KEY", "dev/KEY2"));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(!glob_matches("a*b*c", "axxbyy"));
        assert!(glob_matches(&"*".repeat(200), &"a".repeat(300)));
    }

    #[test]
    fn scopes_parse_and_allow() {
        let s = Scopes::parse(&["secrets:read:production/gemini/*".into(), "secrets:*:dev/*".into()]).unwrap();
        assert!(s.allows(ScopeAction::Read, "production/gemini/KEY"));
        assert!(!s.allows(ScopeAction::Write, "production/gemini/KEY"));
        assert!(s.allows(ScopeAction::Delete, "dev/x"));
        assert_eq!(s.permission(), Permission::Write);
        assert_eq!(s.to_strings(), vec!["secrets:read:production/gemini/*", "secrets:*:dev/*"]);
        for bad in ["read:x", "secrets:admin:x", "secrets:read:", "keys:read:x", "secrets:read"] {
            assert!(Scopes::parse(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(Scopes::parse(&[]).is_err());
    }
}
