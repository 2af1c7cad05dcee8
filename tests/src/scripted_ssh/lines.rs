//! Splits what a client types into lines the way a router's terminal does:
//! any of "\r", "\n" or "\r\n" ends a line, and the input may arrive cut
//! anywhere, even between the "\r" and the "\n" of one line ending.

/// The partial line of one shell, carried between chunks.
#[derive(Debug, Default)]
pub(super) struct LineSplitter {
    partial: Vec<u8>,
    /// The last byte seen was a "\r": a "\n" right after it belongs to the
    /// same line ending, not to an empty line.
    after_cr: bool,
}

impl LineSplitter {
    /// Takes the next chunk and returns the lines it completes, in order.
    pub(super) fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &byte in chunk {
            let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
            match byte {
                b'\n' if after_cr => {}
                b'\r' | b'\n' => {
                    lines.push(String::from_utf8_lossy(&self.partial).into_owned());
                    self.partial.clear();
                }
                _ => self.partial.push(byte),
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::LineSplitter;

    fn split(chunks: &[&str]) -> Vec<String> {
        let mut splitter = LineSplitter::default();
        chunks
            .iter()
            .flat_map(|chunk| splitter.push(chunk.as_bytes()))
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
}
