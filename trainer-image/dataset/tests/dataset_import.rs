//! Import end to end from local paths: every layout, the profile, the bad-image policies,
//! splits, and that a failed import never leaves or damages a normalized copy.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use ocellus_crds::dataset::{ColumnType, DatasetStatus};
use ocellus_crds::{Dataset, Manifest};
use ocellus_dataset::error::EXIT_BAD_INPUT;
use ocellus_dataset::import::{ImportContext, import};
use ocellus_dataset::normalized::NormalizedDataset;
use serde_json::Value;
use support::fixtures::{jpeg, png, tar_gz, zip};

/// A zip with one folder per class: 3 cats, 2 dogs, all in a top folder `pets/`.
fn class_folders_zip(dir: &Path) -> PathBuf {
    let path = dir.join("pets.zip");
    let (c1, c2, c3, d1, d2) =
        (png([200, 0, 0]), png([201, 0, 0]), jpeg([202, 0, 0]), png([0, 0, 200]), png([0, 0, 201]));
    let entries: [(&str, &[u8]); 5] = [
        ("pets/cat/1.png", &c1),
        ("pets/cat/2.png", &c2),
        ("pets/cat/3.jpg", &c3),
        ("pets/dog/1.png", &d1),
        ("pets/dog/2.png", &d2),
    ];
    std::fs::write(&path, zip(&entries)).unwrap();
    path
}

/// A tar.gz with images and a CSV of relative paths plus numeric, categorical and text columns.
fn archive_with_csv(dir: &Path) -> PathBuf {
    let path = dir.join("cars.tar.gz");
    let photos: Vec<(String, Vec<u8>)> =
        (0..4u8).map(|i| (format!("photos/car{i}.png"), png([i * 50, 100, 100]))).collect();
    let csv = "photo,Price,Make,Description\n\
         photos/car0.png,10000,ford,a clean one owner car\n\
         photos/car1.png,12500.5,audi,needs new tires soon\n\
         photos/car2.png,,ford,garage kept since new\n\
         photos/car3.png,9000,bmw,runs and drives well\n";
    let mut entries: Vec<(&str, &[u8])> = photos.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    entries.push(("cars.csv", csv.as_bytes()));
    std::fs::write(&path, tar_gz(&entries)).unwrap();
    path
}

fn dataset(name: &str, spec: &str) -> Dataset {
    let yaml =
        format!("apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {{name: {name}}}\nspec:\n{spec}");
    match ocellus_crds::parse_manifests(&yaml).unwrap().remove(0) {
        Manifest::Dataset(d) => *d,
        other => panic!("{other:?}"),
    }
}

fn context(dir: &Path) -> ImportContext {
    ImportContext {
        manifest_dir: dir.to_owned(),
        volumes_root: dir.join("volumes"),
        datasets_root: dir.join("datasets"),
        work_dir: dir.join("work"),
        cache_dir: dir.join("cache"),
    }
}

fn column_type(profile: &DatasetStatus, name: &str) -> ColumnType {
    profile.columns.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no column {name}")).type_
}

#[test]
fn class_folders_import_with_labels_classes_and_a_profile() {
    let dir = tempfile::tempdir().unwrap();
    class_folders_zip(dir.path());
    let profile = import(&dataset("pets", "  source: {path: pets.zip}\n"), &context(dir.path())).unwrap();
    assert_eq!(profile.rows, Some(5));
    assert_eq!(profile.image_columns, ["image"]);
    assert_eq!(column_type(&profile, "image"), ColumnType::Image);
    assert_eq!(column_type(&profile, "label"), ColumnType::Categorical);
    let classes: Vec<_> = profile.classes.iter().map(|c| (c.name.as_str(), c.count)).collect();
    assert_eq!(classes, [("cat", 3), ("dog", 2)]);
    assert_eq!(profile.bad_images, Some(0));
    assert!(profile.digest.as_deref().unwrap().starts_with("sha256:"));

    let copy = dir.path().join("datasets/pets");
    let on_disk: DatasetStatus =
        serde_json::from_str(&std::fs::read_to_string(copy.join("profile.json")).unwrap()).unwrap();
    assert_eq!(on_disk, profile, "profile.json is exactly the status shape");
    let rows = NormalizedDataset::open(&copy).unwrap().rows().unwrap();
    for row in &rows {
        let image = row["image"].as_str().unwrap();
        assert!(copy.join(image).is_file(), "{image}");
        image::open(copy.join(image)).expect("stored images stay decodable");
    }
}

