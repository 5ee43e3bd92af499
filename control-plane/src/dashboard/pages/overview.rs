//! The overview: requests, errors, p50/p99 latency, tokens and spend per day over the last 7,
//! 14 or 30 days, and the same broken down by team, model and provider. Counts, tokens and
//! spend come from the ledger's daily aggregates (`usage::daily`, exact); latency from
//! `usage::latency` (the events themselves, percentiles need them). Check traffic (the
//! requests of `modelgate check`'s acceptance runs, some failing on purpose) is left out unless
//! the page is asked to show it, or to show it alone.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use chrono::{Duration, NaiveDate};
use maud::{html, Markup};
use serde::Deserialize;

use super::super::chart::{self, Series};
use super::super::{format, page, Ctx, Dash, PageResult};
use crate::service::authz::Action;
use crate::service::usage::{self, latency, DailyFilter, DailyRow};
use crate::service::{providers, PageParams};

#[derive(Deserialize, Default)]
pub struct RangeQuery {
    days: Option<u32>,
    /// `all` shows check traffic with the rest, `true` alone; anything else leaves it out.
    check_traffic: Option<String>,
}

const RANGES: [u32; 3] = [7, 14, 30];

/// What the page shows of check traffic.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CheckTraffic {
    Hidden,
    Shown,
    Only,
}

impl CheckTraffic {
    const ALL: [CheckTraffic; 3] = [
        CheckTraffic::Hidden,
        CheckTraffic::Shown,
        CheckTraffic::Only,
    ];

    fn from_query(v: Option<&str>) -> Self {
        match v {
            Some("all") => CheckTraffic::Shown,
            Some("true") => CheckTraffic::Only,
            _ => CheckTraffic::Hidden,
        }
    }

