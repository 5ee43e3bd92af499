use super::*;
use crate::snapshot::{Deployment, Environment, RoutePolicy};

fn key() -> ApiKey {
    ApiKey {
        id: "k1".into(),
        name: String::new(),
        key_hash: [0; 32],
        prefix: String::new(),
        team_id: "t1".into(),
        environment: Environment::Prod,
        allowed_models: vec![],
        revoked: false,
        expires_at: None,
        disabled: false,
        previous: None,
        owner_user_id: "u1".into(),
        application: String::new(),
        data_class: "internal".into(),
        endpoint_families: vec![],
        traffic_class: TrafficClass::Interactive,
        allowed_traffic_classes: vec![],
        cache: Default::default(),
    }
}

fn group(models: &[&str]) -> RoutingGroup {
    RoutingGroup {
        id: "g1".into(),
        alias: "smart".into(),
        deployments: models
            .iter()
            .map(|m| Deployment {
                provider_id: "p1".into(),
                model: (*m).into(),
                weight: 1,
                tier: 0,
                max_in_flight: 0,
                rpm: 0,
            })
            .collect(),
        fallbacks: vec![],
        policy: RoutePolicy::default(),
    }
}

/// 1 µ$ per input token, 2 µ$ per output token.
const PRICE: Price = Price {
    input_micros_per_mtok: 1_000_000,
    output_micros_per_mtok: 2_000_000,
    cached_input_micros_per_mtok: 0,
    reasoning_micros_per_mtok: 0,
    per_image_micros: 0,
    per_second_micros: 0,
    per_mchar_micros: 0,
    version: 1,
};

const NOW: i64 = 1_800_000_000;

/// A request for `smart` on `g`, priced and with no output limits unless the caller says.
fn request<'a>(
    g: &'a RoutingGroup,
    prices: &'a [Option<Price>],
    limits: &'a [Option<u64>],
) -> Request<'a> {
    Request {
        alias: "smart",
        group: Some(Group {
            group: g,
            prices,
            output_limits: limits,
        }),
        class: RequestedClass::KeyDefault,
        hard_budget: false,
        prompt_bytes: 10,
        max_output_tokens: None,
        media_ms: 0,
        characters: 0,
    }
}

fn decide<'a>(k: &'a ApiKey, r: &Request<'a>) -> Result<Admitted, Refusal<'a>> {
    admit_key(k, "chat", NOW)?.admit(r)
}

#[test]
fn an_ordinary_request_is_admitted_with_the_keys_class_and_nothing_to_reserve() {
    let (k, g) = (key(), group(&["m1"]));
    let got = decide(&k, &request(&g, &[Some(PRICE)], &[None])).unwrap();
    assert_eq!(
        got,
        Admitted {
            traffic_class: TrafficClass::Interactive,
            data_class: data_class_rank("internal"),
            cost: Cost::Unreserved,
        }
    );
}

#[test]
fn a_revoked_disabled_or_expired_key_is_refused_whatever_it_asks() {
    let g = group(&["m1"]);
    let r = request(&g, &[Some(PRICE)], &[None]);
    let mut k = key();
    k.revoked = true;
    assert_eq!(decide(&k, &r), Err(Refusal::KeyRevoked));
    let mut k = key();
    k.disabled = true;
    assert_eq!(decide(&k, &r), Err(Refusal::KeyDisabled));
    let mut k = key();
    k.expires_at = Some(NOW);
    assert_eq!(
        decide(&k, &r),
        Err(Refusal::KeyExpired),
        "expiry is inclusive"
    );
    k.expires_at = Some(NOW + 1);
    assert!(decide(&k, &r).is_ok());
}

#[test]
fn a_key_limited_to_other_endpoint_families_is_refused_the_endpoint() {
    let mut k = key();
    k.endpoint_families = vec!["embeddings".into()];
    assert_eq!(
        admit_key(&k, "chat", NOW).unwrap_err(),
        Refusal::EndpointNotAllowed { family: "chat" }
    );
    assert!(admit_key(&k, "embeddings", NOW).is_ok());
}