#[test]
fn an_archive_with_a_csv_keeps_every_column_with_inferred_types() {
    let dir = tempfile::tempdir().unwrap();
    archive_with_csv(dir.path());
    let profile = import(&dataset("cars", "  source: {path: cars.tar.gz}\n"), &context(dir.path())).unwrap();
    assert_eq!(profile.rows, Some(4));
    assert_eq!(profile.image_columns, ["photo"]);
    assert_eq!(column_type(&profile, "Price"), ColumnType::Numeric);
    assert_eq!(column_type(&profile, "Make"), ColumnType::Categorical);
    assert_eq!(column_type(&profile, "Description"), ColumnType::Text);
    assert_eq!(profile.columns.iter().find(|c| c.name == "Price").unwrap().missing, 1);
    let rows = NormalizedDataset::open(&dir.path().join("datasets/cars")).unwrap().rows().unwrap();
    assert_eq!(rows[1]["Price"], serde_json::json!(12500.5));
    assert_eq!(rows[2]["Price"], Value::Null);
}

#[test]
fn a_csv_of_local_paths_imports_from_a_volume() {
    let dir = tempfile::tempdir().unwrap();
    let claim = dir.path().join("volumes/shared-data/set1");
    std::fs::create_dir_all(&claim).unwrap();
    std::fs::write(claim.join("a.png"), png([1, 2, 3])).unwrap();
    std::fs::write(claim.join("b.png"), png([4, 5, 6])).unwrap();
    let absolute = claim.join("b.png");
    std::fs::write(claim.join("index.csv"), format!("file,y\na.png,1\n{},0\n", absolute.display())).unwrap();
    let spec = "  source: {volume: {claimName: shared-data, path: set1/index.csv}}\n";
    let profile = import(&dataset("local", spec), &context(dir.path())).unwrap();
    assert_eq!((profile.rows, profile.image_columns.clone()), (Some(2), vec!["file".to_owned()]));
}

#[test]
fn an_unmounted_volume_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "  source: {volume: {claimName: nowhere, path: x.zip}}\n";
    let error = import(&dataset("v", spec), &context(dir.path())).unwrap_err();
    assert!(error.to_string().contains("not mounted"), "{error}");
}

fn with_bad_images(dir: &Path) -> PathBuf {
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let mut csv = String::from("img,label\n");
    for i in 0..18 {
        std::fs::write(photos.join(format!("{i}.png")), png([i as u8, 0, 0])).unwrap();
        csv.push_str(&format!("photos/{i}.png,{}\n", i % 2));
    }
    std::fs::write(photos.join("corrupt.png"), &png([9, 9, 9])[..20]).unwrap();
    csv.push_str("photos/corrupt.png,1\nphotos/gone.png,0\n");
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
    dir.join("labels.csv")
}

#[test]
fn bad_images_fail_the_import_by_default_naming_rows_and_reasons() {
    let dir = tempfile::tempdir().unwrap();
    with_bad_images(dir.path());
    let error = import(&dataset("bad", "  source: {path: labels.csv}\n"), &context(dir.path())).unwrap_err();
    let message = error.to_string();
    assert_eq!(error.exit_code(), EXIT_BAD_INPUT);
    assert!(message.contains("row 19") && message.contains("cannot decode"), "{message}");
    assert!(message.contains("row 20") && message.contains("file is missing"), "{message}");
    assert!(message.contains("missingImagePolicy"), "{message}");
    assert!(!dir.path().join("datasets/bad").exists(), "nothing half-written");
}

