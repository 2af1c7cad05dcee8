//! arista-eos: being written.

use regex::Regex;

use crate::ssh::vendor::{ApplyOptions, Dialogue, Vendor, no_prompt};
use crate::{Change, Ownership, RouterRoutes};

pub struct AristaEos;

impl Vendor for AristaEos {
    fn name(&self) -> &'static str {
        "arista-eos"
    }

    fn dialogue(&self) -> Dialogue {
        Dialogue::Prompted
    }

    fn prompt(&self) -> &Regex {
        no_prompt()
    }

    fn list(&self, _cli: &str) -> Vec<String> {
        Vec::new()
    }

    fn parse_routes(&self, _output: &str, _ownership: &Ownership) -> Result<RouterRoutes, String> {
        Err("the arista-eos profile is not written yet".to_owned())
    }

    fn begin(&self, _options: &ApplyOptions) -> Vec<String> {
        Vec::new()
    }

    fn render(&self, _change: &Change, _ownership: &Ownership) -> Vec<String> {
        Vec::new()
    }

    fn finish(&self, _options: &ApplyOptions) -> Vec<String> {
        Vec::new()
    }
}
