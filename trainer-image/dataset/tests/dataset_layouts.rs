//! Dataset import, first steps: real archives of real images are extracted safely, and the
//! layout of what they hold (or of a CSV) is detected.

use std::fs;
use std::io::{self, Cursor, Read, Write};
use std::path::{Path, PathBuf};

use ocellus_crds::dataset::DatasetFormat;
use ocellus_dataset::Error;
use ocellus_dataset::archive::{self, ArchiveKind, ArchiveLimits, ExtractSummary};
use ocellus_dataset::layout::{self, LayoutChoice};
use tempfile::TempDir;

const ALL_KINDS: [ArchiveKind; 5] =
    [ArchiveKind::Zip, ArchiveKind::Tar, ArchiveKind::TarGz, ArchiveKind::TarBz2, ArchiveKind::TarXz];
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------- helpers

fn encode(rgb: [u8; 3], format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image::RgbImage::from_pixel(8, 8, image::Rgb(rgb)).write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn png(rgb: [u8; 3]) -> Vec<u8> {
    encode(rgb, image::ImageFormat::Png)
}

fn jpeg(rgb: [u8; 3]) -> Vec<u8> {
    encode(rgb, image::ImageFormat::Jpeg)
}

type Files = Vec<(&'static str, Vec<u8>)>;

/// Two classes, one image nested deeper, one non-image file.
fn class_folder_files() -> Files {
    vec![
        ("cat/1.png", png([200, 30, 30])),
        ("cat/2.jpg", jpeg([180, 40, 40])),
        ("dog/1.png", png([30, 30, 200])),
        ("dog/deep/2.PNG", png([40, 40, 180])),
        ("dog/notes.txt", b"not an image".to_vec()),
    ]
}

fn zip_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, bytes) in files {
        if name.ends_with('/') {
            zip.add_directory(*name, options).unwrap();
        } else {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
    }
    zip.finish().unwrap().into_inner()
}

fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        if name.ends_with('/') {
            header.set_entry_type(tar::EntryType::Directory);
        }
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        tar.append_data(&mut header, name, bytes.as_slice()).unwrap();
    }
    tar.into_inner().unwrap()
}

fn compress(kind: ArchiveKind, tar: Vec<u8>) -> Vec<u8> {
    match kind {
        ArchiveKind::Tar => tar,
        ArchiveKind::TarGz => gzip(&tar),
        ArchiveKind::TarBz2 => {
            let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            encoder.write_all(&tar).unwrap();
            encoder.finish().unwrap()
        }
        ArchiveKind::TarXz => {
            let mut encoder = xz2::write::XzEncoder::new(Vec::new(), 1);
            encoder.write_all(&tar).unwrap();
            encoder.finish().unwrap()
        }
        ArchiveKind::Zip => unreachable!("zips are built by zip_of"),
    }
}

fn archive_of(kind: ArchiveKind, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    match kind {
        ArchiveKind::Zip => zip_of(files),
        _ => compress(kind, tar_of(files)),
    }
}

/// Appends a tar entry with `name` written into the header as is, bypassing the tar crate's
/// refusal of `..` and absolute paths.
fn append_raw(tar: &mut tar::Builder<Vec<u8>>, name: &str, entry_type: tar::EntryType, data: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(entry_type);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append(&header, data).unwrap();
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, bytes).unwrap();
    path
}

fn write_tree(dir: &Path, files: &[(&str, Vec<u8>)]) {
    for (name, bytes) in files {
        write_file(dir, name, bytes);
    }
}

/// Extracts into a fresh folder next to the archive, named like it plus `.out`.
fn extract(archive_path: &Path, limits: &ArchiveLimits) -> (PathBuf, Result<ExtractSummary, Error>) {
    let mut dest = archive_path.as_os_str().to_owned();
    dest.push(".out");
    let dest = PathBuf::from(dest);
    fs::create_dir(&dest).unwrap();
    let result = archive::extract(archive_path, &dest, limits);
    (dest, result)
}

fn extract_ok(archive_path: &Path) -> (PathBuf, ExtractSummary) {
    let (dest, result) = extract(archive_path, &ArchiveLimits::default());
    (dest, result.unwrap())
}

/// The message of a bad-input error, checked to be one line.
fn bad_input<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    let err = result.expect_err("expected bad input");
    assert_eq!(err.exit_code(), 65, "not bad input: {err}");
    let message = err.to_string();
    assert!(!message.contains('\n'), "message is not one line: {message}");
    message
}

fn assert_contains(message: &str, expected: &str) {
    assert!(message.contains(expected), "`{message}` does not contain `{expected}`");
}

/// Every file under `dir`, relative, `/`-separated, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
                found.push(relative);
            }
        }
    }
    found.sort();
    found
}

fn column(layout: &ocellus_dataset::table::DetectedLayout, name: &str) -> Vec<Option<String>> {
    let index = layout.table.column_index(name).unwrap();
    layout.table.rows.iter().map(|row| row[index].clone()).collect()
}

fn strings(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some(v.to_string())).collect()
}

// ---------------------------------------------------------------- archives

