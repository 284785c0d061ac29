//! Text from outside (plugin output, events, names, configuration values) made safe to print:
//! the one place control characters are escaped and long values are cut.

use std::borrow::Cow;

/// How many characters of a value an error message repeats: enough to recognise it.
pub const VALUE_IN_MESSAGE: usize = 80;

/// `text` with every control character escaped (`\x1b`, `\n`, `\u{202e}`), so printing it can
/// neither move the cursor, clear the screen, nor reorder the line (bidirectional overrides).
/// Text without any is returned as it is.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x100 => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        }
    }
    Cow::Owned(out)
}

/// C0 and C1 controls, DEL, and the bidirectional embeddings, overrides and isolates.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` cut to at most `max` characters, an ellipsis marking the cut.
pub fn cut(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!("{}…", &text[..end])),
    }
}

/// A time in milliseconds since the Unix epoch as RFC 3339 (UTC, milliseconds); a time no
/// calendar can show (past the year 9999) as the number, never a panic.
pub fn time(ms: u64) -> String {
    const LAST: u64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    if ms > LAST {
        return format!("{ms} ms (out of range)");
    }
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

/// A value repeated in a message: cut to [`VALUE_IN_MESSAGE`] characters, then escaped.
pub fn value(text: &str) -> String {
    printable(&cut(text, VALUE_IN_MESSAGE)).into_owned()
}

/// A message that may repeat values (a parser's, which quotes what it read): every quoted
/// part and every line cut, then escaped. Quoted parts keep [`VALUE_IN_MESSAGE`] characters;
/// a line, four times that.
pub fn message(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(1024));
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut cut_line = String::new();
        for (j, part) in line.split('"').enumerate() {
            if j > 0 {
                cut_line.push('"');
            }
            // Odd parts are inside quotes.
            let limit = if j % 2 == 1 {
                VALUE_IN_MESSAGE
            } else {
                usize::MAX
            };
            cut_line.push_str(&cut(part, limit));
        }
        out.push_str(&printable(&cut(&cut_line, VALUE_IN_MESSAGE * 4)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_left_alone() {
        assert!(matches!(printable("Ok — 42 ms"), Cow::Borrowed(_)));
        assert_eq!(printable("\x1b[2J\x1b[Hgone"), "\\x1b[2J\\x1b[Hgone");
        assert_eq!(printable("a\nb\rc\td"), "a\\nb\\rc\\td");
        assert_eq!(printable("\u{7f}\u{9b}31m"), "\\x7f\\x9b31m");
        assert_eq!(printable("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(printable("é ✓ 日本"), "é ✓ 日本");
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary_with_an_ellipsis() {
        assert_eq!(cut("short", 80), "short");
        assert_eq!(cut(&"é".repeat(100), 3), "ééé…");
        let long = "x".repeat(10_000_000);
        assert_eq!(value(&long).chars().count(), VALUE_IN_MESSAGE + 1);
    }

    #[test]
    fn any_time_is_shown_and_none_panics() {
        assert_eq!(time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(time(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            time(253_402_300_800_000),
            "253402300800000 ms (out of range)"
        );
        assert!(time(u64::MAX).ends_with("(out of range)"));
    }

    #[test]
    fn messages_keep_their_words_and_cut_the_values_they_quote() {
        let long = "y".repeat(1000);
        let m = message(&format!("\"{long}\" is not a duration; write e.g. \"5s\""));
        assert!(
            m.starts_with(&format!("\"{}…\" is not", "y".repeat(80))),
            "{m}"
        );
        assert!(m.ends_with("write e.g. \"5s\""), "{m}");
        let unquoted = message(&format!("line 3: {long}\x1b[2J"));
        assert_eq!(unquoted.chars().count(), VALUE_IN_MESSAGE * 4 + 1);
        assert!(!message("bad \"\x1b[2J\"").contains('\x1b'));
    }
}
