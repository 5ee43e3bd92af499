//! Routing: which deployments a request may try, in which order ([`plan`]), which of them are
//! healthy right now ([`health`]), and how many retries the node can afford ([`budget`]). The
//! failure ladder that walks a plan lives with the request handler (`server::ladder`).

pub mod budget;
pub mod health;
pub mod plan;

/// How a request may be routed, by its traffic class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficClass {
    /// Approved equivalents only: tiers and backup groups.
    Interactive,
    /// May use backup groups (cheaper routes are the operator's ordering).
    Batch,
    /// No hidden fallback: the model identity stays stable (retries on the same model only).
    Eval,
    /// Fails closed: no fallback to another group.
    Media,
}

impl TrafficClass {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "interactive" => Some(Self::Interactive),
            "batch" => Some(Self::Batch),
            "eval" => Some(Self::Eval),
            "media" => Some(Self::Media),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interactive => "interactive",
            Self::Batch => "batch",
            Self::Eval => "eval",
            Self::Media => "media",
        }
    }

    /// May this class leave its group for a backup group?
    pub fn may_use_backup_groups(self) -> bool {
        matches!(self, Self::Interactive | Self::Batch)
    }
}
