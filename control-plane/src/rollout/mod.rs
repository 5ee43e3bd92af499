//! Staged rollouts: the control plane's side of `modelgate_shared::rollout`.
//!
//! A rollout lives in the publisher's state (`crate::snapshot::State`, one lock): the stable
//! version (the old track) and an [`Active`] rollout (the new track, the plan, the wave
//! reached). Everything that moves nodes — a policy change starting a rollout, a security
//! change minted into both tracks, a wave passed, a gate failed, an operator's promote, pause,
//! resume or rollback — happens under that lock and ends by publishing the distribution, which
//! every config stream turns into its node's version. [`drive`] evaluates the gates of the
//! running rollout every [`TICK`] and updates the drift metric. Each change of a rollout is
//! written to its `rollouts` row, so a restarted control plane resumes where it was.

pub mod nodes;
mod relay;
pub mod shared_reports;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use modelgate_shared::canonical::policy_hash;
use modelgate_shared::rollout::{
    compose, evaluate, reuse_or_mint, Handover, OnFailure, Plan, Traffic, Verdict,
};
use modelgate_shared::snapshot::{Config, Snapshot};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::service::{ServiceError, Services};
use crate::snapshot::{mint, stored_config, Published, State};
use crate::store::{rollout as row, rollout_policy};

/// How often the gates of a running rollout are evaluated (and drift is measured).
pub const TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// A rollout's state, as stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Paused,
    Completed,
    RolledBack,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Completed => "completed",
            Status::RolledBack => "rolled_back",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Running,
            Status::Paused,
            Status::Completed,
            Status::RolledBack,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// The rollout in progress (running or paused).
#[derive(Debug, Clone)]
pub struct Active {
    pub id: String,
    pub plan: Arc<Plan>,
    /// The index of the last wave reached.
    pub reached: usize,
    pub paused: bool,
    pub reason: Option<String>,
    /// The new track's latest version.
    pub new: Arc<Published>,
    /// Every version minted for each track during this rollout (the gates attribute a node's
    /// traffic by the version it served).
    pub new_versions: BTreeSet<u64>,
    pub old_versions: BTreeSet<u64>,
    pub old_policy_hash: String,
    pub new_policy_hash: String,
    pub created_at: DateTime<Utc>,
    pub wave_started_at: DateTime<Utc>,
    /// The gates' last reading.
    pub last: Option<Reading>,
}

/// What the gates saw at their last evaluation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reading {
    pub at: DateTime<Utc>,
    /// `pass`, `wait` or `fail`, with the reason.
    #[schema(value_type = Object)]
    pub verdict: Verdict,
    #[schema(value_type = Object)]
    pub new: Traffic,
    #[schema(value_type = Object)]
    pub old: Traffic,
    pub nacks: u32,
}

/// Reads the rollout policy and the state of the last rollout (once, before the first build).
pub(crate) async fn load(s: &Services, st: &mut State) -> Result<(), ServiceError> {
    st.policy = read_policy(s).await?;
    let Some(last) = row::Entity::find()
        .order_by_desc(row::Column::CreatedAt)
        .one(&s.db)
        .await?
    else {
        return Ok(());
    };
    load_rollout(s, st, last).await
}

/// The stored rollout policy, if any.
pub(crate) async fn read_policy(s: &Services) -> Result<Option<Arc<Plan>>, ServiceError> {
    Ok(
        match rollout_policy::Entity::find_by_id(POLICY_ROW)
            .one(&s.db)
            .await?
        {
            Some(r) => match serde_json::from_str::<Plan>(&r.plan) {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    // Fails safe: a stored plan that no longer reads stages nothing new, loudly.
                    tracing::error!(error = %e, "the stored rollout policy does not read; changes go everywhere");
                    None
                }
            },
            None => None,
        },
    )
}