    /// The page's query parameter, and the aggregates' and events' filter.
    fn param(self) -> &'static str {
        match self {
            CheckTraffic::Hidden => "false",
            CheckTraffic::Shown => "all",
            CheckTraffic::Only => "true",
        }
    }

    fn filter(self) -> Option<bool> {
        match self {
            CheckTraffic::Hidden => Some(false),
            CheckTraffic::Shown => None,
            CheckTraffic::Only => Some(true),
        }
    }

    fn label(self) -> &'static str {
        match self {
            CheckTraffic::Hidden => "hidden",
            CheckTraffic::Shown => "shown",
            CheckTraffic::Only => "only",
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Totals {
    requests: i64,
    errors: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost_micros: i64,
}

impl Totals {
    fn add(&mut self, r: &DailyRow) {
        self.requests += r.requests;
        self.errors += r.errors;
        self.input_tokens += r.input_tokens;
        self.output_tokens += r.output_tokens;
        self.cost_micros += r.cost_micros;
    }
}

pub async fn show(State(dash): State<Dash>, ctx: Ctx, Query(q): Query<RangeQuery>) -> PageResult {
    let s = &dash.services;
    let a = &ctx.actor;
    let days = q.days.filter(|d| RANGES.contains(d)).unwrap_or(14);
    let check = CheckTraffic::from_query(q.check_traffic.as_deref());
    let to = s.clock.now().date_naive();
    let from = to - Duration::days(i64::from(days) - 1);
    let rows = usage::daily(
        s,
        a,
        DailyFilter {
            from: Some(from.format("%Y-%m-%d").to_string()),
            to: Some(to.format("%Y-%m-%d").to_string()),
            check_traffic: check.filter().map(|c| c.to_string()),
            ..Default::default()
        },
    )
    .await?;
    let lat = latency::latency_by_day(s, a, from, to, check.filter()).await?;

    // Names where the actor may read them (a billing token reads usage, not configuration).
    let (teams, provs) = if a.may(Action::ReadConfig) {
        let all = PageParams {
            after: None,
            limit: Some(PageParams::MAX_LIMIT),
        };
        let provs = providers::list(s, a, all).await?.data;
        (
            super::team_names(s, a).await?,
            provs.into_iter().map(|p| (p.id, p.name)).collect(),
        )
    } else {
        (Vec::new(), Vec::new())
    };

    let day_labels: Vec<NaiveDate> = (0..days)
        .map(|i| from + Duration::days(i64::from(i)))
        .collect();
    let mut per_day: BTreeMap<String, Totals> = day_labels
        .iter()
        .map(|d| (d.format("%Y-%m-%d").to_string(), Totals::default()))
        .collect();
    let mut total = Totals::default();
    let mut by_team: BTreeMap<String, Totals> = BTreeMap::new();
    let mut by_model: BTreeMap<String, Totals> = BTreeMap::new();
    let mut by_provider: BTreeMap<String, Totals> = BTreeMap::new();
    for r in &rows {
        if let Some(t) = per_day.get_mut(&r.day) {
            t.add(r);
        }
        total.add(r);
        by_team.entry(r.team_id.clone()).or_default().add(r);
        by_model.entry(r.model.clone()).or_default().add(r);
        by_provider.entry(r.provider_id.clone()).or_default().add(r);
    }
    let labels: Vec<String> = day_labels
        .iter()
        .map(|d| d.format("%m-%d").to_string())
        .collect();
    let col =
        |f: fn(&Totals) -> i64| -> Vec<f64> { per_day.values().map(|t| f(t) as f64).collect() };
    let lat_col = |f: fn(&latency::LatencyDay) -> i64| -> Vec<f64> {
        per_day
            .keys()
            .map(|d| {
                lat.days
                    .iter()
                    .find(|l| &l.day == d)
                    .map(|l| f(l) as f64 / 1000.0)
                    .unwrap_or(0.0)
            })
            .collect()
    };
    // Axis ticks fall on halves of a round maximum: 2.5 reads as 2.5, not 3.
    let counts = |v: f64| {
        if v.fract() == 0.0 {
            format::count(v as i64)
        } else {
            format!("{v:.1}")
        }
    };
    let money = |v: f64| format::usd(v.round() as i64);
    let millis = |v: f64| format!("{v:.0} ms");

    let day_keys: Vec<String> = per_day.keys().cloned().collect();
    let spend_by_team = grouped(&rows, &day_keys, |r| &r.team_id, |r| r.cost_micros, &teams);
    let tokens_by_model = grouped(
        &rows,
        &day_keys,
        |r| &r.model,
        |r| r.input_tokens + r.output_tokens,
        &[],
    );
    let requests_by_provider =
        grouped(&rows, &day_keys, |r| &r.provider_id, |r| r.requests, &provs);

    let body = html! {
        nav.range aria-label="Time range" {
            "Last "
            @for d in RANGES {
                a href={ "/?days=" (d) "&check_traffic=" (check.param()) } aria-current=[(d == days).then_some("page")] { (d) " days" } " "
            }
        }
        nav.range #check-traffic aria-label="Check traffic" {
            "Check traffic (" code { "modelgate check" } "): "
            @for c in CheckTraffic::ALL {
                a href={ "/?days=" (days) "&check_traffic=" (c.param()) } aria-current=[(c == check).then_some("page")] { (c.label()) } " "
            }
        }
        section.kpis aria-label="Totals for the range" {
            (kpi("Requests", &format::count(total.requests)))
            (kpi("Errors", &format!("{} ({})", format::count(total.errors), format::percent(total.errors, total.requests))))
            (kpi("p50 latency", &format::ms(lat.p50_us)))
            (kpi("p99 latency", &format::ms(lat.p99_us)))
            (kpi("Tokens", &format::count(total.input_tokens + total.output_tokens)))
            (kpi("Spend", &format::usd(total.cost_micros)))
        }
        @if lat.capped {
            p.hint { "Latency is computed from the newest " (format::count(latency::SAMPLE_CAP as i64)) " requests of the range." }
        }
        div.charts {
            (chart::line("c-requests", "Requests and errors per day", &labels, &[
                Series { label: "Requests", class: "s1", values: col(|t| t.requests) },
                Series { label: "Errors", class: "s2", values: col(|t| t.errors) },
            ], &counts))
            (chart::line("c-latency", "Latency per day (p50, p99)", &labels, &[
                Series { label: "p50", class: "s1", values: lat_col(|l| l.p50_us) },
                Series { label: "p99", class: "s3", values: lat_col(|l| l.p99_us) },
            ], &millis))
            (chart::line("c-tokens", "Tokens per day", &labels, &[
                Series { label: "Input", class: "s1", values: col(|t| t.input_tokens) },
                Series { label: "Output", class: "s4", values: col(|t| t.output_tokens) },
            ], &counts))
            (chart::bars("c-spend", "Spend per day", &labels, Series { label: "Spend", class: "s4", values: col(|t| t.cost_micros) }, &money))
            (chart::stacked("c-spend-team", "Spend per day by team", &labels, &as_series(&spend_by_team), &money))
            (chart::stacked("c-tokens-model", "Tokens per day by model", &labels, &as_series(&tokens_by_model), &counts))
            (chart::stacked("c-requests-provider", "Requests per day by provider", &labels, &as_series(&requests_by_provider), &counts))
        }
        div.columns {
            (breakdown("by-team", "By team", &by_team, &teams))
            (breakdown("by-model", "By model", &by_model, &[]))
            (breakdown("by-provider", "By provider", &by_provider, &provs))
        }
    };
    Ok(page(&ctx, "/", "Overview", body))
}

/// Colour classes of the groups of a stacked chart: the largest groups, then "other".
const SERIES_CLASSES: [&str; 5] = ["s1", "s4", "s3", "s2", "s5"];
/// Groups drawn on their own in a stacked chart; the rest are summed as "other".
const TOP_GROUPS: usize = 4;

