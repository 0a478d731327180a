//! The unpack cache: one extracted directory per layer diff id.

use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;

use berth_layer::{ExtractOptions, Extracted, Whiteouts};
use berth_oci::Digest;

use crate::{sync_dir, Error, Result, Store};

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
        let work = self.scratch_dir("layer")?;
        let result = (|| {
            let got = berth_layer::extract(
                reader,
                &work,
                &ExtractOptions {
                    whiteouts: Whiteouts::Overlay,
                    ..Default::default()
                },
            )?;
            if let Some(e) = expected {
                if *e != got.diff_id {
                    return Err(Error::DigestMismatch {
                        expected: e.clone(),
                        actual: got.diff_id,
                    });
                }
            }
            let dest = self.layer_dir(&got.diff_id);
            match fs::rename(&work, &dest) {
                Ok(()) => sync_dir(&self.root.join("layers"))?,
                // Another process unpacked the same layer first.
                Err(e) if dest.is_dir() || e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
                Err(e) => return Err(Error::io("rename", &dest)(e)),
            }
            Ok(got)
        })();
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
