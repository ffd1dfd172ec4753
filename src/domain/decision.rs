//! The decision ledger's receipts: `perfgate.tradeoff.v1`, `perfgate.scenario.v1` and
//! `perfgate.decision_index.v1` (perfgate 0.18.1).
//!
//! Like run receipts, they are stored exactly as uploaded; this module decides whether the JSON
//! fits the schema the perfgate CLI reads back (every stored record must deserialize in
//! `perfgate decision history|latest|debt|export`, so a receipt the CLI could not read is refused
//! with the field named), and pulls out what the record carries beside the receipts: scenario,
//! status, verdict, accepted rules and the review flag.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::names::{check_text, NameError};
use super::receipt::{ReceiptError, RunMeta, ToolInfo};
use super::requests::{DECISION_NAME_MAX_BYTES, DECISION_RULES_MAX};

pub const TRADEOFF_SCHEMA_V1: &str = "perfgate.tradeoff.v1";
pub const SCENARIO_SCHEMA_V1: &str = "perfgate.scenario.v1";
pub const DECISION_INDEX_SCHEMA_V1: &str = "perfgate.decision_index.v1";

/// A metric or verdict status (`MetricStatus` / `VerdictStatus`: the same four names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionStatus {
    Pass,
    Warn,
    Fail,
    Skip,
}

