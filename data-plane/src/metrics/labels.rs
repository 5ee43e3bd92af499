//! Label sets of the request metrics, and the names they may carry.
//!
//! Every label value is bounded, so a client cannot create series: the surface is a
//! `&'static str` of the code, the status a `u16`, the error class an enum, and the model and
//! provider are names of the current config ([`Names`]), interned once per config version as
//! `Arc<str>` (a clone per request, no allocation). A model the config does not name is `other`;
//! none at all (refused before the body was read) is `none`. No key, team or request id is a
//! label: those belong to the usage events.

use std::fmt::Write as _;
use std::sync::Arc;

use arc_swap::ArcSwap;
use foldhash::HashMap;
use modelgate_shared::usage::ErrorClass;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// The label of a missing name (no model named, no provider served).
pub const NONE: &str = "none";
/// The label of a model the current config does not name.
pub const OTHER: &str = "other";

/// Where the label values come from: the data plane's current config.
pub trait LabelSource: Send + Sync + 'static {
    /// Changes whenever [`LabelSource::names`] may have changed (the config version).
    fn version(&self) -> u64;
    /// The aliases and provider ids of the current config.
    fn names(&self) -> Names;
}

/// A source with no config: every model is `other`, every provider `none`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoConfig;

impl LabelSource for NoConfig {
    fn version(&self) -> u64 {
        0
    }

    fn names(&self) -> Names {
        Names::new(0, [], [])
    }
}

/// The label values one config version allows.
#[derive(Debug)]
pub struct Names {
    version: u64,
    /// By the name as configured: the label value (see [`label_value`]).
    models: HashMap<Box<str>, Arc<str>>,
    providers: HashMap<Box<str>, Arc<str>>,
    none: Arc<str>,
    other: Arc<str>,
}

impl Names {
    pub fn new<'a>(
        version: u64,
        models: impl IntoIterator<Item = &'a str>,
        providers: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        Names {
            version,
            models: models
                .into_iter()
                .map(|m| (m.into(), label_value(m)))
                .collect(),
            providers: providers
                .into_iter()
                .map(|p| (p.into(), label_value(p)))
                .collect(),
            none: Arc::from(NONE),
            other: Arc::from(OTHER),
        }
    }

    /// The `model` label of a requested alias.
    pub fn model(&self, alias: &str) -> Arc<str> {
        if alias.is_empty() {
            return self.none.clone();
        }
        self.models.get(alias).unwrap_or(&self.other).clone()
    }

    /// The `provider` label of a provider id (`none` when empty or not in the config).
    pub fn provider(&self, id: &str) -> Arc<str> {
        self.providers.get(id).unwrap_or(&self.none).clone()
    }
}

/// A name as a label value: the text format has no escapes here, so the characters that would
/// end the value or the line become `_` (config names are ids and aliases: this is a guard).
pub fn label_value(name: &str) -> Arc<str> {
    if name.contains(['"', '\\', '\n']) {
        Arc::from(name.replace(['"', '\\', '\n'], "_"))
    } else {
        Arc::from(name)
    }
}

/// The current [`Names`], rebuilt when the source's version changes (once per config version,
/// by whichever request sees the change first).
pub(super) struct Interner {
    source: Arc<dyn LabelSource>,
    names: ArcSwap<Names>,
}

impl Interner {
    pub(super) fn new(source: Arc<dyn LabelSource>) -> Self {
        let names = ArcSwap::from_pointee(source.names());
        Interner { source, names }
    }

    pub(super) fn current(&self) -> arc_swap::Guard<Arc<Names>> {
        let names = self.names.load();
        if names.version == self.source.version() {
            return names;
        }
        self.names.store(Arc::new(self.source.names()));
        self.names.load()
    }
}

/// `modelgate_requests_total`'s labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RequestLabels {
    pub surface: &'static str,
    pub model: Arc<str>,
    pub provider: Arc<str>,
    /// The HTTP status code answered (`499`: the client went away first).
    pub status: u16,
    pub error_class: Class,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct SurfaceLabels {
    pub surface: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ProviderLabels {
    pub provider: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ModelLabels {
    pub model: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct TokenLabels {
    pub r#type: TokenType,
}

impl TokenLabels {
    pub(super) fn of(t: TokenType) -> Self {
        TokenLabels { r#type: t }
    }
}

/// A usage event's error class as a label: its name, `none` on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Class(pub Option<ErrorClass>);

impl EncodeLabelValue for Class {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0.map_or(NONE, ErrorClass::as_str))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum TokenType {
    Input,
    Output,
    CachedInput,
    Reasoning,
}

impl TokenType {
    /// In the order `Metrics::record` reads the event's counts.
    pub(super) const ALL: [TokenType; 4] = [
        TokenType::Input,
        TokenType::Output,
        TokenType::CachedInput,
        TokenType::Reasoning,
    ];

    fn as_str(self) -> &'static str {
        match self {
            TokenType::Input => "input",
            TokenType::Output => "output",
            TokenType::CachedInput => "cached_input",
            TokenType::Reasoning => "reasoning",
        }
    }
}

impl EncodeLabelValue for TokenType {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}
