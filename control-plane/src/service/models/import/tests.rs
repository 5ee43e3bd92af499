use super::*;

fn rows_by_model(p: &Parsed) -> BTreeMap<String, CatalogEntry> {
    p.rows
        .iter()
        .map(|r| (r.entry.model.clone(), r.entry.clone()))
        .collect()
}

fn reason(p: &Parsed, model: &str) -> String {
    p.skipped
        .iter()
        .find(|s| s.model == model)
        .map(|s| s.reason.clone())
        .unwrap_or_else(|| panic!("{model} was not skipped: {:?}", p.skipped))
}

#[test]
fn litellm_prices_are_converted_exactly_from_their_text() {
    let content = r#"{
        "sample_spec": {"litellm_provider": "one of https://docs.litellm.ai/docs/providers", "input_cost_per_token": 0.0},
        "gpt-x": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-06,
                  "output_cost_per_token": 1e-05, "cache_read_input_token_cost": 1.25e-06,
                  "output_cost_per_reasoning_token": 1.1e-05, "max_input_tokens": 128000,
                  "max_output_tokens": 16384, "max_tokens": 4096, "supports_vision": true},
        "azure/gpt-x": {"litellm_provider": "azure", "input_cost_per_token": 0.0000011, "max_tokens": 8192},
        "img": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04,
                "input_cost_per_image": 0.01},
        "whisper": {"litellm_provider": "openai", "mode": "audio_transcription", "input_cost_per_second": 0.0001},
        "tts": {"litellm_provider": "openai", "mode": "audio_speech", "input_cost_per_character": 1.5e-05},
        "tiny": {"litellm_provider": "openai", "input_cost_per_token": 1e-13},
        "bedrock-x": {"litellm_provider": "bedrock", "input_cost_per_token": 1e-06},
        "weird-mode": {"litellm_provider": "openai", "mode": "telepathy"},
        "not-an-object": "free",
        "text-price": {"litellm_provider": "openai", "input_cost_per_token": "3e-07", "output_cost_per_token": null}
    }"#;
    let p = parse(Format::Litellm, content).unwrap();
    let rows = rows_by_model(&p);

    let gpt = &rows["gpt-x"];
    assert_eq!(gpt.provider, "openai");
    assert_eq!(gpt.family, "chat");
    assert_eq!(gpt.input_micros_per_mtok, 2_500_000);
    assert_eq!(gpt.output_micros_per_mtok, 10_000_000);
    assert_eq!(gpt.cached_input_micros_per_mtok, 1_250_000);
    assert_eq!(gpt.reasoning_micros_per_mtok, 11_000_000);
    assert_eq!(gpt.context_window, 128_000);
    assert_eq!(gpt.max_output_tokens, 16_384);

    // The provider prefix is dropped; `max_tokens` stands in for the output limit.
    let azure = p
        .rows
        .iter()
        .find(|r| r.entry.provider == "azure-openai")
        .unwrap();
    assert_eq!(azure.entry.model, "gpt-x");
    assert_eq!(azure.entry.input_micros_per_mtok, 1_100_000);
    assert_eq!(azure.entry.max_output_tokens, 8192);

    assert_eq!(rows["img"].family, "images");
    assert_eq!(rows["img"].per_image_micros, 40_000);
    assert_eq!(rows["whisper"].family, "audio");
    assert_eq!(rows["whisper"].per_second_micros, 100);
    // USD per character, scaled like a token price: $15 per 1M characters.
    assert_eq!(rows["tts"].family, "audio");
    assert_eq!(rows["tts"].per_mchar_micros, 15_000_000);
    assert_eq!(rows["text-price"].input_micros_per_mtok, 300_000);
    assert_eq!(rows["text-price"].output_micros_per_mtok, 0);

    assert!(reason(&p, "sample_spec").contains("example"));
    assert!(reason(&p, "tiny").contains("input_cost_per_token"));
    assert!(reason(&p, "tiny").contains("precise"));
    assert!(reason(&p, "bedrock-x").contains("bedrock"));
    assert!(reason(&p, "weird-mode").contains("telepathy"));
    assert!(reason(&p, "not-an-object").contains("not a price entry"));
    assert_eq!(p.rows.len(), 6);
    assert_eq!(p.skipped.len(), 5);
}

