//! Host key verification against a known_hosts file.
//!
//! A router's host key is always checked before anything is sent: a key
//! that is not in the file, or that differs from the one recorded, closes
//! the connection. The one exception is trust on first use, for labs: when
//! the config allows it and the file has no key at all for the router, the
//! key offered is recorded and accepted. A changed key is refused even then.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use russh::keys::known_hosts::{
    check_known_hosts_path, known_host_keys_path, learn_known_hosts_path,
};
use russh::keys::{Algorithm, HashAlg, PublicKey, PublicKeyOrCertificate};

/// How one router's host key is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostKeyPolicy {
    pub known_hosts_file: PathBuf,
    /// Record the key of a router the file does not know yet (labs only).
    pub trust_on_first_use: bool,
}

/// What the check concluded about the key the router offered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKeyVerdict {
    /// Recorded in the file and equal: `fingerprint` is SHA256, as
    /// `ssh-keygen -l` prints it.
    Verified {
        fingerprint: String,
    },
    /// Unknown, recorded now because trust on first use is on.
    Learned {
        fingerprint: String,
    },
    Refused {
        reason: String,
    },
}

impl HostKeyVerdict {
    pub fn fingerprint(&self) -> Option<&str> {
        match self {
            HostKeyVerdict::Verified { fingerprint } | HostKeyVerdict::Learned { fingerprint } => {
                Some(fingerprint)
            }
            HostKeyVerdict::Refused { .. } => None,
        }
    }
}

/// Where the verdict of a handshake is left for the connecting code, which
/// russh only tells that the key was refused, not why.
pub type VerdictSlot = Arc<Mutex<Option<HostKeyVerdict>>>;

pub fn record(slot: &VerdictSlot, verdict: HostKeyVerdict) {
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(verdict);
}

pub fn take(slot: &VerdictSlot) -> Option<HostKeyVerdict> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// The algorithms of the keys the file holds for `host`, so that the
/// handshake asks the router for a key we can check (as OpenSSH's client
/// does). Empty when the file knows none, or cannot be read.
pub fn known_algorithms(policy: &HostKeyPolicy, host: &str, port: u16) -> Vec<Algorithm> {
    let mut algorithms: Vec<Algorithm> = known_host_keys_path(host, port, &policy.known_hosts_file)
        .unwrap_or_default()
        .into_iter()
        .map(|(_, key)| key.algorithm())
        .collect();
    algorithms.dedup();
    // An RSA host key is signed with SHA-2 in practice; "ssh-rsa" (SHA-1)
    // is a last resort that OpenSSH servers no longer offer.
    if let Some(at) = algorithms
        .iter()
        .position(|a| matches!(a, Algorithm::Rsa { .. }))
    {
        algorithms.splice(
            at..=at,
            [
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512),
                },
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha256),
                },
            ],
        );
    }
    algorithms
}

/// Checks the key a router offered for `host`:`port`.
pub fn check(
    policy: &HostKeyPolicy,
    host: &str,
    port: u16,
    offered: &PublicKeyOrCertificate,
) -> HostKeyVerdict {
    let key = match offered {
        PublicKeyOrCertificate::PublicKey { key, .. } => key,
        PublicKeyOrCertificate::Certificate(_) => {
            return HostKeyVerdict::Refused {
                reason: "the router offered a host certificate; nativeroute verifies plain host \
                         keys against the known_hosts file only"
                    .to_owned(),
            };
        }
    };
    let fingerprint = fingerprint(key);
    let file = &policy.known_hosts_file;
    if !file.exists() && !policy.trust_on_first_use {
        return HostKeyVerdict::Refused {
            reason: format!(
                "known_hosts file {} does not exist; add the router's key to it, e.g. with \
                 `ssh-keyscan -p {port} {host} >> {}` after checking the fingerprint {fingerprint}",
                file.display(),
                file.display()
            ),
        };
    }
    match check_known_hosts_path(host, port, key, file) {
        Ok(true) => HostKeyVerdict::Verified { fingerprint },
        Ok(false) => unknown_key(policy, host, port, key, fingerprint),
        Err(russh::keys::Error::KeyChanged { line }) => HostKeyVerdict::Refused {
            reason: format!(
                "the router's {} key {fingerprint} differs from the one recorded at {}:{line}. \
                 This is what a man-in-the-middle looks like; if the router was really \
                 re-keyed, replace that line",
                key.algorithm(),
                file.display()
            ),
        },
        Err(err) => HostKeyVerdict::Refused {
            reason: format!("cannot read known_hosts file {}: {err}", file.display()),
        },
    }
}

fn unknown_key(
    policy: &HostKeyPolicy,
    host: &str,
    port: u16,
    key: &PublicKey,
    fingerprint: String,
) -> HostKeyVerdict {
    let known_any = !known_host_keys_path(host, port, &policy.known_hosts_file)
        .unwrap_or_default()
        .is_empty();
    if policy.trust_on_first_use && !known_any {
        return match learn_known_hosts_path(host, port, key, &policy.known_hosts_file) {
            Ok(()) => HostKeyVerdict::Learned { fingerprint },
            Err(err) => HostKeyVerdict::Refused {
                reason: format!(
                    "cannot record the router's key in {}: {err}",
                    policy.known_hosts_file.display()
                ),
            },
        };
    }
    let entry = known_hosts_entry(host, port);
    HostKeyVerdict::Refused {
        reason: if known_any {
            format!(
                "{} has no {} key for {entry} (the router offered {fingerprint}); record that key \
                 after checking it",
                policy.known_hosts_file.display(),
                key.algorithm()
            )
        } else {
            format!(
                "{entry} is not in {}; after checking that the router's key is {fingerprint}, \
                 add it (e.g. `ssh-keyscan -p {port} {host}`)",
                policy.known_hosts_file.display()
            )
        },
    }
}

/// How known_hosts names a host: bare on port 22, `[host]:port` elsewhere.
fn known_hosts_entry(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// The SHA256 fingerprint of a key, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}
