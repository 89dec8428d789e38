//! Extractors that answer in the project's error shape: the caller's
//! [`Principal`], JSON bodies and query strings.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::edge::{credential, origin_of};
use crate::error::Error;
use crate::vault::{Front, Origin, Principal};

/// An authenticated caller; rejects with 401 before the handler runs.
pub struct Auth(pub Principal);

impl<S> FromRequestParts<S> for Auth
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let origin = origin_of(parts, Front::Rest);
        // The request's touched set (see `guard::leak_guard`).
        let guarded = |mut p: Principal| {
            if let Some(touched) = parts.extensions.get::<crate::redact::Touched>() {
                p.touched = touched.clone();
            }
            Auth(p)
        };
        match credential(&parts.headers) {
            // An owner's token: REST only (MCP has no owner actions and never takes one).
            Ok(Some(token)) if token.starts_with(crate::vault::owners::OWNER_TOKEN_PREFIX) => {
                Ok(guarded(state.vault.authenticate_owner(token, origin).await?))
            }
            Ok(Some(token)) => Ok(guarded(state.vault.authenticate(token, origin).await?)),
            Ok(None) => {
                let needed = Error::Unauthorized("send your API key as X-API-Key or Authorization: Bearer".into());
                Err(state.vault.refuse_anonymous(&origin, needed).await)
            }
            Err(malformed) => Err(state.vault.refuse_anonymous(&origin, malformed).await),
        }
    }
}

/// The client's origin without requiring authentication (signup).
pub struct ClientOrigin(pub Origin);

impl<S: Send + Sync> FromRequestParts<S> for ClientOrigin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientOrigin(origin_of(parts, Front::Rest)))
    }
}

/// A JSON body; malformed or oversized bodies answer in the error shape.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(JsonRejection::BytesRejection(r)) if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(Error::PayloadTooLarge("request body is too large".into()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(Error::InvalidRequest("send the body as JSON with Content-Type: application/json".into()))
            }
            Err(e) => Err(Error::InvalidRequest(format!("invalid JSON body: {}", e.body_text()))),
        }
    }
}

/// A JSON body that may be absent: no body (or `null`) is `T::default()`.
/// The published SDKs send some POSTs without one (`redeem_claim`, `revoke_share`,
/// `access_share`).
pub struct OptionalBody<T>(pub T);

impl<S, T> FromRequest<S> for OptionalBody<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> std::result::Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|r| match r.status() {
            axum::http::StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge("request body is too large".into()),
            _ => Error::InvalidRequest(format!("unreadable body: {}", r.body_text())),
        })?;
        let text = bytes.trim_ascii();
        if text.is_empty() || text == b"null" {
            return Ok(OptionalBody(T::default()));
        }
        serde_json::from_slice(text).map(OptionalBody).map_err(|e| Error::InvalidRequest(format!("invalid JSON body: {e}")))
    }
}

/// A query string; bad values answer 400, and so do unknown parameters where
/// the type denies them (the secret list's filters).
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) => Err(Error::InvalidRequest(e.body_text())),
            Err(e) => Err(Error::InvalidRequest(e.body_text())),
        }
    }
}
