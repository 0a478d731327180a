//! Container, volume and network rows. The engine owns what `config` and `state`
//! mean (they are JSON documents here); the store keeps them consistent:
//! names are unique, and every change is one transaction.

use rusqlite::{params, OptionalExtension, Row};

use crate::{Error, Result, Store};

#[derive(Debug, Clone)]
pub struct ContainerRow {
    pub id: String,
    pub name: String,
    pub image_id: String,
    /// Nanoseconds since the epoch.
    pub created: i64,
    pub config: String,
    pub state: String,
}

#[derive(Debug, Clone)]
pub struct VolumeRow {
    pub name: String,
    pub driver: String,
    pub created: i64,
    pub labels: String,
    pub options: String,
}

/// A user-defined network; the engine owns what `config` means.
#[derive(Debug, Clone)]
pub struct NetworkRow {
    pub id: String,
    pub name: String,
    pub created: i64,
    pub config: String,
}

fn network_row(r: &Row) -> rusqlite::Result<NetworkRow> {
    Ok(NetworkRow {
        id: r.get(0)?,
        name: r.get(1)?,
        created: r.get(2)?,
        config: r.get(3)?,
    })
}

fn container_row(r: &Row) -> rusqlite::Result<ContainerRow> {
    Ok(ContainerRow {
        id: r.get(0)?,
        name: r.get(1)?,
        image_id: r.get(2)?,
        created: r.get(3)?,
        config: r.get(4)?,
        state: r.get(5)?,
    })
}

fn volume_row(r: &Row) -> rusqlite::Result<VolumeRow> {
    Ok(VolumeRow {
        name: r.get(0)?,
        driver: r.get(1)?,
        created: r.get(2)?,
        labels: r.get(3)?,
        options: r.get(4)?,
    })
}

const CONTAINER_COLUMNS: &str = "id, name, image_id, created, config, state";

/// A unique constraint broken is a Conflict saying `message`.
fn name_conflict(e: rusqlite::Error, message: impl FnOnce() -> String) -> Error {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Error::Conflict(message())
        }
        e => e.into(),
    }
}

impl Store {
    /// Records a new container. A taken name is a Conflict.
    pub fn put_container(&self, c: &ContainerRow) -> Result<()> {
        self.write_tx(|db| {
            db.execute(
                "INSERT INTO containers (id, name, image_id, created, config, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![c.id, c.name, c.image_id, c.created, c.config, c.state],
            )
            .map_err(|e| {
                name_conflict(e, || {
                    format!("the container name \"{}\" is already in use", c.name)
                })
            })?;
            Ok(())
        })
    }

    pub fn container(&self, id: &str) -> Result<Option<ContainerRow>> {
        let sql = format!("SELECT {CONTAINER_COLUMNS} FROM containers WHERE id = ?1");
        Ok(self.db.query_row(&sql, [id], container_row).optional()?)
    }

    pub fn container_by_name(&self, name: &str) -> Result<Option<ContainerRow>> {
        let sql = format!("SELECT {CONTAINER_COLUMNS} FROM containers WHERE name = ?1");
        Ok(self.db.query_row(&sql, [name], container_row).optional()?)
    }

    /// Ids starting with `prefix` (which must be lowercase hex).
    pub fn container_ids_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .db
            .prepare("SELECT id FROM containers WHERE substr(id, 1, length(?1)) = ?1")?;
        let rows = stmt.query_map([prefix], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// All containers, newest first.
    pub fn containers(&self) -> Result<Vec<ContainerRow>> {
        let sql = format!("SELECT {CONTAINER_COLUMNS} FROM containers ORDER BY created DESC, id");
        let mut stmt = self.db.prepare(&sql)?;
        let rows = stmt.query_map([], container_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Replaces a container's state document. Returns false if the
    /// container is gone.
    pub fn set_container_state(&self, id: &str, state: &str) -> Result<bool> {
        self.write_tx(|db| {
            Ok(db.execute(
                "UPDATE containers SET state = ?2 WHERE id = ?1",
                params![id, state],
            )? > 0)
        })
    }

    /// Replaces one member of a container's state document (its health,
    /// which its monitor updates while other processes may write the
    /// rest). Returns false if the container is gone.
    pub fn set_container_state_field(&self, id: &str, field: &str, json: &str) -> Result<bool> {
        let path = format!("$.{field}");
        self.write_tx(|db| {
            Ok(db.execute(
                "UPDATE containers SET state = json_set(state, ?2, json(?3)) WHERE id = ?1",
                params![id, path, json],
            )? > 0)
        })
    }

    /// Replaces a container's config document.
    pub fn set_container_config(&self, id: &str, config: &str) -> Result<bool> {
        self.write_tx(|db| {
            Ok(db.execute(
                "UPDATE containers SET config = ?2 WHERE id = ?1",
                params![id, config],
            )? > 0)
        })
    }

    pub fn rename_container(&self, id: &str, name: &str) -> Result<()> {
        self.write_tx(|db| {
            db.execute(
                "UPDATE containers SET name = ?2 WHERE id = ?1",
                params![id, name],
            )
            .map_err(|e| {
                name_conflict(e, || {
                    format!("the container name \"{name}\" is already in use")
                })
            })?;
            Ok(())
        })
    }

    pub fn delete_container(&self, id: &str) -> Result<bool> {
        self.write_tx(|db| Ok(db.execute("DELETE FROM containers WHERE id = ?1", [id])? > 0))
    }

    /// Records a volume; returns false (and changes nothing) if one by
    /// that name exists.
    pub fn put_volume(&self, v: &VolumeRow) -> Result<bool> {
        self.write_tx(|db| {
            Ok(db.execute(
                "INSERT OR IGNORE INTO volumes (name, driver, created, labels, options)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![v.name, v.driver, v.created, v.labels, v.options],
            )? > 0)
        })
    }

    pub fn volume(&self, name: &str) -> Result<Option<VolumeRow>> {
        Ok(self
            .db
            .query_row(
                "SELECT name, driver, created, labels, options FROM volumes WHERE name = ?1",
                [name],
                volume_row,
            )
            .optional()?)
    }

    pub fn volumes(&self) -> Result<Vec<VolumeRow>> {
        let mut stmt = self
            .db
            .prepare("SELECT name, driver, created, labels, options FROM volumes ORDER BY name")?;
        let rows = stmt.query_map([], volume_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn delete_volume(&self, name: &str) -> Result<bool> {
        self.write_tx(|db| Ok(db.execute("DELETE FROM volumes WHERE name = ?1", [name])? > 0))
    }

    /// Records a network; a taken name is a Conflict.
    pub fn put_network(&self, n: &NetworkRow) -> Result<()> {
        self.write_tx(|db| {
            db.execute(
                "INSERT INTO networks (id, name, created, config) VALUES (?1, ?2, ?3, ?4)",
                params![n.id, n.name, n.created, n.config],
            )
            .map_err(|e| {
                name_conflict(e, || format!("network with name {} already exists", n.name))
            })?;
            Ok(())
        })
    }

    /// Networks, oldest first.
    pub fn networks(&self) -> Result<Vec<NetworkRow>> {
        let mut stmt = self
            .db
            .prepare("SELECT id, name, created, config FROM networks ORDER BY created, id")?;
        let rows = stmt.query_map([], network_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn delete_network(&self, id: &str) -> Result<bool> {
        self.write_tx(|db| Ok(db.execute("DELETE FROM networks WHERE id = ?1", [id])? > 0))
    }
}
