//! Incremental server-sent-events framing: bytes in, whole events out, without buffering more
//! than one partial event.

use bytes::{Bytes, BytesMut};
use thiserror::Error;

/// The largest event a provider may send, terminator included (1 MiB). A longer one ends the
/// stream as a provider error: the splitter never holds more than this of one event.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// A provider sent an event longer than the splitter's cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the provider sent a stream event larger than {max} bytes")]
pub struct EventTooLarge {
    pub max: usize,
}

/// Splits a byte stream into events at blank lines (`\n\n` or `\r\n\r\n`). Each byte is
/// searched once: the search resumes where the previous push stopped (less the two bytes a
/// terminator may still straddle), so a large event arriving in many small reads costs linear,
/// not quadratic, time. An event longer than the cap stops the splitter: it returns nothing
/// more and [`SseSplitter::too_large`] says why.
pub struct SseSplitter {
    buf: BytesMut,
    /// Every `\n` of `buf` before this index is known not to start a terminator.
    searched: usize,
    max_event: usize,
    too_large: bool,
    /// Bytes examined by the terminator search, in all (tests check it stays linear).
    #[cfg(test)]
    scanned_total: usize,
}

impl Default for SseSplitter {
    fn default() -> Self {
        Self::with_max_event(MAX_EVENT_BYTES)
    }
}

impl SseSplitter {
    /// A splitter that refuses events longer than `max_event` bytes.
    pub fn with_max_event(max_event: usize) -> Self {
        SseSplitter {
            buf: BytesMut::new(),
            searched: 0,
            max_event,
            too_large: false,
            #[cfg(test)]
            scanned_total: 0,
        }
    }

