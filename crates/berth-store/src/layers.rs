//! The unpack cache: one extracted directory per layer diff id.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use berth_layer::{ExtractOptions, Extracted, Whiteouts};
use berth_oci::Digest;

use crate::{Error, Result, Store};

fn overlay_opts() -> ExtractOptions {
    ExtractOptions {
        whiteouts: Whiteouts::Overlay,
        ..Default::default()
    }
}

impl Store {
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).is_dir()
    }

    /// Extracts an uncompressed layer stream into the cache. The stream is
    /// unpacked in scratch space and only renamed into place once its digest
    /// is known (and matches `expected`), so the cache never holds a partial
    /// or mislabelled layer.
    pub fn unpack_layer<R: Read>(&self, reader: R, expected: Option<&Digest>) -> Result<Extracted> {
        self.unpack_with(|work| {
            let got = berth_layer::extract(reader, work, &overlay_opts())?;
            if let Some(e) = expected {
                if *e != got.diff_id {
                    return Err(Error::DigestMismatch {
                        expected: e.clone(),
                        actual: got.diff_id,
                    });
                }
            }
            Ok(got)
        })
    }

    /// Unpacks a stream whose digest the caller has verified to be
    /// `diff_id` already (an uncompressed blob it just hashed), without
    /// hashing it a second time.
    pub fn unpack_verified_layer<R: Read>(&self, reader: R, diff_id: &Digest) -> Result<Extracted> {
        self.unpack_with(|work| {
            let size = berth_layer::extract_verified(reader, work, &overlay_opts())?;
            Ok(Extracted {
                diff_id: diff_id.clone(),
                size,
            })
        })
    }

    fn unpack_with(&self, f: impl FnOnce(&Path) -> Result<Extracted>) -> Result<Extracted> {
        let work = self.scratch_dir("layer")?;
        let result = f(&work).and_then(|got| {
            let dest = self.layer_dir(&got.diff_id);
            // No fsync here, unlike blobs: the unpack cache is rebuilt from
            // the (synced) blobs, and syncing the directory would force the
            // whole extracted tree to disk, doubling a load's time.
            match fs::rename(&work, &dest) {
                Ok(()) => {}
                // Another process unpacked the same layer first.
                Err(e) if dest.is_dir() || e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
                Err(e) => return Err(Error::io("rename", &dest)(e)),
            }
            Ok(got)
        });
        if work.exists() {
            let _ = fs::remove_dir_all(&work);
        }
        result
    }

    /// Removes a cached layer. The directory is first renamed into scratch
    /// space, so an interrupted removal never leaves a half-empty layer in
    /// the cache.
    pub fn remove_layer(&self, diff_id: &Digest) -> Result<()> {
        let dir = self.layer_dir(diff_id);
        let grave = self.scratch()?.join(format!("gone-{}", diff_id.hex()));
        match fs::rename(&dir, &grave) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("remove", &dir)(e)),
        }
        fs::remove_dir_all(&grave).map_err(Error::io("remove", &grave))
    }

    /// Diff ids of every layer in the cache.
    pub fn list_layers(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("layers");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir)
            .map_err(Error::io("read", &dir))?
            .flatten()
        {
            if let Some(name) = e.file_name().to_str() {
                if let Ok(d) = Digest::new(berth_oci::Algorithm::Sha256, name) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }
}