#[test]
fn a_file_that_is_not_a_json_object_is_refused_whole() {
    for content in ["", "[1, 2]", "{\"a\": 1", "not json"] {
        let err = parse(Format::Litellm, content).unwrap_err();
        assert!(err.to_string().starts_with("content:"), "{content}: {err}");
    }
}

#[test]
fn csv_prices_characters_per_million_in_usd() {
    let content = "model,provider,family,per_mchar_usd,per_second_usd\n\
        tts-1,openai,audio,15,\n\
        whisper-1,openai,audio,,0.0001\n";
    let p = parse(Format::Csv, content).unwrap();
    let rows = rows_by_model(&p);
    assert_eq!(rows["tts-1"].per_mchar_micros, 15_000_000);
    assert_eq!(rows["whisper-1"].per_second_micros, 100);
    assert_eq!(rows["whisper-1"].per_mchar_micros, 0);
}

#[test]
fn csv_columns_are_found_by_name_and_prices_parsed_exactly() {
    let content = "\u{feff}model,provider,input_per_mtok_usd,output_per_mtok_usd,cached_input_per_mtok_usd,per_image_usd,per_second_usd,context_window,status,family\r\n\
        gpt-x,openai,2.50,10,1.25,,,128000,,chat\r\n\
        \"quoted, name\",,0.15,\"0.60\",,,,,deprecated,\n\
        \n\
        img,openai,,,,0.04,,,,images\n\
        too-fine,openai,0.0000001,,,,,,,\n\
        short,openai\n\
        neg,openai,-1,,,,,,,\n";
    let p = parse(Format::Csv, content).unwrap();
    let rows = rows_by_model(&p);
    let gpt = &rows["gpt-x"];
    assert_eq!(gpt.input_micros_per_mtok, 2_500_000);
    assert_eq!(gpt.output_micros_per_mtok, 10_000_000);
    assert_eq!(gpt.cached_input_micros_per_mtok, 1_250_000);
    assert_eq!(gpt.context_window, 128_000);
    let quoted = p
        .rows
        .iter()
        .find(|r| r.entry.model == "quoted, name")
        .unwrap();
    assert_eq!(quoted.entry.provider, "*");
    assert_eq!(quoted.entry.family, "chat");
    assert_eq!(quoted.entry.output_micros_per_mtok, 600_000);
    assert_eq!(quoted.status.as_deref(), Some("deprecated"));
    assert_eq!(rows["img"].per_image_micros, 40_000);
    assert!(reason(&p, "too-fine").contains("precise"));
    assert!(reason(&p, "short").contains("2 fields"));
    assert!(reason(&p, "neg").contains("negative"));
    assert_eq!(p.rows.len(), 3);
}

#[test]
fn a_csv_header_must_name_known_columns() {
    for content in [
        "",
        "model,price\nx,1\n",
        "provider\nopenai\n",
        "model,model\nx,y\n",
    ] {
        let err = parse(Format::Csv, content).unwrap_err();
        assert!(err.to_string().starts_with("content:"), "{content}: {err}");
    }
}

#[test]
fn csv_records_follow_rfc_4180_quoting() {
    let records = csv_records("a,\"b \"\"c\"\"\",\"d\ne\"\nf,,\n").unwrap();
    assert_eq!(
        records,
        vec![
            (1, vec!["a".into(), "b \"c\"".into(), "d\ne".into()]),
            (3, vec!["f".into(), String::new(), String::new()]),
        ]
    );
    assert!(csv_records("a,\"open\n").is_err());
    assert!(csv_records("a,b\"c\n").is_err());
    assert!(csv_records("\"a\"b\n").is_err());
}

#[test]
fn an_import_row_keeps_the_status_and_image_prices_the_file_does_not_carry() {
    let mut current = blank("m");
    current.status = "disabled".into();
    current.image_prices.insert("1024x1024/hd".into(), 80_000);
    let row = ImportRow {
        entry: blank("m"),
        status: None,
    };
    let resolved = row.clone().resolve(Some(current.clone()));
    assert_eq!(resolved.status, "disabled");
    assert_eq!(resolved.image_prices, current.image_prices);
    assert_eq!(row.clone().resolve(None).status, "active");
    let given = ImportRow {
        status: Some("deprecated".into()),
        ..row
    };
    assert_eq!(given.resolve(Some(current)).status, "deprecated");
}
