//! Sockets that belong to a named network namespace.
//!
//! A socket belongs to the namespace it was created in, for good. setns()
//! changes only the calling thread, so a short-lived thread enters the
//! namespace, creates the socket (with the tokio runtime entered, so that it
//! can register with the reactor) and ends; no thread of the runtime ever
//! changes namespace.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::DriverError;

/// Where `ip netns add` puts its namespaces.
const NETNS_DIR: &str = "/run/netns";

/// A namespace to enter: its name and the open /run/netns file.
pub(crate) struct Namespace {
    name: String,
    file: File,
}

/// Which namespace a name stood for: the device and inode of its nsfs
/// file. A namespace deleted and made again under the same name is
/// another namespace, with another inode; the old one lives on, unreachable
/// by name, for as long as a socket in it is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    /// The namespace `/run/netns/NAME` stands for now.
    pub(crate) fn of(router: &str, name: &str) -> Result<Identity, DriverError> {
        let path = path_of(router, name)?;
        let metadata = std::fs::metadata(&path).map_err(|error| DriverError::Netns {
            router: router.to_owned(),
            netns: name.to_owned(),
            source: io::Error::new(error.kind(), format!("{}: {error}", path.display())),
        })?;
        Ok(Identity {
            dev: metadata.dev(),
            ino: metadata.ino(),
        })
    }
}

/// `/run/netns/NAME`, for a name and never a path: nothing outside
/// /run/netns can be reached through it.
fn path_of(router: &str, name: &str) -> Result<PathBuf, DriverError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(DriverError::Netns {
            router: router.to_owned(),
            netns: name.to_owned(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a namespace name (as `ip netns list` shows them)",
            ),
        });
    }
    Ok([NETNS_DIR, name].iter().collect())
}

impl Namespace {
    /// Opens namespace `name` (as `ip netns list` shows it) for `router`.
    pub(crate) fn open(router: &str, name: &str) -> Result<Namespace, DriverError> {
        let netns_error = |source| DriverError::Netns {
            router: router.to_owned(),
            netns: name.to_owned(),
            source,
        };
        let path = path_of(router, name)?;
        let file = File::open(&path).map_err(|error| {
            netns_error(io::Error::new(
                error.kind(),
                format!("{}: {error}", path.display()),
            ))
        })?;
        Ok(Namespace {
            name: name.to_owned(),
            file,
        })
    }

    /// The namespace this open file stands for, whatever happens to its
    /// name afterwards.
    pub(crate) fn identity(&self, router: &str) -> Result<Identity, DriverError> {
        let metadata = self.file.metadata().map_err(|source| DriverError::Netns {
            router: router.to_owned(),
            netns: self.name.clone(),
            source,
        })?;
        Ok(Identity {
            dev: metadata.dev(),
            ino: metadata.ino(),
        })
    }
}

/// Runs `create` on a thread of its own inside `namespace` (`None`: this
/// process's own) and returns what it made.
pub(crate) async fn create_inside<T, F>(
    router: &str,
    namespace: Option<Namespace>,
    create: F,
) -> Result<T, DriverError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, DriverError> + Send + 'static,
{
    let runtime = Handle::current();
    let (tx, rx) = oneshot::channel();
    let owner = router.to_owned();
    std::thread::Builder::new()
        .name("netns-socket".to_owned())
        .spawn(move || {
            let _runtime = runtime.enter();
            let created = match namespace {
                Some(namespace) => setns(&namespace.file, CloneFlags::CLONE_NEWNET)
                    .map_err(|errno| DriverError::Netns {
                        router: owner,
                        netns: namespace.name.clone(),
                        source: errno.into(),
                    })
                    .and_then(|()| create()),
                None => create(),
            };
            let _ = tx.send(created);
        })
        .map_err(|source| DriverError::Socket {
            router: router.to_owned(),
            source,
        })?;
    rx.await.map_err(|_| DriverError::Socket {
        router: router.to_owned(),
        source: io::Error::other("the thread opening the socket ended without an answer"),
    })?
}