#[test]
fn every_archive_kind_is_detected_by_magic_bytes_and_extracts() {
    let work = TempDir::new().unwrap();
    let files = class_folder_files();
    for kind in ALL_KINDS {
        // `.bin` for all: detection must not look at the extension.
        let path = write_file(work.path(), &format!("{kind:?}.bin"), &archive_of(kind, &files));
        assert_eq!(archive::detect(&path).unwrap(), Some(kind));

        let (dest, summary) = extract_ok(&path);
        let total: usize = files.iter().map(|(_, bytes)| bytes.len()).sum();
        assert_eq!(summary, ExtractSummary { files: 5, bytes: total as u64 }, "{kind:?}");
        for (name, bytes) in &files {
            assert_eq!(&fs::read(dest.join(name)).unwrap(), bytes, "{kind:?} {name}");
        }
        let detected = layout::detect(&dest, DatasetFormat::Auto).unwrap();
        assert_eq!(detected.format, DatasetFormat::ClassFolders, "{kind:?}");
        assert_eq!(detected.table.rows.len(), 4, "{kind:?}");
    }
}

#[test]
fn a_tar_from_before_ustar_is_detected_and_extracts() {
    let work = TempDir::new().unwrap();
    let files = class_folder_files();
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in &files {
        let mut header = tar::Header::new_old();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, name, bytes.as_slice()).unwrap();
    }
    let bytes = tar.into_inner().unwrap();
    assert_ne!(&bytes[257..262], b"ustar", "a v7 header has no magic");
    let path = write_file(work.path(), "old.tar", &bytes);
    assert_eq!(archive::detect(&path).unwrap(), Some(ArchiveKind::Tar));
    let (dest, summary) = extract_ok(&path);
    assert_eq!(summary.files, files.len() as u64);
    let detected = layout::detect(&dest, DatasetFormat::Auto).unwrap();
    assert_eq!(detected.format, DatasetFormat::ClassFolders);
    assert_eq!(detected.table.rows.len(), 4);
}

#[test]
fn a_csv_is_not_an_archive() {
    let work = TempDir::new().unwrap();
    let csv = write_file(work.path(), "data.zip", b"image,label\na.png,cat\n");
    assert_eq!(archive::detect(&csv).unwrap(), None);
    let message = bad_input(extract(&csv, &ArchiveLimits::default()).1);
    assert_contains(&message, "data.zip is not a zip or tar archive");
}

#[test]
fn permissions_in_the_archive_are_not_preserved() {
    let work = TempDir::new().unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    header.set_mode(0o4777);
    tar.append_data(&mut header, "cat/run.png", b"abc".as_slice()).unwrap();
    let path = write_file(work.path(), "modes.tar", &tar.into_inner().unwrap());
    let (_dest, _) = extract_ok(&path);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(_dest.join("cat/run.png")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode & 0o7133, 0, "no setuid, exec or group/other write bits: {mode:o}");
        assert_eq!(mode & 0o600, 0o600, "owner reads and writes: {mode:o}");
    }
}

#[test]
fn macos_junk_is_skipped_and_a_single_top_folder_is_descended() {
    let work = TempDir::new().unwrap();
    let files: Files = vec![
        ("cars/", Vec::new()),
        ("cars/sedan/", Vec::new()),
        ("cars/sedan/a.png", png([10, 10, 10])),
        ("cars/suv/b.jpg", jpeg([90, 90, 90])),
        ("cars/.DS_Store", b"finder".to_vec()),
        ("cars/suv/._b.jpg", b"resource fork".to_vec()),
        ("__MACOSX/cars/sedan/._a.png", b"resource fork".to_vec()),
    ];
    let path = write_file(work.path(), "cars.zip", &zip_of(&files));
    let (dest, summary) = extract_ok(&path);
    assert_eq!(summary.files, 2);
    assert_eq!(files_under(&dest), vec!["cars/sedan/a.png", "cars/suv/b.jpg"]);

    let detected = layout::detect(&dest, DatasetFormat::Auto).unwrap();
    assert_eq!(detected.base_dir, dest.join("cars"));
    assert_eq!(column(&detected, "image"), strings(&["sedan/a.png", "suv/b.jpg"]));
    assert_eq!(column(&detected, "label"), strings(&["sedan", "suv"]));
}

fn choice(split_folder: Option<&'static str>, table: Option<&'static str>) -> LayoutChoice<'static> {
    LayoutChoice { split_folder, table, ..LayoutChoice::default() }
}

#[test]
fn split_folders_need_spec_split_folder_and_then_label_by_class() {
    let work = TempDir::new().unwrap();
    let files: Files = vec![
        ("Train/cat/a.png", png([10, 10, 10])),
        ("Train/cat/b.png", png([12, 12, 12])),
        ("Train/dog/c.png", png([90, 90, 90])),
        ("test/cat/d.png", png([20, 20, 20])),
        ("test/dog/e.png", png([80, 80, 80])),
    ];
    write_tree(work.path(), &files);
    let message = bad_input(layout::detect(work.path(), DatasetFormat::Auto));
    assert_contains(
        &message,
        "the top folders Train, test are splits with class folders inside, not classes",
    );
    assert_contains(&message, "set spec.splitFolder");

    let train = layout::detect_with(work.path(), &choice(Some("train"), None)).unwrap();
    assert_eq!(train.format, DatasetFormat::ClassFolders);
    assert_eq!(column(&train, "label"), strings(&["cat", "cat", "dog"]));
    assert_eq!(column(&train, "image"), strings(&["cat/a.png", "cat/b.png", "dog/c.png"]));
    assert_eq!(train.base_dir, work.path().join("Train"));
    assert_eq!(train.splits, ["Train", "test"]);
    let test = layout::detect_with(work.path(), &choice(Some("TEST"), None)).unwrap();
    assert_eq!(column(&test, "label"), strings(&["cat", "dog"]));

    let message = bad_input(layout::detect_with(work.path(), &choice(Some("val"), None)));
    assert_contains(&message, "spec.splitFolder is `val` but the split folders are Train, test");

    // An archive of one split was descended into: naming that split is fine.
    let one = TempDir::new().unwrap();
    write_tree(one.path(), &files[..3]);
    let alone = layout::detect_with(one.path(), &choice(Some("train"), None)).unwrap();
    assert_eq!(column(&alone, "label"), strings(&["cat", "cat", "dog"]));

    // Class folders that happen to hold no split inside are still classes, and a split
    // folder named there is refused rather than ignored.
    let flat = TempDir::new().unwrap();
    write_tree(flat.path(), &[("train/a.png", png([10, 10, 10])), ("test/b.png", png([90, 90, 90]))]);
    let detected = layout::detect(flat.path(), DatasetFormat::Auto).unwrap();
    assert_eq!(column(&detected, "label"), strings(&["test", "train"]));
    assert!(detected.splits.is_empty());
    let message = bad_input(layout::detect_with(flat.path(), &choice(Some("train"), None)));
    assert_contains(&message, "the top folders are not split folders");
}

