//! The browser page at `/` (clients/web) in a real headless Chromium, driven by Playwright
//! from pytest (tests/web), against the real server: sign-in, an upload with its timeline
//! and players, and live streams from a fake microphone playing the sample, over WebRTC and
//! over the WebSocket fallback. Screenshots go to target/web-artifacts/.

use crate::pytest::run_pytest;
use crate::server::project_dir;

#[test]
fn the_browser_page_signs_in_uploads_and_streams_live() {
    let artifacts = project_dir().join("target/web-artifacts");
    run_pytest(
        "tests/web",
        "pytest, Playwright and chromium",
        &[("WHOSPOKE_WEB_ARTIFACTS", &artifacts)],
    );
}
