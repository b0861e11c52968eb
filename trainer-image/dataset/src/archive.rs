//! Archive extraction (zip, tar, tar.gz/tgz, tar.bz2, tar.xz), safe against path escapes and bombs.
//!
//! Archives are streamed: tar formats flow through their decoder, zip entries are read one at a
//! time from the file, and every entry is copied with one fixed buffer, so memory stays flat
//! however large the archive is (opening a zip does load its central directory, about 100 bytes
//! per entry). The rules below are enforced while extracting; what is refused is bad input, and
//! the caller extracts into a fresh directory and deletes it on error.
//!
//! - Names are checked before anything is written: `..` components and absolute names (`/x`,
//!   `\x`, `C:\x`) are refused; `\` counts as a separator (zips made on Windows); names that
//!   are not UTF-8 are refused, since image paths end up in a table of strings.
//! - Symbolic and hard links are refused, never followed or created.
//! - Devices, fifos and sockets are skipped: nothing is created for them, so they cannot
//!   redirect a later write, and refusing them would only break archives packed from `/dev`-like
//!   trees by accident. Tar metadata entries (pax global headers, unknown types) are skipped too.
//! - Sizes are counted on the bytes actually decompressed, never on header sizes (a zip's
//!   headers can lie): one entry past `max_entry_bytes`, the archive past `max_total_bytes`, or
//!   more than `max_entries` entries is refused before the offending chunk is written.
//! - The bomb rule: once more than 1 GiB has been decompressed, an archive that has produced
//!   more than 1000 bytes per archive byte read is refused. Images are already compressed, so an
//!   honest image archive stays near 1:1; the 1 GiB floor spares small archives of very
//!   compressible files (CSVs, blank masks).
//! - macOS leftovers (`__MACOSX/`, `._*`, `.DS_Store`) are skipped.
//! - A tar that ends without its end-of-archive marker counts as truncated. GNU sparse files
//!   are refused (images are never sparse; supporting them would mean trusting their maps).
//! - Permissions are not preserved: files are written 0644 and directories 0755 (less the umask).

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt::Display;
use std::fs::{self, File};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::{Error, Result};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const COPY_BUFFER_BYTES: usize = 64 * 1024;
/// Output past which the bomb rule applies.
const BOMB_FLOOR_BYTES: u64 = GIB;
/// Output bytes per archive byte past which an archive counts as a bomb.
const BOMB_RATIO: u64 = 1000;
/// A tar's GNU long name or long link target; real ones are under 4 KiB (`PATH_MAX`).
const MAX_TAR_NAME_BYTES: u64 = 64 * KIB;
/// A tar's pax extended header.
const MAX_PAX_HEADER_BYTES: u64 = MIB;
/// Padding read after a tar's end marker, so the compressor's checksum gets verified.
const MAX_TRAILER_BYTES: u64 = MIB;
const TAR_BLOCK_BYTES: u64 = 512;

/// How an archive is packed, as told by its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveKind {
    Zip,
    Tar,
    TarGz,
    TarBz2,
    TarXz,
}

impl ArchiveKind {
    fn is_compressed_tar(self) -> bool {
        matches!(self, Self::TarGz | Self::TarBz2 | Self::TarXz)
    }

    fn compression(self) -> &'static str {
        match self {
            Self::Zip => "zip",
            Self::Tar => "tar",
            Self::TarGz => "gzip",
            Self::TarBz2 => "bzip2",
            Self::TarXz => "xz",
        }
    }
}

/// The kind of archive at `path` by its magic bytes (the extension does not matter), or
/// `None` when it is not an archive (a CSV, say).
pub fn detect(path: &Path) -> Result<Option<ArchiveKind>> {
    let mut head = Vec::with_capacity(TAR_BLOCK_BYTES as usize);
    File::open(path)
        .and_then(|file| file.take(TAR_BLOCK_BYTES).read_to_end(&mut head))
        .map_err(Error::io(path))?;
    Ok(sniff(&head))
}

