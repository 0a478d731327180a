//! Content-addressed blobs.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use berth_oci::{Algorithm, Digest, Hasher};

use crate::{sync_dir, Error, Result, Store};

/// Writes a blob to scratch space while hashing it; `commit` verifies and
/// moves it into place.
pub struct BlobWriter {
    file: File,
    path: PathBuf,
    hasher: Hasher,
    blobs: PathBuf,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWriter {
    /// Verifies the content against `expected` (when given), syncs it and
    /// renames it into the blob directory. Returns its digest and size.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let size = self.hasher.len();
        let actual = match expected {
            Some(e) if e.algorithm() != Algorithm::Sha256 => {
                return Err(Error::Corrupt(format!(
                    "cannot store {e}: only sha256 blobs are kept"
                )))
            }
            _ => self.hasher.finish(),
        };
        if let Some(e) = expected {
            if *e != actual {
                let _ = fs::remove_file(&self.path);
                return Err(Error::DigestMismatch {
                    expected: e.clone(),
                    actual,
                });
            }
        }
        let dest = self.blobs.join(actual.hex());
        if dest.exists() {
            let _ = fs::remove_file(&self.path);
            return Ok((actual, size));
        }
        self.file
            .sync_all()
            .map_err(Error::io("sync", &self.path))?;
        fs::rename(&self.path, &dest).map_err(Error::io("rename", &dest))?;
        sync_dir(&self.blobs)?;
        Ok((actual, size))
    }
}

impl Store {
    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::MissingBlob(digest.clone())
            } else {
                Error::io("open", &p)(e)
            }
        })
    }

    /// Reads a small blob (manifest, config) whole and checks its digest, so
    /// a damaged file is reported rather than parsed.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut f = self.open_blob(digest)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(Error::io("read", self.blob_path(digest)))?;
        let mut h = Hasher::new(digest.algorithm());
        h.update(&buf);
        let actual = h.finish();
        if actual != *digest {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(buf)
    }

    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let dir = self.scratch()?;
        for n in 0u32.. {
            let path = dir.join(format!("blob{n}"));
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(BlobWriter {
                        file,
                        path,
                        hasher: Hasher::sha256(),
                        blobs: self.blob_dir(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("create", &path)(e)),
            }
        }
        unreachable!("u32 range exhausted")
    }

    /// Stores `bytes` as a blob and returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::sha256_of(bytes);
        if self.has_blob(&d) {
            return Ok(d);
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes).map_err(Error::io("write", &w.path))?;
        Ok(w.commit(Some(&d))?.0)
    }

    /// Moves an already-written file (whose digest the caller computed while
    /// writing it) into the blob directory.
    pub fn adopt_blob(&self, path: &Path, digest: &Digest) -> Result<()> {
        let dest = self.blob_path(digest);
        if dest.exists() {
            let _ = fs::remove_file(path);
            return Ok(());
        }
        let f = File::open(path).map_err(Error::io("open", path))?;
        f.sync_all().map_err(Error::io("sync", path))?;
        fs::rename(path, &dest).map_err(Error::io("rename", &dest))?;
        sync_dir(&self.blob_dir())
    }

    /// Digests of every blob on disk.
    pub fn list_blobs(&self) -> Result<Vec<Digest>> {
        let dir = self.blob_dir();
        let mut out = Vec::new();
        for e in fs::read_dir(&dir)
            .map_err(Error::io("read", &dir))?
            .flatten()
        {
            if let Some(name) = e.file_name().to_str() {
                if let Ok(d) = Digest::new(Algorithm::Sha256, name) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    pub fn remove_blob(&self, digest: &Digest) -> Result<()> {
        let p = self.blob_path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &p)(e)),
        }
    }
}
