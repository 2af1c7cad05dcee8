//! Splits what a client types into lines the way a router's terminal does:
//! any of "\r", "\n" or "\r\n" ends a line, and the input may arrive cut
//! anywhere, even between the "\r" and the "\n" of one line ending. Each line
//! comes with the ending that closed it, because some routers act on one
//! ending only and a driver that sends another hangs on the real device.

/// What closed a typed line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    Cr,
    Lf,
    CrLf,
}

impl Ending {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Ending::Cr => "\r",
            Ending::Lf => "\n",
            Ending::CrLf => "\r\n",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct TypedLine {
    /// Without its ending.
    pub(super) text: String,
    pub(super) ending: Ending,
}

/// The partial line of one shell, carried between chunks.
#[derive(Debug, Default)]
pub(super) struct LineSplitter {
    partial: Vec<u8>,
    /// Whether a "\r" that ends a chunk waits for the next chunk to tell a
    /// bare "\r" from a "\r\n" cut in two. Waiting is right only where the
    /// ending matters and a correct client always sends the "\n": otherwise
    /// a client that ends its lines with "\r" would wait for its prompt
    /// forever.
    wait_after_cr: bool,
    /// `partial` was ended by a "\r" whose next byte has not come yet.
    pending_cr: bool,
    /// The last byte was a "\r" already reported as a bare ending: a "\n"
    /// right after it belongs to it, not to an empty line.
    swallow_lf: bool,
}

impl LineSplitter {
    pub(super) fn new(wait_after_cr: bool) -> Self {
        Self {
            wait_after_cr,
            ..Self::default()
        }
    }

    /// Takes the next chunk and returns the lines it completes, in order.
    pub(super) fn push(&mut self, chunk: &[u8]) -> Vec<TypedLine> {
        let mut lines = Vec::new();
        for &byte in chunk {
            let swallow_lf = std::mem::take(&mut self.swallow_lf);
            if std::mem::take(&mut self.pending_cr) {
                if byte == b'\n' {
                    lines.push(self.finish(Ending::CrLf));
                    continue;
                }
                lines.push(self.finish(Ending::Cr));
            }
            match byte {
                b'\n' if swallow_lf => {}
                b'\r' => self.pending_cr = true,
                b'\n' => lines.push(self.finish(Ending::Lf)),
                _ => self.partial.push(byte),
            }
        }
        if !self.wait_after_cr {
            lines.extend(self.take_pending());
        }
        lines
    }

    /// The line a trailing "\r" ended, if it still waits for its next byte,
    /// reported as ended by a bare "\r": for when no more bytes will come,
    /// or when waiting for them is not wanted.
    pub(super) fn take_pending(&mut self) -> Option<TypedLine> {
        if !std::mem::take(&mut self.pending_cr) {
            return None;
        }
        self.swallow_lf = true;
        Some(self.finish(Ending::Cr))
    }

    fn finish(&mut self, ending: Ending) -> TypedLine {
        let text = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        TypedLine { text, ending }
    }
}

#[cfg(test)]
mod tests {
    use super::{Ending, LineSplitter};

    fn split_with(mut splitter: LineSplitter, chunks: &[&str]) -> Vec<(String, &'static str)> {
        chunks
            .iter()
            .flat_map(|chunk| splitter.push(chunk.as_bytes()))
            .map(|line| (line.text, line.ending.as_str()))
            .collect()
    }

    fn split(chunks: &[&str]) -> Vec<String> {
        split_with(LineSplitter::default(), chunks)
            .into_iter()
            .map(|(text, _)| text)
            .collect()
    }

    fn pairs(expected: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
        expected
            .iter()
            .map(|&(text, ending)| (text.to_owned(), ending))
            .collect()
    }

    #[test]
    fn every_line_ending_ends_a_line() {
        assert_eq!(split(&["a\rb\nc\r\nd"]), ["a", "b", "c"]);
    }

    #[test]
    fn crlf_cut_between_chunks_is_one_line_ending() {
        assert_eq!(
            split(&["show ver", "sion\r", "\nexit\r"]),
            ["show version", "exit"]
        );
    }

    #[test]
    fn empty_lines_are_lines() {
        assert_eq!(split(&["\r\n\n\r\r\n"]), ["", "", "", ""]);
    }

    #[test]
    fn each_line_names_the_ending_that_closed_it() {
        assert_eq!(
            split_with(LineSplitter::default(), &["a\rb\nc\r\n\n\r\r\n"]),
            pairs(&[
                ("a", "\r"),
                ("b", "\n"),
                ("c", "\r\n"),
                ("", "\n"),
                ("", "\r"),
                ("", "\r\n"),
            ])
        );
    }

    #[test]
    fn a_trailing_cr_waits_for_the_next_chunk_when_asked_to() {
        let mut splitter = LineSplitter::new(true);
        assert_eq!(splitter.push(b"show version\r"), []);
        let lines = splitter.push(b"\nexit\r");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, "show version");
        assert_eq!(lines[0].ending, Ending::CrLf);
        // A bare "\r" shows itself by what follows it.
        let lines = splitter.push(b"x");
        assert_eq!(lines.len(), 1);
        assert_eq!(
            (lines[0].text.as_str(), lines[0].ending),
            ("exit", Ending::Cr)
        );
    }

    #[test]
    fn a_trailing_cr_ends_the_line_at_once_by_default() {
        assert_eq!(
            split_with(LineSplitter::default(), &["show version\r", "\nexit\r"]),
            pairs(&[("show version", "\r"), ("exit", "\r")])
        );
    }

    #[test]
    fn a_pending_line_taken_out_is_a_bare_cr_and_its_lf_is_swallowed() {
        let mut splitter = LineSplitter::new(true);
        assert_eq!(splitter.push(b"abort\r"), []);
        let taken = splitter.take_pending().expect("the pending line");
        assert_eq!((taken.text.as_str(), taken.ending), ("abort", Ending::Cr));
        assert_eq!(splitter.take_pending(), None);
        assert_eq!(splitter.push(b"\n"), []);
    }
}