/// Restores the state of rollout `last` (the newest).
async fn load_rollout(s: &Services, st: &mut State, last: row::Model) -> Result<(), ServiceError> {
    let current = crate::snapshot::load_config(s).await?;
    match Status::parse(&last.status) {
        Some(Status::Running | Status::Paused) => {
            let old_v = u64::try_from(last.old_version).unwrap_or(0);
            let new_v = u64::try_from(last.new_version).unwrap_or(0);
            let (Some((old, old_hash)), Some((new, new_hash)), Ok(plan)) = (
                stored_config(s, old_v).await?,
                stored_config(s, new_v).await?,
                serde_json::from_str::<Plan>(&last.plan),
            ) else {
                tracing::error!(rollout = %last.id, "a rollout in progress cannot be resumed (its versions or plan do not read); it is left as it was");
                return Ok(());
            };
            // Credentials are not stored: each track gets the current ones (compose).
            let stable = restored(old_v, &old_hash, compose(&old, &current));
            let new = restored(new_v, &new_hash, compose(&new, &current));
            st.stable = Some(stable);
            st.rollout = Some(Active {
                id: last.id,
                plan: Arc::new(plan),
                reached: usize::try_from(last.wave).unwrap_or(0),
                paused: last.status == Status::Paused.as_str(),
                reason: last.reason,
                new_versions: BTreeSet::from([new_v]),
                old_versions: BTreeSet::from([old_v]),
                new,
                old_policy_hash: last.old_policy_hash,
                new_policy_hash: last.new_policy_hash,
                created_at: last.created_at,
                wave_started_at: last.wave_started_at,
                last: None,
            });
            tracing::info!("resumed the rollout in progress");
        }
        Some(Status::RolledBack) => {
            let old_v = u64::try_from(last.old_version).unwrap_or(0);
            if let Some((old, hash)) = stored_config(s, old_v).await? {
                st.stable = Some(restored(old_v, &hash, compose(&old, &current)));
            }
            st.rejected_policy = Some(last.new_policy_hash);
        }
        _ => {}
    }
    Ok(())
}

/// A stored version with current secrets: the same number if the content is the one stored
/// under it, else number 0, which the next reconcile replaces with a freshly minted one (a
/// number never names two contents).
pub(crate) fn restored(version: u64, stored_hash: &str, config: Config) -> Arc<Published> {
    let mut snapshot = Snapshot::new(version, config);
    if snapshot.content_hash != stored_hash {
        snapshot.version = 0;
    }
    Published::new(snapshot)
}

const POLICY_ROW: &str = "default";

/// The staged path of a rebuild: mint what `current` changes into each track, or start a
/// rollout when its policy differs from the stable one.
pub(crate) async fn reconcile(
    s: &Services,
    st: &mut State,
    current: Snapshot,
) -> Result<(), ServiceError> {
    let Some(stable) = st.stable.clone() else {
        return Ok(());
    };
    let now = s.clock.now();
    // The immediate part (keys, credentials) reaches the old track at once.
    let old_content = compose(&stable.snapshot.config, &current.config);
    let stable = refresh(s, &stable, old_content).await?;
    st.stable = Some(stable.clone());
    if let Some(r) = st.rollout.as_mut() {
        r.old_versions.insert(stable.version());
        // ... and the new track too, whatever the rollout's state.
        let new_content = compose(&r.new.snapshot.config, &current.config);
        r.new = refresh(s, &r.new, new_content).await?;
        r.new_versions.insert(r.new.version());
        persist(s, r).await?;
        return Ok(());
    }
    let current_policy = policy_hash(&current.config);
    let stable_policy = policy_hash(&stable.snapshot.config);
    if current_policy == stable_policy || st.rejected_policy.as_deref() == Some(&current_policy) {
        return Ok(());
    }
    let Some(plan) = st.policy.clone() else {
        return Ok(());
    };
    let new = mint(s, current.config).await?;
    let active = Active {
        id: modelgate_shared::new_id().to_string(),
        plan,
        reached: 0,
        paused: false,
        reason: None,
        new_versions: BTreeSet::from([new.version()]),
        old_versions: BTreeSet::from([stable.version()]),
        new,
        old_policy_hash: stable_policy,
        new_policy_hash: current_policy,
        created_at: now,
        wave_started_at: now,
        last: None,
    };
    tracing::info!(rollout = %active.id, new = active.new.version(), stable = stable.version(), "rollout started");
    persist(s, &active).await?;
    st.rejected_policy = None;
    st.rollout = Some(active);
    Ok(())
}

