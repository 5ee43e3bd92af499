use serde_json::json;

use super::*;

#[test]
fn grid_aligns_columns_to_the_widest_cell_without_trailing_spaces() {
    let text = grid(
        &["ID", "NAME", "CREATED"],
        &[
            vec!["1".into(), "payments".into(), "today".into()],
            vec!["22".into(), "ml".into(), "-".into()],
        ],
    );
    assert_eq!(
        text,
        "ID  NAME      CREATED\n\
         1   payments  today\n\
         22  ml        -\n"
    );
    assert!(text.lines().all(|l| l == l.trim_end()));
}

#[test]
fn grid_counts_characters_not_bytes() {
    let text = grid(
        &["A", "B"],
        &[
            vec!["…12".into(), "x".into()],
            vec!["abcd".into(), "y".into()],
        ],
    );
    assert_eq!(text, "A     B\n…12   x\nabcd  y\n");
}

#[test]
fn an_empty_list_prints_only_the_header() {
    let columns = [Column {
        header: "ID",
        cell: |v| field(v, "id"),
    }];
    assert_eq!(rows(&columns, &[]), "ID\n");
}

#[test]
fn cells_cannot_break_the_layout_or_reach_the_terminal_as_escapes() {
    let columns = [
        Column {
            header: "NAME",
            cell: |v| field(v, "name"),
        },
        Column {
            header: "N",
            cell: |v| field(v, "n"),
        },
    ];
    let text = rows(&columns, &[json!({"name": "a\nb\tc\u{1b}[31m", "n": 1})]);
    assert_eq!(text, "NAME        N\na b c [31m  1\n");
}

#[test]
fn fields_render_by_json_type() {
    let v = json!({
        "s": "text", "empty": "", "n": 42, "b": true, "null": null,
        "list": ["a", "b"], "none": [], "obj": {"k": 1}
    });
    let check = |name: &str, want: &str| assert_eq!(field(&v, name), want, "{name}");
    check("s", "text");
    check("empty", "-");
    check("n", "42");
    check("b", "true");
    check("null", "-");
    check("missing", "-");
    check("list", "a, b");
    check("none", "-");
    check("obj", "{\"k\":1}");
    assert_eq!(first(&v, &["missing", "null", "n"]), "42");
    assert_eq!(first(&v, &["missing"]), "-");
}

#[test]
fn times_show_in_utc_to_the_second() {
    let v = json!({
        "utc": "2026-03-01T09:05:07.123456Z",
        "offset": "2026-03-01T10:05:07+01:00",
        "odd": "yesterday",
        "none": null
    });
    assert_eq!(time(&v, "utc"), "2026-03-01 09:05:07Z");
    assert_eq!(time(&v, "offset"), "2026-03-01 09:05:07Z");
    assert_eq!(time(&v, "odd"), "yesterday");
    assert_eq!(time(&v, "none"), "-");
}

#[test]
fn a_record_prints_one_aligned_field_per_line() {
    let columns = [
        Column {
            header: "ID",
            cell: |v| field(v, "id"),
        },
        Column {
            header: "NAME",
            cell: |v| field(v, "name"),
        },
        Column {
            header: "NOTE",
            cell: |v| field(v, "note"),
        },
    ];
    assert_eq!(
        record(&columns, &json!({"id": "t1", "name": "payments"})),
        "ID    t1\nNAME  payments\nNOTE  -\n"
    );
}
