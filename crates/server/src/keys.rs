//! API keys checked in memory: the active keys are read from the store at start and every
//! few seconds, so keys created or revoked by `rightsize keys` take effect without a restart
//! and the request path never waits on the database. Revoked keys are kept too: in open
//! local mode an unknown bearer is an anonymous caller, a revoked one is refused.

use crate::state::{Caller, KeyCheck, KeyLookup};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub struct StoreKeys {
    /// Every key the store holds, revoked ones too, by secret hash.
    by_hash: RwLock<HashMap<String, KeyLookup>>,
}

impl StoreKeys {
    /// Load the keys now and keep refreshing them every `every`.
    pub async fn start(store: store::Store, every: Duration) -> Result<Arc<Self>, store::StoreError> {
        let me = Arc::new(Self {
            by_hash: RwLock::new(HashMap::new()),
        });
        me.refresh(&store).await?;
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else { return };
                if let Err(e) = me.refresh(&store).await {
                    tracing::warn!(error = %e, "could not refresh API keys; keeping the previous set");
                }
            }
        });
        Ok(me)
    }

    async fn refresh(&self, store: &store::Store) -> Result<(), store::StoreError> {
        let keys = store.keys_by_hash().await?;
        let map: HashMap<String, KeyLookup> = keys.into_iter().map(|(hash, k)| (hash, lookup(k))).collect();
        let mut cur = self.by_hash.write().unwrap_or_else(|p| p.into_inner());
        for (hash, l) in &map {
            // Logged once, when a key starts being refused (its requests log it again).
            if let KeyLookup::Refused { key_id, reason } = l {
                if !matches!(cur.get(hash), Some(KeyLookup::Refused { .. })) {
                    tracing::error!(key = %key_id, "{reason}");
                }
            }
        }
        *cur = map;
        Ok(())
    }
}

/// What a stored key is to the server. Fails closed: a key whose guardrail policy does not
/// parse is refused, never served without its guardrails.
fn lookup(k: store::ApiKey) -> KeyLookup {
    if k.revoked_at.is_some() {
        return KeyLookup::Revoked;
    }
    if !k.has(store::KeyScope::Inference) && !k.has(store::KeyScope::Admin) {
        return KeyLookup::Refused {
            reason: format!(
                "API key {} has no scope the server knows; its requests are refused",
                k.id
            ),
            key_id: k.id,
        };
    }
    let guard = match k.guard.as_deref().map(serde_json::from_str::<guard::Guardrails>) {
        None => None,
        Some(Ok(g)) => Some(Arc::new(g)),
        Some(Err(e)) => {
            return KeyLookup::Refused {
                reason: format!(
                    "API key {} has a guardrail policy that does not parse ({e}); its requests are refused until it is fixed (`rightsize keys guard {} --guard '<policy>'` or `--clear`)",
                    k.id, k.id
                ),
                key_id: k.id,
            }
        }
    };
    KeyLookup::Active(Caller {
        admin: k.has(store::KeyScope::Admin),
        default_priority: if k.priority == "batch" {
            engine::Priority::Batch
        } else {
            engine::Priority::Interactive
        },
        guard,
        limits: k.limits,
        key_id: Some(k.id),
    })
}

impl KeyCheck for StoreKeys {
    fn check(&self, secret: &str) -> KeyLookup {
        self.by_hash
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&store::hash_secret(secret))
            .cloned()
            .unwrap_or(KeyLookup::Unknown)
    }
}
