//! The official `audiopod` Python SDK and AudioPod's documented request shapes (requests and
//! curl), run by pytest (tests/sdk) against the real server.

use crate::pytest::run_pytest;

#[test]
fn the_official_sdk_and_the_documented_requests_work() {
    run_pytest("tests/sdk", "pytest, requests and audiopod", &[]);
}