/// `batch1/cat/1.png`: the class could be either level, so the user says which; never a
/// silent label from the wrong level.
#[test]
fn images_two_folders_deep_need_spec_class_folder_depth() {
    let work = TempDir::new().unwrap();
    write_tree(
        work.path(),
        &[
            ("batch1/cat/a.png", png([10, 10, 10])),
            ("batch1/dog/b.png", png([90, 90, 90])),
            ("batch2/cat/c.png", png([12, 12, 12])),
            ("batch2/dog/d/e.png", png([80, 80, 80])),
        ],
    );
    let message = bad_input(layout::detect(work.path(), DatasetFormat::Auto));
    assert_contains(&message, "every image sits two or more folders deep (for example `batch1/cat/a.png`)");
    assert_contains(&message, "the top folder (batch1, batch2) or the folder inside it (cat, dog)");
    assert_contains(&message, "set spec.classFolderDepth to 1");

    let depth = |depth| LayoutChoice { class_folder_depth: Some(depth), ..LayoutChoice::default() };
    let inner = layout::detect_with(work.path(), &depth(2)).unwrap();
    assert_eq!(column(&inner, "label"), strings(&["cat", "dog", "cat", "dog"]));
    assert_eq!(column(&inner, "image")[3], Some("batch2/dog/d/e.png".to_owned()));
    let top = layout::detect_with(work.path(), &depth(1)).unwrap();
    assert_eq!(column(&top, "label"), strings(&["batch1", "batch1", "batch2", "batch2"]));
    let message = bad_input(layout::detect_with(work.path(), &depth(3)));
    assert_contains(&message, "image `batch1/cat/a.png` sits above folder level 3 (spec.classFolderDepth)");

    // A table layout has no class folders to count.
    write_file(
        work.path(),
        "labels.csv",
        b"image,label
batch1/cat/a.png,x
",
    );
    let message = bad_input(layout::detect_with(work.path(), &depth(2)));
    assert_contains(&message, "spec.classFolderDepth is 2, but the data is a table listing the images");
}

#[test]
fn devices_and_fifos_are_skipped() {
    let work = TempDir::new().unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    append_raw(&mut tar, "cat/", tar::EntryType::Directory, b"");
    append_raw(&mut tar, "cat/pipe", tar::EntryType::Fifo, b"");
    append_raw(&mut tar, "cat/tty", tar::EntryType::Char, b"");
    append_raw(&mut tar, "cat/1.png", tar::EntryType::Regular, &png([1, 1, 1]));
    let path = write_file(work.path(), "dev.tar", &tar.into_inner().unwrap());
    let (dest, summary) = extract_ok(&path);
    assert_eq!(summary.files, 1);
    assert_eq!(files_under(&dest), vec!["cat/1.png"]);
}

#[test]
fn long_tar_names_and_pax_paths_are_honoured() {
    let work = TempDir::new().unwrap();
    let image = png([4, 4, 4]);
    let long_name = format!("cat/{}.png", "x".repeat(150));
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(image.len() as u64);
    tar.append_data(&mut header, &long_name, image.as_slice()).unwrap(); // a GNU long-name entry
    tar.append_pax_extensions([("path", b"dog/named-by-pax.png".as_slice())]).unwrap();
    append_raw(&mut tar, "placeholder.png", tar::EntryType::Regular, &image);
    let path =
        write_file(work.path(), "names.tar.xz", &compress(ArchiveKind::TarXz, tar.into_inner().unwrap()));
    let (dest, summary) = extract_ok(&path);
    assert_eq!(summary.files, 2);
    assert_eq!(files_under(&dest), vec![long_name, "dog/named-by-pax.png".to_owned()]);

    let mut tar = tar::Builder::new(Vec::new());
    tar.append_pax_extensions([("path", b"../pax-evil.png".as_slice())]).unwrap();
    append_raw(&mut tar, "harmless.png", tar::EntryType::Regular, &image);
    let path = write_file(work.path(), "pax-escape.tar", &tar.into_inner().unwrap());
    assert_contains(
        &bad_input(extract(&path, &ArchiveLimits::default()).1),
        "entry `../pax-evil.png` points outside",
    );
    assert!(!work.path().join("pax-evil.png").exists());
}

