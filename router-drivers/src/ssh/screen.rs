//! What a CLI has written since its last prompt, as text, cleaned as it
//! arrives: each byte is decoded and cleaned once, and the prompt is looked
//! for on the last line only. Cleaning the whole buffer again on every
//! chunk, as this once did, is quadratic: a long answer in small chunks
//! (a running config of tens of MiB) held several copies of itself and took
//! minutes, long before the size limit stopped it.
//!
//! Cleaning means: UTF-8 decoded (invalid bytes become U+FFFD), escape
//! sequences removed, carriage returns, NULs and bells dropped, and a
//! backspace erasing the character before it. A character or an escape
//! sequence cut by a chunk boundary is held until the rest arrives.

use std::sync::LazyLock;

use regex::Regex;

/// Colour, cursor and title sequences some CLIs write even to a vt100.
static ESCAPES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-Za-z]|[=>78])")
        .expect("the escape pattern is a valid regex")
});

const ESC: char = '\x1b';

/// An unfinished escape sequence longer than this is not one: it is let
/// through as text rather than held.
const MAX_ESCAPE: usize = 4096;

/// A last line longer than this is no prompt, and is not matched against
/// one (which would cost its whole length on every chunk).
const MAX_PROMPT: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct Screen {
    /// Cleaned text since the last answer.
    text: String,
    /// Where the last line of `text` starts.
    line_start: usize,
    /// The bytes of a character the last chunk cut in two.
    partial_char: Vec<u8>,
    /// An escape sequence the last chunk cut before its end.
    partial_escape: String,
    /// Bytes received since the last answer.
    received: usize,
}