/// The kind of archive that starts with `head` (at least its first 262 bytes for a plain tar).
/// A gzip stream counts as a tar.gz; whether it holds a tar shows only when extracting.
pub fn sniff(head: &[u8]) -> Option<ArchiveKind> {
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Some(ArchiveKind::Zip)
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Some(ArchiveKind::TarGz)
    } else if head.starts_with(b"BZh") {
        Some(ArchiveKind::TarBz2)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some(ArchiveKind::TarXz)
    } else if head.get(257..262) == Some(b"ustar".as_slice()) || is_v7_tar_header(head) {
        Some(ArchiveKind::Tar)
    } else {
        None
    }
}

/// A tar from before POSIX ustar (v7) has no magic; its first header still names an entry,
/// has a known type flag and a checksum that matches, which text data never does by chance.
fn is_v7_tar_header(head: &[u8]) -> bool {
    let Some(header) = head.get(..TAR_BLOCK_BYTES as usize) else { return false };
    let octal = |field: &[u8]| {
        let digits: Vec<u8> = field.iter().copied().filter(|b| *b != 0 && *b != b' ').collect();
        (!digits.is_empty() && digits.iter().all(|b| (b'0'..=b'7').contains(b)))
            .then(|| u64::from_str_radix(std::str::from_utf8(&digits).ok()?, 8).ok())
            .flatten()
    };
    let computed: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { u64::from(b' ') } else { u64::from(b) })
        .sum();
    header[0] != 0
        && (header[156] == 0 || (b'0'..=b'7').contains(&header[156]))
        && octal(&header[100..108]).is_some()
        && octal(&header[148..156]) == Some(computed)
}

/// Ceilings on what one archive may expand to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Largest file, counted on the bytes actually decompressed.
    pub max_entry_bytes: u64,
    /// Largest total of decompressed bytes (skipped entries included).
    pub max_total_bytes: u64,
    /// Most entries (files, folders, links, tar metadata headers).
    pub max_entries: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self { max_entry_bytes: 4 * GIB, max_total_bytes: 256 * GIB, max_entries: 10_000_000 }
    }
}

/// What an extraction wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    /// Files written (skipped entries not counted).
    pub files: u64,
    /// Bytes written to those files.
    pub bytes: u64,
}

/// Extracts `archive` (any [`ArchiveKind`]) into the existing directory `dest`; see the module
/// documentation for what is refused or skipped. On error, `dest` may hold part of the archive.
pub fn extract(archive: &Path, dest: &Path, limits: &ArchiveLimits) -> Result<ExtractSummary> {
    let Some(kind) = detect(archive)? else {
        return Err(Error::bad_input(format!(
            "{} is not a zip or tar archive (.zip, .tar, .tar.gz, .tar.bz2, .tar.xz); upload one of \
             those or a CSV",
            archive.display()
        )));
    };
    let mut extractor = Extractor::new(archive, dest, limits, kind);
    match kind {
        ArchiveKind::Zip => extractor.extract_zip()?,
        _ => extractor.extract_tar()?,
    }
    Ok(extractor.summary)
}

/// macOS Finder leftovers: resource forks (`__MACOSX/…`, `._name`) and `.DS_Store`.
pub(crate) fn is_macos_junk(path: &Path) -> bool {
    let in_resource_fork_folder = path.components().any(|part| part.as_os_str() == "__MACOSX");
    let name = path.file_name().map(|name| name.to_string_lossy()).unwrap_or_default();
    in_resource_fork_folder || name.starts_with("._") || name == ".DS_Store"
}

/// `text` with control characters escaped, so a message naming it stays on one line.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

/// A library's error text, fit for a one-line message (some quote archive bytes at length).
fn short_detail(detail: &str) -> String {
    const MAX_CHARS: usize = 200;
    let mut short = printable(detail);
    if let Some((cut, _)) = short.char_indices().nth(MAX_CHARS) {
        short.truncate(cut);
        short.push('…');
    }
    short
}

/// `bytes` in the largest binary unit that keeps it a whole number.
fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= GIB && b % GIB == 0 => format!("{} GiB", b / GIB),
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= KIB && b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