#[test]
fn drop_row_and_zero_embedding_keep_the_good_rows_and_record_the_bad() {
    let dir = tempfile::tempdir().unwrap();
    with_bad_images(dir.path());
    let limits = "  limits: {maxBadPercent: 15}\n";
    let dropped = import(
        &dataset(
            "dropped",
            &format!("  source: {{path: labels.csv}}\n  missingImagePolicy: DropRow\n{limits}"),
        ),
        &context(dir.path()),
    )
    .unwrap();
    assert_eq!((dropped.rows, dropped.bad_images), (Some(18), Some(2)));
    let bad = std::fs::read_to_string(dir.path().join("datasets/dropped/bad_images.jsonl")).unwrap();
    assert_eq!(bad.lines().count(), 2);

    let zeroed = import(
        &dataset(
            "zeroed",
            &format!("  source: {{path: labels.csv}}\n  missingImagePolicy: ZeroEmbedding\n{limits}"),
        ),
        &context(dir.path()),
    )
    .unwrap();
    assert_eq!(zeroed.rows, Some(20));
    assert_eq!(zeroed.columns.iter().find(|c| c.name == "img").unwrap().missing, 2);

    let strict =
        "  source: {path: labels.csv}\n  missingImagePolicy: DropRow\n  limits: {maxBadPercent: 5}\n";
    let error = import(&dataset("strict", strict), &context(dir.path())).unwrap_err();
    assert!(error.to_string().contains("over limits.maxBadPercent (5%)"), "{error}");
}

#[test]
fn a_30000_by_30000_png_is_refused_as_a_decompression_bomb() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("tree/big");
    std::fs::create_dir_all(&class).unwrap();
    let file = std::io::BufWriter::new(std::fs::File::create(class.join("bomb.png")).unwrap());
    let mut encoder = png::Encoder::new(file, 30_000, 30_000);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().unwrap();
    let mut stream = writer.stream_writer().unwrap();
    let row = vec![0u8; 30_000];
    for _ in 0..30_000 {
        stream.write_all(&row).unwrap();
    }
    stream.finish().unwrap();
    std::fs::create_dir_all(dir.path().join("tree/small")).unwrap();
    std::fs::write(dir.path().join("tree/small/ok.png"), png([1, 1, 1])).unwrap();

    let error = import(&dataset("bomb", "  source: {path: tree}\n"), &context(dir.path())).unwrap_err();
    assert!(error.to_string().contains("30000x30000"), "{error}");
    assert!(error.to_string().contains("maxImagePixels"), "{error}");
}

#[test]
fn a_failed_reimport_leaves_the_previous_copy_intact() {
    let dir = tempfile::tempdir().unwrap();
    class_folders_zip(dir.path());
    let first = import(&dataset("pets", "  source: {path: pets.zip}\n"), &context(dir.path())).unwrap();
    std::fs::write(dir.path().join("pets.zip"), b"PK\x03\x04 truncated").unwrap();
    assert!(import(&dataset("pets", "  source: {path: pets.zip}\n"), &context(dir.path())).is_err());
    let kept = NormalizedDataset::open(&dir.path().join("datasets/pets")).unwrap().profile().unwrap();
    assert_eq!(kept, first);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("datasets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(leftovers, ["pets"], "no staging folder is left behind");
}

#[test]
fn first_and_rest_partition_the_parent_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("many");
    for i in 0..40u8 {
        let class = root.join(if i % 4 == 0 { "rare" } else { "common" });
        std::fs::create_dir_all(&class).unwrap();
        std::fs::write(class.join(format!("{i}.png")), png([i, i, i])).unwrap();
    }
    let context = context(dir.path());
    import(&dataset("all", "  source: {path: many}\n"), &context).unwrap();
    let split = |name: &str, part: &str| {
        let spec = format!(
            "  source: {{split: {{datasetRef: {{name: all}}, percent: 75, part: {part}, seed: 5, stratifyBy: label}}}}\n"
        );
        import(&dataset(name, &spec), &context).unwrap();
        NormalizedDataset::open(&dir.path().join("datasets").join(name)).unwrap().rows().unwrap()
    };
    let first = split("train", "First");
    let rest = split("test", "Rest");
    assert_eq!((first.len(), rest.len()), (30, 10));
    let rare = |rows: &[serde_json::Map<String, Value>]| rows.iter().filter(|r| r["label"] == "rare").count();
    assert_eq!(rare(&first) + rare(&rest), 10);
    assert!((7..=8).contains(&rare(&first)), "stratified by label: 7.5 of the 10 rare rows expected");
    let mut together: Vec<String> = first.iter().chain(&rest).map(|r| r["image"].to_string()).collect();
    together.sort();
    let mut parent: Vec<String> = NormalizedDataset::open(&dir.path().join("datasets/all"))
        .unwrap()
        .rows()
        .unwrap()
        .iter()
        .map(|r| r["image"].to_string())
        .collect();
    parent.sort();
    assert_eq!(together, parent);
    assert_eq!(split("train-again", "First"), first, "deterministic");
}

