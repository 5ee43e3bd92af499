use serde_json::json;

use super::*;

/// Counts checked by running the tokenizer; "tiktoken is great!" = 6 tokens in cl100k_base is
/// the example in OpenAI's cookbook ("How to count tokens with tiktoken").
#[test]
fn counts_match_the_tokenizer_for_fixed_strings() {
    for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
        assert_eq!(enc.count("hello world"), 2, "{enc:?}");
        assert_eq!(enc.count(""), 0, "{enc:?}");
    }
    assert_eq!(Encoding::Cl100kBase.count("tiktoken is great!"), 6);
    assert_eq!(Encoding::O200kBase.count("tiktoken is great!"), 6);
    // The encodings differ where their vocabularies do: o200k_base has far more non-English
    // tokens.
    let s = "Пожалуйста, переведите это предложение.";
    assert_eq!(Encoding::Cl100kBase.count(s), 16);
    assert_eq!(Encoding::O200kBase.count(s), 10);
}

#[test]
fn the_encoding_follows_the_model_family() {
    use Encoding::{Cl100kBase as Cl, O200kBase as O};
    for (model, enc) in [
        ("gpt-4o-2024-08-06", O),
        ("gpt-4o-mini", O),
        ("gpt-4.1-nano", O),
        ("gpt-5", O),
        ("o3-mini", O),
        ("openai/gpt-4o", O),
        ("claude-sonnet-4-5", O),
        ("gemini-2.5-flash", O),
        ("gpt-4", Cl),
        ("gpt-4-0613", Cl),
        ("gpt-4-turbo", Cl),
        ("gpt-3.5-turbo", Cl),
        ("gpt-35-turbo", Cl),
        ("text-embedding-3-small", Cl),
    ] {
        assert_eq!(Encoding::for_model(model), enc, "{model}");
    }
}

