//! `perfgate.run.v1` receipts (contract §7).
//!
//! The server stores the receipt exactly as uploaded and hands those bytes back; this module only
//! decides whether the JSON fits the schema (naming the offending field when it does not) and
//! pulls out the few numbers that are denormalised into columns.

use serde::Deserialize;

use super::summary::{self, RunSummary};

pub const RUN_SCHEMA_V1: &str = "perfgate.run.v1";

/// Error naming the receipt field that does not fit, e.g. `receipt.stats.wall_ms.median`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ReceiptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Invalid receipt at '{}': {}", self.field, self.message)
    }
}

/// A `perfgate.run.v1` receipt (contract §7). Unknown fields are allowed and kept.
#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // fields exist to be type-checked
pub struct RunReceipt {
    #[schema(value_type = String, pattern = r"^perfgate\.run\.v1$", example = "perfgate.run.v1")]
    schema: String,
    tool: ToolInfo,
    run: RunMeta,
    bench: BenchMeta,
    samples: Vec<Sample>,
    stats: Stats,
}

#[derive(Deserialize, serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ToolInfo {
    name: String,
    version: String,
}

#[derive(Deserialize, serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct RunMeta {
    id: String,
    started_at: String,
    ended_at: String,
    host: HostInfo,
}

impl RunMeta {
    /// Checks the fields a run receipt's summary stores in columns and indexes of their own (run
    /// summaries, gate runs, failed runs), where PostgreSQL refuses a NUL in text and an index
    /// entry over about 2.7 KB: `id` at most [`RUN_ID_MAX_BYTES`](super::requests::RUN_ID_MAX_BYTES),
    /// `host.os` and `host.arch` at most [`HOST_FIELD_MAX_BYTES`], none with control characters.
    /// Every receipt that carries a `run` (decisions' too) is held to the same bounds, so that the
    /// document describes one `RunMeta`. `at` names the object, e.g. `receipt.run`.
    pub(crate) fn check(&self, at: &str) -> Result<(), ReceiptError> {
        for (name, value, max) in [
            ("id", &self.id, super::requests::RUN_ID_MAX_BYTES),
            ("host.os", &self.host.os, HOST_FIELD_MAX_BYTES),
            ("host.arch", &self.host.arch, HOST_FIELD_MAX_BYTES),
        ] {
            super::names::check_text("run", value, max).map_err(|e| ReceiptError {
                field: format!("{at}.{name}"),
                message: e.reason,
            })?;
        }
        Ok(())
    }
}

