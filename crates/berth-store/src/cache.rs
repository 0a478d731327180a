//! The build cache: a step's key (parent, instruction, inputs) to the image
//! that step made. Rows go with their image (ON DELETE CASCADE), so removing
//! an image can never leave a cache hit pointing at nothing.

use berth_oci::Digest;
use rusqlite::{params, OptionalExtension};

use crate::{Result, Store};

impl Store {
    pub fn cache_get(&self, key: &str) -> Result<Option<Digest>> {
        let id: Option<String> = self
            .db
            .query_row(
                "SELECT image_id FROM build_cache WHERE key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()?;
        Ok(id.and_then(|s| s.parse().ok()))
    }

    pub fn cache_put(&self, key: &str, image: &Digest, now: i64) -> Result<()> {
        self.write_tx(|db| {
            db.execute(
                "INSERT OR REPLACE INTO build_cache (key, image_id, created) VALUES (?1, ?2, ?3)",
                params![key, image.to_string(), now],
            )?;
            Ok(())
        })
    }

    /// Forgets every cache entry; returns how many there were.
    pub fn cache_clear(&self) -> Result<usize> {
        self.write_tx(|db| Ok(db.execute("DELETE FROM build_cache", [])?))
    }

    /// Images the cache refers to.
    pub fn cache_images(&self) -> Result<Vec<Digest>> {
        let mut stmt = self
            .db
            .prepare("SELECT DISTINCT image_id FROM build_cache")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let ids: Vec<String> = rows.collect::<rusqlite::Result<_>>()?;
        Ok(ids.into_iter().filter_map(|s| s.parse().ok()).collect())
    }
}
