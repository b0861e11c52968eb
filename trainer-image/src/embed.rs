//! Images → pooled backbone features, streaming.
//!
//! Decoding, resizing and normalising run on `decode_threads` worker threads that take images
//! in order and hand them over through a bounded channel; the calling thread assembles
//! batches in row order and runs the network. At most `2 * batch_size` decoded images wait at
//! any time, so memory does not grow with the number of images: only the output does
//! (`rows * featureDim` floats). With several devices (`EmbedOptions::devices`: a pod with N
//! GPUs) each batch goes to whichever replica of the network is free, one per device.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel, sync_channel};

use indicatif::ProgressBar;
use tch::Device;

use crate::backbone::Backbone;
use crate::preprocess::{Preprocess, batch_tensor, decode_image, open_image};
use crate::{Error, Result};

/// Where one image comes from.
#[derive(Clone, Debug)]
pub enum ImageInput {
    Path(PathBuf),
    /// Bytes already in memory (a download, inline base64); the string names it in errors.
    Bytes(Arc<Vec<u8>>, String),
    /// No image in this row: its features are NaN.
    Missing,
}

impl ImageInput {
    pub(crate) fn decode(&self) -> Result<Option<image::RgbImage>> {
        Ok(match self {
            Self::Path(path) => Some(open_image(path)?.to_rgb8()),
            Self::Bytes(bytes, what) => Some(decode_image(bytes, what)?.to_rgb8()),
            Self::Missing => None,
        })
    }
}

#[derive(Clone, Debug)]
pub struct EmbedOptions {
    pub batch_size: usize,
    pub decode_threads: usize,
    /// With more than one: batches are spread over the backbone (on the first) and a replica
    /// on each other device. Empty or one: the backbone alone.
    pub devices: Vec<Device>,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        // 2-core machines: one decoder keeps up with the network, which uses every core.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { batch_size: 16, decode_threads: cores.div_ceil(2), devices: Vec::new() }
    }
}

/// `rows x dim` features, row-major; a row without an image is all NaN.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Embeddings {
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    pub fn row(&self, index: usize) -> &[f32] {
        &self.data[index * self.dim..(index + 1) * self.dim]
    }

    pub fn is_missing(&self, index: usize) -> bool {
        self.row(index).first().is_some_and(|v| v.is_nan())
    }
}