#[derive(Deserialize, serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct HostInfo {
    os: String,
    arch: String,
    #[serde(default)]
    cpu_count: Option<u32>,
    #[serde(default)]
    memory_bytes: Option<u64>,
    #[serde(default)]
    hostname_hash: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct BenchMeta {
    name: String,
    #[serde(default)]
    cwd: Option<String>,
    command: Vec<String>,
    repeat: u32,
    warmup: u32,
    #[serde(default)]
    work_units: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct Sample {
    wall_ms: u64,
    exit_code: i32,
    #[serde(default)]
    warmup: bool,
    #[serde(default)]
    timed_out: bool,
    #[serde(default)]
    cpu_ms: Option<u64>,
    #[serde(default)]
    page_faults: Option<u64>,
    #[serde(default)]
    ctx_switches: Option<u64>,
    #[serde(default)]
    max_rss_kb: Option<u64>,
    #[serde(default)]
    io_read_bytes: Option<u64>,
    #[serde(default)]
    io_write_bytes: Option<u64>,
    #[serde(default)]
    network_packets: Option<u64>,
    #[serde(default)]
    energy_uj: Option<u64>,
    #[serde(default)]
    binary_bytes: Option<u64>,
    #[serde(default)]
    stdout: Option<String>,
    #[serde(default)]
    stderr: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct U64Summary {
    median: u64,
    min: u64,
    max: u64,
    #[serde(default)]
    mean: Option<f64>,
    #[serde(default)]
    stddev: Option<f64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct F64Summary {
    median: f64,
    min: f64,
    max: f64,
    #[serde(default)]
    mean: Option<f64>,
    #[serde(default)]
    stddev: Option<f64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct Stats {
    wall_ms: U64Summary,
    #[serde(default)]
    cpu_ms: Option<U64Summary>,
    #[serde(default)]
    page_faults: Option<U64Summary>,
    #[serde(default)]
    ctx_switches: Option<U64Summary>,
    #[serde(default)]
    max_rss_kb: Option<U64Summary>,
    #[serde(default)]
    io_read_bytes: Option<U64Summary>,
    #[serde(default)]
    io_write_bytes: Option<U64Summary>,
    #[serde(default)]
    network_packets: Option<U64Summary>,
    #[serde(default)]
    energy_uj: Option<U64Summary>,
    #[serde(default)]
    binary_bytes: Option<U64Summary>,
    #[serde(default)]
    throughput_per_s: Option<F64Summary>,
}

/// What the server keeps from a valid receipt besides its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptSummary {
    pub wall_ms_median: u64,
    pub bench_name: String,
    /// The median of every metric present in `stats`.
    pub medians: std::collections::BTreeMap<&'static str, f64>,
    /// `run.id`: ties the run to the gates that judged it.
    pub run_id: String,
    /// The runner class of the host that measured it (see [`runner_class`]).
    pub host_class: String,
    /// The gate's per-run summary of every metric with usable samples.
    pub runs: Vec<(&'static str, RunSummary)>,
}

/// The runner class of a host: OS, architecture and CPU count. CI runners of one class are
/// interchangeable; their hostnames differ, so the hostname is not part of it. A gate's optional
/// `runner` label narrows it further (`linux/x86_64/2#gpu`).
pub fn runner_class(host_class: &str, label: Option<&str>) -> String {
    match label {
        Some(l) if !l.is_empty() => format!("{host_class}#{l}"),
        _ => host_class.to_owned(),
    }
}

/// Metrics measured per sample as integers (quantum 1 of their unit).
const SAMPLE_METRICS: &[&str] = &[
    "wall_ms",
    "cpu_ms",
    "page_faults",
    "ctx_switches",
    "max_rss_kb",
    "io_read_bytes",
    "io_write_bytes",
    "network_packets",
    "energy_uj",
    "binary_bytes",
];

impl Sample {
    fn value(&self, metric: &str) -> Option<u64> {
        match metric {
            "wall_ms" => Some(self.wall_ms),
            "cpu_ms" => self.cpu_ms,
            "page_faults" => self.page_faults,
            "ctx_switches" => self.ctx_switches,
            "max_rss_kb" => self.max_rss_kb,
            "io_read_bytes" => self.io_read_bytes,
            "io_write_bytes" => self.io_write_bytes,
            "network_packets" => self.network_packets,
            "energy_uj" => self.energy_uj,
            "binary_bytes" => self.binary_bytes,
            _ => None,
        }
    }

    fn for_gate(&self, value: f64) -> summary::Sample {
        summary::Sample {
            value,
            warmup: self.warmup,
            failed: self.exit_code != 0,
            timed_out: self.timed_out,
        }
    }
}

/// Per-run summaries of every metric the samples carry, and throughput (`work_units` per second
/// of wall time) when the receipt has work units.
fn run_summaries(r: &RunReceipt) -> Vec<(&'static str, RunSummary)> {
    let mut out = Vec::new();
    for &metric in SAMPLE_METRICS {
        let samples: Vec<summary::Sample> = r
            .samples
            .iter()
            .filter_map(|s| s.value(metric).map(|v| s.for_gate(v as f64)))
            .collect();
        if let Some(sum) = summary::summarize(&samples, 1.0) {
            out.push((metric, sum));
        }
    }
    // ln(throughput) = ln(units · 1000) − ln(wall_ms): the wall-time summary mirrored, so the
    // rounding of the wall time stays in its spread.
    let wall = out.iter().find(|(m, _)| *m == "wall_ms").map(|(_, s)| *s);
    if let (Some(units), Some(wall)) = (r.bench.work_units.filter(|u| *u > 0), wall) {
        out.push((
            "throughput_per_s",
            RunSummary {
                center: (units as f64 * 1000.0).ln() - wall.center,
                ..wall
            },
        ));
    }
    out
}

impl ReceiptSummary {
    pub fn medians_json(&self) -> String {
        serde_json::to_string(&self.medians).unwrap_or_else(|_| "{}".into())
    }
}

/// A JSON value read and dropped as it is read, failing where a number does not fit a double
/// (serde_json refuses `1e99999` where it computes the number; skipping a value does not).
/// Unlike a `serde_json::Value` it keeps nothing: no map, string or vector is allocated.
struct NumbersFit;

impl<'de> Deserialize<'de> for NumbersFit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumbersFit)
    }
}

impl<'de> serde::de::Visitor<'de> for NumbersFit {
    type Value = NumbersFit;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NumbersFit>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while let Some(key) = map.next_key::<Key>()? {
            if key.0 {
                return Err(serde::de::Error::custom(RAW_VALUE_TOKEN));
            }
            map.next_value::<NumbersFit>()?;
        }
        Ok(self)
    }
}

