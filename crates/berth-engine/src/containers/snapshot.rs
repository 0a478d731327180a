//! What a container changed: `diff`, and `commit` to a new image.

use std::path::PathBuf;

use berth_layer::{ChangeKind, Item, WriteOptions};
use berth_oci::{time, ContainerConfig, Digest, History, Reference};

use super::{Container, Status};
use crate::{changes, Engine, Error, Result};

/// Files Berth itself places in every container (bind-mount targets);
/// Docker keeps them in an init layer, so they are never the user's change.
const OWN_FILES: [&str; 3] = ["etc/hosts", "etc/hostname", "etc/resolv.conf"];

#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `repository[:tag]` for the new image.
    pub reference: Option<String>,
    pub author: Option<String>,
    pub message: Option<String>,
    /// Dockerfile instructions applied to the config (`--change`).
    pub changes: Vec<String>,
    /// Pause a running container while its files are read (Docker's default).
    pub pause: bool,
}

impl Engine {
    /// The container's changes, leaving out Berth's own files and `extra`
    /// (relative paths, such as build mount targets).
    pub(crate) fn changed_items(
        &self,
        c: &Container,
        extra: &[PathBuf],
    ) -> Result<(PathBuf, Vec<Item>)> {
        self.ensure_layers(&c.image_id)?;
        let lowers = self.image_layer_dirs(&c.image_id)?;
        let upper = self.paths(&c.id).dir.join("upper");
        if !upper.is_dir() {
            return Ok((upper, Vec::new()));
        }
        let mut exclude: Vec<PathBuf> = OWN_FILES.iter().map(PathBuf::from).collect();
        exclude.extend_from_slice(extra);
        let items = berth_layer::overlay_changes(&upper, &lowers, &exclude)?;
        Ok((upper, items))
    }

    /// `docker diff`: the paths a container added, changed or deleted,
    /// sorted as Docker prints them.
    pub fn container_changes(&self, name: &str) -> Result<Vec<(ChangeKind, String)>> {
        let c = self.container(name)?;
        let (_, items) = self.changed_items(&c, &[])?;
        let mut out: Vec<(ChangeKind, String)> = items
            .iter()
            .map(|i| (i.change(), format!("/{}", i.path.display())))
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(out)
    }

    /// `docker commit`: the container's changes as a new layer on its
    /// image, with its config (and `changes`) as the new image's config.
    pub fn commit_container(&self, name: &str, opts: &CommitOptions) -> Result<Digest> {
        let tag = opts
            .reference
            .as_deref()
            .map(|r| -> Result<String> {
                let r = Reference::parse(r)?;
                if r.digest().is_some() {
                    return Err(Error::InvalidArgument(
                        "refusing to create a tag with a digest reference".into(),
                    ));
                }
                Ok(r.to_string())
            })
            .transpose()?;
        let c = self.container(name)?;
        let base = self
            .store
            .image(
                &c.image_id
                    .parse()
                    .map_err(|e: berth_oci::Error| Error::Internal(e.to_string()))?,
            )?
            .ok_or_else(|| Error::NoSuchImage(c.spec.config.image.clone()))?;
        let mut image_config = self.image_config(&base)?;
        let mut config = committed_config(&c, image_config.config.as_ref());
        for line in &opts.changes {
            changes::apply(&mut config, line)?;
        }

        let paused = opts.pause && c.state.status == Status::Running;
        if paused {
            self.pause_container(&c.id)?;
        }
        let layer = self.changed_items(&c, &[]).and_then(|(upper, items)| {
            let _adding = self.adding()?;
            self.store_layer(
                &upper,
                &items,
                &WriteOptions::default(),
                berth_oci::media::Compression::Gzip,
            )
        });
        if paused {
            self.unpause_container(&c.id)?;
        }
        let layer = layer?;

        let created = time::format_rfc3339(time::now_nanos());
        image_config.created = Some(created.clone());
        image_config.author = opts.author.clone();
        image_config.config = Some(config);
        image_config.rootfs.diff_ids.push(layer.diff_id.clone());
        let mut command = c.spec.config.entrypoint.clone().unwrap_or_default();
        command.extend(c.spec.config.cmd.clone().unwrap_or_default());
        image_config.history.push(History {
            created: Some(created),
            created_by: Some(command.join(" ")),
            author: opts.author.clone(),
            comment: opts.message.clone(),
            empty_layer: false,
        });
        let _adding = self.adding()?;
        let id = self.put_child_image(Some(&base), Some(layer), &image_config, tag.as_slice())?;
        self.emit_container(
            &c,
            "commit",
            &[
                ("comment", opts.message.clone().unwrap_or_default()),
                ("imageID", id.to_string()),
            ],
        );
        Ok(id)
    }
}

/// The container's settings as an image config, as Docker's commit writes
/// it: what the container ran with, without what Berth added at run time.
fn committed_config(c: &Container, image: Option<&ContainerConfig>) -> ContainerConfig {
    let cfg = &c.spec.config;
    let mut out = image.cloned().unwrap_or_default();
    let image_has_hostname = out
        .env
        .as_ref()
        .is_some_and(|e| e.iter().any(|v| v.starts_with("HOSTNAME=")));
    let env: Vec<String> = cfg
        .env
        .iter()
        .filter(|e| image_has_hostname || !e.starts_with("HOSTNAME="))
        .cloned()
        .collect();
    out.env = (!env.is_empty()).then_some(env);
    out.cmd = cfg.cmd.clone();
    out.entrypoint = cfg.entrypoint.clone();
    out.user = (!cfg.user.is_empty()).then(|| cfg.user.clone());
    out.working_dir = (!cfg.working_dir.is_empty()).then(|| cfg.working_dir.clone());
    out.labels = (!cfg.labels.is_empty()).then(|| cfg.labels.clone());
    if cfg.stop_signal.is_some() {
        out.stop_signal = cfg.stop_signal.clone();
    }
    if cfg.healthcheck.is_some() {
        out.healthcheck = cfg.healthcheck.clone();
    }
    out
}