#[test]
fn the_cli_imports_parents_before_splits_and_exits_65_on_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    class_folders_zip(dir.path());
    let manifest = dir.path().join("pets.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {name: pets-train}\nspec:\n  source: {split: {datasetRef: {name: pets}, percent: 60, part: First}}\n---\napiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {name: pets}\nspec:\n  source: {path: pets.zip}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = |file: &Path| {
        Command::new(env!("CARGO_BIN_EXE_ocellus-dataset"))
            .args(["import", file.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let output = run(&manifest);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("Dataset pets: 5 rows") && stdout.contains("Dataset pets-train: 3 rows"),
        "{stdout}"
    );
    assert!(out.join("pets-train/profile.json").is_file());

    let unknown_format = dir.path().join("format.yaml");
    std::fs::write(&unknown_format, "apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {name: y}\nspec:\n  source: {path: pets.zip}\n  format: Rar\n").unwrap();
    let output = run(&unknown_format);
    assert_eq!(output.status.code(), Some(EXIT_BAD_INPUT));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("spec.format"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {name: x}\nspec:\n  source: {path: nothing-here.zip}\n").unwrap();
    let output = run(&bad);
    assert_eq!(output.status.code(), Some(EXIT_BAD_INPUT));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nothing-here.zip does not exist"));
}

/// Messages name paths inside the archive as the user gave it, not the scratch folder it was
/// extracted to; and a `*.csv.gz` source is read as the table it is.
#[test]
fn errors_name_paths_inside_the_archive_and_a_gzipped_csv_source_imports() {
    let dir = tempfile::tempdir().unwrap();
    let image = png([9, 9, 9]);
    let entries: [(&str, &[u8]); 3] = [
        ("set/a.png", &image),
        ("set/train.csv", b"image,label\na.png,x\n"),
        ("set/test.csv", b"image,label\na.png,y\n"),
    ];
    std::fs::write(dir.path().join("two-tables.zip"), zip(&entries)).unwrap();
    let error =
        import(&dataset("two", "  source: {path: two-tables.zip}\n"), &context(dir.path())).unwrap_err();
    assert_eq!(error.exit_code(), EXIT_BAD_INPUT);
    let message = error.to_string();
    assert!(
        message.starts_with("two-tables.zip/set: holds several tables (CSV or Parquet files"),
        "{message}"
    );
    assert!(!message.contains(&dir.path().join("work").display().to_string()), "{message}");

    let photos: Vec<(String, Vec<u8>)> =
        (0..4u8).map(|i| (format!("p{i}.png"), png([i * 60, 10, 10]))).collect();
    for (name, bytes) in &photos {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let csv = format!(
        "image,label\n{}",
        photos.iter().enumerate().map(|(i, (n, _))| format!("{n},{}\n", i % 2)).collect::<String>()
    );
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(csv.as_bytes()).unwrap();
    std::fs::write(dir.path().join("labels.csv.gz"), encoder.finish().unwrap()).unwrap();
    let profile = import(&dataset("gz", "  source: {path: labels.csv.gz}\n"), &context(dir.path())).unwrap();
    assert_eq!(profile.rows, Some(4));
}

/// One uploaded archive of `train/<class>/…` and `test/<class>/…` makes two Datasets labelled
/// by class, and the profile lists the splits found; without spec.splitFolder it is refused.
#[test]
fn a_split_folder_archive_makes_a_training_and_a_test_dataset_labelled_by_class() {
    let dir = tempfile::tempdir().unwrap();
    let images: Vec<Vec<u8>> = (0..5u8).map(|i| png([i * 40, 10, 10])).collect();
    let entries: [(&str, &[u8]); 5] = [
        ("train/cat/1.png", &images[0]),
        ("train/cat/2.png", &images[1]),
        ("train/dog/3.png", &images[2]),
        ("Test/cat/4.png", &images[3]),
        ("Test/dog/5.png", &images[4]),
    ];
    std::fs::write(dir.path().join("pets.zip"), zip(&entries)).unwrap();
    let context = context(dir.path());

    let error = import(&dataset("pets", "  source: {path: pets.zip}\n"), &context).unwrap_err();
    assert_eq!(error.exit_code(), EXIT_BAD_INPUT);
    assert!(error.to_string().starts_with("pets.zip: the top folders Test, train are splits"), "{error}");

    let train =
        import(&dataset("pets-train", "  source: {path: pets.zip}\n  splitFolder: train\n"), &context)
            .unwrap();
    let test =
        import(&dataset("pets-test", "  source: {path: pets.zip}\n  splitFolder: test\n"), &context).unwrap();
    let classes = |profile: &DatasetStatus| -> Vec<(String, i64)> {
        profile.classes.iter().map(|c| (c.name.clone(), c.count)).collect()
    };
    assert_eq!(classes(&train), [("cat".to_owned(), 2), ("dog".to_owned(), 1)]);
    assert_eq!(classes(&test), [("cat".to_owned(), 1), ("dog".to_owned(), 1)]);
    assert_eq!(train.splits, ["Test", "train"]);
    let rows = NormalizedDataset::open(&dir.path().join("datasets/pets-test")).unwrap().rows().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|row| row["label"] != "Test"), "{rows:?}");
}

/// One archive with two tables serves two Datasets through spec.table.
#[test]
fn spec_table_picks_the_csv_inside_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let image = png([9, 9, 9]);
    let other = png([90, 9, 9]);
    let entries: [(&str, &[u8]); 4] = [
        ("set/a.png", &image),
        ("set/b.png", &other),
        ("set/train.csv", b"image,label\na.png,x\nb.png,y\n"),
        ("set/test.csv", b"image,label\nb.png,y\n"),
    ];
    std::fs::write(dir.path().join("two-tables.zip"), zip(&entries)).unwrap();
    let context = context(dir.path());
    let train =
        import(&dataset("t1", "  source: {path: two-tables.zip}\n  table: train.csv\n"), &context).unwrap();
    let test = import(&dataset("t2", "  source: {path: two-tables.zip}\n  table: set/test.csv\n"), &context)
        .unwrap();
    assert_eq!((train.rows, test.rows), (Some(2), Some(1)));
    let error = import(&dataset("t3", "  source: {path: two-tables.zip}\n  table: valid.csv\n"), &context)
        .unwrap_err();
    assert!(error.to_string().starts_with("two-tables.zip/set: has no CSV `valid.csv`"), "{error}");
}

