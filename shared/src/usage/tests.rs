use super::*;

fn full_event() -> UsageEvent {
    UsageEvent {
        id: "0190".into(),
        status: 429,
        error_class: Some(ErrorClass::RateLimited),
        cost_micros: 12,
        streamed: true,
        schema_version: USAGE_SCHEMA_VERSION,
        region: "eu-west".into(),
        key_id: "k1".into(),
        environment: Some(Environment::Staging),
        attempts: vec![
            Attempt {
                deployment_id: "p1/gpt".into(),
                status: 503,
                error_class: Some(ErrorClass::ProviderError),
                ..Default::default()
            },
            Attempt {
                deployment_id: "p2/gpt".into(),
                status: 200,
                ..Default::default()
            },
        ],
        cached_input_tokens: 3,
        reasoning_tokens: 4,
        images: 1,
        media_ms: 1500,
        fallback_used: true,
        traffic_class: Some(TrafficClass::Batch),
        cost_flag: CostFlag::PriceMissing,
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        ..Default::default()
    }
}

#[test]
fn usage_event_round_trips_through_the_wire() {
    let e = full_event();
    assert_eq!(UsageEvent::try_from(wire::UsageEvent::from(&e)), Ok(e));
    let ok = UsageEvent {
        status: 200,
        ..Default::default()
    };
    assert_eq!(UsageEvent::try_from(wire::UsageEvent::from(&ok)), Ok(ok));
}

#[test]
fn typed_fields_travel_as_their_strings_on_the_wire() {
    let w = wire::UsageEvent::from(&full_event());
    assert_eq!(w.error_class, "rate_limited");
    assert_eq!(w.environment, "staging");
    assert_eq!(w.traffic_class, "batch");
    assert_eq!(w.cost_flag, "price_missing");
    assert_eq!(w.attempts[0].error_class, "provider_error");
    assert_eq!(w.attempts[1].error_class, "");
    let empty = wire::UsageEvent::from(&UsageEvent::default());
    assert_eq!(
        (
            empty.error_class.as_str(),
            empty.environment.as_str(),
            empty.traffic_class.as_str(),
            empty.cost_flag.as_str()
        ),
        ("", "", "", ""),
        "an unset field is the empty string, as before"
    );
}

#[test]
fn every_value_of_every_typed_field_round_trips_by_name() {
    for c in ErrorClass::ALL {
        assert_eq!(ErrorClass::parse(c.as_str()), Some(c));
        assert_eq!(
            serde_json::to_value(c).unwrap(),
            serde_json::Value::from(c.as_str())
        );
    }
    for f in CostFlag::ALL {
        assert_eq!(CostFlag::parse(f.as_str()), Some(f));
        assert_eq!(
            serde_json::to_value(f).unwrap(),
            serde_json::Value::from(f.as_str())
        );
    }
    for c in TrafficClass::ALL {
        assert_eq!(
            serde_json::to_value(c).unwrap(),
            serde_json::Value::from(c.as_str())
        );
    }
    for env in Environment::ALL {
        assert_eq!(
            serde_json::to_value(env).unwrap(),
            serde_json::Value::from(env.as_str())
        );
    }
}

#[test]
fn an_event_written_before_the_typed_fields_existed_decodes_with_them_empty() {
    // A schema 1 writer knew neither environment nor traffic class.
    let old = wire::UsageEvent {
        id: "old".into(),
        status: 200,
        ..Default::default()
    };
    let e = UsageEvent::try_from(old).unwrap();
    assert_eq!(e.environment, None);
    assert_eq!(e.traffic_class, None);
    assert_eq!(e.cost_flag, CostFlag::None);
    assert_eq!(e.error_class, None);
}

#[test]
fn an_unknown_value_is_refused_with_the_field_and_the_value_never_guessed() {
    let mut w = wire::UsageEvent::from(&full_event());
    w.traffic_class = "bulk".into();
    w.error_class = "policy".into();
    w.attempts[1].error_class = "teapot".into();
    let err = UsageEvent::try_from(w).unwrap_err();
    assert_eq!(
        err.unknown,
        vec![
            UnknownValue {
                field: Field::AttemptErrorClass(1),
                value: "teapot".into()
            },
            UnknownValue {
                field: Field::ErrorClass,
                value: "policy".into()
            },
            UnknownValue {
                field: Field::TrafficClass,
                value: "bulk".into()
            },
        ]
    );
    assert_eq!(
        err.to_string(),
        "attempts[1].error_class `teapot` is not a value this build knows; \
         error_class `policy` is not a value this build knows; \
         traffic_class `bulk` is not a value this build knows"
    );
    // What could be read is kept (for the quarantine), the unknown fields left empty.
    assert_eq!(err.event.id, "0190");
    assert_eq!(err.event.environment, Some(Environment::Staging));
    assert_eq!(err.event.traffic_class, None);
    assert_eq!(err.event.error_class, None);
    assert_eq!(err.event.attempts[1].error_class, None);
}

