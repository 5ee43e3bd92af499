use std::sync::{Arc, Mutex};

use modelgate_shared::usage::{Attempt, ErrorClass, UsageEvent};

use super::*;

/// A config whose aliases can change, as snapshots do.
struct TestConfig(Mutex<(u64, Vec<&'static str>)>);

impl LabelSource for TestConfig {
    fn version(&self) -> u64 {
        self.0.lock().unwrap().0
    }

    fn names(&self) -> Names {
        let (version, models) = self.0.lock().unwrap().clone();
        Names::new(version, models, ["p1", "p2"])
    }
}

fn config(version: u64, models: Vec<&'static str>) -> Arc<TestConfig> {
    Arc::new(TestConfig(Mutex::new((version, models))))
}

fn served() -> UsageEvent {
    UsageEvent {
        requested_model: "smart".into(),
        provider_id: "p1".into(),
        status: 200,
        latency_us: 30_000,
        input_tokens: 10,
        output_tokens: 5,
        cached_input_tokens: 2,
        cost_micros: 42,
        attempts: vec![Attempt {
            provider_id: "p1".into(),
            status: 200,
            latency_us: 20_000,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn rate_limited(model: &str) -> UsageEvent {
    UsageEvent {
        requested_model: model.into(),
        status: 429,
        error_class: Some(ErrorClass::RateLimited),
        latency_us: 200,
        ..Default::default()
    }
}

/// Records `events` as requests that started and ended on `surface`.
fn record(m: &Metrics, surface: &'static str, events: &[UsageEvent]) {
    for e in events {
        m.started();
        m.record(surface, e, Caller::Client);
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn a_request_is_counted_once_with_its_labels_tokens_cost_and_durations() {
    let m = Metrics::new(config(1, vec!["smart"]));
    let failed_over = UsageEvent {
        fallback_used: true,
        attempts: vec![
            Attempt {
                provider_id: "p2".into(),
                status: 503,
                error_class: Some(ErrorClass::ProviderError),
                latency_us: 1_000,
                ..Default::default()
            },
            // A connect error: no HTTP answer, no upstream time.
            Attempt {
                provider_id: "p2".into(),
                status: 0,
                ..Default::default()
            },
            served().attempts[0].clone(),
        ],
        ..served()
    };
    record(&m, "chat.completions", &[served(), failed_over]);
    record(&m, "messages", &[rate_limited("smart")]);
    let text = m.render(NodeReadings::default());
    let lines = lines(&text);
    for want in [
        r#"modelgate_requests_total{surface="chat.completions",model="smart",provider="p1",status="200",error_class="none"} 2"#,
        r#"modelgate_requests_total{surface="messages",model="smart",provider="none",status="429",error_class="rate_limited"} 1"#,
        r#"modelgate_request_duration_seconds_count{surface="chat.completions"} 2"#,
        r#"modelgate_request_duration_seconds_bucket{le="0.05",surface="chat.completions"} 2"#,
        r#"modelgate_request_duration_seconds_count{surface="messages"} 1"#,
        r#"modelgate_upstream_ttfb_seconds_count{provider="p1"} 2"#,
        r#"modelgate_upstream_ttfb_seconds_count{provider="p2"} 1"#,
        r#"modelgate_tokens_total{type="input"} 20"#,
        r#"modelgate_tokens_total{type="output"} 10"#,
        r#"modelgate_tokens_total{type="cached_input"} 4"#,
        r#"modelgate_tokens_total{type="reasoning"} 0"#,
        "modelgate_cost_micro_usd_total 84",
        r#"modelgate_fallbacks_total{model="smart"} 1"#,
        "modelgate_requests_in_flight 0",
        "# TYPE modelgate_request_duration_seconds histogram",
        "# UNIT modelgate_request_duration_seconds seconds",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn a_model_the_config_does_not_name_is_other_and_a_missing_one_none() {
    let m = Metrics::new(config(1, vec!["smart"]));
    let anonymous = UsageEvent {
        status: 401,
        error_class: Some(ErrorClass::Auth),
        ..Default::default()
    };
    record(
        &m,
        "chat.completions",
        &[
            rate_limited("made-up-1"),
            rate_limited("made-up-2"),
            anonymous,
        ],
    );
    let text = m.render(NodeReadings::default());
    let lines = lines(&text);
    assert!(
        lines.contains(&r#"modelgate_requests_total{surface="chat.completions",model="other",provider="none",status="429",error_class="rate_limited"} 2"#),
        "{text}"
    );
    assert!(
        lines.contains(&r#"modelgate_requests_total{surface="chat.completions",model="none",provider="none",status="401",error_class="auth"} 1"#),
        "{text}"
    );
    assert!(!text.contains("made-up"), "{text}");
}

#[test]
fn a_new_config_version_brings_its_aliases_into_the_labels() {
    let source = config(1, vec!["smart"]);
    let m = Metrics::new(source.clone());
    record(&m, "chat.completions", &[rate_limited("fresh")]);
    *source.0.lock().unwrap() = (2, vec!["smart", "fresh"]);
    record(&m, "chat.completions", &[rate_limited("fresh")]);
    let text = m.render(NodeReadings::default());
    for model in ["other", "fresh"] {
        let want = format!(
            r#"modelgate_requests_total{{surface="chat.completions",model="{model}",provider="none",status="429",error_class="rate_limited"}} 1"#
        );
        assert!(lines(&text).contains(&want.as_str()), "{want} in:\n{text}");
    }
}

#[test]
fn requests_in_flight_are_those_started_and_not_yet_recorded() {
    let m = Metrics::default();
    m.started();
    m.started();
    m.record("responses", &served(), Caller::Client);
    let text = m.render(NodeReadings::default());
    assert!(
        lines(&text).contains(&"modelgate_requests_in_flight 1"),
        "{text}"
    );
}

#[test]
fn node_readings_render_under_their_existing_names() {
    let m = Metrics::default();
    let readings = NodeReadings {
        config_version: 7,
        config_full: 1,
        config_deltas: 3,
        config_resyncs: 0,
        spool_disk_bytes: 4096,
        spool_max_bytes: 1 << 30,
        spool_backlog_bytes: 12,
        spool_refused: 3,
        unmetered: 1,
        retry_budget_denied: 5,
        unauthenticated_refused: vec![("missing_key", 2), ("throttled", 0)],
        security_log_sampled_out: 6,
        security_log_dropped: 0,
        auth_throttle_sources: 4,
        certificates: vec![("client", 1_900_000_000), ("ca", 2_100_000_000)],
        deployments: vec![
            DeploymentReading {
                deployment_id: "p1/gpt".into(),
                ejected: true,
                consecutive_failures: 5,
                in_flight: 0,
                ewma_ttfb_us: 250_000,
            },
            DeploymentReading {
                deployment_id: "p2/\"odd\"".into(),
                ..Default::default()
            },
        ],
    };
    let text = m.render(readings);
    let lines = lines(&text);
    for want in [
        "modelgate_config_version 7",
        r#"modelgate_config_updates_total{kind="full"} 1"#,
        r#"modelgate_config_updates_total{kind="delta"} 3"#,
        "modelgate_config_resyncs_total 0",
        "modelgate_usage_spool_disk_bytes 4096",
        "modelgate_usage_spool_max_bytes 1073741824",
        "modelgate_usage_spool_backlog_bytes 12",
        "modelgate_usage_spool_refused_total 3",
        "modelgate_usage_unmetered_total 1",
        "modelgate_retry_budget_denied_total 5",
        r#"modelgate_unauthenticated_refused_total{reason="missing_key"} 2"#,
        r#"modelgate_unauthenticated_refused_total{reason="throttled"} 0"#,
        "modelgate_security_log_sampled_out_total 6",
        "modelgate_security_log_dropped_total 0",
        "modelgate_auth_throttle_sources 4",
        r#"modelgate_tls_certificate_expiry_timestamp_seconds{cert="client"} 1900000000"#,
        r#"modelgate_tls_certificate_expiry_timestamp_seconds{cert="ca"} 2100000000"#,
        r#"modelgate_deployment_ejected{deployment="p1/gpt"} 1"#,
        r#"modelgate_deployment_consecutive_failures{deployment="p1/gpt"} 5"#,
        r#"modelgate_deployment_in_flight{deployment="p1/gpt"} 0"#,
        r#"modelgate_deployment_ttfb_ewma_seconds{deployment="p1/gpt"} 0.25"#,
        // A quote would end the label value: it is replaced.
        r#"modelgate_deployment_ejected{deployment="p2/_odd_"} 0"#,
        "# TYPE modelgate_usage_spool_refused counter",
        "# TYPE modelgate_config_version gauge",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn without_deployments_no_deployment_gauge_is_rendered() {
    let text = Metrics::default().render(NodeReadings::default());
    assert!(!text.contains("modelgate_deployment_"), "{text}");
    assert!(text.contains("modelgate_config_version 0\n"), "{text}");
}

#[test]
fn the_serving_attempt_holds_its_upstream_until_the_request_ends_and_a_failed_one_for_its_own_time()
{
    let m = Metrics::new(config(1, vec!["smart"]));
    // A stream: failed attempt (2 ms) on p2, then p1 answered its headers after 20 ms and
    // streamed until the request ended 3 s after it started; p1's attempt started 10 ms in.
    let streamed = UsageEvent {
        started_at_ms: 1_000_000,
        latency_us: 3_000_000,
        attempts: vec![
            Attempt {
                provider_id: "p2".into(),
                status: 503,
                error_class: Some(ErrorClass::ProviderError),
                latency_us: 2_000,
                started_at_ms: 1_000_000,
                ..Default::default()
            },
            Attempt {
                provider_id: "p1".into(),
                status: 200,
                latency_us: 20_000,
                started_at_ms: 1_000_010,
                ..Default::default()
            },
        ],
        ..served()
    };
    record(&m, "chat.completions", &[streamed]);
    let text = m.render(NodeReadings::default());
    let lines = lines(&text);
    for want in [
        // 3 s − 10 ms = 2.99 s
        r#"modelgate_upstream_duration_seconds_sum{provider="p1"} 2.99"#,
        r#"modelgate_upstream_duration_seconds_sum{provider="p2"} 0.002"#,
        r#"modelgate_upstream_ttfb_seconds_sum{provider="p1"} 0.02"#,
        "# UNIT modelgate_upstream_duration_seconds seconds",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn check_traffic_is_counted_apart_from_the_request_series_and_the_rollout_gates() {
    let m = Metrics::new(config(1, vec!["smart"]));
    let failed = UsageEvent {
        status: 502,
        error_class: Some(ErrorClass::ProviderError),
        ..served()
    };
    for (e, caller) in [
        (served(), Caller::Client),
        (served(), Caller::Check),
        (failed, Caller::Check),
    ] {
        m.started();
        m.record("chat.completions", &e, caller);
    }

    // The gates see the client's request only: no 5xx.
    let gates = m.traffic().read();
    assert_eq!((gates.requests, gates.errors), (1, 0), "{gates:?}");
    let text = m.render(NodeReadings::default());
    let lines = lines(&text);
    for want in [
        "modelgate_check_requests_total 2",
        r#"modelgate_requests_total{surface="chat.completions",model="smart",provider="p1",status="200",error_class="none"} 1"#,
        r#"modelgate_request_duration_seconds_count{surface="chat.completions"} 1"#,
        r#"modelgate_upstream_ttfb_seconds_count{provider="p1"} 1"#,
        // What the three spent is spent all the same.
        r#"modelgate_tokens_total{type="input"} 30"#,
        "modelgate_cost_micro_usd_total 126",
        "modelgate_requests_in_flight 0",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains(r#"status="502""#), "{text}");
}