#[test]
fn a_model_off_the_keys_list_or_with_no_group_is_refused() {
    let g = group(&["m1"]);
    let mut k = key();
    k.allowed_models = vec!["cheap".into()];
    let r = request(&g, &[Some(PRICE)], &[None]);
    assert_eq!(
        decide(&k, &r),
        Err(Refusal::ModelNotAllowed { alias: "smart" })
    );
    let k = key();
    let r = Request { group: None, ..r };
    assert_eq!(
        decide(&k, &r),
        Err(Refusal::ModelNotFound { alias: "smart" })
    );
}

#[test]
fn the_traffic_class_asked_for_must_be_one_the_key_may_send() {
    let (mut k, g) = (key(), group(&["m1"]));
    k.traffic_class = TrafficClass::Batch;
    k.allowed_traffic_classes = vec![TrafficClass::Batch];
    let prices = [Some(PRICE)];
    let r = request(&g, &prices, &[None]);
    let asked = |class| Request { class, ..r };
    assert_eq!(
        decide(&k, &asked(RequestedClass::Named(TrafficClass::Interactive))),
        Err(Refusal::TrafficClassNotAllowed {
            requested: TrafficClass::Interactive
        })
    );
    assert_eq!(
        decide(&k, &asked(RequestedClass::Invalid)),
        Err(Refusal::TrafficClassInvalid)
    );
    let got = decide(&k, &asked(RequestedClass::KeyDefault)).unwrap();
    assert_eq!(got.traffic_class, TrafficClass::Batch);
}

#[test]
fn a_group_below_the_keys_data_class_is_refused() {
    let (mut k, mut g) = (key(), group(&["m1"]));
    k.data_class = "confidential".into();
    g.policy.max_data_class = data_class_rank("internal");
    assert_eq!(
        decide(&k, &request(&g, &[Some(PRICE)], &[None])),
        Err(Refusal::DataClassNotAllowed {
            alias: "smart",
            data_class: "confidential"
        })
    );
}

#[test]
fn an_unpriced_group_is_refused_or_flagged_by_its_policy_budget_or_not() {
    let (k, mut g) = (key(), group(&["m1", "m2"]));
    let prices = [Some(PRICE), None];
    let limits = [Some(100), Some(100)];
    for hard_budget in [false, true] {
        let r = Request {
            hard_budget,
            ..request(&g, &prices, &limits)
        };
        assert_eq!(
            decide(&k, &r),
            Err(Refusal::PriceMissing { alias: "smart" })
        );
    }
    g.policy.missing_price = MissingPricePolicy::AllowAndFlag;
    let r = Request {
        hard_budget: true,
        ..request(&g, &prices, &limits)
    };
    assert_eq!(decide(&k, &r).unwrap().cost, Cost::PriceMissing);
}

#[test]
fn under_a_hard_budget_the_dearest_worst_case_is_reserved() {
    let (k, g) = (key(), group(&["m1", "m2"]));
    let dear = Price {
        output_micros_per_mtok: 4_000_000,
        ..PRICE
    };
    let prices = [Some(PRICE), Some(dear)];
    // m1 is bounded by the catalog (100 output tokens), m2 by the client (50).
    let limits = [Some(100), None];
    let r = Request {
        hard_budget: true,
        ..request(&g, &prices, &limits)
    };
    let r = Request {
        max_output_tokens: Some(50),
        ..r
    };
    // The client's bound wins over the catalog's: 10 prompt bytes + 50 output tokens.
    // m1: 10×1 + 50×2 = 110 µ$; m2: 10×1 + 50×4 = 210 µ$.
    assert_eq!(decide(&k, &r).unwrap().cost, Cost::Reserve(210));
    // Without a bound from the client, m2 has none: the first unbounded deployment is named.
    let r = Request {
        max_output_tokens: None,
        ..r
    };
    assert_eq!(
        decide(&k, &r),
        Err(Refusal::CostNotEstimable { model: "m2" })
    );
}

#[test]
fn an_unbounded_request_is_flagged_under_allow_and_flag_and_free_without_a_budget() {
    let (k, mut g) = (key(), group(&["m1"]));
    let prices = [Some(PRICE)];
    let r = request(&g, &prices, &[None]);
    assert_eq!(decide(&k, &r).unwrap().cost, Cost::Unreserved);
    g.policy.missing_price = MissingPricePolicy::AllowAndFlag;
    let r = Request {
        hard_budget: true,
        ..request(&g, &prices, &[None])
    };
    assert_eq!(decide(&k, &r).unwrap().cost, Cost::Unbounded);
}

