//! Image metadata in SQLite. Every change is one IMMEDIATE transaction, so
//! concurrent `berth` processes serialise on the database rather than
//! interleave half-done updates.

use std::path::Path;
use std::time::Duration;

use berth_oci::Digest;
use rusqlite::{params, Connection, OptionalExtension};

use crate::{Error, Result, Store};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    created INTEGER,
    added INTEGER NOT NULL,
    size INTEGER NOT NULL,
    parent TEXT
);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    diff_id TEXT NOT NULL,
    blob_digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    blob_size INTEGER NOT NULL,
    PRIMARY KEY (image_id, idx)
);
CREATE INDEX IF NOT EXISTS image_layers_diff ON image_layers(diff_id);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS repo_digests (
    name TEXT NOT NULL,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    PRIMARY KEY (name, image_id)
);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image_id TEXT NOT NULL,
    created INTEGER NOT NULL,
    config TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS build_cache (
    key TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    created INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS build_cache_image ON build_cache(image_id);
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    created INTEGER NOT NULL,
    labels TEXT NOT NULL,
    options TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL,
    config TEXT NOT NULL
);
";

/// Bumped whenever SCHEMA changes; `open` skips the DDL when the file is
/// current, which keeps the write lock out of every command's start.
const SCHEMA_VERSION: i64 = 4;

pub(crate) fn open(path: &Path) -> Result<Connection> {
    let db = Connection::open(path)?;
    db.busy_timeout(Duration::from_secs(60))?;
    // WAL lets readers go on while one process writes; NORMAL sync is safe
    // with WAL (a crash may lose the last commit, never corrupt the file).
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    // Every command is a short-lived process; checkpointing on each close
    // would put two fsyncs on the path of every `run`. The WAL is
    // checkpointed as it grows (every 1000 pages) instead.
    db.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    db.pragma_update(None, "foreign_keys", "ON")?;
    let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version < SCHEMA_VERSION {
        db.execute_batch("BEGIN IMMEDIATE")?;
        let migrated = (|| -> rusqlite::Result<()> {
            db.execute_batch(SCHEMA)?;
            // Stores from schema 1 have a containers table without state.
            let has_state: bool = db
                .prepare("SELECT 1 FROM pragma_table_info('containers') WHERE name = 'state'")?
                .exists([])?;
            if !has_state {
                db.execute_batch(
                    "ALTER TABLE containers ADD COLUMN state TEXT NOT NULL DEFAULT '{}'",
                )?;
            }
            db.pragma_update(None, "user_version", SCHEMA_VERSION)
        })();
        match migrated {
            Ok(()) => db.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = db.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        }
    }
    Ok(db)
}

/// A layer of an image: the blob as the manifest lists it and the diff id
/// of its uncompressed tar.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRef {
    pub diff_id: Digest,
    pub blob: Digest,
    pub media_type: String,
    /// Uncompressed tar length.
    pub size: u64,
    pub blob_size: u64,
}

pub struct NewImage {
    pub id: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub created: Option<i64>,
    pub parent: Option<Digest>,
    pub layers: Vec<LayerRef>,
}

#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub id: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    /// Nanoseconds since the epoch, from the config.
    pub created: Option<i64>,
    /// When this store got the image.
    pub added: i64,
    pub size: u64,
    pub parent: Option<Digest>,
    pub tags: Vec<String>,
    pub repo_digests: Vec<String>,
}

