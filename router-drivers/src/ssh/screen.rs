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
    /// The echo the answer waits for, when a line was sent.
    echo: Option<Echo>,
}

/// The echo of the line last sent, looked for in the text: a prompt counts
/// only on a line after it. A prompt redrawn before the echo (RouterOS
/// draws its prompt again, sometimes in a packet of its own) or one left
/// over from an earlier line would otherwise end the answer early, and
/// every later answer would belong to the line before it.
#[derive(Debug)]
struct Echo {
    /// The line sent, trimmed.
    line: String,
    /// Where in `text` the search goes on: every earlier start has been
    /// ruled out.
    scan_from: usize,
    /// Once seen: where the answer starts, just past the echo's line.
    answer_from: Option<usize>,
    /// Where the echo itself ended, while its line has not ended yet.
    echo_end: Option<usize>,
}

/// How far into the output the echo is looked for. A CLI echoes a line
/// before it answers it; a line not echoed within this much output was
/// not echoed at all.
const ECHO_WINDOW: usize = 64 << 10;

/// The line sent was not echoed within [`ECHO_WINDOW`] of output.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct NoEcho;

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

    /// From now on, an answer needs the echo of `line` before its prompt
    /// (see [`Echo`]). A line with nothing to echo (a bare Enter) needs
    /// none.
    pub(super) fn expect_echo(&mut self, line: &str) {
        let line = line.trim();
        self.echo = (!line.is_empty()).then(|| Echo {
            line: line.to_owned(),
            scan_from: 0,
            answer_from: None,
            echo_end: None,
        });
    }

    /// Whether the echo awaited has been seen, with the end of its line.
    pub(super) fn echo_seen(&mut self) -> Result<bool, NoEcho> {
        Ok(self.answer_start()?.is_some())
    }

    /// Where the answer starts: 0 when no echo is awaited, past the echo's
    /// line once it came, `None` while it has not.
    fn answer_start(&mut self) -> Result<Option<usize>, NoEcho> {
        let Some(echo) = self.echo.as_mut() else {
            return Ok(Some(0));
        };
        if echo.answer_from.is_none() {
            if echo.echo_end.is_none() {
                echo.echo_end = find_echo(&self.text, &echo.line, &mut echo.scan_from);
            }
            match echo.echo_end {
                Some(end) => {
                    echo.answer_from = self.text[end..].find('\n').map(|at| end + at + 1);
                }
                None if self.text.len() > ECHO_WINDOW + echo.line.len() * 2 => return Err(NoEcho),
                None => {}
            }
        }
        Ok(echo.answer_from)
    }

    /// The answer, if the output so far ends in a prompt on a line after
    /// the echo awaited: everything between the two. The screen is empty
    /// afterwards.
    pub(super) fn take_answer(&mut self, prompt: &Regex) -> Result<Option<String>, NoEcho> {
        let Some(from) = self.answer_start()? else {
            return Ok(None);
        };
        if self.line_start < from || !self.ends_in_prompt(prompt) {
            return Ok(None);
        }
        let mut answer = std::mem::take(&mut self.text);
        answer.truncate(self.line_start.saturating_sub(1).max(from));
        answer.drain(..from);
        self.clear();
        Ok(Some(answer))
    }

    /// With an end marker (a line the CLI prints on its own after the
    /// answer): the answer, once a line that is exactly `marker` has come,
    /// after the echo, and the output ends in a prompt after it.
    /// Everything between the echo and the marker; the screen is empty
    /// afterwards.
    pub(super) fn take_marked_answer(
        &mut self,
        prompt: &Regex,
        marker: &str,
    ) -> Result<Option<String>, NoEcho> {
        let Some(from) = self.answer_start()? else {
            return Ok(None);
        };
        if !self.ends_in_prompt(prompt) {
            return Ok(None);
        }
        let Some(at) = marker_line(&self.text[from..self.line_start], marker) else {
            return Ok(None);
        };
        let mut answer = std::mem::take(&mut self.text);
        answer.truncate(from + at);
        answer.drain(..from);
        self.clear();
        Ok(Some(answer))
    }

    /// Whether the output so far ends in a prompt, with no character or
    /// escape sequence still arriving.
    fn ends_in_prompt(&self, prompt: &Regex) -> bool {
        let unfinished = !self.partial_char.is_empty() || !self.partial_escape.is_empty();
        !unfinished && self.last_line_matches(prompt)
    }

    /// The line the output ends in, so far.
    pub(super) fn last_line(&self) -> &str {
        &self.text[self.line_start..]
    }

    /// Whether the line the output ends in matches `pattern` (a question
    /// asked at login).
    pub(super) fn last_line_matches(&self, pattern: &Regex) -> bool {
        let last = self.last_line();
        last.len() <= MAX_PROMPT && pattern.is_match(last)
    }

    /// Everything received since the last answer, for an error message.
    pub(super) fn seen(&self) -> String {
        format!("{}{}", self.text, self.partial_escape)
    }

    pub(super) fn clear(&mut self) {
        *self = Screen::default();
    }
}

