//! Upgrades: a database left by any earlier release, with data in it, is migrated forward when
//! the control plane starts, keeps every row, and is served from.
//!
//! For each migration index k: a fresh database is migrated one migration at a time up to k,
//! and after each migration the rows that release could have written are inserted with plain
//! SQL valid at that schema (a team, key, provider with a credential sealed as releases of the
//! time sealed it, price, route, usage event, admin token, node, export sink, a check-traffic
//! usage event added to the first one's daily aggregate, user and membership, audit row, budget
//! with its period, grant and alert, rate limit, quarantined event, node revocation). Then a control plane starts on it — which runs the remaining
//! migrations — and the test checks that every row is still there and that the control plane
//! reads them: its published snapshot holds the seeded key, route, price and provider (with
//! its credential opened under the master key), the request log serves the seeded event, and
//! the daily aggregates hold the check traffic apart.
//!
//! A migration added later gets the same treatment from every earlier index without a change
//! here; a migration that adds a table should add its rows to `SEEDS`.

use modelgate_control_plane::service::authz::Actor;
use modelgate_control_plane::service::usage::{self, requests};
use modelgate_migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

use crate::support::{start_control_plane, TestDb};

const MASTER_KEY: &str = "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b";
const CREDENTIAL: &str = "sk-upgrade-credential-0001";
const AT: &str = "'2026-11-20T10:00:00+00:00'";

