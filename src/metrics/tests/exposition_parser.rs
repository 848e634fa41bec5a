//! A strict reader of the text exposition the tests scrape: samples,
//! their families and labels.

use super::*;

/// One parsed sample line.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sample {
    pub(super) name: String,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) value: f64,
}

#[derive(Debug, Default)]
pub(super) struct Exposition {
    pub(super) types: HashMap<String, String>,
    pub(super) helps: HashSet<String>,
    pub(super) samples: Vec<Sample>,
}

impl Exposition {
    /// A strict parser for the subset of the text format kelpie writes.
    pub(super) fn parse(text: &str) -> Self {
        let mut e = Exposition::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line");
                assert!(
                    e.types.insert(name.into(), kind.into()).is_none(),
                    "duplicate TYPE for {name}"
                );
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _) = rest.split_once(' ').expect("HELP line");
                assert!(e.helps.insert(name.into()), "duplicate HELP for {name}");
            } else {
                assert!(!line.starts_with('#') && !line.is_empty(), "line {line:?}");
                e.samples.push(parse_sample(line));
            }
        }
        e
    }

    pub(super) fn family(&self, family: &str) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| family_of(&s.name, &self.types) == family)
            .collect()
    }

    pub(super) fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
            .collect();
        assert!(found.len() <= 1, "duplicate series {name}{labels:?}");
        found.first().copied()
    }

    pub(super) fn with_program(&self, program: &str) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.labels.get("program").map(String::as_str) == Some(program))
            .collect()
    }
}

/// The family a sample belongs to (histogram samples carry suffixes).
pub(super) fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).map(String::as_str) == Some("histogram") {
                return base;
            }
        }
    }
    name
}

pub(super) fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').expect("sample value");
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("value in {line:?}")),
    };
    let Some((name, rest)) = series.split_once('{') else {
        return Sample {
            name: series.into(),
            labels: BTreeMap::new(),
            value,
        };
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "quote in {line:?}");
        let mut val = String::new();
        loop {
            match chars.next().expect("unterminated label value") {
                '\\' => match chars.next() {
                    Some('n') => val.push('\n'),
                    Some(c) => val.push(c),
                    None => panic!("dangling escape"),
                },
                '"' => break,
                c => val.push(c),
            }
        }
        assert!(labels.insert(key, val).is_none(), "duplicate label");
        match chars.next() {
            Some(',') => continue,
            Some('}') => break,
            other => panic!("after a label value: {other:?} in {line:?}"),
        }
    }
    assert_eq!(chars.next(), None);
    Sample {
        name: name.into(),
        labels,
        value,
    }
}