#[test]
fn audio_seconds_and_characters_count_in_the_worst_case() {
    let g = group(&["m1"]);
    // 1 µ$ per input token, no output price; 100 µ$ a second; 15 µ$ a character.
    let prices = [Some(Price {
        input_micros_per_mtok: 1_000_000,
        per_second_micros: 100,
        per_mchar_micros: 15_000_000,
        ..Price::default()
    })];
    let limits = [None];
    let k = key();
    let r = Request {
        hard_budget: true,
        max_output_tokens: Some(0),
        media_ms: 2_500,
        characters: 1_000,
        ..request(&g, &prices, &limits)
    };
    // 10 prompt bytes + 2.5 s × 100 + 1000 × 15.
    assert_eq!(
        decide(&k, &r).unwrap().cost,
        Cost::Reserve(10 + 250 + 15_000)
    );
    // No output bound at all: the row prices no output, so none is needed.
    let r = Request {
        max_output_tokens: None,
        ..r
    };
    assert_eq!(
        decide(&k, &r).unwrap().cost,
        Cost::Reserve(10 + 250 + 15_000)
    );
    // A row that prices output still needs one.
    let priced = [Some(Price {
        output_micros_per_mtok: 1,
        ..prices[0].unwrap()
    })];
    let r = Request {
        hard_budget: true,
        ..request(&g, &priced, &limits)
    };
    assert_eq!(
        decide(&k, &r),
        Err(Refusal::CostNotEstimable { model: "m1" })
    );
}

/// Clears one refusal's condition from the key or the request.
type Clear = dyn Fn(&mut ApiKey, &mut Request);

/// Every refusal's conditions at once: the decision names the earliest step's, and the steps
/// come in [`Stage`] order.
#[test]
fn the_first_failing_step_wins_in_stage_order() {
    let mut g = group(&["m1"]);
    g.policy.max_data_class = data_class_rank("public");
    let prices = [None];
    let base = Request {
        hard_budget: true,
        class: RequestedClass::Invalid,
        ..request(&g, &prices, &[None])
    };
    let mut k = key();
    k.revoked = true;
    k.disabled = true;
    k.expires_at = Some(NOW);
    k.endpoint_families = vec!["embeddings".into()];
    k.allowed_models = vec!["cheap".into()];
    k.allowed_traffic_classes = vec![TrafficClass::Interactive];
    k.data_class = "restricted".into();
    // Clear each condition in turn: the refusal moves one step on each time.
    let steps: [&Clear; 9] = [
        &|k, _| k.revoked = false,
        &|k, _| k.disabled = false,
        &|k, _| k.expires_at = None,
        &|k, _| k.endpoint_families.clear(),
        &|k, _| k.allowed_models.clear(),
        &|_, r| r.class = RequestedClass::Named(TrafficClass::Batch),
        &|k, _| k.allowed_traffic_classes.push(TrafficClass::Batch),
        &|k, _| k.data_class = "public".into(),
        &|_, _| {},
    ];
    let mut r = base;
    let mut seen = Vec::new();
    for clear in steps {
        let refusal = decide(&k, &r).unwrap_err();
        seen.push((refusal.stage(), format!("{refusal:?}")));
        clear(&mut k, &mut r);
    }
    let names: Vec<&str> = seen.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "KeyRevoked",
            "KeyDisabled",
            "KeyExpired",
            "EndpointNotAllowed { family: \"chat\" }",
            "ModelNotAllowed { alias: \"smart\" }",
            "TrafficClassInvalid",
            "TrafficClassNotAllowed { requested: Batch }",
            "DataClassNotAllowed { alias: \"smart\", data_class: \"restricted\" }",
            "PriceMissing { alias: \"smart\" }",
        ]
    );
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "the steps run in Stage order: {seen:?}"
    );
    // With the price found, the budget's bound is the last step.
    let found = [Some(PRICE)];
    let r = Request {
        group: Some(Group {
            group: &g,
            prices: &found,
            output_limits: &[None],
        }),
        ..r
    };
    assert_eq!(
        decide(&k, &r),
        Err(Refusal::CostNotEstimable { model: "m1" })
    );
}