/// Features of every input, in input order.
pub fn embed(
    backbone: &Backbone,
    inputs: &[ImageInput],
    options: &EmbedOptions,
    progress: &ProgressBar,
) -> Result<Embeddings> {
    let preprocess = Preprocess::from(&backbone.manifest);
    let dim = backbone.manifest.feature_dim as usize;
    let batch_size = options.batch_size.max(1);
    let mut data = vec![f32::NAN; inputs.len() * dim];
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (sender, receiver) = sync_channel::<(usize, Result<Option<Vec<f32>>>)>(2 * batch_size);
    let replicas =
        options.devices.iter().skip(1).map(|device| backbone.replica(*device)).collect::<Result<Vec<_>>>()?;

    std::thread::scope(|scope| {
        for _ in 0..options.decode_threads.max(1) {
            let sender = sender.clone();
            let (next, stop, preprocess) = (&next, &stop, &preprocess);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(input) = inputs.get(index) else { break };
                    let decoded = input.decode().map(|image| {
                        image.map(|image| {
                            let mut values = vec![0f32; preprocess.len()];
                            preprocess.write_hwc(&image, &mut values);
                            values
                        })
                    });
                    if sender.send((index, decoded)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);

        let mut store = |rows: &[usize], features: &[f32]| {
            for (row, values) in rows.iter().zip(features.chunks_exact(dim)) {
                data[row * dim..(row + 1) * dim].copy_from_slice(values);
            }
            progress.inc(rows.len() as u64);
        };
        let result = if replicas.is_empty() {
            assemble_batches(&receiver, inputs.len(), batch_size, &preprocess, |rows, batch| {
                store(rows, &features_of(backbone, rows, batch, preprocess.crop)?);
                Ok(())
            })
        } else {
            let networks: Vec<&Backbone> = std::iter::once(backbone).chain(&replicas).collect();
            spread_batches(scope, &networks, &preprocess, &mut store, |run| {
                assemble_batches(&receiver, inputs.len(), batch_size, &preprocess, run)
            })
        };
        // Stops the workers and unblocks any waiting in `send` before the scope joins them.
        stop.store(true, Ordering::Relaxed);
        drop(receiver);
        result
    })?;
    Ok(Embeddings { dim, data })
}

fn features_of(backbone: &Backbone, rows: &[usize], batch: &[f32], crop: u32) -> Result<Vec<f32>> {
    let features = backbone.features(&batch_tensor(batch, rows.len(), crop))?;
    Ok(Vec::<f32>::try_from(features.contiguous().view(-1))?)
}

/// Runs `assemble` with a `run` that hands each batch to whichever of `networks` is free (one
/// thread each, at most one batch waiting per network), and `store`s the features as they come
/// back; returns once every batch is stored, or with the first error.
fn spread_batches<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    networks: &[&'env Backbone],
    preprocess: &Preprocess,
    store: &mut impl FnMut(&[usize], &[f32]),
    assemble: impl FnOnce(&mut dyn FnMut(&[usize], &[f32]) -> Result<()>) -> Result<()>,
) -> Result<()> {
    type Done = Result<(Vec<usize>, Vec<f32>)>;
    let (work, queue) = sync_channel::<(Vec<usize>, Vec<f32>)>(networks.len());
    let queue = Arc::new(Mutex::new(queue));
    let (finished, done) = channel::<Done>();
    let crop = preprocess.crop;
    let workers: Vec<_> = networks
        .iter()
        .map(|&network| {
            let (finished, queue) = (finished.clone(), Arc::clone(&queue));
            scope.spawn(move || {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((rows, batch)) = next else { break };
                    let result = features_of(network, &rows, &batch, crop).map(|features| (rows, features));
                    if finished.send(result).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    drop(finished);
    let mut collect = |done: &Receiver<Done>, wait: bool| -> Result<()> {
        loop {
            let next = if wait { done.recv().ok() } else { done.try_recv().ok() };
            let Some(result) = next else { return Ok(()) };
            let (rows, features) = result?;
            store(&rows, &features);
        }
    };
    let assembled = assemble(&mut |rows, batch| {
        collect(&done, false)?;
        work.send((rows.to_vec(), batch.to_vec()))
            .map_err(|_| Error::Internal("an embedding worker stopped early".into()))
    });
    drop(work);
    let collected = collect(&done, true);
    for worker in workers {
        worker.join().map_err(|_| Error::Internal("an embedding worker panicked".into()))?;
    }
    assembled.and(collected)
}

/// Receives decoded images, which arrive nearly in order, and calls `run(rows, values)` for
/// each batch of present images in row order; missing images only advance the progress.
fn assemble_batches(
    receiver: &std::sync::mpsc::Receiver<(usize, Result<Option<Vec<f32>>>)>,
    total: usize,
    batch_size: usize,
    preprocess: &Preprocess,
    mut run: impl FnMut(&[usize], &[f32]) -> Result<()>,
) -> Result<()> {
    let mut waiting = std::collections::BTreeMap::new();
    let mut expected = 0;
    let mut rows = Vec::with_capacity(batch_size);
    let mut batch = Vec::with_capacity(batch_size * preprocess.len());
    while expected < total {
        let (index, decoded) =
            receiver.recv().map_err(|_| Error::Internal("an image decoding thread stopped early".into()))?;
        waiting.insert(index, decoded);
        while let Some(decoded) = waiting.remove(&expected) {
            if let Some(values) = decoded? {
                rows.push(expected);
                batch.extend_from_slice(&values);
            }
            expected += 1;
            if rows.len() == batch_size || (expected == total && !rows.is_empty()) {
                run(&rows, &batch)?;
                rows.clear();
                batch.clear();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preprocess() -> Preprocess {
        Preprocess { shorter_side: 2, crop: 2, squash: false, mean: [0.0; 3], std: [1.0; 3] }
    }

    #[test]
    fn batches_come_in_row_order_and_skip_missing_images() {
        let (sender, receiver) = sync_channel(16);
        let item = |v: f32| Ok(Some(vec![v; 12]));
        // Out of order, with a missing image at row 2.
        for (index, decoded) in
            [(1, item(1.0)), (0, item(0.0)), (3, item(3.0)), (2, Ok(None)), (4, item(4.0))]
        {
            sender.send((index, decoded)).unwrap();
        }
        let mut seen = Vec::new();
        assemble_batches(&receiver, 5, 2, &preprocess(), |rows, values| {
            assert_eq!(values.len(), rows.len() * 12);
            seen.push((rows.to_vec(), values.iter().step_by(12).copied().collect::<Vec<_>>()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![(vec![0, 1], vec![0.0, 1.0]), (vec![3, 4], vec![3.0, 4.0])]);
    }

    #[test]
    fn a_decoding_error_stops_the_run_with_that_error() {
        let (sender, receiver) = sync_channel(4);
        sender.send((0, Err(Error::bad_input("row 0: broken")))).unwrap();
        let error = assemble_batches(&receiver, 3, 2, &preprocess(), |_, _| Ok(())).unwrap_err();
        assert!(error.to_string().contains("row 0: broken"));
    }
}
