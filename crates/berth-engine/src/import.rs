//! `import`: a root filesystem tarball becomes a one-layer image.

use std::io::{self, Read, Write};

use berth_oci::{
    media, time, ContainerConfig, Digest, History, ImageConfig, Platform, Reference, RootFs,
};
use berth_store::{BlobWriter, LayerRef};

use crate::{changes, Engine, Error, Result};

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Tag for the new image.
    pub reference: Option<String>,
    /// Dockerfile instructions applied to the config (`--change`).
    pub changes: Vec<String>,
    /// `os/arch[/variant]`; the host's by default.
    pub platform: Option<String>,
    /// History comment (`--message`); "Imported from <source>" by default.
    pub message: Option<String>,
    /// Where the tarball came from, for the default comment ("-" for stdin).
    pub source: String,
}

/// Copies what is read into the blob being written, so one pass over the
/// input both unpacks and stores the layer.
struct Tee<'a, R> {
    inner: R,
    blob: &'a mut BlobWriter,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.blob.write_all(&buf[..n])?;
        Ok(n)
    }
}

impl Engine {
    /// Imports a (possibly gzip-compressed) tarball; returns the image id.
    pub fn import<R: Read>(&self, input: R, opts: &ImportOptions) -> Result<Digest> {
        let id = self.import_one(input, opts)?;
        self.emit_image("import", &id.to_string(), &id.to_string());
        Ok(id)
    }

    fn import_one<R: Read>(&self, input: R, opts: &ImportOptions) -> Result<Digest> {
        // Check everything the user typed before reading a byte.
        let tag = opts
            .reference
            .as_deref()
            .map(|r| -> Result<Reference> {
                let r = Reference::parse(r)?;
                if r.digest().is_some() {
                    return Err(Error::InvalidArgument(
                        "refusing to create a tag with a digest reference".into(),
                    ));
                }
                Ok(r)
            })
            .transpose()?;
        let platform = match &opts.platform {
            Some(p) => Platform::parse(p)?,
            None => Platform::host(),
        };
        let mut config = ContainerConfig::default();
        for c in &opts.changes {
            changes::apply(&mut config, c)?;
        }

        let _adding = self.adding()?;
        let mut blob = self.store.blob_writer()?;
        let stream = berth_layer::decompress(input)?;
        let extracted = self.store.unpack_layer(
            Tee {
                inner: stream,
                blob: &mut blob,
            },
            None,
        )?;
        let (layer_digest, layer_size) = blob.commit(Some(&extracted.diff_id))?;

        let now = time::now_nanos();
        let created = time::format_rfc3339(now);
        let comment = opts
            .message
            .clone()
            .unwrap_or_else(|| format!("Imported from {}", opts.source));
        let image_config = ImageConfig {
            created: Some(created.clone()),
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            config: (config != ContainerConfig::default()).then_some(config),
            rootfs: RootFs {
                typ: "layers".into(),
                diff_ids: vec![extracted.diff_id.clone()],
            },
            history: vec![History {
                created: Some(created),
                comment: Some(comment),
                ..Default::default()
            }],
            ..Default::default()
        };
        let tags: Vec<String> = tag.iter().map(|t| t.to_string()).collect();
        self.put_child_image(
            None,
            Some(LayerRef {
                diff_id: extracted.diff_id,
                blob: layer_digest,
                media_type: media::OCI_LAYER.into(),
                size: extracted.size,
                blob_size: layer_size,
            }),
            &image_config,
            &tags,
        )
    }
}
