//! Token estimates for the rare answer a provider does not meter: counted with OpenAI's BPE
//! tokenizer (`tiktoken-rs`) over the text the model saw and produced, never over JSON syntax.
//! Usage rows built from an estimate are flagged `estimated`.
//!
//! - The encoding is chosen from the served model's name ([`Encoding::for_model`]):
//!   `cl100k_base` for GPT-4 (not 4o/4.1/4.5), GPT-3.5 and the older embedding models,
//!   `o200k_base` for everything else. For Anthropic, Gemini and open models it is an
//!   approximation: their tokenizers are not public in a form we can run, and an OpenAI BPE
//!   count is within a few percent for English text.
//! - Each encoding is loaded once, on first use, into a `OnceLock` (0.15–0.6 s, measured in
//!   `ARCHITECTURE.md`); counting (about 60 µs per KB) runs on the blocking pool
//!   ([`estimate_usage`]) so a large body never stalls the async workers.
//! - Prompts add OpenAI's documented chat overhead: [`PER_MESSAGE`] tokens per message plus its
//!   role, and [`REPLY_PRIMING`] tokens once. Embedding inputs and image prompts add none. Tool
//!   *definitions* are not counted (only tool calls and results in the conversation).
//! - Streams keep the upstream's event payloads ([`Streamed`], bounded by [`STREAM_KEEP_BYTES`])
//!   and tokenize once at the end, only when no usage report arrived or the stream was cut.

#[cfg(test)]
mod tests;
mod text;

use std::sync::OnceLock;

use bytes::Bytes;
use tiktoken_rs::CoreBPE;

use crate::surfaces::Surface;
use modelgate_shared::pricing::Tokens as Usage;

/// Tokens every chat message costs beyond its content (OpenAI's chat format markers).
pub const PER_MESSAGE: u64 = 3;
/// Tokens that prime the assistant's reply, once per chat prompt.
pub const REPLY_PRIMING: u64 = 3;
/// The most upstream stream payload kept for an estimate; beyond it the count of the kept
/// part is scaled up by the bytes seen.
pub const STREAM_KEEP_BYTES: usize = 1 << 20;
/// What a stream's kept payloads are given at first (a few dozen chunks).
const STREAM_FIRST_KEEP: usize = 8 * 1024;

/// An OpenAI BPE encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    O200kBase,
    Cl100kBase,
}

impl Encoding {
    /// The encoding for a served model name (a `vendor/` prefix is ignored).
    pub fn for_model(model: &str) -> Encoding {
        let name = model.rsplit('/').next().unwrap_or(model);
        let newer_gpt4 = ["gpt-4o", "gpt-4.1", "gpt-4.5"]
            .iter()
            .any(|p| name.starts_with(p));
        let cl100k = (name.starts_with("gpt-4") && !newer_gpt4)
            || name.starts_with("gpt-3.5")
            || name.starts_with("gpt-35")
            || name.starts_with("text-embedding-ada-002")
            || name.starts_with("text-embedding-3");
        if cl100k {
            Encoding::Cl100kBase
        } else {
            Encoding::O200kBase
        }
    }

    fn bpe(self) -> Option<&'static CoreBPE> {
        static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
        static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
        let (cell, load): (_, fn() -> anyhow::Result<CoreBPE>) = match self {
            Encoding::O200kBase => (&O200K, tiktoken_rs::o200k_base),
            Encoding::Cl100kBase => (&CL100K, tiktoken_rs::cl100k_base),
        };
        cell.get_or_init(|| match load() {
            Ok(bpe) => Some(bpe),
            Err(e) => {
                tracing::error!(error = %e, encoding = ?self, "tokenizer did not load; estimating four bytes a token");
                None
            }
        })
        .as_ref()
    }

    /// Tokens in `text` (special-token markers counted as ordinary text). Falls back to four
    /// bytes a token if the encoding could not be loaded.
    pub fn count(self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        match self.bpe() {
            Some(bpe) => bpe.encode_ordinary(text).len() as u64,
            None => (text.len() as u64).div_ceil(4),
        }
    }
}

