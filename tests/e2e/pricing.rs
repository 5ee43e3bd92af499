//! The pricing catalog: importing a LiteLLM price map and a CSV file (dry run, apply,
//! re-import as a no-op, a change as exactly one new version with the old one still readable),
//! and a request through the real data plane charged at the catalog's cached and reasoning
//! rates, its usage row naming the price version.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::upstream::{MockUpstream, COMPLETION_TOKENS, PROMPT_TOKENS};
use crate::support::{request_id, Gateway};

pub const LITELLM_SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/pricing/litellm_sample.json"
);
pub const CSV_SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/pricing/prices_sample.csv"
);

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap()
}

async fn import(gw: &Gateway, format: &str, content: &str, dry_run: bool) -> Value {
    let (status, diff) = gw
        .admin(
            Method::POST,
            "/models/import",
            Some(json!({"format": format, "content": content, "dry_run": dry_run})),
        )
        .await;
    assert_eq!(status, 200, "{diff}");
    diff
}

/// The catalog as `(provider, model)` → row.
async fn catalog(gw: &Gateway) -> BTreeMap<(String, String), Value> {
    let (status, page) = gw.admin(Method::GET, "/models?limit=1000", None).await;
    assert_eq!(status, 200, "{page}");
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (
                    r["provider"].as_str().unwrap().to_owned(),
                    r["model"].as_str().unwrap().to_owned(),
                ),
                r.clone(),
            )
        })
        .collect()
}

