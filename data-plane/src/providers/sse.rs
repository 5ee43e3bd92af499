//! Incremental server-sent-events framing: bytes in, whole events out, without buffering more
//! than one partial event.

use bytes::{Bytes, BytesMut};

#[derive(Default)]
pub struct SseSplitter {
    buf: BytesMut,
}

impl SseSplitter {
    /// Feeds bytes; returns every complete event (each including its blank-line terminator).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = find_event_end(&self.buf) {
            out.push(self.buf.split_to(end).freeze());
        }
        out
    }

    /// Whatever is left when the stream ends (an unterminated event).
    pub fn remainder(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// The index just past the first `\n\n` (or `\r\n\r\n`).
fn find_event_end(buf: &[u8]) -> Option<usize> {
    let lf = memchr::memmem::find(buf, b"\n\n").map(|i| i + 2);
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The concatenated `data:` payload of one event.
pub fn data_of(event: &[u8]) -> Option<Vec<u8>> {
    let mut data: Option<Vec<u8>> = None;
    for line in event.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            let d = data.get_or_insert_with(Vec::new);
            if !d.is_empty() {
                d.push(b'\n');
            }
            d.extend_from_slice(rest);
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_are_reassembled() {
        let mut s = SseSplitter::default();
        assert!(s.push(b"data: {\"a\"").is_empty());
        let events = s.push(b":1}\n\ndata: [DONE]\n\n");
        assert_eq!(events.len(), 2);
        assert_eq!(data_of(&events[0]).unwrap(), b"{\"a\":1}");
        assert_eq!(data_of(&events[1]).unwrap(), b"[DONE]");
        assert!(s.remainder().is_none());
    }

    #[test]
    fn crlf_framing_and_multiline_data_are_understood() {
        let mut s = SseSplitter::default();
        let events = s.push(b"event: x\r\ndata: one\r\ndata: two\r\n\r\n");
        assert_eq!(events.len(), 1);
        assert_eq!(data_of(&events[0]).unwrap(), b"one\ntwo");
    }

    #[test]
    fn unterminated_tail_is_returned_as_remainder() {
        let mut s = SseSplitter::default();
        assert!(s.push(b"data: partial").is_empty());
        assert_eq!(s.remainder().unwrap(), Bytes::from_static(b"data: partial"));
    }
}