/// `published` itself when `content` is the same, else `content` minted anew (also when
/// `published` was restored under number 0).
async fn refresh(
    s: &Services,
    published: &Arc<Published>,
    content: Config,
) -> Result<Arc<Published>, ServiceError> {
    let candidate = Snapshot::new(0, content);
    if candidate.content_hash == published.snapshot.content_hash && published.version() != 0 {
        Ok(published.clone())
    } else {
        mint(s, candidate.config).await
    }
}

/// Content `track` again under a number above `highest_mover` if it is not already above it.
async fn hand_over(
    s: &Services,
    track: &Arc<Published>,
    highest_mover: u64,
) -> Result<Arc<Published>, ServiceError> {
    match reuse_or_mint(track.version(), highest_mover) {
        Handover::Reuse => Ok(track.clone()),
        Handover::Mint => mint(s, track.snapshot.config.clone()).await,
    }
}

/// The operator's (or a gate's) action on the rollout in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Move to the next wave now (completes after the last).
    Promote,
    Pause,
    Resume,
    Rollback,
}

/// Applies `action` to rollout `id` under the publisher's lock and publishes. Returns the
/// rollout's row afterwards.
/// On a replica that does not drive rollouts, the driver does it (`relay`).
pub(crate) async fn act(
    s: &Services,
    id: &str,
    action: Action,
    reason: Option<String>,
) -> Result<row::Model, ServiceError> {
    if s.replica.drives_rollouts() {
        act_as_driver(s, id, action, reason).await
    } else {
        relay::request(s, id, action, reason).await
    }
}

/// [`act`] on the replica that drives rollouts.
async fn act_as_driver(
    s: &Services,
    id: &str,
    action: Action,
    reason: Option<String>,
) -> Result<row::Model, ServiceError> {
    if !s.replica.drives_rollouts() {
        return Err(ServiceError::Unavailable(
            "this replica stopped driving rollouts (the `rollouts` lease moved); retry".into(),
        ));
    }
    let mut st = s.publisher.state.lock().await;
    match st.rollout.as_ref() {
        Some(r) if r.id == id => {}
        _ => {
            return Err(match row::Entity::find_by_id(id).one(&s.db).await? {
                Some(r) => ServiceError::Conflict(format!(
                    "rollout `{id}` is {}; only a running or paused rollout can be changed",
                    r.status
                )),
                None => ServiceError::NotFound(format!("rollout `{id}`")),
            })
        }
    }
    apply(s, &mut st, action, reason).await?;
    let current = Snapshot::new(0, crate::snapshot::load_config(s).await?);
    reconcile(s, &mut st, current).await?;
    s.publisher.send(s, &st)?;
    drop(st);
    crate::replica::announce(s).await;
    row::Entity::find_by_id(id)
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("rollout `{id}`")))
}

async fn apply(
    s: &Services,
    st: &mut State,
    action: Action,
    reason: Option<String>,
) -> Result<(), ServiceError> {
    let now = s.clock.now();
    let (Some(stable), Some(mut r)) = (st.stable.clone(), st.rollout.take()) else {
        return Ok(());
    };
    match action {
        Action::Pause => {
            r.paused = true;
            r.reason = reason;
        }
        Action::Resume => {
            r.paused = false;
            r.reason = None;
            r.wave_started_at = now;
        }
        Action::Promote if r.reached + 1 < r.plan.waves.len() => {
            // The next wave's nodes leave the old track, which serves at most its version.
            r.new = hand_over(s, &r.new, stable.version()).await?;
            r.new_versions.insert(r.new.version());
            r.reached += 1;
            r.wave_started_at = now;
            r.paused = false;
            r.reason = reason;
            tracing::info!(rollout = %r.id, wave = r.reached, version = r.new.version(), "rollout wave started");
        }
        Action::Promote => {
            // Every node moves to the new content, which becomes the stable version.
            let done = hand_over(s, &r.new, stable.version()).await?;
            r.new = done.clone();
            r.new_versions.insert(done.version());
            r.reason = reason;
            finish(s, &r, Status::Completed).await?;
            tracing::info!(rollout = %r.id, version = done.version(), "rollout completed");
            st.stable = Some(done);
            return Ok(());
        }
        Action::Rollback => {
            // Every node of the new track moves back to the old content, under a number above
            // every new-track version.
            let back = hand_over(s, &stable, r.new.version()).await?;
            r.old_versions.insert(back.version());
            r.reason = reason;
            st.rejected_policy = Some(r.new_policy_hash.clone());
            st.stable = Some(back.clone());
            finish(s, &r, Status::RolledBack).await?;
            tracing::warn!(rollout = %r.id, version = back.version(), reason = ?r.reason, "rollout rolled back");
            return Ok(());
        }
    }
    persist(s, &r).await?;
    st.rollout = Some(r);
    Ok(())
}