/// The bomb rule (see the module documentation).
fn looks_like_bomb(decompressed: u64, archive_bytes_read: u64) -> bool {
    decompressed > BOMB_FLOOR_BYTES && decompressed > archive_bytes_read.saturating_mul(BOMB_RATIO)
}

/// The entry's path relative to the extraction root (empty for the root itself), or `None`
/// when the name is absolute or climbs out with `..`.
fn contained_path(name: &str) -> Option<PathBuf> {
    if name.starts_with(['/', '\\']) || has_drive_prefix(name) {
        return None;
    }
    let mut path = PathBuf::new();
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return None,
            part => path.push(part),
        }
    }
    Some(path)
}

fn has_drive_prefix(name: &str) -> bool {
    matches!(name.as_bytes(), [letter, b':', ..] if letter.is_ascii_alphabetic())
}

/// What an entry is, whatever the archive format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntryKind {
    File,
    Dir,
    Symlink,
    HardLink,
    /// Device, fifo or socket.
    Special,
    /// Tar metadata that describes no file (pax global header, unknown entry types).
    Metadata,
}

/// Bytes passed through a reader, whether it failed and whether it reached its end; shared
/// with whoever needs to tell a failing disk from a corrupt archive, to measure the compression
/// ratio, or to see a tar stop short of its end marker.
#[derive(Debug, Default)]
struct Tally {
    bytes: Cell<u64>,
    failed: Cell<bool>,
    ended: Cell<bool>,
}

struct Tracked<R> {
    inner: R,
    tally: Rc<Tally>,
}

impl<R> Tracked<R> {
    fn new(inner: R, tally: Rc<Tally>) -> Self {
        Self { inner, tally }
    }

    fn note<T>(&self, result: io::Result<T>) -> io::Result<T> {
        if result.as_ref().is_err_and(|e| e.kind() != io::ErrorKind::Interrupted) {
            self.tally.failed.set(true);
        }
        result
    }
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf);
        let read = self.note(read)?;
        self.tally.bytes.set(self.tally.bytes.get() + read as u64);
        if read == 0 && !buf.is_empty() {
            self.tally.ended.set(true);
        }
        Ok(read)
    }
}

impl<R: Seek> Seek for Tracked<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let sought = self.inner.seek(pos);
        self.note(sought)
    }
}

/// Name overrides that tar extension headers set for the entry that follows them.
#[derive(Debug, Default)]
struct PendingTarNames {
    gnu_long_name: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_size: Option<u64>,
}

impl PendingTarNames {
    fn set_pax(&mut self, data: &[u8]) {
        for record in tar::PaxExtensions::new(data).flatten() {
            match record.key() {
                Ok("path") => self.pax_path = Some(record.value_bytes().to_vec()),
                Ok("size") => self.pax_size = record.value().ok().and_then(|v| v.parse().ok()),
                _ => {}
            }
        }
    }

    /// The name for the entry at hand (`header_name` unless an extension header overrides it),
    /// consuming the overrides.
    fn take_name(&mut self, header_name: &[u8]) -> Vec<u8> {
        let long_name = self.gnu_long_name.take();
        let mut name = self.pax_path.take().or(long_name).unwrap_or_else(|| header_name.to_vec());
        while name.last() == Some(&0) {
            name.pop();
        }
        name
    }
}

struct Extractor<'a> {
    archive: &'a Path,
    dest: &'a Path,
    limits: &'a ArchiveLimits,
    kind: ArchiveKind,
    /// Bytes read from the archive file, and whether reading it failed.
    file_tally: Rc<Tally>,
    /// Bytes out of the tar decoder, and whether decoding failed (tar formats only).
    decoded_tally: Rc<Tally>,
    entries: u64,
    decompressed: u64,
    summary: ExtractSummary,
    buffer: Vec<u8>,
    /// A 128-bit hash of every file path written, to refuse a second entry of the same name
    /// (16 bytes per entry, where the paths themselves could take hundreds of MB).
    written: HashSet<u128>,
}