/// The Parquet fixtures written by pyarrow (see tests/parquet/make.py), copied into `dir`.
fn parquet_fixture(dir: &Path, name: &str) -> Vec<u8> {
    let bytes =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parquet").join(name)).unwrap();
    std::fs::write(dir.join(name), &bytes).unwrap();
    bytes
}

/// Hugging Face's image struct of PNG and JPEG bytes; column types from the schema (a zip code
/// stored as a string stays categorical, a date is categorical), a list column dropped.
#[test]
fn a_parquet_table_of_image_bytes_imports_with_the_schemas_types() {
    let dir = tempfile::tempdir().unwrap();
    parquet_fixture(dir.path(), "pets-bytes.parquet");
    let spec = "  source: {path: pets-bytes.parquet}\n";
    let profile = import(&dataset("pets", spec), &context(dir.path())).unwrap();
    assert_eq!((profile.rows, profile.bad_images), (Some(9), Some(0)));
    assert_eq!(profile.image_columns, ["image"]);
    let types: Vec<(&str, ColumnType)> = profile.columns.iter().map(|c| (c.name.as_str(), c.type_)).collect();
    use ColumnType::{Categorical, Image, Numeric};
    assert_eq!(
        types,
        [
            ("image", Image),
            ("label", Categorical),
            ("zip", Categorical),
            ("age", Numeric),
            ("weight", Numeric),
            ("indoor", Categorical),
            ("seen", Categorical),
        ]
    );
    assert_eq!(profile.columns.iter().find(|c| c.name == "age").unwrap().missing, 1);

    let copy = dir.path().join("datasets/pets");
    let rows = NormalizedDataset::open(&copy).unwrap().rows().unwrap();
    let formats: Vec<image::ImageFormat> = rows
        .iter()
        .map(|row| {
            image::ImageReader::open(copy.join(row["image"].as_str().unwrap()))
                .unwrap()
                .with_guessed_format()
                .unwrap()
                .format()
                .unwrap()
        })
        .collect();
    assert_eq!(formats[..2], [image::ImageFormat::Png, image::ImageFormat::Jpeg]);
    let decoded = image::open(copy.join(rows[2]["image"].as_str().unwrap())).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (24, 16));
    assert_eq!(
        (rows[0]["label"].clone(), rows[1]["label"].clone()),
        (serde_json::json!("cat"), serde_json::json!("dog"))
    );
    assert_eq!(rows[0]["zip"], serde_json::json!("02130"));
    assert_eq!((rows[3]["age"].clone(), rows[4]["age"].clone()), (Value::Null, serde_json::json!(5.0)));
    assert_eq!(rows[1]["weight"], serde_json::json!(2.75));
    assert_eq!(
        (rows[0]["indoor"].clone(), rows[1]["indoor"].clone()),
        (serde_json::json!("true"), serde_json::json!("false"))
    );
    assert_eq!(rows[0]["seen"], serde_json::json!("2024-01-01"));
    assert!(rows[0].get("tags").is_none());
}

