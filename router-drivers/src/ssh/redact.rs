//! Router output (a running config, a failed save, an error that quotes the
//! configuration) can hold credentials, and it reaches logs, errors and
//! Events. Before that, everything after a credential keyword is masked, to
//! the end of its line.
//!
//! The rest of the line, not one word: the value often comes after type
//! words that differ by vendor (`secret 5 …`, `secret sha512 …`,
//! `key-string 7 …`, `pre-shared-key ascii-text "…"`, `auth sha … priv aes
//! 128 …`), and a pattern that guessed where the value starts would let it
//! through whenever it guessed wrong. A keyword matches as a whole word or
//! as a part of a hyphenated one (`message-digest-key`, `key-string`,
//! `encrypted-password`), before a space or `=` (RouterOS `password=…`).
//! Lines without a keyword, such as routes, are left as they are; a few
//! harmless lines lose their tail (`key chain NAME`).
//!
//! Redact line by line before joining lines into one message: joined, the
//! first keyword masks everything after it. A value already masked is left
//! alone, so redacting a message twice masks no more than once.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

static SECRET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?im)\b((?:password|secret|key|community|md5|auth|priv)(?:-[a-z0-9]+)*)\b((?:[ \t]+|[ \t]*=[ \t]*))(?:<redacted>|[^\r\n]+)",
    )
    .expect("the credential pattern is a valid regex")
});

/// `text` with everything after a credential keyword masked, line by line.
pub fn redact(text: &str) -> Cow<'_, str> {
    SECRET.replace_all(text, "$1$2<redacted>")
}

#[cfg(test)]
mod tests {
    use super::redact;

    /// Each line redacted: what is left of it, and the secret it held.
    fn masks(line: &str, left: &str, secret: &str) {
        let masked = redact(line);
        assert_eq!(masked, left, "{line}");
        assert!(!masked.contains(secret), "{masked}");
    }

    #[test]
    fn ios_type_7_keys_are_masked() {
        masks(
            "tacacs-server key 7 0822455D0A16",
            "tacacs-server key <redacted>",
            "0822455D0A16",
        );
        masks(
            "  key-string 7 13061E010803",
            "  key-string <redacted>",
            "13061E010803",
        );
        masks(
            " ip ospf message-digest-key 1 md5 7 070C285F4D06",
            " ip ospf message-digest-key <redacted>",
            "070C285F4D06",
        );
    }

    #[test]
    fn snmpv3_auth_and_priv_secrets_are_masked() {
        masks(
            "snmp-server user mon NMS v3 auth sha AuthPass1 priv aes 128 PrivPass1",
            "snmp-server user mon NMS v3 auth <redacted>",
            "Pass1",
        );
        masks(
            "snmp-server user mon NMS v3 auth md5 AuthPass2 priv des PrivPass2",
            "snmp-server user mon NMS v3 auth <redacted>",
            "Pass2",
        );
        masks(
            "snmp-server user mon NMS v3 priv aes 256 PrivPass3",
            "snmp-server user mon NMS v3 priv <redacted>",
            "PrivPass3",
        );
        masks(
            "snmp-server user mon NMS v3 priv des PrivPass4",
            "snmp-server user mon NMS v3 priv <redacted>",
            "PrivPass4",
        );
        // EOS writes the hash names together with their size.
        masks(
            "snmp-server user mon NMS v3 localized 00:00 auth sha512 0xab12 priv aes256 0xcd34",
            "snmp-server user mon NMS v3 localized 00:00 auth <redacted>",
            "0xab12",
        );
    }

    #[test]
    fn passwords_secrets_and_communities_are_masked_whatever_their_type_words() {
        masks(
            "username admin privilege 15 secret 5 $1$abc$xyz",
            "username admin privilege 15 secret <redacted>",
            "$1$abc$xyz",
        );
        masks(
            "username admin secret sha512 $6$salt$hash",
            "username admin secret <redacted>",
            "$6$salt$hash",
        );
        masks(
            "snmp-server community s3cret RO",
            "snmp-server community <redacted>",
            "s3cret",
        );
        masks(
            "set system login user ops authentication encrypted-password \"$6$salt$hash\"",
            "set system login user ops authentication encrypted-password <redacted>",
            "$6$salt$hash",
        );
        masks(
            "set security ike policy p pre-shared-key ascii-text \"$9$dkf.\"",
            "set security ike policy p pre-shared-key <redacted>",
            "$9$dkf.",
        );
        masks(
            "set service snmp v3 user u auth plaintext-password 'hunter2'",
            "set service snmp v3 user u auth <redacted>",
            "hunter2",
        );
        masks(
            " neighbor 192.168.3.9 password Z3bra",
            " neighbor 192.168.3.9 password <redacted>",
            "Z3bra",
        );
    }

    #[test]
    fn routeros_key_value_secrets_are_masked() {
        masks(
            "/user add name=ops group=full password=S3cret!",
            "/user add name=ops group=full password=<redacted>",
            "S3cret!",
        );
        masks(
            "set 0 authentication-password=abcdefgh encryption-password=ijklmnop",
            "set 0 authentication-password=<redacted>",
            "ijklmnop",
        );
    }

    #[test]
    fn routes_and_lines_without_a_keyword_are_kept_line_by_line() {
        let config = "ip route 11.11.2.0 255.255.255.0 192.168.3.3 tag 1111 name nativeroute\r\n\
                      enable secret 5 $1$abc\r\n\
                      ipv6 route fd11:11:0:7::/64 fd00:3::7 tag 1111\n\
                      set protocols static route 11.11.5.0/24 description nativeroute-1111\n\
                      no password\n";
        assert_eq!(
            redact(config),
            "ip route 11.11.2.0 255.255.255.0 192.168.3.3 tag 1111 name nativeroute\r\n\
             enable secret <redacted>\r\n\
             ipv6 route fd11:11:0:7::/64 fd00:3::7 tag 1111\n\
             set protocols static route 11.11.5.0/24 description nativeroute-1111\n\
             no password\n"
        );
        assert_eq!(
            redact("keyboard monkey passwords"),
            "keyboard monkey passwords"
        );
    }

    #[test]
    fn redacting_twice_masks_no_more_than_once() {
        let joined = format!(
            "{}; {}; error: commit failed",
            redact("encrypted-password \"$6$x\""),
            redact("authentication-key \"$9$y\"")
        );
        assert_eq!(
            redact(&joined),
            "encrypted-password <redacted>; authentication-key <redacted>; error: commit failed"
        );
    }
}
