//! The page's calls into the approvals and secrets services, turned into
//! what the templates show.

use super::Item;
use crate::error::{Error, Result};
use crate::vault::approvals::{ApprovalView, ApproveRequest, UpdatePolicy, UpdatePolicyTiers};
use crate::vault::exposure::Exposure;
use crate::vault::secrets::SecretRef;
use crate::vault::views::{AccessTier, EditSecret, ListSecrets};
use crate::vault::{Principal, Vault};

fn age(since: chrono::DateTime<chrono::Utc>) -> String {
    let secs = (chrono::Utc::now() - since).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d", secs / 86400),
    }
}

/// `names`: owner ids to names, so a decision says who made it.
fn item(a: ApprovalView, passkeys_enrolled: bool, names: &Names) -> Item {
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default();
    let by = || match (a.decided_by.as_deref(), a.decided_how.as_deref()) {
        (Some(who), Some(how)) => format!(" by {} ({how})", names.get(who).map_or(who, String::as_str)),
        (Some(who), None) => format!(" by {}", names.get(who).map_or(who, String::as_str)),
        _ => String::new(),
    };
    let outcome = match a.status.as_str() {
        "pending" => String::new(),
        "approved" => {
            let uses = a.grant_uses_left.map(|n| format!("{n} read(s) left")).unwrap_or_default();
            format!("approved{}, {uses} until {}", by(), when(a.grant_expires_at))
        }
        "denied" => format!("denied{}: {}", by(), a.deny_reason.clone().unwrap_or_default()),
        "used" => format!("approved{} and used", by()),
        "expired" => "expired without a decision".into(),
        other => other.to_owned(),
    };
    // As the service judges it: a token request, or a read of a critical (or since deleted) secret.
    let critical = a.kind == "token" || a.access_tier.as_deref().is_none_or(|t| t == "critical");
    let tier = a.access_tier.clone().unwrap_or_else(|| if a.kind == "token" { "token".into() } else { "critical".into() });
    let what = match (&a.secret_path, &a.scopes) {
        (Some(path), _) => path.clone(),
        (None, Some(scopes)) => format!("token: {}", scopes.join(", ")),
        _ => a.kind.clone(),
    };
    Item {
        pending: a.status == "pending",
        strong: passkeys_enrolled && critical,
        what,
        requester: format!("{} ({})", a.requester_name, a.requester_id),
        secret_name: a.secret_name.unwrap_or_default(),
        secret_path: a.secret_path.unwrap_or_default(),
        reason: a.reason.unwrap_or_default(),
        ip: a.ip.unwrap_or_else(|| "unknown".into()),
        age: age(a.created_at),
        outcome,
        status: a.status,
        tier,
        id: a.id,
    }
}

/// Owner ids to their names.
pub(super) type Names = std::collections::HashMap<String, String>;

pub(super) async fn owner_names(vault: &Vault, p: &Principal) -> Result<Names> {
    Ok(vault.list_owners(p).await?.into_iter().map(|o| (o.id, o.name)).collect())
}

fn enrolled(p: &Principal) -> bool {
    p.human.as_ref().is_some_and(|h| h.passkeys_enrolled)
}

pub(super) async fn items(vault: &Vault, p: &Principal, status: Option<&str>, names: &Names) -> Result<Vec<Item>> {
    Ok(vault.list_approvals(p, status).await?.into_iter().map(|a| item(a, enrolled(p), names)).collect())
}

pub(super) async fn item_of(vault: &Vault, p: &Principal, id: &str) -> Result<Item> {
    let names = owner_names(vault, p).await?;
    Ok(item(vault.get_approval(p, id).await?, enrolled(p), &names))
}

pub(super) async fn approve(vault: &Vault, p: &Principal, id: &str, ttl: &str, uses: u32) -> Result<()> {
    let req: ApproveRequest = serde_json::from_value(serde_json::json!({ "ttl": ttl, "uses": uses }))
        .map_err(|e| Error::InvalidRequest(format!("approval: {e}")))?;
    vault.approve(p, id, req).await.map(|_| ())
}

pub(super) async fn deny(vault: &Vault, p: &Principal, id: &str, reason: &str) -> Result<()> {
    vault.deny(p, id, reason).await.map(|_| ())
}

pub(super) async fn gate_sensitive(vault: &Vault, p: &Principal) -> Result<bool> {
    Ok(vault.get_policy(p).await?.approval_required.sensitive)
}

pub(super) async fn set_gate_sensitive(vault: &Vault, p: &Principal, on: bool) -> Result<()> {
    let req = UpdatePolicy { approval_required: UpdatePolicyTiers { sensitive: Some(on), ..Default::default() } };
    vault.set_policy(p, req).await.map(|_| ())
}

/// Among the first 500 secrets: those above `standard`, as (id, "path (tier)"),
/// and those not `reveal`, as (id, "path (exposure)"): what an owner may loosen.
pub(super) async fn protected_secrets(vault: &Vault, p: &Principal) -> Result<(Vec<(String, String)>, Vec<(String, String)>)> {
    let q: ListSecrets = serde_json::from_value(serde_json::json!({ "limit": 500 })).map_err(Error::internal)?;
    let page = vault.list_secrets(p, q).await?;
    let path = |s: &crate::vault::views::SecretMeta| crate::vault::scopes::path(s.environment.as_deref().unwrap_or(""), &s.name);
    let tiered = page.secrets.iter().filter(|s| s.access_tier > AccessTier::Standard);
    let hidden = page.secrets.iter().filter(|s| s.exposure > Exposure::Reveal);
    Ok((
        tiered.map(|s| (s.id.clone(), format!("{} ({})", path(s), s.access_tier.as_str()))).collect(),
        hidden.map(|s| (s.id.clone(), format!("{} ({})", path(s), s.exposure.as_str()))).collect(),
    ))
}

pub(super) async fn set_tier(vault: &Vault, p: &Principal, secret_id: &str, tier: &str) -> Result<()> {
    let tier: AccessTier = serde_json::from_value(serde_json::json!(tier))
        .map_err(|_| Error::InvalidRequest("tier: standard, sensitive or critical".into()))?;
    let edit = EditSecret { access_tier: Some(tier), ..Default::default() };
    vault.update_secret(p, SecretRef::Id(secret_id), edit).await.map(|_| ())
}

pub(super) async fn set_exposure(vault: &Vault, p: &Principal, secret_id: &str, exposure: &str) -> Result<()> {
    let exposure: Exposure = serde_json::from_value(serde_json::json!(exposure))
        .map_err(|_| Error::InvalidRequest("exposure: reveal, masked or use_only".into()))?;
    let edit = EditSecret { exposure: Some(exposure), ..Default::default() };
    vault.update_secret(p, SecretRef::Id(secret_id), edit).await.map(|_| ())
}
