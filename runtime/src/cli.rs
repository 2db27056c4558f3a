//! What the `folio` and `exporter` command lines share (std only): how text from a file or
//! the command line is shown, and how a failure becomes one `PROGRAM: error: ...` line.
//!
//! Writes to stderr go through [`note`] (or the [`crate::note!`] macro): a closed or full
//! stderr is ignored, where `eprintln!` would panic.
use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;
use std::string::{String, ToString};
use std::vec::Vec;

/// `chars` with every control character escaped (`\n`, `\u{1b}`, ...): C0, DEL and C1,
/// and the invisible format and bidirectional controls (U+061C, U+200B..U+200F,
/// U+2028..U+202E, U+2060..U+2069, U+FEFF) that can reorder or hide text on a terminal.
/// Text read from a model file (metadata, tensor names, vocabulary) or given on the command
/// line is shown through this before it reaches a terminal.
pub fn printable(chars: impl IntoIterator<Item = char>) -> String {
    let mut s = String::new();
    for c in chars {
        let invisible = matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        );
        match c {
            '\n' | '\r' | '\t' => s.extend(c.escape_debug()),
            c if c.is_control() || invisible => s.extend(c.escape_unicode()),
            c => s.push(c),
        }
    }
    s
}

/// Write one line to stderr, ignoring failure.
pub fn note(args: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr(), "{args}");
}

/// [`note`] with `format!` syntax.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::cli::note(::core::format_args!($($arg)*))
    };
}

/// Print `PROGRAM: error: MSG` (control characters escaped) and return exit status `code`.
pub fn fail(program: &str, msg: &str, code: u8) -> ExitCode {
    note(format_args!("{program}: error: {}", printable(msg.chars())));
    ExitCode::from(code)
}

/// A clap error's message up to its usage block, on one line, without clap's `error: `.
pub fn clap_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    lines.join(" ").trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_and_bidi_characters_only() {
        let shown = printable("a\u{1b}[31m\r\n\t\u{7f}\u{9b}\u{202e}\u{feff}é\"\\ z".chars());
        assert_eq!(
            shown,
            r#"a\u{1b}[31m\r\n\t\u{7f}\u{9b}\u{202e}\u{feff}é"\ z"#
        );
        assert!(shown.chars().all(|c| !c.is_control()));
    }

    #[test]
    fn clap_errors_keep_their_detail_on_one_line() {
        use clap::{Arg, Command};
        let cmd = Command::new("x").arg(Arg::new("model").required(true));
        let e = cmd.try_get_matches_from(["x"]).unwrap_err();
        let line = clap_line(&e);
        assert!(
            !line.contains('\n') && !line.starts_with("error:"),
            "{line}"
        );
        assert!(line.contains("<model>"), "{line}");
    }
}
