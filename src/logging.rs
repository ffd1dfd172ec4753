//! env_logger set up to write JSON lines (default) or a readable format. Every line written while
//! a request is being served carries that request's id.

use std::io::Write;

use log::kv::{Key, Value, VisitSource};

use crate::config::LogFormat;
use crate::middleware::with_request_id;

struct JsonKv<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> VisitSource<'kvs> for JsonKv<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let v = if let Some(n) = value.to_u64() {
            serde_json::Value::from(n)
        } else if let Some(n) = value.to_i64() {
            serde_json::Value::from(n)
        } else if let Some(f) = value.to_f64() {
            serde_json::Value::from(f)
        } else if let Some(b) = value.to_bool() {
            serde_json::Value::from(b)
        } else {
            serde_json::Value::from(value.to_string())
        };
        self.0.insert(key.as_str().to_owned(), v);
        Ok(())
    }
}

struct TextKv<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for TextKv<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

/// Installs the global logger. `level` is an env_logger filter (`info`, `debug`,
/// `perfgate_server=debug,actix_web=warn`, …). Calling it twice is harmless.
pub fn init(level: &str, format: LogFormat) {
    let mut b = env_logger::Builder::new();
    b.parse_filters(level);
    b.target(env_logger::Target::Stderr);
    match format {
        LogFormat::Json => {
            b.format(|buf, record| {
                let mut m = serde_json::Map::new();
                m.insert(
                    "ts".into(),
                    chrono::Utc::now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                        .into(),
                );
                m.insert("level".into(), record.level().as_str().into());
                m.insert("target".into(), record.target().into());
                with_request_id(|id| {
                    if let Some(id) = id {
                        m.insert("request_id".into(), id.into());
                    }
                });
                m.insert("msg".into(), record.args().to_string().into());
                let _ = record.key_values().visit(&mut JsonKv(&mut m));
                let line = serde_json::to_string(&m).unwrap_or_default();
                writeln!(buf, "{line}")
            });
        }
        LogFormat::Pretty => {
            b.format(|buf, record| {
                let mut kv = String::new();
                let _ = record.key_values().visit(&mut TextKv(&mut kv));
                let rid = with_request_id(|id| id.map(|i| format!(" [{i}]")).unwrap_or_default());
                writeln!(
                    buf,
                    "{} {:5} {}{}: {}{}",
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    record.level(),
                    record.target(),
                    rid,
                    record.args(),
                    kv
                )
            });
        }
    }
    let _ = b.try_init();
}
