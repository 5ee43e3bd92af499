//! [`KeyView`]: what the admission decision, budgets and rate limits read of a gateway key.
//! The control plane reads its [`ApiKey`]s; the data plane implements it for the compact form it
//! holds in memory (`data-plane/src/config/compact.rs`), so both answer from the same rules. The
//! rules that take a key are generic over it (monomorphised: no indirection on the request path).

use crate::routing::TrafficClass;
use crate::snapshot::{ApiKey, Environment};

/// A gateway key's policy, as the request path reads it.
pub trait KeyView {
    fn id(&self) -> &str;
    fn team_id(&self) -> &str;
    /// Empty when no user owns the key.
    fn owner_user_id(&self) -> &str;
    fn environment(&self) -> Environment;
    fn data_class(&self) -> &str;
    fn is_revoked(&self) -> bool;
    fn is_disabled(&self) -> bool;
    /// Unix seconds.
    fn expires_at(&self) -> Option<i64>;
    /// Whether the key may use the model alias (an empty list allows every alias).
    fn may_use(&self, alias: &str) -> bool;
    /// Whether the key may call the endpoint family (an empty list allows every family).
    fn may_call(&self, family: &str) -> bool;
    /// The traffic class of a request that asked for `requested` (by header), if the key allows
    /// it; a request that asked for nothing gets the key's class.
    fn traffic_class_for(&self, requested: Option<TrafficClass>) -> Option<TrafficClass>;
}

impl KeyView for ApiKey {
    fn id(&self) -> &str {
        &self.id
    }
    fn team_id(&self) -> &str {
        &self.team_id
    }
    fn owner_user_id(&self) -> &str {
        &self.owner_user_id
    }
    fn environment(&self) -> Environment {
        self.environment
    }
    fn data_class(&self) -> &str {
        &self.data_class
    }
    fn is_revoked(&self) -> bool {
        self.revoked
    }
    fn is_disabled(&self) -> bool {
        self.disabled
    }
    fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }
    fn may_use(&self, alias: &str) -> bool {
        ApiKey::may_use(self, alias)
    }
    fn may_call(&self, family: &str) -> bool {
        ApiKey::may_call(self, family)
    }
    fn traffic_class_for(&self, requested: Option<TrafficClass>) -> Option<TrafficClass> {
        ApiKey::traffic_class_for(self, requested)
    }
}
