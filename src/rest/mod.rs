//! The REST front: SecretCarousel's paths under `/api`, plus the agent-facing
//! documents. Handlers only extract input, call one vault function and render
//! the result; every route is declared once in [`routes`], which feeds both the
//! axum router and the OpenAPI document.

mod api;
mod audit_verify;
pub mod backups;
mod checks;
mod claims;
mod data_keys;
mod docs;
mod environments;
mod export;
mod extract;
pub mod guard;
mod handlers;
mod lifecycle;
pub mod openapi;
mod proxy;
mod requests;
mod rotation;
mod shares;
mod webhooks;

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::Error;
use crate::vault::Vault;

pub use api::routes;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub vault: Arc<Vault>,
}

/// REST's rendering of a domain error: status, stable code, safe message.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = Json(self.body());
        let mut resp = (status, body).into_response();
        match &self {
            Error::RateLimited { retry_after } | Error::ShareLocked { retry_after } | Error::VerifyLimited { retry_after } => {
                let secs = retry_after.as_secs().max(1).to_string();
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_str(&secs).expect("digits"));
            }
            Error::Unauthorized(_) | Error::TokenExpired | Error::TokenExhausted | Error::TokenRevoked | Error::IpNotAllowed => {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"latchkey\""));
            }
            _ => {}
        }
        resp
    }
}