impl<'a> Extractor<'a> {
    fn new(archive: &'a Path, dest: &'a Path, limits: &'a ArchiveLimits, kind: ArchiveKind) -> Self {
        Self {
            archive,
            dest,
            limits,
            kind,
            file_tally: Rc::default(),
            decoded_tally: Rc::default(),
            entries: 0,
            decompressed: 0,
            summary: ExtractSummary::default(),
            buffer: vec![0; COPY_BUFFER_BYTES],
            written: HashSet::new(),
        }
    }

    fn open_archive(&self) -> Result<BufReader<Tracked<File>>> {
        let file = File::open(self.archive).map_err(Error::io(self.archive))?;
        Ok(BufReader::new(Tracked::new(file, self.file_tally.clone())))
    }

    fn extract_zip(&mut self) -> Result<()> {
        let mut zip = zip::ZipArchive::new(self.open_archive()?).map_err(|e| self.zip_failure(None, e))?;
        if zip.len() as u64 > self.limits.max_entries {
            return Err(self.too_many_entries());
        }
        // The zip reader keeps one entry per name, so a repeated name never reaches `admit`.
        let start = zip.central_directory_start();
        if let Some(name) = repeated_zip_name(self.archive, start, self.limits.max_entries)? {
            return Err(self.bad_entry(&name, APPEARS_TWICE));
        }
        for index in 0..zip.len() {
            let name = zip.name_for_index(index).unwrap_or_default().to_owned();
            let mut entry = zip.by_index(index).map_err(|e| self.zip_failure(Some(&name), e))?;
            let kind = zip_entry_kind(&entry);
            if let Some(relative) = self.admit(&name, kind)? {
                match kind {
                    EntryKind::Dir => self.create_dir(&relative)?,
                    _ => {
                        self.write_file(&name, &relative, &mut entry)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn extract_tar(&mut self) -> Result<()> {
        let source = self.open_archive()?;
        let decoder: Box<dyn Read> = match self.kind {
            ArchiveKind::TarGz => Box::new(flate2::bufread::MultiGzDecoder::new(source)),
            ArchiveKind::TarBz2 => Box::new(bzip2::bufread::MultiBzDecoder::new(source)),
            ArchiveKind::TarXz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(source)),
            ArchiveKind::Tar | ArchiveKind::Zip => Box::new(source),
        };
        let mut tar = tar::Archive::new(Tracked::new(decoder, self.decoded_tally.clone()));
        let entries = tar.entries().map_err(|e| self.read_failure(None, e))?;
        // Raw: the tar crate would read GNU long names and pax headers of any size into memory.
        let mut pending = PendingTarNames::default();
        for entry in entries.raw(true) {
            let mut entry = entry.map_err(|e| self.read_failure(None, e))?;
            self.tar_entry(&mut entry, &mut pending)?;
        }
        if self.entries == 0 && self.decoded_tally.bytes.get() == 0 && self.kind.is_compressed_tar() {
            return Err(self.not_a_tar());
        }
        // The tar crate takes end of input for the end of the archive; a cut that falls between
        // entries (transfers stop at multiples of 512 too) shows only as a missing end marker.
        if self.decoded_tally.ended.get() {
            return Err(self.corrupt(&"the tar ends without its end-of-archive marker"));
        }
        self.drain_trailer(tar.into_inner())
    }

    fn tar_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        pending: &mut PendingTarNames,
    ) -> Result<()> {
        let entry_type = entry.header().entry_type();
        let header_name = entry.path_bytes().into_owned();
        match entry_type {
            tar::EntryType::GNULongName => {
                pending.gnu_long_name =
                    Some(self.read_tar_metadata(&header_name, entry, MAX_TAR_NAME_BYTES)?);
                return Ok(());
            }
            tar::EntryType::GNULongLink => {
                self.read_tar_metadata(&header_name, entry, MAX_TAR_NAME_BYTES)?;
                return Ok(());
            }
            tar::EntryType::XHeader => {
                let data = self.read_tar_metadata(&header_name, entry, MAX_PAX_HEADER_BYTES)?;
                pending.set_pax(&data);
                return Ok(());
            }
            _ => {}
        }
        let name = self.utf8_name(pending.take_name(&header_name))?;
        if pending.pax_size.take().is_some_and(|size| size > self.limits.max_entry_bytes) {
            return Err(self.entry_too_large(&name));
        }
        if entry_type == tar::EntryType::GNUSparse {
            return Err(self.bad_entry(&name, "is a sparse file; re-create the archive without --sparse"));
        }
        let kind = tar_entry_kind(entry_type, &name);
        match self.admit(&name, kind)? {
            None => {
                self.copy(&name, entry, |_| Ok(()))?;
            }
            Some(relative) if kind == EntryKind::Dir => self.create_dir(&relative)?,
            Some(relative) => {
                let written = self.write_file(&name, &relative, entry)?;
                if written < entry.size() {
                    let detail = format!(
                        "entry `{}` ends after {written} of {} bytes",
                        printable(&name),
                        entry.size()
                    );
                    return Err(self.corrupt(&detail));
                }
            }
        }
        Ok(())
    }

    /// Reads a tar extension header's data (long name, pax records), refusing oversized ones
    /// before reading. A tar entry's size frames the stream, so unlike a zip's it can be trusted.
    fn read_tar_metadata<R: Read>(
        &mut self,
        header_name: &[u8],
        entry: &mut tar::Entry<'_, R>,
        max: u64,
    ) -> Result<Vec<u8>> {
        let name = String::from_utf8_lossy(header_name).into_owned();
        self.count_entry()?;
        if entry.size() > max {
            let detail = format!("extension header `{}` is {} bytes long", printable(&name), entry.size());
            return Err(self.corrupt(&detail));
        }
        let mut data = Vec::new();
        self.copy(&name, entry, |chunk| {
            data.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(data)
    }

    /// Reads what follows the tar end marker (bounded), so the decompressor checks its own
    /// checksum and a truncated stream shows.
    fn drain_trailer(&mut self, rest: impl Read) -> Result<()> {
        io::copy(&mut rest.take(MAX_TRAILER_BYTES), &mut io::sink())
            .map_err(|e| self.read_failure(None, e))?;
        Ok(())
    }

    /// Counts the entry and checks its name and kind: `Ok(None)` skips it, `Ok(Some(path))` is
    /// where it goes under `dest`.
    fn admit(&mut self, name: &str, kind: EntryKind) -> Result<Option<PathBuf>> {
        self.count_entry()?;
        let Some(relative) = contained_path(name) else {
            return Err(self.bad_entry(
                name,
                "points outside the archive (absolute path or `..`); re-create the archive with \
                 relative paths inside one folder",
            ));
        };
        match kind {
            EntryKind::Symlink => Err(self.bad_entry(
                name,
                "is a symbolic link, which is not extracted; replace the link with the file itself \
                 and upload again",
            )),
            EntryKind::HardLink => Err(self.bad_entry(
                name,
                "is a hard link, which is not extracted; re-create the archive with plain files \
                 (for GNU tar: --hard-dereference)",
            )),
            EntryKind::Special | EntryKind::Metadata => Ok(None),
            EntryKind::Dir => {
                let skip = relative.as_os_str().is_empty() || is_macos_junk(&relative);
                Ok((!skip).then_some(relative))
            }
            EntryKind::File => {
                if relative.as_os_str().is_empty() || is_macos_junk(&relative) {
                    return Ok(None);
                }
                if is_archive_name(name) {
                    return Err(self.bad_entry(
                        name,
                        "is an archive inside the archive, which is not opened; extract it and \
                         upload its contents, or upload it as a Dataset of its own",
                    ));
                }
                if !self.written.insert(path_hash(&relative)) {
                    return Err(self.bad_entry(name, APPEARS_TWICE));
                }
                Ok(Some(relative))
            }
        }
    }

    fn count_entry(&mut self) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.too_many_entries());
        }
        Ok(())
    }

    fn create_dir(&self, relative: &Path) -> Result<()> {
        let path = self.dest.join(relative);
        fs::create_dir_all(&path).map_err(Error::io(path))
    }

    /// Writes one entry to `dest/relative`; a refused or failed file is removed, never left
    /// half written.
    fn write_file(&mut self, name: &str, relative: &Path, reader: &mut dyn Read) -> Result<u64> {
        let path = self.dest.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(Error::io(parent))?;
        }
        let mut file = create_file(&path)?;
        let copied =
            self.copy(name, reader, |chunk| io::Write::write_all(&mut file, chunk).map_err(Error::io(&path)));
        drop(file);
        match copied {
            Ok(written) => {
                self.summary.files += 1;
                self.summary.bytes += written;
                Ok(written)
            }
            Err(err) => {
                let _ = fs::remove_file(&path);
                Err(err)
            }
        }
    }

    /// Copies an entry's data through the fixed buffer into `write`, charging every chunk
    /// against the limits before it is handed on.
    fn copy(
        &mut self,
        name: &str,
        reader: &mut dyn Read,
        mut write: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        let mut written = 0u64;
        loop {
            let read = match reader.read(&mut self.buffer) {
                Ok(0) => return Ok(written),
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_failure(Some(name), e)),
            };
            self.charge(name, written, read as u64)?;
            write(&self.buffer[..read])?;
            written += read as u64;
        }
    }

