//! End-to-end tests of the whole system: a real control plane (Postgres when
//! `MODELGATE_TEST_DATABASE_URL` is set, SQLite otherwise), a real data plane talking gRPC to it,
//! and mock upstreams that are real HTTP servers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod admin_api;
mod anonymous;
mod anthropic;
mod audio;
mod bad_input;
mod balances;
mod budget_admin;
mod budget_alerts;
mod budgets;
mod check;
mod cli;
mod config_deltas;
mod config_distribution;
mod crash;
mod deploy;
mod drain;
mod estimates;
mod explain;
mod export;
mod fleet_security;
mod gemini;
mod identity;
mod listeners;
mod metering;
mod metrics;
mod missing_price;
mod nack;
mod no_secrets_in_logs;
mod observability;
mod openai_surfaces;
mod openapi;
mod pricing;
mod provisioned_services;
mod proxy_and_metering;
mod rate_limits;
mod replicas;
mod request_log;
mod response_cache;
mod rollouts;
mod routing;
mod sdk;
mod secrets_at_rest;
mod snapshot_versions;
mod snippets;
mod statements;
mod team_scope;
mod traces;
mod up;
mod upgrades;
mod usage_ingest;
mod usage_ledger;
mod usage_quarantine;
