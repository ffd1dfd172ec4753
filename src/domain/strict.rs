//! Strict reading of request JSON: a struct is read only from a JSON object.
//!
//! serde's derived `Deserialize` for a struct also accepts a sequence of its fields in
//! declaration order, so `"wall_ms": [1, 2, 3]` would be read as `{"min": 1, "median": 2, ...}`
//! and stored as if the client had sent an object. No client of the contract sends that form,
//! and a positional reading is a silent misreading of a wrong shape. [`Strict`] wraps a
//! deserializer and asks for a map wherever a struct is asked for, at every depth (sequences,
//! maps, options, newtypes and enum variants are wrapped in turn), so the wrong shape is the
//! format's usual "invalid type: sequence, expected struct …" error.
//!
//! Everything else is passed through unchanged, so the wrapped deserializer's own special
//! cases (serde_json's `RawValue`, arbitrary precision) keep working.

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

/// The field a `serde_path_to_error` error names (`counts.pass`, `runs[2].benchmark`), under
/// `prefix` when given (`receipt.stats.wall_ms`); `None` when the error is the whole value's
/// and there is no prefix.
pub fn error_field<E>(e: &serde_path_to_error::Error<E>, prefix: Option<&str>) -> Option<String> {
    let path = e.path().to_string();
    let whole = path.is_empty() || path == ".";
    match (prefix, whole) {
        (None, true) => None,
        (None, false) => Some(path),
        (Some(p), true) => Some(p.to_owned()),
        (Some(p), false) => Some(format!("{p}.{path}")),
    }
}

/// Reads `T` from `de`, refusing arrays where `T` (or anything inside it) has a struct.
pub fn deserialize<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: de::Deserialize<'de>,
{
    T::deserialize(Strict(de))
}

/// A deserializer that reads structs only from maps.
pub struct Strict<D>(pub D);

/// A visitor whose nested accesses are wrapped.
struct Wrap<V>(V);
/// A seed whose deserializer is wrapped.
struct Seed<S>(S);
struct Seq<A>(A);
struct Map<A>(A);
struct Enum<A>(A);
struct Variant<A>(A);
/// A struct variant, read as a map through the variant's value.
struct StructSeed<V>(V);