/// A plain binary column of PNG bytes; and a Parquet of relative paths inside a zip, picked
/// by spec.table from beside a CSV, its images resolved next to it.
#[test]
fn raw_image_bytes_and_a_parquet_of_paths_inside_an_archive_import() {
    let dir = tempfile::tempdir().unwrap();
    parquet_fixture(dir.path(), "raw-bytes.parquet");
    let raw = import(&dataset("raw", "  source: {path: raw-bytes.parquet}\n"), &context(dir.path())).unwrap();
    assert_eq!((raw.rows, raw.image_columns.clone()), (Some(6), vec!["picture".to_owned()]));
    assert_eq!(column_type(&raw, "label"), ColumnType::Numeric);

    let table = parquet_fixture(dir.path(), "photo-paths.parquet");
    let photos: Vec<(String, Vec<u8>)> =
        (0..4u8).map(|i| (format!("cars/photos/car{i}.png"), png([i * 50, 100, 100]))).collect();
    let mut entries: Vec<(&str, &[u8])> = photos.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    entries.push(("cars/photo-paths.parquet", &table));
    entries.push(("cars/notes.csv", b"photo,note\nphotos/car0.png,first\n"));
    std::fs::write(dir.path().join("cars.zip"), zip(&entries)).unwrap();
    let spec = "  source: {path: cars.zip}\n  table: photo-paths.parquet\n";
    let cars = import(&dataset("cars", spec), &context(dir.path())).unwrap();
    assert_eq!((cars.rows, cars.image_columns.clone()), (Some(4), vec!["photo".to_owned()]));
    assert_eq!(column_type(&cars, "price"), ColumnType::Numeric);
    assert_eq!(column_type(&cars, "make"), ColumnType::Categorical);
    assert_eq!(cars.columns.iter().find(|c| c.name == "price").unwrap().missing, 1);
    let rows = NormalizedDataset::open(&dir.path().join("datasets/cars")).unwrap().rows().unwrap();
    assert_eq!(rows[1]["price"], serde_json::json!(12500.5));
}

