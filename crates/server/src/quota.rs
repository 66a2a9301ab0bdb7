//! Per-key quotas at the HTTP edge: requests/min, tokens/min and USD/day, counted in the
//! store (`store::Store::quota_admit`) so that every server process on one store shares them.
//!
//! Rules:
//! - [`check`] runs in the auth middleware once the caller is known: over a limit → 429
//!   (`rate_limit_error`, code `quota_exceeded`) with `Retry-After` = seconds until the window
//!   that is full ends. Keys without limits never reach the store here.
//! - [`charge`] runs where every request and task run is recorded (`crate::audit::record`,
//!   audit on or off): its tokens (prompt + completion) and cost are added when it ends. So the
//!   token and cost limits may be overshot by what requests already in flight use (see
//!   `store`'s quota docs); requests per minute are exact.
//! - If the store cannot be reached a limited key's request is refused with 503 (fail closed,
//!   as the audit is); keys without limits are unaffected. A failed charge is logged and not
//!   retried.

use crate::error::ApiError;
use crate::state::{AppState, Caller};
use std::collections::HashSet;
use std::sync::RwLock;
use std::time::Duration;

/// The store that counts quota use, and which keys have limits (learnt at admission).
pub struct Quotas {
    store: store::Store,
    limited: RwLock<HashSet<String>>,
}

impl Quotas {
    pub fn new(store: store::Store) -> Self {
        Self {
            store,
            limited: RwLock::new(HashSet::new()),
        }
    }

    fn is_limited(&self, key_id: &str) -> bool {
        self.limited.read().map(|s| s.contains(key_id)).unwrap_or(false)
    }

    fn mark_limited(&self, key_id: &str) {
        if !self.is_limited(key_id) {
            if let Ok(mut s) = self.limited.write() {
                s.insert(key_id.to_owned());
            }
        }
    }
}

/// Admit the caller's request, or refuse it with 429 + `Retry-After` when a limit is reached.
pub async fn check(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    let (Some(key_id), false) = (&caller.key_id, caller.limits.is_empty()) else {
        return Ok(());
    };
    let Some(q) = &state.quota else {
        tracing::warn!(key = %key_id, "the key has quotas but the server has no store to count them in; not enforced");
        return Ok(());
    };
    q.mark_limited(key_id);
    match q
        .store
        .quota_admit(key_id, &caller.limits, store::now_ms() / 1000)
        .await
    {
        Ok(store::Admission::Admitted) => Ok(()),
        Ok(store::Admission::Refused { limit, retry_after_s }) => {
            let mut e = ApiError::overloaded(
                format!("this API key's quota of {limit} is used up; retry in {retry_after_s} s"),
                retry_after_s,
            );
            e.code = Some("quota_exceeded");
            Err(e)
        }
        Err(e) => {
            // Fail closed, as the audit does: a limited key is not served unmetered.
            tracing::error!(key = %key_id, error = %e, "could not check the key's quota; refusing the request");
            Err(ApiError::unavailable("the quota store cannot be reached; retry later").code("quota_unavailable"))
        }
    }
}

/// Add a finished request's or task run's tokens and cost to its key's quota windows.
pub async fn charge(state: &AppState, rec: &store::AuditRecord) {
    let (Some(q), Some(key_id)) = (&state.quota, &rec.key_id) else {
        return;
    };
    if !q.is_limited(key_id) {
        return;
    }
    if let Err(e) = q
        .store
        .quota_charge(key_id, rec.tokens_in + rec.tokens_out, rec.cost_usd, rec.ts_ms / 1000)
        .await
    {
        tracing::warn!(key = %key_id, error = %e, "could not count the request's use against the key's quota");
    }
}

/// Hourly: delete quota windows that have ended.
pub fn spawn_prune(state: &AppState) {
    let Some(q) = state.quota.clone() else { return };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = q.store.quota_prune(store::now_ms() / 1000).await {
                tracing::warn!(error = %e, "could not prune old quota windows");
            }
        }
    });
}
