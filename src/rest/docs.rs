//! The documents for agents over HTTP: `llms.txt`, the quickstart steps
//! (both from [`crate::docs`]) and the OpenAPI document.

use std::sync::OnceLock;

use axum::Json;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;

use crate::docs::{LLMS_TXT, QuickstartDoc, quickstart_doc};

pub async fn llms_txt() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], LLMS_TXT)
}

pub async fn openapi() -> impl IntoResponse {
    static DOC: OnceLock<Value> = OnceLock::new();
    Json(DOC.get_or_init(|| super::openapi::document(&super::routes().1)).clone())
}

pub async fn quickstart() -> Json<QuickstartDoc> {
    Json(quickstart_doc())
}
