//! The one domain error type. Every front maps it the same way: REST to a status
//! and the body [`Error::body`], MCP to a tool result with `isError: true`
//! carrying the same body. Messages are safe to show a client; a
//! cause that must not leave the server (SQL text, crypto detail) goes to the log.

use std::time::Duration;

/// What went wrong, with a stable code per variant. Adding a variant forces a
/// decision in [`Error::code`] and [`Error::status`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the request is malformed or a field is invalid.
    #[error("{0}")]
    InvalidRequest(String),
    /// 401: no credential, or one that is unknown, expired or revoked.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the credential is valid but does not cover this action or project.
    #[error("{0}")]
    ScopeDenied(String),
    /// 403: the tenant's plan does not allow more of this.
    #[error("{0}")]
    PlanLimitReached(String),
    /// 403: the operator closed open signup.
    #[error("self-signup is closed on this server; ask its operator for an API key")]
    SignupClosed,
    /// 403: the request's `Host` is not a name this server answers to, or
    /// its `Host`/`Origin` headers are malformed or repeated.
    #[error("{0}")]
    ForbiddenHost(String),
    /// 403: a browser page of another site sent the request.
    #[error("{0}")]
    ForbiddenOrigin(String),
    /// 403: only one of the tenant's human owners may do this (decide an
    /// approval, lower a tier, change the policy); no API key or token can.
    #[error("{0}")]
    OwnerRequired(String),
    /// 403: the owner must confirm with a fresh passkey assertion (on the
    /// approval page) because the tenant's owners have passkeys.
    #[error("{0}")]
    PasskeyRequired(String),
    /// 403: the secret's exposure does not allow this: a read of a
    /// `use_only` secret, or a share or claim of one that is not `reveal`.
    #[error("{0}")]
    ExposureDenied(String),
    /// 403: the secret is gated; a human must approve the pending request
    /// first. Its body carries `approvalId` and `approvalUrl`.
    #[error("a human must approve this first: show your user {approval_url} (approval {approval_id})")]
    ApprovalRequired { approval_id: String, approval_url: String },
    /// 403: the secret proxy was asked for a method and URL none of the
    /// secret's `bindings` covers; the message names what is bound.
    #[error("{0}")]
    DestinationNotBound(String),
    /// 403: an outbound request to an address the operator does not allow
    /// (private, loopback, link-local...; see `outbound`).
    #[error("{0}")]
    DestinationRefused(String),
    /// 401: a scoped token past its expiry.
    #[error("this token has expired")]
    TokenExpired,
    /// 401: a scoped token whose `maxUses` are used up.
    #[error("this token has no uses left")]
    TokenExhausted,
    /// 401: a scoped token that was revoked.
    #[error("this token was revoked")]
    TokenRevoked,
    /// 401: a scoped token presented from an address outside its `ipAllowlist`.
    #[error("this token may not be used from this address")]
    IpNotAllowed,
    /// 410: a claim token that was redeemed already (exactly one redemption succeeds).
    #[error("this claim token was already redeemed")]
    ClaimAlreadyRedeemed,
    /// 410: a claim token past its expiry.
    #[error("this claim token has expired")]
    ClaimExpired,
    /// 410: a claim token its creator revoked.
    #[error("this claim token was revoked")]
    ClaimRevoked,
    /// 410: a share link past its expiry.
    #[error("this share link has expired")]
    ShareExpired,
    /// 410: a share link whose `maxUses` are used up.
    #[error("this share link has no uses left")]
    ShareExhausted,
    /// 410: a share link that was revoked (or whose secret was deleted).
    #[error("this share link was revoked")]
    ShareRevoked,
    /// 401: the share link needs its password.
    #[error("this share link needs its password")]
    PasswordRequired,
    /// 401: the password given for a share link is wrong (no use is counted).
    #[error("wrong password for this share link")]
    InvalidPassword,
    /// 403: a backup archive's passphrase is missing or wrong (nothing
    /// was changed).
    #[error("{0}")]
    InvalidPassphrase(String),
    /// 429: too many wrong passwords; the share link is locked for a while.
    #[error("too many wrong passwords: this share link is locked; retry after {} s", retry_after.as_secs().max(1))]
    ShareLocked { retry_after: Duration },
    /// 409: a secret request that was already fulfilled.
    #[error("this secret request was already fulfilled")]
    RequestFulfilled,
    /// 410: a secret request that was cancelled.
    #[error("this secret request was cancelled")]
    RequestCancelled,
    /// 410: a secret request that expired before anyone fulfilled it.
    #[error("this secret request has expired")]
    RequestExpired,
    /// 429: too many verifications of one secret; retry after the delay.
    #[error("too many verifications of this secret; retry after {} s", retry_after.as_secs().max(1))]
    VerifyLimited { retry_after: Duration },
    /// 409: revoking what is already revoked.
    #[error("{0}")]
    AlreadyRevoked(String),
    /// 404: no such secret visible to the caller.
    #[error("secret not found")]
    SecretNotFound,
    /// 404: secrets named in a selection (`latchkey run --only`) that are not there.
    #[error("{0}")]
    SecretsNotFound(String),
    /// 404: no such resource visible to the caller (projects, keys, routes, versions).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 405: the path exists, the method does not.
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    /// 410: the secret passed its `expiresAt`; the message says when.
    #[error("{0}")]
    SecretExpired(String),
    /// 410: a version a rotation retired once its grace period ended.
    #[error("{0}")]
    VersionRetired(String),
    /// 409: the name is held by a soft-deleted secret (restore it, or purge
    /// it); the body carries `deletedSecretId`.
    #[error(
        "a deleted secret named '{name}' still holds this name until it is purged; restore it (POST /api/v1/secrets/{deleted_secret_id}/restore) or purge it (DELETE …?permanent=true)"
    )]
    SecretExists { name: String, deleted_secret_id: String },
    /// 400: lines of a text (a dotenv import) that do not parse; nothing
    /// was stored. The body carries `lines: [{line, message}]`.
    #[error("{} line(s) do not parse (first: line {}: {}); nothing was stored", .0.len(), .0.first().map_or(0, |l| l.line), .0.first().map_or("", |l| l.message.as_str()))]
    InvalidLines(Vec<LineError>),
    /// 409: the caller's expected version is stale.
    #[error("secret is at version {current}, not {expected}; re-read it and retry")]
    VersionConflict { expected: i64, current: i64 },
    /// 409: a resource with that identity already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// 409: the resource is in a state that forbids the action.
    #[error("{0}")]
    Conflict(String),
    /// 413: a value or body is larger than the server accepts.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 408: the request's body did not arrive in time.
    #[error("{0}")]
    RequestTimeout(String),
    /// 429: too many requests; retry after the given delay.
    #[error("too many requests; retry after {} s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },
    /// 502: an outbound request failed: the name did not resolve, the
    /// connection was refused or timed out, or the exchange broke off.
    #[error("{0}")]
    UpstreamFailed(String),
    /// 500: a stored ciphertext failed authentication: tampered or misplaced data.
    #[error("stored data failed its integrity check")]
    Integrity,
    /// 500: anything else; the cause is logged, never shown.
    #[error("internal error")]
    Internal(String),
}

