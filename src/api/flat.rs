//! Parameters flattened into a query string (GET) or a form (`application/x-www-form-urlencoded` POST), as the
//! SDKs write them: a nested name joins its path with dots, an array's items are numbered from 0
//! (`Filters.0.Name=…`, `Filters.0.Values.0=…`, `Ports.0=80`), and every value is a string.
//!
//! `unflatten` builds the JSON object an action takes from such pairs; `Lenient` reads its strings as the number or
//! boolean a field's type asks for, so that an action's typed parameters (`params::parse`) read the same whether
//! they came as JSON or flattened.

use std::collections::BTreeMap;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The most dot-separated parts a flattened name may have (Tencent's deepest parameters have six:
/// `Rules.0.MultiCertInfo.CertList.0.CertContent`).
pub const MAX_NAME_PARTS: usize = 12;

/// Why flattened parameters do not make a JSON object.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlatError {
    #[error("the parameter `{0}` is given more than once")]
    Repeated(String),
    #[error("the parameter name `{0}` is not valid")]
    BadName(String),
    #[error("the parameter `{0}` is given both as a value and as an object or array")]
    Conflict(String),
    #[error("the items of `{0}` are not numbered 0, 1, 2 and so on")]
    Gap(String),
}

/// A flattened name's place while the tree is built: a value, or the parts below it.
enum Node {
    Leaf(String),
    Branch(BTreeMap<String, Node>),
}

/// The name and value pairs of a query string or form body, decoded.
pub fn pairs(encoded: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(encoded).into_owned().collect()
}

/// The JSON object the flattened `pairs` stand for. A branch whose parts are all array indices (`0`, `1`, … with
/// none missing) is an array, any other an object; each leaf is a string.
pub fn unflatten<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Map<String, Value>, FlatError> {
    let mut root = BTreeMap::new();
    for (name, value) in pairs {
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() > MAX_NAME_PARTS || parts.iter().any(|p| p.is_empty()) {
            return Err(FlatError::BadName(name.to_string()));
        }
        insert(&mut root, &parts, value, name)?;
    }
    let mut object = Map::new();
    for (part, node) in root {
        let value = to_value(node, &part)?;
        object.insert(part, value);
    }
    Ok(object)
}

fn insert(branch: &mut BTreeMap<String, Node>, parts: &[&str], value: &str, name: &str) -> Result<(), FlatError> {
    let Some((first, rest)) = parts.split_first() else { return Ok(()) };
    if rest.is_empty() {
        return match branch.insert(first.to_string(), Node::Leaf(value.to_string())) {
            None => Ok(()),
            Some(Node::Leaf(_)) => Err(FlatError::Repeated(name.to_string())),
            Some(Node::Branch(_)) => Err(FlatError::Conflict(name.to_string())),
        };
    }
    match branch.entry(first.to_string()).or_insert_with(|| Node::Branch(BTreeMap::new())) {
        Node::Branch(below) => insert(below, rest, value, name),
        Node::Leaf(_) => Err(FlatError::Conflict(name.to_string())),
    }
}

fn to_value(node: Node, path: &str) -> Result<Value, FlatError> {
    let branch = match node {
        Node::Leaf(s) => return Ok(Value::String(s)),
        Node::Branch(branch) => branch,
    };
    let indices: Option<Vec<usize>> = branch.keys().map(|k| index(k)).collect();
    if let Some(indices) = indices {
        let mut items: Vec<Option<Value>> = vec![None; branch.len()];
        for (i, (part, node)) in indices.into_iter().zip(branch) {
            let slot = items.get_mut(i).ok_or_else(|| FlatError::Gap(path.to_string()))?;
            *slot = Some(to_value(node, &format!("{path}.{part}"))?);
        }
        // Each index is distinct and below the count, so every slot is filled.
        return Ok(Value::Array(items.into_iter().flatten().collect()));
    }
    let mut object = Map::new();
    for (part, node) in branch {
        let value = to_value(node, &format!("{path}.{part}"))?;
        object.insert(part, value);
    }
    Ok(Value::Object(object))
}

/// An array index as the SDKs write it: decimal digits without leading zeros.
fn index(part: &str) -> Option<usize> {
    let n = part.parse::<usize>().ok()?;
    (n.to_string() == part).then_some(n)
}

/// A JSON value of flattened parameters read as the types asked for: a string where a number or a boolean is asked
/// for is read as one (`"80"` as 80, `"true"` or `"True"` as true); everything else as `serde_json` reads it.
pub struct Lenient(pub Value);

/// Number methods: a string that is a JSON number is read as that number.
macro_rules! numbers {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            match self.0 {
                Value::String(s) => match s.parse::<serde_json::Number>() {
                    Ok(n) => Value::Number(n).$method(visitor),
                    Err(_) => Value::String(s).$method(visitor),
                },
                other => other.$method(visitor),
            }
        }
    )*};
}

/// Methods whose values are read as `serde_json` reads them.
macro_rules! as_json {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            self.0.$method(visitor)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Lenient {
    type Error = serde_json::Error;

    numbers! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64
    }

    as_json! {
        deserialize_char deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Items(items.into_iter())),
            Value::Object(fields) => visitor.visit_map(Fields { fields: fields.into_iter(), value: None }),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::String(s) if s.eq_ignore_ascii_case("true") => visitor.visit_bool(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => visitor.visit_bool(false),
            other => other.deserialize_bool(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Self::Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Items(items.into_iter())),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(fields) => visitor.visit_map(Fields { fields: fields.into_iter(), value: None }),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_map(visitor)
    }

    /// Enums are named by strings, read as they are.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }
}