/// Per-day values of each group (by `key`), the largest [`TOP_GROUPS`] by total on their own
/// and the rest as "other"; labels are names where `names` has them.
fn grouped(
    rows: &[DailyRow],
    days: &[String],
    key: fn(&DailyRow) -> &String,
    value: fn(&DailyRow) -> i64,
    names: &[(String, String)],
) -> Vec<(String, Vec<f64>)> {
    let mut groups: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in rows {
        let Some(i) = days.iter().position(|d| d == &r.day) else {
            continue;
        };
        groups
            .entry(key(r).as_str())
            .or_insert_with(|| vec![0.0; days.len()])[i] += value(r) as f64;
    }
    let mut ranked: Vec<(&str, Vec<f64>)> = groups.into_iter().collect();
    ranked.sort_by(|a, b| {
        let (ta, tb) = (a.1.iter().sum::<f64>(), b.1.iter().sum::<f64>());
        tb.total_cmp(&ta).then(a.0.cmp(b.0))
    });
    let mut out: Vec<(String, Vec<f64>)> = Vec::new();
    let mut other = vec![0.0; days.len()];
    for (i, (k, v)) in ranked.into_iter().enumerate() {
        if i < TOP_GROUPS {
            let label = if k.is_empty() {
                "(none)"
            } else {
                super::team_label(names, k)
            };
            out.push((label.to_owned(), v));
        } else {
            for (o, x) in other.iter_mut().zip(v) {
                *o += x;
            }
        }
    }
    if other.iter().any(|v| *v > 0.0) {
        out.push(("other".to_owned(), other));
    }
    out
}

/// Groups as chart series, coloured in order.
fn as_series(groups: &[(String, Vec<f64>)]) -> Vec<Series<'_>> {
    groups
        .iter()
        .zip(SERIES_CLASSES)
        .map(|((label, values), class)| Series {
            label,
            class,
            values: values.clone(),
        })
        .collect()
}

fn kpi(label: &str, value: &str) -> Markup {
    html! {
        div.kpi { span.kpi-label { (label) } span.kpi-value { (value) } }
    }
}

/// A table of `groups` by spend, each with a bar of its share of the largest.
fn breakdown(
    id: &str,
    title: &str,
    groups: &BTreeMap<String, Totals>,
    names: &[(String, String)],
) -> Markup {
    let mut rows: Vec<(&String, &Totals)> = groups.iter().collect();
    rows.sort_by(|a, b| {
        b.1.cost_micros
            .cmp(&a.1.cost_micros)
            .then(b.1.requests.cmp(&a.1.requests))
    });
    let max = rows.first().map(|r| r.1.requests.max(1)).unwrap_or(1);
    let max_requests = rows
        .iter()
        .map(|r| r.1.requests)
        .max()
        .unwrap_or(1)
        .max(max);
    html! {
        section.breakdown aria-labelledby=(id) {
            h2 id=(id) { (title) }
            @if rows.is_empty() { p.empty { "No traffic in this range." } } @else {
                div.scroll { table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Requests" } th scope="col" { "Errors" } th scope="col" { "Tokens" } th scope="col" { "Spend" } } }
                    tbody {
                        @for (key, t) in rows {
                            @let name = if key.is_empty() { "(none)" } else { super::team_label(names, key) };
                            tr {
                                th scope="row" { (name) }
                                td {
                                    (format::count(t.requests))
                                    (chart::meter_bar(t.requests as f64, max_requests as f64, &format!("{} of the busiest's requests", format::percent(t.requests, max_requests))))
                                }
                                td { (format::count(t.errors)) }
                                td { (format::count(t.input_tokens + t.output_tokens)) }
                                td { (format::usd(t.cost_micros)) }
                            }
                        }
                    }
                } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(day: &str, team: &str, cost: i64) -> DailyRow {
        DailyRow {
            day: day.into(),
            key_id: "k".into(),
            team_id: team.into(),
            user_id: String::new(),
            model: "m".into(),
            provider_id: "p".into(),
            check_traffic: false,
            requests: 1,
            errors: 0,
            input_tokens: 0,
            output_tokens: 0,
            cached_input_tokens: 0,
            reasoning_tokens: 0,
            images: 0,
            media_ms: 0,
            characters: 0,
            cost_micros: cost,
        }
    }

    #[test]
    fn the_largest_groups_stand_alone_and_the_rest_are_other() {
        let days = vec!["2026-12-05".to_owned(), "2026-12-06".to_owned()];
        let mut rows: Vec<DailyRow> = (1..=6)
            .map(|i| row("2026-12-06", &format!("t{i}"), i * 10))
            .collect();
        rows.push(row("2026-12-05", "t6", 5));
        rows.push(row("2026-11-01", "t6", 1000)); // outside the range
        let names = vec![("t6".to_owned(), "Six".to_owned())];
        let g = grouped(&rows, &days, |r| &r.team_id, |r| r.cost_micros, &names);
        let labels: Vec<&str> = g.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["Six", "t5", "t4", "t3", "other"]);
        assert_eq!(g[0].1, vec![5.0, 60.0]);
        assert_eq!(g[4].1, vec![0.0, 30.0], "t1 + t2");
    }
}
