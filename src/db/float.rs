//! f64 columns in exports: JSON has no infinities or NaN (serde_json writes them as `null`), so
//! such a value travels as the string `"inf"`, `"-inf"` or `"nan"`. Use with
//! `#[serde(with = "crate::db::float")]` (or `float::option` for a nullable column).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Wire {
    Finite(f64),
    Tagged(String),
}

fn to_wire(v: f64) -> Wire {
    match v {
        v if v.is_finite() => Wire::Finite(v),
        v if v.is_nan() => Wire::Tagged("nan".into()),
        v if v > 0.0 => Wire::Tagged("inf".into()),
        _ => Wire::Tagged("-inf".into()),
    }
}

fn from_wire<E: serde::de::Error>(w: Wire) -> Result<f64, E> {
    match w {
        Wire::Finite(v) => Ok(v),
        Wire::Tagged(t) => match t.as_str() {
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            "nan" => Ok(f64::NAN),
            other => Err(E::custom(format!("not a number: {other:?}"))),
        },
    }
}

pub(crate) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    to_wire(*v).serialize(s)
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    from_wire(Wire::deserialize(d)?)
}

pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        v.map(to_wire).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Option::<Wire>::deserialize(d)?.map(from_wire).transpose()
    }
}