impl DecisionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
            Self::Skip => "skip",
        }
    }
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum TradeoffMetric {
    BinaryBytes,
    CpuMs,
    CtxSwitches,
    EnergyUj,
    IoReadBytes,
    IoWriteBytes,
    MaxRssKb,
    NetworkPackets,
    PageFaults,
    ThroughputPerS,
    WallMs,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct CompareRef {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    run_id: Option<String>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum SignificanceTest {
    WelchT,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct Significance {
    test: SignificanceTest,
    p_value: Option<f64>,
    alpha: f64,
    significant: bool,
    baseline_samples: u32,
    current_samples: u32,
    #[serde(default)]
    ci_lower: Option<f64>,
    #[serde(default)]
    ci_upper: Option<f64>,
}

// Fields the perfgate types default when absent but do not take as `null` are plain fields with
// `#[serde(default)]` here too (an `Option` would let a `null` through that the CLI cannot read).
#[derive(Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum MetricStatistic {
    #[default]
    Median,
    P95,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct Delta {
    baseline: f64,
    current: f64,
    ratio: f64,
    pct: f64,
    regression: f64,
    #[serde(default)]
    cv: Option<f64>,
    #[serde(default)]
    noise_threshold: Option<f64>,
    #[serde(default)]
    statistic: MetricStatistic,
    #[serde(default)]
    significance: Option<Significance>,
    status: DecisionStatus,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct TradeoffRequirement {
    metric: TradeoffMetric,
    #[serde(default)]
    probe: Option<String>,
    min_improvement_ratio: f64,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct TradeoffAllowance {
    metric: TradeoffMetric,
    probe: String,
    max_regression: f64,
}

#[derive(Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum TradeoffDowngrade {
    #[default]
    Warn,
    Pass,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct TradeoffRule {
    name: String,
    if_failed: TradeoffMetric,
    require: Vec<TradeoffRequirement>,
    #[serde(default)]
    allow: Vec<TradeoffAllowance>,
    #[serde(default)]
    downgrade_to: TradeoffDowngrade,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum TradeoffDecisionStatus {
    Accepted,
    Rejected,
    NeedsReview,
    NotEvaluated,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct TradeoffRequirementOutcome {
    metric: String,
    #[serde(default)]
    probe: Option<String>,
    required_change: f64,
    #[serde(default)]
    observed_change: Option<f64>,
    satisfied: bool,
    status: DecisionStatus,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct TradeoffAllowanceOutcome {
    metric: String,
    probe: String,
    max_regression: f64,
    #[serde(default)]
    observed_regression: Option<f64>,
    satisfied: bool,
    status: DecisionStatus,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct TradeoffRuleOutcome {
    name: String,
    status: TradeoffDecisionStatus,
    accepted: bool,
    #[serde(default)]
    downgrade_to: Option<TradeoffDowngrade>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    requirements: Vec<TradeoffRequirementOutcome>,
    #[serde(default)]
    allowances: Vec<TradeoffAllowanceOutcome>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum ProbeScope {
    Local,
    Enclosing,
    Dominant,
    Total,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct TradeoffProbeOutcome {
    name: String,
    #[serde(default)]
    scope: Option<ProbeScope>,
    #[serde(default)]
    weight: Option<f64>,
    #[serde(default)]
    deltas: BTreeMap<String, Delta>,
    status: DecisionStatus,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct TradeoffDecision {
    accepted_tradeoff: bool,
    #[serde(default)]
    review_required: bool,
    #[serde(default)]
    review_reasons: Vec<String>,
    status: DecisionStatus,
    reason: String,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct VerdictCounts {
    pass: u32,
    warn: u32,
    fail: u32,
    skip: u32,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct ReceiptVerdict {
    status: DecisionStatus,
    counts: VerdictCounts,
    reasons: Vec<String>,
}

/// A `perfgate.tradeoff.v1` receipt (`perfgate tradeoff evaluate`, `perfgate decision evaluate`).
/// Unknown fields are allowed and kept.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TradeoffReceipt {
    #[schema(value_type = String, pattern = r"^perfgate\.tradeoff\.v1$", example = "perfgate.tradeoff.v1")]
    schema: String,
    tool: ToolInfo,
    run: RunMeta,
    #[serde(default)]
    scenario: Option<String>,
    #[serde(default)]
    baseline_ref: Option<CompareRef>,
    #[serde(default)]
    current_ref: Option<CompareRef>,
    #[serde(default)]
    configured_rules: Vec<TradeoffRule>,
    rules: Vec<TradeoffRuleOutcome>,
    #[serde(default)]
    probes: Vec<TradeoffProbeOutcome>,
    #[serde(default)]
    weighted_deltas: BTreeMap<String, Delta>,
    decision: TradeoffDecision,
    verdict: ReceiptVerdict,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct ScenarioMeta {
    name: String,
    weight: f64,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    command: Option<Vec<String>>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct ScenarioComponent {
    name: String,
    weight: f64,
    #[serde(default)]
    benchmark: Option<String>,
    #[serde(default)]
    compare_ref: Option<CompareRef>,
    #[serde(default)]
    probe_compare_ref: Option<CompareRef>,
    #[serde(default)]
    deltas: BTreeMap<String, Delta>,
    #[serde(default)]
    probes: Vec<String>,
    status: DecisionStatus,
    #[serde(default)]
    reasons: Vec<String>,
}

/// A `perfgate.scenario.v1` receipt (`perfgate scenario evaluate`). Unknown fields are allowed
/// and kept.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ScenarioReceipt {
    #[schema(value_type = String, pattern = r"^perfgate\.scenario\.v1$", example = "perfgate.scenario.v1")]
    schema: String,
    tool: ToolInfo,
    run: RunMeta,
    scenario: ScenarioMeta,
    #[serde(default)]
    baseline_ref: Option<CompareRef>,
    #[serde(default)]
    current_ref: Option<CompareRef>,
    components: Vec<ScenarioComponent>,
    #[serde(default)]
    weighted_deltas: BTreeMap<String, Delta>,
    verdict: ReceiptVerdict,
    #[serde(default)]
    warnings: Vec<String>,
}

/// A `perfgate.decision_index.v1` manifest (`perfgate decision evaluate --index-out`).
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct DecisionArtifactIndex {
    #[schema(value_type = String, pattern = r"^perfgate\.decision_index\.v1$", example = "perfgate.decision_index.v1")]
    schema: String,
    scenario: String,
    tradeoff: String,
    decision: String,
    probe_compares: Vec<String>,
    compare_receipts: Vec<String>,
}

/// What a decision record carries beside its receipts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionSummary {
    /// The tradeoff's scenario, else the scenario receipt's name.
    pub scenario: Option<String>,
    /// The tradeoff's final decision status.
    pub status: DecisionStatus,
    /// The tradeoff's verdict status.
    pub verdict: DecisionStatus,
    /// Names of the rules with `accepted: true`, in receipt order.
    pub accepted_rules: Vec<String>,
    pub review_required: bool,
    pub review_reasons: Vec<String>,
}

/// Why an upload was refused: a receipt that does not fit its schema (422, naming the field), or
/// a schema id or name the ledger does not take (400, naming the field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionError {
    Shape(ReceiptError),
    Invalid(NameError),
}

impl From<NameError> for DecisionError {
    fn from(e: NameError) -> Self {
        Self::Invalid(e)
    }
}

/// Only the `schema` of a receipt, to refuse another kind of receipt by its id before its shape.
#[derive(Deserialize)]
struct SchemaId {
    #[serde(default)]
    schema: Option<String>,
}

fn parse<T: serde::de::DeserializeOwned + Serialize>(
    label: &'static str,
    schema_field: &'static str,
    expected: &str,
    json: &str,
) -> Result<T, DecisionError> {
    if let Ok(SchemaId {
        schema: Some(found),
    }) = serde_json::from_str::<SchemaId>(json)
    {
        if found != expected {
            return Err(NameError::new(
                schema_field,
                format!("expected \"{expected}\", got {found:?}"),
            )
            .into());
        }
    }
    let de = &mut serde_json::Deserializer::from_str(json);
    let value: T =
        serde_path_to_error::deserialize(super::strict::Strict(&mut *de)).map_err(|e| {
            DecisionError::Shape(ReceiptError {
                field: super::strict::error_field(&e, Some(label)).unwrap_or_default(),
                message: strip_position(&e.inner().to_string()),
            })
        })?;
    de.end().map_err(|e| {
        DecisionError::Shape(ReceiptError {
            field: label.to_owned(),
            message: strip_position(&e.to_string()),
        })
    })?;
    // serde also takes a unit variant as `{"variant": null}` (and, without the strict reading
    // above, a struct as an array of its fields); that is not the receipt's schema, and it
    // would be handed back as sent.
    let sent: serde_json::Value = serde_json::from_str(json).map_err(|e| {
        DecisionError::Shape(ReceiptError {
            field: label.to_owned(),
            message: strip_position(&e.to_string()),
        })
    })?;
    let read = serde_json::to_value(&value).map_err(|e| {
        DecisionError::Shape(ReceiptError {
            field: label.to_owned(),
            message: e.to_string(),
        })
    })?;
    same_kinds(&sent, &read, label.to_owned()).map_err(DecisionError::Shape)?;
    Ok(value)
}

/// The JSON kind of every value `read` (the typed reading of `sent`, serialized again) holds is
/// the kind `sent` has at the same place; fields `read` lacks (unknown ones) are not compared.
fn same_kinds(
    sent: &serde_json::Value,
    read: &serde_json::Value,
    path: String,
) -> Result<(), ReceiptError> {
    use serde_json::Value as V;
    let kind = |v: &V| match v {
        V::Null => "null",
        V::Bool(_) => "a boolean",
        V::Number(_) => "a number",
        V::String(_) => "a string",
        V::Array(_) => "an array",
        V::Object(_) => "an object",
    };
    match (sent, read) {
        (V::Object(s), V::Object(r)) => {
            for (k, rv) in r {
                if let Some(sv) = s.get(k) {
                    same_kinds(sv, rv, format!("{path}.{k}"))?;
                }
            }
            Ok(())
        }
        (V::Array(s), V::Array(r)) => {
            for (i, (sv, rv)) in s.iter().zip(r).enumerate() {
                same_kinds(sv, rv, format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (s, r) if kind(s) == kind(r) => Ok(()),
        (s, r) => Err(ReceiptError {
            field: path,
            message: format!("expected {}, got {}", kind(r), kind(s)),
        }),
    }
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Checks an upload's receipts (the scenario receipt and artifact index are optional) and returns
/// what the record keeps beside them.
pub fn validate(
    tradeoff: &str,
    scenario: Option<&str>,
    artifact_index: Option<&str>,
) -> Result<DecisionSummary, DecisionError> {
    let t: TradeoffReceipt = parse("tradeoff", "tradeoff.schema", TRADEOFF_SCHEMA_V1, tradeoff)?;
    t.run.check("tradeoff.run").map_err(DecisionError::Shape)?;
    if let Some(name) = &t.scenario {
        check_text("tradeoff.scenario", name, DECISION_NAME_MAX_BYTES)?;
    }
    if t.rules.len() > DECISION_RULES_MAX {
        return Err(NameError::new(
            "tradeoff.rules",
            format!("at most {DECISION_RULES_MAX} rules"),
        )
        .into());
    }
    for rule in &t.rules {
        check_text("tradeoff.rules.name", &rule.name, DECISION_NAME_MAX_BYTES)?;
    }
    let scenario_name = match scenario {
        Some(json) => {
            let s: ScenarioReceipt =
                parse("scenario", "scenario.schema", SCENARIO_SCHEMA_V1, json)?;
            s.run.check("scenario.run").map_err(DecisionError::Shape)?;
            check_text(
                "scenario.scenario.name",
                &s.scenario.name,
                DECISION_NAME_MAX_BYTES,
            )?;
            Some(s.scenario.name)
        }
        None => None,
    };
    if let Some(json) = artifact_index {
        parse::<DecisionArtifactIndex>(
            "artifact_index",
            "artifact_index.schema",
            DECISION_INDEX_SCHEMA_V1,
            json,
        )?;
    }
    Ok(DecisionSummary {
        scenario: t.scenario.or(scenario_name),
        status: t.decision.status,
        verdict: t.verdict.status,
        accepted_rules: t
            .rules
            .into_iter()
            .filter(|r| r.accepted)
            .map(|r| r.name)
            .collect(),
        review_required: t.decision.review_required,
        review_reasons: t.decision.review_reasons,
    })
}

/// A status filter (`status`, `verdict`): one of the four names.
pub fn parse_status(field: &'static str, s: &str) -> Result<DecisionStatus, NameError> {
    match s {
        "pass" => Ok(DecisionStatus::Pass),
        "warn" => Ok(DecisionStatus::Warn),
        "fail" => Ok(DecisionStatus::Fail),
        "skip" => Ok(DecisionStatus::Skip),
        _ => Err(NameError::new(
            field,
            "expected one of pass, warn, fail, skip",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRADEOFF: &str = include_str!("../../tests/fixtures/tradeoff-accepted.json");
    const SCENARIO: &str = include_str!("../../tests/fixtures/scenario-checkout.json");
    const INDEX: &str = include_str!("../../tests/fixtures/decision-index.json");

    #[test]
    fn fixtures_validate_and_summarize() {
        let s = validate(TRADEOFF, Some(SCENARIO), Some(INDEX)).unwrap();
        assert_eq!(s.scenario.as_deref(), Some("checkout"));
        assert_eq!(s.status, DecisionStatus::Warn);
        assert_eq!(s.verdict, DecisionStatus::Warn);
        assert_eq!(s.accepted_rules, ["wall-for-rss"]);
        assert!(!s.review_required);
    }

    #[test]
    fn scenario_name_comes_from_the_scenario_receipt_when_the_tradeoff_has_none() {
        let mut t: serde_json::Value = serde_json::from_str(TRADEOFF).unwrap();
        t.as_object_mut().unwrap().shift_remove("scenario");
        let t = t.to_string();
        assert_eq!(validate(&t, None, None).unwrap().scenario, None);
        assert_eq!(
            validate(&t, Some(SCENARIO), None)
                .unwrap()
                .scenario
                .as_deref(),
            Some("checkout")
        );
    }

    #[test]
    fn schema_ids_are_checked_exactly_and_named() {
        let other = TRADEOFF.replacen("perfgate.tradeoff.v1", "perfgate.tradeoff.v2", 1);
        match validate(&other, None, None).unwrap_err() {
            DecisionError::Invalid(e) => assert_eq!(e.field, "tradeoff.schema"),
            e => panic!("{e:?}"),
        }
        // A run receipt sent as a tradeoff is refused by its id, not its shape.
        let run = include_str!("../../tests/fixtures/run-bench-a-1.json");
        match validate(run, None, None).unwrap_err() {
            DecisionError::Invalid(e) => assert_eq!(e.field, "tradeoff.schema"),
            e => panic!("{e:?}"),
        }
        match validate(TRADEOFF, Some(TRADEOFF), None).unwrap_err() {
            DecisionError::Invalid(e) => assert_eq!(e.field, "scenario.schema"),
            e => panic!("{e:?}"),
        }
        match validate(TRADEOFF, None, Some(SCENARIO)).unwrap_err() {
            DecisionError::Invalid(e) => assert_eq!(e.field, "artifact_index.schema"),
            e => panic!("{e:?}"),
        }
    }

    /// The accepted fixture with one change.
    fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut t: serde_json::Value = serde_json::from_str(TRADEOFF).unwrap();
        edit(&mut t);
        t.to_string()
    }

    #[test]
    fn shape_errors_name_the_field() {
        let bad = edited(|t| t["rules"][0]["accepted"] = "yes".into());
        match validate(&bad, None, None).unwrap_err() {
            DecisionError::Shape(e) => assert_eq!(e.field, "tradeoff.rules[0].accepted"),
            e => panic!("{e:?}"),
        }
        let bad = edited(|t| t["weighted_deltas"]["wall_ms"]["ratio"] = "fast".into());
        match validate(&bad, None, None).unwrap_err() {
            DecisionError::Shape(e) => {
                assert_eq!(e.field, "tradeoff.weighted_deltas.wall_ms.ratio")
            }
            e => panic!("{e:?}"),
        }
        // `null` only where the perfgate types take it.
        let bad =
            edited(|t| t["weighted_deltas"]["wall_ms"]["statistic"] = serde_json::Value::Null);
        assert!(matches!(
            validate(&bad, None, None),
            Err(DecisionError::Shape(_))
        ));
        let bad = edited(|t| t["configured_rules"][0]["downgrade_to"] = serde_json::Value::Null);
        assert!(matches!(
            validate(&bad, None, None),
            Err(DecisionError::Shape(_))
        ));
        let fine = edited(|t| t["rules"][0]["downgrade_to"] = serde_json::Value::Null);
        assert!(validate(&fine, None, None).is_ok());
        match validate("{\"schema\":\"perfgate.tradeoff.v1\"}", None, None).unwrap_err() {
            DecisionError::Shape(e) => {
                assert_eq!(e.field, "tradeoff");
                assert!(e.message.contains("missing field"), "{e:?}");
            }
            e => panic!("{e:?}"),
        }
        for not_an_object in ["[]", "1", "null"] {
            assert!(matches!(
                validate(not_an_object, None, None),
                Err(DecisionError::Shape(_))
            ));
        }
        // Only objects for structs and strings for enums, as the schema says.
        let bad = edited(|t| t["run"]["host"] = serde_json::json!(["linux", "x86_64"]));
        match validate(&bad, None, None).unwrap_err() {
            DecisionError::Shape(e) => {
                assert_eq!(e.field, "tradeoff.run.host");
                assert_eq!(
                    e.message,
                    "invalid type: sequence, expected struct HostInfo"
                );
            }
            e => panic!("{e:?}"),
        }
        let bad = edited(|t| t["decision"]["status"] = serde_json::json!({"warn": null}));
        match validate(&bad, None, None).unwrap_err() {
            DecisionError::Shape(e) => assert_eq!(e.field, "tradeoff.decision.status"),
            e => panic!("{e:?}"),
        }
        let bad = edited(|t| {
            t["rules"][0]["requirements"][0] =
                serde_json::json!(["wall_ms", null, 1.1, 1.2, true, "pass", null])
        });
        match validate(&bad, None, None).unwrap_err() {
            DecisionError::Shape(e) => assert_eq!(e.field, "tradeoff.rules[0].requirements[0]"),
            e => panic!("{e:?}"),
        }
        let with_unknown = edited(|t| t["zz"] = serde_json::json!([1, {"a": []}]));
        assert!(validate(&with_unknown, None, None).is_ok());
        match validate(&format!("{TRADEOFF} x"), None, None).unwrap_err() {
            DecisionError::Shape(e) => assert_eq!(e.field, "tradeoff"),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn names_are_bounded() {
        let long = "x".repeat(DECISION_NAME_MAX_BYTES + 1);
        let bad = edited(|t| t["scenario"] = long.clone().into());
        match validate(&bad, None, None).unwrap_err() {
            DecisionError::Invalid(e) => assert_eq!(e.field, "tradeoff.scenario"),
            e => panic!("{e:?}"),
        }
        let bad = edited(|t| t["rules"][0]["name"] = "a\u{0}b".into());
        match validate(&bad, None, None).unwrap_err() {
            DecisionError::Invalid(e) => assert_eq!(e.field, "tradeoff.rules.name"),
            e => panic!("{e:?}"),
        }
        let ok = edited(|t| t["scenario"] = "x".repeat(DECISION_NAME_MAX_BYTES).into());
        assert!(validate(&ok, None, None).is_ok());
    }

    #[test]
    fn statuses() {
        assert_eq!(
            parse_status("status", "warn").unwrap(),
            DecisionStatus::Warn
        );
        assert_eq!(
            parse_status("verdict", "nope").unwrap_err().field,
            "verdict"
        );
        for s in ["pass", "warn", "fail", "skip"] {
            assert_eq!(parse_status("status", s).unwrap().as_str(), s);
        }
    }
}
