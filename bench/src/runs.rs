//! A scenario's result file keeps every run of the same code: a new run is
//! added to the file's runs when both measured the same code
//! (`parley_testkit::code`), and replaces them otherwise. The file is
//! `{"code": ..., "results": [run, ...]}`, oldest first; a file written
//! before runs were kept (one run's result alone) still reads, as one run
//! of unknown code.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Every run of one code, oldest first; never empty when read from a file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Runs<T> {
    pub code: Option<String>,
    pub results: Vec<T>,
}

impl<T> Runs<T> {
    pub fn one(result: T) -> Self {
        Runs { code: None, results: vec![result] }
    }

    /// The latest run: what the report's detail sections show.
    pub fn latest(&self) -> &T {
        self.results.last().expect("a result file holds at least one run")
    }
}

impl<T: DeserializeOwned> Runs<T> {
    /// Either layout of a result file.
    pub fn from_value(v: Value) -> serde_json::Result<Self> {
        if !is_runs(&v) {
            return Ok(Runs::one(serde_json::from_value(v)?));
        }
        let code = v.get("code").and_then(Value::as_str).map(str::to_owned);
        let results: Vec<T> = serde_json::from_value(v["results"].clone())?;
        if results.is_empty() {
            return Err(serde::de::Error::custom("a result file with no runs"));
        }
        Ok(Runs { code, results })
    }
}

/// `{"code", "results": [...]}`, not a single result (a rate result has
/// `runs`, by rate, so the key is another one).
fn is_runs(v: &Value) -> bool {
    v.get("results").is_some_and(Value::is_array) && v.get("code").is_some()
}

/// The file to write after a run: the old file's runs when they measured
/// `code`, then `new`. Runs of unknown code are never taken as the same.
pub fn add_run(old: Option<Value>, code: Option<&str>, new: Value) -> Value {
    let mut results = match old {
        Some(o) if is_runs(&o) && code.is_some() && o["code"].as_str() == code => {
            o["results"].as_array().cloned().unwrap_or_default()
        }
        _ => Vec::new(),
    };
    results.push(new);
    json!({"code": code, "results": results})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_the_same_code_are_added_and_other_code_replaces_them() {
        let first = add_run(None, Some("abc"), json!({"x": 1}));
        assert_eq!(first, json!({"code": "abc", "results": [{"x": 1}]}));
        let second = add_run(Some(first.clone()), Some("abc"), json!({"x": 2}));
        assert_eq!(second, json!({"code": "abc", "results": [{"x": 1}, {"x": 2}]}));
        assert_eq!(
            add_run(Some(second.clone()), Some("def"), json!({"x": 3})),
            json!({"code": "def", "results": [{"x": 3}]})
        );
        assert_eq!(add_run(Some(second), None, json!({"x": 3})), json!({"code": null, "results": [{"x": 3}]}));
        // A file from before runs were kept: its run's code is unknown.
        assert_eq!(
            add_run(Some(json!({"x": 1})), Some("abc"), json!({"x": 2})),
            json!({"code": "abc", "results": [{"x": 2}]})
        );
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct R {
        x: u32,
    }

    #[test]
    fn both_layouts_read_and_an_empty_list_is_an_error() {
        let runs: Runs<R> = Runs::from_value(json!({"code": "abc", "results": [{"x": 1}, {"x": 2}]})).unwrap();
        assert_eq!(runs.code.as_deref(), Some("abc"));
        assert_eq!(runs.latest(), &R { x: 2 });
        let old: Runs<R> = Runs::from_value(json!({"x": 7})).unwrap();
        assert_eq!(old, Runs { code: None, results: vec![R { x: 7 }] });
        assert!(Runs::<R>::from_value(json!({"code": "abc", "results": []})).is_err());
        assert!(Runs::<R>::from_value(json!({"y": 1})).is_err());
    }
}