/// Writes the rollout's row (running or paused).
async fn persist(s: &Services, r: &Active) -> Result<(), ServiceError> {
    write_row(
        s,
        r,
        if r.paused {
            Status::Paused
        } else {
            Status::Running
        },
    )
    .await
}

async fn finish(s: &Services, r: &Active, status: Status) -> Result<(), ServiceError> {
    write_row(s, r, status).await
}

async fn write_row(s: &Services, r: &Active, status: Status) -> Result<(), ServiceError> {
    let old_version = r.old_versions.iter().next_back().copied().unwrap_or(0);
    let model = row::ActiveModel {
        id: Set(r.id.clone()),
        status: Set(status.as_str().to_owned()),
        plan: Set(serde_json::to_string(r.plan.as_ref()).unwrap_or_default()),
        wave: Set(i32::try_from(r.reached).unwrap_or(i32::MAX)),
        old_version: Set(i64::try_from(old_version).unwrap_or(i64::MAX)),
        new_version: Set(i64::try_from(r.new.version()).unwrap_or(i64::MAX)),
        old_policy_hash: Set(r.old_policy_hash.clone()),
        new_policy_hash: Set(r.new_policy_hash.clone()),
        reason: Set(r.reason.clone()),
        created_at: Set(r.created_at),
        updated_at: Set(s.clock.now()),
        wave_started_at: Set(r.wave_started_at),
    };
    row::Entity::insert(model)
        .on_conflict(
            OnConflict::column(row::Column::Id)
                .update_columns([
                    row::Column::Status,
                    row::Column::Wave,
                    row::Column::OldVersion,
                    row::Column::NewVersion,
                    row::Column::Reason,
                    row::Column::UpdatedAt,
                    row::Column::WaveStartedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(&s.db)
        .await?;
    s.publisher.wrote();
    Ok(())
}

/// The gates' view now: traffic of each track over the window, NACKs of the new version.
fn read_gates(s: &Services, r: &Active, now: DateTime<Utc>) -> Reading {
    let window = chrono::Duration::seconds(i64::try_from(r.plan.gates.window_s).unwrap_or(300));
    let by_version = s.node_states.traffic(now, window);
    let mut new = Traffic::default();
    let mut old = Traffic::default();
    for (v, t) in &by_version {
        let into = if r.new_versions.contains(v) {
            &mut new
        } else if r.old_versions.contains(v) {
            &mut old
        } else {
            continue;
        };
        into.add(t.requests, t.errors, &t.latency_buckets);
    }
    let nacks = s.node_states.nacks_of(&r.new_versions);
    Reading {
        at: now,
        verdict: evaluate(&r.plan.gates, &new, &old, nacks),
        new,
        old,
        nacks,
    }
}

/// One evaluation of the running rollout: a failed gate pauses or rolls back at once (during
/// the bake too); a pass after the wave's bake time moves to the next wave.
async fn step(s: &Services) -> Result<(), ServiceError> {
    if !s.replica.drives_rollouts() {
        return Ok(());
    }
    relay::serve(s).await?;
    shared_reports::sync(s).await?;
    let mut st = s.publisher.state.lock().await;
    let now = s.clock.now();
    let Some(r) = st.rollout.as_mut() else {
        return Ok(());
    };
    if r.paused {
        return Ok(());
    }
    let reading = read_gates(s, r, now);
    let verdict = reading.verdict.clone();
    r.last = Some(reading);
    let baked =
        r.plan.waves.get(r.reached).is_none_or(|w| {
            (now - r.wave_started_at).num_milliseconds() >= (w.bake_s * 1000) as i64
        });
    let (id, on_failure) = (r.id.clone(), r.plan.on_failure);
    let action = match verdict {
        Verdict::Fail(reason) => {
            tracing::warn!(rollout = %id, %reason, "rollout gate failed");
            Some((
                match on_failure {
                    OnFailure::Pause => Action::Pause,
                    OnFailure::Rollback => Action::Rollback,
                },
                Some(format!("gate failed: {reason}")),
                "rollout.gate_failed",
            ))
        }
        Verdict::Pass if baked => Some((Action::Promote, None, "rollout.wave_passed")),
        _ => None,
    };
    let Some((action, reason, audit_action)) = action else {
        return Ok(());
    };
    apply(s, &mut st, action, reason.clone()).await?;
    let current = Snapshot::new(0, crate::snapshot::load_config(s).await?);
    reconcile(s, &mut st, current).await?;
    // Audited before the nodes can see its effect: whoever sees a node rolled back finds why.
    crate::service::audit::record(
        &s.db,
        &crate::service::authz::Actor::system(),
        crate::service::audit::Change {
            action: audit_action,
            resource_type: "rollout",
            resource_id: &id,
            team_id: None,
            before: None,
            after: Some(serde_json::json!({ "action": format!("{action:?}").to_lowercase(), "reason": reason })),
        },
    )
    .await?;
    s.publisher.send(s, &st)?;
    drop(st);
    crate::replica::announce(s).await;
    Ok(())
}

/// Evaluates the running rollout and measures drift every [`TICK`] until `shutdown`.
pub async fn drive(s: Services, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = step(&s).await {
            tracing::warn!(error = %e, "rollout step failed");
        }
        let bound = chrono::Duration::from_std(s.config_drift_after)
            .unwrap_or(chrono::Duration::seconds(60));
        for (node, drifting) in s.node_states.drift(s.clock.now(), bound) {
            s.metrics.node_drift(&node, drifting);
        }
    }
}

/// The rollout in progress, if any (a copy, for views).
pub(crate) async fn active(s: &Services) -> Option<Active> {
    s.publisher.state.lock().await.rollout.clone()
}

/// The rollout policy in effect.
pub(crate) async fn policy(s: &Services) -> Option<Arc<Plan>> {
    let mut st = s.publisher.state.lock().await;
    if !st.loaded {
        if let Err(e) = load(s, &mut st).await {
            tracing::warn!(error = %e, "could not read the rollout policy");
        }
        st.loaded = true;
    }
    st.policy.clone()
}

/// Sets (or clears) the rollout policy in memory after its row was committed. Clearing it
/// while a rollout is in progress is refused by the caller.
pub(crate) async fn set_policy(s: &Services, plan: Option<Plan>) -> Result<(), ServiceError> {
    let mut st = s.publisher.state.lock().await;
    if plan.is_none() && st.rollout.is_some() {
        return Err(ServiceError::Conflict(
            "a rollout is in progress: complete it or roll it back before removing the policy"
                .into(),
        ));
    }
    st.policy = plan.map(Arc::new);
    Ok(())
}

/// The rows of every rollout whose status is in `statuses` (all when empty), newest first.
pub(crate) async fn rows(s: &Services, limit: u64) -> Result<Vec<row::Model>, ServiceError> {
    use sea_orm::QuerySelect;
    Ok(row::Entity::find()
        .order_by_desc(row::Column::CreatedAt)
        .limit(limit)
        .all(&s.db)
        .await?)
}

/// One rollout's row.
pub(crate) async fn find(s: &Services, id: &str) -> Result<row::Model, ServiceError> {
    row::Entity::find()
        .filter(row::Column::Id.eq(id))
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("rollout `{id}`")))
}
