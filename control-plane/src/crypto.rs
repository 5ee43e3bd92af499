//! Sealing secrets at rest: the shared AES-256-GCM sealer (see `modelgate_shared::crypto`) and
//! the binding of each sealed column: a value opens only in the table, column and row it was
//! sealed for.

pub use modelgate_shared::crypto::{Binding, CryptoError, Sealer};

/// `provider_accounts.credential_ciphertext` of provider `id`.
pub fn provider_credential(id: &str) -> Binding {
    Binding::cell("provider_accounts", "credential_ciphertext", &[id])
}

/// `settings.value` of the setting `name` (e.g. the key-hash secret).
pub fn setting_value(name: &str) -> Binding {
    Binding::cell("settings", "value", &[name])
}

/// `export_sinks.secret_ciphertext` of sink `id`.
pub fn sink_secret(id: &str) -> Binding {
    Binding::cell("export_sinks", "secret_ciphertext", &[id])
}

/// `idempotency_keys.response` of the record (`actor_id`, `key`).
pub fn idempotency_response(actor_id: &str, key: &str) -> Binding {
    Binding::cell("idempotency_keys", "response", &[actor_id, key])
}