#[test]
fn tar_entry_with_dotdot_is_refused() {
    let work = TempDir::new().unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    append_raw(&mut tar, "cat/1.png", tar::EntryType::Regular, &png([1, 1, 1]));
    append_raw(&mut tar, "../evil.png", tar::EntryType::Regular, b"evil");
    let path =
        write_file(work.path(), "dotdot.tar.gz", &compress(ArchiveKind::TarGz, tar.into_inner().unwrap()));
    let message = bad_input(extract(&path, &ArchiveLimits::default()).1);
    assert_contains(&message, "dotdot.tar.gz: entry `../evil.png` points outside the archive");
    assert!(!work.path().join("evil.png").exists());
}

#[test]
fn zip_entry_with_dotdot_is_refused() {
    let work = TempDir::new().unwrap();
    let path = write_file(work.path(), "dotdot.zip", &zip_of(&[("a/../../zip-evil.png", b"evil".to_vec())]));
    let message = bad_input(extract(&path, &ArchiveLimits::default()).1);
    assert_contains(&message, "entry `a/../../zip-evil.png` points outside the archive");
    assert!(!work.path().join("zip-evil.png").exists());
}

#[test]
fn an_entry_that_appears_twice_is_refused() {
    let work = TempDir::new().unwrap();
    // A zip writer refuses a second entry of one name, so the second name is patched in place
    // (a name is not covered by the entry's CRC).
    let zip = zip_of(&[("cat/1.png", png([1, 1, 1])), ("cat/2.png", png([2, 2, 2]))]);
    let needle = b"cat/2.png";
    let mut patched = zip.clone();
    for at in 0..zip.len() - needle.len() {
        if &zip[at..at + needle.len()] == needle {
            patched[at..at + needle.len()].copy_from_slice(b"cat/1.png");
        }
    }
    let mut tar = tar::Builder::new(Vec::new());
    append_raw(&mut tar, "cat/1.png", tar::EntryType::Regular, &png([1, 1, 1]));
    append_raw(&mut tar, "./cat/1.png", tar::EntryType::Regular, &png([2, 2, 2]));
    for (file, bytes, second) in
        [("twice.zip", patched, "cat/1.png"), ("twice.tar", tar.into_inner().unwrap(), "./cat/1.png")]
    {
        let path = write_file(work.path(), file, &bytes);
        let message = bad_input(extract(&path, &ArchiveLimits::default()).1);
        assert_contains(&message, &format!("{file}: entry `{second}` appears twice in the archive"));
        assert_contains(&message, "one entry per file");
    }
}

#[test]
fn an_archive_inside_the_archive_is_refused_not_skipped() {
    let work = TempDir::new().unwrap();
    let inner = zip_of(&[("dog/1.png", png([3, 3, 3]))]);
    for nested in ["cat/more.zip", "extra/DOGS.TAR.GZ", "x.tgz"] {
        let zip = zip_of(&[("cat/1.png", png([1, 1, 1])), (nested, inner.clone())]);
        let path = write_file(work.path(), &format!("{}.zip", nested.replace('/', "_")), &zip);
        let message = bad_input(extract(&path, &ArchiveLimits::default()).1);
        assert_contains(&message, &format!("entry `{nested}` is an archive inside the archive"));
        assert_contains(&message, "upload its contents");
    }
    // A gzipped file that is not a tar by name (a CSV, say) is still extracted.
    let zip = zip_of(&[("cat/1.png", png([1, 1, 1])), ("table.csv.gz", b"not read here".to_vec())]);
    let path = write_file(work.path(), "gz-csv.zip", &zip);
    let (dest, _) = extract_ok(&path);
    assert!(dest.join("table.csv.gz").is_file());
}

#[test]
fn absolute_entry_names_are_refused() {
    let work = TempDir::new().unwrap();
    let target = work.path().join("abs-evil.png");
    let absolute = target.to_str().unwrap();

    let mut tar = tar::Builder::new(Vec::new());
    append_raw(&mut tar, absolute, tar::EntryType::Regular, b"evil");
    let tar_path = write_file(work.path(), "abs.tar", &tar.into_inner().unwrap());
    assert_contains(
        &bad_input(extract(&tar_path, &ArchiveLimits::default()).1),
        "points outside the archive",
    );

    for (index, name) in [absolute, r"C:\Windows\evil.png", r"\evil.png"].into_iter().enumerate() {
        let zip_path =
            write_file(work.path(), &format!("abs{index}.zip"), &zip_of(&[(name, b"evil".to_vec())]));
        let message = bad_input(extract(&zip_path, &ArchiveLimits::default()).1);
        assert_contains(&message, "points outside the archive");
    }
    assert!(!target.exists());
}

#[test]
fn links_are_refused_not_followed() {
    let work = TempDir::new().unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    tar.append_link(&mut header, "cat/1.png", "/etc/passwd").unwrap();
    let path = write_file(work.path(), "symlink.tar", &tar.into_inner().unwrap());
    let message = bad_input(extract(&path, &ArchiveLimits::default()).1);
    assert_contains(&message, "symlink.tar: entry `cat/1.png` is a symbolic link");
    assert!(fs::symlink_metadata(work.path().join("symlink.tar.out/cat/1.png")).is_err());

    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    zip.add_symlink("cat/2.png", "../../outside.png", zip::write::SimpleFileOptions::default()).unwrap();
    let path = write_file(work.path(), "symlink.zip", &zip.finish().unwrap().into_inner());
    assert_contains(&bad_input(extract(&path, &ArchiveLimits::default()).1), "is a symbolic link");

    let mut tar = tar::Builder::new(Vec::new());
    append_raw(&mut tar, "cat/1.png", tar::EntryType::Regular, &png([1, 1, 1]));
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Link);
    header.set_size(0);
    tar.append_link(&mut header, "cat/2.png", "cat/1.png").unwrap();
    let path = write_file(work.path(), "hardlink.tar", &tar.into_inner().unwrap());
    assert_contains(&bad_input(extract(&path, &ArchiveLimits::default()).1), "is a hard link");
}

