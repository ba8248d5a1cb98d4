//! Text the agent copies into records, pure: capped at a byte length on a character boundary, and
//! redacted by the operator's patterns (`--previous-logs-redact`).

use regex::Regex;

/// What a redacted match is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Cuts a string to at most `max` bytes at a char boundary.
pub(crate) fn cap_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A redaction pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("--previous-logs-redact {pattern:?}: not a valid regular expression: {source}")]
pub struct RedactError {
    pub pattern: String,
    #[source]
    pub source: regex::Error,
}

/// Compiles redaction patterns (rejected at startup when invalid).
pub fn compile_redactions(patterns: &[String]) -> Result<Vec<Regex>, RedactError> {
    patterns
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| Regex::new(p).map_err(|source| RedactError { pattern: p.clone(), source }))
        .collect()
}

/// Replaces every match of every pattern with `[REDACTED]`, then caps the text at `max_bytes`
/// (keeping the end: the last lines say most about a crash), at a char boundary.
pub(crate) fn redact_and_cap(text: &str, redactions: &[Regex], max_bytes: usize) -> String {
    let mut out = text.to_owned();
    for re in redactions {
        out = re.replace_all(&out, REDACTED).into_owned();
    }
    if out.len() > max_bytes {
        let mut start = out.len() - max_bytes;
        while !out.is_char_boundary(start) {
            start += 1;
        }
        out = out[start..].to_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_and_cap_table() {
        let res = compile_redactions(&["password=\\S+".into(), "Bearer [A-Za-z0-9._-]+".into()]).unwrap();
        let cases = [
            ("connecting with password=hunter2 to db", "connecting with [REDACTED] to db"),
            ("Authorization: Bearer eyJhbGciOi.x-y_z", "Authorization: [REDACTED]"),
            ("nothing secret", "nothing secret"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_and_cap(input, &res, 1024), want);
        }
        assert_eq!(redact_and_cap("line1\nline2\nline3", &[], 11), "line2\nline3", "the end is kept");
        assert_eq!(redact_and_cap("ééé", &[], 3), "é", "cut at a char boundary");
        assert!(compile_redactions(&["(unclosed".into()]).unwrap_err().to_string().contains("--previous-logs-redact"));
    }
}