fn digest(s: String) -> rusqlite::Result<Digest> {
    s.parse().map_err(|e: berth_oci::Error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl Store {
    /// Runs `f` in an IMMEDIATE transaction, committing when it succeeds.
    pub fn write_tx<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.db.execute_batch("BEGIN IMMEDIATE")?;
        match f(&self.db) {
            Ok(v) => {
                self.db.execute_batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.db.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Records an image and points `tags` at it, in one transaction.
    /// Returns, for each tag that moved, the image it used to name.
    pub fn put_image(
        &self,
        img: &NewImage,
        tags: &[String],
        repo_digests: &[String],
    ) -> Result<Vec<(String, Digest)>> {
        self.write_tx(|db| {
            let size: u64 = img.layers.iter().map(|l| l.size).sum();
            let inserted = db.execute(
                "INSERT OR IGNORE INTO images (id, manifest_digest, manifest_media_type, created, added, size, parent)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    img.id.to_string(),
                    img.manifest_digest.to_string(),
                    img.manifest_media_type,
                    img.created,
                    berth_oci::time::now_nanos(),
                    size as i64,
                    img.parent.as_ref().map(|p| p.to_string()),
                ],
            )?;
            if inserted == 1 {
                let mut stmt = db.prepare(
                    "INSERT INTO image_layers (image_id, idx, diff_id, blob_digest, media_type, size, blob_size)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for (i, l) in img.layers.iter().enumerate() {
                    stmt.execute(params![
                        img.id.to_string(),
                        i as i64,
                        l.diff_id.to_string(),
                        l.blob.to_string(),
                        l.media_type,
                        l.size as i64,
                        l.blob_size as i64,
                    ])?;
                }
            }
            for rd in repo_digests {
                db.execute(
                    "INSERT OR IGNORE INTO repo_digests (name, image_id) VALUES (?1, ?2)",
                    params![rd, img.id.to_string()],
                )?;
            }
            let mut moved = Vec::new();
            for t in tags {
                if let Some(old) = set_tag(db, t, &img.id)? {
                    moved.push((t.clone(), old));
                }
            }
            Ok(moved)
        })
    }

    /// Points `name` at `id`; returns the image it named before, if another.
    pub fn tag(&self, name: &str, id: &Digest) -> Result<Option<Digest>> {
        self.write_tx(|db| set_tag(db, name, id))
    }

    /// Removes a tag; returns the image it named.
    pub fn untag(&self, name: &str) -> Result<Option<Digest>> {
        self.write_tx(|db| {
            let id: Option<String> = db
                .query_row(
                    "DELETE FROM tags WHERE name = ?1 RETURNING image_id",
                    [name],
                    |r| r.get(0),
                )
                .optional()?;
            id.map(digest).transpose().map_err(Error::from)
        })
    }

    /// Records that `name` (`repo@digest`) names the image `id`.
    pub fn add_repo_digest(&self, name: &str, id: &Digest) -> Result<()> {
        self.write_tx(|db| {
            db.execute(
                "INSERT OR IGNORE INTO repo_digests (name, image_id) VALUES (?1, ?2)",
                params![name, id.to_string()],
            )?;
            Ok(())
        })
    }

    pub fn remove_repo_digest(&self, name: &str, id: &Digest) -> Result<bool> {
        let n = self.db.execute(
            "DELETE FROM repo_digests WHERE name = ?1 AND image_id = ?2",
            params![name, id.to_string()],
        )?;
        Ok(n > 0)
    }

    pub fn tag_target(&self, name: &str) -> Result<Option<Digest>> {
        let id: Option<String> = self
            .db
            .query_row("SELECT image_id FROM tags WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(id.map(digest).transpose()?)
    }

    /// Images whose repo digests include `name@digest`.
    pub fn repo_digest_target(&self, name_at_digest: &str) -> Result<Option<Digest>> {
        let id: Option<String> = self
            .db
            .query_row(
                "SELECT image_id FROM repo_digests WHERE name = ?1",
                [name_at_digest],
                |r| r.get(0),
            )
            .optional()?;
        Ok(id.map(digest).transpose()?)
    }

    /// Image ids starting with `sha256:<hex_prefix>`.
    pub fn ids_with_prefix(&self, hex_prefix: &str) -> Result<Vec<Digest>> {
        let mut stmt = self
            .db
            .prepare("SELECT id FROM images WHERE substr(id, 1, ?2) = ?1")?;
        let pat = format!("sha256:{hex_prefix}");
        let rows = stmt.query_map(params![pat, pat.len() as i64], |r| digest(r.get(0)?))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn image(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        let mut all = self.query_images(Some(id))?;
        Ok(all.pop())
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        self.query_images(None)
    }

    fn query_images(&self, only: Option<&Digest>) -> Result<Vec<ImageRecord>> {
        let only = only.map(|d| d.to_string());
        let mut stmt = self.db.prepare(
            "SELECT id, manifest_digest, manifest_media_type, created, added, size, parent,
                    (SELECT group_concat(name, char(10)) FROM (SELECT name FROM tags WHERE image_id = images.id ORDER BY name)),
                    (SELECT group_concat(name, char(10)) FROM (SELECT name FROM repo_digests WHERE image_id = images.id ORDER BY name))
             FROM images WHERE ?1 IS NULL OR id = ?1 ORDER BY added DESC, id",
        )?;
        let split = |s: Option<String>| -> Vec<String> {
            s.map(|s| s.split('\n').map(str::to_string).collect())
                .unwrap_or_default()
        };
        let rows = stmt.query_map([only], |r| {
            Ok(ImageRecord {
                id: digest(r.get(0)?)?,
                manifest_digest: digest(r.get(1)?)?,
                manifest_media_type: r.get(2)?,
                created: r.get(3)?,
                added: r.get(4)?,
                size: r.get::<_, i64>(5)? as u64,
                parent: r.get::<_, Option<String>>(6)?.map(digest).transpose()?,
                tags: split(r.get(7)?),
                repo_digests: split(r.get(8)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn image_layers(&self, id: &Digest) -> Result<Vec<LayerRef>> {
        let mut stmt = self.db.prepare(
            "SELECT diff_id, blob_digest, media_type, size, blob_size FROM image_layers
             WHERE image_id = ?1 ORDER BY idx",
        )?;
        let rows = stmt.query_map([id.to_string()], |r| {
            Ok(LayerRef {
                diff_id: digest(r.get(0)?)?,
                blob: digest(r.get(1)?)?,
                media_type: r.get(2)?,
                size: r.get::<_, i64>(3)? as u64,
                blob_size: r.get::<_, i64>(4)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The uncompressed size of a layer some image records.
    pub fn layer_size(&self, diff_id: &Digest) -> Result<Option<u64>> {
        Ok(self
            .db
            .query_row(
                "SELECT size FROM image_layers WHERE diff_id = ?1 LIMIT 1",
                [diff_id.to_string()],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|s| s as u64))
    }

    /// Images recorded with `id` as their parent.
    pub fn children(&self, id: &Digest) -> Result<Vec<Digest>> {
        let mut stmt = self.db.prepare("SELECT id FROM images WHERE parent = ?1")?;
        let rows = stmt.query_map([id.to_string()], |r| digest(r.get(0)?))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Names of containers created from `id`.
    pub fn containers_using(&self, id: &Digest) -> Result<Vec<String>> {
        let mut stmt = self
            .db
            .prepare("SELECT id FROM containers WHERE image_id = ?1 ORDER BY created")?;
        let rows = stmt.query_map([id.to_string()], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes an image's metadata (its tags and layer rows go with it).
    /// Its blobs and layers stay until `collect_garbage`.
    pub fn delete_image(&self, id: &Digest) -> Result<bool> {
        self.write_tx(|db| {
            db.execute(
                "UPDATE images SET parent = NULL WHERE parent = ?1",
                [id.to_string()],
            )?;
            Ok(db.execute("DELETE FROM images WHERE id = ?1", [id.to_string()])? > 0)
        })
    }
}

fn set_tag(db: &Connection, name: &str, id: &Digest) -> Result<Option<Digest>> {
    let old: Option<String> = db
        .query_row("SELECT image_id FROM tags WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?;
    db.execute(
        "INSERT INTO tags (name, image_id) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
        params![name, id.to_string()],
    )?;
    let old = old.map(digest).transpose()?;
    Ok(old.filter(|o| o != id))
}