/// Rows to insert right after the migration of that name ran: `(table, id column, id, insert)`.
/// `{sealed}` is replaced by the provider credential sealed as that release sealed it.
fn seeds(migration: &str) -> Vec<(&'static str, &'static str, &'static str, String)> {
    let rows: Vec<(&str, &str, &str, &str)> = match migration {
        "m20261123_000001_foundation" => vec![
            ("teams", "id", "upg-team", "INSERT INTO teams (id, name, created_at) VALUES ('upg-team', 'upgrade-team', {at})"),
            ("api_keys", "id", "upg-key", "INSERT INTO api_keys (id, team_id, name, key_hash, prefix, environment, allowed_models, created_at) \
              VALUES ('upg-key', 'upg-team', 'upgrade-key', 'aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11', 'mg-upg', 'prod', '[\"upg-route\"]', {at})"),
            ("provider_accounts", "id", "upg-provider", "INSERT INTO provider_accounts (id, name, kind, base_url, credential_ciphertext, credential_last4, created_at) \
              VALUES ('upg-provider', 'upgrade-provider', 'openai-compatible', 'http://127.0.0.1:9/v1', '{sealed}', '0001', {at})"),
            ("models", "model", "upg-model", "INSERT INTO models (id, model, input_micros_per_mtok, output_micros_per_mtok, price_version, created_at) \
              VALUES ('upg-price', 'upg-model', 2500000, 10000000, 1, {at})"),
            ("routing_groups", "id", "upg-group", "INSERT INTO routing_groups (id, alias, deployments, created_at) \
              VALUES ('upg-group', 'upg-route', '[{\"provider_id\":\"upg-provider\",\"model\":\"upg-model\",\"weight\":1,\"tier\":0}]', {at})"),
            ("usage_events", "id", "upg-event", "INSERT INTO usage_events (id, request_id, started_at_ms, ended_at_ms, node_id, key_id, team_id, endpoint, \
              requested_model, provider_id, served_model, status, error_class, error_message, latency_us, ttfb_us, input_tokens, output_tokens, \
              cost_micros, price_version, streamed, estimated, ingested_at) \
              VALUES ('upg-event', 'upg-request', 1763632800000, 1763632800250, 'upg-node', 'upg-key', 'upg-team', 'chat.completions', \
              'upg-route', 'upg-provider', 'upg-model', 200, NULL, '', 250000, 90000, 21, 7, 123, 1, FALSE, FALSE, {at})"),
            ("admin_tokens", "id", "upg-token", "INSERT INTO admin_tokens (id, name, token_hash, prefix, created_at) \
              VALUES ('upg-token', 'upgrade-token', 'bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22', 'mgadm-upg', {at})"),
            ("data_plane_nodes", "node_id", "upg-node", "INSERT INTO data_plane_nodes (node_id, labels, software_version, applied_version, status, last_error, connected, last_seen) \
              VALUES ('upg-node', '{\"region\":\"eu\"}', '0.1.0', 1, 'acked', NULL, FALSE, {at})"),
        ],
        "m20261123_000002_metering" => vec![
            ("export_sinks", "id", "upg-sink", "INSERT INTO export_sinks (id, name, kind, url, created_at) \
              VALUES ('upg-sink', 'upgrade-sink', 'webhook', 'http://127.0.0.1:9/hook', {at})"),
            // A failed request of an acceptance run (`modelgate check`), counted in the same
            // daily aggregate as `upg-event` (see `aggregated_with_it`).
            ("usage_events", "id", "upg-check-event", "INSERT INTO usage_events (id, request_id, started_at_ms, ended_at_ms, node_id, key_id, team_id, endpoint, \
              requested_model, provider_id, served_model, status, error_class, error_message, latency_us, ttfb_us, input_tokens, output_tokens, \
              cost_micros, price_version, streamed, estimated, ingested_at, application) \
              VALUES ('upg-check-event', 'upg-check-request', 1763632900000, 1763632900100, 'upg-node', 'upg-key', 'upg-team', 'chat.completions', \
              'upg-check-route', 'upg-provider', 'upg-model', 502, NULL, '', 100000, 0, 5, 0, 40, 1, FALSE, FALSE, {at}, 'modelgate-check')"),
        ],
        "m20261123_000003_identity" => vec![
            ("users", "id", "upg-user", "INSERT INTO users (id, email, created_at) VALUES ('upg-user', 'upgrade@example.com', {at})"),
            ("team_members", "user_id", "upg-user", "INSERT INTO team_members (team_id, user_id, role, created_at) VALUES ('upg-team', 'upg-user', 'member', {at})"),
            ("audit_log", "id", "upg-audit", "INSERT INTO audit_log (id, actor_type, actor_id, action, resource_type, resource_id, team_id, created_at) \
              VALUES ('upg-audit', 'admin_token', 'upg-token', 'create', 'team', 'upg-team', 'upg-team', {at})"),
        ],
        "m20261123_000007_quotas" => vec![
            ("budgets", "id", "upg-budget", "INSERT INTO budgets (id, scope_kind, scope_id, amount_micros, period, enforcement, when_unreachable, fail_open_allowance_micros, created_at) \
              VALUES ('upg-budget', 'team', 'upg-team', 50000000, 'month', 'hard', 'fail_closed', 0, {at})"),
            ("budget_periods", "budget_id", "upg-budget", "INSERT INTO budget_periods (budget_id, period_start, spent_micros, alerts_fired) \
              VALUES ('upg-budget', 1761955200, 123, 0)"),
        ],
        "m20261123_000008_budget_alerts_and_grants" => vec![
            ("budget_grants", "budget_id", "upg-budget", "INSERT INTO budget_grants (budget_id, period_start, holder, granted_micros, consumed_micros, expires_at_ms) \
              VALUES ('upg-budget', 1761955200, 'upg-node/1', 1000000, 123, 1763632830000)"),
            ("budget_alerts", "id", "upg-alert", "INSERT INTO budget_alerts (id, budget_id, period_start, threshold_percent, url, body, attempts, next_attempt_ms, claimed_until_ms, give_up_at_ms, delivered_at_ms) \
              VALUES ('upg-alert', 'upg-budget', 1761955200, 50, 'http://127.0.0.1:9/alert', '{}', 1, 0, 0, 1763719200000, 1763632801000)"),
        ],
        "m20261123_000009_rate_limits" => vec![
            ("rate_limits", "id", "upg-limit", "INSERT INTO rate_limits (id, scope_kind, scope_id, model, rpm, tpm, max_concurrent, when_unreachable, created_at) \
              VALUES ('upg-limit', 'key', 'upg-key', NULL, 600, 0, 0, 'fail_open', {at})"),
        ],
        "m20261205_000010_usage_quarantine" => vec![
            ("usage_quarantine", "id", "upg-quarantined", "INSERT INTO usage_quarantine (id, event_id, node_id, reason, event, quarantined_at) \
              VALUES ('upg-quarantined', 'upg-bad-event', 'upg-node', 'unknown error class `teapot`', '{\"id\":\"upg-bad-event\"}', {at})"),
        ],
        "m20261205_000013_node_revocation" => vec![
            ("node_revocations", "node_id", "upg-revoked-node", "INSERT INTO node_revocations (node_id, revoked_at, revoked_by) \
              VALUES ('upg-revoked-node', {at}, 'upg-token')"),
        ],
        _ => vec![],
    };
    rows.into_iter()
        .map(|(t, c, id, sql)| (t, c, id, sql.replace("{at}", AT)))
        .collect()
}

/// What that release's ingest did beside storing a seeded event: `upg-check-event` was added to
/// the daily aggregate `upg-event` is in (the same day, key, team, user, model and provider).
fn aggregated_with_it(migration: &str) -> &'static str {
    match migration {
        "m20261123_000002_metering" => {
            "UPDATE usage_daily SET requests = requests + 1, errors = errors + 1, \
             input_tokens = input_tokens + 5, cost_micros = cost_micros + 40 \
             WHERE day = '2025-11-20' AND key_id = 'upg-key' AND user_id = '' \
             AND model = 'upg-model' AND provider_id = 'upg-provider'"
        }
        _ => "",
    }
}