async fn versions(gw: &Gateway, id: &str) -> Vec<Value> {
    let (status, page) = gw
        .admin(Method::GET, &format!("/models/{id}/versions"), None)
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().clone()
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["model"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn key(provider: &str, model: &str) -> (String, String) {
    (provider.to_owned(), model.to_owned())
}

/// What the sample files hold, in catalog units: (provider, model, family, input, output,
/// cached input, reasoning, per image, per second, context window, max output tokens).
type Expected = (&'static str, &'static str, &'static str, [i64; 8]);
const EXPECTED: &[Expected] = &[
    (
        "openai",
        "sample-chat",
        "chat",
        [2_500_000, 10_000_000, 1_250_000, 0, 0, 0, 128_000, 16_384],
    ),
    (
        "openai",
        "sample-reasoner",
        "chat",
        [
            1_100_000, 4_400_000, 275_000, 5_500_000, 0, 0, 200_000, 100_000,
        ],
    ),
    (
        "anthropic",
        "sample-claude",
        "chat",
        [3_000_000, 15_000_000, 300_000, 0, 0, 0, 200_000, 8_192],
    ),
    (
        "openai",
        "sample-embedding",
        "embeddings",
        [20_000, 0, 0, 0, 0, 0, 8_191, 8_191],
    ),
    (
        "openai",
        "sample-image",
        "images",
        [0, 0, 0, 0, 40_000, 0, 0, 0],
    ),
    (
        "openai",
        "sample-transcribe",
        "audio",
        [0, 0, 0, 0, 0, 100, 0, 0],
    ),
    (
        "gemini",
        "sample-video",
        "video",
        [0, 0, 0, 0, 0, 350_000, 0, 0],
    ),
];

fn assert_sample_catalog(catalog: &BTreeMap<(String, String), Value>) {
    assert_eq!(catalog.len(), EXPECTED.len(), "{catalog:?}");
    for (provider, model, family, units) in EXPECTED {
        let row = &catalog[&key(provider, model)];
        let fields = [
            "input_micros_per_mtok",
            "output_micros_per_mtok",
            "cached_input_micros_per_mtok",
            "reasoning_micros_per_mtok",
            "per_image_micros",
            "per_second_micros",
            "context_window",
            "max_output_tokens",
        ];
        assert_eq!(row["family"], *family, "{row}");
        assert_eq!(row["status"], "active", "{row}");
        for (field, want) in fields.iter().zip(units) {
            assert_eq!(row[*field], *want, "{model}.{field}: {row}");
        }
    }
}

#[tokio::test]
async fn litellm_import_dry_runs_applies_is_idempotent_and_versions_each_change() {
    let gw = Gateway::start().await;
    let content = read(LITELLM_SAMPLE);

    // A dry run reports the diff and changes nothing.
    let diff = import(&gw, "litellm", &content, true).await;
    assert_eq!(diff["dry_run"], true);
    assert_eq!(
        names(&diff["added"]),
        [
            "sample-chat",
            "sample-claude",
            "sample-embedding",
            "sample-image",
            "sample-reasoner",
            "sample-transcribe",
            "sample-video"
        ]
    );
    assert!(diff["added"][0]["price_version"].is_null(), "{diff}");
    assert_eq!(diff["changed"], json!([]));
    assert_eq!(diff["unchanged"], 0);
    let skipped: BTreeMap<String, String> = diff["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["model"].as_str().unwrap().to_owned(),
                s["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped["sample_spec"].contains("example"), "{skipped:?}");
    let too_precise = &skipped["sample-too-precise"];
    assert!(
        too_precise.contains("input_cost_per_token") && too_precise.contains("1.5e-13"),
        "{too_precise}"
    );
    assert!(catalog(&gw).await.is_empty());
    let (_, audit) = gw.admin(Method::GET, "/audit?limit=1000", None).await;
    let audit_rows = audit["data"].as_array().unwrap().len();
    let snapshot_before = gw
        .cp()
        .services
        .publisher
        .latest()
        .unwrap()
        .snapshot
        .version;

    // The real import applies every row, each with its own catalog-wide version.
    let diff = import(&gw, "litellm", &content, false).await;
    assert_eq!(diff["dry_run"], false);
    assert_eq!(diff["added"].as_array().unwrap().len(), 7, "{diff}");
    let mut added_versions: Vec<i64> = diff["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["price_version"].as_i64().unwrap())
        .collect();
    added_versions.sort();
    assert_eq!(added_versions, (1..=7).collect::<Vec<i64>>());
    let after_import = catalog(&gw).await;
    assert_sample_catalog(&after_import);
    let (_, audit) = gw.admin(Method::GET, "/audit?limit=1000", None).await;
    let imports = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "model.import")
        .count();
    assert_eq!(imports, 7);
    assert_eq!(audit["data"].as_array().unwrap().len(), audit_rows + 7);
    // The data plane gets the new prices.
    let snapshot_after = gw
        .cp()
        .services
        .publisher
        .latest()
        .unwrap()
        .snapshot
        .version;
    assert!(snapshot_after > snapshot_before);
    gw.wait_for_config().await;

    // Importing the same file again is a no-op: no version, no audit row, no snapshot.
    let diff = import(&gw, "litellm", &content, false).await;
    assert_eq!(diff["added"], json!([]), "{diff}");
    assert_eq!(diff["changed"], json!([]), "{diff}");
    assert_eq!(diff["unchanged"], 7);
    assert_eq!(catalog(&gw).await, after_import);
    for row in after_import.values() {
        assert_eq!(versions(&gw, row["id"].as_str().unwrap()).await.len(), 1);
    }
    let (_, audit) = gw.admin(Method::GET, "/audit?limit=1000", None).await;
    assert_eq!(audit["data"].as_array().unwrap().len(), audit_rows + 7);
    assert_eq!(
        gw.cp()
            .services
            .publisher
            .latest()
            .unwrap()
            .snapshot
            .version,
        snapshot_after
    );

    // One changed price makes exactly one new version; the old one stays readable.
    let changed = content.replacen(
        "\"input_cost_per_token\": 2.5e-06",
        "\"input_cost_per_token\": 2e-06",
        1,
    );
    assert_ne!(changed, content);
    let diff = import(&gw, "litellm", &changed, false).await;
    assert_eq!(diff["added"], json!([]), "{diff}");
    assert_eq!(diff["unchanged"], 6);
    let change = &diff["changed"][0];
    assert_eq!(diff["changed"].as_array().unwrap().len(), 1, "{diff}");
    assert_eq!(change["model"], "sample-chat");
    assert_eq!(change["provider"], "openai");
    assert_eq!(change["before"]["input_micros_per_mtok"], 2_500_000);
    assert_eq!(change["after"]["input_micros_per_mtok"], 2_000_000);
    assert_eq!(change["after"]["output_micros_per_mtok"], 10_000_000);
    let old_version = change["before_version"].as_i64().unwrap();
    assert_eq!(change["after_version"], 8);

    let row = &catalog(&gw).await[&key("openai", "sample-chat")];
    assert_eq!(row["price_version"], 8);
    assert_eq!(row["input_micros_per_mtok"], 2_000_000);
    let history = versions(&gw, row["id"].as_str().unwrap()).await;
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["version"], old_version);
    assert_eq!(history[0]["input_micros_per_mtok"], 2_500_000);
    assert_eq!(history[1]["version"], 8);
    assert_eq!(history[1]["input_micros_per_mtok"], 2_000_000);
    let (status, old) = gw
        .admin(Method::GET, &format!("/price-versions/{old_version}"), None)
        .await;
    assert_eq!(status, 200, "{old}");
    assert_eq!(old["model"], "sample-chat");
    assert_eq!(old["input_micros_per_mtok"], 2_500_000);
    assert_eq!(old["cached_input_micros_per_mtok"], 1_250_000);
    let (status, _) = gw.admin(Method::GET, "/price-versions/999", None).await;
    assert_eq!(status, 404);
    // Every other row kept its single version.
    for (k, row) in catalog(&gw).await {
        if k != key("openai", "sample-chat") {
            assert_eq!(row, after_import[&k]);
        }
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn csv_import_is_exact_and_equivalent_to_the_litellm_import() {
    let gw = Gateway::start().await;
    let csv = read(CSV_SAMPLE);

    let diff = import(&gw, "csv", &csv, true).await;
    assert_eq!(diff["added"].as_array().unwrap().len(), 7, "{diff}");
    assert!(catalog(&gw).await.is_empty());

    let diff = import(&gw, "csv", &csv, false).await;
    assert_eq!(diff["added"].as_array().unwrap().len(), 7, "{diff}");
    let skipped = diff["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{diff}");
    assert_eq!(skipped[0]["model"], "sample-too-precise");
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("input_per_mtok_usd"),
        "{diff}"
    );
    let after = catalog(&gw).await;
    assert_sample_catalog(&after);

    // The LiteLLM sample says the same thing: nothing changes.
    let diff = import(&gw, "litellm", &read(LITELLM_SAMPLE), false).await;
    assert_eq!(diff["added"], json!([]), "{diff}");
    assert_eq!(diff["changed"], json!([]), "{diff}");
    assert_eq!(diff["unchanged"], 7);
    assert_eq!(catalog(&gw).await, after);

    // LiteLLM has no status: a row disabled here stays disabled through a re-import.
    let disable = "model,provider,family,input_per_mtok_usd,output_per_mtok_usd,cached_input_per_mtok_usd,context_window,max_output_tokens,status\n\
                   sample-claude,anthropic,chat,3,15,0.30,200000,8192,disabled\n";
    let diff = import(&gw, "csv", disable, false).await;
    assert_eq!(diff["changed"].as_array().unwrap().len(), 1, "{diff}");
    assert_eq!(diff["changed"][0]["before"]["status"], "active");
    assert_eq!(diff["changed"][0]["after"]["status"], "disabled");
    let diff = import(&gw, "litellm", &read(LITELLM_SAMPLE), false).await;
    assert_eq!(diff["changed"], json!([]), "{diff}");
    assert_eq!(diff["unchanged"], 7);
    let after = catalog(&gw).await;
    assert_eq!(
        after[&key("anthropic", "sample-claude")]["status"],
        "disabled"
    );

    // A row twice in one file counts once; the second is reported.
    let twice = "model,provider,input_per_mtok_usd\nnew-model,openai,1\nnew-model,openai,2\n";
    let diff = import(&gw, "csv", twice, true).await;
    assert_eq!(diff["added"].as_array().unwrap().len(), 1, "{diff}");
    assert_eq!(diff["added"][0]["input_micros_per_mtok"], 1_000_000);
    assert!(
        diff["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("more than once"),
        "{diff}"
    );

    // A malformed file is refused whole, naming the field.
    let (status, err) = gw
        .admin(
            Method::POST,
            "/models/import",
            Some(json!({"format": "csv", "content": "model,price\nx,1\n"})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["param"], "content", "{err}");
    assert_eq!(catalog(&gw).await, after);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_request_is_charged_at_the_catalog_rates_and_records_the_price_version() {
    let upstream = MockUpstream::start().await;
    let gw = Gateway::start().await;
    // `provision` prices gpt-4o-2024 for any provider ($2.50 / $10 per 1M).
    let p = gw
        .provision(&upstream.base_url(), "smart", "gpt-4o-2024")
        .await;
    // A row for the deployment's provider kind wins over the row for any provider:
    // $2 in, $1 cached in, $8 out, $12 reasoning per 1M tokens.
    let csv = "model,provider,input_per_mtok_usd,cached_input_per_mtok_usd,output_per_mtok_usd,reasoning_per_mtok_usd\n\
               gpt-4o-2024,openai-compatible,2,1,8,12\n";
    let diff = import(&gw, "csv", csv, false).await;
    let version = diff["added"][0]["price_version"].as_i64().unwrap();
    gw.wait_for_config().await;

    const CACHED: u64 = 15;
    const REASONING: u64 = 5;
    upstream.report_details(CACHED, REASONING);
    // (21 - 15) × 2 + 15 × 1 + (7 - 5) × 8 + 5 × 12 micro-USD.
    let expected = (PROMPT_TOKENS - CACHED) * 2
        + CACHED
        + (COMPLETION_TOKENS - REASONING) * 8
        + REASONING * 12;
    assert_eq!(expected, 103);

    let resp = gw.say_hi(&p.key, "smart").await;
    assert_eq!(resp.status(), 200);
    let row = gw.usage_row(&request_id(&resp)).await;
    assert_eq!(row["input_tokens"], PROMPT_TOKENS);
    assert_eq!(row["output_tokens"], COMPLETION_TOKENS);
    assert_eq!(row["cached_input_tokens"], CACHED);
    assert_eq!(row["reasoning_tokens"], REASONING);
    assert_eq!(row["cost_micros"], expected);
    assert_eq!(row["price_version"], version);

    // A streamed request reads the same details from the usage chunk.
    let resp = gw
        .chat(
            &p.key,
            json!({"model": "smart", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    resp.text().await.unwrap();
    let row = gw.usage_row(&id).await;
    assert_eq!(row["cached_input_tokens"], CACHED);
    assert_eq!(row["cost_micros"], expected);
    assert_eq!(row["price_version"], version);

    // The version names exactly the prices charged.
    let (status, charged) = gw
        .admin(Method::GET, &format!("/price-versions/{version}"), None)
        .await;
    assert_eq!(status, 200, "{charged}");
    assert_eq!(charged["provider"], "openai-compatible");
    assert_eq!(charged["cached_input_micros_per_mtok"], 1_000_000);
    assert_eq!(charged["reasoning_micros_per_mtok"], 12_000_000);

    // Disabling the row sends requests back to the row for any provider.
    let csv_disabled = "model,provider,input_per_mtok_usd,cached_input_per_mtok_usd,output_per_mtok_usd,reasoning_per_mtok_usd,status\n\
               gpt-4o-2024,openai-compatible,2,1,8,12,disabled\n";
    let diff = import(&gw, "csv", csv_disabled, false).await;
    assert_eq!(diff["changed"][0]["after"]["status"], "disabled", "{diff}");
    gw.wait_for_config().await;
    let resp = gw.say_hi(&p.key, "smart").await;
    let row = gw.usage_row(&request_id(&resp)).await;
    let any = &catalog(&gw).await[&key("*", "gpt-4o-2024")];
    assert_eq!(row["price_version"], any["price_version"]);
    // $2.50 / $10 per 1M, cached and reasoning tokens at the plain rates, each line rounded:
    // 6 × 2.5 + 15 × 2.5 (37.5 → 38) + 2 × 10 + 5 × 10.
    assert_eq!(row["cost_micros"], 123);
    gw.shutdown().await;
}
