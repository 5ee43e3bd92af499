//! Finding one top-level member of a JSON object without parsing the rest: the gateway reads
//! `usage` from answers it otherwise passes through byte for byte, and a full parse of every
//! answer (strings validated and skipped one by one) cost more than anything else it did with
//! the body. The scan walks the object's members from its end, jumping over strings with
//! `memrchr` and over nested values by bracket depth; the one value wanted is then parsed on its
//! own.
//!
//! The scan trusts the input to be JSON (it is an upstream's answer, forwarded as is either way)
//! and reads only the members after the one it finds. When it cannot find the member — absent,
//! a key written with escapes, or a body that is not an object — callers fall back to a full
//! parse, so the answer never depends on the shortcut.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// The raw bytes of the value of `key` among the members of the top-level object in `json`,
/// found from the object's end: the members the gateway reads (`usage`) come last or nearly
/// last, after the choices or content blocks that make up most of an answer, so the walk skips
/// a few small members rather than the whole answer. With a name given twice, the last one.
pub fn member<'j>(json: &'j [u8], key: &[u8]) -> Option<&'j [u8]> {
    let mut i = skip_ws_back(json, json.len());
    if i == 0 || json[i - 1] != b'}' {
        return None;
    }
    // `i` is just past the next member's end (at first, the object's closing brace).
    i -= 1;
    loop {
        let end = skip_ws_back(json, i);
        let start = value_start(json, end)?;
        let colon = skip_ws_back(json, start);
        if colon == 0 || json[colon - 1] != b':' {
            return None;
        }
        let name_end = skip_ws_back(json, colon - 1);
        if name_end == 0 || json[name_end - 1] != b'"' {
            return None;
        }
        let name_start = string_start(json, name_end - 1)?;
        if &json[name_start + 1..name_end - 1] == key {
            return Some(&json[start..end]);
        }
        let before = skip_ws_back(json, name_start);
        match before.checked_sub(1).map(|b| json[b]) {
            Some(b',') => i = before - 1,
            // The first member: the name is not among them.
            _ => return None,
        }
    }
}

/// A searcher for `"usage"` (the name quoted), built once: building a `memmem` searcher costs
/// more than searching a stream event with it, and a stream is searched event by event.
pub static QUOTED_USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));

