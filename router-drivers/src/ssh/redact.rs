//! The session log shows what was sent and answered at debug level; router
//! output (a running config) can hold credentials, so their values are
//! masked before anything is logged.

use std::sync::LazyLock;

use regex::Regex;

static SECRET: LazyLock<Regex> = LazyLock::new(|| {
    // Keyword, an optional encryption type digit (IOS "password 7 …"), the value.
    Regex::new(
        r#"(?i)\b(password|secret|key-string|community|pre-shared-key|authentication-key|encrypted-password|auth-key|md5|private-key)(\s+(?:\d\s+)?)("[^"]*"|\S+)"#,
    )
    .expect("the credential pattern is a valid regex")
});

/// `text` with the value after every credential keyword replaced.
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    SECRET.replace_all(text, "$1$2<redacted>")
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_are_masked_and_routes_are_kept() {
        let config = "username admin privilege 15 secret 5 $1$abc$xyz\n\
                      snmp-server community s3cret RO\n\
                      set system login user ops authentication encrypted-password \"$6$salt$hash\"\n\
                      ip route 11.11.2.0 255.255.255.0 192.168.3.3 tag 1111\n";
        let masked = redact(config);
        assert!(!masked.contains("$1$abc$xyz"), "{masked}");
        assert!(!masked.contains("s3cret"), "{masked}");
        assert!(!masked.contains("$6$salt$hash"), "{masked}");
        assert!(masked.contains("secret 5 <redacted>"), "{masked}");
        assert!(masked.contains("ip route 11.11.2.0 255.255.255.0 192.168.3.3 tag 1111"));
    }
}
