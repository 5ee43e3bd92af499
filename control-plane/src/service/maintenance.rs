//! Re-sealing every sealed value: offline under a new master key (`modelgate admin
//! rotate-master-key`, the control plane may be stopped), and at control-plane start the one-time
//! step that binds values sealed by earlier releases to their table, column and row.
//!
//! The sealed columns: `provider_accounts.credential_ciphertext`, `settings.value` (the sealed
//! settings, e.g. the key-hash secret), `export_sinks.secret_ciphertext` and
//! `idempotency_keys.response`.

use modelgate_migrations::SEALED_VALUES_FORMAT;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, TransactionTrait,
};

use super::ServiceError;
use crate::crypto::{self, Binding, Sealer};
use crate::store::{self, export_sink, idempotency, provider_account, setting};

/// How many sealed values a re-seal changed, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    pub provider_credentials: usize,
    pub settings: usize,
    pub sink_secrets: usize,
    pub idempotency_records: usize,
}

/// Opens every sealed value with `old` and seals it bound with `new`, in one transaction: either
/// everything is under the new key afterwards or nothing changed. Fails (changing nothing) if
/// any value does not open under `old` where it is stored. Values still in the unbound format
/// are read and bound on the way.
pub async fn rotate_master_key(
    database_url: &str,
    old: &Sealer,
    new: &Sealer,
) -> Result<Resealed, ServiceError> {
    let db = store::connect(database_url).await?;
    let txn = db.begin().await?;
    let n = reseal_all(&txn, false, |sealed, binding| {
        Ok(new.seal_bound(&old.open_bound_or_unbound(sealed, binding)?, binding))
    })
    .await?;
    set_format_bound(&txn).await?;
    txn.commit().await?;
    db.close().await?;
    Ok(n)
}

/// At start: re-seals, bound to where it is stored, every value an earlier release sealed
/// unbound, once. Runs in one transaction that also sets the `sealed_values_format` setting to
/// `bound`; a database already `bound` is left alone (and an unbound value found later is
/// refused when read, never silently accepted).
pub async fn bind_sealed_values(
    db: &DatabaseConnection,
    sealer: &Sealer,
) -> Result<Option<Resealed>, ServiceError> {
    let format = setting::Entity::find_by_id(SEALED_VALUES_FORMAT)
        .one(db)
        .await?;
    if format.is_some_and(|f| f.value == "bound") {
        return Ok(None);
    }
    let txn = db.begin().await?;
    let n = reseal_all(&txn, true, |sealed, binding| {
        Ok(sealer.seal_bound(&sealer.open_bound_or_unbound(sealed, binding)?, binding))
    })
    .await?;
    set_format_bound(&txn).await?;
    txn.commit().await?;
    Ok(Some(n))
}

async fn set_format_bound<C: ConnectionTrait>(c: &C) -> Result<(), ServiceError> {
    setting::Entity::insert(setting::ActiveModel {
        name: Set(SEALED_VALUES_FORMAT.to_owned()),
        value: Set("bound".to_owned()),
    })
    .on_conflict(
        sea_orm::sea_query::OnConflict::column(setting::Column::Name)
            .update_column(setting::Column::Value)
            .to_owned(),
    )
    .exec_without_returning(c)
    .await?;
    Ok(())
}

/// Replaces every sealed value (only the unbound ones with `only_unbound`) by `reseal(value,
/// binding)`.
async fn reseal_all<C: ConnectionTrait>(
    c: &C,
    only_unbound: bool,
    reseal: impl Fn(&str, &Binding) -> Result<String, ServiceError>,
) -> Result<Resealed, ServiceError> {
    let wanted = |sealed: &str| {
        if only_unbound {
            Sealer::is_unbound(sealed)
        } else {
            Sealer::is_sealed(sealed)
        }
    };
    let mut n = Resealed::default();
    for p in provider_account::Entity::find().all(c).await? {
        if !wanted(&p.credential_ciphertext) {
            continue;
        }
        let value = reseal(
            &p.credential_ciphertext,
            &crypto::provider_credential(&p.id),
        )?;
        let mut a = p.into_active_model();
        a.credential_ciphertext = Set(value);
        a.update(c).await?;
        n.provider_credentials += 1;
    }
    for row in setting::Entity::find().all(c).await? {
        if !wanted(&row.value) {
            continue;
        }
        let value = reseal(&row.value, &crypto::setting_value(&row.name))?;
        let mut a = row.into_active_model();
        a.value = Set(value);
        a.update(c).await?;
        n.settings += 1;
    }
    for sink in export_sink::Entity::find().all(c).await? {
        if !wanted(&sink.secret_ciphertext) {
            continue;
        }
        let value = reseal(&sink.secret_ciphertext, &crypto::sink_secret(&sink.id))?;
        let mut a = sink.into_active_model();
        a.secret_ciphertext = Set(value);
        a.update(c).await?;
        n.sink_secrets += 1;
    }
    for rec in idempotency::Entity::find().all(c).await? {
        if !wanted(&rec.response) {
            continue;
        }
        let binding = crypto::idempotency_response(&rec.actor_id, &rec.key);
        let value = reseal(&rec.response, &binding)?;
        let mut a = rec.into_active_model();
        a.response = Set(value);
        a.update(c).await?;
        n.idempotency_records += 1;
    }
    Ok(n)
}
