//! Monthly statements per team (R-4.8).
//!
//! **Which events a month covers.** A month is by the event's `started_at`, in UTC. It closes
//! [`Services::statement_grace`] after it ends (72 h by default): the closer records the month
//! in `statement_closes` with the ingest sequence reached at that moment (`close_seq`; sequence
//! numbers are taken in commit order). A closed month covers exactly its events stored up to
//! its `close_seq`; an event stored after its month closed lands in the first month still open
//! when it arrived, as a line that names its original day. Months close in order, so for month
//! `M` whose predecessor closed with `cs(M−1)`:
//!
//! ```text
//! covers(M) = { started in M                       and (M open or seq ≤ cs(M)) }
//!           ∪ { started before M, seq > cs(M−1)    and (M open or seq ≤ cs(M)) }
//! ```
//!
//! Every event is covered by exactly one month, so statements never double count or drop one.
//! (A month before the first one closed counts as closed with it, at its `close_seq`.)
//!
//! **Lines.** Each covered event's cost is itemised by the catalog price version it was charged
//! (`shared::pricing::cost_lines`, each unit's line rounded on its own exactly as the data plane
//! charged it) and summed per model, price version, unit (and original day, for late events).
//! What the catalog lines do not explain of an event's recorded cost — a cache hit charged at
//! the route's hit cost, a flagged or unpriced request, an image size priced apart — is an
//! `other` line, so the total is always the sum of the covered ledger rows' `cost_micros`, to the
//! micro-dollar.
//!
//! **Balances.** With a prepaid balance: opening = credits before the month − the usage
//! deducted from it (events stored after the balance opened, by ingest sequence) that earlier
//! months cover; closing = opening + the month's credits − the month's deducted usage.
//!
//! **Immutability.** A closed month's statement is stored whole (`statements`) the first time it
//! is read or by the closer, and served from there from then on.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};

use super::authz::{Action, Actor};
use super::balances::{self, Entry};
use super::{ServiceError, Services};
use crate::store::{
    budget, model_price_version, provider_account, statement, statement_close, team, usage_event,
};

/// How long after a month ends it closes, unless configured.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(72 * 3600);
/// Events read per query while building a statement.
const PAGE: u64 = 10_000;

/// `GET /statements` parameters.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatementQuery {
    pub team_id: String,
    /// `YYYY-MM` (UTC).
    pub month: String,
}