impl Screen {
    /// Takes in a chunk of the CLI's output.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.received += bytes.len();
        let mut decoded = std::mem::take(&mut self.partial_escape);
        let joined;
        let mut rest = if self.partial_char.is_empty() {
            bytes
        } else {
            let mut cut = std::mem::take(&mut self.partial_char);
            cut.extend_from_slice(bytes);
            joined = cut;
            &joined[..]
        };
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    decoded.push_str(text);
                    break;
                }
                Err(error) => {
                    let (valid, after) = rest.split_at(error.valid_up_to());
                    decoded.push_str(&String::from_utf8_lossy(valid));
                    match error.error_len() {
                        Some(invalid) => {
                            decoded.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[invalid..];
                        }
                        None => {
                            self.partial_char = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        if !decoded.contains(ESC) {
            self.write(&decoded);
            return;
        }
        if let Some(at) = unfinished_escape(&decoded) {
            self.partial_escape = decoded.split_off(at);
        }
        self.write(&ESCAPES.replace_all(&decoded, ""));
    }

    /// Appends `text` as the terminal shows it. Line by line, and a line
    /// without a NUL, bell or backspace (nearly all) in whole slices: std's
    /// search for one character is fast even in a debug build, a loop over
    /// every character is not.
    fn write(&mut self, text: &str) {
        self.text.reserve(text.len());
        for piece in text.split_inclusive('\n') {
            if piece.contains('\x08') || piece.contains('\0') || piece.contains('\x07') {
                piece.chars().for_each(|c| self.write_char(c));
                continue;
            }
            for part in piece.split('\r') {
                self.text.push_str(part);
            }
            if piece.ends_with('\n') {
                self.line_start = self.text.len();
            }
        }
    }

    fn write_char(&mut self, c: char) {
        match c {
            '\r' | '\0' | '\x07' => {}
            '\x08' => {
                if self.text.pop() == Some('\n') {
                    self.line_start = self.text.rfind('\n').map_or(0, |at| at + 1);
                }
            }
            '\n' => {
                self.text.push(c);
                self.line_start = self.text.len();
            }
            c => self.text.push(c),
        }
    }

    /// Bytes received since the last answer.
    pub(super) fn received(&self) -> usize {
        self.received
    }

    /// The answer, if the output so far ends in a prompt: everything before
    /// the prompt's line. The screen is empty afterwards.
    pub(super) fn take_answer(&mut self, prompt: &Regex) -> Option<String> {
        let unfinished = !self.partial_char.is_empty() || !self.partial_escape.is_empty();
        let last_line = &self.text[self.line_start..];
        if unfinished || last_line.len() > MAX_PROMPT || !prompt.is_match(last_line) {
            return None;
        }
        let mut answer = std::mem::take(&mut self.text);
        answer.truncate(self.line_start.saturating_sub(1));
        self.clear();
        Some(answer)
    }

    /// Everything received since the last answer, for an error message.
    pub(super) fn seen(&self) -> String {
        format!("{}{}", self.text, self.partial_escape)
    }

    pub(super) fn clear(&mut self) {
        *self = Screen::default();
    }
}

/// Where an escape sequence starts that `text` ends before its end. A title
/// (`ESC ] … BEL`) may hold other escapes, so an unfinished one is looked
/// for first.
fn unfinished_escape(text: &str) -> Option<usize> {
    let title = text.rfind("\x1b]").filter(|at| may_continue(&text[*at..]));
    title.or_else(|| text.rfind(ESC).filter(|at| may_continue(&text[*at..])))
}

/// Whether `tail`, which starts with ESC, may be an escape sequence that has
/// not ended yet (it would match [`ESCAPES`] once more of it arrives).
fn may_continue(tail: &str) -> bool {
    if tail.len() > MAX_ESCAPE || tail.contains('\n') {
        return false;
    }
    let body = &tail[ESC.len_utf8()..];
    let mut chars = body.chars();
    match chars.next() {
        None => true,
        Some('[') => {
            chars.all(|c| c.is_ascii_digit() || c == ';' || c == '?' || (' '..='/').contains(&c))
        }
        Some(']') => !body.contains('\x07'),
        Some('(' | ')') => chars.next().is_none(),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use proptest::prelude::*;
    use regex::Regex;

    use super::{ESCAPES, Screen};

    /// The whole output cleaned in one go: what the screen must equal
    /// however the output was cut into chunks.
    fn clean(raw: &[u8]) -> String {
        let text = String::from_utf8_lossy(raw);
        let text = ESCAPES.replace_all(&text, "");
        let mut out = String::new();
        for c in text.chars() {
            match c {
                '\r' | '\0' | '\x07' => {}
                '\x08' => {
                    out.pop();
                }
                c => out.push(c),
            }
        }
        out
    }

    fn prompt() -> Regex {
        Regex::new(r"^[A-Za-z0-9_.\-]+[>#]\s*$").expect("a prompt pattern")
    }

    fn screen_of(chunks: &[&[u8]]) -> Screen {
        let mut screen = Screen::default();
        for chunk in chunks {
            screen.push(chunk);
        }
        screen
    }

    #[test]
    fn escapes_and_carriage_returns_are_removed() {
        let screen = screen_of(&[b"\x1b[9999B\x1b[1;32mrouter\x1b[0m# show\r\n"]);
        assert_eq!(screen.seen(), "router# show\n");
        assert_eq!(screen_of(&[b"ab\x08c"]).seen(), "ac");
    }

    #[test]
    fn a_sequence_or_character_cut_by_a_chunk_is_put_back_together() {
        let screen = screen_of(&[b"a\x1b[1;3", b"2mb\xc3", b"\xa9\x08\x08c\r\n"]);
        assert_eq!(screen.seen(), "ac\n");
        let screen = screen_of(&[b"line\n\x08", b"x"]);
        assert_eq!(screen.seen(), "linex");
    }

    #[test]
    fn a_prompt_ends_the_answer_unless_an_escape_is_still_arriving() {
        let mut screen = screen_of(&[b"show clock\r\n12:00\r\nRouter#\x1b["]);
        assert_eq!(screen.take_answer(&prompt()), None);
        screen.push(b"K");
        assert_eq!(
            screen.take_answer(&prompt()).as_deref(),
            Some("show clock\n12:00")
        );
        assert_eq!(screen.seen(), "");
        assert_eq!(screen.received(), 0);
    }

    #[test]
    fn an_escape_that_cannot_continue_does_not_hold_the_prompt_back() {
        let mut screen = screen_of(&[b"odd \x1bZ here\r\nRouter#"]);
        assert_eq!(
            screen.take_answer(&prompt()).as_deref(),
            Some("odd \x1bZ here")
        );
    }

    proptest! {
        #[test]
        fn chunks_clean_to_what_the_whole_output_cleans_to(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(b"\x1b[1;32m".to_vec()),
                    Just(b"\x1b]0;title\x07".to_vec()),
                    Just(b"\x1b]0;a\x1b[1mb\x07".to_vec()),
                    Just(b"\x1b(B".to_vec()),
                    Just(b"\x1b".to_vec()),
                    Just(b"\x08".to_vec()),
                    Just(b"\r\n".to_vec()),
                    Just("é€".as_bytes().to_vec()),
                    Just(vec![0xff]),
                    "[a-z #]{0,8}".prop_map(String::into_bytes),
                ],
                0..40,
            ),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let raw: Vec<u8> = parts.concat();
            let mut at: Vec<usize> = cuts.iter().map(|cut| cut.index(raw.len() + 1)).collect();
            at.push(0);
            at.push(raw.len());
            at.sort_unstable();
            let mut screen = Screen::default();
            for pair in at.windows(2) {
                screen.push(&raw[pair[0]..pair[1]]);
            }
            // A trailing unfinished sequence is held, and shown by `seen`
            // as the raw text it is so far.
            let whole = clean(&raw);
            let seen = screen.seen();
            let seen_clean = clean(seen.as_bytes());
            prop_assert!(
                seen == whole || seen_clean == whole,
                "{raw:?}: chunks gave {seen:?}, the whole {whole:?}"
            );
        }
    }

    /// Shows that an answer costs time in proportion to its size: 20 MiB in
    /// 4 KiB chunks. Prints the time; nothing is asserted about it.
    #[test]
    fn a_20_mib_answer_in_4_kib_chunks_is_read_in_one_pass() {
        let line = "ip route 11.11.1.0 255.255.255.0 192.168.3.3 tag 1111 name x\r\n";
        let body = line.repeat((20 << 20) / line.len());
        let output = format!("{body}Router#");
        let prompt = prompt();
        let started = Instant::now();
        let mut screen = Screen::default();
        let mut answer = None;
        for chunk in output.as_bytes().chunks(4096) {
            screen.push(chunk);
            answer = screen.take_answer(&prompt);
        }
        let took = started.elapsed();
        let answer = answer.expect("the prompt ends the answer");
        println!(
            "{:.1} MiB in {} chunks of 4 KiB: {took:?}",
            output.len() as f64 / f64::from(1 << 20),
            output.len().div_ceil(4096)
        );
        assert_eq!(answer.len(), body.len() - body.lines().count() - 1);
        assert!(answer.ends_with("name x"));
    }
}
