//! A stored answer and its encoding — the same bytes in the in-process layer and in Redis.
//!
//! An entry holds the answer in the client's format (after any translation), the tokens and
//! cost of the original answer (a hit is metered with them), and nothing of the request: no
//! header, no key, no credential is ever part of it. Two kinds:
//! - `Json`: a whole answer; serves a non-streaming client as is and a streaming one through
//!   events synthesised from it (`synth`). Every entry is stored so: a streamed answer is
//!   assembled into its whole answer first (`assemble`).
//! - `Events`: a streamed answer's events as the client received them (SSE framing): what the
//!   capture of a stream hands to `Cache::store`, and what earlier versions stored (still read:
//!   assembled into a whole answer on lookup).
//!
//! Layout: `MGC1`, kind (1 byte), input, output, cached input, reasoning, images (u64 BE each),
//! cost in micro-USD (i64 BE), price version (u64 BE), served model (u16 BE length + UTF-8),
//! then the body, LZ4-compressed with its length prepended (u32 LE).

use bytes::{BufMut, Bytes, BytesMut};
use modelgate_shared::pricing::Tokens;
use thiserror::Error;

const MAGIC: &[u8; 4] = b"MGC1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Json,
    Events,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub usage: Tokens,
    /// What the original answer cost (micro-USD, catalog price).
    pub cost_micros: i64,
    pub price_version: u64,
    /// The provider model that produced the answer.
    pub served_model: String,
    /// The answer, uncompressed.
    pub body: Bytes,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not a cache entry (bad magic or kind)")]
    Format,
    #[error("cache entry truncated")]
    Truncated,
    #[error("cache entry body of {0} bytes is over the bound")]
    TooLarge(usize),
    #[error("cache entry body does not decompress: {0}")]
    Body(String),
}

impl Entry {
    /// The stored bytes: header, then the compressed body.
    pub fn encode(&self) -> Bytes {
        let compressed = lz4_flex::block::compress_prepend_size(&self.body);
        let model = self.served_model.as_bytes();
        let model = &model[..model.len().min(usize::from(u16::MAX))];
        let mut out = BytesMut::with_capacity(64 + model.len() + compressed.len());
        out.put_slice(MAGIC);
        out.put_u8(match self.kind {
            Kind::Json => 0,
            Kind::Events => 1,
        });
        for n in [
            self.usage.input,
            self.usage.output,
            self.usage.cached_input,
            self.usage.reasoning,
            self.usage.images,
        ] {
            out.put_u64(n);
        }
        out.put_i64(self.cost_micros);
        out.put_u64(self.price_version);
        // Bounded to u16 just above.
        out.put_u16(u16::try_from(model.len()).unwrap_or(u16::MAX));
        out.put_slice(model);
        out.put_slice(&compressed);
        out.freeze()
    }

    /// Reads stored bytes back; a body that would decompress past `max_body` is refused
    /// before any allocation.
    pub fn decode(bytes: &[u8], max_body: usize) -> Result<Entry, DecodeError> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return Err(DecodeError::Format);
        }
        let kind = match r.take(1)?[0] {
            0 => Kind::Json,
            1 => Kind::Events,
            _ => return Err(DecodeError::Format),
        };
        let usage = Tokens {
            input: r.u64()?,
            output: r.u64()?,
            cached_input: r.u64()?,
            reasoning: r.u64()?,
            images: r.u64()?,
            media_ms: 0,
            // The cached surfaces are text and embeddings: nothing is metered by characters.
            characters: 0,
        };
        let cost_micros = i64::from_be_bytes(r.array()?);
        let price_version = r.u64()?;
        let len = usize::from(u16::from_be_bytes(r.array()?));
        let served_model = String::from_utf8_lossy(r.take(len)?).into_owned();
        let rest = r.0;
        let declared = rest
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or(DecodeError::Truncated)?;
        if declared > max_body {
            return Err(DecodeError::TooLarge(declared));
        }
        let body = lz4_flex::block::decompress_size_prepended(rest)
            .map_err(|e| DecodeError::Body(e.to_string()))?;
        Ok(Entry {
            kind,
            usage,
            cost_micros,
            price_version,
            served_model,
            body: Bytes::from(body),
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Truncated)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            kind: Kind::Events,
            usage: Tokens {
                input: 12,
                output: 34,
                cached_input: 5,
                reasoning: 6,
                images: 0,
                media_ms: 0,
                characters: 0,
            },
            cost_micros: 789,
            price_version: 3,
            served_model: "gpt-4o-mini-2024".into(),
            body: Bytes::from("data: {\"x\":1}\n\n".repeat(200)),
        }
    }

    #[test]
    fn an_entry_round_trips_and_its_body_is_stored_compressed() {
        let e = sample();
        let bytes = e.encode();
        assert!(bytes.len() < e.body.len() / 4, "{} bytes", bytes.len());
        assert_eq!(Entry::decode(&bytes, 1 << 20).unwrap(), e);
    }

    #[test]
    fn a_damaged_or_oversize_entry_is_refused() {
        let bytes = sample().encode();
        assert_eq!(
            Entry::decode(&bytes[..20], 1 << 20),
            Err(DecodeError::Truncated)
        );
        assert_eq!(Entry::decode(b"nope", 1 << 20), Err(DecodeError::Format));
        assert!(matches!(
            Entry::decode(&bytes, 100),
            Err(DecodeError::TooLarge(_))
        ));
    }
}