/// Where the echo of `line` ends in `text`, if it is there. A terminal
/// wraps a long echo: a line break inside it is skipped. Starts before
/// `scan_from` have been ruled out; it moves up to the first start that
/// could still match once more text comes.
fn find_echo(text: &str, line: &str, scan_from: &mut usize) -> Option<usize> {
    let first = line.chars().next()?;
    while let Some(offset) = text[*scan_from..].find(first) {
        let start = *scan_from + offset;
        let mut wanted = line.chars().peekable();
        let mut end = start;
        for (at, c) in text[start..].char_indices() {
            match wanted.peek() {
                None => break,
                Some(&w) if w == c => {
                    wanted.next();
                    end = start + at + c.len_utf8();
                }
                Some(_) if c == '\n' && end > start => {}
                Some(_) => break,
            }
        }
        if wanted.peek().is_none() {
            return Some(end);
        }
        if end == start + text[start..].len() || text[end..].chars().all(|c| c == '\n') {
            // Matched to the end of what has come: wait for more.
            *scan_from = start;
            return None;
        }
        *scan_from = start + first.len_utf8();
    }
    *scan_from = text.len();
    None
}

/// Where in `text` a line that is exactly `marker` starts.
fn marker_line(text: &str, marker: &str) -> Option<usize> {
    let mut offset = 0;
    text.split_inclusive('\n').find_map(|line| {
        let at = offset;
        offset += line.len();
        (line.trim() == marker && line.ends_with('\n')).then_some(at)
    })
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
        assert_eq!(screen.take_answer(&prompt()), Ok(None));
        screen.push(b"K");
        assert_eq!(
            screen.take_answer(&prompt()).ok().flatten().as_deref(),
            Some("show clock\n12:00")
        );
        assert_eq!(screen.seen(), "");
        assert_eq!(screen.received(), 0);
    }

    #[test]
    fn an_escape_that_cannot_continue_does_not_hold_the_prompt_back() {
        let mut screen = screen_of(&[b"odd \x1bZ here\r\nRouter#"]);
        assert_eq!(
            screen.take_answer(&prompt()).ok().flatten().as_deref(),
            Some("odd \x1bZ here")
        );
    }

    #[test]
    fn a_prompt_before_the_echo_does_not_end_the_answer() {
        let mut screen = Screen::default();
        screen.expect_echo("show clock");
        // A prompt drawn again (or left over) before the echo arrives.
        screen.push(b"\r\nRouter#");
        assert_eq!(screen.take_answer(&prompt()), Ok(None));
        screen.push(b"show clock\r\n12:00\r\nRouter#");
        assert_eq!(screen.take_answer(&prompt()), Ok(Some("12:00".to_owned())));
    }

    #[test]
    fn the_echo_is_found_when_the_terminal_wrapped_it_or_cut_it_into_chunks() {
        let line = "/ipv6 route remove [find dst-address=fd11:11:0:3::/64 gateway=fd00:3::3]";
        let wrapped = format!("{}\r\n{}\r\n", &line[..30], &line[30..]);
        let mut screen = Screen::default();
        screen.expect_echo(line);
        for chunk in wrapped.as_bytes().chunks(7) {
            screen.push(chunk);
            assert_eq!(screen.take_answer(&prompt()), Ok(None));
        }
        screen.push(b"failure: no such item\r\nrouter>");
        assert_eq!(
            screen.take_answer(&prompt()),
            Ok(Some("failure: no such item".to_owned()))
        );
        // An empty answer: the prompt right on the line after the echo.
        screen.expect_echo("end");
        screen.push(b"end\r\nRouter#");
        assert_eq!(screen.take_answer(&prompt()), Ok(Some(String::new())));
    }

    #[test]
    fn an_echo_that_never_comes_is_an_error_not_a_wait() {
        let mut screen = Screen::default();
        screen.expect_echo("show clock");
        screen.push("x".repeat(70 << 10).as_bytes());
        assert_eq!(screen.take_answer(&prompt()), Err(super::NoEcho));
    }

    #[test]
    fn a_marked_answer_ends_at_the_marker_line_not_at_a_redrawn_prompt() {
        let mut screen = Screen::default();
        screen.expect_echo("/ip route add x");
        screen.push(b"/ip route add x\r\n");
        screen.push(b"\r[a@r] > ");
        assert_eq!(screen.take_marked_answer(&routeros(), "end-1"), Ok(None));
        screen.push(b"\r[a@r] > /ip route add x\r\nfailure: already have such route\r\n");
        screen.push(b"[a@r] > :put (\"end-\" . \"1\")\r\nend-1\r\n[a@r] > ");
        assert_eq!(
            screen.take_marked_answer(&routeros(), "end-1"),
            Ok(Some(
                "[a@r] > [a@r] > /ip route add x\nfailure: already have such route\n[a@r] > :put (\"end-\" . \"1\")\n"
                    .to_owned()
            ))
        );
    }

    fn routeros() -> Regex {
        Regex::new(r"^\[[^\[\]]+\] >\s*$").expect("a prompt pattern")
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
            answer = screen.take_answer(&prompt).ok().flatten();
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