/// An array's items, each read leniently.
struct Items(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Items {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Self::Error> {
        self.0.next().map(|item| seed.deserialize(Lenient(item))).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// An object's fields, each value read leniently.
struct Fields {
    fields: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl<'de> MapAccess<'de> for Fields {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        let Some((name, value)) = self.fields.next() else { return Ok(None) };
        self.value = Some(value);
        seed.deserialize(name.into_deserializer()).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Self::Error> {
        let value = self.value.take().ok_or_else(|| de::Error::custom("a field's value was asked for twice"))?;
        seed.deserialize(Lenient(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.fields.len())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(query.as_bytes()).into_owned().collect()
    }

    fn unflatten_query(query: &str) -> Result<Map<String, Value>, FlatError> {
        let pairs = pairs(query);
        unflatten(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    #[test]
    fn nested_names_and_numbered_items_make_objects_and_arrays() {
        let query = "Filters.0.Name=Runtime&Filters.0.Values.0=Python3.9&Filters.0.Values.1=Python3.10\
                     &Filters.1.Name=Status&Filters.1.Values.0=Active&Ports.0=80&Ports.1=8080&Code.ZipFile=UEs%3D\
                     &Limit=20&Description=";
        let object = unflatten_query(query).unwrap();
        assert_eq!(
            Value::Object(object),
            json!({
                "Filters": [
                    {"Name": "Runtime", "Values": ["Python3.9", "Python3.10"]},
                    {"Name": "Status", "Values": ["Active"]},
                ],
                "Ports": ["80", "8080"],
                "Code": {"ZipFile": "UEs="},
                "Limit": "20",
                "Description": "",
            })
        );
    }

    #[test]
    fn items_past_nine_keep_their_order() {
        let query: Vec<String> = (0..12).map(|i| format!("Ports.{i}={i}")).collect();
        let object = unflatten_query(&query.join("&")).unwrap();
        let expected: Vec<Value> = (0..12).map(|i| Value::String(i.to_string())).collect();
        assert_eq!(object["Ports"], Value::Array(expected));
    }

    #[test]
    fn malformed_names_are_refused() {
        assert_eq!(unflatten_query("A=1&A=2"), Err(FlatError::Repeated("A".to_string())));
        assert_eq!(unflatten_query("A=1&A.B=2"), Err(FlatError::Conflict("A.B".to_string())));
        assert_eq!(unflatten_query("A.B=2&A=1"), Err(FlatError::Conflict("A".to_string())));
        assert_eq!(unflatten_query("Ports.0=1&Ports.2=3"), Err(FlatError::Gap("Ports".to_string())));
        assert_eq!(unflatten_query("Ports.1=1"), Err(FlatError::Gap("Ports".to_string())));
        assert_eq!(unflatten_query("A..B=1"), Err(FlatError::BadName("A..B".to_string())));
        assert_eq!(unflatten_query(".A=1"), Err(FlatError::BadName(".A".to_string())));
        let deep = vec!["A"; MAX_NAME_PARTS + 1].join(".");
        assert_eq!(unflatten_query(&format!("{deep}=1")), Err(FlatError::BadName(deep)));
        // `01` is not an index as the SDKs write them: the branch is an object.
        assert_eq!(Value::Object(unflatten_query("A.01=1").unwrap()), json!({"A": {"01": "1"}}));
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "PascalCase")]
    struct Typed {
        ports: Vec<u16>,
        limit: Option<i64>,
        weight: f64,
        http2: bool,
        default_server: Option<bool>,
        name: String,
        offset: Option<String>,
        rules: Vec<Rule>,
        extra: Option<Value>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "PascalCase")]
    struct Rule {
        session_expire_time: Option<u32>,
        url: String,
    }

    #[test]
    fn strings_are_read_as_the_numbers_and_booleans_fields_ask_for() {
        let query = "Ports.0=80&Ports.1=8080&Limit=-3&Weight=0.5&Http2=true&DefaultServer=False&Name=123\
                     &Offset=10&Rules.0.SessionExpireTime=30&Rules.0.Url=%2F&Extra.A=1";
        let object = unflatten_query(query).unwrap();
        let typed: Typed = serde_path_to_error::deserialize(Lenient(Value::Object(object))).unwrap();
        assert_eq!(
            typed,
            Typed {
                ports: vec![80, 8080],
                limit: Some(-3),
                weight: 0.5,
                http2: true,
                default_server: Some(false),
                name: "123".to_string(),
                offset: Some("10".to_string()),
                rules: vec![Rule { session_expire_time: Some(30), url: "/".to_string() }],
                extra: Some(json!({"A": "1"})),
            }
        );
    }

    #[test]
    fn strings_that_are_not_of_the_type_are_refused_with_their_path() {
        for (query, path) in [
            ("Ports.0=eighty&Weight=1&Http2=true&Name=a&Rules.0.Url=%2F", "Ports[0]"),
            ("Ports.0=70000&Weight=1&Http2=true&Name=a&Rules.0.Url=%2F", "Ports[0]"),
            ("Ports.0=80&Weight=1&Http2=yes&Name=a&Rules.0.Url=%2F", "Http2"),
            (
                "Ports.0=80&Weight=1&Http2=true&Name=a&Rules.0.Url=%2F&Rules.0.SessionExpireTime=1.5",
                "Rules[0].SessionExpireTime",
            ),
        ] {
            let object = unflatten_query(query).unwrap();
            let error = serde_path_to_error::deserialize::<_, Typed>(Lenient(Value::Object(object))).unwrap_err();
            assert_eq!(error.path().to_string(), path, "{query}");
        }
    }
}