    fn charge(&mut self, name: &str, entry_bytes: u64, chunk: u64) -> Result<()> {
        if entry_bytes + chunk > self.limits.max_entry_bytes {
            return Err(self.entry_too_large(name));
        }
        let decompressed = self.decompressed + chunk;
        if decompressed > self.limits.max_total_bytes {
            return Err(Error::bad_input(format!(
                "{}: decompresses to more than {} in total (the limit); split the dataset into \
                 smaller archives",
                self.archive.display(),
                human_bytes(self.limits.max_total_bytes)
            )));
        }
        if looks_like_bomb(decompressed, self.file_tally.bytes.get()) {
            return Err(Error::bad_input(format!(
                "{}: entry `{}` takes the archive past {BOMB_RATIO}:1 ({decompressed} bytes out of {} \
                 read), which looks like a decompression bomb; re-create the archive from the \
                 original files",
                self.archive.display(),
                printable(name),
                self.file_tally.bytes.get()
            )));
        }
        self.decompressed = decompressed;
        Ok(())
    }

    fn utf8_name(&self, name: Vec<u8>) -> Result<String> {
        String::from_utf8(name).map_err(|e| {
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            self.bad_entry(&lossy, "has a name that is not UTF-8; rename the file and re-create the archive")
        })
    }