macro_rules! forward {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.0.$method(Wrap(visitor))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    forward! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Wrap(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Wrap(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Wrap(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, Wrap(visitor))
    }

    /// The one change: a struct is read as a map.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(Wrap(visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Wrap(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! visit {
    ($($method:ident: $t:ty)*) => {
        $(
            fn $method<E: de::Error>(self, v: $t) -> Result<V::Value, E> {
                self.0.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.0.expecting(f)
    }

    visit! {
        visit_bool: bool visit_i8: i8 visit_i16: i16 visit_i32: i32 visit_i64: i64
        visit_i128: i128 visit_u8: u8 visit_u16: u16 visit_u32: u32 visit_u64: u64
        visit_u128: u128 visit_f32: f32 visit_f64: f64 visit_char: char visit_str: &str
        visit_borrowed_str: &'de str visit_string: String visit_bytes: &[u8]
        visit_borrowed_bytes: &'de [u8] visit_byte_buf: Vec<u8>
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(Strict(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(Strict(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(Seq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Map(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(Enum(data))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Strict(d))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Seed(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<A> {
    type Error = A::Error;
    type Variant = Variant<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        self.0
            .variant_seed(Seed(seed))
            .map(|(value, variant)| (value, Variant(variant)))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Variant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Wrap(visitor))
    }

    /// Read through the variant's value so that it, too, must be a map.
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.newtype_variant_seed(StructSeed(visitor))
    }
}

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for StructSeed<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_map(Wrap(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::value::RawValue;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        a: u32,
        b: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Unit,
        Newtype(Inner),
        Tuple(u32, u32),
        Struct { x: Inner },
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Outer {
        inner: Inner,
        maybe: Option<Inner>,
        list: Vec<Inner>,
        map: BTreeMap<String, Inner>,
        pair: (u32, Inner),
        kind: Kind,
        #[serde(default)]
        boxed: Option<Box<Inner>>,
    }

    fn strict<T: for<'de> Deserialize<'de>>(json: &str) -> Result<T, String> {
        let de = &mut serde_json::Deserializer::from_str(json);
        deserialize(&mut *de).map_err(|e| e.to_string())
    }

    /// An `Outer` with each part given as `parts` says (the good form where it says `None`).
    fn outer(parts: [Option<&str>; 7]) -> String {
        let good = [
            r#"{"a":1,"b":"x"}"#,
            r#"{"a":2,"b":null}"#,
            r#"[{"a":3,"b":null}]"#,
            r#"{"k":{"a":4,"b":null}}"#,
            r#"[5,{"a":6,"b":null}]"#,
            r#"{"struct":{"x":{"a":7,"b":null}}}"#,
            r#"{"a":8,"b":null}"#,
        ];
        let p: Vec<&str> = (0..7).map(|i| parts[i].unwrap_or(good[i])).collect();
        format!(
            r#"{{"inner":{},"maybe":{},"list":{},"map":{},"pair":{},"kind":{},"boxed":{}}}"#,
            p[0], p[1], p[2], p[3], p[4], p[5], p[6]
        )
    }

    #[test]
    fn objects_read_as_serde_reads_them() {
        for kind in [
            None,
            Some(r#""unit""#),
            Some(r#"{"newtype":{"a":1,"b":null}}"#),
            Some(r#"{"tuple":[1,2]}"#),
        ] {
            let json = outer([None, None, None, None, None, kind, None]);
            let lax: Outer = serde_json::from_str(&json).unwrap();
            assert_eq!(strict::<Outer>(&json).unwrap(), lax, "{json}");
        }
    }

    #[test]
    fn an_array_for_a_struct_is_refused_at_every_depth() {
        for (i, bad) in [
            (0, r#"[1,"x"]"#),
            (1, "[2,null]"),
            (2, "[[3,null]]"),
            (3, r#"{"k":[4,null]}"#),
            (4, "[5,[6,null]]"),
            (5, r#"{"struct":{"x":[7,null]}}"#),
            (5, r#"{"struct":[{"a":7,"b":null}]}"#),
            (5, r#"{"newtype":[1,null]}"#),
            (6, "[8,null]"),
        ] {
            let mut parts = [None; 7];
            parts[i] = Some(bad);
            let json = outer(parts);
            // serde alone reads the positional form...
            assert!(serde_json::from_str::<Outer>(&json).is_ok(), "{json}");
            // ...the strict reading refuses it.
            let err = strict::<Outer>(&json).unwrap_err();
            assert!(err.contains("invalid type: sequence"), "{json}: {err}");
        }
    }

    #[test]
    fn raw_values_pass_through() {
        #[derive(Deserialize)]
        struct Body<'a> {
            #[serde(borrow)]
            raw: &'a RawValue,
            owned: Box<RawValue>,
        }
        let json = r#"{"raw": [1, {"x": 2}], "owned": {"y" : [3]}}"#;
        let de = &mut serde_json::Deserializer::from_str(json);
        let b: Body = deserialize(&mut *de).unwrap();
        assert_eq!(b.raw.get(), r#"[1, {"x": 2}]"#);
        assert_eq!(b.owned.get(), r#"{"y" : [3]}"#);
    }

    #[test]
    fn errors_keep_their_path() {
        let json = outer([None, None, Some("[[3,null]]"), None, None, None, None]);
        let de = &mut serde_json::Deserializer::from_str(&json);
        let err = serde_path_to_error::deserialize::<_, Outer>(Strict(&mut *de)).unwrap_err();
        assert_eq!(err.path().to_string(), "list[0]");
    }
}