impl Error {
    /// The stable, machine-readable code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_) => "INVALID_REQUEST",
            Error::Unauthorized(_) => "UNAUTHORIZED",
            Error::ScopeDenied(_) => "SCOPE_DENIED",
            Error::PlanLimitReached(_) => "PLAN_LIMIT_REACHED",
            Error::SignupClosed => "SIGNUP_CLOSED",
            Error::ForbiddenHost(_) => "FORBIDDEN_HOST",
            Error::ForbiddenOrigin(_) => "FORBIDDEN_ORIGIN",
            Error::OwnerRequired(_) => "OWNER_REQUIRED",
            Error::PasskeyRequired(_) => "PASSKEY_REQUIRED",
            Error::ExposureDenied(_) => "EXPOSURE_DENIED",
            Error::ApprovalRequired { .. } => "APPROVAL_REQUIRED",
            Error::DestinationNotBound(_) => "DESTINATION_NOT_BOUND",
            Error::DestinationRefused(_) => "DESTINATION_REFUSED",
            Error::TokenExpired => "TOKEN_EXPIRED",
            Error::TokenExhausted => "TOKEN_EXHAUSTED",
            Error::TokenRevoked => "TOKEN_REVOKED",
            Error::IpNotAllowed => "IP_NOT_ALLOWED",
            Error::AlreadyRevoked(_) => "ALREADY_REVOKED",
            Error::ClaimAlreadyRedeemed => "CLAIM_ALREADY_REDEEMED",
            Error::ClaimExpired => "CLAIM_EXPIRED",
            Error::ClaimRevoked => "CLAIM_REVOKED",
            Error::ShareExpired => "SHARE_EXPIRED",
            Error::ShareExhausted => "SHARE_EXHAUSTED",
            Error::ShareRevoked => "SHARE_REVOKED",
            Error::PasswordRequired => "PASSWORD_REQUIRED",
            Error::InvalidPassword => "INVALID_PASSWORD",
            Error::InvalidPassphrase(_) => "INVALID_PASSPHRASE",
            Error::ShareLocked { .. } => "SHARE_LOCKED",
            Error::RequestFulfilled => "REQUEST_FULFILLED",
            Error::RequestCancelled => "REQUEST_CANCELLED",
            Error::RequestExpired => "REQUEST_EXPIRED",
            Error::VerifyLimited { .. } => "VERIFY_LIMITED",
            Error::SecretNotFound | Error::SecretsNotFound(_) => "SECRET_NOT_FOUND",
            Error::NotFound(_) => "NOT_FOUND",
            Error::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Error::VersionConflict { .. } => "VERSION_CONFLICT",
            Error::SecretExpired(_) => "SECRET_EXPIRED",
            Error::VersionRetired(_) => "VERSION_RETIRED",
            Error::SecretExists { .. } => "SECRET_EXISTS",
            Error::InvalidLines(_) => "INVALID_REQUEST",
            Error::AlreadyExists(_) => "ALREADY_EXISTS",
            Error::Conflict(_) => "CONFLICT",
            Error::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            Error::RequestTimeout(_) => "REQUEST_TIMEOUT",
            Error::RateLimited { .. } => "RATE_LIMITED",
            Error::UpstreamFailed(_) => "UPSTREAM_FAILED",
            Error::Integrity => "INTEGRITY_ERROR",
            Error::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status REST answers with.
    pub fn status(&self) -> u16 {
        match self {
            Error::InvalidRequest(_) | Error::InvalidLines(_) => 400,
            Error::Unauthorized(_)
            | Error::TokenExpired
            | Error::TokenExhausted
            | Error::TokenRevoked
            | Error::IpNotAllowed
            | Error::PasswordRequired
            | Error::InvalidPassword => 401,
            Error::ScopeDenied(_)
            | Error::OwnerRequired(_)
            | Error::PasskeyRequired(_)
            | Error::ExposureDenied(_)
            | Error::ApprovalRequired { .. }
            | Error::DestinationNotBound(_)
            | Error::DestinationRefused(_)
            | Error::InvalidPassphrase(_)
            | Error::PlanLimitReached(_)
            | Error::SignupClosed
            | Error::ForbiddenHost(_)
            | Error::ForbiddenOrigin(_) => 403,
            Error::SecretNotFound | Error::SecretsNotFound(_) | Error::NotFound(_) => 404,
            Error::MethodNotAllowed => 405,
            Error::VersionConflict { .. }
            | Error::AlreadyExists(_)
            | Error::Conflict(_)
            | Error::AlreadyRevoked(_)
            | Error::RequestFulfilled
            | Error::SecretExists { .. } => 409,
            Error::ClaimAlreadyRedeemed
            | Error::ClaimExpired
            | Error::ClaimRevoked
            | Error::ShareExpired
            | Error::ShareExhausted
            | Error::ShareRevoked
            | Error::RequestCancelled
            | Error::RequestExpired
            | Error::SecretExpired(_)
            | Error::VersionRetired(_) => 410,
            Error::PayloadTooLarge(_) => 413,
            Error::RequestTimeout(_) => 408,
            Error::RateLimited { .. } | Error::ShareLocked { .. } | Error::VerifyLimited { .. } => 429,
            Error::Integrity | Error::Internal(_) => 500,
            Error::UpstreamFailed(_) => 502,
        }
    }

