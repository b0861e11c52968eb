//! Opens a run's report.html in headless Chromium (Debian's `chromium`, driven over the DevTools
//! protocol) and checks what a person would see: no console errors, every expected plot present
//! with a real size and non-blank pixels, every thumbnail decoded.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::{Browser, LaunchOptions};
use serde_json::Value;

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// What the page showed.
pub struct Rendered {
    /// `data-plot` of every plot on the page.
    pub plots: Vec<String>,
    pub thumbnails: usize,
    /// A screenshot of the first screen, kept for a person to look at.
    pub screenshot: PathBuf,
}

/// `None` (with a message) only when Chromium is not installed and the caller did not ask for
/// it: `make test` sets OCELLUS_REQUIRE_CHROMIUM=1 after installing it, so there it must run.
pub fn render_report(report: &Path, expected_plots: &[&str]) -> Option<Rendered> {
    if !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var("OCELLUS_REQUIRE_CHROMIUM").is_err(),
            "{CHROMIUM} is missing but OCELLUS_REQUIRE_CHROMIUM is set: `apt-get install chromium` (make setup does)"
        );
        eprintln!(
            "SKIPPED the browser check of {}: {CHROMIUM} is not installed (apt-get install chromium)",
            report.display()
        );
        return None;
    }
    let profile = tempfile::tempdir().unwrap();
    let flags = ["--disable-gpu", "--disable-quic", "--disable-component-update", "--no-first-run"];
    let options = LaunchOptions::default_builder()
        .path(Some(PathBuf::from(CHROMIUM)))
        .headless(true)
        .sandbox(false)
        .window_size(Some((1280, 1000)))
        .user_data_dir(Some(profile.path().to_owned()))
        .args(flags.iter().map(OsStr::new).collect())
        .build()
        .unwrap();
    let browser = Browser::new(options).expect("Chromium starts");
    let tab = browser.new_tab().unwrap();
    let problems = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = problems.clone();
    tab.enable_log().unwrap();
    tab.enable_runtime().unwrap();
    tab.add_event_listener(Arc::new(move |event: &Event| {
        let problem = match event {
            Event::LogEntryAdded(e) if format!("{:?}", e.params.entry.level) == "Error" => {
                Some(format!("log: {}", e.params.entry.text))
            }
            Event::RuntimeConsoleAPICalled(e) if format!("{:?}", e.params.Type) == "Error" => {
                Some(format!("console.error: {:?}", e.params.args))
            }
            Event::RuntimeExceptionThrown(e) => Some(format!("exception: {:?}", e.params.exception_details)),
            _ => None,
        };
        if let Some(problem) = problem {
            sink.lock().unwrap().push(problem);
        }
    }))
    .unwrap();
    let url = format!("file://{}", report.canonicalize().unwrap().display());
    tab.navigate_to(&url).unwrap().wait_until_navigated().unwrap();
    tab.wait_for_element("#datasets").expect("the page loads to its last section");

    let facts = tab
        .evaluate(
            r#"JSON.stringify({
                plots: [...document.querySelectorAll('figure.plot')].map(f => {
                    const svg = f.querySelector('svg');
                    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
                    return {id: f.dataset.plot, width: box.width, height: box.height,
                            marks: svg ? svg.querySelectorAll('rect, circle, polyline, path, line').length : 0};
                }),
                images: [...document.images].map(i => ({ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth})),
                title: document.title,
            })"#,
            false,
        )
        .unwrap()
        .value
        .expect("the page answers");
    let facts: Value = serde_json::from_str(facts.as_str().unwrap()).unwrap();
    assert!(facts["title"].as_str().unwrap().starts_with("Ocellus report"), "{facts}");
    let plots: Vec<String> =
        facts["plots"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect();
    for expected in expected_plots {
        assert!(plots.iter().any(|p| p.starts_with(expected)), "no {expected} plot among {plots:?}");
    }
    for plot in facts["plots"].as_array().unwrap() {
        assert!(
            plot["width"].as_f64().unwrap() > 200.0 && plot["height"].as_f64().unwrap() > 150.0,
            "{plot}"
        );
        assert!(plot["marks"].as_u64().unwrap() > 10, "an empty plot: {plot}");
    }
    let images = facts["images"].as_array().unwrap();
    assert!(images.iter().all(|i| i["ok"] == true), "a thumbnail did not decode: {images:?}");

    // Pixels: every plot, scrolled to the top of the window, is cut out of a screenshot of the
    // window and must be far from blank.
    for (index, plot) in plots.iter().enumerate() {
        let script = format!(
            "(() => {{ const svg = document.querySelectorAll('figure.plot svg')[{index}];
                svg.scrollIntoView({{block: 'start'}});
                const r = svg.getBoundingClientRect();
                return JSON.stringify([r.x, r.y, r.width, r.height]); }})()"
        );
        let rect = tab.evaluate(&script, false).unwrap().value.unwrap();
        let rect: Vec<f64> = serde_json::from_str(rect.as_str().unwrap()).unwrap();
        let png = tab.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true).unwrap();
        let window = image::load_from_memory(&png).unwrap().to_rgb8();
        let (x, y) = (rect[0].max(0.0) as u32, rect[1].max(0.0) as u32);
        let width = (rect[2] as u32).min(window.width().saturating_sub(x));
        let height = (rect[3] as u32).min(window.height().saturating_sub(y));
        assert!(width > 100 && height > 100, "plot {plot} is not on screen: {rect:?}");
        let pixels = image::imageops::crop_imm(&window, x, y, width, height).to_image();
        let inked = pixels.pixels().filter(|p| p.0.iter().any(|&c| c < 200)).count();
        let share = inked as f64 / (width * height) as f64;
        assert!(share > 0.02, "plot {plot} is nearly blank in the browser ({share:.3} of its pixels inked)");
    }
    tab.evaluate("window.scrollTo(0, 0)", false).unwrap();
    let screenshot = report.with_file_name("report-screenshot.png");
    let png = tab.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true).unwrap();
    std::fs::write(&screenshot, png).unwrap();

    let problems = problems.lock().unwrap().clone();
    assert!(problems.is_empty(), "the browser reported errors: {problems:?}");
    Some(Rendered { plots, thumbnails: images.len(), screenshot })
}
