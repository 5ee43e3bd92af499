//! Every code block of the README and the guides in `docs/` that is meant to be run is run,
//! against a real `modelgate up`, as a reader would paste it; a block that fails, or prints
//! something other than the output the text shows, fails the suite.
//!
//! The rules (also in `docs/README.md`, for the people who write the guides):
//! - Each Markdown file gets its own fresh `modelgate up` (embedded SQLite, the mock provider).
//! - ` ```sh ` blocks of one file run in order in one `bash` (`set -euo pipefail`), so a variable
//!   set in one block is seen by the next. ` ```python ` blocks each run on their own, as pasted.
//! - Both see only what `up` prints (its `MODELGATE_…` variables) plus `PATH` (the `modelgate`
//!   under test, a virtualenv's `python3` with the OpenAI, Anthropic and Google GenAI SDKs, and
//!   the system's tools such as `curl`), `HOME` and `TMPDIR`. The working directory is a scratch
//!   directory holding a copy of `docs/examples/`.
//! - ` ```sh no-run ` and ` ```python no-run ` are shown but not run (the text says what they
//!   need: a cluster, a real provider key, several machines).
//! - ` ```output ` right after a run block is what that block must print: line by line, in
//!   order; `…` inside a line matches any text, a line of only `…` any number of lines.
//! - `bash`, `shell`, `console` and `py` are refused as info strings: a block is either one of
//!   the above or plainly not meant to be run (`text`, `json`, `csv`, `yaml`, …).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};

use crate::sdk::modelgate_up;
use crate::support::temp_dir;

/// The documents whose blocks are run. A Markdown file under `docs/` (outside the generated
/// `docs/reference/`) that is not listed here fails `every_guide_is_run`.
const DOCUMENTS: &[&str] = &[
    "README.md",
    "docs/README.md",
    "docs/applications.md",
    "docs/keys-and-teams.md",
    "docs/routing.md",
    "docs/limits-and-budgets.md",
    "docs/prices.md",
    "docs/usage-and-billing.md",
    "docs/fleet.md",
    "docs/rollouts.md",
    "docs/observability.md",
    "docs/upgrades.md",
    "docs/testing.md",
];

/// A hang guard, not a timing assertion: a block that waits on something forever fails here
/// instead of holding the suite until its own limit.
const GUARD: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Sh,
    Python,
}

#[derive(Debug)]
struct Block {
    lang: Lang,
    /// The line of the opening fence, for messages.
    line: usize,
    code: String,
    expected_output: Option<String>,
}

/// The runnable blocks of a Markdown text, each with the output the text shows for it.
fn runnable_blocks(markdown: &str) -> Result<Vec<Block>, String> {
    let mut blocks: Vec<Block> = Vec::new();
    // Whether the previous code block was a run block (an `output` block must follow one).
    let mut last_was_run = false;
    let mut current: Option<(String, usize, String)> = None;
    for (event, range) in Parser::new(markdown).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                let line = markdown[..range.start].lines().count() + 1;
                current = Some((info.to_string(), line, String::new()));
            }
            Event::Text(text) => {
                if let Some((_, _, code)) = current.as_mut() {
                    code.push_str(&text);
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                let Some((info, line, code)) = current.take() else {
                    continue;
                };
                let words: Vec<&str> = info.split_whitespace().collect();
                let no_run = words.get(1) == Some(&"no-run");
                match words.first().copied().unwrap_or("") {
                    "sh" | "python" if no_run => last_was_run = false,
                    "sh" | "python" => {
                        let lang = if words[0] == "sh" {
                            Lang::Sh
                        } else {
                            Lang::Python
                        };
                        blocks.push(Block {
                            lang,
                            line,
                            code,
                            expected_output: None,
                        });
                        last_was_run = true;
                    }
                    "output" => {
                        let Some(block) = blocks.last_mut().filter(|_| last_was_run) else {
                            return Err(format!(
                                "line {line}: an `output` block must follow a run block"
                            ));
                        };
                        block.expected_output = Some(code);
                        last_was_run = false;
                    }
                    lang @ ("bash" | "shell" | "console" | "py" | "python3" | "zsh") => {
                        return Err(format!(
                            "line {line}: `{lang}` blocks are neither run nor plainly inert: \
                             use `sh`, `python` (add `no-run` when it cannot run) or `text`"
                        ))
                    }
                    _ => last_was_run = false,
                }
            }
            _ => {}
        }
    }
    Ok(blocks)
}

/// Whether `actual` matches one line of a shown output, where `…` matches any text.
fn line_matches(pattern: &str, actual: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == actual;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !actual.starts_with(first) || actual.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &actual[first.len()..actual.len() - last.len()];
    if !actual.ends_with(last) {
        return false;
    }
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Whether the lines of `actual` match the lines of a shown output (a line of only `…` matches
/// any number of lines).
fn output_matches(expected: &[&str], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((&"…", rest)) => {
            (0..=actual.len()).any(|skip| output_matches(rest, &actual[skip..]))
        }
        Some((pattern, rest)) => match actual.split_first() {
            Some((line, actual_rest)) => {
                line_matches(pattern, line) && output_matches(rest, actual_rest)
            }
            None => false,
        },
    }
}

/// Lines without trailing whitespace, and without trailing empty lines.
fn lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    while lines.last() == Some(&"") {
        lines.pop();
    }
    lines
}