#[test]
fn truncated_archives_are_refused() {
    let work = TempDir::new().unwrap();
    let names = ["cat/1.png", "cat/2.png", "cat/3.png", "cat/4.png", "dog/1.png", "dog/2.png", "dog/3.png"];
    let files: Files = names.iter().enumerate().map(|(i, name)| (*name, png([i as u8 * 30, 0, 0]))).collect();
    for kind in ALL_KINDS {
        let whole = archive_of(kind, &files);
        let path = write_file(work.path(), &format!("cut-{kind:?}.bin"), &whole[..whole.len() / 2]);
        let message = bad_input(extract(&path, &ArchiveLimits::default()).1);
        assert_contains(&message, &format!("cut-{kind:?}.bin is truncated or corrupt: "));
        assert!(message.ends_with("; upload it again"), "{message}");
    }
}

#[test]
fn a_gzip_that_holds_no_tar_is_refused() {
    let work = TempDir::new().unwrap();
    for (name, content) in [("csv.gz", b"image,label\na.png,cat\n".repeat(100)), ("empty.gz", Vec::new())] {
        let path = write_file(work.path(), name, &compress(ArchiveKind::TarGz, content));
        assert_eq!(archive::detect(&path).unwrap(), Some(ArchiveKind::TarGz));
        let message = bad_input(extract(&path, &ArchiveLimits::default()).1);
        assert_contains(&message, &format!("{name} is gzip-compressed but holds no tar archive; upload"));
    }
}

/// A zip whose headers claim 1000 bytes for an entry of 64 MiB of zeros.
fn lying_zip_bomb() -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file("cat/bomb.png", zip::write::SimpleFileOptions::default()).unwrap();
    let zeros = vec![0u8; MIB];
    for _ in 0..64 {
        zip.write_all(&zeros).unwrap();
    }
    let mut bytes = zip.finish().unwrap().into_inner();
    let set_u32 =
        |bytes: &mut Vec<u8>, at: usize, value: u32| bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    assert_eq!(&bytes[..4], b"PK\x03\x04");
    set_u32(&mut bytes, 22, 1000); // local header: uncompressed size
    let end = bytes.len() - 22;
    assert_eq!(&bytes[end..end + 4], b"PK\x05\x06");
    let central = u32::from_le_bytes(bytes[end + 16..end + 20].try_into().unwrap()) as usize;
    assert_eq!(&bytes[central..central + 4], b"PK\x01\x02");
    set_u32(&mut bytes, central + 24, 1000); // central directory: uncompressed size
    bytes
}

#[test]
fn an_entry_past_the_size_limit_is_refused_on_actual_bytes() {
    let work = TempDir::new().unwrap();
    let limits = ArchiveLimits { max_entry_bytes: MIB as u64, ..ArchiveLimits::default() };

    let path = write_file(work.path(), "bomb.zip", &lying_zip_bomb());
    let (dest, result) = extract(&path, &limits);
    let message = bad_input(result);
    assert_contains(&message, "bomb.zip: entry `cat/bomb.png` decompresses to more than 1 MiB");
    assert!(!dest.join("cat/bomb.png").exists(), "a refused file is removed");
    for file in files_under(&dest) {
        assert!(fs::metadata(dest.join(&file)).unwrap().len() <= MIB as u64, "{file}");
    }

    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(2 * MIB as u64);
    tar.append_data(&mut header, "cat/big.png", io::repeat(0).take(2 * MIB as u64)).unwrap();
    let path =
        write_file(work.path(), "big.tar.gz", &compress(ArchiveKind::TarGz, tar.into_inner().unwrap()));
    let (dest, result) = extract(&path, &limits);
    assert_contains(&bad_input(result), "entry `cat/big.png` decompresses to more than 1 MiB");
    assert!(files_under(&dest).is_empty());
}

#[test]
fn total_size_and_entry_count_limits_are_enforced() {
    let work = TempDir::new().unwrap();
    let files: Files = vec![
        ("cat/a.png", vec![7; 600 * 1024]),
        ("cat/b.png", vec![8; 600 * 1024]),
        ("cat/c.png", vec![9; 10]),
    ];
    let path = write_file(work.path(), "many.zip", &zip_of(&files));

    let limits = ArchiveLimits { max_total_bytes: MIB as u64, ..ArchiveLimits::default() };
    let message = bad_input(extract(&path, &limits).1);
    assert_contains(&message, "many.zip: decompresses to more than 1 MiB in total");

    let path = write_file(work.path(), "many.tar", &tar_of(&files));
    let limits = ArchiveLimits { max_entries: 2, ..ArchiveLimits::default() };
    assert_contains(&bad_input(extract(&path, &limits).1), "many.tar: holds more than 2 entries");
}

// ---------------------------------------------------------------- layouts