#[test]
fn a_chat_prompt_counts_contents_roles_and_the_documented_overhead_not_json() {
    let enc = Encoding::O200kBase;
    let body = json!({"model": "m", "temperature": 0.2, "messages": [
        {"role": "system", "content": "hello world"},
        {"role": "user", "content": [{"type": "text", "text": "hello world"},
                                     {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "hello world"},
    ]});
    let roles = ["system", "user", "assistant", "tool"]
        .iter()
        .map(|r| enc.count(r))
        .sum::<u64>();
    let expected =
        4 * PER_MESSAGE + REPLY_PRIMING + roles + 3 * 2 + enc.count("f") + enc.count("{\"a\":1}");
    assert_eq!(
        prompt_tokens(Surface::OpenAiChat, body.to_string().as_bytes(), enc),
        expected
    );
}

#[test]
fn anthropic_and_gemini_prompts_count_their_text_tool_calls_and_results() {
    let enc = Encoding::Cl100kBase;
    let anthropic = json!({"model": "m", "max_tokens": 10, "system": "hello world", "messages": [
        {"role": "user", "content": "hello world"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "hello world"}]},
    ]});
    let roles = enc.count("system") + enc.count("user") * 2 + enc.count("assistant");
    assert_eq!(
        prompt_tokens(
            Surface::AnthropicMessages,
            anthropic.to_string().as_bytes(),
            enc
        ),
        4 * PER_MESSAGE + REPLY_PRIMING + roles + 3 * 2 + enc.count("{\"a\":1}")
    );
    let gemini = json!({"systemInstruction": {"parts": [{"text": "hello world"}]}, "contents": [
        {"role": "user", "parts": [{"text": "hello world"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
    ]});
    let roles = enc.count("system") + enc.count("user") + enc.count("model");
    assert_eq!(
        prompt_tokens(Surface::Gemini, gemini.to_string().as_bytes(), enc),
        3 * PER_MESSAGE + REPLY_PRIMING + roles + 2 * 2 + enc.count("f") + enc.count("{\"a\":1}")
    );
}

#[test]
fn embeddings_and_image_prompts_have_no_chat_overhead() {
    let enc = Encoding::O200kBase;
    let e = json!({"model": "m", "input": ["hello world", "tiktoken is great!"]});
    assert_eq!(
        prompt_tokens(Surface::OpenAiEmbeddings, e.to_string().as_bytes(), enc),
        2 + 6
    );
    let ids = json!({"model": "m", "input": [[1, 2, 3], [4]]});
    assert_eq!(
        prompt_tokens(Surface::OpenAiEmbeddings, ids.to_string().as_bytes(), enc),
        4
    );
    let i = json!({"model": "m", "prompt": "hello world"});
    assert_eq!(
        prompt_tokens(Surface::OpenAiImages, i.to_string().as_bytes(), enc),
        2
    );
}

#[test]
fn an_answer_counts_its_text_and_tool_call_arguments_in_each_format() {
    let enc = Encoding::O200kBase;
    let args = r#"{"city":"Paris"}"#;
    let want = 2 + enc.count(args);
    let openai = json!({"choices": [{"message": {"role": "assistant", "content": "hello world",
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": args}}]}}]});
    let anthropic = json!({"content": [{"type": "text", "text": "hello world"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {"city": "Paris"}}]});
    let gemini = json!({"candidates": [{"content": {"role": "model", "parts": [
        {"text": "hello world"}, {"functionCall": {"name": "f", "args": {"city": "Paris"}}}]}}]});
    let responses = json!({"output": [
        {"type": "message", "content": [{"type": "output_text", "text": "hello world"}]},
        {"type": "function_call", "name": "f", "arguments": args}]});
    for (format, body) in [
        (Surface::OpenAiChat, openai),
        (Surface::AnthropicMessages, anthropic),
        (Surface::Gemini, gemini),
        (Surface::OpenAiResponses, responses),
    ] {
        assert_eq!(
            answer_tokens(format, body.to_string().as_bytes(), enc),
            want,
            "{format:?}"
        );
    }
}

#[test]
fn streamed_deltas_are_rejoined_before_counting() {
    let enc = Encoding::O200kBase;
    let mut s = Streamed::default();
    for piece in ["hel", "lo wor", "ld"] {
        s.push(
            json!({"choices": [{"index": 0, "delta": {"content": piece}}]})
                .to_string()
                .as_bytes(),
        );
    }
    s.push(br#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#);
    s.push(br#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}"#);
    assert_eq!(
        s.output_tokens(Surface::OpenAiChat, enc),
        2 + enc.count(r#"{"city":"Paris"}"#)
    );

    let mut a = Streamed::default();
    a.push(
        br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hello"}}"#,
    );
    a.push(br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" world"}}"#);
    assert_eq!(a.output_tokens(Surface::AnthropicMessages, enc), 2);
}

#[test]
fn a_stream_beyond_the_kept_bound_is_scaled_by_the_bytes_seen() {
    let enc = Encoding::O200kBase;
    let payload = json!({"choices": [{"index": 0, "delta": {"content": " hello"}}]}).to_string();
    let mut s = Streamed::default();
    let n = 2 * STREAM_KEEP_BYTES / (payload.len() + 1);
    for _ in 0..n {
        s.push(payload.as_bytes());
    }
    let kept = STREAM_KEEP_BYTES / (payload.len() + 1);
    let counted = enc.count(&" hello".repeat(kept));
    let want = counted * (n * payload.len()) as u64 / (kept * payload.len()) as u64;
    assert_eq!(s.seen(), n * payload.len());
    assert_eq!(s.output_tokens(Surface::OpenAiChat, enc), want);
    assert!(
        want >= n as u64 - 1,
        "about one token a payload: {want} for {n}"
    );
}

/// Not an assertion: prints the cold load and the cost of counting 1 KB
/// (`cargo test --release -p modelgate-data-plane estimate::tests::timing -- --nocapture`).
#[test]
fn timing() {
    let t = std::time::Instant::now();
    let _ = Encoding::O200kBase.count("x");
    let load_o200k = t.elapsed();
    let t = std::time::Instant::now();
    let _ = Encoding::Cl100kBase.count("x");
    let load_cl100k = t.elapsed();
    let text = "The quick brown fox jumps over the lazy dog, and then it naps. ".repeat(32);
    let text = &text[..1024];
    let rounds = 200u32;
    let t = std::time::Instant::now();
    let mut n = 0;
    for _ in 0..rounds {
        n += Encoding::O200kBase.count(std::hint::black_box(text));
    }
    let per_kb = t.elapsed() / rounds;
    println!(
        "cold load: o200k_base {load_o200k:?}, cl100k_base {load_cl100k:?}; 1 KB in {per_kb:?} ({} tokens)",
        n / u64::from(rounds)
    );
}
