//! `request-log`: how fast a page of the request log is at scale. Loads synthetic usage rows
//! into a scratch Postgres database (`request_log_load.sql`, seeded: the same rows each time)
//! unless it already holds them, runs the migrations (so the request log's indexes exist), then
//! runs the very statements `service::usage::requests::list` issues for representative filters
//! under `EXPLAIN (ANALYZE, BUFFERS)` and prints each one's execution time and the plan's
//! access path. Printed, not asserted.

use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use modelgate_control_plane::service::authz::{Actor, Role};
use modelgate_control_plane::service::usage::partitions;
use modelgate_control_plane::service::usage::requests::{self, RequestFilter};
use modelgate_control_plane::service::PageParams;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

#[derive(Args, Debug)]
pub struct RequestLogArgs {
    /// A scratch Postgres database (never the test database: rows are added to it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/mg_bench")]
    pub database_url: String,
    /// Rows to load when the table is empty.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: u64,
    /// Runs of each query (the median is printed).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

const LOAD_SQL: &str = include_str!("request_log_load.sql");

fn filter(pairs: &[(&str, &str)]) -> RequestFilter {
    let mut f = RequestFilter::default();
    for (k, v) in pairs {
        let v = Some((*v).to_owned());
        match *k {
            "from" => f.from = v,
            "to" => f.to = v,
            "key_id" => f.key_id = v,
            "team_id" => f.team_id = v,
            "user_id" => f.user_id = v,
            "application" => f.application = v,
            "environment" => f.environment = v,
            "model" => f.model = v,
            "provider_id" => f.provider_id = v,
            "status" => f.status = v,
            "error_class" => f.error_class = v,
            "fallback_used" => f.fallback_used = v,
            "streamed" => f.streamed = v,
            "min_latency_ms" => f.min_latency_ms = v,
            "min_cost_micros" => f.min_cost_micros = v,
            _ => {}
        }
    }
    f
}

async fn scalar(db: &sea_orm::DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .context("no row")?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

pub async fn run(args: RequestLogArgs) -> anyhow::Result<()> {
    if !args.database_url.starts_with("postgres") {
        bail!("request-log measures Postgres; give a postgres:// URL of a scratch database");
    }
    let started = Instant::now();
    let db = modelgate_control_plane::store::connect(&args.database_url).await?;
    println!(
        "connect + migrations: {:.1} s (index builds included when the rows were there first)",
        started.elapsed().as_secs_f64()
    );
    let mut count = scalar(&db, "SELECT count(*) FROM usage_events").await?;
    if count == 0 {
        let now = chrono::Utc::now();
        // A ledger that took these 30 days of traffic had its weekly partitions made as the
        // weeks came (the control plane's maintenance makes each ahead of time): make them for
        // the loaded span, so each row lands in its week's partition, not the default one.
        for weeks_ago in (0..=5).rev() {
            partitions::maintain(&db, now - chrono::Duration::weeks(weeks_ago), None).await?;
        }
        let end_ms = now.timestamp_millis();
        let sql = LOAD_SQL
            .replace(":rows", &args.rows.to_string())
            .replace(":end_ms", &end_ms.to_string());
        let t = Instant::now();
        db.execute_unprepared(&sql).await?;
        db.execute_unprepared("ANALYZE usage_events").await?;
        // The rows were stored around ingest: move its sequence past them, as ingest would.
        db.execute_unprepared(
            "INSERT INTO counters (name, value) \
             SELECT 'usage_seq', max(seq) FROM usage_events \
             ON CONFLICT (name) DO UPDATE SET value = GREATEST(counters.value, EXCLUDED.value)",
        )
        .await?;
        println!(
            "loaded {} rows in {:.1} s",
            args.rows,
            t.elapsed().as_secs_f64()
        );
        count = scalar(&db, "SELECT count(*) FROM usage_events").await?;
    }
    // The keys and teams the rows name: a key page adds its key's team to the condition.
    db.execute_unprepared(
        "INSERT INTO teams (id, name, created_at, version) \
         SELECT 'team-' || t, 'team-' || t, now(), 1 FROM generate_series(0, 49) AS t \
         ON CONFLICT DO NOTHING",
    )
    .await?;
    db.execute_unprepared(
        "INSERT INTO api_keys (id, team_id, name, key_hash, prefix, environment, \
           allowed_models, created_at) \
         SELECT 'key-' || k, 'team-' || (k % 50), 'key-' || k, 'synthetic-' || k, 'mg-', \
           'prod', '[]', now() FROM generate_series(0, 2000) AS k \
         ON CONFLICT DO NOTHING",
    )
    .await?;
    let newest = scalar(&db, "SELECT max(started_at_ms) FROM usage_events").await?;
    let oldest = scalar(&db, "SELECT min(started_at_ms) FROM usage_events").await?;
    println!("usage_events: {count} rows");
    // Where they are: each week's partition (and the default one), with its indexes' size.
    let mut tables: Vec<String> = partitions::list(&db)
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    tables.push("usage_events_default".to_owned());
    for table in tables {
        let rows = scalar(&db, &format!("SELECT count(*) FROM {table}")).await?;
        let heap = scalar(&db, &format!("SELECT pg_table_size('{table}')")).await?;
        let indexes = scalar(&db, &format!("SELECT pg_indexes_size('{table}')")).await?;
        println!(
            "  {table}: {rows} rows, table {:.0} MB, indexes {:.0} MB",
            heap as f64 / 1e6,
            indexes as f64 / 1e6
        );
    }

    let day = 86_400_000;
    let rfc = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap_or_default()
            .to_rfc3339()
    };
    let week_ago = rfc(newest - 7 * day);
    let six_days_ago = rfc(newest - 6 * day);
    let middle = oldest + (newest - oldest) / 2;
    let deep = requests::cursor_after(middle, i64::MAX);
    let admin = Actor::system();
    let team_viewer = Actor {
        role: Role::Viewer,
        team_id: Some("team-7".into()),
        ..Actor::system()
    };
    let cases: Vec<(&str, &Actor, Option<String>, RequestFilter)> = vec![
        ("newest page, no filter", &admin, None, filter(&[])),
        (
            "page at the middle of 30 days",
            &admin,
            Some(deep.clone()),
            filter(&[]),
        ),
        (
            "one day a week ago",
            &admin,
            None,
            filter(&[("from", &week_ago), ("to", &six_days_ago)]),
        ),
        ("team", &admin, None, filter(&[("team_id", "team-7")])),
        ("team-scoped token", &team_viewer, None, filter(&[])),
        (
            "team-scoped token, deep page",
            &team_viewer,
            Some(deep.clone()),
            filter(&[]),
        ),
        ("key", &admin, None, filter(&[("key_id", "key-123")])),
        (
            "key + model alias",
            &admin,
            None,
            filter(&[("key_id", "key-123"), ("model", "model-3")]),
        ),
        (
            "key without events",
            &admin,
            None,
            filter(&[("key_id", "key-2000")]),
        ),
        ("user", &admin, None, filter(&[("user_id", "user-42")])),
        (
            "application",
            &admin,
            None,
            filter(&[("application", "app-3")]),
        ),
        (
            "environment",
            &admin,
            None,
            filter(&[("environment", "dev")]),
        ),
        (
            "model alias (frequent)",
            &admin,
            None,
            filter(&[("model", "model-0")]),
        ),
        (
            "model alias (rare)",
            &admin,
            None,
            filter(&[("model", "model-19")]),
        ),
        (
            "provider",
            &admin,
            None,
            filter(&[("provider_id", "prov-2")]),
        ),
        ("status 5xx", &admin, None, filter(&[("status", "5xx")])),
        (
            "error class timeout (0.5 %)",
            &admin,
            None,
            filter(&[("error_class", "timeout")]),
        ),
        ("any error", &admin, None, filter(&[("error_class", "any")])),
        (
            "fallback used (1 %)",
            &admin,
            None,
            filter(&[("fallback_used", "true")]),
        ),
        ("streamed", &admin, None, filter(&[("streamed", "true")])),
        (
            "latency >= 20 s (2 %)",
            &admin,
            None,
            filter(&[("min_latency_ms", "20000")]),
        ),
        (
            "cost >= 19000 µ$ (<1 %)",
            &admin,
            None,
            filter(&[("min_cost_micros", "19000")]),
        ),
        (
            "team + model alias",
            &admin,
            None,
            filter(&[("team_id", "team-7"), ("model", "model-1")]),
        ),
        (
            "team + model + 5xx",
            &admin,
            None,
            filter(&[
                ("team_id", "team-7"),
                ("model", "model-1"),
                ("status", "5xx"),
            ]),
        ),
        (
            "team-scoped token + errors, a week ago",
            &team_viewer,
            None,
            filter(&[("error_class", "any"), ("to", &week_ago)]),
        ),
    ];
    println!("\n| filter (page of 100) | median ms | max ms | rows | plan |");
    println!("|---|---|---|---|---|");
    for (name, actor, after, f) in cases {
        let params = PageParams {
            after,
            limit: Some(100),
        };
        let st = requests::page_statement(actor, &params, &f, DbBackend::Postgres)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let explain = Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("EXPLAIN (ANALYZE, BUFFERS) {}", st.sql),
            st.values.map(|v| v.0).unwrap_or_default(),
        );
        let mut times = Vec::with_capacity(args.runs);
        let mut plan_line = String::new();
        let mut returned = String::new();
        for _ in 0..args.runs {
            let rows = db.query_all(explain.clone()).await?;
            let lines: Vec<String> = rows
                .iter()
                .filter_map(|r| r.try_get_by_index::<String>(0).ok())
                .collect();
            let ms = lines
                .iter()
                .find_map(|l| l.trim().strip_prefix("Execution Time: "))
                .and_then(|l| l.trim_end_matches(" ms").parse::<f64>().ok())
                .context("no execution time in the plan")?;
            times.push(ms);
            // The access path: the first scan node of the plan.
            plan_line = lines
                .iter()
                .find(|l| l.contains("Scan"))
                .map(|l| {
                    let l = l.trim().trim_start_matches("->").trim();
                    l.split("  (").next().unwrap_or(l).to_owned()
                })
                .unwrap_or_default();
            returned = lines
                .first()
                .and_then(|l| l.split("rows=").nth(2))
                .and_then(|r| r.split(' ').next())
                .unwrap_or("")
                .to_owned();
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let max = times[times.len() - 1];
        println!("| {name} | {median:.2} | {max:.2} | {returned} | {plan_line} |");
    }
    statements_at_scale(&db, &args, newest).await
}

/// The monthly statement of one team (`team-7`, a fiftieth of the rows) at this scale: the
/// previous month closed (built from its events and stored, once), then the current, open
/// month built from its events on every call. The synthetic rows have no catalog prices, so
/// every cost lands on the `other` line; the work (reading and itemising every event of the
/// team's month) is the same.
async fn statements_at_scale(
    db: &sea_orm::DatabaseConnection,
    args: &RequestLogArgs,
    newest_ms: i64,
) -> anyhow::Result<()> {
    use modelgate_control_plane::service::statements::{self, Month, StatementQuery};
    let s = modelgate_control_plane::service::Services::new(
        db.clone(),
        modelgate_control_plane::crypto::Sealer::from_hex(
            &modelgate_control_plane::crypto::Sealer::generate_master_key_hex(),
        )?,
        modelgate_shared::clock::system(),
    );
    let admin = Actor::system();
    let current = Month::of(chrono::DateTime::from_timestamp_millis(newest_ms).unwrap_or_default());
    println!("\n| statement of team-7 | month | requests | lines | ms |");
    println!("|---|---|---|---|---|");
    let time = |month: Month, what: &'static str| {
        let s = &s;
        let admin = &admin;
        async move {
            let q = StatementQuery {
                team_id: "team-7".into(),
                month: month.to_string(),
            };
            let t = Instant::now();
            let st = statements::get(s, admin, q).await?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            println!(
                "| {what} | {month} | {} | {} | {ms:.0} |",
                st.requests,
                st.lines.len()
            );
            anyhow::Ok(())
        }
    };
    time(current.prev(), "previous month, first read (closes it)").await?;
    time(current.prev(), "previous month, stored").await?;
    for _ in 0..args.runs.clamp(1, 3) {
        time(current, "current month, open (built each time)").await?;
    }
    Ok(())
}
