//! Finding one top-level member of a JSON object without parsing the rest: the gateway reads
//! `usage` from answers it otherwise passes through byte for byte, and a full parse of every
//! answer (strings validated and skipped one by one) cost more than anything else it did with
//! the body. The scan walks the object's members, jumping over strings with `memchr` and over
//! nested values by bracket depth; the one value wanted is then parsed on its own.
//!
//! The scan trusts the input to be JSON (it is an upstream's answer, forwarded as is either way).
//! When it cannot find the member — absent, a key written with escapes, or a body that is not
//! an object — callers fall back to a full parse, so the answer never depends on the shortcut.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// The raw bytes of the value of `key` among the members of the top-level object in `json`.
pub fn member<'j>(json: &'j [u8], key: &[u8]) -> Option<&'j [u8]> {
    let mut i = skip_ws(json, 0);
    if json.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(json, i);
        match json.get(i)? {
            b'}' => return None,
            b'"' => {}
            _ => return None,
        }
        let name_end = string_end(json, i)?;
        let name = &json[i + 1..name_end - 1];
        i = skip_ws(json, name_end);
        if json.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(json, i + 1);
        let end = value_end(json, start)?;
        if name == key {
            return Some(&json[start..end]);
        }
        i = skip_ws(json, end);
        match json.get(i)? {
            b',' => i += 1,
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

/// The index just past the string that opens at `start` (a `"`).
fn string_end(json: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', json.get(i..)?)?;
        if json[i] == b'\\' {
            i += 2;
        } else {
            return Some(i + 1);
        }
    }
}

/// The index just past the value that starts at `start`.
fn value_end(json: &[u8], start: usize) -> Option<usize> {
    match json.get(start)? {
        b'"' => string_end(json, start),
        open @ (b'{' | b'[') => {
            // Inside a well-formed value, brackets of its own kind balance whatever else is
            // nested in it: only strings and this pair need finding, and `memchr3` finds them
            // many bytes at a time.
            let (open, close) = (*open, if *open == b'{' { b'}' } else { b']' });
            let mut depth = 0usize;
            let mut i = start;
            loop {
                i += memchr::memchr3(b'"', open, close, json.get(i..)?)?;
                match json[i] {
                    b'"' => {
                        i = string_end(json, i)?;
                        continue;
                    }
                    b if b == open => depth += 1,
                    _ => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                }
                i += 1;
            }
        }
        // A number, `true`, `false` or `null`: up to the next delimiter.
        _ => {
            let rest = &json[start..];
            let len = rest
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                .unwrap_or(rest.len());
            (len > 0).then_some(start + len)
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
        assert_eq!(member(br#"{"a" 1, "usage": 2}"#, b"usage"), None);
        assert_eq!(member(b"", b"usage"), None);
    }
}
