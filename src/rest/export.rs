//! The audit export's rendering: JSON or CSV, written page by page as the
//! client reads it.
//!
//! The status and headers leave first, so a failure after them cannot become
//! an error answer: the body then stops without its end (no closing bracket,
//! no final chunk), which every HTTP client reports as a broken transfer
//! instead of a short export that looks whole.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::SecondsFormat;

use crate::error::{Error, Result};
use crate::vault::audit::AuditPages;
use crate::vault::views::{AuditEntry, ExportFormat};

const CSV_HEADER: [&str; 14] = [
    "id",
    "timestamp",
    "action",
    "resourceType",
    "resourceId",
    "actor",
    "front",
    "outcome",
    "ipAddress",
    "userAgent",
    "detail",
    "client",
    "tool",
    "reason",
];

/// The streamed answer; `tenant` names the file.
pub fn response(format: ExportFormat, pages: AuditPages, tenant: &str) -> Response {
    let body = futures::stream::unfold(Export { pages, format, count: 0, stage: Stage::Open }, |mut ex| async move {
        let chunk = match ex.stage {
            Stage::Open => {
                ex.stage = Stage::Pages;
                match ex.format {
                    ExportFormat::Json => Ok(Bytes::from_static(b"{\"logs\":[")),
                    ExportFormat::Csv => csv_rows(std::iter::once(CSV_HEADER.map(String::from))),
                }
            }
            Stage::Pages => match ex.pages.next_page().await {
                Ok(Some(rows)) => {
                    let chunk = ex.render(&rows);
                    ex.count += rows.len();
                    if chunk.is_err() {
                        ex.stage = Stage::Done;
                    }
                    chunk
                }
                Ok(None) => {
                    ex.stage = Stage::Done;
                    match ex.format {
                        ExportFormat::Json => Ok(Bytes::from(format!("],\"count\":{}}}", ex.count))),
                        ExportFormat::Csv => return None,
                    }
                }
                Err(e) => {
                    tracing::warn!(entries = ex.count, error = ?e.to_string(), "audit export stopped");
                    ex.stage = Stage::Done;
                    Err(e)
                }
            },
            Stage::Done => return None,
        };
        Some((chunk, ex))
    });
    let (content_type, extension) = match format {
        ExportFormat::Json => ("application/json", "json"),
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let mut resp = Body::from_stream(body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Tenant ids are slugs: nothing in them needs quoting.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"audit-{tenant}.{extension}\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

enum Stage {
    Open,
    Pages,
    Done,
}

struct Export {
    pages: AuditPages,
    format: ExportFormat,
    /// Entries written so far.
    count: usize,
    stage: Stage,
}

impl Export {
    fn render(&self, entries: &[AuditEntry]) -> Result<Bytes> {
        match self.format {
            ExportFormat::Json => {
                let mut out = Vec::with_capacity(entries.len() * 320);
                for (i, entry) in entries.iter().enumerate() {
                    if self.count + i > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut out, &entry).map_err(Error::internal)?;
                }
                Ok(Bytes::from(out))
            }
            ExportFormat::Csv => csv_rows(entries.iter().map(csv_record)),
        }
    }
}

fn csv_record(e: &AuditEntry) -> [String; 14] {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        e.id.to_string(),
        e.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
        e.action.clone(),
        e.resource_type.clone(),
        text(&e.resource_id),
        e.actor.clone(),
        e.front.clone(),
        e.outcome.clone(),
        text(&e.ip_address),
        text(&e.user_agent),
        e.detail.as_ref().map(|d| d.to_string()).unwrap_or_default(),
        text(&e.client),
        text(&e.tool),
        text(&e.reason),
    ]
}

fn csv_rows(records: impl Iterator<Item = [String; 14]>) -> Result<Bytes> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for record in records {
        w.write_record(record.map(defused)).map_err(Error::internal)?;
    }
    Ok(Bytes::from(w.into_inner().map_err(|e| Error::internal(e.error()))?))
}

/// A cell a spreadsheet would run as a formula gets a leading `'`. A client
/// chooses its own user agent, and an auditor opens the export in a
/// spreadsheet: `=HYPERLINK(…)` there must stay text.
fn defused(cell: String) -> String {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}"),
        _ => cell,
    }
}