/// Every member of the name `quoted` searches for (the name in quotes, e.g. [`QUOTED_USAGE`]),
/// at any depth, has the value `null` — or there is none. Exact for JSON: the bytes `"key"`
/// followed by `:` can only be a member's name (inside a string every quote is escaped), and an
/// occurrence followed by anything else is a string value.
pub fn every_member_null(json: &[u8], quoted: &Finder<'_>) -> bool {
    let len = quoted.needle().len();
    for at in quoted.find_iter(json) {
        let i = skip_ws(json, at + len);
        if json.get(i) != Some(&b':') {
            continue;
        }
        let v = skip_ws(json, i + 1);
        if !json[v..].starts_with(b"null") {
            return false;
        }
    }
    true
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while matches!(json.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// The index just past the last non-whitespace byte before `end`.
fn skip_ws_back(json: &[u8], mut end: usize) -> usize {
    while end > 0 && matches!(json[end - 1], b' ' | b'\n' | b'\r' | b'\t') {
        end -= 1;
    }
    end
}

/// The index of the quote that opens the string whose closing quote is at `close`. Inside a
/// string a quote is always escaped: one preceded by an odd number of backslashes is part of
/// the string, one preceded by an even number (none included) opens it.
fn string_start(json: &[u8], close: usize) -> Option<usize> {
    let mut i = close;
    loop {
        i = memchr::memrchr(b'"', &json[..i])?;
        let backslashes = json[..i].iter().rev().take_while(|b| **b == b'\\').count();
        if backslashes % 2 == 0 {
            return Some(i);
        }
    }
}

/// The index of the first byte of the value that ends just before `end`.
fn value_start(json: &[u8], end: usize) -> Option<usize> {
    let last = end.checked_sub(1)?;
    match json[last] {
        b'"' => string_start(json, last),
        close @ (b'}' | b']') => {
            // Inside a well-formed value, brackets of its own kind balance whatever else is
            // nested in it: only strings and this pair need finding, and `memrchr3` finds them
            // many bytes at a time.
            let open = if close == b'}' { b'{' } else { b'[' };
            let mut depth = 0usize;
            let mut i = end;
            loop {
                let at = memchr::memrchr3(b'"', open, close, &json[..i])?;
                match json[at] {
                    b'"' => {
                        i = string_start(json, at)?;
                        continue;
                    }
                    b if b == close => depth += 1,
                    _ => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(at);
                        }
                    }
                }
                i = at;
            }
        }
        // A number, `true`, `false` or `null`: back to the delimiter before it.
        _ => {
            let len = json[..end]
                .iter()
                .rev()
                .position(|b| matches!(b, b',' | b':' | b'[' | b'{' | b' ' | b'\n' | b'\r' | b'\t'))
                .unwrap_or(end);
            (len > 0).then(|| end - len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::member;

    #[test]
    fn finds_a_top_level_member_after_nested_values_and_tricky_strings() {
        let json = br#"{"id":"x","choices":[{"message":{"content":"say \"usage\": {\"a\":1} } ]","usage":{"fake":1}}}],
            "n": -1.5e3, "ok": true, "usage" : {"prompt_tokens":3,"completion_tokens":4} }"#;
        assert_eq!(
            member(json, b"usage"),
            Some(&br#"{"prompt_tokens":3,"completion_tokens":4}"#[..])
        );
        assert_eq!(member(json, b"n"), Some(&b"-1.5e3"[..]));
        assert_eq!(member(json, b"ok"), Some(&b"true"[..]));
        assert_eq!(member(json, b"id"), Some(&br#""x""#[..]));
    }

    #[test]
    fn null_members_are_told_apart_from_present_ones_at_any_depth() {
        use super::every_member_null;
        let usage = &super::QUOTED_USAGE;
        assert!(every_member_null(br#"{"id":"x","usage":null}"#, usage));
        assert!(every_member_null(br#"{"id":"x"}"#, usage));
        // A string value "usage" is not a member.
        assert!(every_member_null(
            br#"{"reason":"usage","usage" : null}"#,
            usage
        ));
        // Escaped inside a string, it is neither.
        assert!(every_member_null(
            br#"{"c":"\"usage\": 5","usage":null}"#,
            usage
        ));
        assert!(!every_member_null(
            br#"{"usage":{"prompt_tokens":1}}"#,
            usage
        ));
        assert!(!every_member_null(
            br#"{"a":{"usage":null},"usage":{"x":1}}"#,
            usage
        ));
    }

    #[test]
    fn a_member_only_nested_or_absent_is_not_found() {
        assert_eq!(member(br#"{"a":{"usage":1}}"#, b"usage"), None);
        assert_eq!(member(br#"{"a":"\"usage\":1"}"#, b"usage"), None);
        assert_eq!(member(br#"{}"#, b"usage"), None);
        assert_eq!(member(br#"[{"usage":1}]"#, b"usage"), None);
    }

    #[test]
    fn truncated_or_malformed_input_is_not_found_rather_than_misread() {
        assert_eq!(member(br#"{"a":"unterminated"#, b"usage"), None);
        assert_eq!(member(br#"{"a":[1,2"#, b"usage"), None);
        assert_eq!(member(br#"{"usage": 2 "a": 1}"#, b"usage"), None);
        assert_eq!(member(br#"{"usage": 2, "a" 1}"#, b"usage"), None);
        assert_eq!(member(br#"usage": 2}"#, b"usage"), None);
        assert_eq!(member(b"", b"usage"), None);
    }

    /// A small deterministic generator (xorshift), so that the cases are the same every run.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        /// Strings made to trip a scan: quotes, backslashes (also right before a quote), a
        /// brace, the wanted name itself, and non-ASCII text.
        fn string(&mut self) -> String {
            const PARTS: [&str; 9] = ["a", "\"", "\\", "\\\"", "}", "]", "usage", "é", "\":1,"];
            (0..self.below(5))
                .map(|_| PARTS[self.below(PARTS.len() as u64) as usize])
                .collect()
        }

        fn value(&mut self, depth: u32) -> serde_json::Value {
            use serde_json::Value;
            match self.below(if depth == 0 { 4 } else { 6 }) {
                0 => Value::Null,
                1 => Value::from(self.below(1000) as i64 - 500),
                2 => Value::from(self.string()),
                3 => Value::from(self.below(2) == 0),
                4 => Value::Array((0..self.below(4)).map(|_| self.value(depth - 1)).collect()),
                _ => Value::Object(
                    (0..self.below(4))
                        .map(|_| (self.string(), self.value(depth - 1)))
                        .collect(),
                ),
            }
        }
    }

    #[test]
    fn every_top_level_member_is_found_as_a_full_parse_reads_it() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for case in 0..2_000 {
            let mut object = serde_json::Map::new();
            for _ in 0..g.below(6) {
                let value = g.value(3);
                object.insert(g.string(), value);
            }
            if g.below(2) == 0 {
                object.insert("usage".into(), g.value(2));
            }
            let object = serde_json::Value::Object(object);
            let text = if case % 2 == 0 {
                serde_json::to_vec(&object).unwrap()
            } else {
                serde_json::to_vec_pretty(&object).unwrap()
            };
            for (name, want) in object.as_object().unwrap() {
                // Names with escapes are left to the full parse.
                let raw = serde_json::to_string(name).unwrap();
                let raw = &raw.as_bytes()[1..raw.len() - 1];
                let found = member(&text, raw).map(|v| serde_json::from_slice(v).unwrap());
                if raw == name.as_bytes() {
                    assert_eq!(
                        found.as_ref(),
                        Some(want),
                        "{name:?} in {}",
                        String::from_utf8_lossy(&text)
                    );
                }
            }
            // Cut short or with a byte changed, it is not JSON any more: whatever is found or
            // not, the scan ends without a panic.
            let mut broken = text.clone();
            let at = g.below(broken.len() as u64) as usize;
            broken[at] = b"\"\\{}[],: x"[g.below(10) as usize];
            let _ = member(&broken, b"usage");
            let _ = member(&text[..at], b"usage");
            if !object.as_object().unwrap().contains_key("usage") {
                assert_eq!(
                    member(&text, b"usage"),
                    None,
                    "{}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }
}
