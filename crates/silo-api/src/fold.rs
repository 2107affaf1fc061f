//! Request bodies decoded as dockerd's Go decoder does: an object key that
//! matches no field exactly goes to the field it matches ignoring ASCII
//! case ("detachKeys" fills `DetachKeys`), at every depth. Strict clients
//! rely on it (the Python SDK sends `detachKeys`), and without it such a
//! key would be silently ignored.

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::{Map, Value};

/// A JSON value that renames struct keys to their fields' case.
pub struct Folded(pub Value);

type Error = serde_json::Error;

impl<'de> de::Deserializer<'de> for Folded {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Seq(items.into_iter())),
            Value::Object(map) => visitor.visit_map(Entries::new(map)),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Folded(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    let key = if fields.contains(&k.as_str()) {
                        k
                    } else {
                        fields
                            .iter()
                            .find(|f| f.eq_ignore_ascii_case(&k))
                            .map_or(k, |f| f.to_string())
                    };
                    // An exact key wins over a folded one.
                    out.entry(key).or_insert(v);
                }
                visitor.visit_map(Entries::new(out))
            }
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier
        ignored_any
    }
}

struct Seq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Seq {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(Folded(v)))
            .transpose()
    }
}

struct Entries {
    iter: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl Entries {
    fn new(map: Map<String, Value>) -> Entries {
        Entries {
            iter: map.into_iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for Entries {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(k.into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let v = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value without its key"))?;
        seed.deserialize(Folded(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Inner {
        #[serde(rename = "Name")]
        name: Option<String>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Outer {
        #[serde(rename = "DetachKeys")]
        detach_keys: Option<String>,
        #[serde(rename = "Items")]
        items: Option<Vec<Inner>>,
        #[serde(rename = "Labels")]
        labels: Option<std::collections::HashMap<String, String>>,
        #[serde(rename = "Size")]
        size: Option<u16>,
    }

    #[test]
    fn keys_fold_to_their_fields_at_every_depth() {
        let v = serde_json::json!({
            "detachKeys": "ctrl-a",
            "items": [{"name": "x"}, {"NAME": "y"}],
            "Labels": {"keepCase": "1"},
            "size": 7
        });
        let o = Outer::deserialize(Folded(v)).unwrap();
        assert_eq!(o.detach_keys.as_deref(), Some("ctrl-a"));
        assert_eq!(o.items.unwrap()[1].name.as_deref(), Some("y"));
        assert!(
            o.labels.unwrap().contains_key("keepCase"),
            "map keys stay as sent"
        );
        assert_eq!(o.size, Some(7));
        // An exact key wins over a folded duplicate.
        let v = serde_json::json!({"DetachKeys": "exact", "detachkeys": "folded"});
        let o = Outer::deserialize(Folded(v)).unwrap();
        assert_eq!(o.detach_keys.as_deref(), Some("exact"));
        // Type errors still surface.
        assert!(Outer::deserialize(Folded(serde_json::json!({"size": 70000}))).is_err());
    }
}
