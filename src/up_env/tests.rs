use super::*;

#[test]
fn plain_values_stay_as_they_are_and_others_are_single_quoted() {
    assert_eq!(
        shell_quote("http://127.0.0.1:8080/v1"),
        "http://127.0.0.1:8080/v1"
    );
    assert_eq!(shell_quote("mg-abc_DEF.123"), "mg-abc_DEF.123");
    assert_eq!(shell_quote(""), "''");
    assert_eq!(shell_quote("a b"), "'a b'");
    assert_eq!(shell_quote("it's"), r"'it'\''s'");
    assert_eq!(shell_quote("~/x"), "'~/x'");
}

/// What bash makes of the `export` lines: each variable's value, read back NUL-separated.
fn sourced(vars: &[(&str, String)]) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("mg-up-env-{}", modelgate_shared::new_id()));
    secret_fs::create_private_dir_all(&dir).unwrap();
    let file = dir.join(ENV_FILE);
    write_env_file(&file, &export_lines(vars)).unwrap();
    let names: Vec<String> = vars.iter().map(|(n, _)| format!("\"${n}\"")).collect();
    let script = format!(
        "source {}; printf '%s\\0' {}",
        shell_quote(&file.display().to_string()),
        names.join(" ")
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .env_clear()
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut values: Vec<String> = text.split('\0').map(str::to_owned).collect();
    assert_eq!(values.pop().as_deref(), Some(""), "{text:?}");
    values
}

#[test]
fn sourcing_the_env_file_gives_back_every_value_unchanged() {
    let vars = [
        ("MODELGATE_BASE_URL", "http://127.0.0.1:8080/v1".to_owned()),
        ("A", "two words".to_owned()),
        ("B", "it's $HOME `id` \"q\" \\ ; & | * ? ~ #".to_owned()),
        ("C", String::new()),
        ("D", "line\nbreak".to_owned()),
    ];
    let want: Vec<String> = vars.iter().map(|(_, v)| v.clone()).collect();
    assert_eq!(sourced(&vars), want);
}

#[cfg(unix)]
#[test]
fn the_env_file_is_private_and_replaced_whole() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("mg-up-env-{}", modelgate_shared::new_id()));
    secret_fs::create_private_dir_all(&dir).unwrap();
    let file = dir.join(ENV_FILE);
    write_env_file(&file, "export A=first-and-longer\n").unwrap();
    write_env_file(&file, "export A=second\n").unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.ends_with("export A=second\n"), "{text}");
    assert!(!text.contains("first"), "{text}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_banner_shows_the_exports_the_env_file_and_one_line_per_route() {
    let exports = export_lines(&[
        ("MODELGATE_BASE_URL", "http://127.0.0.1:8080/v1".to_owned()),
        ("MODELGATE_API_KEY", "mg-key".to_owned()),
    ]);
    let routes = [
        DemoRoute {
            provider: "mock",
            alias: "mock-small",
            model: "mock-small",
        },
        DemoRoute {
            provider: "anthropic",
            alias: "claude-haiku-4-5",
            model: "claude-haiku-4-5",
        },
    ];
    let text = Banner {
        exports: &exports,
        env_file: Path::new("/data dir/modelgate.env"),
        routes: &routes,
        base_url: "http://127.0.0.1:8080/v1",
        api_key: "mg-key",
        model: "mock-small",
    }
    .render();
    assert!(text.contains(&exports), "{text}");
    assert!(
        text.contains("\nsource '/data dir/modelgate.env'\n"),
        "{text}"
    );
    assert!(
        text.contains("\n  mock: alias mock-small -> mock-small\n"),
        "{text}"
    );
    assert!(
        text.contains("\n  anthropic: alias claude-haiku-4-5 -> claude-haiku-4-5\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "curl -s http://127.0.0.1:8080/v1/chat/completions -H 'Authorization: Bearer mg-key'"
        ),
        "{text}"
    );
}