#[test]
fn class_folders_are_detected_under_auto_and_explicitly() {
    let work = TempDir::new().unwrap();
    write_tree(work.path(), &class_folder_files());
    let auto = layout::detect(work.path(), DatasetFormat::Auto).unwrap();
    let explicit = layout::detect(work.path(), DatasetFormat::ClassFolders).unwrap();
    assert_eq!(auto, explicit);

    assert_eq!(auto.format, DatasetFormat::ClassFolders);
    assert_eq!(auto.base_dir, work.path());
    assert_eq!(auto.image_columns, vec!["image"]);
    assert_eq!(auto.label_column.as_deref(), Some("label"));
    assert_eq!(auto.table.columns, vec!["image", "label"]);
    // Sorted by path; the nested image belongs to its first-level folder; notes.txt is ignored.
    assert_eq!(column(&auto, "image"), strings(&["cat/1.png", "cat/2.jpg", "dog/1.png", "dog/deep/2.PNG"]));
    assert_eq!(column(&auto, "label"), strings(&["cat", "cat", "dog", "dog"]));
}

/// A zip wrapping `data/labels.csv` and `data/images/…`.
fn archive_with_csv(work: &Path) -> PathBuf {
    let files: Files = vec![
        ("data/labels.csv", b"image,label,weight\nimages/a.png,cat,1.5\nimages/b.jpg,dog,\n".to_vec()),
        ("data/images/a.png", png([5, 5, 5])),
        ("data/images/b.jpg", jpeg([6, 6, 6])),
    ];
    let (dest, _) = extract_ok(&write_file(work, "with-csv.zip", &zip_of(&files)));
    dest
}

