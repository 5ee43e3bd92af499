//! A bounded, seeded run of the fuzz entry points (`modelgate_data_plane::fuzzing`) on the
//! stable toolchain: the golden fixtures and hand-written samples, each mutated many times
//! (bit flips, truncations, splices, duplicated spans), plus random bytes. Any panic fails the
//! test; `fuzz/` runs the same entry points coverage-guided under libFuzzer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use modelgate_data_plane::fuzzing;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROUNDS: usize = 4_000;

fn corpus() -> Vec<Vec<u8>> {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/anthropic");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(fixtures)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    out.extend(
        [
            r#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"f"}},"stop":["x"],"max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"model":"m","max_tokens":9,"system":"s","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{"a":1}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"ok"}]}],"tool_choice":{"type":"any"}}"#,
            r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":1}}}"#,
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"he\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\"}}]}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
            r#"{"error":{"message":"bad","type":"invalid_request_error","param":"x","code":null}}"#,
            "--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\na cat\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nvid\r\n--XyZ\r\nContent-Disposition: form-data; name=\"input_reference\"; filename=\"r.png\"\r\nContent-Type: image/png\r\n\r\n\u{89}PNG\r\n--XyZ--\r\n",
            "--B\r\nH\r\n\r\nv\r\n--B",
            r#"{"model":"tts-1","input":"Hello there.","voice":"alloy","response_format":"wav"}"#,
            r#"{"text":"hi","usage":{"type":"tokens","input_tokens":14,"output_tokens":45}}"#,
            r#"{"task":"transcribe","duration":8.47,"text":"hi","usage":{"type":"duration","seconds":9}}"#,
        ]
        .map(|s| s.as_bytes().to_vec()),
    );
    // Audio files, and an audio upload carrying one.
    let wav = modelgate_data_plane::providers::mock::audio::wav(8_000, 20);
    let mp3 = modelgate_data_plane::providers::mock::audio::mp3_silence(3);
    let mut upload = b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n\
        --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\
        Content-Type: application/octet-stream\r\n\r\n"
        .to_vec();
    upload.extend_from_slice(&wav);
    upload.extend_from_slice(
        b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"language\"\r\n\r\nen\r\n--XyZ--\r\n",
    );
    out.extend([wav, mp3, upload]);
    out
}

fn mutate(rng: &mut StdRng, seed: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.gen_range(1..6) {
        if v.is_empty() {
            v.push(rng.gen());
            continue;
        }
        let i = rng.gen_range(0..v.len());
        match rng.gen_range(0..6) {
            0 => v[i] ^= 1 << rng.gen_range(0..8),
            1 => v.truncate(i),
            2 => {
                let other = &corpus[rng.gen_range(0..corpus.len())];
                let j = rng.gen_range(0..=other.len());
                v.splice(i..i, other[..j].iter().copied());
            }
            3 => {
                let end = rng.gen_range(i..=v.len());
                let span: Vec<u8> = v[i..end].to_vec();
                v.splice(i..i, span);
            }
            4 => {
                let syntax = b"{}[]\":,\n\\";
                v.insert(i, syntax[rng.gen_range(0..syntax.len())]);
            }
            _ => {
                v.remove(i);
            }
        }
    }
    v
}

fn run(name: &str, seed: u64, target: fn(&[u8])) {
    let corpus = corpus();
    let mut rng = StdRng::seed_from_u64(seed);
    for input in &corpus {
        target(input);
    }
    for round in 0..ROUNDS {
        let input: Vec<u8> = if round % 10 == 0 {
            (0..rng.gen_range(0..256)).map(|_| rng.gen()).collect()
        } else {
            let seed = &corpus[rng.gen_range(0..corpus.len())];
            mutate(&mut rng, seed, &corpus)
        };
        let outcome = std::panic::catch_unwind(|| target(&input));
        assert!(
            outcome.is_ok(),
            "{name} panicked on input (round {round}): {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

#[test]
fn the_sse_framer_and_stream_translators_survive_mutated_streams() {
    // The first byte picks the chunk size; prefix a varying one.
    run("sse_stream", 7, |data| {
        for first in [0u8, 3, 30] {
            let mut input = vec![first];
            input.extend_from_slice(data);
            fuzzing::sse_stream(&input);
        }
    });
}

#[test]
fn the_multipart_reader_survives_mutated_forms() {
    run("multipart", 13, fuzzing::multipart);
}

#[test]
fn the_audio_readers_survive_mutated_files_and_uploads_and_re_encode_faithfully() {
    run("audio", 17, fuzzing::audio);
}

#[test]
fn request_and_response_parsers_survive_mutated_bodies() {
    run("bodies", 11, fuzzing::bodies);
}
