//! The pipeline file: what to ingest, how to train, the gate, where to register.

use mlops_core::ApiError;
use mlops_core::auth::gate::principal;
use mlops_core::auth::{Action, Principal, ResourceKind, authorize};
use mlops_core::ids::validate_name;
use mlops_ml::model::ModelKind;
use mlops_ml::train::{check_metric, greater_is_better};
use mlops_proto::v1::{
    ColumnSpec, DataType, FitSpec, GetDatasetVersionRequest, MaskRule, ParamValues,
    PreprocessingStep, UploadHeader,
};
use serde::Deserialize;
use std::collections::BTreeMap;

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Ingest,
    Validate,
    Train,
    Evaluate,
    Register,
    Canary,
    Promote,
    SmokeTest,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Ingest => "ingest",
            StepKind::Validate => "validate",
            StepKind::Train => "train",
            StepKind::Evaluate => "evaluate",
            StepKind::Register => "register",
            StepKind::Canary => "canary",
            StepKind::Promote => "promote",
            StepKind::SmokeTest => "smoke_test",
        }
    }
}

/// A step of the pipeline's graph: it starts once every step it needs has succeeded.
#[derive(Debug, Clone, PartialEq)]
pub struct StepNode {
    pub name: String,
    pub kind: StepKind,
    pub needs: Vec<String>,
}

/// A train step: one candidate model; the evaluate step picks the best.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub step: String,
    pub spec: TrainSpec,
    /// A digest of each setting of the train section, so a cache miss can say what changed.
    pub digests: BTreeMap<String, String>,
}

/// A parsed, checked pipeline. The file has one of two forms: sections (`dataset`, `train`,
/// `evaluate`, `register`, `promote`, `smoke_test`), which run as that chain, or `steps`, a
/// graph in which each step names the steps it `needs` and independent steps (e.g. several
/// train candidates) run at the same time.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub dataset: DatasetSpec,
    /// Checks of the ingested version's report before anything trains on it.
    pub validate: Option<ValidateSpec>,
    pub candidates: Vec<Candidate>,
    pub evaluate: EvaluateSpec,
    pub register: RegisterSpec,
    /// Without it the new version is registered but no alias moves.
    pub promote: Option<PromoteSpec>,
    /// Live traffic to the new version before the promotion, compared with the champion's.
    pub canary: Option<CanarySpec>,
    pub smoke_test: Option<SmokeTestSpec>,
    pub retry: RetrySpec,
    pub cache: bool,
    pub triggers: TriggersSpec,
    /// In the file's order.
    pub steps: Vec<StepNode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    name: String,
    dataset: Option<DatasetSpec>,
    validate: Option<ValidateSpec>,
    train: Option<TrainSpec>,
    evaluate: Option<EvaluateSpec>,
    register: Option<RegisterSpec>,
    promote: Option<PromoteSpec>,
    canary: Option<CanarySpec>,
    smoke_test: Option<SmokeTestSpec>,
    steps: Option<Vec<StepFile>>,
    /// How a step that fails for a passing reason (a service unavailable, a timeout) is
    /// retried.
    #[serde(default)]
    retry: RetrySpec,
    /// Reuse the training job of an earlier run whose train section and dataset version were
    /// the same (default true): training is seeded, so it would give the same model.
    #[serde(default = "yes")]
    cache: bool,
    /// Defaults of the values `${name}` stands for; already substituted before parsing.
    #[serde(default, rename = "parameters")]
    _parameters: BTreeMap<String, serde_yaml_ng::Value>,
    /// What starts runs of a registered pipeline (ignored by a one-off run).
    #[serde(default)]
    triggers: TriggersSpec,
}

/// One entry of `steps`: a name, the steps it needs, and exactly one step type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    name: String,
    #[serde(default)]
    needs: Vec<String>,
    ingest: Option<DatasetSpec>,
    validate: Option<ValidateSpec>,
    train: Option<TrainSpec>,
    evaluate: Option<EvaluateSpec>,
    register: Option<RegisterSpec>,
    canary: Option<CanarySpec>,
    promote: Option<PromoteSpec>,
    smoke_test: Option<SmokeTestSpec>,
}

/// Data checks on the ingested version's validation report; a failure stops the run before
/// anything trains.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidateSpec {
    /// The report's verdict on the declared column constraints must be a pass.
    pub require_passed: bool,
    pub min_rows: u64,
    /// Rows identical to an earlier row, as a share of all rows.
    pub max_duplicate_share: f64,
    /// Missing values in any one column, as a share of the rows.
    pub max_missing_share: f64,
}

impl Default for ValidateSpec {
    fn default() -> Self {
        Self {
            require_passed: true,
            min_rows: 1,
            max_duplicate_share: 1.0,
            max_missing_share: 1.0,
        }
    }
}

impl ValidateSpec {
    fn check(&self) -> Result<(), ApiError> {
        for (field, share) in [
            ("max_duplicate_share", self.max_duplicate_share),
            ("max_missing_share", self.max_missing_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(ApiError::invalid_argument(format!(
                    "validate.{field} must be between 0 and 1"
                )));
            }
        }
        Ok(())
    }
}

/// A canary release: a share of the model's unversioned requests goes to the new version for
/// a while, then its live error rate and latency are compared with the champion's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanarySpec {
    /// Share of the requests that name no version sent to the new version (0 < share <= 1).
    pub share: f64,
    /// How long the canary runs at least.
    pub duration_seconds: u32,
    /// Requests the new version must answer before it is judged.
    pub min_requests: u64,
    /// The canary fails if the new version has not answered `min_requests` by then.
    pub timeout_seconds: u32,
    /// The new version's error rate may exceed the champion's by at most this much (0.01: one
    /// point).
    pub max_error_rate_increase: f64,
    /// The new version's mean latency may be at most this multiple of the champion's.
    pub max_latency_ratio: f64,
}

impl Default for CanarySpec {
    fn default() -> Self {
        Self {
            share: 0.1,
            duration_seconds: 60,
            min_requests: 100,
            timeout_seconds: 600,
            max_error_rate_increase: 0.01,
            max_latency_ratio: 2.0,
        }
    }
}

