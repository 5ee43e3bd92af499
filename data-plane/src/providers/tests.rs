use super::*;

#[test]
fn openai_usage_reads_cached_and_reasoning_tokens_as_parts_of_the_totals() {
    let body = br#"{"usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140,
        "prompt_tokens_details": {"cached_tokens": 60, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 25, "audio_tokens": 0}}}"#;
    assert_eq!(
        openai_usage(body),
        Some(Tokens {
            input: 100,
            output: 40,
            cached_input: 60,
            reasoning: 25,
            ..Tokens::default()
        })
    );
}

#[test]
fn openai_usage_without_details_or_with_null_ones_has_no_parts() {
    for body in [
        &br#"{"usage": {"prompt_tokens": 3, "completion_tokens": 2}}"#[..],
        br#"{"usage": {"prompt_tokens": 3, "completion_tokens": 2, "prompt_tokens_details": null,
            "completion_tokens_details": {"reasoning_tokens": null}}}"#,
    ] {
        let t = openai_usage(body).unwrap();
        assert_eq!(
            (t.input, t.output, t.cached_input, t.reasoning),
            (3, 2, 0, 0)
        );
    }
    assert_eq!(openai_usage(br#"{"usage": null}"#), None);
}
