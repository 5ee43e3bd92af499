use modelgate_shared::usage::{Environment, ErrorClass, UsageEvent, USAGE_SCHEMA_VERSION};

use super::*;

const NOW: i64 = 1_764_000_000_000;

/// What a data plane writes for a served request.
fn genuine() -> UsageEvent {
    UsageEvent {
        schema_version: USAGE_SCHEMA_VERSION,
        id: "0193-a".into(),
        started_at_ms: NOW - 2_000,
        first_byte_at_ms: NOW - 1_500,
        ended_at_ms: NOW - 1_000,
        key_id: "key-1".into(),
        team_id: "team-1".into(),
        environment: Some(Environment::Prod),
        status: 200,
        input_tokens: 1_000,
        output_tokens: 200,
        cost_micros: 4_200,
        ..Default::default()
    }
}

/// What a data plane writes for a request refused before its key was known.
fn keyless_refusal() -> UsageEvent {
    UsageEvent {
        key_id: String::new(),
        team_id: String::new(),
        environment: None,
        status: 401,
        error_class: Some(ErrorClass::Auth),
        input_tokens: 0,
        output_tokens: 0,
        cost_micros: 0,
        ..genuine()
    }
}

#[test]
fn genuine_events_pass() {
    assert_eq!(check(&genuine(), NOW), Ok(()));
    assert_eq!(check(&keyless_refusal(), NOW), Ok(()));
    let old_schema = UsageEvent {
        schema_version: 0,
        ..genuine()
    };
    assert_eq!(check(&old_schema, NOW), Ok(()));
    let late = UsageEvent {
        started_at_ms: NOW - 30 * 86_400_000,
        ended_at_ms: NOW - 30 * 86_400_000,
        ..genuine()
    };
    assert_eq!(check(&late, NOW), Ok(()), "a spool drained late is fine");
    let slightly_ahead = UsageEvent {
        started_at_ms: NOW + MAX_CLOCK_AHEAD_MS,
        ended_at_ms: NOW + MAX_CLOCK_AHEAD_MS + 5,
        ..genuine()
    };
    assert_eq!(check(&slightly_ahead, NOW), Ok(()));
    let at_the_bounds = UsageEvent {
        input_tokens: MAX_TOKENS_PER_EVENT,
        cost_micros: MAX_COST_MICROS_PER_EVENT,
        status: 999,
        ..genuine()
    };
    assert_eq!(check(&at_the_bounds, NOW), Ok(()));
}

#[test]
fn each_impossible_figure_is_refused_with_its_reason() {
    let g = genuine;
    let cases: Vec<(UsageEvent, Refusal)> = vec![
        (
            UsageEvent {
                id: String::new(),
                ..g()
            },
            Refusal::NoId,
        ),
        (
            UsageEvent {
                schema_version: USAGE_SCHEMA_VERSION + 1,
                ..g()
            },
            Refusal::UnknownSchema(USAGE_SCHEMA_VERSION + 1),
        ),
        (
            UsageEvent {
                cost_micros: -1,
                ..g()
            },
            Refusal::NegativeCost(-1),
        ),
        (
            UsageEvent {
                cost_micros: MAX_COST_MICROS_PER_EVENT + 1,
                ..g()
            },
            Refusal::CostTooHigh(MAX_COST_MICROS_PER_EVENT + 1),
        ),
        (
            UsageEvent {
                input_tokens: u64::MAX,
                ..g()
            },
            Refusal::TooMany {
                field: "input_tokens",
                value: u64::MAX,
                max: MAX_TOKENS_PER_EVENT,
            },
        ),
        (
            UsageEvent {
                output_tokens: MAX_TOKENS_PER_EVENT + 1,
                ..g()
            },
            Refusal::TooMany {
                field: "output_tokens",
                value: MAX_TOKENS_PER_EVENT + 1,
                max: MAX_TOKENS_PER_EVENT,
            },
        ),
        (
            UsageEvent {
                cached_input_tokens: u64::MAX,
                ..g()
            },
            Refusal::TooMany {
                field: "cached_input_tokens",
                value: u64::MAX,
                max: MAX_TOKENS_PER_EVENT,
            },
        ),
        (
            UsageEvent {
                reasoning_tokens: u64::MAX,
                ..g()
            },
            Refusal::TooMany {
                field: "reasoning_tokens",
                value: u64::MAX,
                max: MAX_TOKENS_PER_EVENT,
            },
        ),
        (
            UsageEvent {
                images: MAX_IMAGES_PER_EVENT + 1,
                ..g()
            },
            Refusal::TooMany {
                field: "images",
                value: MAX_IMAGES_PER_EVENT + 1,
                max: MAX_IMAGES_PER_EVENT,
            },
        ),
        (
            UsageEvent {
                media_ms: u64::MAX,
                ..g()
            },
            Refusal::TooMany {
                field: "media_ms",
                value: u64::MAX,
                max: MAX_MEDIA_MS_PER_EVENT,
            },
        ),
        (UsageEvent { status: 0, ..g() }, Refusal::InvalidStatus(0)),
        (UsageEvent { status: 99, ..g() }, Refusal::InvalidStatus(99)),
        (
            UsageEvent {
                status: 1000,
                ..g()
            },
            Refusal::InvalidStatus(1000),
        ),
        (
            UsageEvent {
                started_at_ms: 0,
                ended_at_ms: 0,
                ..g()
            },
            Refusal::StartedTooEarly(0),
        ),
        (
            UsageEvent {
                ended_at_ms: NOW - 2_001,
                ..g()
            },
            Refusal::EndedBeforeStarted {
                started: NOW - 2_000,
                ended: NOW - 2_001,
            },
        ),
        (
            UsageEvent {
                started_at_ms: NOW + 86_400_000,
                ended_at_ms: NOW + 86_400_000,
                ..g()
            },
            Refusal::InTheFuture {
                value: NOW + 86_400_000,
                now: NOW,
            },
        ),
        (
            UsageEvent {
                key_id: String::new(),
                ..g()
            },
            Refusal::KeylessWithOwner,
        ),
        (
            UsageEvent {
                cost_micros: 1,
                ..keyless_refusal()
            },
            Refusal::KeylessWithUsage,
        ),
        (
            UsageEvent {
                output_tokens: 1,
                ..keyless_refusal()
            },
            Refusal::KeylessWithUsage,
        ),
        (
            UsageEvent {
                environment: Some(Environment::Prod),
                ..keyless_refusal()
            },
            Refusal::KeylessWithOwner,
        ),
    ];
    for (event, want) in cases {
        assert_eq!(check(&event, NOW), Err(want.clone()), "{want}");
    }
}

#[test]
fn a_key_must_exist_and_belong_to_the_team_the_event_names() {
    let e = genuine();
    assert_eq!(check_key(&e, Some("team-1")), Ok(()));
    assert_eq!(
        check_key(&e, None),
        Err(Refusal::UnknownKey("key-1".into()))
    );
    assert_eq!(
        check_key(&e, Some("team-2")),
        Err(Refusal::KeyOfAnotherTeam {
            key: "key-1".into(),
            owner: "team-2".into(),
            named: "team-1".into(),
        })
    );
    assert_eq!(check_key(&keyless_refusal(), None), Ok(()));
}

#[test]
fn a_reason_reads_as_a_sentence_without_the_event() {
    assert_eq!(
        Refusal::NegativeCost(-500).to_string(),
        "cost_micros -500 is negative"
    );
    assert_eq!(
        Refusal::UnknownKey("key-x".into()).to_string(),
        "key key-x does not exist"
    );
}
