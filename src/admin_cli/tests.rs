use clap::Parser;
use serde_json::json;

use super::*;
use crate::cli::{Cli, Command};

fn parse(args: &[&str]) -> AdminCommand {
    let cli = Cli::try_parse_from(std::iter::once("modelgate").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    match cli.command {
        Command::Admin(c) => c,
        other => panic!("expected an admin command, got {other:?}"),
    }
}

#[test]
fn global_options_parse_before_or_after_the_subcommand() {
    for args in [
        &[
            "keys",
            "--output",
            "json",
            "--admin-url",
            "http://cp:9",
            "list",
        ][..],
        &[
            "keys",
            "list",
            "--output",
            "json",
            "--admin-url",
            "http://cp:9",
        ][..],
    ] {
        let AdminCommand::Keys(r) = parse(args) else {
            panic!("expected keys")
        };
        assert_eq!(r.options.output, OutputFormat::Json, "{args:?}");
        assert_eq!(r.options.admin_url, "http://cp:9", "{args:?}");
        assert!(matches!(
            r.command,
            keys::KeysCommand::List(ListArgs { limit: None })
        ));
    }
}

#[test]
fn keys_create_takes_repeated_allowed_models_and_an_expiry() {
    let AdminCommand::Keys(r) = parse(&[
        "keys",
        "create",
        "--team-id",
        "t1",
        "--name",
        "app",
        "--environment",
        "prod",
        "--allowed-model",
        "smart",
        "--allowed-model",
        "fast",
        "--expires-at",
        "1700000000",
    ]) else {
        panic!("expected keys")
    };
    let keys::KeysCommand::Create {
        team_id,
        allowed_models,
        expires_at,
        environment,
        ..
    } = r.command
    else {
        panic!("expected create")
    };
    assert_eq!(team_id, "t1");
    assert_eq!(environment.as_deref(), Some("prod"));
    assert_eq!(allowed_models, ["smart", "fast"]);
    assert_eq!(expires_at, Some(1_700_000_000));
}

#[test]
fn routes_need_at_least_one_well_formed_deployment() {
    assert!(Cli::try_parse_from(["modelgate", "routes", "create", "--alias", "a"]).is_err());
    assert!(Cli::try_parse_from([
        "modelgate",
        "routes",
        "create",
        "--alias",
        "a",
        "--deployment",
        "no-model"
    ])
    .is_err());
    let AdminCommand::Routes(r) = parse(&[
        "routes",
        "create",
        "--alias",
        "a",
        "--deployment",
        "p1:m1",
        "--deployment",
        "p2:m2:3",
    ]) else {
        panic!("expected routes")
    };
    let routes::RoutesCommand::Create { deployments, .. } = r.command else {
        panic!("expected create")
    };
    assert_eq!(deployments.len(), 2);
    assert_eq!(deployments[1].weight, Some(3));
}

#[test]
fn list_limit_must_be_positive() {
    assert!(Cli::try_parse_from(["modelgate", "teams", "list", "--limit", "0"]).is_err());
    let AdminCommand::Audit(r) = parse(&[
        "audit",
        "list",
        "--resource-type",
        "key",
        "--resource-id",
        "k1",
        "--limit",
        "5",
    ]) else {
        panic!("expected audit")
    };
    let audit::AuditCommand::List {
        resource_type,
        resource_id,
        list,
    } = r.command;
    assert_eq!(resource_type.as_deref(), Some("key"));
    assert_eq!(resource_id.as_deref(), Some("k1"));
    assert_eq!(list.limit, Some(5));
}

#[test]
fn a_new_key_in_a_table_shows_its_secret_once_with_a_store_it_now_line() {
    let key = json!({
        "id": "k1", "name": "app", "team_id": "t1", "prefix": "mg-abc", "environment": "prod",
        "allowed_models": ["smart"], "revoked_at": null, "expires_at": null,
        "created_at": "2026-01-01T00:00:00Z", "key_secret": "mg-abc-SECRET"
    });
    let reply = Reply::WithSecret {
        value: key.clone(),
        columns: &[Column {
            header: "ID",
            cell: |v| table::field(v, "id"),
        }],
    };
    let printed = reply.render(OutputFormat::Table);
    assert_eq!(
        printed.stdout,
        "ID  k1\n\nkey_secret: mg-abc-SECRET\n\
         Store this key secret now: it is shown once and cannot be retrieved again.\n"
    );
    assert_eq!(printed.notice, None);
    assert_eq!(printed.stdout.matches("mg-abc-SECRET").count(), 1);

    let printed = reply.render(OutputFormat::Json);
    let parsed: Value = serde_json::from_str(&printed.stdout).unwrap();
    assert_eq!(parsed, key);
    assert!(printed.notice.unwrap().contains("shown once"));
}

#[test]
fn tables_of_keys_never_show_a_secret() {
    let key = json!({"id": "k1", "name": "app", "key_secret": "mg-abc-SECRET"});
    for columns in [keys::LIST_COLUMNS, keys::DETAIL_COLUMNS] {
        for reply in [
            Reply::One {
                value: key.clone(),
                columns,
            },
            Reply::Many {
                rows: vec![key.clone()],
                columns,
            },
        ] {
            let printed = reply.render(OutputFormat::Table);
            assert!(printed.stdout.contains("app"), "{}", printed.stdout);
            assert!(!printed.stdout.contains("SECRET"), "{}", printed.stdout);
        }
    }
}

#[test]
fn json_lists_print_one_array_of_every_row() {
    let reply = Reply::Many {
        rows: vec![json!({"id": 1}), json!({"id": 2})],
        columns: &[],
    };
    let printed = reply.render(OutputFormat::Json);
    let parsed: Value = serde_json::from_str(&printed.stdout).unwrap();
    assert_eq!(parsed, json!([{"id": 1}, {"id": 2}]));
}

#[test]
fn models_import_takes_a_file_an_optional_format_and_dry_run() {
    let AdminCommand::Models(r) = parse(&["models", "import", "prices.csv", "--dry-run"]) else {
        panic!("expected models")
    };
    let models::ModelsCommand::Import {
        file,
        format,
        dry_run,
    } = r.command
    else {
        panic!("expected import")
    };
    assert_eq!(file, std::path::PathBuf::from("prices.csv"));
    assert_eq!(format, None);
    assert!(dry_run);

    let AdminCommand::Models(r) = parse(&["models", "import", "x", "--format", "litellm"]) else {
        panic!("expected models")
    };
    let models::ModelsCommand::Import {
        format, dry_run, ..
    } = r.command
    else {
        panic!("expected import")
    };
    assert_eq!(format, Some(models::ImportFormat::Litellm));
    assert!(!dry_run);
}

#[test]
fn an_import_diff_prints_a_summary_and_one_line_per_row() {
    let entry = |input: i64| {
        json!({"model": "m", "provider": "openai", "family": "chat", "input_micros_per_mtok": input,
               "output_micros_per_mtok": 10, "cached_input_micros_per_mtok": 0,
               "reasoning_micros_per_mtok": 0, "per_image_micros": 0, "image_prices": {},
               "per_second_micros": 0, "context_window": 0, "max_output_tokens": 0,
               "status": "active"})
    };
    let mut added = entry(5);
    added["model"] = json!("new");
    added["price_version"] = json!(3);
    let diff = json!({
        "dry_run": false,
        "added": [added],
        "changed": [{"model": "m", "provider": "openai", "before": entry(1), "after": entry(2),
                     "before_version": 1, "after_version": 4}],
        "unchanged": 2,
        "skipped": [{"model": "bad\nrow", "reason": "too precise"}],
    });
    let reply = Reply::Text {
        text: models::render_diff(&diff),
        value: diff.clone(),
    };
    assert_eq!(
        reply.render(OutputFormat::Table).stdout,
        "1 added, 1 changed, 2 unchanged, 1 skipped\n\
         ACTION   PROVIDER  MODEL    VERSION  DETAIL\n\
         added    openai    new      3        input_micros_per_mtok=5 output_micros_per_mtok=10\n\
         changed  openai    m        1 -> 4   input_micros_per_mtok: 1 -> 2\n\
         skipped  -         bad row  -        too precise\n"
    );
    let printed: Value = serde_json::from_str(&reply.render(OutputFormat::Json).stdout).unwrap();
    assert_eq!(printed, diff);
}

#[test]
fn usage_quarantine_parses_with_a_limit() {
    let AdminCommand::Usage(r) = parse(&["usage", "quarantine", "--limit", "3"]) else {
        panic!("expected usage")
    };
    let usage::UsageCommand::Quarantine { list } = r.command;
    assert_eq!(list.limit, Some(3));
}

#[test]
fn field_is_repeatable_and_global() {
    for args in [
        &["keys", "--field", "id", "--field", "name", "list"][..],
        &["keys", "list", "--field", "id", "--field", "name"][..],
    ] {
        let AdminCommand::Keys(r) = parse(args) else {
            panic!("expected keys")
        };
        assert_eq!(r.options.fields, ["id", "name"], "{args:?}");
    }
    let AdminCommand::Teams(r) = parse(&["teams", "list"]) else {
        panic!("expected teams")
    };
    assert!(r.options.fields.is_empty());
}

fn fields(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn fields_print_tab_separated_in_the_order_given_one_line_per_row() {
    let reply = Reply::Many {
        rows: vec![
            json!({"id": "t1", "name": "alpha", "n": 3, "on": true, "tags": ["a"], "meta": {"k": 1}, "gone": null}),
            json!({"id": "t2", "name": "beta"}),
        ],
        columns: &[],
    };
    let printed = reply
        .render_fields(&fields(&["name", "id", "n", "on", "tags", "meta", "gone"]))
        .unwrap();
    assert_eq!(
        printed.stdout,
        "alpha\tt1\t3\ttrue\t[\"a\"]\t{\"k\":1}\t\nbeta\tt2\t\t\t\t\t\n"
    );
    assert_eq!(printed.notice, None);
}

#[test]
fn a_field_string_with_a_control_character_prints_as_json_so_the_row_stays_one_line() {
    let reply = Reply::One {
        value: json!({"name": "two\nlines\tand \u{1b}[31m", "id": "x"}),
        columns: &[],
    };
    let printed = reply.render_fields(&fields(&["name", "id"])).unwrap();
    assert_eq!(printed.stdout, "\"two\\nlines\\tand \\u001b[31m\"\tx\n");
}

#[test]
fn a_field_no_row_has_is_an_error_naming_the_fields_that_exist() {
    let reply = Reply::Many {
        rows: vec![
            json!({"id": "t1", "name": "a"}),
            json!({"id": "t2", "created_at": "x"}),
        ],
        columns: &[],
    };
    let e = reply
        .render_fields(&fields(&["id", "nmae"]))
        .unwrap_err()
        .render();
    assert!(e.starts_with("error: --field nmae:"), "{e}");
    assert!(e.contains("(its fields: created_at, id, name)"), "{e}");
    // A field some rows lack is not an error: those rows print it empty.
    let printed = reply.render_fields(&fields(&["name"])).unwrap();
    assert_eq!(printed.stdout, "a\n\n");
    // An empty list has no row to check a name against and prints nothing.
    let empty = Reply::Many {
        rows: vec![],
        columns: &[],
    };
    assert_eq!(empty.render_fields(&fields(&["nmae"])).unwrap().stdout, "");
    // Text that is not an object has no fields.
    let csv = Reply::Text {
        value: Value::String("a,b\n".into()),
        text: "a,b\n".into(),
    };
    let e = csv.render_fields(&fields(&["id"])).unwrap_err().to_string();
    assert!(e.contains("none: the result is not an object"), "{e}");
}

#[test]
fn a_new_keys_fields_print_its_secret_with_the_store_it_now_notice_on_stderr() {
    let reply = Reply::WithSecret {
        value: json!({"id": "k1", "name": "app", "key_secret": "mg-abc-SECRET"}),
        columns: &[],
    };
    let printed = reply.render_fields(&fields(&["id", "key_secret"])).unwrap();
    assert_eq!(printed.stdout, "k1\tmg-abc-SECRET\n");
    let notice = printed.notice.unwrap();
    assert!(notice.contains("shown once"), "{notice}");
    assert!(!notice.contains("SECRET"), "{notice}");
    // Not asking for the secret loses it; stderr says so.
    let printed = reply.render_fields(&fields(&["id"])).unwrap();
    assert_eq!(printed.stdout, "k1\n");
    assert!(
        printed
            .notice
            .unwrap()
            .contains("cannot be retrieved again"),
        "the lost secret is not reported"
    );
}

#[test]
fn fields_of_a_text_reply_read_its_json_value() {
    let reply = Reply::Text {
        value: json!({"deleted": "b1"}),
        text: "deleted budget b1\n".into(),
    };
    assert_eq!(
        reply.render_fields(&fields(&["deleted"])).unwrap().stdout,
        "b1\n"
    );
}