#[test]
fn an_unknown_environment_or_cost_flag_is_refused_too() {
    let mut w = wire::UsageEvent::from(&full_event());
    w.environment = "qa".into();
    w.cost_flag = "free".into();
    let err = UsageEvent::try_from(w).unwrap_err();
    let fields: Vec<Field> = err.unknown.iter().map(|u| u.field).collect();
    assert_eq!(fields, vec![Field::Environment, Field::CostFlag]);
    // Names are matched exactly: a differently cased known value is unknown.
    let mut w = wire::UsageEvent::from(&full_event());
    w.environment = "Prod".into();
    assert!(UsageEvent::try_from(w).is_err());
}

/// Every field set to a value other than its default: listed in full (no `..Default`), so a
/// field added to the event must be added here, and so to the encoding check below.
fn every_field_set() -> UsageEvent {
    let attempt = |n: u8| Attempt {
        deployment_id: format!("p{n}/gpt"),
        provider_id: format!("p{n}"),
        model: "gpt".into(),
        status: 503,
        error_class: Some(ErrorClass::ProviderError),
        latency_us: 1_234,
        started_at_ms: 1_700_000_000_000,
        error_message: "503".into(),
    };
    UsageEvent {
        schema_version: USAGE_SCHEMA_VERSION,
        id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
        request_id: "req-1".into(),
        started_at_ms: 1_700_000_000_000,
        first_byte_at_ms: 1_700_000_000_010,
        ended_at_ms: 1_700_000_000_020,
        node_id: "node-1".into(),
        region: "eu-west".into(),
        key_id: "k1".into(),
        team_id: "t1".into(),
        user_id: "u1".into(),
        application: "app".into(),
        environment: Some(Environment::Staging),
        endpoint: "chat.completions".into(),
        requested_model: "smart".into(),
        provider_id: "p2".into(),
        served_model: "gpt".into(),
        deployment_id: "p2/gpt".into(),
        attempts: vec![attempt(1), attempt(2)],
        status: 429,
        error_class: Some(ErrorClass::RateLimited),
        error_message: "é".repeat(200),
        latency_us: 20_000,
        ttfb_us: 10_000,
        input_tokens: 300,
        output_tokens: 40,
        cached_input_tokens: 3,
        reasoning_tokens: 4,
        images: 1,
        media_ms: 1_500,
        characters: 77,
        cost_micros: 1 << 40,
        price_version: 7,
        streamed: true,
        estimated: true,
        fallback_used: true,
        traffic_class: Some(TrafficClass::Batch),
        cost_flag: CostFlag::PriceMissing,
        cache_hit: true,
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
    }
}

/// The bytes `encode_wire` writes, checked against prost's encoding of the wire message.
fn assert_encodes_as_the_wire_message(e: &UsageEvent) {
    use prost::Message;
    let expected = wire::UsageEvent::from(e).encode_to_vec();
    let mut bytes = vec![0xAA];
    e.encode_wire(&mut bytes);
    assert_eq!(
        &bytes[1..],
        expected.as_slice(),
        "appended after what was there"
    );
    assert_eq!(bytes[0], 0xAA);
    assert_eq!(e.wire_len(), expected.len());
}

#[test]
fn an_event_encoded_directly_is_byte_for_byte_the_wire_message() {
    assert_encodes_as_the_wire_message(&every_field_set());
    // Defaults are left out, as prost leaves them out.
    assert_encodes_as_the_wire_message(&UsageEvent::default());
    // A negative int64 is ten bytes of two's complement on the wire.
    let mut negative = every_field_set();
    negative.cost_micros = -5;
    negative.attempts[0].started_at_ms = -1;
    assert_encodes_as_the_wire_message(&negative);
    // Each optional typed field at `None`, and an attempt with nothing but its defaults.
    let mut sparse = every_field_set();
    sparse.environment = None;
    sparse.error_class = None;
    sparse.traffic_class = None;
    sparse.cost_flag = CostFlag::None;
    sparse.attempts = vec![Attempt::default()];
    assert_encodes_as_the_wire_message(&sparse);
}