    /// An error reading entry data or headers: a failing disk is worth a retry, anything else
    /// means the archive is damaged (or, for a compressed tar that fails at once, not a tar).
    fn read_failure(&self, entry: Option<&str>, err: io::Error) -> Error {
        if self.file_tally.failed.get() {
            return Error::io(self.archive)(err);
        }
        let tar_layer_failed = self.kind != ArchiveKind::Zip && !self.decoded_tally.failed.get();
        if tar_layer_failed && self.kind.is_compressed_tar() && self.entries == 0 {
            return self.not_a_tar();
        }
        match entry {
            Some(name) => self.corrupt(&format!("entry `{}`: {err}", printable(name))),
            None => self.corrupt(&err),
        }
    }

    fn zip_failure(&self, entry: Option<&str>, err: zip::result::ZipError) -> Error {
        use zip::result::ZipError;
        match (err, entry) {
            (ZipError::Io(e), _) => self.read_failure(entry, e),
            (ZipError::InvalidPassword, Some(name)) => self.encrypted(name),
            (ZipError::UnsupportedArchive(ZipError::PASSWORD_REQUIRED), Some(name)) => self.encrypted(name),
            (ZipError::UnsupportedArchive(what), Some(name)) => self.bad_entry(
                name,
                &format!(
                    "uses an unsupported zip feature ({what}); re-create the archive with plain deflate"
                ),
            ),
            (err, Some(name)) => self.corrupt(&format!("entry `{}`: {err}", printable(name))),
            (err, None) => self.corrupt(&err),
        }
    }

