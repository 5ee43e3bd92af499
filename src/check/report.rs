//! What `modelgate check` found: one [`Step`] per request or action of the plan, printed as a
//! table for people or as JSON for CI, and the exit code (non-zero when any step failed).

use serde_json::{json, Value};

use crate::admin_cli::table;

/// A step's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Not run: nothing to run it with (e.g. no model of that family the key may use), or a
    /// step it depends on failed. Never counts as a pass of what it would have proved.
    Skip,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Skip => "skip",
        }
    }
}

/// The request log's row of one request, as read back (`GET /admin/v1/requests/{id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    pub key_id: String,
    pub team_id: String,
    pub application: String,
    pub endpoint: String,
    pub model: String,
    pub served_model: String,
    pub deployment_id: String,
    pub status: i64,
    pub error_class: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub units: i64,
    pub cost_micros: i64,
    pub cost_flag: String,
    pub attempts: usize,
    pub fallback_used: bool,
}

impl Ledger {
    /// Reads the fields the check judges from a request-log row.
    pub fn from_row(row: &Value) -> Ledger {
        let text = |name: &str| {
            row.get(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let int = |name: &str| row.get(name).and_then(Value::as_i64).unwrap_or(0);
        Ledger {
            key_id: text("key_id"),
            team_id: text("team_id"),
            application: text("application"),
            endpoint: text("endpoint"),
            model: text("requested_model"),
            served_model: text("served_model"),
            deployment_id: text("deployment_id"),
            status: int("status"),
            error_class: row
                .get("error_class")
                .and_then(Value::as_str)
                .map(str::to_owned),
            input_tokens: int("input_tokens"),
            output_tokens: int("output_tokens"),
            // What a request is metered in besides tokens: images, media time, characters.
            units: int("images") + int("media_ms") + int("characters"),
            cost_micros: int("cost_micros"),
            cost_flag: text("cost_flag"),
            attempts: row
                .get("attempts")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
            fallback_used: row
                .get("fallback_used")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "key_id": self.key_id,
            "team_id": self.team_id,
            "application": self.application,
            "endpoint": self.endpoint,
            "model": self.model,
            "served_model": self.served_model,
            "deployment_id": self.deployment_id,
            "status": self.status,
            "error_class": self.error_class,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_micros": self.cost_micros,
            "cost_flag": self.cost_flag,
            "attempts": self.attempts,
            "fallback_used": self.fallback_used,
        })
    }
}

/// One step of the plan and what it found.
#[derive(Debug, Clone)]
pub struct Step {
    /// e.g. `family chat`, `invalid request`, `budget`.
    pub name: String,
    pub outcome: Outcome,
    /// The HTTP status the gateway answered (0: no request, or none answered).
    pub status: u16,
    /// The `x-request-id` the answer carried.
    pub request_id: Option<String>,
    /// The request's ledger row, once read back.
    pub ledger: Option<Ledger>,
    /// Why it failed or was skipped, or what passed.
    pub detail: String,
}

impl Step {
    pub fn new(name: impl Into<String>) -> Step {
        Step {
            name: name.into(),
            outcome: Outcome::Pass,
            status: 0,
            request_id: None,
            ledger: None,
            detail: String::new(),
        }
    }

    pub fn fail(mut self, detail: impl Into<String>) -> Step {
        self.outcome = Outcome::Fail;
        self.detail = detail.into();
        self
    }

    pub fn skip(mut self, detail: impl Into<String>) -> Step {
        self.outcome = Outcome::Skip;
        self.detail = detail.into();
        self
    }

    pub fn pass(mut self, detail: impl Into<String>) -> Step {
        self.outcome = Outcome::Pass;
        self.detail = detail.into();
        self
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "result": self.outcome.as_str(),
            "status": self.status,
            "request_id": self.request_id,
            "ledger": self.ledger.as_ref().map(Ledger::to_json),
            "detail": self.detail,
        })
    }
}

/// Every step, in the order run.
#[derive(Debug, Default)]
pub struct Report {
    pub steps: Vec<Step>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.steps.iter().all(|s| s.outcome != Outcome::Fail)
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.steps.iter().filter(|s| s.outcome == outcome).count()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "passed": self.passed(),
            "summary": {
                "pass": self.count(Outcome::Pass),
                "fail": self.count(Outcome::Fail),
                "skip": self.count(Outcome::Skip),
            },
            "steps": self.steps.iter().map(Step::to_json).collect::<Vec<_>>(),
        })
    }

    /// The aligned table, then one summary line.
    pub fn to_table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .steps
            .iter()
            .map(|s| {
                let l = s.ledger.as_ref();
                vec![
                    s.name.clone(),
                    s.outcome.as_str().to_uppercase(),
                    if s.status == 0 {
                        table::NONE.to_owned()
                    } else {
                        s.status.to_string()
                    },
                    s.request_id
                        .clone()
                        .unwrap_or_else(|| table::NONE.to_owned()),
                    l.map_or_else(|| table::NONE.to_owned(), |l| l.model.clone()),
                    l.map_or_else(
                        || table::NONE.to_owned(),
                        |l| format!("{}/{}", l.input_tokens, l.output_tokens),
                    ),
                    l.map_or_else(|| table::NONE.to_owned(), |l| l.cost_micros.to_string()),
                    one_line(&s.detail),
                ]
            })
            .collect();
        let mut out = table::grid(
            &[
                "STEP",
                "RESULT",
                "STATUS",
                "REQUEST ID",
                "MODEL",
                "TOKENS IN/OUT",
                "COST µ$",
                "DETAIL",
            ],
            &rows,
        );
        out.push_str(&format!(
            "\n{}: {} passed, {} failed, {} skipped\n",
            if self.passed() { "PASS" } else { "FAIL" },
            self.count(Outcome::Pass),
            self.count(Outcome::Fail),
            self.count(Outcome::Skip),
        ));
        out
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_fails_when_any_step_failed_and_a_skip_is_not_a_failure() {
        let mut report = Report::default();
        report.steps.push(Step::new("family chat").pass("served"));
        report
            .steps
            .push(Step::new("family images").skip("no image model"));
        assert!(report.passed());
        report.steps.push(Step::new("budget").fail("answered 200"));
        assert!(!report.passed());
        let json = report.to_json();
        assert_eq!(json["passed"], false);
        assert_eq!(json["summary"]["fail"], 1);
        assert_eq!(json["summary"]["skip"], 1);
        assert_eq!(json["steps"][2]["result"], "fail");
        let table = report.to_table();
        assert!(table.starts_with("STEP"), "{table}");
        assert!(
            table.contains("FAIL: 1 passed, 1 failed, 1 skipped"),
            "{table}"
        );
    }

    #[test]
    fn a_ledger_row_is_read_from_the_request_log_shape() {
        let row = json!({
            "key_id": "k", "team_id": "t", "application": "modelgate-check",
            "endpoint": "chat.completions", "requested_model": "m", "served_model": "m",
            "deployment_id": "d", "status": 200, "error_class": null, "input_tokens": 5,
            "output_tokens": 7, "images": 0, "media_ms": 0, "characters": 3,
            "cost_micros": 12, "cost_flag": "", "attempts": [{"status": 200}],
            "fallback_used": false
        });
        let l = Ledger::from_row(&row);
        assert_eq!((l.input_tokens, l.output_tokens, l.units), (5, 7, 3));
        assert_eq!(l.attempts, 1);
        assert_eq!(l.error_class, None);
        assert_eq!(l.model, "m");
    }
}
