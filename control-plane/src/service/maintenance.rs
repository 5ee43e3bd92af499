//! Offline maintenance run by the `modelgate admin` CLI against the database directly (the
//! control plane may be stopped): re-sealing every secret under a new master key.

use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel, TransactionTrait};

use super::ServiceError;
use crate::crypto::Sealer;
use crate::store::{self, export_sink, idempotency, provider_account, setting};

/// How many sealed values a rotation re-sealed, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    pub provider_credentials: usize,
    pub settings: usize,
    pub sink_secrets: usize,
    pub idempotency_records: usize,
}

/// Opens every sealed value with `old` and seals it with `new`, in one transaction: either
/// everything is under the new key afterwards or nothing changed. Fails (changing nothing) if
/// any value does not open under `old`.
pub async fn rotate_master_key(
    database_url: &str,
    old: &Sealer,
    new: &Sealer,
) -> Result<Resealed, ServiceError> {
    let db = store::connect(database_url).await?;
    let txn = db.begin().await?;
    let mut n = Resealed::default();
    let reseal =
        |sealed: &str| -> Result<String, ServiceError> { Ok(new.seal(&old.open(sealed)?)) };

    for p in provider_account::Entity::find().all(&txn).await? {
        let value = reseal(&p.credential_ciphertext)?;
        let mut a = p.into_active_model();
        a.credential_ciphertext = Set(value);
        a.update(&txn).await?;
        n.provider_credentials += 1;
    }
    for row in setting::Entity::find().all(&txn).await? {
        if !row.value.starts_with("v1:") {
            continue;
        }
        let value = reseal(&row.value)?;
        let mut a = row.into_active_model();
        a.value = Set(value);
        a.update(&txn).await?;
        n.settings += 1;
    }
    for sink in export_sink::Entity::find().all(&txn).await? {
        if sink.secret_ciphertext.is_empty() {
            continue;
        }
        let value = reseal(&sink.secret_ciphertext)?;
        let mut a = sink.into_active_model();
        a.secret_ciphertext = Set(value);
        a.update(&txn).await?;
        n.sink_secrets += 1;
    }
    for rec in idempotency::Entity::find().all(&txn).await? {
        let value = reseal(&rec.response)?;
        let mut a = rec.into_active_model();
        a.response = Set(value);
        a.update(&txn).await?;
        n.idempotency_records += 1;
    }
    txn.commit().await?;
    db.close().await?;
    Ok(n)
}
