//! Garbage collection: blobs and unpacked layers that no image references.

use std::collections::HashSet;

use berth_oci::Digest;

use crate::{LockMode, Result, Store};

#[derive(Debug, Default)]
pub struct GcReport {
    pub blobs: Vec<Digest>,
    pub layers: Vec<Digest>,
    pub bytes: u64,
}

impl Store {
    /// Deletes unreferenced blobs and layers. Holds the store lock
    /// exclusively, so content another process is adding (under the shared
    /// lock) and has not recorded yet is never taken for garbage.
    pub fn collect_garbage(&self) -> Result<GcReport> {
        let _lock = self.lock(LockMode::Exclusive)?;
        let mut blobs_in_use = HashSet::new();
        let mut layers_in_use = HashSet::new();
        {
            let mut stmt = self.db.prepare(
                "SELECT id FROM images UNION SELECT manifest_digest FROM images
                 UNION SELECT blob_digest FROM image_layers",
            )?;
            for r in stmt.query_map([], |r| r.get::<_, String>(0))? {
                blobs_in_use.insert(r?);
            }
            let mut stmt = self
                .db
                .prepare("SELECT DISTINCT diff_id FROM image_layers")?;
            for r in stmt.query_map([], |r| r.get::<_, String>(0))? {
                layers_in_use.insert(r?);
            }
        }
        let mut report = GcReport::default();
        for d in self.list_blobs()? {
            if !blobs_in_use.contains(&d.to_string()) {
                report.bytes += std::fs::metadata(self.blob_path(&d))
                    .map(|m| m.len())
                    .unwrap_or(0);
                self.remove_blob(&d)?;
                report.blobs.push(d);
            }
        }
        for d in self.list_layers()? {
            if !layers_in_use.contains(&d.to_string()) {
                self.remove_layer(&d)?;
                report.layers.push(d);
            }
        }
        Ok(report)
    }
}