#[test]
fn archive_with_csv_is_detected_under_auto_and_explicitly() {
    let work = TempDir::new().unwrap();
    let dest = archive_with_csv(work.path());
    let auto = layout::detect(&dest, DatasetFormat::Auto).unwrap();
    assert_eq!(auto, layout::detect(&dest, DatasetFormat::ArchiveWithCsv).unwrap());

    assert_eq!(auto.format, DatasetFormat::ArchiveWithCsv);
    assert_eq!(auto.base_dir, dest.join("data"));
    assert_eq!(auto.image_columns, vec!["image"]);
    assert_eq!(auto.label_column, None);
    assert_eq!(auto.table.columns, vec!["image", "label", "weight"]);
    assert_eq!(column(&auto, "weight"), vec![Some("1.5".to_owned()), None]);

    let as_paths = layout::detect(&dest, DatasetFormat::CsvPaths).unwrap();
    assert_eq!(as_paths.format, DatasetFormat::CsvPaths, "relative paths are local paths too");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn a_gzipped_csv_reads_as_the_csv_inside_an_archive_and_alone() {
    let work = TempDir::new().unwrap();
    let plain = archive_with_csv(work.path());
    let csv = b"image,label,weight\nimages/a.png,cat,1.5\nimages/b.jpg,dog,\n";
    let files: Files = vec![
        ("data/labels.csv.gz", gzip(csv)),
        ("data/images/a.png", png([5, 5, 5])),
        ("data/images/b.jpg", jpeg([6, 6, 6])),
    ];
    let (dest, _) = extract_ok(&write_file(work.path(), "with-gz-csv.zip", &zip_of(&files)));
    let gzipped = layout::detect(&dest, DatasetFormat::Auto).unwrap();
    let expected = layout::detect(&plain, DatasetFormat::Auto).unwrap();
    assert_eq!(gzipped.format, DatasetFormat::ArchiveWithCsv);
    assert_eq!((&gzipped.table, &gzipped.image_columns), (&expected.table, &expected.image_columns));

    // A CSV of absolute paths, gzipped, as the whole source.
    let a = write_file(work.path(), "pics/a.png", &png([1, 2, 3]));
    let content = format!("path;target\n{};1\n", a.display());
    let alone = write_file(work.path(), "lists/paths.CSV.GZ", &gzip(content.as_bytes()));
    assert!(layout::is_gzipped_csv_name(&alone));
    let detected = layout::detect(&alone, DatasetFormat::Auto).unwrap();
    assert_eq!(detected.format, DatasetFormat::CsvPaths);
    assert_eq!(column(&detected, "target"), strings(&["1"]), "the delimiter is sniffed through gzip");
}

#[test]
fn a_gzipped_csv_that_does_not_decompress_is_refused() {
    let work = TempDir::new().unwrap();
    let mut broken = gzip(b"image,label\na.png,cat\n");
    broken.truncate(broken.len() / 2);
    for (name, bytes) in [("cut.csv.gz", broken), ("plain-text.csv.gz", b"image,label\n".to_vec())] {
        let path = write_file(work.path(), name, &bytes);
        let message = bad_input(layout::detect(&path, DatasetFormat::Auto));
        assert_contains(&message, &format!("{name}: not a readable gzip file"));
        assert_contains(&message, "compress the CSV again");
    }
}

#[test]
fn csv_of_local_paths_is_detected_under_auto_and_explicitly() {
    let work = TempDir::new().unwrap();
    let a = write_file(work.path(), "pics/a.png", &png([1, 2, 3]));
    let b = write_file(work.path(), "pics/b.png", &png([3, 2, 1]));
    let content = format!("path,target\n{},1\n{},0\n", a.display(), b.display());
    let csv = write_file(work.path(), "lists/absolute.csv", content.as_bytes());

    let auto = layout::detect(&csv, DatasetFormat::Auto).unwrap();
    assert_eq!(auto, layout::detect(&csv, DatasetFormat::CsvPaths).unwrap());
    assert_eq!(auto.format, DatasetFormat::CsvPaths);
    assert_eq!(auto.base_dir, work.path().join("lists"));
    assert_eq!(auto.image_columns, vec!["path"]);

    let relative = write_file(work.path(), "relative.csv", b"file,target\npics/a.png,1\npics/b.png,0\n");
    let detected = layout::detect(&relative, DatasetFormat::Auto).unwrap();
    assert_eq!(detected.format, DatasetFormat::CsvPaths, "a lone CSV is never ArchiveWithCsv");
    assert_eq!(detected.base_dir, work.path());
    assert_eq!(detected.image_columns, vec!["file"]);
}

#[test]
fn csv_of_urls_is_detected_under_auto_and_explicitly() {
    let work = TempDir::new().unwrap();
    let content = "id,photo,image_url,caption\n\
                   1,https://example.com/a.jpg?w=8,https://cdn.example.com/1,a cat\n\
                   2,HTTP://example.com/b.PNG#x,https://cdn.example.com/2,\n";
    let csv = write_file(work.path(), "urls.csv", content.as_bytes());
    let auto = layout::detect(&csv, DatasetFormat::Auto).unwrap();
    assert_eq!(auto, layout::detect(&csv, DatasetFormat::CsvUrls).unwrap());
    assert_eq!(auto.format, DatasetFormat::CsvUrls);
    assert_eq!(auto.image_columns, vec!["photo", "image_url"]);

    let in_folder = write_file(work.path(), "folder/urls.csv", content.as_bytes());
    let detected = layout::detect(in_folder.parent().unwrap(), DatasetFormat::Auto).unwrap();
    assert_eq!(detected.format, DatasetFormat::CsvUrls);
}

#[test]
fn image_columns_named_by_the_user_override_detection() {
    let work = TempDir::new().unwrap();
    let csv = write_file(work.path(), "named.csv", b"pic,label\nmissing/a.png,cat\nmissing/b.png,dog\n");
    assert_contains(&bad_input(layout::detect(&csv, DatasetFormat::Auto)), "no column holds image paths");

    let named = layout::detect_with(
        &csv,
        &LayoutChoice { image_columns: &["pic".to_owned()], ..LayoutChoice::default() },
    )
    .unwrap();
    assert_eq!(named.format, DatasetFormat::CsvPaths);
    assert_eq!(named.image_columns, vec!["pic"]);

    let wrong = layout::detect_with(
        &csv,
        &LayoutChoice { image_columns: &["photo".to_owned()], ..LayoutChoice::default() },
    );
    assert_contains(
        &bad_input(wrong),
        "spec.imageColumns names `photo`, which is not a column; columns are: pic, label",
    );
}

#[test]
fn csv_reading_handles_bom_blank_cells_and_other_delimiters() {
    let work = TempDir::new().unwrap();
    let semicolons = write_file(
        work.path(),
        "semi.csv",
        "\u{feff} image ;label \nhttps://x.org/a.png;cat\nhttps://x.org/b.png; \n".as_bytes(),
    );
    let table = layout::read_csv(&semicolons).unwrap();
    assert_eq!(table.columns, vec!["image", "label"]);
    assert_eq!(
        table.rows,
        vec![strings(&["https://x.org/a.png", "cat"]), vec![Some("https://x.org/b.png".to_owned()), None]]
    );

    let tabs = write_file(work.path(), "tabs.csv", b"image\tlabel\n\"a,b.png\"\tcat\n");
    let table = layout::read_csv(&tabs).unwrap();
    assert_eq!(table.rows, vec![strings(&["a,b.png", "cat"])]);

    let pandas = write_file(work.path(), "pandas.csv", b",image\n0,a.png\n");
    assert_eq!(layout::read_csv(&pandas).unwrap().columns, vec!["column_1", "image"]);
}

// ---------------------------------------------------------------- bad input

#[test]
fn csv_without_an_image_column_is_refused() {
    let work = TempDir::new().unwrap();
    let csv = write_file(work.path(), "plain.csv", b"a,b,c\n1,x.txt,https://example.com/page\n2,y.txt,\n");
    let message = bad_input(layout::detect(&csv, DatasetFormat::Auto));
    assert_contains(
        &message,
        "plain.csv: no column holds image paths or URLs; columns are: a, b, c. Name the image column \
         in spec.imageColumns or check the paths",
    );
}

#[test]
fn csv_that_is_not_utf8_is_refused() {
    let work = TempDir::new().unwrap();
    let csv = write_file(work.path(), "latin1.csv", b"image,label\na.png,cat\nb.png,caf\xe9\n");
    let message = bad_input(layout::read_csv(&csv));
    assert_contains(&message, "latin1.csv: line 3 is not UTF-8; save the file as UTF-8");
}

#[test]
fn empty_datasets_are_refused() {
    let work = TempDir::new().unwrap();
    let header_only = write_file(work.path(), "header-only.csv", b"image,label\n");
    assert_contains(
        &bad_input(layout::detect(&header_only, DatasetFormat::Auto)),
        "header-only.csv has no rows",
    );

    let empty = write_file(work.path(), "empty.csv", b"");
    assert_contains(&bad_input(layout::read_csv(&empty)), "empty.csv is empty");

    let no_images = work.path().join("no-images");
    write_file(&no_images, "readme.txt", b"hello");
    write_file(&no_images, "other/notes.txt", b"hello");
    assert_contains(
        &bad_input(layout::detect(&no_images, DatasetFormat::Auto)),
        "no-images: holds no images (jpg",
    );

    let empty_class = work.path().join("empty-class");
    write_file(&empty_class, "cat/a.png", &png([1, 1, 1]));
    write_file(&empty_class, "dog/notes.txt", b"hello");
    let message = bad_input(layout::detect(&empty_class, DatasetFormat::Auto));
    assert_contains(&message, "class folder `dog` holds no images");

    let loose = work.path().join("loose");
    write_file(&loose, "a.png", &png([1, 1, 1]));
    write_file(&loose, "b.png", &png([2, 2, 2]));
    assert_contains(
        &bad_input(layout::detect(&loose, DatasetFormat::Auto)),
        "image `a.png` sits at the top level",
    );
}

#[test]
fn duplicate_column_names_are_refused() {
    let work = TempDir::new().unwrap();
    let csv = write_file(work.path(), "dup.csv", b"image, label,label,x,x\na.png,1,2,3,4\n");
    let message = bad_input(layout::read_csv(&csv));
    assert_contains(&message, "dup.csv: duplicate column names: label, x;");
}

#[test]
fn rows_with_a_different_field_count_are_refused() {
    let work = TempDir::new().unwrap();
    let csv = write_file(work.path(), "ragged.csv", b"image,label\na.png,cat\nb.png,dog,extra\n");
    let message = bad_input(layout::read_csv(&csv));
    assert_contains(&message, "ragged.csv: line 3 has 3 fields but the header has 2");
}

#[test]
fn several_csvs_at_the_top_need_spec_table() {
    let work = TempDir::new().unwrap();
    write_file(work.path(), "train.csv", b"image\na.png\n");
    write_file(work.path(), "test.csv", b"image\nb.png\n");
    let message = bad_input(layout::detect(work.path(), DatasetFormat::Auto));
    assert_contains(
        &message,
        "holds several tables (CSV or Parquet files: test.csv, train.csv); set spec.table",
    );
}

#[test]
fn spec_table_picks_one_csv_so_one_archive_serves_two_datasets() {
    let work = TempDir::new().unwrap();
    let source = work.path().join("set");
    write_tree(
        &source,
        &[
            ("images/a.png", png([10, 10, 10])),
            ("images/b.png", png([90, 90, 90])),
            ("images/c.png", png([50, 50, 50])),
            ("train.csv", b"image,label\nimages/a.png,cat\nimages/b.png,dog\n".to_vec()),
            // In a subfolder, with paths relative to the archive's top, not to its own folder.
            ("labels/test.csv.gz", gzip(b"image,label\nimages/c.png,cat\n")),
        ],
    );
    let train = layout::detect_with(&source, &choice(None, Some("train.csv"))).unwrap();
    assert_eq!(train.format, DatasetFormat::ArchiveWithCsv);
    assert_eq!(column(&train, "label"), strings(&["cat", "dog"]));
    let test = layout::detect_with(&source, &choice(None, Some("labels/test.csv.gz"))).unwrap();
    assert_eq!(column(&test, "image"), strings(&["images/c.png"]));
    assert_eq!(test.base_dir, source, "paths resolved from the top when not from the CSV's folder");

    let message = bad_input(layout::detect_with(&source, &choice(None, Some("valid.csv"))));
    assert_contains(&message, "has no CSV `valid.csv` (spec.table); the CSV files at the top are train.csv");
    let message = bad_input(layout::detect_with(&source, &choice(None, Some("../train.csv"))));
    assert_contains(&message, "relative and without `..`");
    let message = bad_input(layout::detect_with(&source, &choice(None, Some("images/a.png"))));
    assert_contains(&message, "not a .csv, .csv.gz or .parquet file");
    let message = bad_input(layout::detect_with(&source.join("train.csv"), &choice(None, Some("train.csv"))));
    assert_contains(&message, "spec.table is `train.csv`, but the source is one table file");
    let message = bad_input(layout::detect_with(&source, &choice(Some("train"), Some("train.csv"))));
    assert_contains(&message, "spec.splitFolder is `train`, but the data is a CSV listing the images");

    // A path that resolves nowhere is named.
    write_file(&source, "broken.csv", b"image,label\nphotos/x.png,cat\n");
    let message = bad_input(layout::detect_with(&source, &choice(None, Some("broken.csv"))));
    assert_contains(&message, "(`photos/x.png` is not found next to the CSV)");
}

#[test]
fn a_format_that_does_not_match_the_data_is_refused() {
    let work = TempDir::new().unwrap();
    let folders = work.path().join("folders");
    write_tree(&folders, &class_folder_files());
    let message = bad_input(layout::detect(&folders, DatasetFormat::ArchiveWithCsv));
    assert_contains(
        &message,
        "spec.format is ArchiveWithCsv but there is no CSV file at the top level (found folders cat, dog)",
    );

    let urls = write_file(work.path(), "urls.csv", b"image\nhttps://x.org/a.png\n");
    let message = bad_input(layout::detect(&urls, DatasetFormat::CsvPaths));
    assert_contains(
        &message,
        "spec.format is CsvPaths but image column(s) image hold http(s) URLs; set spec.format to CsvUrls or Auto",
    );
    let message = bad_input(layout::detect(&urls, DatasetFormat::ClassFolders));
    assert_contains(&message, "urls.csv: spec.format is ClassFolders but the data is a CSV file");
    let message = bad_input(layout::detect(&urls, DatasetFormat::ArchiveWithCsv));
    assert_contains(&message, "this is a lone CSV file");

    let dest = archive_with_csv(work.path());
    let message = bad_input(layout::detect(&dest, DatasetFormat::CsvUrls));
    assert_contains(
        &message,
        "spec.format is CsvUrls but image column(s) image hold relative paths; set spec.format to ArchiveWithCsv or Auto",
    );
}