/// Tokens of a request body in `format`, overheads included (see the module doc).
pub fn prompt_tokens(format: Surface, body: &[u8], encoding: Encoding) -> u64 {
    let p = text::prompt_pieces(format, body);
    let mut n = p.pieces.iter().map(|s| encoding.count(s)).sum::<u64>() + p.token_ids;
    if p.messages > 0 {
        n += p.messages * PER_MESSAGE + REPLY_PRIMING;
    }
    n
}

/// Tokens of a whole (non-streamed) answer body in the provider's `format`.
pub fn answer_tokens(format: Surface, body: &[u8], encoding: Encoding) -> u64 {
    let mut out = text::Output::default();
    text::answer_text(format, body, &mut out);
    out.count(encoding)
}

/// The upstream's stream payloads, kept (up to [`STREAM_KEEP_BYTES`]) for an estimate at the
/// end. Pushing is a copy into one growing buffer: nothing is parsed per event.
#[derive(Default)]
pub struct Streamed {
    /// Kept payloads, each followed by a newline.
    kept: Vec<u8>,
    /// Payload bytes kept (separators not included).
    kept_payload: usize,
    seen: usize,
}

impl Streamed {
    /// One event's `data:` payload.
    pub fn push(&mut self, payload: &[u8]) {
        self.seen += payload.len();
        if self.kept.len() + payload.len() < STREAM_KEEP_BYTES {
            if self.kept.capacity() == 0 {
                // A typical answer's events in one allocation, rather than a dozen doublings.
                self.kept.reserve(STREAM_FIRST_KEEP.max(payload.len() + 1));
            }
            self.kept.extend_from_slice(payload);
            self.kept_payload += payload.len();
            // Payloads are JSON values; whitespace separates them for the reader at the end.
            self.kept.push(b'\n');
        }
    }

    /// Bytes of payload seen, kept or not.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Output tokens of everything streamed, read in the provider's `format`.
    pub fn output_tokens(&self, format: Surface, encoding: Encoding) -> u64 {
        let mut out = text::Output::default();
        for value in
            serde_json::Deserializer::from_slice(&self.kept).into_iter::<serde_json::Value>()
        {
            // A payload that is not JSON ends what can be read.
            let Ok(v) = value else { break };
            text::chunk_text(format, &v, &mut out);
        }
        let n = out.count(encoding);
        let kept = self.kept_payload;
        if self.seen > kept && kept > 0 {
            // Only the first part was kept: scale by what was seen.
            u64::try_from(u128::from(n) * self.seen as u128 / kept as u128).unwrap_or(u64::MAX)
        } else {
            n
        }
    }
}

/// What a request is estimated from: the client's body in the client's format, and the
/// encoding of the served model. Cheap to carry: `Bytes` is shared, not copied.
#[derive(Clone)]
pub struct Basis {
    pub request: Bytes,
    pub client: Surface,
    /// The format the provider answered in.
    pub upstream: Surface,
    pub encoding: Encoding,
}

/// What the provider produced, for the output side of an estimate.
pub enum Produced {
    /// A whole answer body in the provider's format.
    Answer(Bytes),
    Stream(Streamed),
    /// Embeddings and images: nothing to count.
    Nothing,
}

/// Counts a request's input and output tokens on the blocking pool (tokenizing a large body, or
/// loading an encoding the first time, takes milliseconds).
pub async fn estimate_usage(basis: Basis, produced: Produced) -> Usage {
    let count = move || {
        let input = prompt_tokens(basis.client, &basis.request, basis.encoding);
        let output = match &produced {
            Produced::Answer(body) => answer_tokens(basis.upstream, body, basis.encoding),
            Produced::Stream(s) => s.output_tokens(basis.upstream, basis.encoding),
            Produced::Nothing => 0,
        };
        Usage {
            input,
            output,
            ..Usage::default()
        }
    };
    match tokio::task::spawn_blocking(count).await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "token estimate failed");
            Usage::default()
        }
    }
}
