//! New images on top of stored ones: a layer written from a directory's
//! changes, and the config, manifest and store records around it. Shared by
//! `commit` and the builder.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use berth_layer::{Item, WriteOptions};
use berth_oci::{media, Descriptor, Digest, ImageConfig, Manifest};
use berth_store::{BlobWriter, ImageRecord, LayerRef, NewImage};
use flate2::write::GzEncoder;

use crate::{Engine, Error, Result};

/// Feeds what the unpacker reads into the compressor that writes the blob,
/// so the layer is stored and unpacked in one pass.
struct Tee<R, W> {
    inner: R,
    out: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

enum Encoder<W: Write> {
    Plain(W),
    Gzip(GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

impl<W: Write> Encoder<W> {
    fn finish(self) -> io::Result<()> {
        match self {
            Encoder::Plain(_) => Ok(()),
            Encoder::Gzip(w) => w.finish().map(drop),
            Encoder::Zstd(w) => w.finish().map(drop),
        }
    }
}

/// The OCI media type of a layer that may have been pulled with a Docker one.
fn oci_layer_type(media_type: &str) -> String {
    match media::Compression::of_layer(media_type) {
        Some(c) if !media_type.starts_with("application/vnd.oci.") => {
            c.oci_layer_type().to_string()
        }
        _ => media_type.to_string(),
    }
}

impl Engine {
    /// Writes `items` of `dir` as a layer blob (gzip or zstd) and unpacks
    /// the same stream into the layer cache.
    pub(crate) fn store_layer(
        &self,
        dir: &Path,
        items: &[Item],
        opts: &WriteOptions,
        compression: media::Compression,
    ) -> Result<LayerRef> {
        let (rx, tx) = nix::unistd::pipe().map_err(|e| Error::Internal(format!("pipe: {e}")))?;
        let (rx, tx) = (File::from(rx), File::from(tx));
        let mut blob: BlobWriter = self.store.blob_writer()?;
        let extracted = std::thread::scope(|s| -> Result<_> {
            let writer = s.spawn(move || {
                berth_layer::write_layer(
                    dir,
                    items,
                    io::BufWriter::with_capacity(256 * 1024, tx),
                    opts,
                )
                .and_then(|w| {
                    w.into_inner()
                        .map(drop)
                        .map_err(|e| berth_layer::Error::Tar(e.into_error()))
                })
            });
            // Fixed levels, flate2's fixed header (no name, no time) and
            // single-threaded zstd keep the compressed bytes reproducible.
            let mut enc = match compression {
                media::Compression::Zstd => Encoder::Zstd(
                    zstd::stream::write::Encoder::new(&mut blob, 3)
                        .map_err(Error::io("compress layer of", dir))?,
                ),
                media::Compression::None => Encoder::Plain(&mut blob),
                media::Compression::Gzip => {
                    Encoder::Gzip(GzEncoder::new(&mut blob, flate2::Compression::new(6)))
                }
            };
            let unpacked = self.store.unpack_layer(
                Tee {
                    inner: rx,
                    out: &mut enc,
                },
                None,
            );
            // The writer's own error says more than the reader's broken pipe.
            writer
                .join()
                .map_err(|_| Error::Internal("layer writer panicked".into()))??;
            let extracted = unpacked?;
            enc.finish().map_err(Error::io("compress layer of", dir))?;
            Ok(extracted)
        })?;
        let (blob_digest, blob_size) = blob.commit(None)?;
        Ok(LayerRef {
            diff_id: extracted.diff_id,
            blob: blob_digest,
            media_type: compression.oci_layer_type().into(),
            size: extracted.size,
            blob_size,
        })
    }

    /// Stores an image made of `base`'s layers plus `layer` (when given),
    /// with `config` (whose rootfs and history the caller has filled in),
    /// and tags it. Returns the new image id.
    pub(crate) fn put_child_image(
        &self,
        base: Option<&ImageRecord>,
        layer: Option<LayerRef>,
        config: &ImageConfig,
        tags: &[String],
    ) -> Result<Digest> {
        let mut layers = match base {
            Some(b) => self.store.image_layers(&b.id)?,
            None => Vec::new(),
        };
        layers.extend(layer);
        for l in &mut layers {
            l.media_type = oci_layer_type(&l.media_type);
        }
        let config_bytes = config.to_vec();
        let config_digest = self.store.put_blob(&config_bytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(
                media::OCI_CONFIG,
                config_digest.clone(),
                config_bytes.len() as u64,
            ),
            layers: layers
                .iter()
                .map(|l| Descriptor::new(&l.media_type, l.blob.clone(), l.blob_size))
                .collect(),
            subject: None,
            annotations: None,
        };
        let manifest_digest = self.store.put_blob(&manifest.to_vec())?;
        let created = config
            .created
            .as_deref()
            .and_then(berth_oci::time::parse_rfc3339);
        self.store.put_image(
            &NewImage {
                id: config_digest.clone(),
                manifest_digest,
                manifest_media_type: media::OCI_MANIFEST.into(),
                created,
                parent: base.map(|b| b.id.clone()),
                layers,
            },
            tags,
            &[],
        )?;
        // Docker says so for each name a build or commit gives the image.
        for t in tags {
            self.emit_image(
                "tag",
                &config_digest.to_string(),
                &crate::images::familiar(t),
            );
        }
        Ok(config_digest)
    }
}
