//! What Go's `encoding/json` writes, for the files that must be byte-identical to
//! Contrast's: `manifest.json` (contrast-manifest) and `seed-shares.json`
//! (contrast-seedengine), both `json.MarshalIndent(v, "", "  ")`.
//!
//! The pieces the writers share: [`write_go_string`] (a string with Go's escaping) and
//! [`newline_indent`] (the line break and indentation between members). The structure,
//! member order and `omitempty` rules stay with each format.

use std::fmt::Write as _;

/// Starts a new line indented by `depth` levels of two spaces, as
/// `json.MarshalIndent(v, "", "  ")` does before each member and closing bracket.
pub fn newline_indent(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Writes `s` as a JSON string the way Go's `encoding/json` does with HTML escaping on
/// (its default): `<`, `>` and `&` become `\u003c`, `\u003e`, `\u0026`; U+2028 and
/// U+2029 are escaped; control characters use the short escapes Go knows (`\b \f \n \r
/// \t`, Go ≥ 1.22) or `\u00XX`.
pub fn write_go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go_string(s: &str) -> String {
        let mut out = String::new();
        write_go_string(&mut out, s);
        out
    }

    #[test]
    fn escapes_like_go() {
        // encoding/json's appendString with escapeHTML (Go ≥ 1.22 for \b and \f).
        assert_eq!(
            go_string("<a&b> \" \\ \n\t\r\u{8}\u{c} \u{1} \u{1f} \u{2028} \u{2029} é 😀"),
            r#""\u003ca\u0026b\u003e \" \\ \n\t\r\b\f \u0001 \u001f \u2028 \u2029 é 😀""#
        );
        assert_eq!(go_string(""), r#""""#);
        // DEL and the C1 controls are not escaped by Go.
        assert_eq!(go_string("\u{7f}\u{85}"), "\"\u{7f}\u{85}\"");
    }

    #[test]
    fn indents_with_two_spaces_per_level() {
        let mut out = String::from("{");
        newline_indent(&mut out, 1);
        out.push_str("\"a\": 1");
        newline_indent(&mut out, 0);
        out.push('}');
        assert_eq!(out, "{\n  \"a\": 1\n}");
        let mut deep = String::new();
        newline_indent(&mut deep, 3);
        assert_eq!(deep, "\n      ");
    }
}
