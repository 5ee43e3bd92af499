//! What `modelgate up` hands to a shell: its variables as `export NAME=value` lines, printed in
//! its banner and written to `DATA_DIR/modelgate.env` (mode 0600) for `source`.

use std::borrow::Cow;
use std::path::Path;

use modelgate_control_plane::service::bootstrap::DemoRoute;
use modelgate_shared::secret_fs;

/// The env file's name in `up`'s data directory.
pub const ENV_FILE: &str = "modelgate.env";

/// `value` as one POSIX shell word: unchanged when every character is one no shell treats
/// specially, else in single quotes (a single quote inside written as `'\''`).
pub fn shell_quote(value: &str) -> Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(format!("'{}'", value.replace('\'', r"'\''")))
}

/// One `export NAME=value` line per variable, in order, each ending in a newline.
pub fn export_lines(vars: &[(&str, String)]) -> String {
    vars.iter()
        .map(|(name, value)| format!("export {name}={}\n", shell_quote(value)))
        .collect()
}

/// Replaces the env file at `path` with `exports` under a comment line: a new file, private
/// (0600) from its creation, renamed over the old one.
pub fn write_env_file(path: &Path, exports: &str) -> std::io::Result<()> {
    let text = format!(
        "# Written by `modelgate up` at each start; a restart issues a new key and admin token.\n\
         {exports}"
    );
    secret_fs::replace_secret_file(path, text.as_bytes())
}

/// What `up` prints once the data plane serves its config.
pub struct Banner<'a> {
    /// The `export` lines ([`export_lines`]).
    pub exports: &'a str,
    pub env_file: &'a Path,
    /// The registered providers' routes, one line each.
    pub routes: &'a [DemoRoute],
    pub base_url: &'a str,
    pub api_key: &'a str,
    /// The alias the curl example asks for.
    pub model: &'a str,
}

impl Banner<'_> {
    pub fn render(&self) -> String {
        let env_file = self.env_file.display().to_string();
        let routes: String = self
            .routes
            .iter()
            .map(|r| format!("  {}: alias {} -> {}\n", r.provider, r.alias, r.model))
            .collect();
        let url = format!("{}/chat/completions", self.base_url);
        let auth = format!("Authorization: Bearer {}", self.api_key);
        let body = format!(
            r#"{{"model":"{}","messages":[{{"role":"user","content":"Hello"}}]}}"#,
            self.model
        );
        format!(
            "ModelGate is up (control plane on embedded SQLite, one data plane).\n\n\
             {exports}\n\
             The same lines are in {env_file} (mode 0600); in another shell:\n\
             source {env_file_word}\n\n\
             Routes (provider: alias -> model):\n\
             {routes}\n\
             Try it:\n\
             curl -s {url} -H {auth} -H 'Content-Type: application/json' \\\n  -d {body}\n\n\
             The key and admin token work until the next start, which issues new ones and \
             rewrites the file. Ctrl-C stops.\n",
            exports = self.exports,
            env_file_word = shell_quote(&env_file),
            url = shell_quote(&url),
            auth = shell_quote(&auth),
            body = shell_quote(&body),
        )
    }
}

#[cfg(test)]
mod tests;
