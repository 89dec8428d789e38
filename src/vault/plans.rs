//! Plans are quotas an operator configures. `free` and `pro` follow the
//! SecretCarousel reference; `unlimited` is for self-hosted operators and tests.

use schemars::JsonSchema;
use serde::Serialize;

use crate::error::{Error, Result};

/// The limits of one plan. `null` means unlimited.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanLimits {
    pub plan: &'static str,
    pub max_secrets: Option<i64>,
    /// Authenticated calls per calendar month (UTC), counted as
    /// `usage.apiCallsThisMonth` counts them (see `usage.rs`).
    pub api_calls_per_month: Option<i64>,
    pub requests_per_minute: Option<i64>,
    pub features: Vec<&'static str>,
}

pub const PLAN_NAMES: [&str; 3] = ["free", "pro", "unlimited"];

pub fn limits(plan: &str) -> Result<PlanLimits> {
    let core = vec!["secrets", "versions", "projects", "api-keys", "audit", "mcp"];
    let paid = || [core.clone(), vec![CLAIMS, SHARES]].concat();
    Ok(match plan {
        "free" => PlanLimits {
            plan: "free",
            max_secrets: Some(5),
            api_calls_per_month: Some(10_000),
            requests_per_minute: Some(100),
            features: core,
        },
        "pro" => PlanLimits {
            plan: "pro",
            max_secrets: Some(50),
            api_calls_per_month: Some(100_000),
            requests_per_minute: Some(1_000),
            features: paid(),
        },
        "unlimited" => {
            PlanLimits { plan: "unlimited", max_secrets: None, api_calls_per_month: None, requests_per_minute: None, features: paid() }
        }
        other => {
            return Err(Error::InvalidRequest(format!("unknown plan '{other}'; plans are {}", PLAN_NAMES.join(", "))));
        }
    })
}

/// Claim tokens: handing a secret to another tenant (`vault::claims`).
pub const CLAIMS: &str = "claim-tokens";
/// Share links for people (`vault::shares`).
pub const SHARES: &str = "shares";

/// Refuses a feature the tenant's plan does not include: 403
/// `PLAN_LIMIT_REACHED` naming the feature and the plans that have it.
pub fn require_feature(plan: &str, feature: &str, what: &str) -> Result<()> {
    if limits(plan)?.features.contains(&feature) {
        return Ok(());
    }
    let with: Vec<&str> =
        PLAN_NAMES.iter().copied().filter(|p| limits(p).map(|l| l.features.contains(&feature)).unwrap_or(false)).collect();
    Err(Error::PlanLimitReached(format!(
        "{what} are not part of the '{plan}' plan (feature '{feature}'; plans with it: {}); ask the operator to raise the plan",
        with.join(", ")
    )))
}

/// API keys carry the plan in their prefix, as SecretCarousel's do.
pub fn key_prefix(plan: &str) -> &'static str {
    if plan == "free" { "sc_free_" } else { "sc_" }
}