    /// The message shown to clients. Internal causes stay in the log.
    pub fn public_message(&self) -> String {
        self.to_string()
    }

    /// The error body every front answers: `{"error": message, "message":
    /// message, "code": CODE}`. Flat, because SecretCarousel's published
    /// clients read it so: its SDKs take `message` (else `error`) as the
    /// exception's text, its CLI prints `error`, then `message` when it
    /// differs, then `[code]`; a nested object prints as `[object Object]`.
    pub fn body(&self) -> serde_json::Value {
        let mut body = error_body(self.code(), &self.public_message());
        if let Error::ApprovalRequired { approval_id, approval_url } = self {
            body["approvalId"] = approval_id.as_str().into();
            body["approvalUrl"] = approval_url.as_str().into();
        }
        if let Error::SecretExists { deleted_secret_id, .. } = self {
            body["deletedSecretId"] = deleted_secret_id.as_str().into();
        }
        if let Error::InvalidLines(lines) = self {
            body["lines"] = serde_json::to_value(lines).expect("serialisable");
        }
        body
    }

    /// For the operator's terminal: internal causes included.
    pub fn public_message_with_cause(&self) -> String {
        match self {
            Error::Internal(cause) => cause.clone(),
            other => other.to_string(),
        }
    }

    /// The outcome recorded in the audit trail for a failed attempt.
    pub fn audit_outcome(&self) -> &'static str {
        match self.status() {
            401 | 403 => "denied",
            404 => "not_found",
            400 | 405 | 408 | 409 | 410 | 413 | 429 => "rejected",
            _ => "error",
        }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let cause = cause.to_string();
        tracing::error!(?cause, "internal error");
        Error::Internal(cause)
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::internal(format_args!("database: {e}"))
    }
}

/// The flat error body (see [`Error::body`]) for a code outside the enum,
/// such as a refusal made before any request is parsed.
pub fn error_body(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "error": message, "message": message, "code": code })
}

/// One line of a text that does not parse (see [`Error::InvalidLines`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LineError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