/// The key by which serde_json (with `raw_value`) marks an object as a raw value: a `Value`
/// reads such an object differently, so [`numbers_fit`] leaves a text holding it to `Value`.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// A map key, read without allocating: whether it is [`RAW_VALUE_TOKEN`].
struct Key(bool);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Key(false))
    }
}

impl<'de> serde::de::Visitor<'de> for Key {
    type Value = Key;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E>(self, k: &str) -> Result<Self, E> {
        Ok(Key(k == RAW_VALUE_TOKEN))
    }
}

/// Whether `json` parses as a `serde_json::Value` would, without building one.
fn numbers_fit(json: &str) -> Result<(), serde_json::Error> {
    match serde_json::from_str::<NumbersFit>(json) {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().starts_with(RAW_VALUE_TOKEN) => {
            serde_json::from_str::<serde_json::Value>(json).map(drop)
        }
        Err(e) => Err(e),
    }
}

/// The longest `run.host.os` and `run.host.arch` a receipt may carry (they name the runner
/// class a run's history is kept under).
pub const HOST_FIELD_MAX_BYTES: usize = 64;

/// Checks that `json` is a `perfgate.run.v1` receipt (a receipt a client sends: every object
/// is read strictly, see [`super::strict`]).
pub fn validate(json: &str) -> Result<ReceiptSummary, ReceiptError> {
    read(json, true)
}

/// Summarises a receipt the server stored once, as the server read it then: before the strict
/// reading, serde also took an object's fields as an array in order, and such a receipt, once
/// acknowledged, stays readable (a gate opened before an upgrade records its runs after it).
pub fn validate_stored(json: &str) -> Result<ReceiptSummary, ReceiptError> {
    read(json, false)
}

fn read(json: &str, strict: bool) -> Result<ReceiptSummary, ReceiptError> {
    let de = &mut serde_json::Deserializer::from_str(json);
    let parsed: Result<RunReceipt, _> = if strict {
        serde_path_to_error::deserialize(super::strict::Strict(&mut *de))
    } else {
        serde_path_to_error::deserialize(&mut *de)
    };
    let r = parsed.map_err(|e| ReceiptError {
        field: super::strict::error_field(&e, Some("receipt")).unwrap_or_default(),
        message: strip_position(&e.inner().to_string()),
    })?;
    // One JSON value and nothing after it (found by the `receipt` fuzz target: trailing bytes
    // were accepted, and `normalize` then failed on the same text).
    de.end().map_err(|e| ReceiptError {
        field: "receipt".into(),
        message: strip_position(&e.to_string()),
    })?;
    // Every number fits a double, also where the typed parse above skips the value (a
    // `stddev`, an unknown field): `1e99999` is JSON but no client can read it back, and
    // `normalize` could not rewrite it (found by the `receipt` fuzz target).
    if let Err(e) = numbers_fit(json) {
        return Err(ReceiptError {
            field: "receipt".into(),
            message: strip_position(&e.to_string()),
        });
    }
    if r.schema != RUN_SCHEMA_V1 {
        return Err(ReceiptError {
            field: "receipt.schema".into(),
            message: format!("expected \"{RUN_SCHEMA_V1}\", got {:?}", r.schema),
        });
    }
    if strict {
        r.run.check("receipt.run")?;
    }
    let st = &r.stats;
    let mut medians = std::collections::BTreeMap::new();
    medians.insert("wall_ms", st.wall_ms.median as f64);
    for (name, v) in [
        ("cpu_ms", &st.cpu_ms),
        ("page_faults", &st.page_faults),
        ("ctx_switches", &st.ctx_switches),
        ("max_rss_kb", &st.max_rss_kb),
        ("io_read_bytes", &st.io_read_bytes),
        ("io_write_bytes", &st.io_write_bytes),
        ("network_packets", &st.network_packets),
        ("energy_uj", &st.energy_uj),
        ("binary_bytes", &st.binary_bytes),
    ] {
        if let Some(v) = v {
            medians.insert(name, v.median as f64);
        }
    }
    if let Some(t) = st
        .throughput_per_s
        .as_ref()
        .filter(|t| t.median.is_finite())
    {
        medians.insert("throughput_per_s", t.median);
    }
    let host = &r.run.host;
    let host_class = format!(
        "{}/{}/{}",
        host.os,
        host.arch,
        host.cpu_count
            .map_or_else(|| "?".to_owned(), |c| c.to_string())
    );
    Ok(ReceiptSummary {
        wall_ms_median: st.wall_ms.median,
        runs: run_summaries(&r),
        run_id: r.run.id,
        host_class,
        bench_name: r.bench.name,
        medians,
    })
}