    /// Feeds bytes; returns every complete event (each including its blank-line terminator).
    /// After an over-cap event, returns nothing (see [`SseSplitter::too_large`]).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.push_into(chunk, &mut out);
        out
    }

    /// [`SseSplitter::push`], appending the events to `out`.
    fn push_into(&mut self, chunk: &[u8], out: &mut Vec<Bytes>) {
        if self.too_large {
            return;
        }
        self.buf.extend_from_slice(chunk);
        loop {
            let (end, resume) = find_event_end(&self.buf, self.searched);
            #[cfg(test)]
            {
                self.scanned_total += end.unwrap_or(self.buf.len()) - self.searched;
            }
            let Some(end) = end else {
                self.searched = resume;
                break;
            };
            if end > self.max_event {
                return self.stop();
            }
            out.push(self.buf.split_to(end).freeze());
            self.searched = 0;
        }
        if self.buf.len() > self.max_event {
            self.stop();
        }
    }

    /// Like [`SseSplitter::push`], for a chunk already in a `Bytes` (an HTTP body's read), the
    /// events appended to `out`, which a caller splitting a stream read by read keeps for all
    /// of them: while no partial event is held, the chunk's whole events are handed out as
    /// slices of the chunk itself, not copied, and only an unfinished tail is kept. (Copying
    /// every event into the splitter's buffer cost a copy and, since the events handed out
    /// still share that buffer, a fresh allocation per read.)
    pub fn push_bytes(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) {
        if self.too_large || !self.buf.is_empty() {
            return self.push_into(&chunk, out);
        }
        let mut start = 0;
        loop {
            let (end, resume) = find_event_end(&chunk[start..], 0);
            #[cfg(test)]
            {
                self.scanned_total += end.unwrap_or(chunk.len() - start);
            }
            let Some(end) = end else {
                // The unfinished tail, searched up to `resume` already.
                self.buf.extend_from_slice(&chunk[start..]);
                self.searched = resume;
                break;
            };
            if end > self.max_event {
                return self.stop();
            }
            out.push(chunk.slice(start..start + end));
            start += end;
        }
        if self.buf.len() > self.max_event {
            self.stop();
        }
    }

    /// An over-cap event: nothing more is split (the events before it were handed out).
    fn stop(&mut self) {
        self.too_large = true;
        self.buf = BytesMut::new();
        self.searched = 0;
    }

    /// Set once an event longer than the cap arrived: the stream must end as failed.
    pub fn too_large(&self) -> Option<EventTooLarge> {
        self.too_large.then_some(EventTooLarge {
            max: self.max_event,
        })
    }

    /// Whatever is left when the stream ends (an unterminated event).
    pub fn remainder(&mut self) -> Option<Bytes> {
        self.searched = 0;
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// The index just past the first `\n\n` or `\r\n\r\n` of `buf`, searching the `\n`s from
/// `from` on; and where the next search must resume when none is found (at a `\n` too close to
/// the end to tell, else the end).
fn find_event_end(buf: &[u8], from: usize) -> (Option<usize>, usize) {
    let mut at = from;
    while let Some(i) = buf.get(at..).and_then(|rest| memchr::memchr(b'\n', rest)) {
        let i = at + i;
        match buf.get(i + 1) {
            Some(b'\n') => return (Some(i + 2), i),
            Some(b'\r') => match buf.get(i + 2) {
                Some(b'\n') if i > 0 && buf[i - 1] == b'\r' => return (Some(i + 3), i),
                Some(_) => {}
                None => return (None, i),
            },
            Some(_) => {}
            None => return (None, i),
        }
        at = i + 1;
    }
    (None, buf.len())
}

/// The concatenated `data:` payload of one event.
pub fn data_of(event: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    use std::borrow::Cow;
    let mut data: Option<Cow<'_, [u8]>> = None;
    let mut start = 0;
    while start < event.len() {
        let end = memchr::memchr(b'\n', &event[start..]).map_or(event.len(), |i| start + i);
        let line = &event[start..end];
        start = end + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            data = Some(match data {
                // The usual event has one `data:` line: its payload is borrowed, not copied.
                None => Cow::Borrowed(rest),
                Some(joined) => {
                    let mut d = joined.into_owned();
                    d.push(b'\n');
                    d.extend_from_slice(rest);
                    Cow::Owned(d)
                }
            });
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events of one read, into a vector of their own.
    fn split(s: &mut SseSplitter, chunk: Bytes) -> Vec<Bytes> {
        let mut out = Vec::new();
        s.push_bytes(chunk, &mut out);
        out
    }

    #[test]
    fn events_split_across_chunks_are_reassembled() {
        let mut s = SseSplitter::default();
        assert!(s.push(b"data: {\"a\"").is_empty());
        let events = s.push(b":1}\n\ndata: [DONE]\n\n");
        assert_eq!(events.len(), 2);
        assert_eq!(&*data_of(&events[0]).unwrap(), b"{\"a\":1}");
        assert_eq!(&*data_of(&events[1]).unwrap(), b"[DONE]");
        assert!(s.remainder().is_none());
    }

    #[test]
    fn crlf_framing_and_multiline_data_are_understood() {
        let mut s = SseSplitter::default();
        let events = s.push(b"event: x\r\ndata: one\r\ndata: two\r\n\r\n");
        assert_eq!(events.len(), 1);
        assert_eq!(&*data_of(&events[0]).unwrap(), b"one\ntwo");
    }

    #[test]
    fn a_huge_event_pushed_in_small_chunks_is_scanned_once_not_once_per_push() {
        let mut s = SseSplitter::default();
        let event = format!("data: {}\n\n", "x".repeat(200_000));
        let mut events = Vec::new();
        for chunk in event.as_bytes().chunks(7) {
            events.extend(s.push(chunk));
        }
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].len(), event.len());
        // Each byte is looked at a bounded number of times (a terminator may straddle two
        // pushes, so a few bytes are looked at again), not once per push.
        assert!(
            s.scanned_total <= 2 * event.len(),
            "{} bytes scanned for a {}-byte event",
            s.scanned_total,
            event.len()
        );
    }

    #[test]
    fn an_event_over_the_cap_stops_the_splitter_after_the_events_before_it() {
        let mut s = SseSplitter::with_max_event(16);
        // 16 bytes with its terminator: at the cap, accepted.
        let at_cap = "data: 12345678\n\n";
        assert_eq!(at_cap.len(), 16);
        let events = s.push(format!("{at_cap}data: 1234567890\n\ndata: x\n\n").as_bytes());
        assert_eq!(events, vec![Bytes::from(at_cap)]);
        assert_eq!(s.too_large(), Some(EventTooLarge { max: 16 }));
        assert!(s.push(b"data: y\n\n").is_empty());
        assert!(s.remainder().is_none());

        // An unterminated event growing past the cap is refused as soon as it does, in
        // whatever pieces it comes.
        let mut s = SseSplitter::with_max_event(16);
        for piece in [&b"data: 12345"[..], b"67890", b"12"] {
            assert!(s.push(piece).is_empty());
        }
        assert!(s.too_large().is_some());
        assert!(SseSplitter::default().too_large().is_none());
    }

    #[test]
    fn a_terminator_split_across_pushes_is_found() {
        for split in 1..8 {
            let mut s = SseSplitter::default();
            let all = b"data: a\r\n\r\ndata: b\n\n";
            let mut events = s.push(&all[..split]);
            events.extend(s.push(&all[split..]));
            assert_eq!(events.len(), 2, "split at {split}");
            assert_eq!(&*data_of(&events[0]).unwrap(), b"a");
        }
    }

    #[test]
    fn events_pushed_as_bytes_are_cut_from_the_chunk_and_match_the_copying_push() {
        let stream: &[u8] =
            b"data: {\"a\":1}\n\ndata: b\r\n\r\nevent: x\ndata: one\ndata: two\n\ndata: [DONE]\n\n";
        for size in [1, 2, 3, 5, 8, 13, stream.len()] {
            let (mut copying, mut slicing) = (SseSplitter::default(), SseSplitter::default());
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for piece in stream.chunks(size) {
                a.extend(copying.push(piece));
                b.extend(split(&mut slicing, Bytes::copy_from_slice(piece)));
            }
            a.extend(copying.remainder());
            b.extend(slicing.remainder());
            assert_eq!(a, b, "chunks of {size}");
            assert_eq!(b.len(), 4);
            // Into one vector kept across reads (as the pump does): the same events, in order.
            let mut kept = SseSplitter::default();
            let mut c = Vec::new();
            for piece in stream.chunks(size) {
                kept.push_bytes(Bytes::copy_from_slice(piece), &mut c);
            }
            c.extend(kept.remainder());
            assert_eq!(c, b, "chunks of {size}, one vector");
        }
        // A whole chunk of events: each is a slice of the chunk, not a copy.
        let chunk = Bytes::from_static(b"data: a\n\ndata: b\n\n");
        let events = split(&mut SseSplitter::default(), chunk.clone());
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].as_ptr(), chunk.as_ptr());
        assert_eq!(events[1].as_ptr(), chunk[9..].as_ptr());
    }

    #[test]
    fn an_event_over_the_cap_stops_the_splitter_when_pushed_as_bytes_too() {
        let mut s = SseSplitter::with_max_event(16);
        let at_cap = "data: 12345678\n\n";
        let events = split(
            &mut s,
            Bytes::from(format!("{at_cap}data: 1234567890\n\ndata: x\n\n")),
        );
        assert_eq!(events, vec![Bytes::from(at_cap)]);
        assert_eq!(s.too_large(), Some(EventTooLarge { max: 16 }));
        assert!(split(&mut s, Bytes::from_static(b"data: y\n\n")).is_empty());
        // An unterminated tail past the cap, in one read.
        let mut s = SseSplitter::with_max_event(16);
        assert!(split(&mut s, Bytes::from_static(b"data: 1234567890123")).is_empty());
        assert!(s.too_large().is_some());
    }

    #[test]
    fn unterminated_tail_is_returned_as_remainder() {
        let mut s = SseSplitter::default();
        assert!(s.push(b"data: partial").is_empty());
        assert_eq!(s.remainder().unwrap(), Bytes::from_static(b"data: partial"));
    }
}
