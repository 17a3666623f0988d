//! Untrusted text (what a person typed, what GitHub or the engine answered) inside a message:
//! [`shown`] bounds it and keeps control characters from reaching the reader, in one of the
//! [`Shown`] forms the messages use.

/// How [`shown`] renders untrusted text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// As a quoted, escaped Rust string (`"a\nb"`), at most `max` characters of that form;
    /// a longer one ends in `…"`.
    Quoted,
    /// Control characters escaped, at most `max` input characters; a longer one ends in `…`.
    Escaped,
    /// Control characters dropped, at most `max` characters kept.
    Stripped,
}

/// `s` as it may be shown back inside a message, in the form `how`, bounded by `max`.
pub fn shown(s: &str, how: Shown, max: usize) -> String {
    match how {
        Shown::Quoted => {
            let escaped = format!("{s:?}");
            if escaped.chars().count() > max {
                format!(
                    "{}…\"",
                    escaped
                        .chars()
                        .take(max.saturating_sub(2))
                        .collect::<String>()
                )
            } else {
                escaped
            }
        }
        Shown::Escaped => {
            let mut out: String = s.chars().take(max).flat_map(char::escape_debug).collect();
            if s.chars().count() > max {
                out.push('…');
            }
            out
        }
        Shown::Stripped => s.chars().filter(|c| !c.is_control()).take(max).collect(),
    }
}