/// `metric`'s value in a stored `medians` document.
pub fn median_of(medians_json: &str, metric: &str) -> Option<f64> {
    let m: std::collections::BTreeMap<String, f64> = serde_json::from_str(medians_json).ok()?;
    m.get(metric).copied().filter(|v| v.is_finite())
}

/// serde_json appends " at line 1 column 42": meaningless for the client's nested document.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Strips run-specific values (`normalize: true`): `run.id`, `run.started_at`, `run.ended_at` and
/// `run.host.hostname_hash`.
///
/// `hostname_hash` is optional and is removed. The other three are required by `perfgate.run.v1`
/// (the published client refuses a receipt without them), so their values are replaced by the
/// fixed ones the perfgate CLI itself writes when it normalizes: id `baseline` and the Unix epoch. Two normalized receipts of the same
/// measurements are then byte-identical. Everything else, unknown fields included, keeps its order.
pub fn normalize(json: &str) -> Result<String, serde_json::Error> {
    let mut v: serde_json::Value = serde_json::from_str(json)?;
    if let Some(run) = v.get_mut("run").and_then(|r| r.as_object_mut()) {
        const EPOCH: &str = "1970-01-01T00:00:00Z";
        run.insert("id".into(), "baseline".into());
        run.insert("started_at".into(), EPOCH.into());
        run.insert("ended_at".into(), EPOCH.into());
        if let Some(host) = run.get_mut("host").and_then(|h| h.as_object_mut()) {
            host.shift_remove("hostname_hash");
        }
    }
    serde_json::to_string(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/run-bench-a-1.json");

    /// The allocation-free check accepts and refuses what parsing into a `Value` does.
    #[test]
    fn numbers_fit_agrees_with_value() {
        for text in [
            FIXTURE,
            "1e308",
            "1e309",
            "-1e99999",
            "[1, 2.5, -3e-400, {\"a\": [true, null, \"x\\u00e9\"]}]",
            "{\"k\": 18446744073709551616}",
            "{\"k\": [1e400]}",
            "{\"x\": {\"$serde_json::private::RawValue\": 0}}",
            "{\"x\": {\"$serde_json::private::RawValue\": \"[1]\"}}",
            "{\"x\": {\"$serde_json::private::RawValue\": \"1e999\"}}",
            "{\"$serde_json::private::RawValue\\u0020\": 0}",
            "{\"k\": 1} trailing",
            "[1,]",
            "{\"a\" 1}",
            "\"unterminated",
            &format!("{}1{}", "[".repeat(200), "]".repeat(200)),
        ] {
            assert_eq!(
                numbers_fit(text).is_ok(),
                serde_json::from_str::<serde_json::Value>(text).is_ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn numbers_beyond_a_double_are_refused() {
        // In a field the typed parse skips (an unknown one).
        let huge = FIXTURE.replacen('{', "{\"x-extra\":1e99999,", 1);
        assert!(huge.starts_with("{\"x-extra\""), "{huge}");
        let e = validate(&huge).unwrap_err();
        assert_eq!(e.field, "receipt");
        assert!(e.message.contains("number out of range"), "{}", e.message);
        // Anything validate accepts, normalize rewrites.
        assert!(normalize(FIXTURE).is_ok());
    }

    /// A receipt stored before the strict reading, with an object written as an array of its
    /// fields in order, is refused from a client and still read from the store.
    #[test]
    fn stored_receipts_are_read_as_they_were_accepted() {
        let mut v: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        v["stats"]["wall_ms"] = serde_json::json!([7, 5, 9, 7.0, 1.5]);
        let positional = v.to_string();
        let e = validate(&positional).unwrap_err();
        assert_eq!(e.field, "receipt.stats.wall_ms", "{}", e.message);
        let s = validate_stored(&positional).unwrap();
        assert_eq!(s.wall_ms_median, 7);
        assert_eq!(s.bench_name, "bench-a");
        // Anything else wrong is still refused.
        let e = validate_stored(&positional.replace("perfgate.run.v1", "x")).unwrap_err();
        assert_eq!(e.field, "receipt.schema");
    }

    #[test]
    fn fixture_is_valid() {
        let s = validate(FIXTURE).unwrap();
        assert_eq!(s.bench_name, "bench-a");
        assert_eq!(s.wall_ms_median, 0);
    }

    #[test]
    fn medians() {
        let s = validate(FIXTURE).unwrap();
        let json = s.medians_json();
        assert_eq!(median_of(&json, "max_rss_kb"), Some(8752.0));
        assert_eq!(median_of(&json, "wall_ms"), Some(0.0));
        assert_eq!(median_of(&json, "throughput_per_s"), None);
        assert_eq!(median_of("not json", "wall_ms"), None);
        // Optional stats that are null still validate, and simply have no median.
        let with_null = FIXTURE.replace(r#""stats":{"#, r#""stats":{"throughput_per_s":null,"#);
        let s = validate(&with_null).unwrap();
        assert!(!s.medians.contains_key("throughput_per_s"));
        assert_eq!(s.medians["max_rss_kb"], 8752.0);
    }

    #[test]
    fn names_the_field() {
        let bad = FIXTURE.replace(
            "\"median\":0,\"min\":0,\"max\":0,\"mean\":0.0,\"stddev\":0.0},\"cpu_ms\"",
            "\"median\":-1,\"min\":0,\"max\":0},\"cpu_ms\"",
        );
        let e = validate(&bad).unwrap_err();
        assert_eq!(e.field, "receipt.stats.wall_ms.median", "{e:?}");
        let e = validate(r#"{"schema":"perfgate.run.v1"}"#).unwrap_err();
        assert_eq!(e.field, "receipt", "{e:?}");
        assert!(e.message.contains("missing field `tool`"), "{e:?}");
        let e = validate(&FIXTURE.replace("perfgate.run.v1", "perfgate.run.v9")).unwrap_err();
        assert_eq!(e.field, "receipt.schema");
        let e = validate("[]").unwrap_err();
        assert_eq!(e.field, "receipt");
        let e = validate(&format!("{FIXTURE} x")).unwrap_err();
        assert_eq!(e.field, "receipt");
        assert!(e.message.contains("trailing characters"), "{e:?}");
        assert!(
            validate(&format!(" {FIXTURE}\n")).is_ok(),
            "whitespace around is fine"
        );
    }

    #[test]
    fn normalize_strips_run_fields_and_keeps_unknown() {
        let with_extra = FIXTURE.replacen('{', r#"{"zz_extra":{"k":1},"#, 1);
        let n = normalize(&with_extra).unwrap();
        assert!(!n.contains("485b7dc7"));
        assert!(!n.contains("2026-11-28T03:17:59"));
        assert!(n.contains(r#""run":{"id":"baseline","started_at":"1970-01-01T00:00:00Z","ended_at":"1970-01-01T00:00:00Z","host""#), "{n}");
        assert!(n.starts_with(r#"{"zz_extra":{"k":1},"schema""#), "{n}");
        assert!(
            validate(&n).is_ok(),
            "a normalized receipt is still perfgate.run.v1"
        );
        let with_hash = FIXTURE.replace(
            r#""memory_bytes":0"#,
            r#""memory_bytes":0,"hostname_hash":"abc""#,
        );
        assert!(with_hash.contains("hostname_hash"));
        assert!(!normalize(&with_hash).unwrap().contains("hostname_hash"));
    }
}
