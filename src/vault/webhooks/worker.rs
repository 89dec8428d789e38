//! The delivery worker: takes due deliveries from the queue and POSTs them,
//! signed, through the guarded outbound client; each goes once across every
//! server (the claim is one conditional UPDATE, `SKIP LOCKED` on
//! PostgreSQL), at least once overall (a claim is a lease: a worker that
//! dies mid-attempt leaves its deliveries due again when the lease ends).
//!
//! A 2xx answer delivers; anything else is retried with exponential
//! backoff (`--webhook-backoff-ms`, 30 s by default, doubling, at most an
//! hour apart) until 24 h after the event, when the delivery is `failed`.
//!
//! Finished deliveries are deleted a week after their event.
//!
//! The signature is Stripe's convention: `Latchkey-Signature:
//! t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

use std::sync::Arc;
use std::time::Duration;

use hmac::Mac;

use crate::error::Result;
use crate::outbound::{HeaderMap, Method, Outbound, Request, Url};
use crate::store::webhooks::{Attempt, DELIVERED, DeliveryRow, FAILED, PENDING};
use crate::store::{Millis, now_millis};
use crate::vault::Vault;

/// How long one attempt may take (connection, redirects, answer).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a claimed delivery stays with its worker: well past an attempt,
/// so only a worker that died loses it.
const LEASE_MS: Millis = 60_000;
/// Deliveries claimed at once (and sent concurrently).
const BATCH: i64 = 32;
/// Rounds of claims in one turn when the queue stays full.
const MAX_ROUNDS: usize = 8;
/// The longest wait between attempts.
const MAX_BACKOFF_MS: Millis = 3_600_000;
/// How long after its event a delivery is tried.
pub const GIVE_UP_AFTER_MS: Millis = 24 * 3_600_000;
/// How long finished deliveries stay visible in `GET /api/v1/webhooks/{id}`.
const KEEP_FINISHED_MS: Millis = 7 * 24 * 3_600_000;
/// How often finished deliveries past that are deleted (also at start), and
/// the most one turn deletes.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
const PRUNE_BATCH: i64 = 5_000;
/// The most of a failure's note that is kept.
const NOTE_CHARS: usize = 200;

/// Runs [`Vault::deliver_due`] every `--webhook-poll-ms` until `stop` is
/// cancelled; a turn under way is cut short by it (its deliveries are taken
/// again when their lease ends).
pub async fn run_until(vault: Arc<Vault>, stop: tokio_util::sync::CancellationToken) {
    let vault = &vault;
    let mut pruned: Option<std::time::Instant> = None;
    crate::vault::jobs::every(vault.config().webhook_poll, &stop, move || {
        let prune = pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
        if prune {
            pruned = Some(std::time::Instant::now());
        }
        async move {
            if prune && let Err(e) = vault.store().webhooks().prune_finished(now_millis() - KEEP_FINISHED_MS, PRUNE_BATCH).await {
                tracing::warn!("pruning webhook deliveries failed: {}", e.public_message_with_cause());
            }
            if let Err(e) = vault.deliver_due().await {
                tracing::warn!("webhook deliveries failed: {}", e.public_message_with_cause());
            }
        }
    })
    .await
}

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// The JSON an event is sent as: its audit entry's non-secret fields.
pub fn payload(d: &DeliveryRow) -> serde_json::Value {
    let mut data = serde_json::Map::new();
    data.insert("resourceType".into(), d.resource_type.clone().into());
    data.insert("resourceId".into(), d.resource_id.clone().into());
    data.insert("actor".into(), d.actor.clone().into());
    if let Some(serde_json::Value::Object(detail)) = d.detail.as_deref().and_then(|s| serde_json::from_str(s).ok()) {
        for (k, v) in detail {
            data.entry(k).or_insert(v);
        }
    }
    let created = chrono::DateTime::from_timestamp_millis(d.created_at).unwrap_or_default();
    serde_json::json!({
        "id": d.event_id,
        "type": d.event,
        "createdAt": created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "tenantId": d.tenant_id,
        "data": data,
    })
}

/// The wait before attempt `attempts + 1`: the base doubled per attempt made, capped.
fn backoff(base: Duration, attempts: i64) -> Millis {
    let base = Millis::try_from(base.as_millis()).unwrap_or(MAX_BACKOFF_MS);
    let doublings = u32::try_from((attempts - 1).clamp(0, 30)).unwrap_or(30);
    base.saturating_mul(1 << doublings).min(MAX_BACKOFF_MS)
}

fn note(text: &str) -> String {
    let line: String = text.chars().filter(|c| !c.is_control()).take(NOTE_CHARS).collect();
    if text.chars().count() > NOTE_CHARS { format!("{line}…") } else { line }
}