    fn corrupt(&self, detail: &dyn Display) -> Error {
        Error::bad_input(format!(
            "{} is truncated or corrupt: {}; upload it again",
            self.archive.display(),
            short_detail(&detail.to_string())
        ))
    }

    fn not_a_tar(&self) -> Error {
        Error::bad_input(format!(
            "{} is {}-compressed but holds no tar archive; upload a .tar.gz, .tar.bz2, .tar.xz, .zip \
             or a CSV",
            self.archive.display(),
            self.kind.compression(),
        ))
    }

    fn bad_entry(&self, name: &str, problem: &str) -> Error {
        Error::bad_input(format!("{}: entry `{}` {problem}", self.archive.display(), printable(name)))
    }

    fn encrypted(&self, name: &str) -> Error {
        self.bad_entry(name, "is encrypted; upload an archive without a password")
    }

    fn entry_too_large(&self, name: &str) -> Error {
        self.bad_entry(
            name,
            &format!(
                "decompresses to more than {} (the limit per file); remove it from the archive",
                human_bytes(self.limits.max_entry_bytes)
            ),
        )
    }

    fn too_many_entries(&self) -> Error {
        Error::bad_input(format!(
            "{}: holds more than {} entries (the limit); split it into smaller archives",
            self.archive.display(),
            self.limits.max_entries
        ))
    }
}

/// Names that say "archive": such an entry would be extracted as one opaque file and then
/// skipped by every layout. A `.gz` alone may be a gzipped CSV, so it is not one of them.
fn is_archive_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz"]
        .iter()
        .any(|extension| name.ends_with(extension))
}

const APPEARS_TWICE: &str = "appears twice in the archive, and one copy would silently replace \
                             the other; re-create the archive with one entry per file";

/// The first name that two central-directory headers of a zip share, reading at most
/// `max_entries` headers from `start`.
fn repeated_zip_name(archive: &Path, start: u64, max_entries: u64) -> Result<Option<String>> {
    const SIGNATURE: &[u8; 4] = b"PK\x01\x02";
    let mut file = BufReader::new(File::open(archive).map_err(Error::io(archive))?);
    file.seek(SeekFrom::Start(start)).map_err(Error::io(archive))?;
    let mut seen = HashSet::new();
    let mut header = [0u8; 46];
    for _ in 0..max_entries {
        if file.read_exact(&mut header).is_err() || &header[..4] != SIGNATURE {
            break;
        }
        let length = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]) as usize;
        let mut name = vec![0u8; length(28)];
        file.read_exact(&mut name).map_err(Error::io(archive))?;
        let name = String::from_utf8_lossy(&name).into_owned();
        if !seen.insert(path_hash(Path::new(&name))) {
            return Ok(Some(name));
        }
        file.seek_relative((length(30) + length(32)) as i64).map_err(Error::io(archive))?;
    }
    Ok(None)
}

fn path_hash(path: &Path) -> u128 {
    let half = |salt: u8| {
        let mut hasher = DefaultHasher::new();
        salt.hash(&mut hasher);
        path.hash(&mut hasher);
        hasher.finish() as u128
    };
    (half(0) << 64) | half(1)
}

/// Creates a file 0644 (whatever the archive says), replacing an earlier entry of that name.
fn create_file(path: &Path) -> Result<File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o644);
    options.open(path).map_err(Error::io(path))
}

fn zip_entry_kind<R: Read>(entry: &zip::read::ZipFile<'_, R>) -> EntryKind {
    const FILE_TYPE_MASK: u32 = 0o170_000;
    match entry.unix_mode().map(|mode| mode & FILE_TYPE_MASK) {
        Some(0o120_000) => EntryKind::Symlink,
        Some(0o040_000) => EntryKind::Dir,
        _ if entry.is_dir() => EntryKind::Dir,
        None | Some(0) | Some(0o100_000) => EntryKind::File,
        Some(_) => EntryKind::Special,
    }
}

