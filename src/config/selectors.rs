//! Syntax checks for label and field selectors, so a malformed selector is rejected at startup
//! with the expected form instead of a 400 from the API server later. The grammar is Kubernetes'
//! (`k8s.io/apimachinery/pkg/labels` and `.../fields`).

/// A selector that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{setting}: {value:?} is not a valid {kind} selector ({why}); expected e.g. {example}")]
pub struct SelectorError {
    pub setting: &'static str,
    pub value: String,
    pub kind: &'static str,
    pub why: String,
    pub example: &'static str,
}

const LABEL_EXAMPLE: &str = "`app=web,tier!=cache`, `env in (prod,staging)`, `!canary`";
const FIELD_EXAMPLE: &str = "`status.phase!=Succeeded,spec.nodeName=node-1`";

fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_label_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|p| {
                    !p.is_empty() && p.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                })
                && is_name(name)
        }
        None => is_name(k),
    }
}

fn is_label_value(v: &str) -> bool {
    v.is_empty() || is_name(v)
}

/// Splits on commas outside parentheses.
fn requirements(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ')'".into());
                }
            }
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    out.push(s[start..].trim());
    Ok(out)
}

fn label_requirement(r: &str) -> Result<(), String> {
    if r.is_empty() {
        return Err("an empty requirement".into());
    }
    if let Some(key) = r.strip_prefix('!') {
        return if is_label_key(key.trim()) { Ok(()) } else { Err(format!("bad key {:?}", key.trim())) };
    }
    for op in ["!=", "==", "="] {
        if let Some((k, v)) = r.split_once(op) {
            let (k, v) = (k.trim(), v.trim());
            if !is_label_key(k) {
                return Err(format!("bad key {k:?}"));
            }
            return if is_label_value(v) { Ok(()) } else { Err(format!("bad value {v:?}")) };
        }
    }
    let words: Vec<&str> = r.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let rest = words[1].trim();
        for op in ["notin", "in"] {
            if let Some(set) = rest.strip_prefix(op) {
                let set = set.trim();
                let inner = set
                    .strip_prefix('(')
                    .and_then(|s| s.strip_suffix(')'))
                    .ok_or_else(|| format!("{op} needs a (value,...) set"))?;
                if !is_label_key(words[0]) {
                    return Err(format!("bad key {:?}", words[0]));
                }
                return if inner.split(',').map(str::trim).all(is_label_value) {
                    Ok(())
                } else {
                    Err(format!("bad value in {set}"))
                };
            }
        }
        return Err(format!("unknown operator in {r:?}"));
    }
    if is_label_key(r) { Ok(()) } else { Err(format!("bad key {r:?}")) }
}

/// Checks a label selector (empty = everything).
pub(crate) fn check_label_selector(setting: &'static str, s: &str) -> Result<(), SelectorError> {
    if s.trim().is_empty() {
        return Ok(());
    }
    let err = |why: String| SelectorError { setting, value: s.to_owned(), kind: "label", why, example: LABEL_EXAMPLE };
    for r in requirements(s).map_err(err)? {
        label_requirement(r).map_err(|why| SelectorError {
            setting,
            value: s.to_owned(),
            kind: "label",
            why,
            example: LABEL_EXAMPLE,
        })?;
    }
    Ok(())
}

/// Checks a field selector (empty = everything).
pub(crate) fn check_field_selector(setting: &'static str, s: &str) -> Result<(), SelectorError> {
    if s.trim().is_empty() {
        return Ok(());
    }
    let err = |why: String| SelectorError { setting, value: s.to_owned(), kind: "field", why, example: FIELD_EXAMPLE };
    for r in s.split(',').map(str::trim) {
        let (k, _) = ["!=", "==", "="]
            .iter()
            .find_map(|op| r.split_once(op))
            .ok_or_else(|| err(format!("{r:?} has no =, == or !=")))?;
        let k = k.trim();
        if k.is_empty() || !k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.') {
            return Err(err(format!("bad field {k:?}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selector_table() {
        let ok = [
            "",
            "app",
            "!canary",
            "app=web",
            "app==web",
            "app!=web",
            "app=",
            "env in (prod, staging)",
            "env notin (dev)",
            "app.kubernetes.io/name=shop,tier!=cache",
            "a=b, c in (d,e), !f",
        ];
        for s in ok {
            assert_eq!(check_label_selector("--label-selector", s), Ok(()), "{s:?}");
        }
        let bad = [
            "app=we b",
            "=web",
            "app=web,,x=y",
            "env in prod",
            "env in (prod",
            "env like (x)",
            "-app=x",
            "app=-x",
            "a/b/c=x",
            "UPPER.example/x=y",
        ];
        for s in bad {
            let e = check_label_selector("--label-selector", s).unwrap_err();
            assert!(e.to_string().starts_with("--label-selector:"), "{e}");
        }
    }

    #[test]
    fn field_selector_table() {
        for s in ["", "spec.nodeName=n1", "status.phase!=Succeeded,metadata.namespace==x", "metadata.name="] {
            assert_eq!(check_field_selector("--field-selector", s), Ok(()), "{s:?}");
        }
        for s in ["spec.nodeName", "=x", "spec node=x", "a=b,"] {
            assert!(check_field_selector("--field-selector", s).is_err(), "{s:?}");
        }
    }
}