impl CanarySpec {
    fn check(&self) -> Result<(), ApiError> {
        let bad = |why: &str| Err(ApiError::invalid_argument(format!("canary.{why}")));
        if !(self.share > 0.0 && self.share <= 1.0) {
            return bad("share must be above 0 and at most 1");
        }
        if !(1..=86_400).contains(&self.duration_seconds) {
            return bad("duration_seconds must be between 1 and 86400");
        }
        if self.timeout_seconds < self.duration_seconds {
            return bad("timeout_seconds must be at least duration_seconds");
        }
        if self.min_requests == 0 {
            return bad("min_requests must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.max_error_rate_increase) {
            return bad("max_error_rate_increase must be between 0 and 1");
        }
        if !(self.max_latency_ratio > 0.0 && self.max_latency_ratio.is_finite()) {
            return bad("max_latency_ratio must be a number above 0");
        }
        Ok(())
    }
}

/// At most this many train candidates in one pipeline.
const MAX_CANDIDATES: usize = 16;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriggersSpec {
    /// A cron expression in UTC: five fields (minute hour day-of-month month day-of-week), or
    /// six with seconds first.
    pub schedule: Option<String>,
    /// The most runs of this pipeline active at once, whatever started them; a trigger that
    /// fires at the limit is skipped (and counted), not queued.
    pub max_concurrent: u32,
    /// Start a run on each new version of `dataset.name`, trained on that version.
    pub new_dataset_version: bool,
    /// Retrain when the served model (the promote alias of `register.model`) drifts.
    pub drift: Option<DriftTriggerSpec>,
    /// The schedule, parsed.
    #[serde(skip)]
    pub cron: Option<croner::Cron>,
}

impl Default for TriggersSpec {
    fn default() -> Self {
        Self {
            schedule: None,
            max_concurrent: 1,
            new_dataset_version: false,
            drift: None,
            cron: None,
        }
    }
}

impl TriggersSpec {
    pub fn any(&self) -> bool {
        self.schedule.is_some() || self.new_dataset_version || self.drift.is_some()
    }