async fn exec(db: &DatabaseConnection, sql: &str) {
    db.execute(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn count(db: &DatabaseConnection, table: &str, column: &str, id: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE {column} = '{id}'");
    let row = db
        .query_one(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

#[tokio::test]
async fn every_earlier_schema_with_data_migrates_forward_on_start_and_is_served() {
    let sealer = modelgate_control_plane::crypto::Sealer::from_hex(MASTER_KEY).unwrap();
    let names: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    // Every table a seed writes is covered from the index that creates it on.
    let bind_index = names
        .iter()
        .position(|n| n == "m20261205_000012_bind_sealed_values")
        .unwrap();
    for k in 1..=names.len() {
        let db = TestDb::new().await;
        let conn = Database::connect(&db.url).await.unwrap();
        let mut seeded = Vec::new();
        for (i, name) in names.iter().take(k).enumerate() {
            Migrator::up(&conn, Some(1)).await.unwrap_or_else(|e| {
                panic!("migrating to {name} (index {}) with data in it: {e}", i + 1)
            });
            // Before the binding migration, credentials were sealed unbound.
            let sealed = if i < bind_index {
                sealer.seal_unbound_as_earlier_releases_did(CREDENTIAL.as_bytes())
            } else {
                sealer.seal_bound(
                    CREDENTIAL.as_bytes(),
                    &modelgate_control_plane::crypto::provider_credential("upg-provider"),
                )
            };
            for (table, column, id, sql) in seeds(name) {
                exec(&conn, &sql.replace("{sealed}", &sealed)).await;
                seeded.push((table, column, id));
            }
            match aggregated_with_it(name) {
                "" => {}
                sql => exec(&conn, sql).await,
            }
        }
        let applied = Migrator::get_applied_migrations(&conn).await.unwrap().len();
        assert_eq!(applied, k, "the database is at index {k}");
        conn.close().await.unwrap();

        // The control plane migrates the rest when it starts, and serves from the old rows.
        let grpc = "127.0.0.1:0".parse().unwrap();
        let cp = start_control_plane(&db.url, MASTER_KEY, grpc).await;
        let conn = Database::connect(&db.url).await.unwrap();
        let pending = Migrator::get_pending_migrations(&conn).await.unwrap();
        assert!(
            pending.is_empty(),
            "from index {k}: {} migrations left",
            pending.len()
        );
        for (table, column, id) in &seeded {
            assert_eq!(
                count(&conn, table, column, id).await,
                1,
                "from index {k}: the {table} row {id} did not survive"
            );
        }
        let published = cp
            .services
            .publisher
            .latest()
            .expect("a snapshot was published");
        let config = &published.snapshot.config;
        assert!(
            config.keys.iter().any(|key| key.id == "upg-key"),
            "from index {k}"
        );
        assert!(
            config.groups.iter().any(|g| g.alias == "upg-route"),
            "from index {k}"
        );
        assert!(
            config.prices.iter().any(|p| p.model == "upg-model"),
            "from index {k}"
        );
        let provider = config
            .providers
            .iter()
            .find(|p| p.id == "upg-provider")
            .unwrap_or_else(|| panic!("from index {k}: the provider is not served"));
        assert_eq!(provider.credential, CREDENTIAL, "from index {k}");
        let row = requests::get(&cp.services, &Actor::system(), "upg-request")
            .await
            .unwrap_or_else(|e| panic!("from index {k}: the old usage event is not served: {e}"));
        assert_eq!(
            (row.input_tokens, row.output_tokens, row.cost_micros),
            (21, 7, 123)
        );
        // Listed under a key and alias filter too: that page reads the team index, which
        // migration 43 rebuilt with the alias and key in each entry.
        let filter = requests::RequestFilter {
            key_id: Some("upg-key".into()),
            model: Some("upg-route".into()),
            ..Default::default()
        };
        let page = requests::list(&cp.services, &Actor::system(), Default::default(), filter)
            .await
            .unwrap_or_else(|e| panic!("from index {k}: the request log failed: {e}"));
        let listed: Vec<&str> = page.data.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(listed, ["upg-request"], "from index {k}");
        // The daily aggregates hold the acceptance run's request apart (migration 46), with
        // the ordinary request's counts as they were.
        let daily = usage::daily(
            &cp.services,
            &Actor::system(),
            usage::DailyFilter {
                key_id: Some("upg-key".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let rows: Vec<(bool, i64, i64, i64, i64)> = daily
            .iter()
            .map(|r| {
                let counts = (r.requests, r.errors, r.input_tokens, r.cost_micros);
                (r.check_traffic, counts.0, counts.1, counts.2, counts.3)
            })
            .collect();
        let check_seeded = seeded.iter().any(|(_, _, id)| *id == "upg-check-event");
        let mut expected = vec![(false, 1, 0, 21, 123)];
        if check_seeded {
            expected.push((true, 1, 1, 5, 40));
        }
        assert_eq!(rows, expected, "from index {k}");
        conn.close().await.unwrap();
        cp.shutdown().await;
        db.drop_database().await;
    }
}