fn check_output(doc: &str, block: &Block, stdout: &str) -> Result<(), String> {
    let Some(expected) = &block.expected_output else {
        return Ok(());
    };
    if output_matches(&lines(expected), &lines(stdout)) {
        return Ok(());
    }
    Err(format!(
        "{doc}:{}: the block printed\n---\n{stdout}---\nbut the text shows\n---\n{expected}---",
        block.line
    ))
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The SDK virtualenv's python (created on first use by `tests/sdk/venv.sh`).
fn sdk_python() -> PathBuf {
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("tests/sdk/venv.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("running tests/sdk/venv.sh");
    assert!(out.status.success(), "tests/sdk/venv.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A scratch working directory holding a copy of `docs/examples/`.
fn scratch_dir(doc: &str) -> PathBuf {
    let dir = temp_dir(&format!("snippets-{}", doc.replace(['/', '.'], "-")));
    let examples = repo_root().join("docs/examples");
    if examples.is_dir() {
        let to = dir.join("docs/examples");
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(&examples).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    dir
}

/// The environment a reader has: `up`'s variables, and a PATH with the binary under test and
/// the SDK virtualenv first.
fn reader_env(
    up_env: &std::collections::HashMap<String, String>,
    python: &Path,
    scratch: &Path,
) -> Vec<(String, String)> {
    let bin = Path::new(env!("CARGO_BIN_EXE_modelgate")).parent().unwrap();
    let venv_bin = python.parent().unwrap();
    let mut env: Vec<(String, String)> =
        up_env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    env.push((
        "PATH".into(),
        format!(
            "{}:{}:/usr/local/bin:/usr/bin:/bin",
            bin.display(),
            venv_bin.display()
        ),
    ));
    env.push(("HOME".into(), scratch.display().to_string()));
    env.push(("TMPDIR".into(), scratch.join("tmp").display().to_string()));
    env
}

struct Ran {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs a program to its end (a blocking call: run it off the async threads).
fn run(
    program: &Path,
    args: &[&str],
    stdin: Option<String>,
    env: &[(String, String)],
    cwd: &Path,
) -> Ran {
    use std::io::{Read, Write};
    let mut child = std::process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()));
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        if let Some(input) = stdin {
            let _ = pipe.write_all(input.as_bytes());
        }
    });
    let read_all = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = from.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + GUARD;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {args:?} still running after {GUARD:?}",
                program.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    writer.join().unwrap();
    Ran {
        success: status.success(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// The marker printed (to both streams) before each shell block, to split what the one `bash`
/// printed back into blocks.
const MARK: char = '\u{1e}';

/// Runs every runnable block of one document; the first failure is the error.
async fn run_document(doc: &str) -> Result<usize, String> {
    let text = std::fs::read_to_string(repo_root().join(doc)).map_err(|e| format!("{doc}: {e}"))?;
    let blocks = runnable_blocks(&text).map_err(|e| format!("{doc}: {e}"))?;
    if blocks.is_empty() {
        return Ok(0);
    }
    let up = tokio::task::spawn_blocking(modelgate_up).await.unwrap();
    let python = tokio::task::spawn_blocking(sdk_python).await.unwrap();
    let scratch = scratch_dir(doc);
    let env = reader_env(&up.env, &python, &scratch);

    for block in blocks.iter().filter(|b| b.lang == Lang::Python) {
        let file = scratch.join(format!("block-{}.py", block.line));
        std::fs::write(&file, &block.code).unwrap();
        let (python, env, scratch) = (python.clone(), env.clone(), scratch.clone());
        let ran = tokio::task::spawn_blocking(move || {
            run(&python, &[file.to_str().unwrap()], None, &env, &scratch)
        })
        .await
        .unwrap();
        if !ran.success {
            return Err(format!(
                "{doc}:{}: the Python block failed\n{}\n--- stderr ---\n{}",
                block.line, block.code, ran.stderr
            ));
        }
        check_output(doc, block, &ran.stdout)?;
    }

    let shell: Vec<&Block> = blocks.iter().filter(|b| b.lang == Lang::Sh).collect();
    if !shell.is_empty() {
        let mut script = String::from("set -euo pipefail\n");
        for (i, block) in shell.iter().enumerate() {
            script.push_str(&format!(
                "printf '\\n\\036{i}\\n'; printf '\\n\\036{i}\\n' >&2\n"
            ));
            script.push_str(&block.code);
            script.push('\n');
        }
        let (env, dir) = (env.clone(), scratch.clone());
        let ran = tokio::task::spawn_blocking(move || {
            run(Path::new("/bin/bash"), &["-s"], Some(script), &env, &dir)
        })
        .await
        .unwrap();
        let split = |printed: &str| -> Vec<String> {
            printed
                .split(MARK)
                .skip(1)
                .map(|part| {
                    // Drop the marker's index line and the newline printed before the next mark.
                    let body = part.split_once('\n').map_or("", |(_, b)| b);
                    body.strip_suffix('\n').unwrap_or(body).to_owned()
                })
                .collect()
        };
        let (outs, errs) = (split(&ran.stdout), split(&ran.stderr));
        let reached = outs.len();
        for (i, block) in shell.iter().enumerate().take(reached) {
            let failed_here = !ran.success && i + 1 == reached;
            if failed_here {
                return Err(format!(
                    "{doc}:{}: the shell block failed\n{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    block.line,
                    block.code,
                    outs[i],
                    errs.get(i).map_or("", String::as_str)
                ));
            }
            check_output(doc, block, &outs[i])?;
        }
        if reached < shell.len() {
            return Err(format!(
                "{doc}: bash stopped before the block at line {}\n--- stderr ---\n{}",
                shell[reached].line, ran.stderr
            ));
        }
    }
    drop(up);
    Ok(blocks.len())
}

async fn assert_document_runs(doc: &str) {
    match run_document(doc).await {
        Ok(n) => eprintln!("{doc}: {n} blocks ran"),
        Err(e) => panic!("{e}"),
    }
}

macro_rules! documents {
    ($($name:ident => $path:literal),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                assert_document_runs($path).await;
            }
        )*
        #[test]
        fn each_listed_document_has_its_test() {
            let tested = [$($path),*];
            assert_eq!(tested.as_slice(), DOCUMENTS);
        }
    };
}

documents! {
    the_readme_runs_as_written => "README.md",
    the_guide_index_runs_as_written => "docs/README.md",
    the_applications_guide_runs_as_written => "docs/applications.md",
    the_keys_and_teams_guide_runs_as_written => "docs/keys-and-teams.md",
    the_routing_guide_runs_as_written => "docs/routing.md",
    the_limits_and_budgets_guide_runs_as_written => "docs/limits-and-budgets.md",
    the_prices_guide_runs_as_written => "docs/prices.md",
    the_usage_and_billing_guide_runs_as_written => "docs/usage-and-billing.md",
    the_fleet_guide_runs_as_written => "docs/fleet.md",
    the_rollouts_guide_runs_as_written => "docs/rollouts.md",
    the_observability_guide_runs_as_written => "docs/observability.md",
    the_upgrades_guide_runs_as_written => "docs/upgrades.md",
    the_testing_guide_runs_as_written => "docs/testing.md",
}

#[test]
fn every_guide_is_run() {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(
                    path.strip_prefix(repo_root())
                        .unwrap()
                        .display()
                        .to_string(),
                );
            }
        }
    }
    let mut found = Vec::new();
    walk(&repo_root().join("docs"), &mut found);
    for doc in found {
        if doc.starts_with("docs/reference/") {
            // Generated from the code (src/reference.rs): nothing in it is meant to be run.
            let text = std::fs::read_to_string(repo_root().join(&doc)).unwrap();
            assert!(runnable_blocks(&text).unwrap().is_empty(), "{doc}");
            continue;
        }
        assert!(
            DOCUMENTS.contains(&doc.as_str()),
            "{doc} is not in DOCUMENTS (tests/e2e/snippets.rs): its blocks would never run"
        );
    }
}