fn tar_entry_kind(entry_type: tar::EntryType, name: &str) -> EntryKind {
    use tar::EntryType as T;
    match entry_type {
        // Old (v7) tars mark folders only by a trailing slash.
        T::Regular | T::Continuous if name.ends_with('/') => EntryKind::Dir,
        T::Regular | T::Continuous => EntryKind::File,
        T::Directory => EntryKind::Dir,
        T::Symlink => EntryKind::Symlink,
        T::Link => EntryKind::HardLink,
        T::Char | T::Block | T::Fifo => EntryKind::Special,
        _ => EntryKind::Metadata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contained_path_keeps_relative_names() {
        assert_eq!(contained_path("a/b.png"), Some(PathBuf::from("a/b.png")));
        assert_eq!(contained_path("./a/./b.png"), Some(PathBuf::from("a/b.png")));
        assert_eq!(contained_path(r"a\b.png"), Some(PathBuf::from("a/b.png")));
        assert_eq!(contained_path("./"), Some(PathBuf::new()));
        assert_eq!(contained_path("a..b/c"), Some(PathBuf::from("a..b/c")));
    }

    #[test]
    fn contained_path_refuses_escapes() {
        for name in ["../x", "a/../../x", "a/..", "/etc/x", r"\x", r"C:\x", "c:x", r"a\..\..\x"] {
            assert_eq!(contained_path(name), None, "{name}");
        }
    }

    #[test]
    fn bomb_rule_needs_both_floor_and_ratio() {
        assert!(!looks_like_bomb(GIB, 1), "at the floor, not past it");
        assert!(looks_like_bomb(GIB + 1, 1));
        assert!(!looks_like_bomb(2 * GIB, 2 * GIB / BOMB_RATIO + 1));
        assert!(looks_like_bomb(2 * GIB, 2 * GIB / BOMB_RATIO - 1));
        assert!(!looks_like_bomb(u64::MAX, u64::MAX / 2), "no overflow");
    }

    #[test]
    fn sniff_reads_magic_bytes() {
        let mut tar_head = vec![0u8; 512];
        tar_head[257..262].copy_from_slice(b"ustar");
        assert_eq!(sniff(b"PK\x03\x04rest"), Some(ArchiveKind::Zip));
        assert_eq!(sniff(b"PK\x05\x06rest"), Some(ArchiveKind::Zip));
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Some(ArchiveKind::TarGz));
        assert_eq!(sniff(b"BZh91AY"), Some(ArchiveKind::TarBz2));
        assert_eq!(sniff(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]), Some(ArchiveKind::TarXz));
        assert_eq!(sniff(&tar_head), Some(ArchiveKind::Tar));
        assert_eq!(sniff(b"image,label\na.png,cat\n"), None);
        let mut csv = b"image,label\n".repeat(60);
        csv.truncate(512);
        assert_eq!(sniff(&csv), None, "512 bytes of text are no v7 tar header");
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn macos_junk_is_recognised() {
        assert!(is_macos_junk(Path::new("__MACOSX/cat/._a.png")));
        assert!(is_macos_junk(Path::new("cat/._a.png")));
        assert!(is_macos_junk(Path::new("cat/.DS_Store")));
        assert!(!is_macos_junk(Path::new("cat/a.png")));
        assert!(!is_macos_junk(Path::new("cat/_a.png")));
    }

    #[test]
    fn short_detail_is_one_bounded_line() {
        assert_eq!(short_detail("bad\nheader"), "bad\\nheader");
        assert_eq!(short_detail(&"x".repeat(500)).chars().count(), 201);
    }

    #[test]
    fn human_bytes_picks_whole_units() {
        assert_eq!(human_bytes(4 * GIB), "4 GiB");
        assert_eq!(human_bytes(MIB), "1 MiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }
}
