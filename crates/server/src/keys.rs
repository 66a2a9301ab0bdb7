//! API keys checked in memory: the active keys are read from the store at start and every
//! few seconds, so keys created or revoked by `rightsize keys` take effect without a restart
//! and the request path never waits on the database.

use crate::state::{Caller, KeyCheck};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub struct StoreKeys {
    by_hash: RwLock<HashMap<String, Caller>>,
}

impl StoreKeys {
    /// Load the keys now and keep refreshing them every `every`.
    pub async fn start(store: store::Store, every: Duration) -> Result<Arc<Self>, store::StoreError> {
        let me = Arc::new(Self { by_hash: RwLock::new(HashMap::new()) });
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
        let keys = store.active_keys().await?;
        let map = keys
            .into_iter()
            .filter(|(_, k)| k.has(store::KeyScope::Inference) || k.has(store::KeyScope::Admin))
            .map(|(hash, k)| {
                let caller = Caller {
                    admin: k.has(store::KeyScope::Admin),
                    default_priority: if k.priority == "batch" { engine::Priority::Batch } else { engine::Priority::Interactive },
                    guard: k.guard.as_deref().and_then(|g| match serde_json::from_str::<guard::Guardrails>(g) {
                        Ok(g) => Some(Arc::new(g)),
                        Err(e) => {
                            tracing::error!(key = %k.id, error = %e, "the key's guardrail policy does not parse; its requests run without it");
                            None
                        }
                    }),
                    key_id: Some(k.id),
                };
                (hash, caller)
            })
            .collect();
        *self.by_hash.write().expect("poisoned") = map;
        Ok(())
    }
}

impl KeyCheck for StoreKeys {
    fn check(&self, secret: &str) -> Option<Caller> {
        self.by_hash.read().expect("poisoned").get(&store::hash_secret(secret)).cloned()
    }
}