#[test]
fn shown_output_matches_line_by_line_with_ellipses() {
    let expected = ["id  name", "…", "…  payments", "done"];
    assert!(output_matches(
        &expected,
        &["id  name", "x", "y", "0193  payments", "done"]
    ));
    assert!(output_matches(
        &expected,
        &["id  name", "0193  payments", "done"]
    ));
    assert!(!output_matches(
        &expected,
        &["id  name", "0193  payment", "done"]
    ));
    assert!(!output_matches(&expected, &["id  name", "0193  payments"]));
    assert!(line_matches("a…c…e", "abcde"));
    assert!(!line_matches("a…c…e", "abde"));
    assert!(!line_matches("ab…ba", "aba"));
}

#[test]
fn blocks_are_read_with_their_shown_output_and_inert_or_unknown_kinds_are_told_apart() {
    let md =
        "# t\n\n```sh\necho hi\n```\n\n```output\nhi\n```\n\n```sh no-run\nkubectl apply\n```\n\n\
              ```python\nprint(1)\n```\n\n```json\n{}\n```\n";
    let blocks = runnable_blocks(md).unwrap();
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].lang, Lang::Sh);
    assert_eq!(blocks[0].line, 3);
    assert_eq!(blocks[0].expected_output.as_deref(), Some("hi\n"));
    assert_eq!(blocks[1].lang, Lang::Python);
    assert!(blocks[1].expected_output.is_none());

    assert!(runnable_blocks("```bash\nls\n```\n").is_err());
    assert!(runnable_blocks("```sh no-run\nls\n```\n```output\nx\n```\n").is_err());
}