    /// The first time the schedule fires strictly after `after_ms`.
    pub fn next_scheduled(&self, after_ms: i64) -> Option<i64> {
        let after = chrono::DateTime::from_timestamp_millis(after_ms)?;
        self.cron
            .as_ref()?
            .find_next_occurrence(&after, false)
            .ok()
            .map(|next| next.timestamp_millis())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftTriggerSpec {
    /// The share of the model's features that must have drifted (0 < share <= 1).
    pub share: f64,
    /// Rate limit: at least this long between two runs started by drift.
    pub min_interval_seconds: u32,
}

impl Default for DriftTriggerSpec {
    fn default() -> Self {
        Self {
            share: 0.5,
            min_interval_seconds: 3600,
        }
    }
}

/// Replaces every `${name}` in a pipeline file with the parameter's value: the submitted one
/// (parsed as the default's type) or the default. The result is the file the run executes and
/// stores, so a resume or a reproduction uses the same values.
pub fn substitute_parameters(
    yaml: &str,
    overrides: &std::collections::HashMap<String, String>,
) -> Result<String, ApiError> {
    #[derive(Deserialize)]
    struct Declared {
        #[serde(default)]
        parameters: BTreeMap<String, serde_yaml_ng::Value>,
    }
    let declared: Declared = serde_yaml_ng::from_str(yaml)
        .map_err(|e| ApiError::invalid_argument(format!("invalid pipeline: {e}")))?;
    let mut values = BTreeMap::new();
    for (name, default) in &declared.parameters {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ApiError::invalid_argument(format!(
                "parameters: {name:?} is not a name (letters, digits, _)"
            )));
        }
        let value = match (overrides.get(name), default) {
            (None, serde_yaml_ng::Value::Bool(_) | serde_yaml_ng::Value::Number(_)) => {
                serde_yaml_ng::to_string(default).expect("scalars serialize")
            }
            (None, serde_yaml_ng::Value::String(text)) => yaml_string(text),
            (None, _) => {
                return Err(ApiError::invalid_argument(format!(
                    "parameters.{name}: a default is a number, a boolean or a string"
                )));
            }
            (Some(given), serde_yaml_ng::Value::Number(_)) => {
                given
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| {
                        ApiError::invalid_argument(format!(
                            "parameters.{name}: {given:?} is not a number, as the default is"
                        ))
                    })?;
                given.clone()
            }
            (Some(given), serde_yaml_ng::Value::Bool(_)) => match given.as_str() {
                "true" | "false" => given.clone(),
                _ => {
                    return Err(ApiError::invalid_argument(format!(
                        "parameters.{name}: {given:?} is not true or false, as the default is"
                    )));
                }
            },
            (Some(given), _) => yaml_string(given),
        };
        values.insert(name.clone(), value.trim_end().to_string());
    }
    if let Some(unknown) = overrides.keys().find(|k| !values.contains_key(*k)) {
        return Err(ApiError::invalid_argument(format!(
            "parameters: {unknown:?} is not declared in the pipeline file's parameters"
        )));
    }
    let mut out = String::with_capacity(yaml.len());
    let mut rest = yaml;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| {
            ApiError::invalid_argument("parameters: a \"${\" is not closed by \"}\"")
        })?;
        let name = &after[..end];
        let value = values.get(name).ok_or_else(|| {
            ApiError::invalid_argument(format!(
                "${{{name}}} names no parameter (declared: {})",
                values.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A string as one YAML scalar on one line that reads back as exactly that string: a JSON
/// string is a valid YAML double-quoted scalar, with every line break and quote escaped.
fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySpec {
    /// Attempts per step, the first included (1: no retries).
    pub attempts: u32,
    /// The wait before the first retry; it doubles (with jitter) up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self {
            attempts: 4,
            initial_backoff_ms: 500,
            max_backoff_ms: 15_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub name: String,
    /// A CSV file name in the orchestrator's sources directory; without it the dataset's
    /// latest version is used as is.
    pub source: Option<String>,
    #[serde(default)]
    pub description: String,
    /// Declared columns (types and constraints) for the upload's validation report.
    #[serde(default)]
    pub columns: Vec<ColumnYaml>,
    /// Masking applied at upload (see the ingestion API).
    #[serde(default)]
    pub masking: Vec<MaskYaml>,
    /// A failed validation report fails the run before anything is trained (default true).
    #[serde(default = "yes")]
    pub require_valid: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnYaml {
    pub name: String,
    /// int64, float64, bool, string or timestamp; inferred when absent.
    #[serde(default, rename = "type")]
    pub data_type: Option<String>,
    #[serde(default)]
    pub not_null: bool,
    #[serde(default)]
    pub unique: bool,
    pub min: Option<f64>,
    pub max: Option<f64>,
    #[serde(default)]
    pub allowed: Vec<Scalar>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskYaml {
    pub column: String,
    pub action: String,
    #[serde(default)]
    pub parameter: Option<Scalar>,
}

impl DatasetSpec {
    /// The upload header this section asks for.
    pub fn upload_header(&self) -> Result<UploadHeader, ApiError> {
        let columns = self
            .columns
            .iter()
            .map(|c| {
                let data_type = match c.data_type.as_deref() {
                    None => DataType::Unspecified,
                    Some(name) => DataType::from_short_name(name).ok_or_else(|| {
                        ApiError::invalid_argument(format!(
                            "dataset.columns: {:?} has type {name:?} (int64, float64, bool, \
                             string, timestamp)",
                            c.name
                        ))
                    })?,
                };
                Ok(ColumnSpec {
                    name: c.name.clone(),
                    data_type: data_type as i32,
                    not_null: c.not_null,
                    unique: c.unique,
                    min: c.min,
                    max: c.max,
                    allowed: c.allowed.iter().map(Scalar::text).collect(),
                })
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(UploadHeader {
            name: self.name.clone(),
            description: self.description.clone(),
            csv: None,
            uri: String::new(),
            format: String::new(),
            columns,
            masking: self
                .masking
                .iter()
                .map(|m| MaskRule {
                    column: m.column.clone(),
                    action: m.action.clone(),
                    parameter: m.parameter.as_ref().map(Scalar::text).unwrap_or_default(),
                })
                .collect(),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    pub target: String,
    #[serde(default = "default_model")]
    pub model: String,
    pub test_fraction: Option<f64>,
    pub seed: Option<u64>,
    /// Hyperparameters, e.g. `{alpha: 0.5}`.
    #[serde(default)]
    pub params: BTreeMap<String, Scalar>,
    /// Hyperparameter -> values to try by cross-validation, e.g. `{alpha: [0.1, 1, 10]}`.
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<Scalar>>,
    #[serde(default)]
    pub preprocessing: Vec<StepYaml>,
    #[serde(default)]
    pub cv_folds: u32,
    #[serde(default)]
    pub selection_metric: String,
    /// Feature columns; empty = all but the target.
    #[serde(default)]
    pub features: Vec<String>,
}

/// A YAML scalar, carried as text to the training service.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    pub fn text(&self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Text(t) => t.clone(),
        }
    }
}

/// A preprocessing step: `{kind: impute, columns: [a], strategy: median}`.
#[derive(Debug, Clone, Deserialize)]
pub struct StepYaml {
    pub kind: String,
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(flatten)]
    pub options: BTreeMap<String, Scalar>,
}

impl TrainSpec {
    /// The fit as the training service takes it.
    pub fn fit_spec(&self) -> FitSpec {
        FitSpec {
            params: self
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.text()))
                .collect(),
            grid: self
                .grid
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        ParamValues {
                            values: v.iter().map(Scalar::text).collect(),
                        },
                    )
                })
                .collect(),
            preprocessing: self
                .preprocessing
                .iter()
                .map(|s| PreprocessingStep {
                    kind: s.kind.clone(),
                    columns: s.columns.clone(),
                    options: s
                        .options
                        .iter()
                        .map(|(k, v)| (k.clone(), v.text()))
                        .collect(),
                })
                .collect(),
            cv_folds: self.cv_folds,
            selection_metric: self.selection_metric.clone(),
            features: self.features.clone(),
        }
    }

    /// Checks model, hyperparameters, grid, steps and metric as training will.
    fn check(&self, at: &str) -> Result<ModelKind, ApiError> {
        let spec = mlops_training::train_spec(
            &self.model,
            &self.fit_spec(),
            self.test_fraction.unwrap_or(0.2),
            self.seed.unwrap_or(42),
        )
        .map_err(|e| ApiError::invalid_argument(format!("{at}: {}", e.message)))?;
        Ok(spec.model)
    }
}

fn default_model() -> String {
    "linear".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateSpec {
    /// The gate's metric and the champion comparison's: a regression metric (mse, rmse, mae,
    /// r2, explained_variance) or a classification one (accuracy, f1, roc_auc, log_loss, ...).
    pub metric: String,
    /// Lowest acceptable value (for r2).
    pub min: Option<f64>,
    /// Highest acceptable value (for error metrics).
    pub max: Option<f64>,
    /// Gate checks, all of which must hold: `"<metric> <op> <number>"` (absolute) or
    /// `"<metric> <op> champion.<metric> [* | + | - <number>]"` (relative to the version behind
    /// the promote alias); op is <, <=, > or >=.
    #[serde(default, rename = "checks")]
    pub check_texts: Vec<String>,
    /// The checks, parsed.
    #[serde(skip)]
    pub checks: Vec<Check>,
    /// Evaluate every candidate and the champion on this dataset version (`name`, `name@3`
    /// or `name@alias`) instead of each one's own holdout: the same rows for all.
    pub dataset: Option<String>,
    /// `dataset`, parsed.
    #[serde(skip)]
    pub dataset_ref: Option<GetDatasetVersionRequest>,
}

impl Default for EvaluateSpec {
    fn default() -> Self {
        Self {
            metric: "r2".into(),
            min: None,
            max: None,
            check_texts: Vec::new(),
            checks: Vec::new(),
            dataset: None,
            dataset_ref: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

impl Op {
    pub fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Op::Less => value < bound,
            Op::LessOrEqual => value <= bound,
            Op::Greater => value > bound,
            Op::GreaterOrEqual => value >= bound,
        }
    }
}

/// What a check compares against.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Value(f64),
    /// The champion's recorded metric, scaled then shifted.
    Champion {
        metric: String,
        factor: f64,
        offset: f64,
    },
}

/// One gate check, e.g. `rmse <= champion.rmse * 1.05`.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub text: String,
    pub metric: String,
    pub op: Op,
    pub bound: Bound,
}

impl Check {
    /// Parses a check; every metric named must be one the task reports.
    pub fn parse(text: &str, task: mlops_ml::model::Task) -> Result<Self, ApiError> {
        let invalid = |why: &str| {
            ApiError::invalid_argument(format!(
                "evaluate.checks: {text:?}: {why} (e.g. \"r2 >= 0.4\" or \"rmse <= champion.rmse * 1.05\")"
            ))
        };
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let (metric, op, rest) = match tokens.as_slice() {
            [metric, op, rest @ ..] if !rest.is_empty() => (*metric, *op, rest),
            _ => return Err(invalid("expected <metric> <op> <bound>")),
        };
        let op = match op {
            "<" => Op::Less,
            "<=" => Op::LessOrEqual,
            ">" => Op::Greater,
            ">=" => Op::GreaterOrEqual,
            _ => return Err(invalid("the operator must be <, <=, > or >=")),
        };
        let known = |name: &str| {
            check_metric(task, name).map_err(|e| invalid(&format!("metric {name:?}: {e}")))
        };
        known(metric)?;
        let number = |token: &str| -> Result<f64, ApiError> {
            token
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| invalid(&format!("{token:?} is not a finite number")))
        };
        let bound = match rest {
            [value] if !value.starts_with("champion.") => Bound::Value(number(value)?),
            [champion, tail @ ..] => {
                let Some(theirs) = champion.strip_prefix("champion.") else {
                    return Err(invalid("the bound is a number or champion.<metric>"));
                };
                known(theirs)?;
                let (factor, offset) = match tail {
                    [] => (1.0, 0.0),
                    ["*", x] => (number(x)?, 0.0),
                    ["+", x] => (1.0, number(x)?),
                    ["-", x] => (1.0, -number(x)?),
                    _ => return Err(invalid("after champion.<metric> only * x, + x or - x")),
                };
                Bound::Champion {
                    metric: theirs.to_string(),
                    factor,
                    offset,
                }
            }
            [] => unreachable!("rest is not empty"),
        };
        Ok(Self {
            text: text.to_string(),
            metric: metric.to_string(),
            op,
            bound,
        })
    }
}

impl EvaluateSpec {
    pub fn higher_is_better(&self) -> bool {
        greater_is_better(&self.metric)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterSpec {
    pub model: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteSpec {
    #[serde(default = "default_alias")]
    pub alias: String,
}

impl Default for PromoteSpec {
    fn default() -> Self {
        Self {
            alias: default_alias(),
        }
    }
}

fn default_alias() -> String {
    "champion".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeTestSpec {
    /// Rows of the source sent to the new version through the inference service.
    #[serde(default = "default_rows")]
    pub rows: usize,
}

impl Default for SmokeTestSpec {
    fn default() -> Self {
        Self {
            rows: default_rows(),
        }
    }
}

fn default_rows() -> usize {
    3
}

impl TriggersSpec {
    fn check(&mut self, has_source: bool) -> Result<(), ApiError> {
        if let Some(schedule) = &self.schedule {
            let cron = croner::parser::CronParser::builder()
                .seconds(croner::parser::Seconds::Optional)
                .build()
                .parse(schedule)
                .map_err(|e| {
                    ApiError::invalid_argument(format!(
                        "triggers.schedule: {schedule:?} is not a cron expression ({e}); \
                         e.g. \"0 3 * * *\" for 03:00 UTC daily"
                    ))
                })?;
            self.cron = Some(cron);
        }
        if !(1..=100).contains(&self.max_concurrent) {
            return Err(ApiError::invalid_argument(
                "triggers.max_concurrent must be between 1 and 100",
            ));
        }
        if self.new_dataset_version && has_source {
            return Err(ApiError::invalid_argument(
                "triggers.new_dataset_version: a pipeline with dataset.source ingests its own \
                 file; leave dataset.source out to train on each new version as it arrives",
            ));
        }
        if let Some(drift) = &self.drift {
            if !(drift.share > 0.0 && drift.share <= 1.0) {
                return Err(ApiError::invalid_argument(
                    "triggers.drift.share must be above 0 and at most 1",
                ));
            }
            if drift.min_interval_seconds == 0 {
                return Err(ApiError::invalid_argument(
                    "triggers.drift.min_interval_seconds must be at least 1",
                ));
            }
        }
        Ok(())
    }
}

impl Pipeline {
    /// What running this pipeline does, as actions and resources the caller must be allowed.
    pub fn authorize(&self, caller: Option<&Principal>) -> Result<(), ApiError> {
        let principal = principal(caller)?;
        authorize(caller, ResourceKind::Pipeline, &self.name)?;
        authorize(caller, ResourceKind::Dataset, &self.dataset.name)?;
        if let Some(dataset) = &self.evaluate.dataset_ref {
            authorize(caller, ResourceKind::Dataset, &dataset.dataset)?;
        }
        authorize(caller, ResourceKind::Model, &self.register.model)?;
        if self.dataset.source.is_some() {
            principal.require(Action::WriteData)?;
        }
        principal.require(Action::Train)?;
        principal.require(Action::RegisterModel)?;
        if self.promote.is_some() {
            principal.require(Action::Deploy)?;
        }
        Ok(())
    }

    /// Parses and checks a pipeline file; an error names the field or step and, where the
    /// file shows it, its line.
    pub fn parse(yaml: &str) -> Result<Self, ApiError> {
        Self::parse_unlocated(yaml).map_err(|error| match locate(yaml, &error.message) {
            Some(line) => ApiError::new(error.kind, format!("line {line}: {}", error.message)),
            None => error,
        })
    }

    fn parse_unlocated(yaml: &str) -> Result<Self, ApiError> {
        let mut file: PipelineFile = serde_yaml_ng::from_str(yaml)
            .map_err(|e| ApiError::invalid_argument(format!("invalid pipeline: {e}")))?;
        // Parsed once more as plain data: JSON text with sorted keys is a stable form.
        let plain: serde_json::Value = serde_yaml_ng::from_str(yaml)
            .map_err(|e| ApiError::invalid_argument(format!("invalid pipeline: {e}")))?;
        let digests = |train: Option<&serde_json::Value>| -> BTreeMap<String, String> {
            train
                .and_then(|t| t.as_object())
                .map(|train| {
                    train
                        .iter()
                        .map(|(key, value)| {
                            (
                                format!("train.{key}"),
                                mlops_core::storage::sha256_hex(value.to_string().as_bytes()),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        validate_name("name", &file.name)?;
        let (retry, cache, triggers) = (file.retry.clone(), file.cache, file.triggers.clone());
        let mut pipeline = match file.steps.take() {
            None => Self::from_sections(file, digests(plain.get("train")))?,
            Some(steps) => {
                if let Some(section) = [
                    ("dataset", file.dataset.is_some()),
                    ("validate", file.validate.is_some()),
                    ("train", file.train.is_some()),
                    ("evaluate", file.evaluate.is_some()),
                    ("register", file.register.is_some()),
                    ("promote", file.promote.is_some()),
                    ("canary", file.canary.is_some()),
                    ("smoke_test", file.smoke_test.is_some()),
                ]
                .iter()
                .find(|(_, present)| *present)
                {
                    return Err(ApiError::invalid_argument(format!(
                        "{}: with steps, every section is a step (e.g. {{name: {0}, needs: \
                         [...], {0}: {{...}}}})",
                        section.0
                    )));
                }
                let trains: Vec<BTreeMap<String, String>> = (0..steps.len())
                    .map(|i| digests(plain["steps"].get(i).and_then(|s| s.get("train"))))
                    .collect();
                Self::from_steps(file.name, steps, trains)?
            }
        };
        pipeline.retry = retry;
        pipeline.cache = cache;
        pipeline.triggers = triggers;
        pipeline.check()?;
        Ok(pipeline)
    }

    /// The sections form: the chain ingest -> train -> evaluate -> register -> promote ->
    /// smoke_test, with the step names the sections have.
    fn from_sections(
        file: PipelineFile,
        digests: BTreeMap<String, String>,
    ) -> Result<Self, ApiError> {
        let PipelineFile {
            name,
            dataset,
            validate,
            train,
            evaluate,
            register,
            promote,
            canary,
            smoke_test,
            ..
        } = file;
        let required = |section: &str| {
            ApiError::invalid_argument(format!(
                "{section}: this section is required (or describe the pipeline as steps)"
            ))
        };
        // A canary goes live between the registration and the promotion.
        let kinds: Vec<StepKind> = [
            StepKind::Ingest,
            StepKind::Validate,
            StepKind::Train,
            StepKind::Evaluate,
            StepKind::Register,
            StepKind::Canary,
            StepKind::Promote,
            StepKind::SmokeTest,
        ]
        .into_iter()
        .filter(|kind| match kind {
            StepKind::Canary => canary.is_some(),
            StepKind::Validate => validate.is_some(),
            _ => true,
        })
        .collect();
        let steps = kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| StepNode {
                name: kind.as_str().to_string(),
                kind: *kind,
                needs: match i {
                    0 => Vec::new(),
                    _ => vec![kinds[i - 1].as_str().to_string()],
                },
            })
            .collect();
        Ok(Self {
            name,
            dataset: dataset.ok_or_else(|| required("dataset"))?,
            validate,
            candidates: vec![Candidate {
                step: "train".into(),
                spec: train.ok_or_else(|| required("train"))?,
                digests,
            }],
            evaluate: evaluate.unwrap_or_default(),
            register: register.ok_or_else(|| required("register"))?,
            promote,
            canary,
            smoke_test: Some(smoke_test.unwrap_or_default()),
            retry: RetrySpec::default(),
            cache: true,
            triggers: TriggersSpec::default(),
            steps,
        })
    }

    /// The steps form: a graph of named steps.
    fn from_steps(
        name: String,
        files: Vec<StepFile>,
        mut train_digests: Vec<BTreeMap<String, String>>,
    ) -> Result<Self, ApiError> {
        let mut dataset = None;
        let mut validate = None;
        let mut candidates = Vec::new();
        let mut evaluate = None;
        let mut register = None;
        let mut promote = None;
        let mut canary = None;
        let mut smoke_test = None;
        let mut steps: Vec<StepNode> = Vec::new();
        let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
        for (i, (file, digests)) in files.into_iter().zip(train_digests.drain(..)).enumerate() {
            let at = format!("steps[{i}]");
            validate_name(&format!("{at}.name"), &file.name)?;
            if names[..i].contains(&file.name) {
                return Err(ApiError::invalid_argument(format!(
                    "{at}.name: {:?} names an earlier step too",
                    file.name
                )));
            }
            let at = format!("{at} ({})", file.name);
            for need in &file.needs {
                if need == &file.name || !names.contains(need) {
                    return Err(ApiError::invalid_argument(format!(
                        "{at}.needs: {need:?} is {}",
                        if need == &file.name {
                            "the step itself"
                        } else {
                            "no step of this pipeline"
                        }
                    )));
                }
            }
            let mut kinds = Vec::new();
            let at = at.as_str();
            place(&mut dataset, file.ingest, StepKind::Ingest, &mut kinds, at)?;
            place(
                &mut validate,
                file.validate,
                StepKind::Validate,
                &mut kinds,
                at,
            )?;
            if let Some(spec) = file.train {
                candidates.push(Candidate {
                    step: file.name.clone(),
                    spec,
                    digests,
                });
                kinds.push(StepKind::Train);
            }
            place(
                &mut evaluate,
                file.evaluate,
                StepKind::Evaluate,
                &mut kinds,
                at,
            )?;
            place(
                &mut register,
                file.register,
                StepKind::Register,
                &mut kinds,
                at,
            )?;
            place(&mut canary, file.canary, StepKind::Canary, &mut kinds, at)?;
            place(
                &mut promote,
                file.promote,
                StepKind::Promote,
                &mut kinds,
                at,
            )?;
            place(
                &mut smoke_test,
                file.smoke_test,
                StepKind::SmokeTest,
                &mut kinds,
                at,
            )?;
            let kind = match kinds.as_slice() {
                [kind] => *kind,
                [] => {
                    return Err(ApiError::invalid_argument(format!(
                        "{at}: no step type: give one of ingest, validate, train, evaluate, \
                         register, canary, promote, smoke_test"
                    )));
                }
                _ => {
                    return Err(ApiError::invalid_argument(format!(
                        "{at}: one step type per step, not {}",
                        kinds
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(" and ")
                    )));
                }
            };
            steps.push(StepNode {
                name: file.name,
                kind,
                needs: file.needs,
            });
        }
        let missing = |kind: &str| {
            ApiError::invalid_argument(format!("steps: a pipeline needs a {kind} step"))
        };
        let pipeline = Self {
            name,
            dataset: dataset.ok_or_else(|| missing("ingest"))?,
            validate,
            evaluate: evaluate.ok_or_else(|| missing("evaluate"))?,
            register: register.ok_or_else(|| missing("register"))?,
            promote,
            canary,
            smoke_test,
            retry: RetrySpec::default(),
            cache: true,
            triggers: TriggersSpec::default(),
            candidates,
            steps,
        };
        if pipeline.candidates.is_empty() {
            return Err(missing("train"));
        }
        if pipeline.candidates.len() > MAX_CANDIDATES {
            return Err(ApiError::invalid_argument(format!(
                "steps: at most {MAX_CANDIDATES} train steps"
            )));
        }
        pipeline.check_graph()?;
        Ok(pipeline)
    }

    /// No cycle, and every step after the steps whose outputs it uses.
    fn check_graph(&self) -> Result<(), ApiError> {
        let order = topological_order(&self.steps).map_err(|cycle| {
            ApiError::invalid_argument(format!(
                "steps: the needs form a cycle through {}",
                cycle.join(", ")
            ))
        })?;
        // Every step's ancestors, in topological order so needs come first.
        let mut ancestors: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
        for index in order {
            let step = &self.steps[index];
            let mut all = std::collections::BTreeSet::new();
            for need in &step.needs {
                all.insert(need.as_str());
                all.extend(ancestors[need.as_str()].iter().copied());
            }
            ancestors.insert(step.name.as_str(), all);
        }
        let of_kind = |kind: StepKind| self.steps.iter().filter(move |s| s.kind == kind);
        let requires = |kind: StepKind, before: StepKind| -> Result<(), ApiError> {
            for step in of_kind(kind) {
                for earlier in of_kind(before) {
                    if !ancestors[step.name.as_str()].contains(earlier.name.as_str()) {
                        return Err(ApiError::invalid_argument(format!(
                            "steps: {:?} ({}) must need {:?} ({}), directly or through its needs",
                            step.name,
                            kind.as_str(),
                            earlier.name,
                            before.as_str()
                        )));
                    }
                }
            }
            Ok(())
        };
        requires(StepKind::Train, StepKind::Ingest)?;
        requires(StepKind::Validate, StepKind::Ingest)?;
        requires(StepKind::Train, StepKind::Validate)?;
        requires(StepKind::Evaluate, StepKind::Train)?;
        requires(StepKind::Register, StepKind::Evaluate)?;
        requires(StepKind::Promote, StepKind::Register)?;
        requires(StepKind::Canary, StepKind::Register)?;
        requires(StepKind::Promote, StepKind::Canary)?;
        // A smoke test's requests would count as the canary's live traffic, and a failed one
        // must not leave a canary serving: one comes after the other.
        if let (Some(canary), Some(smoke)) = (
            of_kind(StepKind::Canary).next(),
            of_kind(StepKind::SmokeTest).next(),
        ) && !ancestors[canary.name.as_str()].contains(smoke.name.as_str())
            && !ancestors[smoke.name.as_str()].contains(canary.name.as_str())
        {
            return Err(ApiError::invalid_argument(format!(
                "steps: {:?} (canary) and {:?} (smoke_test) must not run at the same time: \
                 make one need the other",
                canary.name, smoke.name
            )));
        }
        requires(StepKind::SmokeTest, StepKind::Register)?;
        Ok(())
    }

    /// The checks both forms share.
    fn check(&mut self) -> Result<(), ApiError> {
        validate_name("dataset.name", &self.dataset.name)?;
        if let Some(source) = &self.dataset.source {
            // A file name in the sources directory, never a path.
            validate_name("dataset.source", source)?;
        }
        self.dataset.upload_header()?;
        if let Some(validate) = &self.validate {
            validate.check()?;
        }
        let mut task = None;
        for candidate in &self.candidates {
            let at = if self.candidates.len() == 1 {
                "train".to_string()
            } else {
                format!("train step {:?}", candidate.step)
            };
            if candidate.spec.target.is_empty() {
                return Err(ApiError::invalid_argument(format!(
                    "{at}: target is required"
                )));
            }
            if candidate.spec.target != self.candidates[0].spec.target {
                return Err(ApiError::invalid_argument(format!(
                    "{at}: every candidate predicts the same target ({:?}), to be compared",
                    self.candidates[0].spec.target
                )));
            }
            let model = candidate.spec.check(&at)?;
            match task {
                None => task = Some(model.task()),
                Some(first) if first != model.task() => {
                    return Err(ApiError::invalid_argument(format!(
                        "{at}: {} is not the same kind of model (classification or \
                         regression) as the other candidates",
                        candidate.spec.model
                    )));
                }
                Some(_) => {}
            }
        }
        let task = task.expect("a pipeline has a train step");
        check_metric(task, &self.evaluate.metric)
            .map_err(|e| ApiError::invalid_argument(format!("evaluate.metric: {e}")))?;
        if let Some(dataset) = &self.evaluate.dataset {
            self.evaluate.dataset_ref =
                Some(mlops_core::ids::dataset_ref("evaluate.dataset", dataset)?);
        }
        self.evaluate.checks = self
            .evaluate
            .check_texts
            .iter()
            .map(|text| Check::parse(text, task))
            .collect::<Result<_, _>>()?;
        validate_name("register.model", &self.register.model)?;
        if let Some(promote) = &self.promote {
            validate_name("promote.alias", &promote.alias)?;
        }
        if let Some(canary) = &self.canary {
            canary.check()?;
            if self.promote.is_none() {
                return Err(ApiError::invalid_argument(
                    "canary: needs a promote step (the canary compares the new version with the \
                     version behind its alias, and decides whether the promotion happens)",
                ));
            }
        }
        let retry = &self.retry;
        if !(1..=20).contains(&retry.attempts) {
            return Err(ApiError::invalid_argument(
                "retry.attempts must be between 1 and 20",
            ));
        }
        if retry.initial_backoff_ms == 0 || retry.initial_backoff_ms > retry.max_backoff_ms {
            return Err(ApiError::invalid_argument(
                "retry.initial_backoff_ms must be above 0 and at most retry.max_backoff_ms",
            ));
        }
        if let Some(smoke_test) = &self.smoke_test
            && (smoke_test.rows == 0 || smoke_test.rows > 1000)
        {
            return Err(ApiError::invalid_argument(
                "smoke_test.rows must be between 1 and 1000",
            ));
        }
        self.triggers.check(self.dataset.source.is_some())?;
        Ok(())
    }

    /// The alias the champion is behind: the promote step's, else `champion`.
    pub fn champion_alias(&self) -> &str {
        self.promote
            .as_ref()
            .map_or("champion", |p| p.alias.as_str())
    }

    pub fn candidate(&self, step: &str) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.step == step)
    }
}

/// The line (from 1) an error message is about: the step `steps[i] (name)` it names, or the
/// key of the dotted field it starts with (`triggers.schedule: ...`), found after its parent
/// keys. None when the message names neither, or the YAML parser already gave the line.
fn locate(yaml: &str, message: &str) -> Option<usize> {
    let lines: Vec<&str> = yaml.lines().collect();
    let key_at = |key: &str, from: usize| {
        (from..lines.len()).find(|&i| {
            let text = lines[i].trim_start().trim_start_matches("- ");
            text.starts_with(&format!("{key}:"))
                || text.contains(&format!("{{{key}:"))
                || text.contains(&format!(", {key}:"))
        })
    };
    if message.starts_with("invalid pipeline:") {
        return None;
    }
    if let Some(rest) = message.strip_prefix("steps[") {
        // The i-th item of the steps list: the i-th `-` at the indentation of the first one
        // (deeper dashes are lists inside a step).
        let index: usize = rest.split_once(']')?.0.parse().ok()?;
        let steps = lines.iter().position(|l| l.starts_with("steps:"))?;
        let indent = |line: &str| line.len() - line.trim_start().len();
        let items: Vec<usize> = lines
            .iter()
            .enumerate()
            .skip(steps + 1)
            .take_while(|(_, l)| l.trim().is_empty() || l.starts_with([' ', '-', '#']))
            .filter(|(_, l)| l.trim_start().starts_with('-'))
            .map(|(i, _)| i)
            .collect();
        let first = indent(lines[*items.first()?]);
        return items
            .into_iter()
            .filter(|&i| indent(lines[i]) == first)
            .nth(index)
            .map(|i| i + 1);
    }
    let field = message.split_once(':')?.0;
    if field.contains(' ') || field.is_empty() {
        return None;
    }
    let mut keys = field.split('.');
    // The first key is a top-level one: at the start of its line.
    let top = keys.next()?;
    let mut from = lines
        .iter()
        .position(|l| l.starts_with(&format!("{top}:")))?;
    for key in keys {
        from = key_at(key, from)?;
    }
    Some(from + 1)
}

/// Puts a step's section in its slot: a pipeline has at most one step of each kind but train.
fn place<T>(
    slot: &mut Option<T>,
    section: Option<T>,
    kind: StepKind,
    kinds: &mut Vec<StepKind>,
    at: &str,
) -> Result<(), ApiError> {
    let Some(section) = section else {
        return Ok(());
    };
    if slot.is_some() {
        return Err(ApiError::invalid_argument(format!(
            "{at}: a pipeline has one {} step",
            kind.as_str()
        )));
    }
    *slot = Some(section);
    kinds.push(kind);
    Ok(())
}

/// The steps' indices with every step after the steps it needs (Kahn's algorithm, ties in
/// file order); on a cycle, the names of the steps on or behind it.
pub fn topological_order(steps: &[StepNode]) -> Result<Vec<usize>, Vec<String>> {
    let index: BTreeMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut waiting: Vec<usize> = steps.iter().map(|s| s.needs.len()).collect();
    let mut order = Vec::with_capacity(steps.len());
    let mut ready: std::collections::VecDeque<usize> =
        (0..steps.len()).filter(|i| waiting[*i] == 0).collect();
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for (j, step) in steps.iter().enumerate() {
            let needed = step.needs.iter().filter(|n| index[n.as_str()] == i).count();
            if needed > 0 {
                waiting[j] -= needed;
                if waiting[j] == 0 {
                    ready.push_back(j);
                }
            }
        }
    }
    if order.len() == steps.len() {
        Ok(order)
    } else {
        Err((0..steps.len())
            .filter(|i| waiting[*i] > 0)
            .map(|i| steps[i].name.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quickstart_pipeline_parses() {
        let pipeline =
            Pipeline::parse(include_str!("../../../examples/pipelines/quickstart.yaml")).unwrap();
        assert_eq!(pipeline.dataset.name, "diabetes");
        assert_eq!(pipeline.dataset.source.as_deref(), Some("diabetes.csv"));
        assert_eq!(pipeline.candidates[0].spec.target, "target");
        let names: Vec<&str> = pipeline.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ingest",
                "train",
                "evaluate",
                "register",
                "promote",
                "smoke_test"
            ]
        );
        assert_eq!(pipeline.steps[3].needs, ["evaluate"]);
        assert_eq!(pipeline.register.model, "diabetes-linear");
        assert_eq!(pipeline.promote.unwrap().alias, "champion");
    }

    #[test]
    fn the_continuous_pipeline_has_a_schedule_and_a_drift_trigger() {
        let pipeline =
            Pipeline::parse(include_str!("../../../examples/pipelines/continuous.yaml")).unwrap();
        let triggers = &pipeline.triggers;
        assert!(triggers.any());
        assert_eq!(triggers.drift.as_ref().unwrap().min_interval_seconds, 3600);
        // 2026-11-28T12:00:00Z -> the next 03:00 UTC.
        let noon = 1_795_867_200_000;
        assert_eq!(triggers.next_scheduled(noon), Some(noon + 15 * 3_600_000));
        let one_off =
            Pipeline::parse(include_str!("../../../examples/pipelines/quickstart.yaml")).unwrap();
        assert!(!one_off.triggers.any());
        assert_eq!(one_off.triggers.next_scheduled(noon), None);
    }

    fn candidates_yaml() -> String {
        substitute_parameters(
            include_str!("../../../examples/pipelines/diabetes-candidates.yaml"),
            &std::collections::HashMap::new(),
        )
        .unwrap()
    }

    #[test]
    fn a_graph_of_steps_runs_candidates_side_by_side() {
        let pipeline = Pipeline::parse(&candidates_yaml()).unwrap();
        let trains: Vec<&str> = pipeline
            .candidates
            .iter()
            .map(|c| c.step.as_str())
            .collect();
        assert_eq!(trains, ["linear", "ridge", "tree"]);
        assert_eq!(pipeline.dataset.name, "diabetes");
        assert_eq!(pipeline.register.model, "diabetes-best");
        let order: Vec<&str> = topological_order(&pipeline.steps)
            .unwrap()
            .into_iter()
            .map(|i| pipeline.steps[i].name.as_str())
            .collect();
        assert_eq!(
            order,
            [
                "data", "check", "linear", "ridge", "tree", "gate", "register", "smoke", "promote"
            ]
        );
        assert_eq!(pipeline.validate.as_ref().unwrap().min_rows, 400);
        // Each candidate's cache digests are its own section's.
        assert_ne!(
            pipeline.candidates[0].digests.get("train.model"),
            pipeline.candidates[1].digests.get("train.model")
        );
    }

    #[test]
    fn errors_say_the_line() {
        let yaml = candidates_yaml();
        let line_of = |needle: &str| yaml.lines().position(|l| l.contains(needle)).unwrap() + 1;
        let error = Pipeline::parse(&yaml.replace(
            "needs: [linear, ridge, tree]",
            "needs: [linear, ridge, tre]",
        ))
        .unwrap_err();
        assert!(
            error
                .message
                .starts_with(&format!("line {}: steps[", line_of("- name: gate"))),
            "{}",
            error.message
        );
        let scheduled =
            format!("{yaml}triggers:\n  max_concurrent: 1\n  schedule: \"61 * * * *\"\n");
        let error = Pipeline::parse(&scheduled).unwrap_err();
        let line = scheduled.lines().count();
        assert!(
            error
                .message
                .starts_with(&format!("line {line}: triggers.schedule:")),
            "{}",
            error.message
        );
        // A duplicate name: the line of the second step of that name (dashes nested in a step,
        // like its columns, are not steps).
        let twice = yaml.replacen("  - name: tree", "  - name: ridge", 1);
        let error = Pipeline::parse(&twice).unwrap_err();
        assert!(
            error
                .message
                .starts_with(&format!("line {}: steps[4].name", line_of("- name: tree"))),
            "{}",
            error.message
        );
        // The YAML parser's own errors carry their line already.
        let error = Pipeline::parse("name: [").unwrap_err();
        assert!(
            error.message.starts_with("invalid pipeline:"),
            "{}",
            error.message
        );
    }

    #[test]
    fn bad_graphs_are_refused_with_the_step_and_the_reason() {
        let yaml = candidates_yaml();
        for (from, to, needle) in [
            (
                "needs: [smoke]",
                "needs: [smoke, promote]",
                "the step itself",
            ),
            (
                "needs: [linear, ridge, tree]",
                "needs: [linear, ridge, tre]",
                "\"tre\" is no step",
            ),
            (
                "needs: [register]",
                "needs: [promote]",
                "cycle through smoke, promote",
            ),
            (
                "    needs: [gate]\n",
                "    needs: [tree]\n",
                "\"register\" (register) must need \"gate\"",
            ),
            (
                "  - name: tree\n    needs: [check]\n",
                "  - name: tree\n",
                "\"tree\" (train) must need \"data\"",
            ),
            (
                "  - name: tree\n    needs: [check]\n",
                "  - name: tree\n    needs: [data]\n",
                "\"tree\" (train) must need \"check\" (validate)",
            ),
            (
                "      max_missing_share: 0\n",
                "      max_missing_share: 2\n",
                "validate.max_missing_share",
            ),
            (
                "  - name: tree",
                "  - name: ridge",
                "steps[4].name: \"ridge\" names an earlier step",
            ),
            (
                "    smoke_test: {rows: 3}",
                "    smoke_test: {rows: 3}\n    promote: {}",
                "one step type per step",
            ),
            (
                "    smoke_test: {rows: 3}",
                "    deploy: {rows: 3}",
                "unknown field `deploy`",
            ),
            (
                "    register: {model: diabetes-best}",
                "    notes: x",
                "unknown field `notes`",
            ),
        ] {
            assert!(yaml.contains(from), "{from}");
            let error = Pipeline::parse(&yaml.replacen(from, to, 1)).unwrap_err();
            assert!(
                error.message.contains(needle),
                "{needle}: {}",
                error.message
            );
        }
        let error = Pipeline::parse(&format!("{yaml}train: {{target: y}}\n")).unwrap_err();
        assert!(
            error.message.contains("train: with steps"),
            "{}",
            error.message
        );
        let no_gate = yaml.replace(
            "  - name: gate\n    needs: [linear, ridge, tree]\n    evaluate:",
            "  - name: gate\n    needs: [linear, ridge, tree]\n    smoke_test: {}\n    x_evaluate:",
        );
        assert!(Pipeline::parse(&no_gate).is_err());
        let mixed = yaml.replace("model: decision_tree\n", "model: logistic\n");
        let error = Pipeline::parse(&mixed).unwrap_err();
        assert!(
            error.message.contains("train step \"tree\""),
            "{}",
            error.message
        );
        // A canary after the smoke test is fine; side by side with it, not.
        let promote = "  - name: promote\n    needs: [smoke]\n";
        let after_smoke = yaml.replace(
            promote,
            "  - name: live\n    needs: [smoke]\n    canary: {share: 0.2}\n  - name: promote\n    needs: [live]\n",
        );
        let parsed = Pipeline::parse(&after_smoke).unwrap();
        assert_eq!(parsed.canary.as_ref().unwrap().share, 0.2);
        let side_by_side = after_smoke.replace(
            "  - name: live\n    needs: [smoke]",
            "  - name: live\n    needs: [register]",
        );
        let error = Pipeline::parse(&side_by_side).unwrap_err();
        assert!(
            error.message.contains(
                "\"live\" (canary) and \"smoke\" (smoke_test) must not run at the same time"
            ),
            "{}",
            error.message
        );
        let promote_first = after_smoke.replace(
            "  - name: promote\n    needs: [live]",
            "  - name: promote\n    needs: [smoke]",
        );
        let error = Pipeline::parse(&promote_first).unwrap_err();
        assert!(
            error
                .message
                .contains("\"promote\" (promote) must need \"live\" (canary)"),
            "{}",
            error.message
        );
    }

    #[test]
    fn bad_pipelines_name_the_field() {
        let base =
            "name: p\ndataset: {name: d, source: SRC}\ntrain: {target: y}\nregister: {model: m}\n";
        let error = Pipeline::parse(&base.replace("SRC", "../etc/passwd")).unwrap_err();
        assert!(
            error.message.contains("dataset.source"),
            "{}",
            error.message
        );
        let error = Pipeline::parse(&format!(
            "{}evaluate: {{metric: accuracy}}\n",
            base.replace("SRC", "d.csv")
        ))
        .unwrap_err();
        assert!(
            error.message.contains("evaluate.metric"),
            "{}",
            error.message
        );
        for (canary, needle) in [
            ("canary: {share: 0}\n", "canary.share"),
            (
                "canary: {duration_seconds: 90, timeout_seconds: 60}\n",
                "canary.timeout_seconds",
            ),
            ("canary: {min_requests: 0}\n", "canary.min_requests"),
            ("canary: {}\n", "canary: needs a promote step"),
        ] {
            let error =
                Pipeline::parse(&format!("{}{canary}", base.replace("SRC", "d.csv"))).unwrap_err();
            assert!(error.message.contains(needle), "{}", error.message);
        }
        let with_canary = Pipeline::parse(&format!(
            "{}promote: {{}}\ncanary: {{share: 0.25}}\n",
            base.replace("SRC", "d.csv")
        ))
        .unwrap();
        let names: Vec<&str> = with_canary.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ingest",
                "train",
                "evaluate",
                "register",
                "canary",
                "promote",
                "smoke_test"
            ]
        );
        let error =
            Pipeline::parse(&format!("{}colour: red\n", base.replace("SRC", "d.csv"))).unwrap_err();
        assert!(error.message.contains("colour"), "{}", error.message);
        assert!(Pipeline::parse("name: [").is_err());
    }

    #[test]
    fn parameters_are_substituted_with_their_types() {
        let yaml = "name: p\nparameters:\n  seed: 42\n  model: linear\n  strict: true\ntrain:\n  seed: ${seed}\n  model: ${model}\n";
        let none = std::collections::HashMap::new();
        let resolved = substitute_parameters(yaml, &none).unwrap();
        assert!(resolved.contains("seed: 42\n  model: linear"), "{resolved}");
        let given: std::collections::HashMap<String, String> =
            [("seed".to_string(), "7".to_string())].into();
        assert!(
            substitute_parameters(yaml, &given)
                .unwrap()
                .contains("seed: 7")
        );
        for (name, value, needle) in [
            ("seed", "seven", "not a number"),
            ("strict", "yes", "not true or false"),
            ("nope", "1", "not declared"),
        ] {
            let bad: std::collections::HashMap<String, String> =
                [(name.to_string(), value.to_string())].into();
            let error = substitute_parameters(yaml, &bad).unwrap_err();
            assert!(error.message.contains(needle), "{}", error.message);
        }
        let unknown = substitute_parameters("name: p\ntrain:\n  seed: ${x}\n", &none).unwrap_err();
        assert!(
            unknown.message.contains("${x} names no parameter"),
            "{}",
            unknown.message
        );
        // A string value cannot inject YAML: it stays one quoted scalar.
        let injected: std::collections::HashMap<String, String> =
            [("model".to_string(), "x\nevaluate: {}".to_string())].into();
        let resolved = substitute_parameters(yaml, &injected).unwrap();
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&resolved).unwrap();
        assert_eq!(value["train"]["model"].as_str(), Some("x\nevaluate: {}"));
    }
}