impl Vault {
    /// Delivers what is due now; answers how many attempts it made.
    pub async fn deliver_due(&self) -> Result<usize> {
        let mut made = 0;
        for _ in 0..MAX_ROUNDS {
            let now = now_millis();
            let claimed = self.store.webhooks().claim_due(now, now + LEASE_MS, BATCH).await?;
            let full = claimed.len() as i64 == BATCH;
            made += claimed.len();
            let attempts = claimed.into_iter().map(|d| async move {
                if let Err(e) = self.attempt(&d).await {
                    tracing::warn!(delivery = %d.id, "webhook delivery not recorded: {}", e.public_message_with_cause());
                }
            });
            futures::future::join_all(attempts).await;
            if !full {
                break;
            }
        }
        Ok(made)
    }

    /// One attempt of a claimed delivery, and its outcome recorded.
    async fn attempt(&self, d: &DeliveryRow) -> Result<()> {
        let Some(hook) = self.store.webhooks().get_webhook(&d.tenant_id, &d.webhook_id).await? else {
            return Ok(()); // deleted meanwhile, with its deliveries
        };
        let sent = async {
            let secret = self.open_webhook_secret(&hook).await?;
            let url = Url::parse(&hook.url).map_err(|e| crate::error::Error::InvalidRequest(format!("bad stored URL: {e}")))?;
            let body = serde_json::to_vec(&payload(d)).expect("JSON");
            let t = chrono::Utc::now().timestamp();
            let mut headers = HeaderMap::new();
            let h = |v: &str| v.parse().map_err(|_| crate::error::Error::internal("header value"));
            headers.insert(reqwest::header::CONTENT_TYPE, h("application/json")?);
            headers.insert("latchkey-event", h(&d.event)?);
            headers.insert("latchkey-delivery", h(&d.id)?);
            headers.insert("latchkey-signature", h(&signature(&secret, t, &body))?);
            let req = Request { method: Method::POST, url, headers, body: Some(body), timeout: ATTEMPT_TIMEOUT };
            // Only a same-origin redirect that keeps the POST (307, 308).
            Outbound::shared(self.config.allow_private_destinations)?.send(req, |m, _| *m == Method::POST).await
        };
        let now = now_millis();
        let outcome = match sent.await {
            Ok(resp) if (200..300).contains(&resp.status) => Attempt {
                status: DELIVERED,
                next_attempt_at: now,
                last_status: Some(i64::from(resp.status)),
                last_error: None,
                delivered_at: Some(now),
            },
            Ok(resp) => self.retry_or_fail(
                d,
                now,
                Some(i64::from(resp.status)),
                format!("HTTP {}: {}", resp.status, String::from_utf8_lossy(&resp.body[..resp.body.len().min(NOTE_CHARS * 4)])),
            ),
            Err(e) => self.retry_or_fail(d, now, None, e.to_string()),
        };
        if !self.store.webhooks().finish(&d.id, d.attempts, &outcome).await? {
            tracing::debug!(delivery = %d.id, "another worker took the delivery after its lease ended");
        }
        Ok(())
    }

    fn retry_or_fail(&self, d: &DeliveryRow, now: Millis, status: Option<i64>, why: String) -> Attempt {
        let deadline = d.created_at.saturating_add(GIVE_UP_AFTER_MS);
        let next = now.saturating_add(backoff(self.config.webhook_backoff, d.attempts)).min(deadline);
        Attempt {
            status: if now >= deadline { FAILED } else { PENDING },
            next_attempt_at: next,
            last_status: status,
            last_error: Some(note(&why)),
            delivered_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_stripes_convention() {
        // HMAC-SHA256("whsec_test", "1700000000.{}"), computed independently (Python's hmac).
        assert_eq!(
            signature(b"whsec_test", 1_700_000_000, b"{}"),
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_an_hour() {
        let base = Duration::from_secs(30);
        assert_eq!(backoff(base, 1), 30_000);
        assert_eq!(backoff(base, 2), 60_000);
        assert_eq!(backoff(base, 5), 480_000);
        assert_eq!(backoff(base, 12), MAX_BACKOFF_MS);
        assert_eq!(backoff(base, 1000), MAX_BACKOFF_MS);
    }

    #[test]
    fn payloads_hold_the_entry_and_its_detail_but_not_overwritten_fields() {
        let d = DeliveryRow {
            id: "whd_1".into(),
            webhook_id: "wh_1".into(),
            tenant_id: "t".into(),
            event_id: "evt_9".into(),
            event: "secret.created".into(),
            created_at: 1_700_000_000_000,
            actor: "key-1".into(),
            resource_type: "secret".into(),
            resource_id: Some("s-1".into()),
            detail: Some(r#"{"name":"db","actor":"spoof"}"#.into()),
            status: PENDING.into(),
            attempts: 1,
            next_attempt_at: 0,
            last_status: None,
            last_error: None,
            delivered_at: None,
        };
        let p = payload(&d);
        assert_eq!(p["type"], "secret.created");
        assert_eq!(p["createdAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(p["data"]["name"], "db");
        assert_eq!(p["data"]["actor"], "key-1");
        assert_eq!(p["data"]["resourceId"], "s-1");
    }
}
