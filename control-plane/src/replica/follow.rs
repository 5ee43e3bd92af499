//! How a replica that does not drive rollouts builds its distribution: from what the driver
//! persisted, never minting a staged version itself.
//!
//! With no rollout policy and no rollout in progress every replica takes today's path (the
//! tables' content under the newest version with that content, or a new one: any replica may
//! mint it, `snapshot::store` makes the race safe). Otherwise the driver decides: while a
//! rollout runs or is paused the follower publishes the `rollouts` row's two tracks (their
//! stored versions, credentials from the current tables) with its plan and wave, so its nodes
//! get exactly the assignment the driver's nodes get; with a policy and no rollout in progress
//! it publishes the newest stored version. A stored version whose content no longer matches
//! the tables (a change the driver has not minted yet) is not published: the follower keeps
//! what it had until the driver mints and announces it.

use modelgate_shared::rollout::compose;
use modelgate_shared::snapshot::Snapshot;
use sea_orm::{EntityTrait, QueryOrder};

use crate::rollout;
use crate::service::{ServiceError, Services};
use crate::snapshot::{load_config, publish_everywhere, stored_config, State};
use crate::store::config_version;

/// Brings `st` in line with the database as a follower (under the publisher's lock).
pub(crate) async fn reconcile(s: &Services, st: &mut State) -> Result<(), ServiceError> {
    let previous_stable = st.stable.clone();
    let previous_rollout = st.rollout.take();
    st.policy = None;
    st.rejected_policy = None;
    rollout::load(s, st).await?;
    // Should this replica win the lease, it reads everything afresh as the driver.
    st.loaded = false;
    let current = load_config(s).await?;
    if st.policy.is_none() && st.rollout.is_none() {
        st.stable = Some(publish_everywhere(s, Snapshot::new(0, current)).await?);
        return Ok(());
    }
    if let Some(r) = &st.rollout {
        let minted = st.stable.as_ref().is_some_and(|p| p.version() != 0) && r.new.version() != 0;
        if !minted {
            st.stable = previous_stable;
            st.rollout = previous_rollout;
        }
        return Ok(());
    }
    // A policy, no rollout in progress: every node serves the newest stored version.
    let newest = config_version::Entity::find()
        .order_by_desc(config_version::Column::Version)
        .one(&s.db)
        .await?;
    let restored = match newest {
        Some(row) => {
            let version = u64::try_from(row.version).unwrap_or(0);
            stored_config(s, version)
                .await?
                .map(|(config, hash)| rollout::restored(version, &hash, compose(&config, &current)))
        }
        None => None,
    };
    st.stable = match restored {
        Some(p) if p.version() != 0 => Some(p),
        _ => previous_stable,
    };
    Ok(())
}