/// One line item: a unit of one model at one price version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Line {
    /// The alias the requests asked for.
    pub model: String,
    /// The provider model that served them.
    pub served_model: String,
    /// The kind of the provider that served (`openai`, `anthropic`, ...).
    pub provider: String,
    pub price_version: i64,
    /// input_tokens | cached_input_tokens | output_tokens | reasoning_tokens | images | seconds
    /// | characters | other
    pub unit: String,
    /// Tokens, images, seconds (with millisecond precision, as milliseconds / 1000), characters;
    /// for `other`, the number of requests whose cost the catalog lines do not fully explain.
    pub quantity: String,
    /// Micro-USD per `price_basis`.
    pub unit_price_micros: i64,
    /// per_1m_tokens | per_image | per_second | per_1m_characters | none
    pub price_basis: String,
    pub amount_micros: i64,
    pub requests: u64,
    /// For an event that arrived after its own month closed: the UTC day it happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_day: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Statement {
    pub team_id: String,
    /// `YYYY-MM`.
    pub month: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// `period_end` + the grace period.
    pub closes_at: DateTime<Utc>,
    /// open | closed
    pub status: String,
    pub closed_at: Option<DateTime<Utc>>,
    pub currency: String,
    pub lines: Vec<Line>,
    /// Top-ups and adjustments made in the month.
    pub credits: Vec<StatementCredit>,
    /// Usage events the statement covers.
    pub requests: u64,
    /// Of them, events that arrived after their own month closed.
    pub late_requests: u64,
    /// The sum of the lines: equal to the covered ledger rows' `cost_micros`.
    pub usage_micros: i64,
    pub credits_micros: i64,
    /// Present when the team has a prepaid balance.
    pub opening_balance_micros: Option<i64>,
    pub closing_balance_micros: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatementCredit {
    pub id: String,
    pub kind: String,
    pub amount_micros: i64,
    pub actor_type: String,
    pub actor_id: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

impl From<Entry> for StatementCredit {
    fn from(e: Entry) -> Self {
        StatementCredit {
            id: e.id,
            kind: e.kind,
            amount_micros: e.amount_micros,
            actor_type: e.actor_type,
            actor_id: e.actor_id,
            reason: e.reason,
            created_at: e.created_at,
        }
    }
}

/// A calendar month in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    pub fn parse(s: &str) -> Option<Month> {
        let (y, m) = s.split_once('-')?;
        if y.len() != 4 || m.len() != 2 {
            return None;
        }
        let month = Month {
            year: y.parse().ok()?,
            month: m.parse().ok()?,
        };
        NaiveDate::from_ymd_opt(month.year, month.month, 1)?;
        Some(month)
    }

    pub fn of(t: DateTime<Utc>) -> Month {
        Month {
            year: t.year(),
            month: t.month(),
        }
    }

    pub fn start(self) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(self.year, self.month, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(DateTime::<Utc>::UNIX_EPOCH, |d| Utc.from_utc_datetime(&d))
    }

    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    pub fn prev(self) -> Month {
        if self.month == 1 {
            Month {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    pub fn end(self) -> DateTime<Utc> {
        self.next().start()
    }

    pub fn closes_at(self, grace: Duration) -> DateTime<Utc> {
        self.end() + chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Closes every month whose grace period is over, in order, each with the ingest sequence
/// reached now, and stores the statements of the teams they cover. Called by the closer task
/// and before every statement is served. Returns the months it closed.
pub async fn close_due(s: &Services) -> Result<Vec<String>, ServiceError> {
    let now = s.clock.now();
    let latest = statement_close::Entity::find()
        .order_by_desc(statement_close::Column::Month)
        .one(&s.db)
        .await?;
    let mut month = match latest {
        Some(c) => match Month::parse(&c.month) {
            Some(m) => m.next(),
            None => return Ok(Vec::new()),
        },
        None => {
            // The first month with any usage or credit is the first to close.
            let first_event: Option<i64> = usage_event::Entity::find()
                .select_only()
                .column_as(usage_event::Column::StartedAtMs.min(), "first")
                .into_tuple::<Option<i64>>()
                .one(&s.db)
                .await?
                .flatten();
            let first_credit = crate::store::balance_entry::Entity::find()
                .order_by_asc(crate::store::balance_entry::Column::CreatedAt)
                .one(&s.db)
                .await?
                .map(|e| e.created_at);
            let first = first_event
                .and_then(DateTime::from_timestamp_millis)
                .into_iter()
                .chain(first_credit)
                .min();
            match first {
                Some(t) => Month::of(t),
                None => return Ok(Vec::new()),
            }
        }
    };
    let mut closed = Vec::new();
    while month.closes_at(s.statement_grace) <= now {
        // Every event stored so far is at or below this, every later one above it.
        let close_seq = crate::service::usage::sequence::committed_through(&s.db).await?;
        let inserted = statement_close::Entity::insert(statement_close::ActiveModel {
            month: Set(month.to_string()),
            closed_at: Set(now),
            close_seq: Set(close_seq),
        })
        .on_conflict(
            OnConflict::column(statement_close::Column::Month)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&s.db)
        .await?;
        if inserted > 0 {
            closed.push(month.to_string());
            store_closed_month(s, month).await?;
        }
        month = month.next();
    }
    Ok(closed)
}

/// Stores the statement of every team with usage or credits in a month just closed.
async fn store_closed_month(s: &Services, month: Month) -> Result<(), ServiceError> {
    let teams: Vec<String> = team::Entity::find()
        .select_only()
        .column(team::Column::Id)
        .into_tuple()
        .all(&s.db)
        .await?;
    for t in teams {
        let st = build(s, &t, month).await?;
        if st.requests > 0 || !st.credits.is_empty() {
            persist(s, &st).await?;
        }
    }
    Ok(())
}

async fn persist(s: &Services, st: &Statement) -> Result<(), ServiceError> {
    let (Some(closed_at), true) = (st.closed_at, st.status == "closed") else {
        return Ok(());
    };
    let body = serde_json::to_string(st)
        .map_err(|e| ServiceError::Conflict(format!("statement body: {e}")))?;
    statement::Entity::insert(statement::ActiveModel {
        team_id: Set(st.team_id.clone()),
        month: Set(st.month.clone()),
        closed_at: Set(closed_at),
        total_micros: Set(st.usage_micros),
        body: Set(body),
    })
    .on_conflict(
        OnConflict::columns([statement::Column::TeamId, statement::Column::Month])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&s.db)
    .await?;
    Ok(())
}

/// Closes due months every minute until shutdown.
pub async fn run_closer(s: Services, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = close_due(&s).await {
            tracing::warn!(error = %e, "closing statement months failed; will retry");
        }
    }
}

/// `GET /statements?team_id=…&month=YYYY-MM`: the team's billing role, owners and admins.
pub async fn get(
    s: &Services,
    actor: &Actor,
    q: StatementQuery,
) -> Result<Statement, ServiceError> {
    actor.require(Action::ReadBilling)?;
    actor.require_team(&q.team_id, "team")?;
    let month =
        Month::parse(&q.month).ok_or_else(|| ServiceError::invalid("month", "must be YYYY-MM"))?;
    team::Entity::find_by_id(q.team_id.as_str())
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("team `{}`", q.team_id)))?;
    close_due(s).await?;
    if let Some(stored) = statement::Entity::find_by_id((q.team_id.clone(), month.to_string()))
        .one(&s.db)
        .await?
    {
        return serde_json::from_str(&stored.body)
            .map_err(|e| ServiceError::Conflict(format!("stored statement: {e}")));
    }
    let st = build(s, &q.team_id, month).await?;
    persist(s, &st).await?;
    Ok(st)
}

/// The close records of `months`, by month.
async fn closes(
    s: &Services,
    months: &[Month],
) -> Result<BTreeMap<Month, statement_close::Model>, ServiceError> {
    let names: Vec<String> = months.iter().map(Month::to_string).collect();
    let mut found: BTreeMap<Month, statement_close::Model> = statement_close::Entity::find()
        .filter(statement_close::Column::Month.is_in(names))
        .all(&s.db)
        .await?
        .into_iter()
        .filter_map(|c| Some((Month::parse(&c.month)?, c)))
        .collect();
    // A month before the first one closed had no usage or credit when that one closed: it
    // counts as closed with it, so an event of it that arrives later lands in the next open
    // month like any late event (never in a month that is already past).
    let first = statement_close::Entity::find()
        .order_by_asc(statement_close::Column::Month)
        .one(&s.db)
        .await?;
    if let Some(first) = first {
        if let Some(first_month) = Month::parse(&first.month) {
            for m in months.iter().filter(|m| **m < first_month) {
                found.entry(*m).or_insert_with(|| first.clone());
            }
        }
    }
    Ok(found)
}

/// The catalog's prices by (provider kind, model), each with its versions ascending.
type Catalog = BTreeMap<(String, String), Vec<model_price_version::Model>>;

fn price_at(
    catalog: &Catalog,
    kind: &str,
    model: &str,
    version: i64,
) -> Option<modelgate_shared::pricing::Price> {
    let find = |k: &str| {
        catalog
            .get(&(k.to_owned(), model.to_owned()))?
            .iter()
            .rev()
            .find(|v| v.version <= version)
    };
    // The row of the deployment's provider kind, else the row for any provider (`*`).
    let v = find(kind).or_else(|| find("*"))?;
    Some(modelgate_shared::pricing::Price {
        input_micros_per_mtok: v.input_micros_per_mtok,
        output_micros_per_mtok: v.output_micros_per_mtok,
        cached_input_micros_per_mtok: v.cached_input_micros_per_mtok,
        reasoning_micros_per_mtok: v.reasoning_micros_per_mtok,
        per_image_micros: v.per_image_micros,
        per_second_micros: v.per_second_micros,
        per_mchar_micros: v.per_mchar_micros,
        version: u64::try_from(v.version).unwrap_or(0),
    })
}

#[derive(Default)]
struct Sum {
    quantity: u64,
    unit_price: i64,
    basis: &'static str,
    amount: i64,
    requests: u64,
}

type LineKey = (String, String, String, i64, Option<String>, String);

/// Computes the statement of `team_id` for `month` from the ledger.
async fn build(s: &Services, team_id: &str, month: Month) -> Result<Statement, ServiceError> {
    use usage_event::Column as E;
    let (start, end) = (month.start(), month.end());
    let cl = closes(s, &[month.prev(), month]).await?;
    let this_close = cl.get(&month);
    let prev_close = cl.get(&month.prev()).map(|c| c.close_seq);
    let balance_row = budget::Entity::find_by_id(balances::row_id(team_id))
        .one(&s.db)
        .await?
        .filter(|b| b.kind == balances::BALANCE);
    let opened_seq = balance_row.as_ref().map(|b| b.opened_seq.unwrap_or(0));

    let catalog: Catalog = model_price_version::Entity::find()
        .order_by_asc(model_price_version::Column::Version)
        .all(&s.db)
        .await?
        .into_iter()
        .fold(BTreeMap::new(), |mut m, v| {
            m.entry((v.provider.clone(), v.model.clone()))
                .or_insert_with(Vec::new)
                .push(v);
            m
        });
    let kinds: BTreeMap<String, String> = provider_account::Entity::find()
        .all(&s.db)
        .await?
        .into_iter()
        .map(|p| (p.id, p.kind))
        .collect();

    // covers(M), see the module doc, read as two scans the team index `(team_id, started_at_ms,
    // seq, …)` serves: the month's own events, in time order, and the late ones (started
    // before M, stored after M−1 closed), with `seq` checked on the index entries. One scan
    // ordered by `seq` over both made every page merge the partitions' `seq` indexes from the
    // cursor, reading a partition with none of the team's events to its end each time.
    let (start_ms, end_ms) = (start.timestamp_millis(), end.timestamp_millis());
    let mut team = Condition::all()
        .add(E::TeamId.eq(team_id))
        .add(E::Seq.is_not_null());
    if let Some(c) = this_close {
        team = team.add(E::Seq.lte(c.close_seq));
    }
    let mut sums: BTreeMap<LineKey, Sum> = BTreeMap::new();
    let (mut requests, mut late, mut usage, mut deducted) = (0u64, 0u64, 0i64, 0i64);
    let mut count = |e: &usage_event::Model| {
        requests += 1;
        usage += e.cost_micros;
        if opened_seq.is_some_and(|o| e.seq.is_some_and(|seq| seq > o)) {
            deducted += e.cost_micros;
        }
        let original_day = (e.started_at_ms < start_ms).then(|| {
            late += 1;
            day(e.started_at_ms)
        });
        itemise(&mut sums, e, original_day, &catalog, &kinds);
    };

    let in_month = team
        .clone()
        .add(E::StartedAtMs.gte(start_ms))
        .add(E::StartedAtMs.lt(end_ms));
    let mut after: Option<(i64, i64)> = None;
    loop {
        let mut cond = in_month.clone();
        if let Some((at, seq)) = after {
            // The first bound starts the index range at the cursor; the second breaks the tie
            // on the millisecond.
            cond = cond.add(E::StartedAtMs.gte(at)).add(
                Condition::any()
                    .add(E::StartedAtMs.gt(at))
                    .add(E::Seq.gt(seq)),
            );
        }
        let page = usage_event::Entity::find()
            .filter(cond)
            .order_by_asc(E::StartedAtMs)
            .order_by_asc(E::Seq)
            .limit(PAGE)
            .all(&s.db)
            .await?;
        page.iter().for_each(&mut count);
        match page.last() {
            Some(e) if page.len() as u64 == PAGE => {
                after = Some((e.started_at_ms, e.seq.unwrap_or(0)))
            }
            _ => break,
        }
    }

    if let Some(cs) = prev_close {
        let late_ones = team.add(E::StartedAtMs.lt(start_ms)).add(E::Seq.gt(cs));
        let mut after = cs;
        loop {
            let page = usage_event::Entity::find()
                .filter(late_ones.clone())
                .filter(E::Seq.gt(after))
                .order_by_asc(E::Seq)
                .limit(PAGE)
                .all(&s.db)
                .await?;
            page.iter().for_each(&mut count);
            match page.last().and_then(|e| e.seq) {
                Some(last) if page.len() as u64 == PAGE => after = last,
                _ => break,
            }
        }
    }

    let credits = balances::entries_between(s, team_id, start, end).await?;
    let credits_micros: i64 = credits.iter().map(|c| c.amount_micros).sum();
    let (opening, closing) = match opened_seq {
        None => (None, None),
        Some(opened) => {
            let before = balances::entries_between(s, team_id, DateTime::<Utc>::UNIX_EPOCH, start)
                .await?
                .iter()
                .map(|c| c.amount_micros)
                .sum::<i64>();
            let spent_before = usage_before(s, team_id, opened, start, prev_close).await?;
            let opening = before - spent_before;
            (Some(opening), Some(opening + credits_micros - deducted))
        }
    };
    let lines = sums
        .into_iter()
        .map(
            |((model, served_model, provider, price_version, original_day, unit), v)| Line {
                quantity: if unit == "seconds" {
                    format!("{}.{:03}", v.quantity / 1000, v.quantity % 1000)
                } else {
                    v.quantity.to_string()
                },
                model,
                served_model,
                provider,
                price_version,
                unit,
                unit_price_micros: v.unit_price,
                price_basis: v.basis.to_owned(),
                amount_micros: v.amount,
                requests: v.requests,
                original_day,
            },
        )
        .collect();
    let now = s.clock.now();
    Ok(Statement {
        team_id: team_id.to_owned(),
        month: month.to_string(),
        period_start: start,
        period_end: end,
        closes_at: month.closes_at(s.statement_grace),
        status: if this_close.is_some() {
            "closed".into()
        } else {
            "open".into()
        },
        closed_at: this_close.map(|c| c.closed_at),
        currency: "USD".into(),
        lines,
        credits: credits.into_iter().map(StatementCredit::from).collect(),
        requests,
        late_requests: late,
        usage_micros: usage,
        credits_micros,
        opening_balance_micros: opening,
        closing_balance_micros: closing.filter(|_| now >= start),
    })
}

/// Itemises one event's cost into the lines of its model, price version and unit.
fn itemise(
    sums: &mut BTreeMap<LineKey, Sum>,
    e: &usage_event::Model,
    original_day: Option<String>,
    catalog: &Catalog,
    kinds: &BTreeMap<String, String>,
) {
    use modelgate_shared::pricing::{cost_lines, Tokens};
    let kind = kinds.get(&e.provider_id).map_or("", String::as_str);
    let priced = price_at(catalog, kind, &e.served_model, e.price_version);
    let provider = kind.to_owned();
    let key = |unit: &str| -> LineKey {
        (
            e.requested_model.clone(),
            e.served_model.clone(),
            provider.clone(),
            e.price_version,
            original_day.clone(),
            unit.to_owned(),
        )
    };
    let mut explained = 0i64;
    if let Some(price) = &priced {
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        let tokens = Tokens {
            input: u(e.input_tokens),
            output: u(e.output_tokens),
            cached_input: u(e.cached_input_tokens),
            reasoning: u(e.reasoning_tokens),
            images: u(e.images),
            media_ms: u(e.media_ms),
            characters: u(e.characters),
        };
        let lines = cost_lines(tokens, price);
        explained = lines.iter().map(|l| l.amount_micros).sum();
        // A cache hit or a flagged request is not charged its catalog lines: all of its cost
        // goes to `other` below, and its units are not listed as charged.
        if explained == e.cost_micros {
            for l in lines.iter().filter(|l| l.quantity > 0) {
                let sum = sums.entry(key(l.unit.as_str())).or_default();
                sum.quantity += l.quantity;
                sum.unit_price = l.unit_price_micros;
                sum.basis = l.unit.price_basis();
                sum.amount += l.amount_micros;
                sum.requests += 1;
            }
        } else {
            explained = 0;
        }
    }
    let rest = e.cost_micros - explained;
    if rest != 0 {
        let sum = sums.entry(key("other")).or_default();
        sum.quantity += 1;
        sum.basis = "none";
        sum.amount += rest;
        sum.requests += 1;
    }
}

/// The UTC day (`YYYY-MM-DD`) of a time in unix milliseconds.
fn day(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// Usage of events stored since the balance opened (deducted from it) that months before
/// `start` cover.
async fn usage_before(
    s: &Services,
    team_id: &str,
    opened_seq: i64,
    start: DateTime<Utc>,
    prev_close: Option<i64>,
) -> Result<i64, ServiceError> {
    use usage_event::Column as E;
    let mut find = usage_event::Entity::find()
        .select_only()
        // SUM of a bigint is numeric on Postgres: cast back, exact below 2^63.
        .column_as(
            sea_orm::sea_query::Expr::cust("CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT)"),
            "spent",
        )
        .filter(E::TeamId.eq(team_id))
        .filter(E::Seq.is_not_null())
        .filter(E::Seq.gt(opened_seq))
        .filter(E::StartedAtMs.lt(start.timestamp_millis()));
    if let Some(cs) = prev_close {
        find = find.filter(E::Seq.lte(cs));
    }
    let spent: Option<i64> = find.into_tuple::<i64>().one(&s.db).await?;
    Ok(spent.unwrap_or(0))
}

/// The statement as CSV: one row per line item, credit and total, with a `record` column.
pub fn to_csv(st: &Statement) -> String {
    let mut out = String::from(
        "record,team_id,month,model,served_model,provider,price_version,unit,quantity,\
         unit_price_micros,price_basis,requests,amount_micros,original_day,reason,created_at\n",
    );
    let mut row = |fields: [&str; 16]| {
        let escaped: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&escaped.join(","));
        out.push('\n');
    };
    let (t, m) = (st.team_id.as_str(), st.month.as_str());
    for l in &st.lines {
        row([
            "line",
            t,
            m,
            &l.model,
            &l.served_model,
            &l.provider,
            &l.price_version.to_string(),
            &l.unit,
            &l.quantity,
            &l.unit_price_micros.to_string(),
            &l.price_basis,
            &l.requests.to_string(),
            &l.amount_micros.to_string(),
            l.original_day.as_deref().unwrap_or(""),
            "",
            "",
        ]);
    }
    for c in &st.credits {
        row([
            &c.kind,
            t,
            m,
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            &c.amount_micros.to_string(),
            "",
            &c.reason,
            &c.created_at.to_rfc3339(),
        ]);
    }
    let mut total = |name: &str, v: Option<i64>| {
        if let Some(v) = v {
            let v = v.to_string();
            row([
                name, t, m, "", "", "", "", "", "", "", "", "", &v, "", "", "",
            ]);
        }
    };
    total("usage_total", Some(st.usage_micros));
    total("credits_total", Some(st.credits_micros));
    total("opening_balance", st.opening_balance_micros);
    total("closing_balance", st.closing_balance_micros);
    out
}

fn csv_field(s: &str) -> String {
    // A leading =, +, - or @ would be a formula to a spreadsheet: quoted and prefixed.
    let risky = s.starts_with(['=', '+', '@']) || (s.starts_with('-') && s.parse::<i64>().is_err());
    if risky || s.contains([',', '"', '\n', '\r']) {
        let body = if risky { format!("'{s}") } else { s.to_owned() };
        format!("\"{}\"", body.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_and_step_across_the_year() {
        let m = Month::parse("2026-12").unwrap();
        assert_eq!(m.next().to_string(), "2027-01");
        assert_eq!(m.next().prev(), m);
        assert_eq!(m.start().to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(m.end().to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(
            m.closes_at(DEFAULT_GRACE).to_rfc3339(),
            "2027-01-04T00:00:00+00:00"
        );
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", ""] {
            assert!(Month::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn csv_quotes_commas_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("-42"), "-42");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("=1+1"), "\"'=1+1\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
