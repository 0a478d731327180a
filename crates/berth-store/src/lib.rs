//! Berth's on-disk store.
//!
//! Layout under the root directory:
//! - `blobs/sha256/<hex>`: content-addressed blobs (manifests, configs, layers).
//! - `layers/<algo>-<hex>`: the unpack cache, one extracted directory per
//!   layer diff id, ready to be an overlayfs lowerdir.
//! - `berth.db`: SQLite metadata (images, tags, layers).
//! - `tmp/<pid>-<n>/`: one scratch directory per process, held by a lock;
//!   whatever a killed process left there is removed by the next one.
//! - `lock`: taken shared while a process adds content and exclusive by
//!   garbage collection, so collection never deletes a blob that another
//!   process wrote but has not recorded yet.
//!
//! Anything that lands in `blobs/` or `layers/` is complete: it is written
//! under `tmp/`, verified, synced, then renamed into place.

mod blobs;
mod cache;
mod containers;
mod db;
mod gc;
mod layers;
mod lock;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use blobs::BlobWriter;
pub use containers::{ContainerRow, NetworkRow, VolumeRow};
pub use db::{ImageRecord, LayerRef, NewImage};
pub use gc::GcReport;
pub use lock::{LockGuard, LockMode};

use berth_oci::Digest;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("store database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {0} is missing from the store")]
    MissingBlob(Digest),
    #[error(transparent)]
    Layer(#[from] berth_layer::Error),
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Conflict(String),
}

pub use berth_oci::ErrorKind;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::MissingBlob(_) => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::DigestMismatch { .. } => ErrorKind::InvalidArgument,
            Error::Layer(e) => e.kind(),
            _ => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub struct Store {
    root: PathBuf,
    db: rusqlite::Connection,
    scratch: std::cell::OnceCell<lock::Scratch>,
}

/// Makes `dir` no more open than `mode` (never opens it up).
pub fn private_dir(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let md = fs::metadata(dir).map_err(Error::io("stat", dir))?;
    let have = md.permissions().mode() & 0o7777;
    if have & !mode != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(have & mode))
            .map_err(Error::io("chmod", dir))?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the store at `root` and clears scratch
    /// space left by processes that died.
    pub fn open(root: &Path) -> Result<Store> {
        for dir in ["blobs/sha256", "layers", "tmp"] {
            let p = root.join(dir);
            fs::create_dir_all(&p).map_err(Error::io("create", &p))?;
        }
        // Private to root, as Docker keeps /var/lib/docker: layers hold
        // setuid binaries and device nodes that no other user may reach.
        // Stores made before this are tightened here.
        private_dir(root, 0o710)?;
        for dir in ["blobs", "layers", "tmp"] {
            private_dir(&root.join(dir), 0o700)?;
        }
        let root = fs::canonicalize(root).map_err(Error::io("resolve", root))?;
        lock::clean_stale(&root.join("tmp"))?;
        let db = db::open(&root.join("berth.db"))?;
        Ok(Store {
            root,
            db,
            scratch: std::cell::OnceCell::new(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This process's scratch directory, created on first use.
    pub fn scratch(&self) -> Result<&Path> {
        if self.scratch.get().is_none() {
            let s = lock::Scratch::create(&self.root.join("tmp"))?;
            let _ = self.scratch.set(s);
        }
        Ok(self.scratch.get().expect("scratch set above").path())
    }

    /// A fresh empty directory inside the scratch area.
    pub fn scratch_dir(&self, prefix: &str) -> Result<PathBuf> {
        let base = self.scratch()?;
        for n in 0u32.. {
            let p = base.join(format!("{prefix}{n}"));
            match fs::create_dir(&p) {
                Ok(()) => return Ok(p),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("create", &p)(e)),
            }
        }
        unreachable!("u32 range exhausted")
    }

    /// Takes the store-wide lock: shared while adding content, exclusive
    /// while collecting garbage.
    pub fn lock(&self, mode: LockMode) -> Result<LockGuard> {
        LockGuard::take(&self.root.join("lock"), mode)
    }

    pub fn db(&self) -> &rusqlite::Connection {
        &self.db
    }
}

/// fsyncs a directory so a rename inside it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir).map_err(Error::io("open", dir))?;
    f.sync_all().map_err(Error::io("sync", dir))
}