#[test]
fn a_broken_parquet_file_and_image_columns_without_bytes_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = parquet_fixture(dir.path(), "pets-bytes.parquet");
    std::fs::write(dir.path().join("broken.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    let error =
        import(&dataset("broken", "  source: {path: broken.parquet}\n"), &context(dir.path())).unwrap_err();
    assert_eq!(error.exit_code(), EXIT_BAD_INPUT);
    let message = error.to_string();
    assert!(
        message.contains("broken.parquet: not a readable Parquet file")
            && message.contains("export it again"),
        "{message}"
    );
    assert!(!dir.path().join("datasets/broken").exists(), "nothing half-written");

    let spec = "  source: {path: pets-bytes.parquet}\n  imageColumns: [zip]\n";
    let message = import(&dataset("zip", spec), &context(dir.path())).unwrap_err().to_string();
    assert!(
        message.contains(
            "spec.imageColumns names `zip`, which holds no image bytes; the image bytes are in image"
        ),
        "{message}"
    );

    let spec = "  source: {path: pets-bytes.parquet}\n  format: CsvPaths\n";
    let message = import(&dataset("paths", spec), &context(dir.path())).unwrap_err().to_string();
    assert!(message.contains("hold encoded image bytes; set spec.format to ImageBytes or Auto"), "{message}");
}

/// Images are stored while they are checked; a good image whose only row is dropped for a bad
/// image in another column must leave the copy again, and the user's own files stay in place.
#[test]
fn a_dropped_rows_good_image_is_not_left_in_the_copy_and_user_files_stay() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for i in 0..4u8 {
        std::fs::write(photos.join(format!("{i}.png")), png([i * 60, 1, 2])).unwrap();
    }
    let csv = "front,back,label\nphotos/0.png,photos/1.png,a\nphotos/2.png,photos/gone.png,b\nphotos/3.png,photos/3.png,a\n";
    std::fs::write(dir.path().join("two.csv"), csv).unwrap();
    let spec = "  source: {path: two.csv}\n  missingImagePolicy: DropRow\n  limits: {maxBadPercent: 50}\n";
    let profile = import(&dataset("two", spec), &context(dir.path())).unwrap();
    assert_eq!((profile.rows, profile.bad_images), (Some(2), Some(1)));

    let copy = dir.path().join("datasets/two");
    let stored: Vec<PathBuf> = std::fs::read_dir(copy.join("images"))
        .unwrap()
        .flat_map(|folder| std::fs::read_dir(folder.unwrap().path()).unwrap())
        .map(|entry| entry.unwrap().path())
        .collect();
    let mut named: Vec<String> = NormalizedDataset::open(&copy)
        .unwrap()
        .rows()
        .unwrap()
        .iter()
        .flat_map(|row| [row["front"].as_str().unwrap().to_owned(), row["back"].as_str().unwrap().to_owned()])
        .collect();
    named.sort();
    named.dedup();
    assert_eq!(stored.len(), 3, "0, 1 and 3 once; 2 was only in the dropped row: {stored:?}");
    assert_eq!(named.len(), 3);
    for image in &named {
        assert!(copy.join(image).is_file(), "{image}");
    }
    for i in 0..4 {
        assert!(photos.join(format!("{i}.png")).is_file(), "the user's file {i}.png is copied, never moved");
    }
}
